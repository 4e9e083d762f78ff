//! Every verification rule, with tokens minted here (ring ES256 keys, HMAC, `alg: none`).

use super::*;
use crate::oidc::testutil::{EcKey, at_hash, hs256, now};
use openidconnect::JsonWebKeySet;
use serde_json::json;

const ISS: &str = "https://idp.example.com";
const CLIENT: &str = "portcullis";
const NONCE: &str = "n-0123456789abcdef";
const SECRET: &str = "client-secret";
const ALGS: &[CoreJwsSigningAlgorithm] = &[CoreJwsSigningAlgorithm::EcdsaP256Sha256];

fn keys(list: &[&EcKey]) -> CoreJsonWebKeySet {
    JsonWebKeySet::new(
        list.iter()
            .map(|k| serde_json::from_value(k.jwk()).unwrap())
            .collect(),
    )
}

fn claims() -> Value {
    let t = now();
    json!({"iss": ISS, "aud": CLIENT, "sub": "u-alice", "exp": t + 300, "iat": t, "nonce": NONCE})
}

fn with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// The whole synchronous pipeline, as `Provider::finish_login` runs it.
fn verify_all(
    token: &str,
    set: &CoreJsonWebKeySet,
    access_token: Option<&str>,
) -> Result<Map<String, Value>, TokenError> {
    let expected = Expected {
        issuer: ISS,
        client_id: CLIENT,
        nonce: Some(NONCE),
    };
    let parsed = parse_jws(
        token,
        &JwsPolicy {
            allowed_algs: ALGS,
            allowed_typs: ID_TOKEN_TYPS,
        },
    )?;
    check_claims(&parsed.claims, &expected, SystemTime::now())?;
    verify_signature(&parsed, set, &expected, ALGS)?;
    if let Some(at) = access_token {
        check_at_hash(&parsed.claims, &parsed.alg, at)?;
    }
    Ok(parsed.claims)
}

