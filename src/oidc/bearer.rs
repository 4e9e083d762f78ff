//! Bearer JWTs from API clients (SPEC "Requests to protected routes", `oidc.bearer_audiences`;
//! SECURITY IDT-15, DOS-04, DOS-06).
//!
//! With `bearer_audiences` set, `Authorization: Bearer <JWT>` from the issuer is an identity
//! without a session. [`Provider::verify_bearer`] checks, cheapest first, so garbage never
//! costs a signature check or an IdP request:
//! 1. size ([`MAX_BEARER_BYTES`]) and structure ([`verify::parse_jws`]): a compact JWS whose
//!    `alg` is one the issuer advertises (never `none`, never HMAC — RFC 8725 §3.1–3.2), no
//!    `crit`/`cty`, a `typ` that is absent, `JWT` or `at+jwt` (RFC 9068 §4; `logout+jwt` and
//!    every other explicit type are refused, RFC 8725 §3.11), a bounded `kid`;
//! 2. claims ([`check_bearer_claims`]): `iss` exactly the issuer; `aud` (a string or an array)
//!    containing at least one of `bearer_audiences` — an ID token for the proxy's own
//!    `client_id` does not pass unless that client id is listed (mod_auth_openidc
//!    GHSA-wcvh-g65p-v576); `exp` **required** (RFC 9068 §2.2); `nbf` and `iat`, when present,
//!    not in the future; all with the same [`LEEWAY`] as ID tokens; a valid `sub`; and no
//!    `events` claim (a Security Event Token such as a logout token is never an access token,
//!    RFC 8725 §3.12);
//! 3. signature ([`verify::verify_jws_signature`]) with the issuer's keys through
//!    [`JwksCache::verify_with`](super::JwksCache::verify_with) — the **same** cache as login
//!    verification, so an unknown `kid` triggers at most one JWKS re-fetch per 30 s in total,
//!    however many bearer requests and logins name one.
//!
//! The identity comes from the token's own claims (`sub`, `email`, `email_verified`,
//! `preferred_username`, the `groups_claim`); userinfo is never called for a bearer (that would
//! put an IdP request behind every API call).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::verify::{self, JwsPolicy, LEEWAY, TokenError};
use super::{NotReady, Provider, identity_from_claims};
use crate::identity::Identity;

/// Largest bearer token accepted, in bytes. The request head is bounded anyway
/// (`server.max_header_bytes`); this is the explicit first check.
pub const MAX_BEARER_BYTES: usize = 16 * 1024;

/// `typ` values a bearer JWT may carry (normalised): plain JWTs and RFC 9068 access tokens.
pub const BEARER_TYPS: &[&str] = &["application/jwt", "application/at+jwt"];

/// Why a bearer token gave no identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// The token is invalid (answer 401 `invalid_token`).
    #[error(transparent)]
    Invalid(#[from] TokenError),
    /// Discovery or keys are not loaded yet (answer 503).
    #[error(transparent)]
    NotReady(#[from] NotReady),
}

/// What a bearer token's claims must say.
#[derive(Debug, Clone, Copy)]
pub struct BearerExpected<'a> {
    /// The issuer, compared exactly.
    pub issuer: &'a str,
    /// `oidc.bearer_audiences`: `aud` must contain at least one.
    pub audiences: &'a [String],
}

