//! Secrets and tokens as values that cannot reach a formatter by accident.
//!
//! [`Secret`] wraps the client secret, the Redis URL and every token portcullis holds (ID,
//! access and refresh tokens in sessions and login outcomes). Its `Debug` prints
//! `Secret([redacted])`, it has no `Display`, and the value is only reachable through
//! [`Secret::expose`], which marks the few places that send or use it. Equality is
//! constant-time.

use std::fmt;

use subtle::ConstantTimeEq;

/// A secret string: never printed.
///
/// Held as a `Box<str>`: exactly the token's bytes, no spare capacity, 16 bytes inline
/// (a session holds three).
#[derive(Clone)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into().into_boxed_str())
    }

    /// The secret itself; call only where it is sent or used as key material.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (for size accounting; reveals nothing else).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.into())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s.into_boxed_str())
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_eq_compares() {
        let s = Secret::new("hunter2-token");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret([redacted]))");
        assert_eq!(s, Secret::new("hunter2-token"));
        assert_ne!(s, Secret::new("hunter2-tokeN"));
        assert_eq!(s.expose(), "hunter2-token");
    }
}
