//! Compact JWS minting (RFC 7515 §7.1) for the development provider and for tests.
//!
//! A token is `BASE64URL(header) || '.' || BASE64URL(claims) || '.' || BASE64URL(signature)`
//! with unpadded base64url (RFC 7515 §2). The header is used verbatim: callers decide `alg`,
//! `kid` and `typ`, which is what lets security tests mint deliberately inconsistent tokens.
//! Also here: the `at_hash` rule of OpenID Connect Core 1.0 §3.1.3.6 (left-most half of the
//! SHA-256 hash of the access token for the SHA-256 algorithms ES256/RS256/HS256).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{digest, hmac};
use serde_json::Value;

use super::keys::{KeyError, SigningKey};

/// Errors minting a JWT.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The header or claims could not be serialised.
    #[error("cannot serialise jwt part: {0}")]
    Json(#[from] serde_json::Error),
    /// The key failed to sign.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Unpadded base64url (RFC 7515 §2).
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes one unpadded base64url JWT segment into JSON, if it is one.
pub fn decode_segment(segment: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The JWS signing input `BASE64URL(header) . BASE64URL(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> Result<String, JwtError> {
    Ok(format!(
        "{}.{}",
        b64url(serde_json::to_vec(header)?),
        b64url(serde_json::to_vec(claims)?)
    ))
}

/// Mints a compact JWS signed with `key`. The header is used as given (set `alg`/`kid` yourself,
/// e.g. from [`SigningKey::alg`] and [`SigningKey::kid`]).
pub fn mint_jwt(header: &Value, claims: &Value, key: &SigningKey) -> Result<String, JwtError> {
    let input = signing_input(header, claims)?;
    let sig = key.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64url(sig)))
}

/// Mints a compact JWS with an HMAC-SHA256 signature keyed with `secret` (header used as given).
pub fn mint_jwt_hs256(header: &Value, claims: &Value, secret: &[u8]) -> Result<String, JwtError> {
    let input = signing_input(header, claims)?;
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    Ok(format!("{input}.{}", b64url(tag.as_ref())))
}

/// Mints an Unsecured JWS (RFC 7515 Appendix A.5): an empty signature segment.
pub fn mint_jwt_unsigned(header: &Value, claims: &Value) -> Result<String, JwtError> {
    Ok(format!("{}.", signing_input(header, claims)?))
}

/// `at_hash`/`c_hash` for the SHA-256 algorithms: base64url of the left half of SHA-256(value).
pub fn sha256_half_hash(value: &str) -> String {
    let hash = digest::digest(&digest::SHA256, value.as_bytes());
    b64url(&hash.as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn at_hash_matches_the_oidc_core_example() {
        // OpenID Connect Core 1.0 Appendix A.3 (RS256): access token -> at_hash.
        assert_eq!(
            sha256_half_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn hs256_matches_rfc7515_appendix_a1_shape() {
        let header = json!({"alg":"HS256","typ":"JWT"});
        let claims = json!({"sub":"x"});
        let token = mint_jwt_hs256(&header, &claims, b"secret").expect("mint");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode_segment(parts[0]), Some(header));
        assert_eq!(decode_segment(parts[1]), Some(claims));
        let input = format!("{}.{}", parts[0], parts[1]);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        assert!(hmac::verify(&key, input.as_bytes(), &sig).is_ok());
    }

    #[test]
    fn unsigned_token_has_empty_signature() {
        let token = mint_jwt_unsigned(&json!({"alg":"none"}), &json!({"a":1})).expect("mint");
        assert!(token.ends_with('.'));
        assert_eq!(token.matches('.').count(), 2);
    }

    #[test]
    fn decode_segment_rejects_garbage() {
        for bad in ["", "!!", "e30=", "bm90IGpzb24"] {
            assert_eq!(decode_segment(bad), None, "{bad}");
        }
        assert_eq!(decode_segment("e30"), Some(json!({})));
    }
}