/// Stage 2 for bearer tokens: the claim rules above on a decoded (not yet verified) payload.
pub fn check_bearer_claims(
    claims: &Map<String, Value>,
    expected: &BearerExpected<'_>,
    now: SystemTime,
) -> Result<(), TokenError> {
    verify::check_iss(claims, expected.issuer)?;
    let audiences = verify::audiences(claims)?;
    if !audiences
        .iter()
        .any(|a| expected.audiences.iter().any(|want| want == a))
    {
        return Err(TokenError::AudMismatch);
    }

    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let leeway = LEEWAY.as_secs_f64();
    let exp = verify::numeric_date(claims, "exp")?.ok_or(TokenError::ClaimInvalid("exp"))?;
    if exp <= now - leeway {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = verify::numeric_date(claims, "nbf")?
        && nbf > now + leeway
    {
        return Err(TokenError::ClaimInvalid("nbf"));
    }
    if let Some(iat) = verify::numeric_date(claims, "iat")?
        && (iat < 0.0 || iat > now + leeway)
    {
        return Err(TokenError::ClaimInvalid("iat"));
    }
    match claims.get("sub") {
        Some(Value::String(sub)) if verify::valid_sub(sub) => {}
        _ => return Err(TokenError::ClaimInvalid("sub")),
    }
    if claims.contains_key("events") {
        return Err(TokenError::ClaimInvalid("events"));
    }
    Ok(())
}

impl Provider {
    /// Verifies a bearer JWT (the text after `Bearer `) for `audiences` and returns the
    /// identity it carries. See the module documentation for the order of the checks.
    pub async fn verify_bearer(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<Identity, BearerError> {
        if token.len() > MAX_BEARER_BYTES {
            return Err(TokenError::Malformed("too large").into());
        }
        let d = self.ready()?;
        let policy = JwsPolicy {
            allowed_algs: &d.allowed_algs,
            allowed_typs: BEARER_TYPS,
        };
        let parsed = verify::parse_jws(token, &policy)?;
        let expected = BearerExpected {
            issuer: &self.issuer,
            audiences,
        };
        check_bearer_claims(&parsed.claims, &expected, SystemTime::now())?;
        self.jwks
            .verify_with(
                |keys| verify::verify_jws_signature(&parsed, keys),
                |e| *e == TokenError::UnknownKid,
            )
            .await?;
        Ok(identity_from_claims(parsed.claims, &self.groups_claim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::testutil::{EcKey, hs256, now};
    use openidconnect::JsonWebKeySet;
    use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
    use serde_json::json;

    const ISS: &str = "https://idp.example.com";

    fn audiences() -> Vec<String> {
        vec!["api://portcullis".into(), "api://other-accepted".into()]
    }

    fn base() -> Value {
        let t = now();
        json!({"iss": ISS, "aud": "api://portcullis", "sub": "svc-1", "exp": t + 300, "iat": t})
    }

    fn with(changes: Value) -> Map<String, Value> {
        let mut c = base();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c.as_object().unwrap().clone()
    }

    #[test]
    fn claim_rules_table() {
        let t = now();
        let aud = audiences();
        let exp = BearerExpected {
            issuer: ISS,
            audiences: &aud,
        };
        let cases: Vec<(&str, Value, Result<(), TokenError>)> = vec![
            ("valid", json!({}), Ok(())),
            (
                "aud list with one accepted",
                json!({"aud": ["x", "api://other-accepted"]}),
                Ok(()),
            ),
            ("exp within leeway", json!({"exp": t - 30}), Ok(())),
            ("nbf within leeway", json!({"nbf": t + 30}), Ok(())),
            (
                "fractional dates",
                json!({"exp": (t + 300) as f64 + 0.5}),
                Ok(()),
            ),
            ("no iat", json!({"iat": null}), Ok(())),
            (
                "iss other",
                json!({"iss": "https://evil.example.com"}),
                Err(TokenError::IssMismatch),
            ),
            (
                "iss trailing slash",
                json!({"iss": format!("{ISS}/")}),
                Err(TokenError::IssMismatch),
            ),
            (
                "iss missing",
                json!({"iss": null}),
                Err(TokenError::IssMismatch),
            ),
            (
                "iss not a string",
                json!({"iss": 1}),
                Err(TokenError::IssMismatch),
            ),
            (
                "aud missing",
                json!({"aud": null}),
                Err(TokenError::AudMismatch),
            ),
            (
                "aud other",
                json!({"aud": "api://other"}),
                Err(TokenError::AudMismatch),
            ),
            (
                "aud = client id (an ID token)",
                json!({"aud": "portcullis"}),
                Err(TokenError::AudMismatch),
            ),
            (
                "aud case differs",
                json!({"aud": "API://portcullis"}),
                Err(TokenError::AudMismatch),
            ),
            (
                "aud empty list",
                json!({"aud": []}),
                Err(TokenError::AudMismatch),
            ),
            (
                "aud list with a number",
                json!({"aud": ["api://portcullis", 3]}),
                Err(TokenError::AudMismatch),
            ),
            (
                "aud object",
                json!({"aud": {"a": "api://portcullis"}}),
                Err(TokenError::AudMismatch),
            ),
            (
                "exp missing",
                json!({"exp": null}),
                Err(TokenError::ClaimInvalid("exp")),
            ),
            (
                "exp string",
                json!({"exp": (t + 300).to_string()}),
                Err(TokenError::ClaimInvalid("exp")),
            ),
            (
                "exp huge",
                json!({"exp": 1e300}),
                Err(TokenError::ClaimInvalid("exp")),
            ),
            ("expired", json!({"exp": t - 61}), Err(TokenError::Expired)),
            (
                "nbf future",
                json!({"nbf": t + 120}),
                Err(TokenError::ClaimInvalid("nbf")),
            ),
            (
                "nbf string",
                json!({"nbf": "0"}),
                Err(TokenError::ClaimInvalid("nbf")),
            ),
            (
                "iat future",
                json!({"iat": t + 120}),
                Err(TokenError::ClaimInvalid("iat")),
            ),
            (
                "sub missing",
                json!({"sub": null}),
                Err(TokenError::ClaimInvalid("sub")),
            ),
            (
                "sub empty",
                json!({"sub": ""}),
                Err(TokenError::ClaimInvalid("sub")),
            ),
            (
                "sub control",
                json!({"sub": "a\nb"}),
                Err(TokenError::ClaimInvalid("sub")),
            ),
            (
                "logout token (events)",
                json!({"events": {"http://schemas.openid.net/event/backchannel-logout": {}}}),
                Err(TokenError::ClaimInvalid("events")),
            ),
        ];
        for (name, changes, want) in cases {
            let got = check_bearer_claims(&with(changes), &exp, SystemTime::now());
            assert_eq!(got, want, "{name}");
        }
    }

    fn keys(list: &[&EcKey]) -> CoreJsonWebKeySet {
        JsonWebKeySet::new(
            list.iter()
                .map(|k| serde_json::from_value(k.jwk()).unwrap())
                .collect(),
        )
    }

    const ALGS: &[CoreJwsSigningAlgorithm] = &[CoreJwsSigningAlgorithm::EcdsaP256Sha256];

    fn parse_and_verify(token: &str, set: &CoreJsonWebKeySet) -> Result<(), TokenError> {
        let policy = JwsPolicy {
            allowed_algs: ALGS,
            allowed_typs: BEARER_TYPS,
        };
        let parsed = verify::parse_jws(token, &policy)?;
        verify::verify_jws_signature(&parsed, set)
    }

    #[test]
    fn header_and_signature_table() {
        let k1 = EcKey::generate("k1");
        let k2 = EcKey::generate("k2");
        let rogue = EcKey::generate("k1");
        let one = keys(&[&k1]);
        let two = keys(&[&k1, &k2]);
        let c = base();
        let hdr = |typ: Option<&str>, kid: Option<&str>| {
            let mut h = json!({"alg": "ES256"});
            if let Some(t) = typ {
                h["typ"] = json!(t);
            }
            if let Some(k) = kid {
                h["kid"] = json!(k);
            }
            h
        };
        let jwk_secret = k1.jwk().to_string();
        let cases: Vec<(&str, String, &CoreJsonWebKeySet, Result<(), TokenError>)> = vec![
            ("valid", k1.token(&c), &one, Ok(())),
            (
                "typ at+jwt",
                k1.sign(&hdr(Some("at+jwt"), Some("k1")), &c),
                &one,
                Ok(()),
            ),
            (
                "typ application/at+jwt",
                k1.sign(&hdr(Some("application/at+jwt"), Some("k1")), &c),
                &one,
                Ok(()),
            ),
            ("no typ", k1.sign(&hdr(None, Some("k1")), &c), &one, Ok(())),
            (
                "no kid, one key",
                k1.sign(&hdr(None, None), &c),
                &one,
                Ok(()),
            ),
            ("second key", k2.token(&c), &two, Ok(())),
            (
                "no kid, two keys",
                k1.sign(&hdr(None, None), &c),
                &two,
                Err(TokenError::UnknownKid),
            ),
            (
                "typ logout+jwt",
                k1.sign(&hdr(Some("logout+jwt"), Some("k1")), &c),
                &one,
                Err(TokenError::Malformed("unexpected typ")),
            ),
            (
                "typ secevent+jwt",
                k1.sign(&hdr(Some("secevent+jwt"), Some("k1")), &c),
                &one,
                Err(TokenError::Malformed("unexpected typ")),
            ),
            (
                "unknown kid",
                k2.token(&c),
                &one,
                Err(TokenError::UnknownKid),
            ),
            (
                "same kid, other key",
                rogue.token(&c),
                &one,
                Err(TokenError::BadSignature),
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    crate::devidp::jwt::b64url(json!({"alg": "none"}).to_string()),
                    crate::devidp::jwt::b64url(c.to_string())
                ),
                &one,
                Err(TokenError::AlgNotAllowed),
            ),
            (
                "HS256 keyed with the public JWK",
                hs256(
                    jwk_secret.as_bytes(),
                    &json!({"alg": "HS256", "kid": "k1"}),
                    &c,
                ),
                &one,
                Err(TokenError::AlgNotAllowed),
            ),
            (
                "RS256 not advertised",
                k1.sign(&json!({"alg": "RS256", "kid": "k1"}), &c),
                &one,
                Err(TokenError::AlgNotAllowed),
            ),
            (
                "two segments",
                "a.b".into(),
                &one,
                Err(TokenError::Malformed("not a compact JWS")),
            ),
            (
                "garbage 8 KiB",
                "x".repeat(8 * 1024),
                &one,
                Err(TokenError::Malformed("not a compact JWS")),
            ),
            (
                "padding",
                format!("{}=", k1.token(&c)),
                &one,
                Err(TokenError::Malformed("not base64url")),
            ),
        ];
        for (name, token, set, want) in cases {
            assert_eq!(parse_and_verify(&token, set), want, "{name}");
        }
    }

    #[test]
    fn tampered_payload_fails_the_signature() {
        let k1 = EcKey::generate("k1");
        let token = k1.token(&base());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut other = base();
        other["sub"] = json!("admin");
        parts[1] = crate::devidp::jwt::b64url(other.to_string());
        assert_eq!(
            parse_and_verify(&parts.join("."), &keys(&[&k1])),
            Err(TokenError::BadSignature)
        );
    }
}
