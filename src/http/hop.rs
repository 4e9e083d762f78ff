//! Hop-by-hop header fields: the fields that describe one connection and must
//! not be forwarded by an intermediary.
//!
//! RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header
//! field before a message is forwarded and, for each connection-option in this
//! field, remove any header or trailer field(s) from the message with the same
//! name as the connection-option, and then remove the Connection header field
//! itself (or replace it with the intermediary's own control options for the
//! forwarded message)." RFC 9112 §9.6 and RFC 9110 §7.6.1 also name the fields
//! that are hop-by-hop whether or not `Connection` lists them (`Keep-Alive`,
//! `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`, …); RFC 9113 §3.1
//! deprecates the `h2c` upgrade and with it `HTTP2-Settings`.
//!
//! This module owns that stripping for requests (with WebSocket upgrade
//! detection, RFC 9110 §7.8) and for upstream responses.
//!
//! **Ordering contract.** Callers strip *before* adding their own fields
//! (`X-Forwarded-*`, identity headers). A client's `Connection: X-Forwarded-For`
//! can then only remove the client's own copy, never the value the proxy adds
//! afterwards (Traefik CVE-2024-45410, Apache CVE-2022-31813).
//!
//! **Upgrades.** Only WebSocket is ever honoured. `h2c` (and every other
//! protocol) is dropped with the rest of the hop-by-hop fields, so a backend
//! `101` can never turn the proxy into a blind tunnel (Traefik
//! GHSA-w4v4-9rw7-5326, "h2c smuggling").

use http::header::{CONNECTION, HeaderMap, HeaderName, HeaderValue, UPGRADE};

/// Fields that are hop-by-hop whether or not `Connection` names them
/// (RFC 9110 §7.6.1, §7.8, §11.7.1; RFC 9112 §6.1, §9.6; RFC 9113 §3.2.1;
/// `Proxy-Connection` and `Keep-Alive` as deployed in practice).
const FIXED_HOP_BY_HOP: [HeaderName; 9] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    HeaderName::from_static("http2-settings"),
];

/// The only upgrade protocol portcullis forwards (RFC 6455 §4.1).
const WEBSOCKET: &str = "websocket";

/// Strips the hop-by-hop fields of a request about to be forwarded.
///
/// Removes `Connection`, every field named by any `Connection` line (comma
/// lists, optional whitespace trimmed, names compared case-insensitively), and
/// the fixed list `keep-alive`, `proxy-connection`, `te`, `trailer`,
/// `transfer-encoding`, `upgrade`, `proxy-authenticate`, `proxy-authorization`,
/// `http2-settings`.
///
/// Returns `Some("websocket")` when the request asked for a WebSocket upgrade:
/// `Connection` lists `upgrade` *and* the `Upgrade` field(s) hold exactly one
/// protocol, `websocket` (case-insensitive, RFC 9110 §7.8). The caller then
/// re-adds `Connection: upgrade` and `Upgrade: websocket` after its own checks
/// (method, session, route). Any other upgrade (`h2c`, `websocket` offered
/// alongside another protocol, `Upgrade` without `Connection: upgrade`) returns
/// `None` and is simply not forwarded. The returned value is always the
/// canonical lower-case `websocket`, never the client's bytes.
///
/// A `Connection` option may name any field, `Host` and `Cookie` included: it
/// is removed as RFC 9110 §7.6.1 says. Callers read what they need for routing
/// and the session before stripping, and set the upstream `Host` themselves.
///
/// Call this before adding any proxy-owned field (see the module docs).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let named = connection_options(headers);
    let wants_upgrade = named.iter().any(|n| n.as_str() == "upgrade") && is_websocket(headers);
    remove_all(headers, &named);
    wants_upgrade.then(|| HeaderValue::from_static(WEBSOCKET))
}

/// Strips the hop-by-hop fields of an upstream response: `Connection`, every
/// field it names, and the same fixed list as [`strip_hop_by_hop`].
///
/// There is no upgrade detection here; for a `101` to a WebSocket request the
/// caller re-adds `Connection: upgrade` and `Upgrade: websocket` itself.
///
/// A response framed by both `Transfer-Encoding` and `Content-Length` was decoded by its
/// transfer coding (RFC 9112 §6.3 item 3); its `Content-Length` is wrong and is removed
/// before forwarding, as that section requires of a proxy (SECURITY UP-06).
pub fn strip_hop_by_hop_response(headers: &mut HeaderMap) {
    if headers.contains_key(http::header::TRANSFER_ENCODING) {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    let named = connection_options(headers);
    remove_all(headers, &named);
}

/// The field names listed by every `Connection` line. Members that are not
/// valid field names are ignored (they cannot name a field in the map).
fn connection_options(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|line| line.as_bytes().split(|b| *b == b','))
        .filter_map(|member| HeaderName::from_bytes(trim_ows(member)).ok())
        .collect()
}