fn reason(r: Result<Map<String, Value>, TokenError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.reason(),
    }
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn claim_rules() {
    let key = EcKey::generate("k1");
    let set = keys(&[&key]);
    let t = now();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("valid", json!({}), "ok"),
        ("aud as one-element array", json!({"aud": [CLIENT]}), "ok"),
        ("fractional exp", json!({"exp": t as f64 + 300.5}), "ok"),
        ("exp now-50 within leeway", json!({"exp": t - 50}), "ok"),
        ("exp now-61", json!({"exp": t - 61}), "expired"),
        ("exp now-3600", json!({"exp": t - 3600}), "expired"),
        ("exp -1", json!({"exp": -1}), "expired"),
        ("exp missing", json!({"exp": null}), "claim_invalid"),
        ("exp string", json!({"exp": "9999999999"}), "claim_invalid"),
        ("exp 1e300", json!({"exp": 1e300}), "claim_invalid"),
        ("iat missing", json!({"iat": null}), "claim_invalid"),
        ("iat now+3600", json!({"iat": t + 3600}), "claim_invalid"),
        ("iat now+30 within skew", json!({"iat": t + 30}), "ok"),
        ("nbf now+3600", json!({"nbf": t + 3600}), "claim_invalid"),
        ("nbf now", json!({"nbf": t}), "ok"),
        ("nbf string", json!({"nbf": "0"}), "claim_invalid"),
        ("sub missing", json!({"sub": null}), "claim_invalid"),
        ("sub empty", json!({"sub": ""}), "claim_invalid"),
        ("sub number", json!({"sub": 12345}), "claim_invalid"),
        (
            "sub 256 chars",
            json!({"sub": "a".repeat(256)}),
            "claim_invalid",
        ),
        ("sub 255 chars", json!({"sub": "a".repeat(255)}), "ok"),
        ("sub non-ASCII", json!({"sub": "ålice"}), "claim_invalid"),
        ("sub control char", json!({"sub": "a\nb"}), "claim_invalid"),
        (
            "iss other",
            json!({"iss": "https://evil.example.com"}),
            "iss_mismatch",
        ),
        (
            "iss trailing slash",
            json!({"iss": "https://idp.example.com/"}),
            "iss_mismatch",
        ),
        (
            "iss upper case",
            json!({"iss": "HTTPS://IDP.EXAMPLE.COM"}),
            "iss_mismatch",
        ),
        (
            "iss explicit port",
            json!({"iss": "https://idp.example.com:443"}),
            "iss_mismatch",
        ),
        ("iss array", json!({"iss": [ISS]}), "iss_mismatch"),
        ("iss missing", json!({"iss": null}), "iss_mismatch"),
        ("aud other", json!({"aud": "other"}), "aud_mismatch"),
        ("aud missing", json!({"aud": null}), "aud_mismatch"),
        ("aud [other]", json!({"aud": ["other"]}), "aud_mismatch"),
        (
            "aud trailing space",
            json!({"aud": "portcullis "}),
            "aud_mismatch",
        ),
        (
            "aud upper case",
            json!({"aud": "PORTCULLIS"}),
            "aud_mismatch",
        ),
        ("aud number", json!({"aud": 42}), "aud_mismatch"),
        ("aud empty array", json!({"aud": []}), "aud_mismatch"),
        (
            "extra audience, no azp",
            json!({"aud": [CLIENT, "untrusted-rp"]}),
            "aud_mismatch",
        ),
        (
            "extra audience, azp other",
            json!({"aud": [CLIENT, "untrusted-rp"], "azp": "untrusted-rp"}),
            "aud_mismatch",
        ),
        (
            "extra audience, azp ours",
            json!({"aud": [CLIENT, "untrusted-rp"], "azp": CLIENT}),
            "aud_mismatch",
        ),
        ("azp other", json!({"azp": "other"}), "azp_mismatch"),
        ("azp number", json!({"azp": 1}), "azp_mismatch"),
        ("azp ours", json!({"azp": CLIENT}), "ok"),
        (
            "repeated audience without azp",
            json!({"aud": [CLIENT, CLIENT]}),
            "azp_mismatch",
        ),
        ("nonce missing", json!({"nonce": null}), "nonce_mismatch"),
        ("nonce wrong", json!({"nonce": "n-other"}), "nonce_mismatch"),
        (
            "nonce prefix",
            json!({"nonce": &NONCE[..5]}),
            "nonce_mismatch",
        ),
        ("nonce number", json!({"nonce": 1}), "nonce_mismatch"),
        (
            "logout token as ID token",
            json!({"nonce": null, "events": {"http://schemas.openid.net/event/backchannel-logout": {}}, "sid": "s"}),
            "nonce_mismatch",
        ),
        (
            "email_verified as string (openidconnect type)",
            json!({"email_verified": "true"}),
            "claim_invalid",
        ),
    ];
    for (name, change, want) in cases {
        let token = key.token(&with(change));
        assert_eq!(reason(verify_all(&token, &set, None)), want, "case: {name}");
    }
}

#[test]
fn signature_and_key_rules() {
    let key = EcKey::generate("k1");
    let attacker = EcKey::generate("k1");
    let set = keys(&[&key]);
    let c = claims();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "signed by another key with our kid",
            attacker.token(&c),
            "bad_signature",
        ),
        (
            "embedded jwk of the attacker, no kid",
            attacker.sign(&json!({"alg":"ES256","jwk": attacker.jwk()}), &c),
            "bad_signature",
        ),
        (
            "jku header",
            attacker.sign(
                &json!({"alg":"ES256","jku":"https://evil.com/jwks.json"}),
                &c,
            ),
            "bad_signature",
        ),
        (
            "x5u header",
            attacker.sign(&json!({"alg":"ES256","x5u":"https://evil.com/c.pem"}), &c),
            "bad_signature",
        ),
        (
            "x5c header",
            attacker.sign(&json!({"alg":"ES256","x5c":["MIIB"]}), &c),
            "bad_signature",
        ),
        (
            "unknown kid",
            key.sign(&json!({"alg":"ES256","kid":"nope"}), &c),
            "unknown_kid",
        ),
        (
            "path-like kid",
            key.sign(&json!({"alg":"ES256","kid":"../../dev/null"}), &c),
            "unknown_kid",
        ),
        (
            "sql-like kid",
            key.sign(&json!({"alg":"ES256","kid":"x' OR '1'='1"}), &c),
            "unknown_kid",
        ),
        (
            "10 KiB kid",
            key.sign(&json!({"alg":"ES256","kid":"k".repeat(10 * 1024)}), &c),
            "unknown_kid",
        ),
        (
            "no kid, one key",
            key.sign(&json!({"alg":"ES256"}), &c),
            "ok",
        ),
        (
            "kid not a string",
            key.sign(&json!({"alg":"ES256","kid":1}), &c),
            "malformed_token",
        ),
        (
            "tampered payload",
            {
                let t = key.token(&c);
                let parts: Vec<&str> = t.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64(&with(json!({"sub": "u-bob"})).to_string()),
                    parts[2]
                )
            },
            "bad_signature",
        ),
        (
            "signature of wrong length",
            {
                let t = key.token(&c);
                format!("{}AAAA", t)
            },
            "bad_signature",
        ),
    ];
    for (name, token, want) in cases {
        assert_eq!(reason(verify_all(&token, &set, None)), want, "case: {name}");
    }
}

