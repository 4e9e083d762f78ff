//! API clients with `Authorization: Bearer <JWT>` (SPEC "Requests to protected routes";
//! SECURITY IDT-15, DOS-04, DOS-06), through the real proxy, the in-repo provider and the echo
//! upstream. Tokens are minted with the provider's own signing key, or deliberately not.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use portcullis::devidp::jwt::b64url;
use portcullis::devidp::{DevIdp, KeyAlg, SigningKey, mint_jwt, mint_jwt_hs256, mint_jwt_unsigned};
use serde_json::{Value, json};

use crate::support::*;

const AUD: &str = "api://portcullis";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The reference deployment with `oidc_extra` added to `[oidc]` and `headers_extra` to
/// `[headers]`.
fn config(
    idp: &DevIdp,
    up: &Upstream,
    oidc_extra: &str,
    headers_extra: &str,
) -> impl FnOnce(u16) -> String {
    let base = reference_config(idp, up, "");
    let (oidc_extra, headers_extra) = (oidc_extra.to_string(), headers_extra.to_string());
    move |port| {
        base(port)
            .replacen("[session]", &format!("{oidc_extra}\n[session]"), 1)
            .replacen(
                "[headers.claims]",
                &format!("[headers]\n{headers_extra}\n[headers.claims]"),
                1,
            )
    }
}

struct Env {
    idp: DevIdp,
    up: Upstream,
    proxy: Proxy,
}

async fn env(alg: KeyAlg, oidc_extra: &str, headers_extra: &str) -> Env {
    let idp = idp_with(|o| o.key_alg = alg).await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(config(&idp, &up, oidc_extra, headers_extra)).await;
    Env { idp, up, proxy }
}

fn audiences(list: &[&str]) -> String {
    let quoted: Vec<String> = list.iter().map(|a| format!("{a:?}")).collect();
    format!("bearer_audiences = [{}]", quoted.join(", "))
}

/// Valid access-token claims for `sub` from this provider.
fn claims(idp: &DevIdp, sub: &str, groups: &[&str]) -> Value {
    let t = now();
    json!({
        "iss": idp.issuer(), "aud": AUD, "sub": sub, "exp": t + 300, "iat": t,
        "email": format!("{sub}@example.com"), "email_verified": true,
        "groups": groups, "tenant": "t9",
    })
}

fn header_for(key: &SigningKey) -> Value {
    json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "at+jwt"})
}

/// A token signed by the provider's current key.
fn mint(idp: &DevIdp, claims: &Value) -> String {
    let key = idp.current_key();
    mint_jwt(&header_for(&key), claims, &key).unwrap()
}

fn api(proxy: &Proxy) -> Browser {
    let mut b = Browser::new(proxy.addr);
    b.accept = "application/json";
    b
}

async fn get_with(b: &Browser, url: &str, authorization: &[&str]) -> Resp {
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|v| ("authorization", *v))
        .collect();
    b.request(Method::GET, url, &headers).await
}

fn assert_invalid_token(r: &Resp, what: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
    assert_eq!(
        r.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer error=\"invalid_token\""),
        "{what}"
    );
    assert!(r.location().is_none(), "{what}: never a redirect");
    assert!(!r.body.contains("UPSTREAM-SECRET"), "{what}");
    assert!(!r.body.contains("eyJ"), "{what}: no token echoed");
}

