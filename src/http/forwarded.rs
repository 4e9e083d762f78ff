//! `X-Forwarded-*` and `Forwarded`: what the proxy tells the upstream about the
//! original request, and what it believes from a proxy in front of it.
//!
//! `X-Forwarded-For`, `-Proto` and `-Host` are a de facto standard (the
//! standard form is `Forwarded`, RFC 7239). SPEC: from a peer outside
//! `trusted_proxies`, `Forwarded`, every `X-Forwarded-*`, `X-Real-IP`,
//! `X-Original-URL` and `X-Original-URI` are removed and the proxy sets its own
//! `X-Forwarded-For`, `-Proto`, `-Host`; from a trusted peer they are kept and
//! appended to. `/oauth2/auth` believes `X-Forwarded-Host`, `-Uri` and `-Method`
//! only from trusted peers ([`forwarded_request`]; the caller checks trust).
//!
//! Names are compared normalised (ASCII lower-case, `_` and `.` equal to `-`,
//! see [`normalise_name`]) because back ends alias those spellings. Even from
//! a trusted peer, a forwarding field spelled with `_` or `.` is removed: no
//! proxy emits it, so it can only be a client's copy passed along.
//!
//! Call [`apply`] after hop-by-hop stripping (`crate::http::hop`), so that a
//! client's `Connection` cannot remove what is set here.

use std::net::IpAddr;

use super::hop::trim_ows;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::http::identity_headers::normalise_name;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `X-Forwarded-Method` (nginx `auth_request` / Traefik ForwardAuth).
pub const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `X-Forwarded-Uri` (nginx `auth_request` / Traefik ForwardAuth).
pub const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");

/// Normalised names (besides `x-forwarded-*`) that only a trusted proxy may set.
/// `x-rewrite-url` is the IIS/Symfony twin of `x-original-url` (both rewrite the route an
/// upstream framework dispatches on); `x-client-ip` and `true-client-ip` carry a client
/// address that upstream IP allow-lists read (SECURITY HDR-07).
const OTHER_FORWARDING_NAMES: [&str; 7] = [
    "forwarded",
    "x-real-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-client-ip",
    "true-client-ip",
];

/// Whether the connection's peer is in `trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerTrust {
    /// The peer is a configured trusted proxy: its forwarding fields are kept.
    Trusted,
    /// Anyone else: its forwarding fields are removed and replaced.
    Untrusted,
}

/// Sets the forwarding fields of a request about to go upstream.
///
/// - [`PeerTrust::Untrusted`]: removes `Forwarded`, every field whose
///   normalised name starts with `x-forwarded-` (`X_Forwarded_For` too),
///   `X-Real-IP`, `X-Original-URL` and `X-Original-URI`, then sets
///   `X-Forwarded-For: <peer>`, `X-Forwarded-Proto: <proto>` and
///   `X-Forwarded-Host: <host>`.
/// - [`PeerTrust::Trusted`]: removes only the `_`/`.` spellings of those
///   names, then appends the peer to `X-Forwarded-For` (all lines combined into
///   one, `", "` joined), keeps the first member of an existing
///   `X-Forwarded-Proto` / `-Host` (as a single line) or sets ours when absent
///   or empty.
///
/// The peer is written in canonical form without brackets or port (an
/// IPv4-mapped IPv6 address as IPv4). `proto` and `host` come from the proxy's
/// own validated view of the request; a value that is not a valid field value
/// is not written (the field is then absent rather than wrong).
pub fn apply(headers: &mut HeaderMap, peer: IpAddr, trust: PeerTrust, proto: &str, host: &str) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_forwarding_name(k.as_str()))
        .filter(|k| trust == PeerTrust::Untrusted || k.as_str().contains(['_', '.']))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }

    let mut xff: Vec<u8> = Vec::with_capacity(48);
    for line in headers.get_all(&X_FORWARDED_FOR) {
        let line = trim_ows(line.as_bytes());
        if !line.is_empty() {
            xff.extend_from_slice(line);
            xff.extend_from_slice(b", ");
        }
    }
    // Writing to a Vec cannot fail.
    let _ = std::io::Write::write_fmt(&mut xff, format_args!("{}", peer.to_canonical()));
    set(
        headers,
        X_FORWARDED_FOR,
        HeaderValue::from_maybe_shared(Bytes::from(xff)).ok(),
    );

    for (name, ours) in [(X_FORWARDED_PROTO, proto), (X_FORWARDED_HOST, host)] {
        let kept = headers
            .get(&name)
            .and_then(|v| v.as_bytes().split(|b| *b == b',').next())
            .map(trim_ows)
            .filter(|v| !v.is_empty())
            .and_then(|v| HeaderValue::from_bytes(v).ok());
        let value = kept.or_else(|| HeaderValue::from_str(ours).ok());
        set(headers, name, value);
    }
}

