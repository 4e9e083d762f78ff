//! SECURITY.md §7, path normalisation and route bypass (PATH-01..PATH-08), with the oracle of
//! §7: whatever the upstream received, its RFC 3986 normal form must satisfy the route that
//! let it through. PATH-01 and PATH-02 are HOLDOUT: our own strongest inputs.

use crate::security_support::*;
use crate::support::*;

/// RFC 3986 §6.2.2 normal form of a received path: unreserved escapes decoded, dot segments
/// removed, compared case-insensitively (the upstream may be case-insensitive).
fn oracle_norm(p: &str) -> String {
    let path = p.split('?').next().unwrap();
    let mut dec = String::new();
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&path[i + 1..i + 3], 16)
            && (v.is_ascii_alphanumeric() || b"-._~".contains(&v))
        {
            dec.push(v as char);
            i += 3;
            continue;
        }
        dec.push(b[i] as char);
        i += 1;
    }
    let mut out: Vec<&str> = vec![];
    for seg in dec.split('/') {
        match seg {
            "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/").to_ascii_lowercase()
}

/// Sends `target` without a session; asserts the oracle on whatever reached the upstream.
async fn probe(sec: &Sec, target: &str, cookie: Option<&str>) -> u16 {
    let before = sec.up.count();
    let extra = cookie
        .map(|c| format!("Cookie: _portcullis={c}\r\n"))
        .unwrap_or_default();
    let r = raw_get(sec.proxy.addr, target, "app.example.com", &extra).await;
    sec.check_raw("https://app.example.com/", &r);
    let status = raw_status(&r);
    assert!(status != 0 && status < 500, "{target:?}: {r:.300}");
    if sec.up.count() > before {
        let got = sec.up.last().uri;
        let n = oracle_norm(&got);
        assert!(
            !n.contains("/../") && !n.ends_with("/.."),
            "{target:?} forwarded as {got}"
        );
        if cookie.is_none() {
            assert!(
                n.starts_with("/public/"),
                "anonymous {target:?} reached {got} ({n})"
            );
        } else {
            assert!(
                n != "/admin" && !n.starts_with("/admin/"),
                "alice {target:?} reached {got} ({n})"
            );
        }
    }
    status
}

#[tokio::test]
async fn path_01_dot_segment_traversal() {
    let sec = Sec::start().await;
    let targets = [
        "/public/../admin",
        "/public/./../admin",
        "/public/x/../../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public/%2e./admin",
        "/public/..%2f..%2fadmin",
        "/public/..%5cadmin",
        "/public/..\\admin",
        "/public/../../../admin",
        "/public/..;/admin",
        "/public/%252e%252e/admin",
        "/public/%u002e%u002e/admin",
        "/public/..%00/admin",
        "/public/..%c0%afadmin",
        "/public/.../admin",
        "/public/....//admin",
        "/public/..././admin",
        "/public//..//admin",
        "/public/%2e%2e%2fadmin",
        "/public/%2e%2e%5cadmin",
        "/public/x/..%2f../admin",
        "/public/%2e/%2e%2e/admin",
        "/public/..?/admin",
        "/public/..#/admin",
        "/public/x/..",
        "/public/..",
        "/public/../",
    ];
    for t in targets {
        let s = probe(&sec, t, None).await;
        assert!(matches!(s, 400 | 401 | 404 | 200), "{t}: {s}");
    }
    sec.finish().await;
}

#[tokio::test]
async fn path_02_encoded_delimiters_query_fragment() {
    let sec = Sec::start().await;
    for t in [
        "/public%2F../admin",
        "/public%2fx",
        "/admin%3F/public/x",
        "/admin%23/public/x",
        "/admin?/public/x",
        "/admin?x=/public/",
        "/admin#/public/x",
        "/public/x%3F/../../admin",
        "/public/x%23/../../admin",
        "/admin%3f.css",
        "/admin%00/public/",
        "/admin%2F",
        "/%2Fadmin",
        "/admin;/public/",
        "/public/%3B/../admin",
        "/public/x?%2F..%2Fadmin",
        "/admin%0a/public/",
        "/admin%0d%0aX-Auth-Request-User:%20u-bob",
        "/admin%09",
        "/public%252F..%252Fadmin",
    ] {
        probe(&sec, t, None).await;
    }
    // The query is never part of the route decision (CVE-2025-54576 class).
    let s = probe(&sec, "/admin?/public/", None).await;
    assert_eq!(s, 401);
    sec.finish().await;
}