#[tokio::test]
async fn valid_bearer_is_an_identity_without_a_session() {
    let e = env(
        KeyAlg::Rs256,
        &audiences(&[AUD]),
        "access_token = \"X-Auth-Request-Access-Token\"",
    )
    .await;
    let b = api(&e.proxy);
    let token = mint(&e.idp, &claims(&e.idp, "svc-1", &["eng"]));
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = format!("{scheme} {token}");
        let r = get_with(&b, "https://app.example.com/data", &[&value]).await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}: {}", r.body);
        assert!(
            r.set_cookies()
                .iter()
                .all(|c| !c.starts_with("_portcullis=")),
            "no session"
        );
        let seen = e.up.last();
        assert_eq!(seen.one("x-auth-request-user").as_deref(), Some("svc-1"));
        assert_eq!(
            seen.one("x-auth-request-email").as_deref(),
            Some("svc-1@example.com")
        );
        assert_eq!(seen.one("x-auth-request-groups").as_deref(), Some("eng"));
        assert_eq!(seen.one("x-tenant").as_deref(), Some("t9"));
        assert_eq!(
            seen.one("authorization").as_deref(),
            Some(value.as_str()),
            "passed unchanged"
        );
        assert_eq!(
            seen.one("x-auth-request-access-token").as_deref(),
            Some(token.as_str())
        );
    }
    // The IdP is not asked anything per request.
    let counts = e.idp.counts();
    assert_eq!((counts.userinfo, counts.token), (0, 0));

    // The policy applies to bearer identities too.
    let r = get_with(
        &b,
        "https://app.example.com/admin/x",
        &[&format!("Bearer {token}")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "not_authorized");
    let admin = mint(&e.idp, &claims(&e.idp, "svc-2", &["admins"]));
    let r = get_with(
        &b,
        "https://app.example.com/admin/x",
        &[&format!("Bearer {admin}")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        e.up.last().one("x-auth-request-user").as_deref(),
        Some("svc-2")
    );

    // Public routes ignore it and pass it along.
    let r = get_with(&b, "https://app.example.com/public/p", &["Bearer garbage"]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(e.up.last().one("x-auth-request-user").is_none());
}

#[tokio::test]
async fn invalid_bearers_are_401_invalid_token_and_never_reach_the_upstream() {
    let e = env(KeyAlg::Rs256, &audiences(&[AUD]), "").await;
    let idp = &e.idp;
    let key = idp.current_key();
    let t = now();
    let good = claims(idp, "svc-1", &["admins"]);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        c
    };
    let signed = |c: &Value| mint_jwt(&header_for(&key), c, &key).unwrap();
    let rogue = SigningKey::rogue(KeyAlg::Rs256, key.kid()).unwrap();
    let jwk = key.jwk();
    let modulus = jwk["n"].as_str().unwrap().to_owned();
    let jwk_text = jwk.to_string();
    let cases: Vec<(&str, String)> = vec![
        ("not a JWT", "Bearer abc".into()),
        ("two segments", "Bearer abc.def".into()),
        ("empty token", "Bearer ".into()),
        ("token with a space", "Bearer a b".into()),
        ("8 KiB garbage", format!("Bearer {}", "A".repeat(8 * 1024))),
        (
            "header not JSON",
            format!("Bearer {}.{}.{}", b64url("nope"), b64url(good.to_string()), b64url("sig")),
        ),
        (
            "alg none",
            format!("Bearer {}", mint_jwt_unsigned(&json!({"alg": "none", "typ": "JWT"}), &good).unwrap()),
        ),
        (
            "HS256 keyed with the RSA public key (JWK text)",
            format!(
                "Bearer {}",
                mint_jwt_hs256(&json!({"alg": "HS256", "kid": key.kid()}), &good, jwk_text.as_bytes()).unwrap()
            ),
        ),
        (
            "HS256 keyed with the RSA modulus",
            format!(
                "Bearer {}",
                mint_jwt_hs256(&json!({"alg": "HS256", "kid": key.kid()}), &good, modulus.as_bytes()).unwrap()
            ),
        ),
        (
            "HS256 keyed with the client secret",
            format!(
                "Bearer {}",
                mint_jwt_hs256(&json!({"alg": "HS256"}), &good, CLIENT_SECRET.as_bytes()).unwrap()
            ),
        ),
        ("wrong key, same kid", format!("Bearer {}", mint_jwt(&header_for(&key), &good, &rogue).unwrap())),
        ("aud other", format!("Bearer {}", signed(&with("aud", json!("api://other"))))),
        ("aud missing", format!("Bearer {}", signed(&with("aud", Value::Null)))),
        ("aud = client id", format!("Bearer {}", signed(&with("aud", json!("portcullis"))))),
        ("expired", format!("Bearer {}", signed(&with("exp", json!(t - 120))))),
        ("exp missing", format!("Bearer {}", signed(&with("exp", Value::Null)))),
        ("nbf in the future", format!("Bearer {}", signed(&with("nbf", json!(t + 600))))),
        ("iss wrong", format!("Bearer {}", signed(&with("iss", json!("https://evil.example.com"))))),
        (
            "iss with a trailing slash",
            format!("Bearer {}", signed(&with("iss", json!(format!("{}/", idp.issuer()))))),
        ),
        ("sub missing", format!("Bearer {}", signed(&with("sub", Value::Null)))),
        (
            "typ logout+jwt",
            format!(
                "Bearer {}",
                mint_jwt(&json!({"alg": "RS256", "kid": key.kid(), "typ": "logout+jwt"}), &good, &key).unwrap()
            ),
        ),
        (
            "jku to an attacker's keys",
            format!(
                "Bearer {}",
                mint_jwt(
                    &json!({"alg": "RS256", "kid": "attacker", "jku": "https://evil.example.com/jwks"}),
                    &good,
                    &rogue
                )
                .unwrap()
            ),
        ),
    ];
    let before = e.up.count();
    // API clients and browsers alike: 401, never a 302 to the IdP.
    let mut browser = Browser::new(e.proxy.addr);
    browser.accept = BROWSER_ACCEPT;
    for client in [api(&e.proxy), browser] {
        for (what, value) in &cases {
            let r = get_with(&client, "https://app.example.com/data", &[value]).await;
            assert_invalid_token(&r, what);
        }
    }
    assert_eq!(
        e.up.count(),
        before,
        "no invalid bearer reached the upstream"
    );
    // The control: the same minting with good claims passes.
    let r = get_with(
        &api(&e.proxy),
        "https://app.example.com/data",
        &[&format!("Bearer {}", signed(&good))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn an_id_token_is_not_a_bearer_unless_the_client_id_is_an_audience() {
    // A real ID token: the upstream receives it with authorization_bearer_id_token.
    let e = env(
        KeyAlg::Es256,
        &audiences(&[AUD]),
        "authorization_bearer_id_token = true",
    )
    .await;
    let b = Browser::new(e.proxy.addr);
    b.login("https://app.example.com/").await;
    let auth = e.up.last().one("authorization").expect("ID token upstream");
    assert!(auth.starts_with("Bearer eyJ"));
    let r = get_with(&api(&e.proxy), "https://app.example.com/data", &[&auth]).await;
    assert_invalid_token(&r, "ID token as bearer");

    // Listing the client id is the operator's explicit choice to accept ID tokens.
    let other = Proxy::start(config(&e.idp, &e.up, &audiences(&[AUD, "portcullis"]), "")).await;
    let r = get_with(&api(&other), "https://app.example.com/data", &[&auth]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        e.up.last().one("x-auth-request-user").as_deref(),
        Some("u-alice")
    );
}

#[tokio::test]
async fn two_authorization_headers_are_400() {
    let e = env(KeyAlg::Es256, &audiences(&[AUD]), "").await;
    let token = mint(&e.idp, &claims(&e.idp, "svc-1", &[]));
    let valid = format!("Bearer {token}");
    let before = e.up.count();
    for pair in [
        [valid.as_str(), valid.as_str()],
        [valid.as_str(), "Basic YTpi"],
        ["Bearer x", valid.as_str()],
    ] {
        let r = get_with(&api(&e.proxy), "https://app.example.com/data", &pair).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{pair:?}");
        assert_eq!(
            r.headers
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer error=\"invalid_request\"")
        );
    }
    assert_eq!(e.up.count(), before);
}

#[tokio::test]
async fn cookie_and_bearer_together() {
    let e = env(KeyAlg::Es256, &audiences(&[AUD]), "").await;
    let b = Browser::new(e.proxy.addr);
    b.login("https://app.example.com/").await;
    let alice_api = api(&e.proxy);
    alice_api.set_cookie("_portcullis", &b.cookie("_portcullis").unwrap());
    // The session alone works for the API client.
    let r = alice_api.get("https://app.example.com/data").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        e.up.last().one("x-auth-request-user").as_deref(),
        Some("u-alice")
    );

    // An invalid bearer is never replaced by the cookie identity (fail closed).
    let before = e.up.count();
    let expired = {
        let mut c = claims(&e.idp, "u-bob", &[]);
        c["exp"] = json!(now() - 3600);
        mint(&e.idp, &c)
    };
    for value in [format!("Bearer {expired}"), "Bearer not-a-jwt".to_string()] {
        let r = get_with(&alice_api, "https://app.example.com/data", &[&value]).await;
        assert_invalid_token(&r, "invalid bearer with a valid cookie");
    }
    assert_eq!(e.up.count(), before);

    // A valid bearer naming bob wins over alice's cookie (documented precedence).
    let bob = mint(&e.idp, &claims(&e.idp, "u-bob", &["admins"]));
    let r = get_with(
        &alice_api,
        "https://app.example.com/admin/x",
        &[&format!("Bearer {bob}")],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = e.up.last();
    assert_eq!(seen.one("x-auth-request-user").as_deref(), Some("u-bob"));
    assert!(
        seen.one("cookie")
            .is_none_or(|c| !c.contains("_portcullis")),
        "own cookie stripped"
    );
    // Another scheme leaves the decision to the cookie, and passes upstream.
    let r = get_with(&alice_api, "https://app.example.com/data", &["Basic YTpi"]).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = e.up.last();
    assert_eq!(seen.one("x-auth-request-user").as_deref(), Some("u-alice"));
    assert_eq!(seen.one("authorization").as_deref(), Some("Basic YTpi"));
}

#[tokio::test]
async fn without_bearer_audiences_a_bearer_is_no_identity() {
    let e = env(KeyAlg::Es256, "", "").await;
    let token = mint(&e.idp, &claims(&e.idp, "svc-1", &[]));
    let r = get_with(
        &api(&e.proxy),
        "https://app.example.com/data",
        &[&format!("Bearer {token}")],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "unauthenticated");
    assert_eq!(
        r.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer")
    );
}

#[tokio::test]
async fn unknown_kid_flood_fetches_the_jwks_at_most_once() {
    let e = env(KeyAlg::Es256, &audiences(&[AUD]), "").await;
    let jwks_before = e.idp.counts().jwks;
    let rogue = SigningKey::rogue(KeyAlg::Es256, "rogue").unwrap();
    let good = claims(&e.idp, "svc-1", &[]);
    let valid = format!("Bearer {}", mint(&e.idp, &good));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let header =
            json!({"alg": "ES256", "kid": format!("random-{i}-{}", now()), "typ": "at+jwt"});
        let value = format!("Bearer {}", mint_jwt(&header, &good, &rogue).unwrap());
        let b = api(&e.proxy);
        tasks.push(tokio::spawn(async move {
            get_with(&b, "https://app.example.com/data", &[&value])
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let elapsed = started.elapsed();
    let fetched = e.idp.counts().jwks - jwks_before;
    eprintln!("unknown-kid flood: 200 requests in {elapsed:?}, {fetched} JWKS fetch(es)");
    // Exactly one: the first unknown kid may re-fetch (the throttle starts empty), no other.
    assert_eq!(fetched, 1, "{fetched} JWKS fetches for 200 unknown kids");
    // Valid tokens keep working meanwhile.
    let r = get_with(&api(&e.proxy), "https://app.example.com/data", &[&valid]).await;
    assert_eq!(r.status, StatusCode::OK);

    // The throttle is shared with login: right after the flood, a login whose ID token names
    // a new key gets no extra fetch either (it is refused, not accepted unverified).
    e.idp.rotate_key(false);
    let b = Browser::new(e.proxy.addr);
    let r = b.get("https://app.example.com/p").await;
    let r = b.get(&r.location().unwrap()).await;
    let r = b.get(&r.location().unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(b.cookie("_portcullis").is_none());
    assert_eq!(
        e.idp.counts().jwks - jwks_before,
        fetched,
        "no fetch beyond the throttle"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "the flood ran inside one throttle window"
    );
}
