//! The HTTP edge: head limits (431), malformed framing (400), health endpoints, graceful
//! shutdown of the real binary.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn head_limits_and_framing() {
    let idp = idp().await;
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    let r = raw_get(proxy.addr, "/public/x", "app.example.com", &big).await;
    assert_eq!(raw_status(&r), 431, "{r:.200}");
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = raw_get(proxy.addr, "/public/x", "app.example.com", &many).await;
    assert_eq!(raw_status(&r), 431, "{r:.200}");
    for bad in [
        "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "GET /public/x HTTP/1.1\r\nHost: app.example.com\r\nX-Foo: bar\r\n X-Auth-Request-User: u-bob\r\n\r\n",
        "GET /public/x HTTP/1.1\r\nHost: app.example.com\r\nX-A: a\x00b\r\n\r\n",
    ] {
        let r = raw(proxy.addr, bad.as_bytes()).await;
        assert_eq!(raw_status(&r), 400, "{bad:?}: {r}");
    }
    assert_eq!(
        up.count(),
        0,
        "the upstream saw none of the malformed requests"
    );
    // Content-Length with Transfer-Encoding, or repeated Content-Length: 400 and close, and a
    // request smuggled in the "body" is never parsed.
    for smuggle in [
        &b"POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.example.com\r\n\r\n"[..],
        b"POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
        b"POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ] {
        let r = raw(proxy.addr, smuggle).await;
        assert_eq!(raw_status(&r), 400, "{r}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "exactly one response: {r}");
    }
    assert_eq!(
        up.count(),
        0,
        "the upstream saw none of the ambiguous requests"
    );
    let r = raw_get(proxy.addr, "/healthz", "anything.example", "").await;
    assert_eq!(raw_status(&r), 200);
    let r = raw_get(proxy.addr, "/readyz", "anything.example", "").await;
    assert_eq!(raw_status(&r), 200);
}

#[tokio::test]
async fn readyz_is_503_until_discovery_loads() {
    // An issuer nobody answers on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let text = config(
        &format!("http://{dead}"),
        "http://127.0.0.1",
        "",
        "",
        &route("/", "http://127.0.0.1:9", ""),
    );
    let proxy = Proxy::start_unready(|_| text).await;
    let addr = proxy.addr;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        raw_status(&raw_get(addr, "/readyz", "127.0.0.1", "").await),
        503
    );
    assert_eq!(
        raw_status(&raw_get(addr, "/healthz", "127.0.0.1", "").await),
        200
    );
    let r = raw(
        addr,
        b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        raw_status(&r),
        503,
        "a browser gets 503 while the IdP is not loaded: {r}"
    );
    assert!(r.to_ascii_lowercase().contains("retry-after"));
    proxy.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let idp = idp().await;
    let up = Upstream::start().await;
    let issuer = idp.issuer();
    let upstream = up.url();
    let routes = route("/", &upstream, "auth = \"public\"");
    let proxy = Proxy::start(move |_| {
        config(
            &issuer,
            "http://127.0.0.1",
            "header_read_timeout = \"1s\"",
            "",
            &routes,
        )
    })
    .await;
    let addr = proxy.addr;
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        // Never finish the head: the proxy must close within its header_read_timeout.
        s.read(&mut buf).is_ok()
    })
    .await
    .unwrap();
    assert!(closed, "the connection was closed by the proxy");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (idp, up) = rt.block_on(async {
        let idp = idp().await;
        let up = Upstream::start().await;
        up.set_mode(EchoMode::Slow(Duration::from_millis(800)));
        (idp, up)
    });
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("portcullis-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        config(
            &idp.issuer(),
            &format!("http://127.0.0.1:{port}"),
            "",
            "",
            &route("/", &up.url(), "auth = \"public\""),
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = None;
    for _ in 0..100 {
        if let Ok(c) = std::net::TcpStream::connect(addr) {
            s = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut s = s.expect("the proxy never listened");
    s.write_all(
        format!("GET /slow HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    // Wait until the request is really in flight (the upstream has it), then SIGTERM.
    for _ in 0..200 {
        if up.count() > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(up.count(), 1, "the request never reached the upstream");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut out = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_string(&mut out);
    assert_eq!(
        raw_status(&out),
        200,
        "the in-flight request finished: {out}"
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
    drop(rt);
}
