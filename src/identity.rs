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
    pub claims: serde_json::Map<String, serde_json::Value>,
}