#[tokio::test]
async fn path_03_repeated_slashes_and_boundaries() {
    let sec = Sec::start().await;
    for t in [
        "//admin",
        "///admin",
        "/./admin",
        "/admin//",
        "/publicity/secret",
        "/public-old/x",
        "/public",
    ] {
        let s = probe(&sec, t, None).await;
        assert!(matches!(s, 400 | 401), "{t}: {s}");
    }
    sec.upstream_untouched();
    sec.finish().await;
}

#[tokio::test]
async fn path_04_case_suffixes_params_unreserved() {
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let alice = b.cookie("_portcullis").unwrap();
    for t in [
        "/ADMIN",
        "/Admin/",
        "/admin.",
        "/admin./",
        "/admin%20",
        "/admin%09",
        "/admin;",
        "/admin;jsessionid=x",
        "/admin%00",
        "/admin%00.css",
        "/admin.json",
        "/%61dmin",
        "/adm%69n",
        "/%2561dmin",
        "/%41DMIN",
    ] {
        let anon = probe(&sec, t, None).await;
        assert!(matches!(anon, 400 | 401), "{t}: {anon}");
        let s = probe(&sec, t, Some(&alice)).await;
        // For alice (not an admin): 403 on /admin, or 400; the others reach the upstream as
        // paths that are not /admin under the oracle.
        assert!(matches!(s, 400 | 403 | 200), "{t}: {s}");
        if ["/ADMIN", "/Admin/", "/%61dmin", "/adm%69n", "/%41DMIN"].contains(&t) {
            assert_eq!(s, 403, "{t}");
        }
        // A trailing dot or space would be dropped by a Windows/IIS upstream: refused.
        if ["/admin.", "/admin./", "/admin%20"].contains(&t) {
            assert_eq!((anon, s), (400, 400), "{t}");
        }
    }
    // %2561dmin is decoded once only and forwarded literally.
    assert_eq!(probe(&sec, "/%2561dmin", Some(&alice)).await, 200);
    assert_eq!(sec.up.last().uri, "/%2561dmin");
    sec.finish().await;
}

