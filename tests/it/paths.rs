//! Path normalisation against routes (SECURITY PATH-01..PATH-08): the path the route and
//! policy see is the path the upstream gets; ambiguous encodings are 400.

use crate::support::*;

async fn env() -> (portcullis::devidp::DevIdp, Upstream, Proxy) {
    let idp = idp().await;
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    (idp, up, proxy)
}

#[tokio::test]
async fn traversal_and_encoded_delimiters_cannot_escape_a_public_prefix() {
    let (_idp, up, proxy) = env().await;
    let refused_400 = [
        "/public/..%2Fadmin",
        "/public%2F..%2Fadmin",
        "/public/x%2F..%2F..%2Fadmin",
        "/public%5C..%5Cadmin",
        "/public/..%5Cadmin",
        "/public/%2e%2e%2f/admin",
        "/public/x%00",
        "/public/x%23/../../admin",
        "/public/..;/admin",
        "/public/;/../admin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/%ef%bc%8f..%ef%bc%8fadmin/%ff",
        "/public/../../admin",
        "/..",
        "/public/\\..\\admin",
    ];
    for target in refused_400 {
        let r = raw_get(proxy.addr, target, "app.example.com", "").await;
        assert_eq!(raw_status(&r), 400, "{target}: {r}");
        assert!(!r.contains("UPSTREAM-SECRET"));
    }
    assert_eq!(up.count(), 0, "the upstream saw none of them");
    // Dot segments resolve before routing: these land on protected routes (401), not public.
    for target in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/./../private",
        "//admin",
        "///admin",
        "/./admin",
        "/public/x/../../admin/",
    ] {
        let r = raw_get(proxy.addr, target, "app.example.com", "").await;
        assert_eq!(raw_status(&r), 401, "{target}: {r}");
    }
    assert_eq!(up.count(), 0);
    // Segment boundaries: /publicity and /public-old are not under /public/.
    for target in [
        "/publicity/secret",
        "/public-old/x",
        "/public",
        "/PUBLICITY",
    ] {
        let r = raw_get(proxy.addr, target, "app.example.com", "").await;
        assert_eq!(raw_status(&r), 401, "{target}");
    }
    // Accepted public paths are forwarded normalised, exactly as routed.
    for (target, forwarded) in [
        ("/public/a/./b/../c", "/public/a/c"),
        ("/public//x", "/public/x"),
        ("/public/%61bc", "/public/abc"),
        ("/public/x?q=%2F..%2F&r=1", "/public/x?q=%2F..%2F&r=1"),
        ("/public/%2561dmin", "/public/%2561dmin"),
    ] {
        let r = raw_get(proxy.addr, target, "app.example.com", "").await;
        assert_eq!(raw_status(&r), 200, "{target}: {r}");
        assert_eq!(up.last().uri, forwarded, "{target}");
    }
}

#[tokio::test]
async fn request_target_forms_and_hosts() {
    let (_idp, up, proxy) = env().await;
    let send = |req: String| {
        let addr = proxy.addr;
        async move { raw(addr, req.as_bytes()).await }
    };
    // Absolute-form for a foreign authority: 400. For our own host: treated as origin-form.
    let r = send("GET https://evil.com/public/x HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n".into()).await;
    assert_eq!(raw_status(&r), 400, "{r}");
    let r = send("GET http://app.example.com/public/x HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n".into()).await;
    assert_eq!(raw_status(&r), 200, "{r}");
    assert_eq!(up.last().uri, "/public/x");
    for bad in [
        "OPTIONS * HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        "CONNECT 127.0.0.1:9001 HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nConnection: close\r\n\r\n",
        "GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /public/x HTTP/1.1\r\nHost: app.example.com\r\nHost: evil.com\r\nConnection: close\r\n\r\n",
        "GET /public/x HTTP/1.1\r\nHost: app.example.com@evil.com\r\nConnection: close\r\n\r\n",
        "GET /public/x HTTP/1.1\r\nHost: app.example.com:80:80\r\nConnection: close\r\n\r\n",
    ] {
        let r = send(bad.into()).await;
        assert_eq!(raw_status(&r), 400, "{bad:?}: {r}");
    }
    // Trailing dot and case: same virtual host.
    let r = raw_get(proxy.addr, "/public/x", "APP.EXAMPLE.COM.", "").await;
    assert_eq!(raw_status(&r), 200, "{r}");
    // Wildcards on a label boundary only; unknown hosts: 404.
    for (host, want) in [
        ("x.apps.example.com", 401),
        ("apps.example.com", 404),
        ("evil-apps.example.com", 404),
        ("x.apps.example.com.evil.com", 404),
    ] {
        let r = raw_get(proxy.addr, "/", host, "").await;
        assert_eq!(raw_status(&r), want, "{host}");
    }
}
