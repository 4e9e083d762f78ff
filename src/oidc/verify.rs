//! ID-token verification: OpenID Connect Core 1.0 §3.1.3.7, hardened per RFC 8725.
//!
//! A token goes through three stages, cheapest first (SECURITY DOS-06):
//! 1. [`parse_jws`] — structure only, no cryptography: compact JWS with exactly three
//!    base64url segments (no padding, RFC 7515 §7.1), at most [`MAX_TOKEN_BYTES`], a JSON-object
//!    header whose `alg` is in the issuer's allowed list (never `none`, never HMAC — RFC 8725
//!    §3.1–3.2), no `crit` (RFC 7515 §4.1.11: we understand no extension), no `cty`, a `typ`
//!    that is absent or `JWT`/`application/jwt` (RFC 8725 §3.11: a `logout+jwt` or `at+jwt` is
//!    not an ID token), a `kid` of at most [`MAX_KID_CHARS`], and a JSON-object payload without
//!    duplicate members (RFC 7519 §4: we reject rather than pick one). Header parameters naming
//!    key material (`jwk`, `jku`, `x5u`, `x5c`) are never read: keys come only from the issuer's
//!    `jwks_uri` (Core §3.1.3.7 step 6, RFC 8725 §3.10).
//! 2. [`check_claims`] — the claim rules on the decoded payload: exact `iss` (step 2), `aud`
//!    containing our `client_id` and nothing else (step 3: we trust no extra audience), `azp`
//!    equal to `client_id` when present and required with several audiences (steps 4–5), `exp`
//!    with [`LEEWAY`] (step 9), `iat` required and not in the future beyond the leeway (step 10),
//!    `nbf` (RFC 7519 §4.1.5), `sub` non-empty and at most 255 ASCII characters (Core §2), and
//!    the `nonce` compared in constant time (step 11). Failing here spends no CPU on signatures.
//! 3. [`verify_signature`] — openidconnect's `CoreIdTokenVerifier::new_public_client` built
//!    per call with the current key set, so HMAC is impossible even if allowed by mistake
//!    (STACK A3 pitfall 3), with the allowed algorithms, `typ` set, leeway and `iat` rule set
//!    to agree with stage 2. It re-checks `iss`, `aud`, `exp`, `nonce` as a second line.
//!
//! Then [`check_at_hash`] (Core §3.1.3.8) binds the access token when the ID token carries
//! `at_hash`, with the hash named by the token's `alg`, compared in constant time.
//!
//! Decisions where the specifications leave a choice (SECURITY IDT-09, IDT-13):
//! - A token without `kid` is accepted when exactly one key of the matching type is in the set;
//!   with several candidates it is rejected (`unknown_kid`), as are two keys sharing a `kid`.
//! - Standard claims must have their standard JSON types for openidconnect to parse them (e.g.
//!   `email_verified` must be a boolean in an ID token); otherwise the token is rejected
//!   (`claim_invalid`), never half-read.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, IssuerUrl, JsonWebTokenType, Nonce,
    SignatureVerificationError,
};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

/// Largest token accepted, in bytes (checked before anything else).
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Longest `kid` accepted; a longer one can name no key of ours.
pub const MAX_KID_CHARS: usize = 256;
/// Clock skew allowed on `exp`, `iat` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(60);
/// Latest NumericDate accepted (9999-12-31T23:59:59Z): larger values are nonsense.
const MAX_NUMERIC_DATE: f64 = 253_402_300_799.0;
/// Longest `sub` (OpenID Connect Core §2).
const MAX_SUB_CHARS: usize = 255;

