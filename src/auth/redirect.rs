//! Validation of the post-login and post-logout target `rd` (open-redirect defence).
//!
//! SPEC: "`rd` is accepted only as a same-origin path (`/…`) of `public_url`, or an absolute URL
//! whose host is `public_url`'s host or a configured route host. Anything else — `//evil.com`,
//! `/\evil.com`, `https:evil.com`, userinfo tricks, control characters, encoded variants of these
//! — falls back to `/`."
//!
//! [`RedirectPolicy::validate`] returns the exact string to put in `Location`, or `None`; the
//! caller then uses `/` and logs `event=redirect_rejected`. The value handed in must already be
//! decoded exactly once (the query-string decode); it is never decoded or normalised again before
//! it is emitted, so what was checked is what the browser gets.
//!
//! Rules, checked in this order:
//!
//! - **Size.** Empty, or longer than [`MAX_RD_LEN`] bytes (the value travels in a cookie), is
//!   refused.
//! - **Bytes.** Only RFC 3986 characters (§2): unreserved, reserved and `%`, minus the quote `'`
//!   (an attribute breaker with no place in a landing URL). Space, control bytes, DEL, non-ASCII,
//!   `\` and the characters RFC 3986 excludes (`"` `<` `>` `` ` `` `^` `{` `|` `}`) are refused.
//!   So no CR, LF, NUL or TAB can reach a header (RFC 9110 §5.5), WHATWG's treatment of `\` as
//!   `/` and its stripping of tabs and leading C0 bytes cannot apply, and Unicode confusables
//!   (U+2044, U+3002 full-width dots, …) never reach the IDNA mapping.
//! - **Percent-encoding.** Each `%` must start a two-hex-digit escape; escapes of control bytes
//!   (`%00`–`%1F`, `%7F`) are refused anywhere; the decoded value must be valid UTF-8 (RFC 3629
//!   §3, which excludes overlong forms); and the path part (before `?`/`#`) must not contain `%2F`
//!   or `%5C` in any case. An encoded slash in the query (`?x=%2F`) is fine.
//! - **Shape (a), relative.** A single `/` not followed by `/` (RFC 3986 §4.2: `//` would start a
//!   network-path reference). The WHATWG resolution against `public_url` must stay on that origin.
//!   Emitted verbatim: `/a/b/../c` stays as is.
//! - **Shape (b), absolute.** `https://` (or `http://` when `public_url` is http, and then only
//!   for the public host), scheme case-insensitive, followed by an authority made only of letters,
//!   digits, `-`, `.`, `:`, `[` and `]` — so no userinfo (`@`), no percent-encoded host and no
//!   IDN: a punycode host matches only if it equals a configured host. The WHATWG-parsed host must
//!   equal the public host or match a route host pattern, where `*.example.com` matches on a label
//!   boundary only (`x.example.com`, never `example.com` or `evilexample.com`). The port must be
//!   the scheme's default or, for the public host, `public_url`'s port. Emitted as the WHATWG
//!   serialisation (`https://APP.EXAMPLE.COM:443/ok` becomes `https://app.example.com/ok`).
//! - **Trailing-dot hosts are refused** (`https://app.example.com./`): browsers treat them as a
//!   different origin (cookies do not match), so accepting them would only land the user on a
//!   page without a session.
//! - **Own endpoints.** A target whose path (as portcullis would route it, see
//!   [`crate::http::path::normalize`]) is inside a reserved prefix — `/oauth2/` and the callback
//!   path — is refused, compared without case. This stops chains such as
//!   `/oauth2/start?rd=//evil.com` and login loops. A path that portcullis would answer 400 is
//!   refused too.
//!
//! Not covered: an on-site open redirector (`/go?url=https://evil.com`) is accepted, because it
//! is a path of `public_url` like any other; fixing the redirector is the application's job.

use url::{Host, Url};

use crate::config::{HostPattern, PublicUrl};
use crate::http::path;

/// Longest accepted `rd`, in bytes.
pub const MAX_RD_LEN: usize = 2048;

/// The allowed redirect targets: `public_url`'s origin, route hosts, minus the proxy's own paths.
#[derive(Debug, Clone)]
pub struct RedirectPolicy {
    /// `public_url` is https.
    https: bool,
    /// Lower-case public host (IPv6 in brackets), no trailing dot.
    host: String,
    /// Effective public port.
    port: u16,
    /// `public_url`'s origin as a base for resolving relative targets; `None` (never for a valid
    /// config) refuses every relative target.
    base: Option<Url>,
    /// Route host patterns, lower-cased.
    route_hosts: Vec<HostPattern>,
    /// Path prefixes served by the proxy itself, lower-cased.
    reserved_prefixes: Vec<String>,
}