#[tokio::test]
async fn path_05_encoded_slashes_backslashes_non_ascii() {
    let sec = Sec::start().await;
    for t in [
        "/public%2F..%2Fadmin",
        "/public/x%2F..%2F..%2Fadmin",
        "/public%5C..%5Cadmin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/%ff",
    ] {
        assert_eq!(probe(&sec, t, None).await, 400, "{t}");
    }
    // U+FF0F is valid UTF-8 and not a delimiter: forwarded, but only still percent-encoded
    // (an upstream never receives a raw fullwidth solidus it might fold into `/`).
    let s = probe(&sec, "/public/%ef%bc%8f..%ef%bc%8fadmin", None).await;
    if s == 200 {
        assert_eq!(
            sec.up.last().uri.to_ascii_lowercase(),
            "/public/%ef%bc%8f..%ef%bc%8fadmin"
        );
    } else {
        assert_eq!(s, 400);
    }
    let r = raw(
        sec.proxy.addr,
        b"GET /public/\xff HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&r), 400, "{r}");
    sec.finish().await;
}

/// xorshift, deterministic.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[tokio::test]
async fn path_06_decision_forward_consistency_property() {
    // 2,000 random targets over the wire (each with and without a session, over HTTP/1.1,
    // and 500 over HTTP/2); the 150,000-case property at the function level is
    // http::path::tests::property_random_paths.
    const ALPHABET: [&str; 24] = [
        "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "\\", ";", "%00", "%23", "%3F", "?", "#",
        "%25", "public", "admin", "x", "A", "d", "%61", "PUBLIC", "Admin", "//",
    ];
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let alice = b.cookie("_portcullis").unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut targets = vec![];
    for _ in 0..2000 {
        let mut t = String::from("/");
        for _ in 0..1 + rng.below(8) {
            t.push_str(ALPHABET[rng.below(ALPHABET.len())]);
        }
        // '#' never goes on the wire; a raw backslash does.
        targets.push(t.replace('#', "%23"));
    }
    let (mut accepted, mut rejected) = (0, 0);
    for (i, t) in targets.iter().enumerate() {
        let cookie = if i % 2 == 0 {
            None
        } else {
            Some(alice.as_str())
        };
        match probe(&sec, t, cookie).await {
            400 => rejected += 1,
            _ => accepted += 1,
        }
    }
    assert!(
        accepted > 100 && rejected > 100,
        "{accepted} accepted, {rejected} rejected"
    );
    // HTTP/2 (h2c prior knowledge, :authority app.example.com): the same oracle on :path.
    let mut send = h2c(sec.proxy.addr).await;
    let mut sent = 0;
    for t in targets.iter().take(500) {
        let Ok(req) = http::Request::get(format!("http://app.example.com{t}"))
            .header("accept", "application/json")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
        else {
            continue;
        };
        let before = sec.up.count();
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        sent += 1;
        assert!(resp.status().as_u16() < 500, "h2 {t}: {}", resp.status());
        if sec.up.count() > before {
            let n = oracle_norm(&sec.up.last().uri);
            assert!(n.starts_with("/public/"), "h2 anonymous {t} reached {n}");
        }
    }
    assert!(sent > 300, "{sent} h2 requests");
    sec.finish().await;
}

#[tokio::test]
async fn path_07_method_scoping_and_override() {
    let sec = Sec::start().await;
    let ovr =
        "X-HTTP-Method-Override: DELETE\r\nX-Method-Override: PUT\r\nX-HTTP-Method: PATCH\r\n";
    for (m, path, want) in [
        ("POST", "/public/x", 200),
        ("GET", "/public/x", 200),
        ("get", "/public/x", 0),
        ("POST", "/private", 401),
        ("get", "/private", 0),
        ("GET", "/private", 401),
        ("DELETE", "/private", 401),
        ("FOO", "/private", 401),
    ] {
        let before = sec.up.count();
        let r = raw(
            sec.proxy.addr,
            format!("{m} {path} HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\n{ovr}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let s = raw_status(&r);
        if want == 0 {
            // Lower-case method: a different, unknown method; never a bypass of the gate.
            assert!(matches!(s, 400 | 401 | 405 | 501 | 200), "{m} {path}: {r}");
            if path == "/private" {
                assert_eq!(sec.up.count(), before);
            }
        } else {
            assert_eq!(s, want, "{m} {path}: {r}");
        }
        if path == "/private" {
            assert_eq!(sec.up.count(), before, "{m} {path}: INV-1");
        } else if s == 200 {
            // Override headers reach a public upstream unchanged in meaning: the method the
            // proxy used is the method the upstream got.
            assert_eq!(sec.up.last().method, m);
        }
    }
    sec.finish().await;
}

#[tokio::test]
async fn path_08_request_target_forms() {
    let sec = Sec::start().await;
    let addr = sec.proxy.addr;
    let send = |req: &'static str| raw(addr, req.as_bytes());
    let r = send("GET http://app.example.com/admin HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&r), 401, "{r}");
    let r = send("GET http://app.example.com/admin HTTP/1.1\r\nHost: docs.example.com\r\nAccept: application/json\r\nConnection: close\r\n\r\n").await;
    assert!(
        matches!(raw_status(&r), 400 | 401),
        "absolute-form host wins or 400: {r}"
    );
    for bad in [
        "GET https://evil.com/public/x HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        "GET http:http://127.0.0.1:9001/admin HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        "GET admin HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        "CONNECT 127.0.0.1:9001 HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nConnection: close\r\n\r\n",
        "CONNECT app.example.com:443 HTTP/1.1\r\nHost: app.example.com:443\r\nConnection: close\r\n\r\n",
    ] {
        let r = send(bad).await;
        assert!(matches!(raw_status(&r), 400 | 405 | 421), "{bad:?}: {r}");
    }
    // OPTIONS * is answered locally (400 here: portcullis serves no server-wide options).
    let r = send("OPTIONS * HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n").await;
    assert!(matches!(raw_status(&r), 200 | 204 | 400), "{r}");
    sec.upstream_untouched();
    sec.finish().await;
}