/// Why a token was rejected. The `Display` text never contains the token, a claim value or a
/// key; [`TokenError::reason`] is the log/metrics vocabulary of SECURITY.md §0.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS with JSON-object header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` missing, `none`, HMAC, or not advertised by the issuer.
    #[error("signing algorithm not allowed")]
    AlgNotAllowed,
    /// No key (or more than one) in the issuer's key set fits the token's `kid` and `alg`.
    #[error("no single key of the issuer matches the token")]
    UnknownKid,
    /// The signature does not verify with the issuer's key.
    #[error("signature does not verify")]
    BadSignature,
    /// `iss` missing or not exactly the issuer.
    #[error("issuer does not match")]
    IssMismatch,
    /// `aud` missing, without our client id, or with another audience.
    #[error("audience does not match")]
    AudMismatch,
    /// `azp` present and not our client id, or missing with several audiences.
    #[error("authorized party does not match")]
    AzpMismatch,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// A required claim is missing, of the wrong type or out of range.
    #[error("invalid claim `{0}`")]
    ClaimInvalid(&'static str),
    /// `nonce` missing or not the one sent in the authorization request.
    #[error("nonce does not match")]
    NonceMismatch,
    /// `at_hash` present and not the hash of the access token.
    #[error("at_hash does not match the access token")]
    AtHashMismatch,
}

impl TokenError {
    /// The reason word used in logs and metrics (SECURITY.md §0.2).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed_token",
            TokenError::AlgNotAllowed => "alg_not_allowed",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::IssMismatch => "iss_mismatch",
            TokenError::AudMismatch => "aud_mismatch",
            TokenError::AzpMismatch => "azp_mismatch",
            TokenError::Expired => "expired",
            TokenError::ClaimInvalid(_) => "claim_invalid",
            TokenError::NonceMismatch => "nonce_mismatch",
            TokenError::AtHashMismatch => "at_hash_mismatch",
        }
    }
}

/// What the JOSE header may contain.
#[derive(Debug, Clone, Copy)]
pub struct JwsPolicy<'a> {
    /// Allowed `alg` values (the caller has already removed `none` and HMAC; they are refused
    /// here regardless).
    pub allowed_algs: &'a [CoreJwsSigningAlgorithm],
    /// Allowed `typ` values in normalised form (lower case, `application/` prefixed), e.g.
    /// `application/jwt`; an absent `typ` is always allowed.
    pub allowed_typs: &'a [&'a str],
}

/// `typ` values an ID token may carry.
pub const ID_TOKEN_TYPS: &[&str] = &["application/jwt"];

/// A compact JWS that passed the structural checks. Its claims are NOT verified yet.
#[derive(Debug, Clone)]
pub struct ParsedJws<'a> {
    /// The token as received.
    pub raw: &'a str,
    /// The header's `alg`, already checked against the policy.
    pub alg: CoreJwsSigningAlgorithm,
    /// The header's `kid`, at most [`MAX_KID_CHARS`].
    pub kid: Option<String>,
    /// The decoded payload.
    pub claims: Map<String, Value>,
}

/// Stage 1: structure and header policy, without any cryptography.
pub fn parse_jws<'a>(raw: &'a str, policy: &JwsPolicy<'_>) -> Result<ParsedJws<'a>, TokenError> {
    if raw.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed("too large"));
    }
    let mut parts = raw.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not a compact JWS"));
    };
    if [h, p, s].iter().any(|seg| !is_base64url(seg)) {
        return Err(TokenError::Malformed("not base64url"));
    }
    let header = decode_object(h).ok_or(TokenError::Malformed("header is not a JSON object"))?;

    let alg = match header.get("alg") {
        Some(Value::String(a)) => {
            serde_json::from_value::<CoreJwsSigningAlgorithm>(Value::String(a.clone()))
                .map_err(|_| TokenError::AlgNotAllowed)?
        }
        _ => return Err(TokenError::AlgNotAllowed),
    };
    if !is_asymmetric(&alg) || !policy.allowed_algs.contains(&alg) {
        return Err(TokenError::AlgNotAllowed);
    }
    if header.contains_key("crit") {
        return Err(TokenError::Malformed("crit header"));
    }
    if header.contains_key("cty") {
        return Err(TokenError::Malformed("nested or typed content"));
    }
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if policy.allowed_typs.contains(&normalize_typ(t).as_str()) => {}
        Some(_) => return Err(TokenError::Malformed("unexpected typ")),
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if k.chars().count() <= MAX_KID_CHARS => Some(k.clone()),
        Some(Value::String(_)) => return Err(TokenError::UnknownKid),
        Some(_) => return Err(TokenError::Malformed("kid is not a string")),
    };
    if s.is_empty() {
        return Err(TokenError::Malformed("missing signature"));
    }
    let claims = decode_object(p).ok_or(TokenError::Malformed("payload is not a JSON object"))?;
    Ok(ParsedJws {
        raw,
        alg,
        kid,
        claims,
    })
}