impl RedirectPolicy {
    /// Builds the policy from `server.public_url`, every route's `host` and the proxy's own path
    /// prefixes (e.g. `/oauth2/` and `oidc.callback_path`).
    pub fn new(
        public: &PublicUrl,
        route_hosts: &[HostPattern],
        reserved_prefixes: Vec<String>,
    ) -> Self {
        let host = public.host.to_ascii_lowercase();
        let host = host.strip_suffix('.').map(str::to_owned).unwrap_or(host);
        let route_hosts = route_hosts
            .iter()
            .map(|p| match p {
                HostPattern::Exact(h) => HostPattern::Exact(h.to_ascii_lowercase()),
                HostPattern::Wildcard(h) => HostPattern::Wildcard(h.to_ascii_lowercase()),
            })
            .collect();
        RedirectPolicy {
            https: public.https,
            host,
            port: public.effective_port(),
            base: Url::parse(&public.origin()).ok(),
            route_hosts,
            reserved_prefixes: reserved_prefixes
                .into_iter()
                .filter(|p| !p.is_empty())
                .map(|p| p.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Validates `rd` (already decoded once). Returns the target to emit in `Location` — exactly
    /// the bytes validated — or `None`, in which case the caller redirects to `/` and logs
    /// `event=redirect_rejected`.
    pub fn validate(&self, rd: &str) -> Option<String> {
        if rd.is_empty() || rd.len() > MAX_RD_LEN {
            return None;
        }
        if !rd.bytes().all(allowed_byte) || !escapes_ok(rd) {
            return None;
        }
        let path_part = rd.split(['?', '#']).next().unwrap_or("");
        if contains_encoded_separator(path_part) {
            return None;
        }

        let target = if rd.starts_with('/') {
            self.relative(rd)?
        } else {
            self.absolute(rd)?
        };

        // Belt and braces: nothing unsafe for a header can leave this function.
        if !target.bytes().all(allowed_byte) {
            return None;
        }
        Some(target)
    }

    /// Shape (a): `/` + not `/`, resolved on the public origin, emitted verbatim.
    fn relative(&self, rd: &str) -> Option<String> {
        if rd.as_bytes().get(1) == Some(&b'/') {
            return None;
        }
        let base = self.base.as_ref()?;
        let url = base.join(rd).ok()?;
        let same_origin = url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
            && url.username().is_empty()
            && url.password().is_none();
        if !same_origin || self.is_reserved(url.path()) {
            return None;
        }
        Some(rd.to_owned())
    }

    /// Shape (b): `https://host[:port]/…` on an allowed host, emitted as the WHATWG serialisation.
    fn absolute(&self, rd: &str) -> Option<String> {
        let (scheme, rest) = rd.split_once("://")?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") && !self.https {
            false
        } else {
            return None;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.is_empty()
            || !authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']'))
        {
            return None;
        }

        let url = Url::parse(rd).ok()?;
        if url.scheme() != if https { "https" } else { "http" }
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        let host = match url.host()? {
            Host::Domain(d) => d.to_ascii_lowercase(),
            Host::Ipv4(ip) => ip.to_string(),
            Host::Ipv6(ip) => format!("[{ip}]"),
        };
        if host.is_empty() || host.ends_with('.') {
            return None;
        }
        let is_public = host == self.host;
        if !https && !is_public {
            return None;
        }
        if !is_public && !self.matches_route_host(&host) {
            return None;
        }
        // `Url::port` is `None` when the port is absent or the scheme's default.
        match url.port() {
            None => {}
            Some(p) if is_public && p == self.port => {}
            Some(_) => return None,
        }
        if self.is_reserved(url.path()) {
            return None;
        }
        Some(url.as_str().to_owned())
    }

    fn matches_route_host(&self, host: &str) -> bool {
        self.route_hosts.iter().any(|p| match p {
            HostPattern::Exact(h) => host == h,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        })
    }

    /// Whether `url_path` (a WHATWG-serialised path) lands on one of the proxy's own endpoints,
    /// judged on the path portcullis itself would route. Unroutable paths count as reserved.
    fn is_reserved(&self, url_path: &str) -> bool {
        let Ok(p) = path::normalize(url_path) else {
            return true;
        };
        let p = p.to_ascii_lowercase();
        self.reserved_prefixes.iter().any(|prefix| {
            let bare = prefix.strip_suffix('/').unwrap_or(prefix);
            p == bare || p.starts_with(&format!("{bare}/"))
        })
    }
}

/// RFC 3986 characters (unreserved, reserved, `%`), minus `'`.
fn allowed_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b':'
                | b'/'
                | b'?'
                | b'#'
                | b'['
                | b']'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

/// Every `%` starts a two-hex-digit escape, no escape is a control byte, and the decoded value is
/// UTF-8.
fn escapes_ok(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return false;
            };
            // from_str_radix accepts a leading `+`; require two hex digits.
            if !bytes[i + 1].is_ascii_hexdigit() || v < 0x20 || v == 0x7f {
                return false;
            }
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

/// `%2F` or `%5C`, any case.
fn contains_encoded_separator(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && (w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f')
                || w[1] == b'5' && w[2].eq_ignore_ascii_case(&b'c'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedirectPolicy {
        RedirectPolicy::new(
            &PublicUrl {
                https: true,
                host: "app.example.com".into(),
                port: None,
            },
            &[
                HostPattern::Exact("app.example.com".into()),
                HostPattern::Wildcard("apps.example.com".into()),
                HostPattern::Exact("docs.example.com".into()),
            ],
            vec!["/oauth2/".into(), "/oauth2/callback".into()],
        )
    }

    /// Every value must be refused (RD-01..RD-12 families).
    const ATTACKS: &[&str] = &[
        // RD-01 protocol-relative and extra slashes
        "//evil.com",
        "//evil.com/",
        "///evil.com",
        "////evil.com/",
        "/////evil.com",
        "//evil.com/%2f..",
        "//evil.com:443/",
        "//app.example.com/",
        // RD-02 backslash family
        "/\\evil.com",
        "\\/evil.com",
        "\\\\evil.com",
        "/\\/evil.com/",
        "https:\\\\evil.com",
        "https:/\\evil.com",
        "https://evil.com\\@app.example.com",
        "https://app.example.com\\@evil.com",
        // RD-03 whitespace and control characters
        "/\t/evil.com",
        "/\n/evil.com",
        "/\r/evil.com",
        "/\x0b/evil.com",
        "/\x0c/evil.com",
        "/ /evil.com",
        "/\0/evil.com",
        "\t//evil.com",
        " //evil.com",
        "/%09/evil.com",
        "/%0a/evil.com",
        "/%00/evil.com",
        "/\x7f/evil.com",
        "https://evil.com\t.app.example.com/",
        // RD-04 scheme confusion
        "http:evil.com",
        "https:evil.com",
        "http:/evil.com",
        "https:/evil.com",
        "https:app.example.com",
        "HTTP://evil.com",
        "http://evil.com",
        "ftp://evil.com",
        "http://app.example.com/",
        "http:3627734734",
        "http://0xd83ad6ce/",
        "https://0xd83ad6ce/",
        "https://3627734734/",
        "https://216.58.214.206/",
        "http:[::ffff:216.58.214.206]",
        "https://[::ffff:216.58.214.206]/",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "java\tscript:alert(1)",
        "\x19javascript:alert(1)",
        "/%09/javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox(1)",
        "https:",
        "https://",
        "https:///evil.com",
        // RD-05 userinfo and authority differentials
        "https://app.example.com@evil.com",
        "https://app.example.com@evil.com/",
        "https://app.example.com:443@evil.com",
        "https://user:pass@app.example.com/",
        "https://@app.example.com/",
        "https://evil.com%40app.example.com/",
        "https://evil.com#@app.example.com/",
        "https://evil.com?@app.example.com/",
        "https://evil.com;@app.example.com/",
        "https://app.example.com%2f@evil.com/",
        // RD-06 host allowlist
        "https://app.example.com.evil.com/",
        "https://evilapp.example.com/",
        "https://evil-apps.example.com/",
        "https://apps.example.com.evil.com/",
        "https://apps.example.com/",
        "https://example.com/",
        "https://xapps.example.com/",
        "https://app.example.com./",
        "https://x.apps.example.com./",
        "https://app.example.com:8443/",
        "https://docs.example.com:8443/",
        "https://x.apps.example.com:80/",
        "https://evil.com/app.example.com",
        // RD-07 layers of percent-encoding
        "%2F%2Fevil.com",
        "/%2f%2fevil.com",
        "/%2F%2Fevil.com",
        "/%2f%5c%2fevil.com",
        "/%5cevil.com",
        "/%5Cevil.com",
        "%68%74%74%70%3a%2f%2fevil.com",
        "https://app%2eexample%2ecom/",
        "https://%61pp.example.com/",
        "/x%2F..%2F..%2Fevil",
        "/%zz",
        "/%",
        "/%2",
        "/%+1",
        // RD-08 Unicode and IDN confusables
        "https://app.example.com\u{2044}.evil.com/",
        "https://app\u{3002}example\u{3002}com/",
        "https://app\u{ff0e}example\u{ff0e}com/",
        "https://\u{430}pp.example.com/",
        "https://xn--pp-8cd.example.com/",
        "https://app.example.xn--com-qt0a.evil.com/",
        "/\u{ff0f}evil.com",
        "/caf\u{e9}",
        "/%C0%AE%C0%AE/",
        "/%FF",
        "/%ED%A0%80",
        // RD-09 header injection and markup
        "/\r\nSet-Cookie: x=y",
        "/%0d%0aSet-Cookie:%20_portcullis=attacker",
        "/\nLocation:%20https://evil.com",
        "/\"><script>alert(1)</script>",
        "/'onmouseover=alert(1)'",
        "/<svg/onload=alert(1)>",
        "/`x`",
        "/{x}",
        "/a|b",
        "/%00",
        // RD-10 length and odd forms
        "#x",
        "?x",
        ".",
        "evil.com",
        "app.example.com/x",
        // RD-11 the proxy's own endpoints
        "/oauth2/start?rd=//evil.com",
        "/oauth2/sign_out?rd=//evil.com",
        "/oauth2/callback?code=x&state=y",
        "/oauth2/start?rd=/oauth2/start?rd=/oauth2/start",
        "/oauth2/",
        "/oauth2",
        "/OAUTH2/start",
        "/x/../oauth2/start",
        "/x/%2e%2e/oauth2/start",
        "/%6Fauth2/start",
        "/.//oauth2/start",
        "https://app.example.com/oauth2/start?rd=//evil.com",
        "https://x.apps.example.com/oauth2/sign_out",
        "https://docs.example.com/oauth2/callback",
    ];

    #[test]
    fn attack_corpus_is_refused() {
        let p = policy();
        assert!(ATTACKS.len() >= 60);
        for rd in ATTACKS {
            assert_eq!(p.validate(rd), None, "accepted {rd:?}");
        }
    }

    #[test]
    fn empty_and_long_values_are_refused() {
        let p = policy();
        assert_eq!(p.validate(""), None);
        let max = format!("/{}", "a".repeat(MAX_RD_LEN - 1));
        assert_eq!(p.validate(&max), Some(max.clone()));
        assert_eq!(p.validate(&format!("/{}", "a".repeat(MAX_RD_LEN))), None);
        assert_eq!(p.validate(&format!("/{}", "a".repeat(20_000))), None);
    }

    #[test]
    fn controls_are_accepted() {
        let p = policy();
        for (rd, want) in [
            ("/dashboard?tab=1&x=%2F#frag", "/dashboard?tab=1&x=%2F#frag"),
            ("/a/b/../c", "/a/b/../c"),
            ("/", "/"),
            ("/?x=1", "/?x=1"),
            ("/#top", "/#top"),
            ("/x?next=//evil.com", "/x?next=//evil.com"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/a%20b", "/a%20b"),
            ("/%252F%252Fevil.com", "/%252F%252Fevil.com"),
            ("/%2568ttp://evil.com", "/%2568ttp://evil.com"),
            ("/go?url=https://evil.com", "/go?url=https://evil.com"),
            ("/oauth2x", "/oauth2x"),
            ("/public/oauth2/start", "/public/oauth2/start"),
            (
                "https://docs.example.com/x?y=1",
                "https://docs.example.com/x?y=1",
            ),
            ("https://x.apps.example.com/", "https://x.apps.example.com/"),
            (
                "https://a.b.apps.example.com/p",
                "https://a.b.apps.example.com/p",
            ),
            (
                "https://APP.EXAMPLE.COM:443/ok",
                "https://app.example.com/ok",
            ),
            ("https://APP.example.com/", "https://app.example.com/"),
            ("HTTPS://app.example.com/x", "https://app.example.com/x"),
            ("https://app.example.com/", "https://app.example.com/"),
            ("https://app.example.com", "https://app.example.com/"),
            (
                "https://app.example.com/a?b=%2F#c",
                "https://app.example.com/a?b=%2F#c",
            ),
        ] {
            assert_eq!(p.validate(rd).as_deref(), Some(want), "rd {rd:?}");
        }
    }

    #[test]
    fn http_public_url() {
        let p = RedirectPolicy::new(
            &PublicUrl {
                https: false,
                host: "127.0.0.1".into(),
                port: Some(4180),
            },
            &[HostPattern::Exact("docs.example.com".into())],
            vec!["/oauth2/".into()],
        );
        assert_eq!(
            p.validate("http://127.0.0.1:4180/x").as_deref(),
            Some("http://127.0.0.1:4180/x")
        );
        assert_eq!(p.validate("/x").as_deref(), Some("/x"));
        assert_eq!(
            p.validate("http://127.0.0.1/x").as_deref(),
            Some("http://127.0.0.1/x")
        );
        assert_eq!(
            p.validate("https://docs.example.com/x").as_deref(),
            Some("https://docs.example.com/x")
        );
        for rd in [
            "http://127.0.0.1:9999/x",
            "https://127.0.0.1:9999/x",
            "http://docs.example.com/x",
            "http://evil.com/",
            "http://127.0.0.1:4180/oauth2/start",
            "http:/127.0.0.1:4180/x",
            "//127.0.0.1:4180/x",
        ] {
            assert_eq!(p.validate(rd), None, "accepted {rd:?}");
        }
    }

    #[test]
    fn ipv6_public_host() {
        let p = RedirectPolicy::new(
            &PublicUrl {
                https: true,
                host: "[::1]".into(),
                port: Some(8443),
            },
            &[],
            vec![],
        );
        assert_eq!(
            p.validate("https://[::1]:8443/x").as_deref(),
            Some("https://[::1]:8443/x")
        );
        assert_eq!(
            p.validate("https://[0:0::1]:8443/x").as_deref(),
            Some("https://[::1]:8443/x")
        );
        assert_eq!(p.validate("https://[::2]:8443/x"), None);
        assert_eq!(p.validate("/x").as_deref(), Some("/x"));
    }

    #[test]
    fn public_port_only_for_public_host() {
        let p = RedirectPolicy::new(
            &PublicUrl {
                https: true,
                host: "app.example.com".into(),
                port: Some(8443),
            },
            &[HostPattern::Exact("docs.example.com".into())],
            vec![],
        );
        assert_eq!(
            p.validate("https://app.example.com:8443/x").as_deref(),
            Some("https://app.example.com:8443/x")
        );
        assert_eq!(p.validate("https://docs.example.com:8443/x"), None);
        assert_eq!(p.validate("https://app.example.com:9443/x"), None);
    }

    #[test]
    fn wildcard_matches_on_label_boundary_only() {
        let p = policy();
        for (host, want) in [
            ("x.apps.example.com", true),
            ("a.b.apps.example.com", true),
            ("apps.example.com", false),
            ("xapps.example.com", false),
            (".apps.example.com", false),
            ("apps.example.com.evil.com", false),
            ("app.example.com", true),
            ("docs.example.com", true),
            ("docs.example.com.evil", false),
        ] {
            assert_eq!(p.matches_route_host(host), want, "{host}");
        }
    }

    /// Deterministic fuzz: nothing panics and no accepted output carries a forbidden byte.
    #[test]
    fn random_inputs_never_emit_unsafe_bytes() {
        const PIECES: [&str; 24] = [
            "/",
            "//",
            "\\",
            "https:",
            "http:",
            "//",
            "evil.com",
            "app.example.com",
            "@",
            ":443",
            "%2f",
            "%5c",
            "%09",
            "\t",
            "\r\n",
            "?",
            "#",
            ".",
            "..",
            "x.apps.example.com",
            "\u{2044}",
            "%",
            "a",
            "oauth2",
        ];
        let p = policy();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50_000 {
            let mut rd = String::new();
            for _ in 0..1 + next() % 8 {
                rd.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if let Some(out) = p.validate(&rd) {
                assert!(
                    out.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\'),
                    "{rd:?} -> {out:?}"
                );
                let parsed = Url::parse("https://app.example.com/start").and_then(|b| b.join(&out));
                let parsed = parsed.unwrap_or_else(|e| panic!("{rd:?} -> {out:?}: {e}"));
                assert_eq!(parsed.scheme(), "https", "{rd:?}");
                assert!(
                    parsed.username().is_empty() && parsed.password().is_none(),
                    "{rd:?}"
                );
                let host = parsed.host_str().unwrap_or("");
                assert!(
                    host == "app.example.com"
                        || host == "docs.example.com"
                        || host.ends_with(".apps.example.com"),
                    "{rd:?} -> {out:?}"
                );
            }
        }
    }
}
