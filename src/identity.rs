//! The verified identity of a user: what policy decides on and identity headers carry.

use serde::{Deserialize, Serialize};

/// Claims of a verified ID token, completed from userinfo (SPEC "Claims").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The ID token's `sub`; always present, never from userinfo.
    pub sub: String,
    pub email: Option<String>,
    /// `Some(true)` only for a JSON boolean `true`; a string `"true"` is `None`.
    pub email_verified: Option<bool>,
    pub preferred_username: Option<String>,
    /// The `groups_claim` values (a JSON string claim counts as a one-element list).
    pub groups: Vec<String>,
    /// Every verified claim (ID token first, userinfo filling gaps), for `[headers.claims]`.
    /// A stored session keeps only the claims `[headers.claims]` names (see [`Identity::retain_claims`]).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    /// Keeps only the claims in `wanted`: a session does not carry a second copy of the
    /// whole ID token payload (the token itself is kept) — about 1 KiB less per session.
    pub fn retain_claims<'a>(&mut self, wanted: impl IntoIterator<Item = &'a str> + Clone) {
        self.claims
            .retain(|k, _| wanted.clone().into_iter().any(|w| w == k));
        if self.claims.is_empty() {
            // An emptied map still holds its (~640-byte) root node; a new one allocates nothing.
            self.claims = serde_json::Map::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_claims_keeps_only_the_named_ones() {
        let mut id = Identity::default();
        for (k, v) in [
            ("tenant", "t1"),
            ("iss", "https://idp"),
            ("nonce", "n"),
            ("team", "x"),
        ] {
            id.claims.insert(k.into(), v.into());
        }
        id.retain_claims(["tenant", "team"]);
        let mut keys: Vec<&str> = id.claims.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["team", "tenant"]);
        id.retain_claims(std::iter::empty());
        assert!(id.claims.is_empty());
    }
}
