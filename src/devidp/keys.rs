//! Signing keys of the development provider and their JWK form.
//!
//! ES256 keys (RFC 7518 §3.4) are P-256 keys generated at start with ring; the JWK carries the
//! affine coordinates `x`/`y` of the uncompressed public point (RFC 7518 §6.2.1). ring cannot
//! generate RSA keys, so RS256 (RFC 7518 §3.3) uses the committed, public, development-only
//! fixtures in `keys/`; the JWK carries the big-endian modulus `n` and exponent `e` without
//! leading zeros (RFC 7518 §6.3.1).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{Value, json};

use super::jwt::b64url;

/// The RS256 rotation cycle: public, development-only keys (see `keys/README.md`).
const RSA_FIXTURES: [&str; 3] = [
    include_str!("keys/dev-rsa-1.pem"),
    include_str!("keys/dev-rsa-2.pem"),
    include_str!("keys/dev-rsa-3.pem"),
];

/// Never published in the JWKS: signs `Signing::WrongKey`/`UnknownKid` tokens.
const RSA_ROGUE: &str = include_str!("keys/dev-rsa-rogue.pem");

/// Number of RS256 fixture keys in the rotation cycle.
pub const RSA_FIXTURE_COUNT: usize = RSA_FIXTURES.len();

/// The JWS algorithm of the provider's signing keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// ECDSA P-256 with SHA-256 (a fresh key per start and per rotation).
    #[default]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (committed fixture keys).
    Rs256,
}

impl KeyAlg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlg::Es256 => "ES256",
            KeyAlg::Rs256 => "RS256",
        }
    }
}

/// Errors creating or using a signing key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// ring could not generate a key.
    #[error("key generation failed")]
    Generate,
    /// A PKCS#8 document was rejected.
    #[error("key rejected: {0}")]
    Rejected(String),
    /// A fixture PEM file is malformed.
    #[error("malformed fixture pem")]
    Pem,
    /// ring failed to sign.
    #[error("signing failed")]
    Sign,
}