/// RFC 7515 §7.1 / RFC 7515 §2: unpadded base64url alphabet only.
fn is_base64url(seg: &str) -> bool {
    seg.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_object(seg: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(seg).ok()?;
    parse_json_object(&bytes).ok()
}

/// `JWT` → `application/jwt` (RFC 7515 §4.1.9: the `application/` prefix may be omitted).
fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    if lower.contains('/') {
        lower
    } else {
        format!("application/{lower}")
    }
}

/// `true` for signature algorithms with a public key: never `none`, never HMAC.
pub fn is_asymmetric(alg: &CoreJwsSigningAlgorithm) -> bool {
    use openidconnect::JwsSigningAlgorithm;
    alg.key_type().is_some() && !alg.uses_shared_secret()
}

/// What the claims must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The discovered issuer (equal to the configured one).
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce sent in the authorization request; `None` only for refresh-time ID tokens.
    pub nonce: Option<&'a str>,
}

/// `iss` must be a string equal to `issuer` (exact, case-sensitive: Core §3.1.3.7 step 2).
pub fn check_iss(claims: &Map<String, Value>, issuer: &str) -> Result<(), TokenError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == issuer => Ok(()),
        _ => Err(TokenError::IssMismatch),
    }
}

/// `aud` as a list: a string, or a non-empty array of strings (RFC 7519 §4.1.3).
pub fn audiences(claims: &Map<String, Value>) -> Result<Vec<&str>, TokenError> {
    match claims.get("aud") {
        Some(Value::String(a)) => Ok(vec![a.as_str()]),
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or(TokenError::AudMismatch),
        _ => Err(TokenError::AudMismatch),
    }
}

/// Stage 2: the claim rules of Core §3.1.3.7 on a decoded (not yet verified) payload, at `now`.
pub fn check_claims(
    claims: &Map<String, Value>,
    expected: &Expected<'_>,
    now: SystemTime,
) -> Result<(), TokenError> {
    check_iss(claims, expected.issuer)?;
    let audiences = audiences(claims)?;
    // No extra audience is trusted: every entry must be our client id.
    if audiences.iter().any(|a| *a != expected.client_id) {
        return Err(TokenError::AudMismatch);
    }
    match claims.get("azp") {
        Some(Value::String(azp)) if azp == expected.client_id => {}
        Some(_) => return Err(TokenError::AzpMismatch),
        None if audiences.len() > 1 => return Err(TokenError::AzpMismatch),
        None => {}
    }

    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let leeway = LEEWAY.as_secs_f64();
    let exp = numeric_date(claims, "exp")?.ok_or(TokenError::ClaimInvalid("exp"))?;
    if exp <= now - leeway {
        return Err(TokenError::Expired);
    }
    let iat = numeric_date(claims, "iat")?.ok_or(TokenError::ClaimInvalid("iat"))?;
    if iat < 0.0 || iat > now + leeway {
        return Err(TokenError::ClaimInvalid("iat"));
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now + leeway
    {
        return Err(TokenError::ClaimInvalid("nbf"));
    }

    match claims.get("sub") {
        Some(Value::String(sub)) if valid_sub(sub) => {}
        _ => return Err(TokenError::ClaimInvalid("sub")),
    }

    if let Some(want) = expected.nonce {
        match claims.get("nonce") {
            Some(Value::String(got))
                if !want.is_empty() && bool::from(got.as_bytes().ct_eq(want.as_bytes())) => {}
            _ => return Err(TokenError::NonceMismatch),
        }
    }
    Ok(())
}

/// A NumericDate claim (RFC 7519 §2): a finite JSON number, fractions allowed, within
/// `..=9999-12-31`. Absent → `None`; any other type or a huge value → `claim_invalid`.
pub(crate) fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() && v <= MAX_NUMERIC_DATE => Ok(Some(v)),
            _ => Err(TokenError::ClaimInvalid(name)),
        },
        Some(_) => Err(TokenError::ClaimInvalid(name)),
    }
}