/// True when the `Upgrade` lines together hold exactly one protocol and it is
/// `websocket` (no version suffix, case-insensitive).
fn is_websocket(headers: &HeaderMap) -> bool {
    let mut members = headers
        .get_all(UPGRADE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|b| *b == b','))
        .map(trim_ows)
        .filter(|m| !m.is_empty());
    match (members.next(), members.next()) {
        (Some(only), None) => only.eq_ignore_ascii_case(WEBSOCKET.as_bytes()),
        _ => false,
    }
}

/// Removes `Connection`, the `named` fields and the fixed hop-by-hop list.
fn remove_all(headers: &mut HeaderMap, named: &[HeaderName]) {
    // One pass over the (few) names present instead of eleven hashed removals: most
    // requests carry no hop-by-hop field at all.
    let any = !named.is_empty()
        || headers
            .keys()
            .any(|k| *k == CONNECTION || FIXED_HOP_BY_HOP.iter().any(|f| k == f));
    if !any {
        return;
    }
    headers.remove(CONNECTION);
    for name in named {
        headers.remove(name);
    }
    for name in &FIXED_HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Trims optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn response_with_te_and_cl_loses_its_content_length() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("10"),
        );
        h.insert(
            http::header::TRANSFER_ENCODING,
            http::HeaderValue::from_static("chunked"),
        );
        h.insert("x-app", http::HeaderValue::from_static("1"));
        super::strip_hop_by_hop_response(&mut h);
        assert!(h.get(http::header::CONTENT_LENGTH).is_none());
        assert!(h.get(http::header::TRANSFER_ENCODING).is_none());
        assert!(h.get("x-app").is_some());
        // Content-Length alone is end-to-end and kept.
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from_static("2"),
        );
        super::strip_hop_by_hop_response(&mut h);
        assert!(h.get(http::header::CONTENT_LENGTH).is_some());
    }

    use super::*;

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

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn removes_fixed_list_in_any_case() {
        let mut h = map(&[
            ("Keep-Alive", "timeout=5"),
            ("PROXY-CONNECTION", "keep-alive"),
            ("te", "trailers"),
            ("Trailer", "X-Auth-Request-User"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ("X-Keep", "1"),
        ]);
        assert_eq!(strip_hop_by_hop(&mut h), None, "no Connection: upgrade");
        assert_eq!(names(&h), ["x-keep"]);
    }

    #[test]
    fn removes_connection_named_fields() {
        // (Connection lines, fields present, fields expected to survive)
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&["X-Foo"], &["x-foo", "x-bar"], &["x-bar"]),
            (&["x-foo, X-BAR"], &["x-foo", "x-bar", "x-baz"], &["x-baz"]),
            (&[" x-foo ,\tx-bar\t"], &["x-foo", "x-bar"], &[]),
            (
                &["x-foo", "x-bar"],
                &["x-foo", "x-bar", "x-baz"],
                &["x-baz"],
            ),
            (&[",,x-foo,,"], &["x-foo", "x-baz"], &["x-baz"]),
            (&["close"], &["x-foo"], &["x-foo"]),
            (&["keep-alive, x-foo"], &["x-foo", "keep-alive"], &[]),
            // Not valid field names: ignored, no panic.
            (
                &["x foo, \"quoted\", x-bar"],
                &["x-bar", "x-baz"],
                &["x-baz"],
            ),
            // Underscore names are distinct field names; only exact names go.
            (&["x_foo"], &["x-foo", "x_foo"], &["x-foo"]),
            (&[""], &["x-foo"], &["x-foo"]),
        ];
        for (conn, present, survive) in cases {
            let mut h = HeaderMap::new();
            for c in *conn {
                h.append(CONNECTION, HeaderValue::from_str(c).expect("value"));
            }
            for p in *present {
                h.append(
                    HeaderName::from_bytes(p.as_bytes()).expect("name"),
                    HeaderValue::from_static("v"),
                );
            }
            strip_hop_by_hop(&mut h);
            assert_eq!(names(&h), *survive, "Connection: {conn:?}");
            let mut r = HeaderMap::new();
            for c in *conn {
                r.append(CONNECTION, HeaderValue::from_str(c).expect("value"));
            }
            for p in *present {
                r.append(
                    HeaderName::from_bytes(p.as_bytes()).expect("name"),
                    HeaderValue::from_static("v"),
                );
            }
            strip_hop_by_hop_response(&mut r);
            assert_eq!(names(&r), *survive, "response Connection: {conn:?}");
        }
    }

    #[test]
    fn removes_every_line_of_a_named_field() {
        let mut h = map(&[
            ("Connection", "X-Foo"),
            ("X-Foo", "1"),
            ("X-Foo", "2"),
            ("X-Other", "3"),
        ]);
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-foo").is_none());
        assert_eq!(h.get("x-other").map(HeaderValue::as_bytes), Some(&b"3"[..]));
    }

    #[test]
    fn connection_with_obs_text_does_not_panic() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_bytes(b"x-foo, \xffbad, x-bar").expect("obs-text value"),
        );
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("x-bar", HeaderValue::from_static("1"));
        h.insert("x-baz", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(names(&h), ["x-baz"]);
    }

    #[test]
    fn client_cannot_remove_proxy_fields_added_afterwards() {
        // CVE-2024-45410: strip first, then the caller adds its own fields.
        let mut h = map(&[
            ("Connection", "X-Forwarded-For, X-Auth-Request-User"),
            ("X-Forwarded-For", "6.6.6.6"),
        ]);
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-forwarded-for").is_none(), "client copy removed");
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-auth-request-user", HeaderValue::from_static("u-alice"));
        assert_eq!(
            h.get("x-forwarded-for").map(HeaderValue::as_bytes),
            Some(&b"10.0.0.1"[..])
        );
        assert_eq!(
            h.get("x-auth-request-user").map(HeaderValue::as_bytes),
            Some(&b"u-alice"[..])
        );
    }

    #[test]
    fn upgrade_detection() {
        // (Connection lines, Upgrade lines, websocket expected)
        let cases: &[(&[&str], &[&str], bool)] = &[
            (&["Upgrade"], &["websocket"], true),
            (&["upgrade"], &["WebSocket"], true),
            (&["keep-alive, Upgrade"], &["websocket"], true),
            (&["keep-alive", "UPGRADE"], &[" websocket "], true),
            (&["Upgrade"], &["h2c"], false),
            (&["Upgrade, HTTP2-Settings"], &["h2c"], false),
            (&["Upgrade"], &["H2C"], false),
            (&["Upgrade"], &["websocket, h2c"], false),
            (&["Upgrade"], &["h2c", "websocket"], false),
            (&["Upgrade"], &["websocket/13"], false),
            (&["Upgrade"], &["TLS/1.0"], false),
            (&["Upgrade"], &[""], false),
            (&["Upgrade"], &[], false),
            (&["keep-alive"], &["websocket"], false),
            (&[], &["websocket"], false),
            (&["upgrades"], &["websocket"], false),
        ];
        for (conn, up, expect) in cases {
            let mut h = HeaderMap::new();
            for c in *conn {
                h.append(CONNECTION, HeaderValue::from_str(c).expect("value"));
            }
            for u in *up {
                h.append(UPGRADE, HeaderValue::from_str(u).expect("value"));
            }
            h.insert(
                "http2-settings",
                HeaderValue::from_static("AAMAAABkAARAAAAAAAIAAAAA"),
            );
            h.insert("x-end-to-end", HeaderValue::from_static("1"));
            let got = strip_hop_by_hop(&mut h);
            let want = expect.then(|| HeaderValue::from_static("websocket"));
            assert_eq!(got, want, "Connection {conn:?} Upgrade {up:?}");
            // Whatever the answer, the hop-by-hop fields are gone.
            assert_eq!(
                names(&h),
                ["x-end-to-end"],
                "Connection {conn:?} Upgrade {up:?}"
            );
        }
    }

    #[test]
    fn returned_token_is_canonical() {
        let mut h = map(&[("Connection", "Upgrade"), ("Upgrade", "WEBSOCKET")]);
        assert_eq!(
            strip_hop_by_hop(&mut h).as_ref().map(HeaderValue::as_bytes),
            Some(&b"websocket"[..])
        );
    }

    #[test]
    fn response_strip_keeps_end_to_end_fields() {
        let mut h = map(&[
            ("Connection", "X-Foo, close"),
            ("X-Foo", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic realm=x"),
            ("Upgrade", "h2c"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=b"),
        ]);
        strip_hop_by_hop_response(&mut h);
        assert_eq!(names(&h), ["content-type", "set-cookie"]);
    }

    #[test]
    fn trim_ows_edges() {
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"\ta b "), b"a b");
    }
}
