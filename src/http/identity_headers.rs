//! Identity headers: scrubbing the client's copies and building safe values.
//!
//! SPEC ("Always, on every route, public ones included, before forwarding"):
//! identity headers the client sent are removed, compared on normalised names
//! (case-insensitive, `_` and `.` equal to `-`), because back ends alias those
//! spellings (CGI/WSGI turn `X_Auth_Request_User` and `X-Auth-Request-User`
//! into the same `HTTP_X_AUTH_REQUEST_USER`). RFC 9700 §4.13: a reverse proxy
//! "MUST sanitize any inbound requests". A client header is removed even when
//! the user has no value for it.
//!
//! Protected names are every configured identity header, every
//! `X-Auth-Request-*`, and oauth2-proxy's `X-Forwarded-User`, `-Email`,
//! `-Groups`, `-Preferred-Username` and `-Access-Token` (apps migrated from
//! oauth2-proxy trust those). `Authorization` is the caller's business.
//! [`IdentityScrubber::scrub`] works on any [`HeaderMap`], so it is also the
//! tool for request trailers (RFC 9110 §6.5; Traefik GHSA-v67p-phpq-fc8x).
//!
//! Values (RFC 9110 §5.5: CR, LF and NUL are invalid in a field value; §5.6.1:
//! lists are comma-separated):
//! - [`claim_header_value`] refuses any control character (TAB included) and
//!   values over 8 KiB, and percent-encodes (RFC 3986 §2.1, upper-case hex)
//!   every byte outside visible ASCII, plus `%` itself and a leading or
//!   trailing space. ASCII values without `%` and without edge spaces pass
//!   unchanged (`alice@example.com`); `Zoë` becomes `Zo%C3%AB`; any value
//!   percent-decodes back to the exact UTF-8 claim.
//! - [`groups_header_value`] joins group names with `,` and leaves out (never
//!   escapes) a name that could be read as something else: a `,`, a control
//!   character, a byte outside ASCII, an empty name or one with a leading or
//!   trailing space. The list is capped at 256 names and 8 KiB.

use std::borrow::Cow;
use std::collections::HashSet;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Every name with this normalised prefix is protected.
const AUTH_REQUEST_PREFIX: &str = "x-auth-request-";

/// oauth2-proxy's identity headers (normalised), protected for migrated apps.
const OAUTH2_PROXY_NAMES: [&str; 5] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
];

/// Largest header value [`claim_header_value`] and [`groups_header_value`]
/// produce, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Most group names [`groups_header_value`] puts in one header.
pub const MAX_GROUPS: usize = 256;

/// Normalises a field name for comparison: ASCII lower-case, with `_` and `.`
/// mapped to `-`.
pub fn normalise_name(name: &str) -> Cow<'_, str> {
    // Parsed field names are already lower-case with `-`: no copy on the hot path.
    if !name
        .bytes()
        .any(|b| matches!(b, b'_' | b'.') || b.is_ascii_uppercase())
    {
        return Cow::Borrowed(name);
    }
    Cow::Owned(
        name.chars()
            .map(|c| match c {
                '_' | '.' => '-',
                c => c.to_ascii_lowercase(),
            })
            .collect(),
    )
}

/// Decides which client fields are identity headers and removes them.
///
/// Built once at start-up from the configured identity header names.
#[derive(Debug, Clone)]
pub struct IdentityScrubber {
    /// Normalised configured names plus the oauth2-proxy names.
    names: HashSet<String>,
}

// === impl IdentityScrubber ===

impl IdentityScrubber {
    /// `configured`: every configured identity header name (user, email,
    /// preferred_username, groups, access_token and the `[headers.claims]`
    /// names). `Authorization` is not included: the caller handles it.
    pub fn new(configured: &[HeaderName]) -> Self {
        let names = configured
            .iter()
            .map(|n| normalise_name(n.as_str()).into_owned())
            .chain(OAUTH2_PROXY_NAMES.iter().map(|n| (*n).to_owned()))
            .collect();
        Self { names }
    }

    /// True when `name`, normalised, is a configured name, an
    /// `x-auth-request-*` name or one of oauth2-proxy's identity headers.
    pub fn is_protected(&self, name: &str) -> bool {
        let n = normalise_name(name);
        n.starts_with(AUTH_REQUEST_PREFIX) || self.names.contains(n.as_ref())
    }

