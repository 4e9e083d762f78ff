//! Server-side sessions: the opaque [`SessionId`] a browser holds, and the [`Session`] it
//! names (identity and tokens), kept in a store the browser never sees (SPEC "Cookies": "the
//! browser never holds tokens").
//!
//! The id follows the OWASP Session Management Cheat Sheet ("Session ID Entropy"): 256 bits
//! from the operating system's CSPRNG, encoded as base64url without padding (RFC 4648 §5),
//! carrying no claims or structure. It travels sealed inside the session cookie
//! ([`cookie`]); the store ([`memory`]) enforces the absolute `lifetime` and the
//! `idle_timeout` on the server (SECURITY SES-05), whatever the client does with `Max-Age`.

pub mod cookie;
pub mod memory;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use crate::identity::Identity;
use crate::secret::Secret;
pub use cookie::{NoSession, SessionCookies, strip_own_cookies};
pub use memory::MemoryStore;

/// Random bytes in a session id (256 bits).
const ID_BYTES: usize = 32;
/// Length of the base64url (unpadded) encoding of [`ID_BYTES`].
pub const ID_LEN: usize = 43;

/// An opaque session id: 32 bytes from the CSPRNG, held as the bytes themselves (no heap;
/// the store keys on them) and spelled base64url without padding (43 chars) only where it
/// leaves the process, sealed in the cookie ([`encode`](Self::encode)).
///
/// `Debug` never shows the value (it is a bearer credential); equality is constant-time.
#[derive(Clone)]
pub struct SessionId([u8; ID_BYTES]);

impl SessionId {
    /// A fresh id from [`SystemRandom`].
    ///
    /// # Panics
    ///
    /// If the operating system's random generator fails: handing out a guessable id would be
    /// worse than stopping (the `cookie` crate's own sealing makes the same choice).
    pub fn generate() -> Self {
        let mut bytes = [0u8; ID_BYTES];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the operating system's random generator failed");
        SessionId(bytes)
    }

    /// The base64url text (what the cookie seals; [`parse`](Self::parse) reads it back).
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Accepts exactly the shape [`encode`](Self::encode) produces: 43 base64url characters
    /// that decode canonically to 32 bytes. Anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != ID_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        // Rejects non-canonical trailing bits, so one id has exactly one spelling.
        // Room for base64's decoded-length estimate (a multiple of 3), not just the 32 bytes.
        let mut buf = [0u8; ID_BYTES + 4];
        let n = URL_SAFE_NO_PAD.decode_slice(s, &mut buf).ok()?;
        let bytes: [u8; ID_BYTES] = buf.get(..n)?.try_into().ok()?;
        Some(SessionId(bytes))
    }
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SessionId {}

impl Hash for SessionId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

/// One logged-in browser: who it is and the tokens obtained at login (or the last refresh).
#[derive(Clone)]
pub struct Session {
    /// The store key; a new one on every login (SECURITY SES-03).
    pub id: SessionId,
    /// The verified identity policy and identity headers work from.
    pub identity: Identity,
    /// The raw ID token (for `id_token_hint` and `Authorization: Bearer` upstream).
    pub id_token: Secret,
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// The IdP session id (`sid` claim), for back-channel logout.
    pub sid: Option<Box<str>>,
    /// Login time: the absolute lifetime counts from here.
    pub created_at: SystemTime,
    /// `created_at + lifetime`: past it the session does not exist, whatever the cache says.
    pub expires_at: SystemTime,
}

impl Session {
    /// Time left before `expires_at`, zero once it has passed.
    pub fn remaining_lifetime(&self, now: SystemTime) -> Duration {
        self.expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }

    /// Whether the absolute lifetime is over at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expires_at
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("sub", &self.identity.sub)
            .field("id_token", &self.id_token)
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("sid", &self.sid)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn generated_ids_are_unique_43_char_base64url() {
        let ids: HashSet<String> = (0..10_000)
            .map(|_| SessionId::generate().encode())
            .collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert_eq!(id.len(), ID_LEN);
            assert!(SessionId::parse(id).is_some(), "{id}");
        }
    }

    #[test]
    fn parse_accepts_only_the_generated_shape() {
        let good = SessionId::generate();
        let encoded = good.encode();
        assert_eq!(SessionId::parse(&encoded), Some(good.clone()));
        let s = encoded.as_str();
        let cases: Vec<String> = vec![
            String::new(),
            s[..42].to_owned(),
            format!("{s}A"),
            format!("{}=", &s[..42]),
            format!("{}+", &s[..42]),
            format!("{}/", &s[..42]),
            format!("{} ", &s[..42]),
            format!("{}é", &s[..41]),
            // 43 chars whose last one carries non-zero trailing bits: not canonical.
            format!("{}B", "A".repeat(42)),
        ];
        for case in cases {
            assert!(SessionId::parse(&case).is_none(), "{case:?}");
        }
        assert!(SessionId::parse(&"A".repeat(43)).is_some());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let id = SessionId::generate();
        let session = Session {
            id: id.clone(),
            identity: Identity {
                sub: "u-alice".into(),
                ..Identity::default()
            },
            id_token: "ID-TOKEN-SECRET".into(),
            access_token: "ACCESS-TOKEN-SECRET".into(),
            refresh_token: Some("REFRESH-TOKEN-SECRET".into()),
            sid: Some("idp-sid".into()),
            created_at: SystemTime::UNIX_EPOCH,
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(60),
        };
        let shown = format!("{session:?} {id:?}");
        for secret in [
            id.encode().as_str(),
            "ID-TOKEN-SECRET",
            "ACCESS-TOKEN-SECRET",
            "REFRESH-TOKEN-SECRET",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("u-alice") && shown.contains("idp-sid"));
    }

    #[test]
    fn lifetime_arithmetic() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let s = Session {
            id: SessionId::generate(),
            identity: Identity::default(),
            id_token: String::new().into(),
            access_token: String::new().into(),
            refresh_token: None,
            sid: None,
            created_at: t0,
            expires_at: t0 + Duration::from_secs(10),
        };
        assert_eq!(s.remaining_lifetime(t0), Duration::from_secs(10));
        assert_eq!(
            s.remaining_lifetime(t0 + Duration::from_secs(11)),
            Duration::ZERO
        );
        assert!(!s.is_expired(t0 + Duration::from_secs(9)));
        assert!(s.is_expired(t0 + Duration::from_secs(10)));
    }
}
