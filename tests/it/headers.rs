//! Identity-header scrubbing and X-Forwarded-* trust (SECURITY HDR-01, HDR-02, HDR-03, HDR-04, HDR-07).

use http::{Method, StatusCode};

use crate::support::*;

const SPOOFS: &[(&str, &str)] = &[
    ("X-Auth-Request-User", "u-bob"),
    ("x-auth-request-email", "bob@example.com"),
    ("X-AUTH-REQUEST-GROUPS", "admins"),
    ("X_Auth_Request_Preferred_Username", "bob"),
    ("x.auth.request.user", "u-bob"),
    ("X-Auth-Request-Access-Token", "forged"),
    ("X-Auth-Request-Anything", "forged"),
    ("X-Tenant", "t9"),
    ("x_tenant", "t9"),
    ("X-Forwarded-User", "bob"),
    ("X-Forwarded-Email", "bob@example.com"),
    ("X-Forwarded-Groups", "admins"),
    ("X-Forwarded-Preferred-Username", "bob"),
    ("X-Forwarded-Access-Token", "forged"),
    ("x_forwarded_user", "bob"),
];

fn assert_no_spoof(seen: &Seen) {
    for (name, value) in SPOOFS {
        for (k, v) in &seen.headers {
            let norm = |s: &str| s.to_ascii_lowercase().replace(['_', '.'], "-");
            if norm(k) == norm(name) {
                assert_ne!(v, value, "spoofed {name} reached the upstream as {k}: {v}");
            }
        }
    }
    for (k, _) in &seen.headers {
        assert!(
            !k.contains('_') || !k.to_ascii_lowercase().contains("auth"),
            "underscore alias {k} survived"
        );
    }
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    b.login("https://app.example.com/").await;
    let session = b.cookie("_portcullis").unwrap();
    let cookie = format!("_portcullis={session}; theme=dark; _portcullis_login_abc=x");
    let mut headers: Vec<(&str, &str)> = SPOOFS.to_vec();
    headers.push(("cookie", &cookie));
    let r = b
        .request(Method::GET, "https://app.example.com/private", &headers)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.last();
    assert_no_spoof(&seen);
    assert_eq!(seen.all("x-auth-request-user"), vec!["u-alice"]);
    assert_eq!(seen.all("x-auth-request-email"), vec!["alice@example.com"]);
    assert_eq!(seen.all("x-auth-request-groups"), vec!["eng"]);
    assert_eq!(seen.all("x-tenant"), vec!["t1"]);
    assert_eq!(seen.all("cookie"), vec!["theme=dark"]);
}

#[tokio::test]
async fn a_claim_the_user_lacks_is_still_scrubbed() {
    let idp = idp().await;
    let mut carol = portcullis::devidp::DevUser {
        sub: "u-carol".into(),
        ..Default::default()
    };
    carol.groups = None;
    idp.set_auto_login(Some(carol));
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    b.login("https://app.example.com/").await;
    let r = b
        .request(
            Method::GET,
            "https://app.example.com/x",
            &[
                ("X-Auth-Request-Email", "bob@example.com"),
                ("X-Auth-Request-Groups", "admins"),
                ("X-Tenant", "t1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.last();
    assert_eq!(seen.one("x-auth-request-user").as_deref(), Some("u-carol"));
    assert_eq!(seen.all("x-auth-request-email"), Vec::<String>::new());
    assert_eq!(seen.all("x-auth-request-groups"), Vec::<String>::new());
    assert_eq!(seen.all("x-tenant"), Vec::<String>::new());
}

#[tokio::test]
async fn public_routes_get_no_identity_headers() {
    let idp = idp().await;
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    for url in [
        "https://app.example.com/public/x",
        "https://docs.example.com/",
    ] {
        let r = b.request(Method::GET, url, SPOOFS).await;
        assert_eq!(r.status, StatusCode::OK, "{url}");
        assert_no_spoof(&up.last());
        assert!(up.last().all("x-auth-request-user").is_empty());
    }
    // A preflight on a protected route without the exemption is unauthenticated.
    let before = up.count();
    let r = b
        .request(
            Method::OPTIONS,
            "https://app.example.com/private",
            &[
                ("origin", "https://evil.com"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn forwarded_headers_depend_on_peer_trust() {
    let idp = idp().await;
    let up = Upstream::start().await;
    // Untrusted: the test client (127.0.0.1) is outside 10.0.0.0/8.
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    let spoof = [
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-Host", "evil.com"),
        ("X-Forwarded-Proto", "https"),
        ("x_forwarded_host", "evil.com"),
        ("Forwarded", "for=1.2.3.4;host=evil.com"),
        ("X-Real-IP", "1.2.3.4"),
        ("X-Original-URL", "/admin"),
        ("X-Original-URI", "/admin"),
        ("X-Forwarded-Prefix", "/evil"),
    ];
    b.request(Method::GET, "https://app.example.com/public/x", &spoof)
        .await;
    let seen = up.last();
    assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-host"), vec!["app.example.com"]);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["http"]);
    for gone in [
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-original-uri",
        "x_forwarded_host",
        "x-forwarded-prefix",
    ] {
        assert!(
            seen.all(gone).is_empty(),
            "{gone} survived from an untrusted peer"
        );
    }
    drop(proxy);
    // Trusted: 127.0.0.0/8 listed.
    let issuer = idp.issuer();
    let upstream = up.url();
    let routes = route("/", &upstream, "auth = \"public\"");
    let proxy = Proxy::start(move |_| {
        config(
            &issuer,
            "https://app.example.com",
            "trusted_proxies = [\"127.0.0.0/8\"]",
            "",
            &routes,
        )
    })
    .await;
    let b = Browser::new(proxy.addr);
    b.request(Method::GET, "https://app.example.com/x", &spoof)
        .await;
    let seen = up.last();
    assert_eq!(seen.all("x-forwarded-for"), vec!["1.2.3.4, 127.0.0.1"]);
    assert_eq!(seen.all("x-forwarded-host"), vec!["evil.com"]);
    assert_eq!(seen.all("x-forwarded-proto"), vec!["https"]);
    assert!(seen.all("x_forwarded_host").is_empty());
}

#[tokio::test]
async fn hop_by_hop_and_connection_listed_headers_are_removed() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    b.login("https://app.example.com/").await;
    b.request(
        Method::GET,
        "https://app.example.com/x",
        &[
            (
                "connection",
                "keep-alive, X-Foo, X-Forwarded-For, X-Auth-Request-User",
            ),
            ("x-foo", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic eDp5"),
        ],
    )
    .await;
    let seen = up.last();
    for gone in [
        "x-foo",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(seen.all(gone).is_empty(), "{gone} reached the upstream");
    }
    // Listing our own headers in Connection cannot remove what the proxy adds.
    assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.all("x-auth-request-user"), vec!["u-alice"]);
}