    /// Removes every protected field (all lines of each) from `headers` and
    /// returns how many field lines were removed. Works on trailers too.
    pub fn scrub(&self, headers: &mut HeaderMap) -> usize {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| self.is_protected(k.as_str()))
            .cloned()
            .collect();
        let mut removed = 0;
        for name in doomed {
            if let http::header::Entry::Occupied(e) = headers.entry(name) {
                removed += e.remove_entry_mult().1.count();
            }
        }
        removed
    }
}

/// The groups header value built by [`groups_header_value`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupsValue {
    /// The comma-joined names; `None` when no name could be included.
    pub value: Option<HeaderValue>,
    /// How many names were left out because they were unsafe in the list
    /// (the caller logs it; the names still count for the policy).
    pub skipped: usize,
    /// True when the count or size cap dropped names (the caller logs a WARN).
    pub truncated: bool,
}

/// Formats a group list for the groups header: names joined with `,` (no
/// space), in the order given.
///
/// A name is left out (counted in `skipped`) when it is empty, contains `,`, a
/// control character or a non-ASCII character, or starts or ends with a space
/// (list parsers trim it, RFC 9110 §5.6.1, which could turn ` admins` into
/// `admins`). Spaces inside a name are kept (`Domain Users`). At most
/// [`MAX_GROUPS`] names and [`MAX_VALUE_BYTES`] bytes are included; the rest
/// are dropped and `truncated` is set.
pub fn groups_header_value(groups: impl IntoIterator<Item = impl AsRef<str>>) -> GroupsValue {
    let mut joined = String::new();
    let mut included = 0;
    let mut skipped = 0;
    let mut truncated = false;
    for name in groups {
        let name = name.as_ref();
        if !is_safe_group_name(name) {
            skipped += 1;
            continue;
        }
        let extra = name.len() + usize::from(included > 0);
        if included == MAX_GROUPS || joined.len() + extra > MAX_VALUE_BYTES {
            truncated = true;
            break;
        }
        if included > 0 {
            joined.push(',');
        }
        joined.push_str(name);
        included += 1;
    }
    let value = if included == 0 {
        None
    } else {
        HeaderValue::from_str(&joined).ok()
    };
    GroupsValue {
        value,
        skipped,
        truncated,
    }
}

/// A group name that cannot be misread inside a comma-joined list.
fn is_safe_group_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(' ')
        && !name.ends_with(' ')
        && name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b',')
}