enum KeyInner {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

/// A private signing key with its `kid`.
pub struct SigningKey {
    kid: String,
    inner: KeyInner,
}

// === impl SigningKey ===

impl SigningKey {
    /// Generates a fresh P-256 key.
    pub fn generate_es256(kid: impl Into<String>) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| KeyError::Generate)?;
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self {
            kid: kid.into(),
            inner: KeyInner::Es256(pair),
        })
    }

    /// Loads RS256 fixture key `index % RSA_FIXTURE_COUNT`.
    pub fn rs256_fixture(index: usize, kid: impl Into<String>) -> Result<Self, KeyError> {
        Self::rs256_from_pem(RSA_FIXTURES[index % RSA_FIXTURES.len()], kid)
    }

    /// Loads the RS256 key that is never published in the JWKS.
    pub fn rs256_rogue(kid: impl Into<String>) -> Result<Self, KeyError> {
        Self::rs256_from_pem(RSA_ROGUE, kid)
    }

    /// Builds a key of `alg`: generated for ES256, fixture `index` for RS256.
    pub fn new(alg: KeyAlg, index: usize, kid: impl Into<String>) -> Result<Self, KeyError> {
        match alg {
            KeyAlg::Es256 => Self::generate_es256(kid),
            KeyAlg::Rs256 => Self::rs256_fixture(index, kid),
        }
    }

    /// Builds a key of `alg` that is never part of the rotation cycle.
    pub fn rogue(alg: KeyAlg, kid: impl Into<String>) -> Result<Self, KeyError> {
        match alg {
            KeyAlg::Es256 => Self::generate_es256(kid),
            KeyAlg::Rs256 => Self::rs256_rogue(kid),
        }
    }

    fn rs256_from_pem(pem: &str, kid: impl Into<String>) -> Result<Self, KeyError> {
        let der = pem_to_der(pem)?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self {
            kid: kid.into(),
            inner: KeyInner::Rs256(pair),
        })
    }

    /// The key id published in the JWKS and put in JOSE headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWS algorithm this key signs with.
    pub fn alg(&self) -> KeyAlg {
        match self.inner {
            KeyInner::Es256(_) => KeyAlg::Es256,
            KeyInner::Rs256(_) => KeyAlg::Rs256,
        }
    }

    /// The public JWK (RFC 7517 §4) with `kid`, `use: "sig"` and `alg`.
    pub fn jwk(&self) -> Value {
        match &self.inner {
            KeyInner::Es256(pair) => {
                // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = pair.public_key().as_ref();
                let coords = point.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(coords.len() / 2);
                json!({
                    "kty": "EC", "crv": "P-256", "x": b64url(x), "y": b64url(y),
                    "kid": self.kid, "use": "sig", "alg": "ES256",
                })
            }
            KeyInner::Rs256(pair) => {
                let parts = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({
                    "kty": "RSA", "n": b64url(&parts.n), "e": b64url(&parts.e),
                    "kid": self.kid, "use": "sig", "alg": "RS256",
                })
            }
        }
    }

    /// Signs `msg`: a fixed-width `r || s` ECDSA signature (RFC 7518 §3.4) or PKCS#1 v1.5.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.inner {
            KeyInner::Es256(pair) => pair
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
            KeyInner::Rs256(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

/// Decodes the `PRIVATE KEY` block of a PEM file (explanatory text before it is allowed,
/// RFC 7468 §2).
fn pem_to_der(pem: &str) -> Result<Vec<u8>, KeyError> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let start = pem.find(BEGIN).ok_or(KeyError::Pem)? + BEGIN.len();
    let len = pem[start..].find(END).ok_or(KeyError::Pem)?;
    let b64: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(b64).map_err(|_| KeyError::Pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rsa_fixture_loads_and_is_distinct() {
        let mut moduli = Vec::new();
        for i in 0..RSA_FIXTURE_COUNT {
            let key = SigningKey::rs256_fixture(i, format!("k{i}")).expect("fixture");
            assert_eq!(key.alg(), KeyAlg::Rs256);
            moduli.push(key.jwk()["n"].as_str().expect("n").to_owned());
        }
        moduli.push(
            SigningKey::rs256_rogue("r").expect("rogue").jwk()["n"]
                .as_str()
                .expect("n")
                .to_owned(),
        );
        let mut dedup = moduli.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), moduli.len());
    }

    #[test]
    fn jwk_shapes() {
        let ec = SigningKey::generate_es256("e1").expect("es256").jwk();
        assert_eq!(ec["kty"], "EC");
        assert_eq!(ec["crv"], "P-256");
        assert_eq!(ec["x"].as_str().expect("x").len(), 43);
        assert_eq!(ec["y"].as_str().expect("y").len(), 43);
        assert_eq!(
            (ec["kid"].as_str(), ec["use"].as_str(), ec["alg"].as_str()),
            (Some("e1"), Some("sig"), Some("ES256"))
        );

        let rsa = SigningKey::rs256_fixture(0, "r1").expect("rs256").jwk();
        assert_eq!(rsa["kty"], "RSA");
        assert_eq!(rsa["e"], "AQAB");
        assert_eq!(rsa["n"].as_str().expect("n").len(), 342); // 256 bytes
        assert_eq!(rsa["alg"], "RS256");
    }

    #[test]
    fn pem_errors_are_reported() {
        assert!(matches!(pem_to_der("nothing here"), Err(KeyError::Pem)));
        assert!(matches!(
            pem_to_der("-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"),
            Err(KeyError::Pem)
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = SigningKey::rs256_fixture(1, "kid-1").expect("fixture");
        let dbg = format!("{key:?}");
        assert!(dbg.contains("kid-1") && dbg.contains("Rs256"));
        assert!(dbg.len() < 80);
    }
}
