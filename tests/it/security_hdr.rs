//! SECURITY.md §6, identity headers and X-Forwarded-* (HDR-01..HDR-08). HDR-02, 03, 06, 07
//! are HOLDOUT: our own strongest inputs. HDR-09 (`/oauth2/auth`) lands with branch fwdauth.
//! Assertions run on the upstream echo's header list, names compared after normalising case,
//! `_` and `.`.

use http::{Method, StatusCode};

use crate::security_support::*;
use crate::support::*;

const PROTECTED: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-auth-request-access-token",
    "x-tenant",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
];

fn norm(s: &str) -> String {
    s.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// No header whose normalised name is protected carries a value other than `allowed`.
fn only_ours(seen: &Seen, allowed: &[(&str, &str)]) {
    for (k, v) in &seen.headers {
        let n = norm(k);
        if PROTECTED.contains(&n.as_str()) || n.starts_with("x-auth-request-") {
            assert!(
                allowed.iter().any(|(an, av)| *an == k.as_str() && av == v),
                "client value survived: {k}: {v}"
            );
        }
    }
    for (an, _) in allowed {
        assert_eq!(seen.all(an).len(), 1, "exactly one {an}");
    }
}

const ALICE: &[(&str, &str)] = &[
    ("x-auth-request-user", "u-alice"),
    ("x-auth-request-email", "alice@example.com"),
    ("x-auth-request-preferred-username", "alice"),
    ("x-auth-request-groups", "eng"),
    ("x-tenant", "t1"),
];

async fn logged_in() -> (Sec, Browser) {
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    (sec, b)
}

#[tokio::test]
async fn hdr_01_spoofed_identity_headers() {
    let (sec, b) = logged_in().await;
    let session = b.cookie("_portcullis").unwrap();
    let cookie = format!("_portcullis={session}; theme=dark; _portcullis_login_abc=x");
    let r = sec
        .req(
            &b,
            Method::GET,
            "https://app.example.com/private",
            &[
                ("X-Auth-Request-User", "u-bob"),
                ("X-Auth-Request-Email", "bob@example.com"),
                ("X-Auth-Request-Groups", "admins"),
                ("X-Auth-Request-Preferred-Username", "bob"),
                ("X-Tenant", "t9"),
                ("X-Auth-Request-Access-Token", "forged"),
                ("X-Forwarded-User", "bob"),
                ("X-Forwarded-Groups", "admins"),
                ("cookie", &cookie),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = sec.up.last();
    only_ours(&seen, ALICE);
    assert_eq!(seen.all("cookie"), vec!["theme=dark"]);
    sec.finish().await;
}

#[tokio::test]
async fn hdr_02_header_name_variants() {
    let (sec, b) = logged_in().await;
    let names = [
        "X_Auth_Request_User",
        "x.auth.request.user",
        "X-AUTH-REQUEST-USER",
        "x-auth_request-user",
        "X-Auth-Request-User ",
        "X_Tenant",
        "x.tenant",
        "X_Forwarded_User",
        "x-forwarded.groups",
        "X-Auth-Request-Groups",
        "x_auth_request_groups",
        "X-Auth.Request_Email",
    ];
    let mut raw_headers = String::new();
    for (i, n) in names.iter().enumerate() {
        if !n.ends_with(' ') {
            raw_headers.push_str(&format!("{n}: spoof{i}\r\n"));
        }
    }
    let session = b.cookie("_portcullis").unwrap();
    let r = raw_get(
        sec.proxy.addr,
        "/private",
        "app.example.com",
        &format!("{raw_headers}Cookie: _portcullis={session}\r\n"),
    )
    .await;
    assert_eq!(raw_status(&r), 200, "{r}");
    let seen = sec.up.last();
    only_ours(&seen, ALICE);
    assert!(
        !seen.headers.iter().any(|(_, v)| v.starts_with("spoof")),
        "{:?}",
        seen.headers
    );
    // A space before the colon is a 400, never an alias (RFC 9112 §5.1).
    let r = raw_get(
        sec.proxy.addr,
        "/private",
        "app.example.com",
        &format!("X-Auth-Request-User : u-bob\r\nCookie: _portcullis={session}\r\n"),
    )
    .await;
    assert_eq!(raw_status(&r), 400, "{r}");
    // Over HTTP/2 (h2c prior knowledge), with lower-case variants.
    let mut client = h2c(sec.proxy.addr).await;
    let req = http::Request::get("http://app.example.com/private")
        .header("cookie", format!("_portcullis={session}"))
        .header("x_auth_request_user", "spoof-h2")
        .header("x.auth.request.groups", "spoof-h2")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = sec.up.last();
    only_ours(&seen, ALICE);
    sec.finish().await;
}

#[tokio::test]
async fn hdr_03_spoofed_header_for_a_missing_claim() {
    let sec = Sec::start().await;
    let carol = portcullis::devidp::DevUser {
        sub: "u-carol".into(),
        ..Default::default()
    };
    sec.idp.set_auto_login(Some(carol));
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    sec.req(
        &b,
        Method::GET,
        "https://app.example.com/x",
        &[
            ("X-Auth-Request-Email", "bob@example.com"),
            ("X-Auth-Request-Groups", "admins"),
            ("X-Auth-Request-Preferred-Username", "bob"),
            ("X-Tenant", "t1"),
            ("x_tenant", "t1"),
            ("X-Auth-Request-Access-Token", "x"),
        ],
    )
    .await;
    let seen = sec.up.last();
    only_ours(&seen, &[("x-auth-request-user", "u-carol")]);
    // And the policy never sees client headers: /admin stays 403.
    let r = sec
        .req(
            &b,
            Method::GET,
            "https://app.example.com/admin",
            &[("X-Auth-Request-Groups", "admins")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    sec.finish().await;
}

#[tokio::test]
async fn hdr_04_public_and_shortcut_paths() {
    let sec = Sec::start().await;
    let b = sec.browser();
    let spoof = [
        ("X-Auth-Request-User", "u-bob"),
        ("X-Auth-Request-Groups", "admins"),
        ("X-Tenant", "t1"),
    ];
    for url in [
        "https://app.example.com/public/x",
        "https://docs.example.com/",
    ] {
        let r = sec.req(&b, Method::GET, url, &spoof).await;
        assert_eq!(r.status, StatusCode::OK);
        only_ours(&sec.up.last(), &[]);
    }
    let n = sec.up.count();
    let mut pre = spoof.to_vec();
    pre.extend([
        ("origin", "https://evil.com"),
        ("access-control-request-method", "POST"),
    ]);
    let r = sec
        .req(&b, Method::OPTIONS, "https://app.example.com/private", &pre)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    sec.upstream_saw(n);
    assert!(b.cookie("_portcullis").is_none(), "no session created");
    sec.finish().await;
    // With the preflight exemption: forwarded, without identity headers.
    let sec = Sec::start_config(|idp, up| {
        reference_config(idp, up, "")(0).replacen(
            "path = \"/\"\nupstream",
            "path = \"/\"\nallow_preflight = true\nupstream",
            1,
        )
    })
    .await;
    let b = sec.browser();
    let r = sec
        .req(&b, Method::OPTIONS, "https://app.example.com/private", &pre)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    only_ours(&sec.up.last(), &[]);
    // A non-preflight OPTIONS is still gated.
    let r = sec
        .req(
            &b,
            Method::OPTIONS,
            "https://app.example.com/private",
            &spoof,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    sec.finish().await;
}

#[tokio::test]
async fn hdr_05_identity_headers_as_trailers() {
    let (sec, b) = logged_in().await;
    let session = b.cookie("_portcullis").unwrap();
    let req = format!(
        "POST /private HTTP/1.1\r\nHost: app.example.com\r\nCookie: _portcullis={session}\r\nTransfer-Encoding: chunked\r\nTrailer: X-Auth-Request-User\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nX-Auth-Request-User: u-bob\r\nX-Auth-Request-Groups: admins\r\n\r\n"
    );
    let r = raw(sec.proxy.addr, req.as_bytes()).await;
    assert_eq!(raw_status(&r), 200, "{r}");
    let seen = sec.up.last();
    assert_eq!(seen.body, b"abc");
    only_ours(&seen, ALICE);
    assert!(seen.all("trailer").is_empty());
    // HTTP/2 trailing HEADERS with the same fields.
    let mut client = h2c::<Trailing>(sec.proxy.addr).await;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-auth-request-user", "u-bob".parse().unwrap());
    trailers.insert("x-auth-request-groups", "admins".parse().unwrap());
    let req = http::Request::post("http://app.example.com/private")
        .header("cookie", format!("_portcullis={session}"))
        .body(Trailing {
            data: Some(bytes::Bytes::from_static(b"abc")),
            trailers: Some(trailers),
        })
        .unwrap();
    let resp = client.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = sec.up.last();
    assert_eq!(seen.body, b"abc");
    only_ours(&seen, ALICE);
    sec.finish().await;
}

/// A request body of one data frame followed by trailers.
pub struct Trailing {
    pub data: Option<bytes::Bytes>,
    pub trailers: Option<http::HeaderMap>,
}

impl hyper::body::Body for Trailing {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(d))));
        }
        std::task::Poll::Ready(
            self.trailers
                .take()
                .map(|t| Ok(hyper::body::Frame::trailers(t))),
        )
    }
}

#[tokio::test]
async fn hdr_06_connection_hop_by_hop_abuse() {
    let (sec, b) = logged_in().await;
    let session = b.cookie("_portcullis").unwrap();
    for conn in [
        "close, X-Auth-Request-User",
        "keep-alive, x-forwarded-for, X-Forwarded-Host, X-Forwarded-Proto",
        "X-Auth-Request-Groups, X-Tenant, Cookie, Host",
        "x_auth_request_user",
        "Authorization, Content-Length",
        "Upgrade, HTTP2-Settings",
        ",,,X-Auth-Request-Email,,",
    ] {
        let r = raw(
            sec.proxy.addr,
            format!("GET /private HTTP/1.1\r\nHost: app.example.com\r\nCookie: _portcullis={session}\r\nConnection: {conn}\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(raw_status(&r), 200, "{conn}: {r}");
        let seen = sec.up.last();
        only_ours(&seen, ALICE);
        assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"], "{conn}");
        assert_eq!(
            seen.all("x-forwarded-host"),
            vec!["app.example.com"],
            "{conn}"
        );
        assert_eq!(seen.all("x-forwarded-proto"), vec!["http"], "{conn}");
        for gone in ["upgrade", "http2-settings", "connection"] {
            assert!(
                seen.all(gone).is_empty() || gone == "connection",
                "{gone} survived ({conn})"
            );
        }
    }
    sec.finish().await;
}

#[tokio::test]
async fn hdr_07_trust_in_forwarded_headers() {
    let sec = Sec::start().await;
    let b = sec.browser();
    let spoof = [
        ("X-Forwarded-For", "10.0.0.5"),
        ("X-Forwarded-Host", "evil.com"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Uri", "/admin"),
        ("X-Forwarded-Prefix", "/evil"),
        ("X-Forwarded-Method", "DELETE"),
        ("Forwarded", "for=10.0.0.5;host=evil.com;proto=https"),
        ("X-Real-IP", "10.0.0.5"),
        ("X-Original-URL", "/admin"),
        ("X-Rewrite-URL", "/admin"),
        ("X-Original-URI", "/admin"),
        ("X_Forwarded_For", "10.0.0.5"),
        ("X-Forwarded-Server", "evil.com"),
        ("X-Client-IP", "10.0.0.5"),
        ("True-Client-IP", "10.0.0.5"),
    ];
    sec.req(&b, Method::GET, "https://app.example.com/public/x", &spoof)
        .await;
    let seen = sec.up.last();
    assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-host"), vec!["app.example.com"]);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["http"]);
    for gone in [
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x_forwarded_for",
        "x-forwarded-prefix",
        "x-forwarded-uri",
        "x-forwarded-method",
        "x-forwarded-port",
        "x-forwarded-server",
        "x-client-ip",
        "true-client-ip",
    ] {
        assert!(
            seen.all(gone).is_empty(),
            "{gone} survived from an untrusted peer"
        );
    }
    // The gate never reads them: a spoofed X-Forwarded-Uri cannot make /admin public, and a
    // spoofed X-Original-URL cannot route /public/x to /admin.
    let r = sec
        .req(
            &b,
            Method::GET,
            "https://app.example.com/admin",
            &[
                ("X-Forwarded-Uri", "/public/x"),
                ("X-Original-URL", "/public/x"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.location().unwrap().contains("/authorize"));
    sec.upstream_saw(1);
    sec.finish().await;
}

#[tokio::test]
async fn hdr_08_claim_values_that_break_headers() {
    let sec = Sec::start().await;
    let mut u = alice();
    u.preferred_username = Some("alice\r\nX-Auth-Request-Groups: admins".into());
    u.email = Some("alice@example.com\u{0}".into());
    u.name = Some("Zoë".into());
    u.groups = Some(vec!["eng".into(), "x,admins".into(), "eng\nadmins".into()]);
    u.extra.insert("tenant".into(), serde_json::json!("Zoë"));
    sec.idp.set_auto_login(Some(u));
    let b = sec.browser();
    let r = sec.login(&b, "https://app.example.com/").await;
    assert!(
        r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED,
        "{}",
        r.status
    );
    if r.status == StatusCode::OK {
        let seen = sec.up.last();
        assert_eq!(
            seen.all("x-auth-request-groups"),
            vec!["eng"],
            "x,admins and eng\\nadmins left out"
        );
        assert!(
            seen.all("x-auth-request-preferred-username").is_empty(),
            "CR/LF value omitted"
        );
        assert!(
            seen.all("x-auth-request-email").is_empty(),
            "NUL value omitted"
        );
        assert_eq!(
            seen.all("x-tenant"),
            vec!["Zo%C3%AB"],
            "documented percent-encoding"
        );
        for (k, v) in &seen.headers {
            assert!(
                !v.contains('\r') && !v.contains('\n') && !v.contains('\0'),
                "{k}"
            );
        }
        assert!(
            !sec.logs.lines_with(&["claim_value_skipped"]).is_empty(),
            "a WARN"
        );
        // A comma group cannot grant admins.
        assert_eq!(
            sec.get(&b, "https://app.example.com/admin").await.status,
            StatusCode::FORBIDDEN
        );
    }
    // 10,000 groups make an ID token over MAX_TOKEN_BYTES (64 KiB): refused as
    // malformed_token, cheaply and without a panic.
    let mut u = alice();
    u.groups = Some((0..10_000).map(|i| format!("g{i}")).collect());
    sec.idp.set_auto_login(Some(u));
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    assert!(b.cookie("_portcullis").is_none());
    assert!(
        !sec.logs
            .lines_with(&["login_failed", "malformed_token"])
            .is_empty()
    );
    // 3,000 groups fit the token: capped in the header, with a WARN.
    let mut u = alice();
    u.groups = Some((0..3_000).map(|i| format!("g{i}")).collect());
    sec.idp.set_auto_login(Some(u));
    let b = sec.browser();
    let r = sec.login(&b, "https://app.example.com/").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        sec.logs.lines_with(&["login_failed"]).join("\n")
    );
    let g = sec.up.last().one("x-auth-request-groups").unwrap();
    assert!(g.len() < 16 * 1024, "{} bytes", g.len());
    assert!(!sec.logs.lines_with(&["groups_header_trimmed"]).is_empty());
    sec.finish().await;
}