/// A header value for one claim string.
///
/// `None` when the claim contains any control character (CR, LF, NUL, TAB,
/// DEL, C1 controls) or the encoded value is longer than [`MAX_VALUE_BYTES`].
/// Otherwise every byte outside visible ASCII, every `%`, and a space at
/// the start or end is percent-encoded per RFC 3986 §2.1 (`Zoë` →
/// `Zo%C3%AB`, `100%` → `100%25`); everything else passes unchanged. An empty
/// claim gives an empty value.
pub fn claim_header_value(s: &str) -> Option<HeaderValue> {
    if s.chars().any(char::is_control) {
        return None;
    }
    let last = s.len().saturating_sub(1);
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        let edge_space = b == b' ' && (i == 0 || i == last);
        if b.is_ascii_graphic() && b != b'%' || b == b' ' && !edge_space {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        if out.len() > MAX_VALUE_BYTES {
            return None;
        }
    }
    HeaderValue::from_str(&out).ok()
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;

    fn hn(s: &str) -> HeaderName {
        HeaderName::from_bytes(s.as_bytes()).expect("test name")
    }

    fn configured() -> IdentityScrubber {
        IdentityScrubber::new(&[
            hn("X-Auth-Request-User"),
            hn("X-Auth-Request-Email"),
            hn("X-Auth-Request-Preferred-Username"),
            hn("X-Auth-Request-Groups"),
            hn("X-Auth-Request-Access-Token"),
            hn("X-Tenant"),
            hn("Remote_User"),
        ])
    }

    #[test]
    fn normalise_name_table() {
        let cases = [
            ("X-Auth-Request-User", "x-auth-request-user"),
            ("X_Auth_Request_User", "x-auth-request-user"),
            ("x.auth.request.user", "x-auth-request-user"),
            ("X-AUTH_REQUEST.USER", "x-auth-request-user"),
            ("x--y", "x--y"),
            ("", ""),
            ("ÜN_ÏCODE", "Ün-Ïcode"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise_name(input), want, "{input}");
        }
    }

    #[test]
    fn is_protected_table() {
        let s = configured();
        let cases = [
            // configured names, any spelling
            ("X-Auth-Request-User", true),
            ("x_auth_request_user", true),
            ("X.AUTH.REQUEST.USER", true),
            ("X-Tenant", true),
            ("x_tenant", true),
            ("X.Tenant", true),
            ("remote-user", true),
            ("REMOTE_USER", true),
            // any X-Auth-Request-*
            ("X-Auth-Request-Anything", true),
            ("x_auth_request_redirect", true),
            ("x.auth.request.whatever.else", true),
            // oauth2-proxy names
            ("X-Forwarded-User", true),
            ("x_forwarded_email", true),
            ("X.Forwarded.Groups", true),
            ("X-Forwarded-Preferred-Username", true),
            ("x-forwarded-access_token", true),
            // not protected
            ("X-Auth-Request", false),
            ("X-Auth-Requests-User", false),
            ("X-Forwarded-For", false),
            ("X-Forwarded-Host", false),
            ("X-Tenants", false),
            ("Tenant", false),
            ("Authorization", false),
            ("Cookie", false),
            ("x-user", false),
        ];
        for (name, want) in cases {
            assert_eq!(s.is_protected(name), want, "{name}");
        }
    }

    #[test]
    fn oauth2_proxy_names_protected_without_configuration() {
        let s = IdentityScrubber::new(&[]);
        assert!(s.is_protected("X-Forwarded-User"));
        assert!(s.is_protected("X-Auth-Request-User"));
        assert!(!s.is_protected("X-Tenant"));
    }

    #[test]
    fn scrub_removes_all_variants_and_duplicates() {
        let s = configured();
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("x-auth-request-user", "u-bob"),
            ("x-auth-request-user", "u-bob2"),
            ("x_auth_request_user", "u-bob"),
            ("x.auth.request.user", "u-bob"),
            ("x-auth-request-email", "bob@example.com"),
            ("x-auth-request-groups", "admins"),
            ("x-auth-request-preferred-username", "bob"),
            ("x-auth-request-access-token", "forged"),
            ("x-tenant", "t9"),
            ("x_tenant", "t9"),
            ("x-forwarded-user", "bob"),
            ("x-forwarded-groups", "admins"),
            ("x-forwarded-for", "1.2.3.4"),
            ("cookie", "theme=dark"),
            ("accept", "*/*"),
        ] {
            h.append(hn(n), HeaderValue::from_static(v));
        }
        assert_eq!(s.scrub(&mut h), 12);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "cookie", "x-forwarded-for"]);
        assert_eq!(s.scrub(&mut h), 0, "idempotent");
    }

    #[test]
    fn scrub_empty_map() {
        assert_eq!(configured().scrub(&mut HeaderMap::new()), 0);
    }

    #[test]
    fn claim_value_table() {
        let long_ok = "a".repeat(MAX_VALUE_BYTES);
        let long_bad = "a".repeat(MAX_VALUE_BYTES + 1);
        // 2731 × "é" = 5462 bytes → 16386 encoded bytes: over the cap.
        let long_encoded = "é".repeat(2731);
        let cases: &[(&str, Option<&str>)] = &[
            ("alice", Some("alice")),
            ("alice@example.com", Some("alice@example.com")),
            ("Alice Smith", Some("Alice Smith")),
            ("", Some("")),
            ("Zoë", Some("Zo%C3%AB")),
            ("日本", Some("%E6%97%A5%E6%9C%AC")),
            ("100%", Some("100%25")),
            ("Zo%C3%AB", Some("Zo%25C3%25AB")),
            (" bob", Some("%20bob")),
            ("bob ", Some("bob%20")),
            (" ", Some("%20")),
            ("a\"b\\c", Some("a\"b\\c")),
            ("alice\r\nX-Auth-Request-Groups: admins", None),
            ("alice@example.com\u{0}", None),
            ("eng\nadmins", None),
            ("a\rb", None),
            ("tab\there", None),
            ("del\u{7f}", None),
            ("c1\u{85}", None),
            ("esc\u{1b}[31m", None),
            (&long_ok, Some(&long_ok)),
            (&long_bad, None),
            (&long_encoded, None),
        ];
        for (input, want) in cases {
            let got = claim_header_value(input);
            assert_eq!(
                got.as_ref().map(HeaderValue::as_bytes),
                want.map(str::as_bytes),
                "{:?}",
                input.get(..40).unwrap_or(input)
            );
        }
    }

    #[test]
    fn claim_value_round_trips_through_percent_decoding() {
        for input in ["Zoë", "100% réel", " x ", "plain", "%%"] {
            let v = claim_header_value(input).expect("valid claim");
            assert_eq!(decode(v.as_bytes()), input.as_bytes(), "{input}");
        }
    }

    fn decode(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'%' {
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
                i += 3;
            } else {
                out.push(s[i]);
                i += 1;
            }
        }
        out
    }

    fn groups(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn groups_value_table() {
        // (groups, value, skipped, truncated)
        let cases: &[(&[&str], Option<&str>, usize, bool)] = &[
            (&["eng"], Some("eng"), 0, false),
            (&["eng", "ops"], Some("eng,ops"), 0, false),
            (&["eng", "x,admins"], Some("eng"), 1, false),
            (&["eng\nadmins"], None, 1, false),
            (
                &["eng\r\nX-Auth-Request-User: bob", "ops"],
                Some("ops"),
                1,
                false,
            ),
            (&["a\u{0}"], None, 1, false),
            (&["tab\tx", "ok"], Some("ok"), 1, false),
            (&["Équipe", "eng"], Some("eng"), 1, false),
            (&["Domain Users", "eng"], Some("Domain Users,eng"), 0, false),
            (&[" admins", "admins ", "eng"], Some("eng"), 2, false),
            (&["", "eng"], Some("eng"), 1, false),
            (&[], None, 0, false),
            (
                &["cn=admins;ou=x", "a/b"],
                Some("cn=admins;ou=x,a/b"),
                0,
                false,
            ),
        ];
        for (input, value, skipped, truncated) in cases {
            let got = groups_header_value(groups(input));
            assert_eq!(
                got.value.as_ref().map(HeaderValue::as_bytes),
                value.map(str::as_bytes),
                "{input:?}"
            );
            assert_eq!(got.skipped, *skipped, "{input:?}");
            assert_eq!(got.truncated, *truncated, "{input:?}");
        }
    }

    #[test]
    fn groups_capped_by_count() {
        let many: Vec<String> = (0..10_000).map(|i| format!("g{i}")).collect();
        let got = groups_header_value(&many);
        assert!(got.truncated);
        assert_eq!(got.skipped, 0);
        let value = got.value.expect("some groups");
        let members: Vec<&[u8]> = value.as_bytes().split(|b| *b == b',').collect();
        assert_eq!(members.len(), MAX_GROUPS);
        assert_eq!(members[0], b"g0");
        assert_eq!(members[MAX_GROUPS - 1], b"g255");
    }

    #[test]
    fn groups_exactly_at_count_cap_not_truncated() {
        let exact: Vec<String> = (0..MAX_GROUPS).map(|i| format!("g{i}")).collect();
        let got = groups_header_value(&exact);
        assert!(!got.truncated);
        assert_eq!(
            got.value
                .expect("value")
                .as_bytes()
                .split(|b| *b == b',')
                .count(),
            MAX_GROUPS
        );
    }

    #[test]
    fn groups_capped_by_size() {
        // 100 names of 100 bytes: 100*100 + 99 commas > 8 KiB; 81 fit (81*101-1 = 8180).
        let big: Vec<String> = (0..100).map(|i| format!("{i:0>100}")).collect();
        let got = groups_header_value(&big);
        assert!(got.truncated);
        let value = got.value.expect("value");
        assert!(value.len() <= MAX_VALUE_BYTES);
        assert_eq!(value.as_bytes().split(|b| *b == b',').count(), 81);
    }

    #[test]
    fn single_oversized_group() {
        let got = groups_header_value(&["x".repeat(MAX_VALUE_BYTES + 1)]);
        assert_eq!(got.value, None);
        assert!(got.truncated);
    }
}
