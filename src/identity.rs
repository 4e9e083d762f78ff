//! The verified identity of a user: what policy decides on and identity headers carry.
//!
//! A session holds one for its whole lifetime, a million of them in a large store, so the
//! optional strings are `Box<str>` (no spare capacity) and the groups are packed into one
//! allocation ([`Groups`]).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Claims of a verified ID token, completed from userinfo (SPEC "Claims").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The ID token's `sub`; always present, never from userinfo.
    pub sub: String,
    pub email: Option<Box<str>>,
    /// `Some(true)` only for a JSON boolean `true`; a string `"true"` is `None`.
    pub email_verified: Option<bool>,
    pub preferred_username: Option<Box<str>>,
    /// The `groups_claim` values (a JSON string claim counts as a one-element list).
    pub groups: Groups,
    /// Every verified claim (ID token first, userinfo filling gaps), for `[headers.claims]`.
    /// A stored session keeps only the claims `[headers.claims]` names (see [`Identity::retain_claims`]).
    pub claims: Claims,
}

impl Identity {
    /// Keeps only the claims in `wanted`: a session does not carry a second copy of the
    /// whole ID token payload (the token itself is kept) — about 1 KiB less per session.
    pub fn retain_claims<'a>(&mut self, wanted: impl IntoIterator<Item = &'a str> + Clone) {
        self.claims
            .retain(|k| wanted.clone().into_iter().any(|w| w == k));
    }
}

/// Claims as a plain list in the order received, serialised as a JSON object. A stored
/// session keeps only the few `[headers.claims]` names (usually none): one exact-size
/// allocation for them instead of a `serde_json::Map`'s ~640-byte B-tree node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims(Vec<(Box<str>, serde_json::Value)>);

impl Claims {
    /// The value of claim `name`.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0.iter().find(|(k, _)| &**k == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }

    /// Keeps the claims whose name passes `keep`, releasing unused capacity.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(k, _)| keep(k));
        self.0.shrink_to_fit();
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for Claims {
    fn from(map: serde_json::Map<String, serde_json::Value>) -> Self {
        Claims(map.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl std::ops::Index<&str> for Claims {
    type Output = serde_json::Value;

    /// Like `serde_json::Map`'s index: panics when the claim is missing (tests only).
    fn index(&self, name: &str) -> &serde_json::Value {
        self.get(name)
            .unwrap_or_else(|| panic!("no claim {name:?}"))
    }
}

impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Map::deserialize(d).map(Claims::from)
    }
}

/// A list of group names in one allocation: each name as its decimal byte length, `:`, and
/// the name itself (`"5:staff3:eng"`), so any name — even one holding `,`, `:` or a newline —
/// reads back exactly. Four typical groups take one 64-byte heap chunk instead of five
/// (a `Vec<String>`: ~240 bytes).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Groups(Box<str>);

impl Groups {
    /// The names, in order.
    pub fn iter(&self) -> GroupsIter<'_> {
        GroupsIter(&self.0)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `name` is one of the groups (exact comparison).
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|g| g == name)
    }

    /// The names joined with `sep`.
    pub fn join(&self, sep: &str) -> String {
        self.iter().collect::<Vec<_>>().join(sep)
    }
}

/// The names of a [`Groups`], in order.
pub struct GroupsIter<'a>(&'a str);

impl<'a> Iterator for GroupsIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        // Only `FromIterator` builds the text, so it always parses; anything else ends the list.
        let (len, rest) = self.0.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let (name, rest) = (rest.get(..len)?, rest.get(len..)?);
        self.0 = rest;
        Some(name)
    }
}

impl<'a> IntoIterator for &'a Groups {
    type Item = &'a str;
    type IntoIter = GroupsIter<'a>;

    fn into_iter(self) -> GroupsIter<'a> {
        self.iter()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Groups {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> Self {
        let mut packed = String::new();
        for name in names {
            let name = name.as_ref();
            packed.push_str(&name.len().to_string());
            packed.push(':');
            packed.push_str(name);
        }
        Groups(packed.into_boxed_str())
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for Groups {
    fn eq(&self, other: &[S; N]) -> bool {
        self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for Groups {
    fn eq(&self, other: &Vec<S>) -> bool {
        self.iter().eq(other.iter().map(AsRef::as_ref))
    }
}

impl fmt::Debug for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Groups {
    fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Groups {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<String>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_claims_keeps_only_the_named_ones() {
        let mut id = Identity::default();
        let mut map = serde_json::Map::new();
        for (k, v) in [
            ("tenant", "t1"),
            ("iss", "https://idp"),
            ("nonce", "n"),
            ("team", "x"),
        ] {
            map.insert(k.into(), v.into());
        }
        id.claims = map.into();
        id.retain_claims(["tenant", "team"]);
        let mut keys: Vec<&str> = id.claims.iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, ["team", "tenant"]);
        assert_eq!(id.claims["tenant"], "t1");
        assert_eq!(id.claims.get("iss"), None);
        // Serialised as a JSON object, and back.
        let json = serde_json::to_value(&id.claims).unwrap();
        assert_eq!(json, serde_json::json!({"team": "x", "tenant": "t1"}));
        let back: Claims = serde_json::from_value(json).unwrap();
        assert_eq!(back.len(), 2);
        id.retain_claims(std::iter::empty());
        assert!(id.claims.is_empty());
    }

    #[test]
    fn groups_read_back_exactly() {
        let cases: [&[&str]; 6] = [
            &[],
            &["eng"],
            &["staff", "engineering", "vpn-users", "team-42"],
            &["", "a:b", "12:x", "x,admins", "eng\nadmins", "é"],
            &["", ""],
            &["9:", ":", "0:"],
        ];
        for names in cases {
            let groups: Groups = names.iter().collect();
            assert_eq!(groups.iter().collect::<Vec<_>>(), names, "{names:?}");
            assert_eq!(groups.len(), names.len());
            assert_eq!(groups.is_empty(), names.is_empty());
            assert_eq!(groups.join(", "), names.join(", "));
            for n in names {
                assert!(groups.contains(n));
            }
            assert!(!groups.contains("absent"));
            let json = serde_json::to_string(&groups).unwrap();
            assert_eq!(json, serde_json::to_string(names).unwrap());
            assert_eq!(serde_json::from_str::<Groups>(&json).unwrap(), groups);
            assert_eq!(format!("{groups:?}"), format!("{names:?}"));
        }
        let long = "g".repeat(1000);
        let groups: Groups = [long.as_str(), "x"].into_iter().collect();
        assert_eq!(groups, [long.as_str(), "x"]);
    }
}