/// The original request as described by a trusted proxy in front of
/// `/oauth2/auth`. Every field is `None` when absent, present on several
/// lines with different values, empty, or not visible ASCII (spaces included);
/// `method`, `proto` and `host` are also `None` when they hold a `,` (a list,
/// which none of them can legitimately be).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardedRequest {
    /// `X-Forwarded-Method`, e.g. `GET`.
    pub method: Option<String>,
    /// `X-Forwarded-Proto`, e.g. `https`.
    pub proto: Option<String>,
    /// `X-Forwarded-Host`, e.g. `app.example.com`.
    pub host: Option<String>,
    /// `X-Forwarded-Uri`, the original request-target, e.g. `/private?x=1`.
    pub uri: Option<String>,
}

/// Reads `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri`. Only meaningful
/// when the peer is trusted: the caller must not call it otherwise (and after
/// [`apply`] with an untrusted peer the method and URI are gone anyway).
pub fn forwarded_request(headers: &HeaderMap) -> ForwardedRequest {
    ForwardedRequest {
        method: single_value(headers, &X_FORWARDED_METHOD, false),
        proto: single_value(headers, &X_FORWARDED_PROTO, false),
        host: single_value(headers, &X_FORWARDED_HOST, false),
        uri: single_value(headers, &X_FORWARDED_URI, true),
    }
}