/// OpenID Connect Core §2: `sub` is at most 255 ASCII characters; we also refuse control
/// characters (it becomes an HTTP header upstream) and the empty string.
pub(crate) fn valid_sub(sub: &str) -> bool {
    !sub.is_empty() && sub.len() <= MAX_SUB_CHARS && sub.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// Stage 3: signature (and openidconnect's own claim checks) with the given key set.
/// Returns [`TokenError::UnknownKid`] when no single key fits, so the caller can re-fetch.
pub fn verify_signature(
    parsed: &ParsedJws<'_>,
    keys: &CoreJsonWebKeySet,
    expected: &Expected<'_>,
    allowed_algs: &[CoreJwsSigningAlgorithm],
) -> Result<(), TokenError> {
    let token = CoreIdToken::from_str(parsed.raw)
        .map_err(|_| TokenError::ClaimInvalid("standard claim types"))?;
    let issuer = IssuerUrl::new(expected.issuer.to_owned()).map_err(|_| TokenError::IssMismatch)?;
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(expected.client_id.to_owned()),
        issuer,
        keys.clone(),
    )
    .set_allowed_algs(allowed_algs.iter().filter(|a| is_asymmetric(a)).cloned())
    .set_allowed_jose_types(
        JsonWebTokenType::new("application/jwt".to_owned())
            .normalize()
            .ok(),
    )
    .set_time_fn(|| {
        SystemTime::now()
            .checked_sub(LEEWAY)
            .unwrap_or(UNIX_EPOCH)
            .into()
    })
    .set_issue_time_verifier_fn(|iat| {
        let iat = SystemTime::from(iat);
        let limit = SystemTime::now() + LEEWAY;
        if iat > limit {
            Err("issued in the future".to_owned())
        } else {
            Ok(())
        }
    });
    let result = match expected.nonce {
        Some(n) => token
            .claims(&verifier, &Nonce::new(n.to_owned()))
            .map(|_| ()),
        None => token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map(|_| ()),
    };
    result.map_err(map_claims_error)
}