#[test]
fn algorithm_rules() {
    let key = EcKey::generate("k1");
    let set = keys(&[&key]);
    let c = claims();
    let body = b64(&c.to_string());
    let jwk_text = key.jwk().to_string();
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none, empty signature",
            format!("{}.{body}.", b64(r#"{"alg":"none"}"#)),
        ),
        (
            "alg none, some signature",
            format!("{}.{body}.AAAA", b64(r#"{"alg":"none","kid":"k1"}"#)),
        ),
        (
            "alg None",
            format!("{}.{body}.AAAA", b64(r#"{"alg":"None"}"#)),
        ),
        ("alg missing", key.sign(&json!({"kid":"k1"}), &c)),
        ("alg not a string", key.sign(&json!({"alg":["ES256"]}), &c)),
        (
            "HS256 keyed with the client secret",
            hs256(SECRET.as_bytes(), &json!({"alg":"HS256","kid":"k1"}), &c),
        ),
        (
            "HS256 keyed with the public JWK",
            hs256(jwk_text.as_bytes(), &json!({"alg":"HS256"}), &c),
        ),
        (
            "RS256 not advertised",
            key.sign(&json!({"alg":"RS256","kid":"k1"}), &c),
        ),
        (
            "unknown alg",
            key.sign(&json!({"alg":"ES256K","kid":"k1"}), &c),
        ),
    ];
    for (name, token) in cases {
        assert_eq!(
            reason(verify_all(&token, &set, None)),
            "alg_not_allowed",
            "case: {name}"
        );
    }
}

#[test]
fn hmac_is_impossible_even_if_allowed_by_mistake() {
    let key = EcKey::generate("k1");
    let token = hs256(SECRET.as_bytes(), &json!({"alg":"HS256"}), &claims());
    let hs = [CoreJwsSigningAlgorithm::HmacSha256];
    let policy = JwsPolicy {
        allowed_algs: &hs,
        allowed_typs: ID_TOKEN_TYPS,
    };
    assert_eq!(
        parse_jws(&token, &policy).unwrap_err(),
        TokenError::AlgNotAllowed
    );
    // Stage 3 alone, bypassing stage 1: openidconnect's public-client verifier refuses too.
    let parsed = ParsedJws {
        raw: &token,
        alg: CoreJwsSigningAlgorithm::HmacSha256,
        kid: None,
        claims: Map::new(),
    };
    let expected = Expected {
        issuer: ISS,
        client_id: CLIENT,
        nonce: Some(NONCE),
    };
    assert!(verify_signature(&parsed, &keys(&[&key]), &expected, &hs).is_err());
}

#[test]
fn structural_rules() {
    let key = EcKey::generate("k1");
    let set = keys(&[&key]);
    let c = claims();
    let good = key.token(&c);
    let p: Vec<&str> = good.split('.').collect();
    let cases: Vec<(&str, String)> = vec![
        (
            "crit",
            key.sign(
                &json!({"alg":"ES256","kid":"k1","crit":["urn:x-unknown"]}),
                &c,
            ),
        ),
        (
            "cty JWT",
            key.sign(&json!({"alg":"ES256","kid":"k1","cty":"JWT"}), &c),
        ),
        ("two segments", format!("{}.{}", p[0], p[1])),
        ("four segments", format!("{good}.{}", p[2])),
        ("six segments", format!("{good}.a.b.c")),
        (
            "five-segment JWE",
            format!("{}.a.b.c.d", b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)),
        ),
        (
            "JWS JSON serialization",
            json!({"payload": p[1], "signatures": [{"protected": p[0], "signature": p[2]}]})
                .to_string(),
        ),
        ("padding", format!("{}=.{}.{}", p[0], p[1], p[2])),
        ("plus", format!("{}.{}+.{}", p[0], p[1], p[2])),
        ("slash", format!("{}.{}.{}/", p[0], p[1], p[2])),
        (
            "header not JSON",
            format!("{}.{}.{}", b64("not json"), p[1], p[2]),
        ),
        (
            "header JSON array",
            format!("{}.{}.{}", b64(r#"["ES256"]"#), p[1], p[2]),
        ),
        (
            "payload JSON array",
            key.sign_raw(&key.header().to_string(), &json!([c]).to_string()),
        ),
        (
            "payload not JSON",
            key.sign_raw(&key.header().to_string(), "{\"sub\":"),
        ),
        (
            "duplicate members, validly signed",
            key.sign_raw(
                &key.header().to_string(),
                &c.to_string().replacen(
                    "\"sub\":\"u-alice\"",
                    "\"sub\":\"u-alice\",\"sub\":\"u-bob\"",
                    1,
                ),
            ),
        ),
        (
            "duplicate header members",
            key.sign_raw(r#"{"alg":"ES256","kid":"k1","kid":"k2"}"#, &c.to_string()),
        ),
        (
            "typ logout+jwt",
            key.sign(&json!({"alg":"ES256","kid":"k1","typ":"logout+jwt"}), &c),
        ),
        (
            "typ at+jwt",
            key.sign(&json!({"alg":"ES256","kid":"k1","typ":"at+jwt"}), &c),
        ),
        (
            "typ application/jose",
            key.sign(
                &json!({"alg":"ES256","kid":"k1","typ":"application/jose"}),
                &c,
            ),
        ),
        (
            "typ not a string",
            key.sign(&json!({"alg":"ES256","kid":"k1","typ":1}), &c),
        ),
        ("empty signature", format!("{}.{}.", p[0], p[1])),
        ("empty string", String::new()),
    ];
    for (name, token) in cases {
        assert_eq!(
            reason(verify_all(&token, &set, None)),
            "malformed_token",
            "case: {name}"
        );
    }
    for typ in ["JWT", "jwt", "application/jwt", "Application/JWT"] {
        let token = key.sign(&json!({"alg":"ES256","kid":"k1","typ":typ}), &c);
        assert_eq!(reason(verify_all(&token, &set, None)), "ok", "typ {typ}");
    }
}

#[test]
fn one_mebibyte_token_is_rejected_cheaply() {
    let key = EcKey::generate("k1");
    let big = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"ES256"}"#),
        "A".repeat(1 << 20),
        "AAAA"
    );
    let started = std::time::Instant::now();
    assert_eq!(
        reason(verify_all(&big, &keys(&[&key]), None)),
        "malformed_token"
    );
    assert!(started.elapsed() < Duration::from_millis(50));
}

#[test]
fn at_hash_rules() {
    let key = EcKey::generate("k1");
    let set = keys(&[&key]);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("matching", json!({"at_hash": at_hash("A")}), "ok"),
        ("absent", json!({}), "ok"),
        (
            "hash of another token",
            json!({"at_hash": at_hash("B")}),
            "at_hash_mismatch",
        ),
        (
            "with padding",
            json!({"at_hash": format!("{}==", at_hash("A"))}),
            "at_hash_mismatch",
        ),
        (
            "too short",
            json!({"at_hash": &at_hash("A")[..10]}),
            "at_hash_mismatch",
        ),
        (
            "full-length hash",
            json!({"at_hash": URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, b"A"))}),
            "at_hash_mismatch",
        ),
    ];
    for (name, change, want) in cases {
        let token = key.token(&with(change));
        assert_eq!(
            reason(verify_all(&token, &set, Some("A"))),
            want,
            "case: {name}"
        );
    }
}

#[test]
fn key_selection_rules() {
    let a = EcKey::generate("a");
    let b = EcKey::generate("b");
    let c = claims();
    // Two candidate keys and no kid: rejected, never "try each".
    assert_eq!(
        reason(verify_all(
            &a.sign(&json!({"alg":"ES256"}), &c),
            &keys(&[&a, &b]),
            None
        )),
        "unknown_kid"
    );
    // Two keys sharing a kid: deterministic rejection, no panic.
    let twin = EcKey::generate("a");
    assert_eq!(
        reason(verify_all(&a.token(&c), &keys(&[&a, &twin]), None)),
        "unknown_kid"
    );
    // The JWK's alg differs from the token's.
    let mut jwk = a.jwk();
    jwk["alg"] = json!("ES384");
    let set = JsonWebKeySet::new(vec![serde_json::from_value(jwk).unwrap()]);
    assert_eq!(reason(verify_all(&a.token(&c), &set, None)), "unknown_kid");
    // With the right kid among several keys: accepted.
    assert_eq!(
        reason(verify_all(&b.token(&c), &keys(&[&a, &b]), None)),
        "ok"
    );
}

#[test]
fn refresh_time_tokens_skip_the_nonce() {
    let key = EcKey::generate("k1");
    let token = key.token(&with(json!({"nonce": null})));
    let expected = Expected {
        issuer: ISS,
        client_id: CLIENT,
        nonce: None,
    };
    let parsed = parse_jws(
        &token,
        &JwsPolicy {
            allowed_algs: ALGS,
            allowed_typs: ID_TOKEN_TYPS,
        },
    )
    .unwrap();
    check_claims(&parsed.claims, &expected, SystemTime::now()).unwrap();
    verify_signature(&parsed, &keys(&[&key]), &expected, ALGS).unwrap();
}

#[test]
fn strict_json_parser() {
    assert!(parse_json_object(br#"{"a":1,"b":{"c":[1,2.5,"x",null,true]}}"#).is_ok());
    assert!(parse_json_object(br#"{"a":1,"a":2}"#).is_err());
    assert!(parse_json_object(br#"{"a":{"b":1,"b":1}}"#).is_err());
    assert!(parse_json_object(br#"[{"a":1}]"#).is_err());
    assert!(parse_json_object(b"null").is_err());
    assert!(parse_json_object(b"\xff\xfe").is_err());
    let deep = "[".repeat(100_000);
    assert!(parse_json_object(deep.as_bytes()).is_err());
    let deep_obj = format!("{}{}", "{\"a\":".repeat(100_000), "1");
    assert!(parse_json_object(deep_obj.as_bytes()).is_err());
}

#[test]
fn error_messages_hold_no_token_material() {
    let key = EcKey::generate("k1");
    let token = key.token(&with(json!({"nonce": "secret-nonce-value"})));
    let err = verify_all(&token, &keys(&[&key]), None).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains("secret-nonce-value") && !text.contains(&token[..20]),
        "{text}"
    );
}

#[test]
fn openidconnect_is_a_second_line() {
    // Stage 3 alone (stage 2 skipped) still refuses wrong claims.
    let key = EcKey::generate("k1");
    let set = keys(&[&key]);
    let expected = Expected {
        issuer: ISS,
        client_id: CLIENT,
        nonce: Some(NONCE),
    };
    let policy = JwsPolicy {
        allowed_algs: ALGS,
        allowed_typs: ID_TOKEN_TYPS,
    };
    let cases: Vec<(Value, TokenError)> = vec![
        (json!({"exp": now() - 61}), TokenError::Expired),
        (json!({"aud": "other"}), TokenError::AudMismatch),
        (
            json!({"iss": "https://evil.example.com"}),
            TokenError::IssMismatch,
        ),
        (json!({"nonce": "other"}), TokenError::NonceMismatch),
        (json!({"iat": now() + 3600}), TokenError::Expired),
    ];
    for (change, want) in cases {
        let token = key.token(&with(change.clone()));
        let parsed = parse_jws(&token, &policy).unwrap();
        assert_eq!(
            verify_signature(&parsed, &set, &expected, ALGS),
            Err(want),
            "{change}"
        );
    }
}

#[test]
fn empty_expected_nonce_never_matches() {
    let key = EcKey::generate("k1");
    let token = key.token(&with(json!({"nonce": ""})));
    let parsed = parse_jws(
        &token,
        &JwsPolicy {
            allowed_algs: ALGS,
            allowed_typs: ID_TOKEN_TYPS,
        },
    )
    .unwrap();
    let expected = Expected {
        issuer: ISS,
        client_id: CLIENT,
        nonce: Some(""),
    };
    assert_eq!(
        check_claims(&parsed.claims, &expected, SystemTime::now()),
        Err(TokenError::NonceMismatch)
    );
}