/// The one value of `name`: all lines must agree, be non-empty visible ASCII
/// without spaces, and hold no `,` unless `comma_ok`.
fn single_value(headers: &HeaderMap, name: &HeaderName, comma_ok: bool) -> Option<String> {
    let mut found: Option<&[u8]> = None;
    for line in headers.get_all(name) {
        let v = trim_ows(line.as_bytes());
        let valid = !v.is_empty()
            && v.iter()
                .all(|b| b.is_ascii_graphic() && (comma_ok || *b != b','));
        if !valid || found.is_some_and(|f| f != v) {
            return None;
        }
        found = Some(v);
    }
    found
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

/// True for the names only a trusted proxy may set, compared normalised.
fn is_forwarding_name(name: &str) -> bool {
    let n = normalise_name(name);
    n.starts_with("x-forwarded-") || OTHER_FORWARDING_NAMES.contains(&n.as_ref())
}

/// Replaces every line of `name` with `value`, or removes it when `None`.
fn set(headers: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_rewriting_and_client_ip_fields_are_forwarding_fields() {
        for name in [
            "X-Rewrite-URL",
            "x_rewrite_url",
            "X-Client-IP",
            "True-Client-IP",
        ] {
            let mut h = http::HeaderMap::new();
            h.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_static("/admin"),
            );
            super::apply(
                &mut h,
                "127.0.0.1".parse().unwrap(),
                super::PeerTrust::Untrusted,
                "https",
                "app.example.com",
            );
            assert!(
                h.keys().all(|k| k.as_str().starts_with("x-forwarded-")),
                "{name} survived: {h:?}"
            );
        }
    }

    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("test name"),
                HeaderValue::from_str(v).expect("test value"),
            );
        }
        h
    }

    fn all(h: &HeaderMap, name: &str) -> Vec<String> {
        h.get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn untrusted_replaces_everything() {
        let mut h = map(&[
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-For", "5.6.7.8"),
            ("x_forwarded_for", "9.9.9.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("x_forwarded_host", "evil"),
            ("x.forwarded.host", "evil"),
            ("X-Forwarded-Uri", "/admin"),
            ("X-Forwarded-Method", "DELETE"),
            ("X-Forwarded-Port", "443"),
            ("X-Forwarded-Prefix", "/x"),
            ("X-Forwarded-User", "bob"),
            ("Forwarded", "for=1.2.3.4;host=evil"),
            ("X-Real-IP", "1.2.3.4"),
            ("x_real_ip", "1.2.3.4"),
            ("X-Original-URL", "/admin"),
            ("X-Original-URI", "/admin"),
            ("x.original.uri", "/admin"),
            ("Accept", "*/*"),
        ]);
        apply(&mut h, V4, PeerTrust::Untrusted, "http", "app.example.com");
        assert_eq!(
            names(&h),
            [
                "accept",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto"
            ]
        );
        assert_eq!(all(&h, "x-forwarded-for"), ["10.0.0.7"]);
        assert_eq!(all(&h, "x-forwarded-proto"), ["http"]);
        assert_eq!(all(&h, "x-forwarded-host"), ["app.example.com"]);
    }

    #[test]
    fn untrusted_without_any_forwarding_fields() {
        let mut h = HeaderMap::new();
        apply(
            &mut h,
            V4,
            PeerTrust::Untrusted,
            "https",
            "app.example.com:8443",
        );
        assert_eq!(all(&h, "x-forwarded-for"), ["10.0.0.7"]);
        assert_eq!(all(&h, "x-forwarded-proto"), ["https"]);
        assert_eq!(all(&h, "x-forwarded-host"), ["app.example.com:8443"]);
    }

    #[test]
    fn trusted_appends_and_keeps() {
        /// (existing fields, XFF, proto, host)
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static str,
            &'static str,
            &'static str,
        );
        let cases: &[Case] = &[
            (&[], "10.0.0.7", "http", "app.example.com"),
            (
                &[("X-Forwarded-For", "1.2.3.4")],
                "1.2.3.4, 10.0.0.7",
                "http",
                "app.example.com",
            ),
            (
                &[
                    ("X-Forwarded-For", "1.2.3.4, 5.6.7.8"),
                    ("x-forwarded-for", "9.9.9.9"),
                ],
                "1.2.3.4, 5.6.7.8, 9.9.9.9, 10.0.0.7",
                "http",
                "app.example.com",
            ),
            (
                &[("X-Forwarded-For", "  ")],
                "10.0.0.7",
                "http",
                "app.example.com",
            ),
            (
                &[
                    ("X-Forwarded-Proto", "https"),
                    ("X-Forwarded-Host", "front.example.com"),
                ],
                "10.0.0.7",
                "https",
                "front.example.com",
            ),
            (
                &[
                    ("X-Forwarded-Proto", "https, http"),
                    ("X-Forwarded-Proto", "http"),
                ],
                "10.0.0.7",
                "https",
                "app.example.com",
            ),
            (
                &[("X-Forwarded-Host", "")],
                "10.0.0.7",
                "http",
                "app.example.com",
            ),
            (
                &[("X-Forwarded-Host", " a.example ")],
                "10.0.0.7",
                "http",
                "a.example",
            ),
        ];
        for (fields, xff, proto, host) in cases {
            let mut h = map(fields);
            apply(&mut h, V4, PeerTrust::Trusted, "http", "app.example.com");
            assert_eq!(all(&h, "x-forwarded-for"), [*xff], "{fields:?}");
            assert_eq!(all(&h, "x-forwarded-proto"), [*proto], "{fields:?}");
            assert_eq!(all(&h, "x-forwarded-host"), [*host], "{fields:?}");
        }
    }

    #[test]
    fn trusted_keeps_other_forwarding_fields_but_drops_variant_spellings() {
        let mut h = map(&[
            ("Forwarded", "for=1.2.3.4"),
            ("X-Real-IP", "1.2.3.4"),
            ("X-Forwarded-Uri", "/private"),
            ("X-Forwarded-Method", "GET"),
            ("X-Original-URI", "/private"),
            ("x_forwarded_host", "evil"),
            ("x.forwarded.for", "6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
        ]);
        apply(&mut h, V4, PeerTrust::Trusted, "https", "app.example.com");
        assert_eq!(
            names(&h),
            [
                "forwarded",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-method",
                "x-forwarded-proto",
                "x-forwarded-uri",
                "x-original-uri",
                "x-real-ip",
            ]
        );
        assert_eq!(all(&h, "x-forwarded-for"), ["10.0.0.7"]);
        assert_eq!(all(&h, "x-forwarded-host"), ["app.example.com"]);
    }

    #[test]
    fn peer_formatting() {
        let cases: &[(IpAddr, &str)] = &[
            (V4, "10.0.0.7"),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), "::1"),
            ("2001:db8::1".parse().expect("ip"), "2001:db8::1"),
            ("::ffff:192.0.2.1".parse().expect("ip"), "192.0.2.1"),
        ];
        for (peer, want) in cases {
            let mut h = map(&[("X-Forwarded-For", "1.2.3.4")]);
            apply(&mut h, *peer, PeerTrust::Untrusted, "http", "a");
            assert_eq!(all(&h, "x-forwarded-for"), [*want]);
            let mut h = map(&[("X-Forwarded-For", "1.2.3.4")]);
            apply(&mut h, *peer, PeerTrust::Trusted, "http", "a");
            assert_eq!(all(&h, "x-forwarded-for"), [format!("1.2.3.4, {want}")]);
        }
    }

    #[test]
    fn invalid_own_values_are_not_written() {
        let mut h = map(&[("X-Forwarded-Host", "evil")]);
        apply(&mut h, V4, PeerTrust::Untrusted, "http", "bad\nhost");
        assert!(h.get("x-forwarded-host").is_none());
        assert_eq!(all(&h, "x-forwarded-proto"), ["http"]);
    }

    #[test]
    fn trusted_obs_text_xff_does_not_panic() {
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"1.2.3.4\xff").expect("obs-text"),
        );
        apply(&mut h, V4, PeerTrust::Trusted, "http", "a");
        assert_eq!(
            h.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes),
            Some(&b"1.2.3.4\xff, 10.0.0.7"[..])
        );
    }

    #[test]
    fn forwarded_request_table() {
        type Case<'a> = (&'a [(&'a str, &'a str)], ForwardedRequest);
        let fr =
            |m: Option<&str>, p: Option<&str>, h: Option<&str>, u: Option<&str>| ForwardedRequest {
                method: m.map(str::to_owned),
                proto: p.map(str::to_owned),
                host: h.map(str::to_owned),
                uri: u.map(str::to_owned),
            };
        let cases: Vec<Case<'_>> = vec![
            (&[], fr(None, None, None, None)),
            (
                &[
                    ("X-Forwarded-Method", "GET"),
                    ("X-Forwarded-Proto", "https"),
                    ("X-Forwarded-Host", "app.example.com"),
                    ("X-Forwarded-Uri", "/private/a?x=1,2"),
                ],
                fr(
                    Some("GET"),
                    Some("https"),
                    Some("app.example.com"),
                    Some("/private/a?x=1,2"),
                ),
            ),
            // duplicates with the same value are fine; different values are not
            (
                &[
                    ("X-Forwarded-Host", "app.example.com"),
                    ("x-forwarded-host", " app.example.com "),
                    ("X-Forwarded-Uri", "/a"),
                    ("X-Forwarded-Uri", "/admin"),
                ],
                fr(None, None, Some("app.example.com"), None),
            ),
            // lists, spaces, empty values
            (
                &[
                    ("X-Forwarded-Proto", "https,http"),
                    ("X-Forwarded-Host", "a.example, b.example"),
                    ("X-Forwarded-Method", ""),
                    ("X-Forwarded-Uri", "/a b"),
                ],
                fr(None, None, None, None),
            ),
            // variant spellings are never read
            (
                &[
                    ("x_forwarded_host", "app.example.com"),
                    ("x.forwarded.uri", "/"),
                ],
                fr(None, None, None, None),
            ),
        ];
        for (fields, want) in cases {
            assert_eq!(forwarded_request(&map(fields)), want, "{fields:?}");
        }
    }

    #[test]
    fn forwarded_request_rejects_obs_text_and_controls() {
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_URI,
            HeaderValue::from_bytes(b"/caf\xc3\xa9").expect("obs-text"),
        );
        h.insert(
            X_FORWARDED_HOST,
            HeaderValue::from_bytes(b"a\tb").expect("tab"),
        );
        h.insert(X_FORWARDED_METHOD, HeaderValue::from_static("GET"));
        assert_eq!(
            forwarded_request(&h),
            ForwardedRequest {
                method: Some("GET".into()),
                ..ForwardedRequest::default()
            }
        );
    }
}