/// Stage 3 for JWTs that are not ID tokens (bearer access tokens): the signature alone, with
/// the one key of `keys` that fits the token's `kid` and `alg` — the same key-selection rule as
/// openidconnect applies to ID tokens (a `kid` must match; without one, exactly one compatible
/// key; a key whose `use` is not `sig` or whose `alg` differs never fits). The claims are the
/// caller's business (checked before this, so garbage never costs a signature check).
/// Returns [`TokenError::UnknownKid`] when no single key fits, so the caller can re-fetch.
pub fn verify_jws_signature(
    parsed: &ParsedJws<'_>,
    keys: &CoreJsonWebKeySet,
) -> Result<(), TokenError> {
    use openidconnect::{JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyUse, JwsSigningAlgorithm};
    if !is_asymmetric(&parsed.alg) {
        return Err(TokenError::AlgNotAllowed);
    }
    let want_type = parsed.alg.key_type();
    let mut fitting = keys.keys().iter().filter(|k| {
        let kid_fits = match &parsed.kid {
            Some(kid) => k.key_id().is_some_and(|id| id.as_str() == kid),
            None => true,
        };
        kid_fits
            && k.key_use().is_none_or(|u| u.allows_signature())
            && want_type.as_ref() == Some(k.key_type())
            && match k.signing_alg() {
                JsonWebKeyAlgorithm::Unspecified => true,
                JsonWebKeyAlgorithm::Algorithm(a) => *a == parsed.alg,
                JsonWebKeyAlgorithm::Unsupported => false,
            }
    });
    let (Some(key), None) = (fitting.next(), fitting.next()) else {
        return Err(TokenError::UnknownKid);
    };
    let (input, signature) = parsed
        .raw
        .rsplit_once('.')
        .ok_or(TokenError::Malformed("not a compact JWS"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed("not base64url"))?;
    key.verify_signature(&parsed.alg, input.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)
}

fn map_claims_error(err: ClaimsVerificationError) -> TokenError {
    match err {
        ClaimsVerificationError::Expired(_) => TokenError::Expired,
        ClaimsVerificationError::InvalidAudience(_) => TokenError::AudMismatch,
        ClaimsVerificationError::InvalidIssuer(_) => TokenError::IssMismatch,
        ClaimsVerificationError::InvalidNonce(_) => TokenError::NonceMismatch,
        ClaimsVerificationError::InvalidSubject(_) => TokenError::ClaimInvalid("sub"),
        ClaimsVerificationError::Unsupported(_) => TokenError::Malformed("unsupported JOSE header"),
        ClaimsVerificationError::SignatureVerification(sig) => match sig {
            SignatureVerificationError::NoMatchingKey
            | SignatureVerificationError::AmbiguousKeyId(_) => TokenError::UnknownKid,
            SignatureVerificationError::DisallowedAlg(_)
            | SignatureVerificationError::UnsupportedAlg(_)
            | SignatureVerificationError::NoSignature => TokenError::AlgNotAllowed,
            _ => TokenError::BadSignature,
        },
        _ => TokenError::ClaimInvalid("claims"),
    }
}

/// Core §3.1.3.8 / §3.3.2.11: when `at_hash` is present it must be the base64url left half of
/// the access token's hash under the hash of the token's `alg`; compared in constant time.
pub fn check_at_hash(
    claims: &Map<String, Value>,
    alg: &CoreJwsSigningAlgorithm,
    access_token: &str,
) -> Result<(), TokenError> {
    let Some(claimed) = claims.get("at_hash") else {
        return Ok(());
    };
    let Value::String(claimed) = claimed else {
        return Err(TokenError::AtHashMismatch);
    };
    let digest_alg = match alg {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
        | CoreJwsSigningAlgorithm::RsaSsaPssSha256
        | CoreJwsSigningAlgorithm::EcdsaP256Sha256 => &ring::digest::SHA256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384
        | CoreJwsSigningAlgorithm::RsaSsaPssSha384
        | CoreJwsSigningAlgorithm::EcdsaP384Sha384 => &ring::digest::SHA384,
        // EdDSA is Ed25519 here, whose hash is SHA-512.
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512
        | CoreJwsSigningAlgorithm::RsaSsaPssSha512
        | CoreJwsSigningAlgorithm::EcdsaP521Sha512
        | CoreJwsSigningAlgorithm::EdDsa => &ring::digest::SHA512,
        _ => return Err(TokenError::AtHashMismatch),
    };
    let digest = ring::digest::digest(digest_alg, access_token.as_bytes());
    let half = &digest.as_ref()[..digest.as_ref().len() / 2];
    let want = URL_SAFE_NO_PAD.encode(half);
    if bool::from(want.as_bytes().ct_eq(claimed.as_bytes())) {
        Ok(())
    } else {
        Err(TokenError::AtHashMismatch)
    }
}

/// Parses `bytes` as one JSON object, refusing duplicate member names at any depth (RFC 8259
/// §4 leaves them undefined; RFC 7519 §4 says reject or take the last — we reject so nothing
/// signed over one value can be read as another). serde_json's recursion limit applies.
pub fn parse_json_object(bytes: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    match serde_json::from_slice::<StrictValue>(bytes)?.0 {
        Value::Object(map) => Ok(map),
        _ => Err(de::Error::custom("not a JSON object")),
    }
}

/// A `serde_json::Value` whose objects may not repeat a member name.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<StrictValue, E> {
        serde_json::Number::from_f64(v)
            .map(|n| StrictValue(Value::Number(n)))
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(StrictValue(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom("duplicate member"));
            }
        }
        Ok(StrictValue(Value::Object(out)))
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
