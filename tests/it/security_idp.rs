//! SECURITY.md §10 (IdP faults, IDP-01..IDP-07) and §11 (upstream faults, UP-01..UP-07).
//! UP-01 is HOLDOUT: our own strongest inputs.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use portcullis::devidp::DevIdp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::pki::{OldTlsServer, Pki, server_config, tls_front};
use crate::security_support::*;
use crate::support::*;

#[tokio::test]
async fn idp_01_unreachable_at_start_then_recovers() {
    let logs = LogCapture::start();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let up = Upstream::start().await;
    let issuer = format!("http://127.0.0.1:{port}");
    let text = config(
        &issuer,
        "http://app.example.com",
        "",
        "",
        &route("/", &up.url(), ""),
    );
    let proxy = Proxy::start_unready(|_| text).await;
    let addr = proxy.addr;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        raw_status(&raw_get(addr, "/healthz", "app.example.com", "").await),
        200
    );
    assert_eq!(
        raw_status(&raw_get(addr, "/readyz", "app.example.com", "").await),
        503
    );
    let r = raw(addr, b"GET /x HTTP/1.1\r\nHost: app.example.com\r\nAccept: text/html\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&r), 503, "{r}");
    assert!(r.to_ascii_lowercase().contains("retry-after"));
    assert_eq!(up.count(), 0, "never served with a partly loaded config");
    // The IdP comes up on that address: ready without a restart.
    let idp = idp_with(|o| o.bind = format!("127.0.0.1:{port}").parse().unwrap()).await;
    let started = Instant::now();
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(20) {
        if raw_status(&raw_get(addr, "/readyz", "app.example.com", "").await) == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "never became ready after the IdP came up");
    drop(idp);
    proxy.stop().await;
    drop(logs);
}

#[tokio::test]
async fn idp_02_idp_failing_during_login() {
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await; // an existing session
    for (status, body, want, reason) in [
        (500u16, "<html>oops</html>", 503u16, "idp_unavailable"),
        (
            503,
            r#"{"error":"temporarily_unavailable"}"#,
            503,
            "idp_unavailable",
        ),
        (400, r#"{"error":"invalid_grant"}"#, 400, "invalid_grant"),
        (401, r#"{"error":"invalid_client"}"#, 502, "invalid_client"),
    ] {
        sec.idp.set_token_error(Some((status, body.into())));
        let t = sec.browser();
        let cb = sec.until_callback(&t, "https://app.example.com/").await;
        let r = sec.get(&t, &cb).await;
        sec.cb_reject(&r, want, &[reason], 0);
        assert!(!r.body.contains("oops") && !r.body.contains("temporarily_unavailable"));
        assert!(r.body.contains("/oauth2/start"), "a retry link");
        // The state is consumed.
        sec.idp.set_token_error(None);
        assert_eq!(sec.get(&t, &cb).await.status, StatusCode::BAD_REQUEST);
    }
    assert!(
        !sec.logs.lines_with(&["ERROR", "invalid_client"]).is_empty(),
        "misconfiguration is an ERROR"
    );
    assert_eq!(
        sec.get(&sec.api_of(&b), "https://app.example.com/x")
            .await
            .status,
        StatusCode::OK
    );
    sec.finish().await;
}

#[tokio::test]
async fn idp_03_slow_token_endpoint() {
    // The token endpoint answers after 30 s; the proxy's total IdP timeout is 15 s. Proxied
    // traffic of existing sessions is unaffected meanwhile.
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    sec.idp
        .set_delay(portcullis::devidp::Endpoint::Token, Duration::from_secs(30));
    let t = sec.browser();
    let cb = sec.until_callback(&t, "https://app.example.com/").await;
    let started = Instant::now();
    // The fixture's client gives up after 10 s: the stuck callback goes over a raw socket.
    let u = url::Url::parse(&cb).unwrap();
    let target = &cb[u.origin().ascii_serialization().len()..];
    let cookies: String = t
        .cookie_names()
        .iter()
        .map(|n| format!("{n}={}; ", t.cookie(n).unwrap()))
        .collect();
    let addr = sec.proxy.addr;
    let target = target.to_string();
    let slow = tokio::spawn(async move {
        raw_for(addr, format!("GET {target} HTTP/1.1\r\nHost: app.example.com\r\nCookie: {cookies}\r\nConnection: close\r\n\r\n").as_bytes(), Duration::from_secs(25)).await
    });
    let api = sec.api_of(&b);
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let s = Instant::now();
        assert_eq!(
            api.get("https://app.example.com/x").await.status,
            StatusCode::OK
        );
        worst = worst.max(s.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    let (r, _) = slow.await.unwrap();
    assert_eq!(raw_status(&r), 503, "{r:.300}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(
        !sec.logs
            .lines_with(&["login_failed", "idp_timeout"])
            .is_empty()
    );
    assert_eq!(sec.idp.counts().token, 2, "no retry of the token POST");
    sec.idp
        .set_delay(portcullis::devidp::Endpoint::Token, Duration::ZERO);
    sec.finish().await;
}

#[tokio::test]
async fn idp_04_garbage_token_responses() {
    let sec = Sec::start().await;
    let nested = "[".repeat(100_000);
    let big = format!("{{\"access_token\":\"{}\"}}", "a".repeat(3 << 20));
    for body in [
        r#"{"access_token":"x","id_tok"#,
        "[]",
        "null",
        r#"{"access_token":123,"id_token":null}"#,
        r#"{"access_token":"a","token_type":"Bearer","id_token":"x.y.z","id_token":"a.b.c"}"#,
        &nested,
        "",
        &big,
    ] {
        sec.idp.set_token_error(Some((200, body.to_string())));
        let t = sec.browser();
        let cb = sec.until_callback(&t, "https://app.example.com/").await;
        let r = sec.get(&t, &cb).await;
        sec.cb_reject(&r, 503, &["idp_bad_response"], 0);
    }
    for l in sec.logs.lines_with(&["idp_bad_response"]) {
        assert!(!l.contains("id_tok\""), "the body is never logged: {l}");
    }
    sec.finish().await;
}

#[tokio::test]
async fn idp_07_outbound_client_secret_encoding() {
    // client_secret with ':' and '%' is form-urlencoded before base64 (RFC 6749 §2.3.1): the
    // provider decodes it and the login succeeds. (Redirects not followed and IdP cookies
    // ignored: oidc::http unit tests redirect_is_not_followed, returns_body_and_drops_set_cookie.)
    let secret = "s3cr:et%25with:colons"; // fake test fixture
    let idp = idp_with(|o| o.client_secret = secret.into()).await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let text = reference_config(&idp, &up, "")(0).replace(CLIENT_SECRET, secret);
    let proxy = Proxy::start(move |_| text).await;
    let b = Browser::new(proxy.addr);
    let r = b.login("https://app.example.com/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        idp.last_token_request().unwrap().auth,
        portcullis::devidp::ClientAuth::Basic
    );
}

/// The development provider behind a TLS-terminating front on 127.0.0.1, published as
/// `https://127.0.0.1:PORT` (the front's port), and the proxy configured for that issuer.
struct TlsIdp {
    idp: DevIdp,
    issuer: String,
    handshakes: Option<Arc<AtomicUsize>>,
    _old_tls: Option<OldTlsServer>,
}

/// What serves the provider's https port in a row of `idp_07_tls_faults`.
enum Front {
    /// tokio-rustls (TLS 1.2/1.3) presenting this certificate and key.
    Rustls(PathBuf, PathBuf),
    /// `openssl s_server` with this version flag (`-tls1`, `-tls1_1`); it answers by itself
    /// and never reaches the provider.
    OldTls(&'static str, PathBuf, PathBuf),
}

impl TlsIdp {
    async fn start(front: Front) -> TlsIdp {
        let (listener, old) = match &front {
            Front::Rustls(..) => (
                Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
                None,
            ),
            Front::OldTls(flag, cert, key) => (None, Some(OldTlsServer::start(flag, cert, key))),
        };
        let port = match (&listener, &old) {
            (Some(l), _) => l.local_addr().unwrap().port(),
            (_, Some(o)) => o.addr.port(),
            _ => unreachable!(),
        };
        let issuer = format!("https://127.0.0.1:{port}");
        let idp = idp_with(|o| o.issuer = Some(issuer.clone())).await;
        idp.set_auto_login(Some(alice()));
        let handshakes = match (front, listener) {
            (Front::Rustls(cert, key), Some(l)) => Some(tls_front(
                l,
                server_config(&cert, &key, &[b"http/1.1"]),
                idp.addr(),
            )),
            _ => None,
        };
        TlsIdp {
            idp,
            issuer,
            handshakes,
            _old_tls: old,
        }
    }

    /// The proxy for this issuer: `/` protected, `/public` public, both to `up`; `ca` is
    /// `server.upstream_ca_file`.
    async fn proxy(&self, up: &Upstream, ca: Option<&std::path::Path>) -> Proxy {
        let server = ca.map_or(String::new(), |ca| {
            format!("upstream_ca_file = \"{}\"", ca.display())
        });
        let routes = format!(
            "{}{}",
            route("/public", &up.url(), "auth = \"public\""),
            route("/", &up.url(), "")
        );
        let text = config(
            &self.issuer,
            "https://app.example.com",
            &server,
            "cookie_name = \"_portcullis\"",
            &routes,
        );
        Proxy::start_unready(move |_| text).await
    }

    /// A login through the proxy: the browser's own visits to the provider go to its plain
    /// port (the fixture's client speaks no TLS); discovery, JWKS, token and userinfo calls
    /// of the proxy go through the https front.
    async fn login(&self, b: &Browser, url: &str) -> Resp {
        let r = b.get(url).await;
        assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
        let authorize = r.location().unwrap();
        let plain = authorize
            .strip_prefix(&self.issuer)
            .map(|rest| format!("http://{}{rest}", self.idp.addr()))
            .unwrap_or_else(|| panic!("not the provider: {authorize}"));
        let r = b.get(&plain).await;
        let callback = r.location().expect("auto-login redirects to the callback");
        assert!(callback.starts_with("https://app.example.com/oauth2/callback?"));
        b.follow(&callback).await.0
    }
}

/// Waits (at most 10 s) for the proxy's first discovery failure logged for `issuer`.
async fn discovery_failure(logs: &LogCapture, issuer: &str) -> String {
    let needle = format!("issuer={issuer} ");
    for _ in 0..200 {
        if let Some(l) = logs
            .lines_with(&["OpenID provider discovery failed", &needle])
            .into_iter()
            .next()
        {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no discovery failure logged for {issuer}:\n{}", logs.text());
}

#[tokio::test]
async fn idp_07_tls_faults() {
    // SPEC: `server.upstream_ca_file` is an extra CA bundle for https upstreams and the IdP.
    let logs = LogCapture::start();
    let pki = Pki::new("idp07");
    let good = pki.leaf("good", "127.0.0.1", "IP:127.0.0.1");

    // Positive control: a certificate from the CA in upstream_ca_file, for the right host.
    // Discovery, JWKS, token and userinfo all go over TLS and the login works.
    let tls = TlsIdp::start(Front::Rustls(good.0.clone(), good.1.clone())).await;
    let up = Upstream::start().await;
    let proxy = tls.proxy(&up, Some(&pki.ca)).await;
    proxy.wait_ready().await;
    let b = Browser::new(proxy.addr);
    let r = tls.login(&b, "https://app.example.com/private").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        up.last().one("x-auth-request-user").as_deref(),
        Some("u-alice")
    );
    let counts = tls.idp.counts();
    assert!(counts.discovery >= 1 && counts.jwks >= 1 && counts.token == 1);
    assert!(tls.handshakes.as_ref().unwrap().load(Ordering::SeqCst) >= 1);
    proxy.stop().await;

    // The faults: each one is `idp_unavailable`, with the TLS cause in the log.
    let self_signed = pki.self_signed("self", "127.0.0.1", "IP:127.0.0.1");
    let expired = pki.expired_leaf("expired", "127.0.0.1", "IP:127.0.0.1");
    let wrong_host = pki.leaf("wrong", "idp.other.example", "DNS:idp.other.example");
    let rows: Vec<(&str, Front, bool, &[&str])> = vec![
        (
            "self-signed",
            Front::Rustls(self_signed.0, self_signed.1),
            true,
            &["invalid peer certificate", "UnknownIssuer"],
        ),
        (
            "expired",
            Front::Rustls(expired.0, expired.1),
            true,
            &["invalid peer certificate", "expired"],
        ),
        (
            "wrong host",
            Front::Rustls(wrong_host.0, wrong_host.1),
            true,
            &["invalid peer certificate", "not valid for name"],
        ),
        (
            // No insecure default: the CA-signed certificate without upstream_ca_file.
            "CA not configured",
            Front::Rustls(good.0.clone(), good.1.clone()),
            false,
            &["invalid peer certificate", "UnknownIssuer"],
        ),
        (
            "TLS 1.0 only",
            Front::OldTls("-tls1", good.0.clone(), good.1.clone()),
            true,
            &["received fatal alert: ProtocolVersion"],
        ),
        (
            "TLS 1.1 only",
            Front::OldTls("-tls1_1", good.0.clone(), good.1.clone()),
            true,
            &["received fatal alert: ProtocolVersion"],
        ),
    ];
    for (name, front, with_ca, cause) in rows {
        let tls = TlsIdp::start(front).await;
        let up = Upstream::start().await;
        let proxy = tls.proxy(&up, with_ca.then_some(pki.ca.as_path())).await;
        let line = discovery_failure(&logs, &tls.issuer).await;
        for c in ["TLS with the identity provider failed"]
            .iter()
            .chain(cause)
        {
            assert!(line.contains(c), "{name}: no TLS cause {c:?} in: {line}");
        }
        assert!(line.contains("WARN"), "{name}: {line}");
        // Discovery never loads.
        let ready = raw_get(proxy.addr, "/readyz", "app.example.com", "").await;
        assert_eq!(raw_status(&ready), 503, "{name}: {ready}");
        // A browser on a protected route: the idp-unavailable page (SPEC: 503), Retry-After.
        let r = raw(proxy.addr, b"GET /private HTTP/1.1\r\nHost: app.example.com\r\nAccept: text/html\r\nConnection: close\r\n\r\n").await;
        assert_eq!(raw_status(&r), 503, "{name}: {r}");
        assert!(
            r.to_ascii_lowercase().contains("retry-after: 5"),
            "{name}: {r}"
        );
        assert!(
            r.contains("identity provider cannot be reached"),
            "{name}: {r}"
        );
        let r = raw_get(
            proxy.addr,
            "/oauth2/start?rd=/private",
            "app.example.com",
            "",
        )
        .await;
        assert_eq!(raw_status(&r), 503, "{name}: {r}");
        assert!(r.contains(r#""error":"idp_unavailable""#), "{name}: {r}");
        // Nothing passed the TLS handshake: the provider and the upstream saw nothing.
        assert_eq!(
            tls.idp.counts().discovery,
            0,
            "{name}: the provider was reached"
        );
        if let Some(h) = &tls.handshakes {
            assert_eq!(h.load(Ordering::SeqCst), 0, "{name}: a handshake completed");
        }
        assert_eq!(up.count(), 0, "{name}: the upstream was reached");
        // The process keeps serving: health, and a public route.
        let r = raw_get(proxy.addr, "/healthz", "app.example.com", "").await;
        assert_eq!(raw_status(&r), 200, "{name}: {r}");
        let r = raw_get(proxy.addr, "/public/ok", "app.example.com", "").await;
        assert_eq!(raw_status(&r), 200, "{name}: {r}");
        assert_eq!(up.count(), 1);
        proxy.stop().await;
    }
    assert!(!logs.text().contains(CLIENT_SECRET), "a secret was logged");
}

// === Upstream faults ===

#[tokio::test]
async fn up_01_authentication_before_proxying() {
    // The upstream is down: anonymous requests on protected routes get UNAUTH, never a 502
    // that reveals upstream state; no method, host or upgrade reaches it unauthenticated.
    let sec = Sec::start_config(|idp, up| {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        reference_config(idp, up, "")(0).replace(&up.url(), &format!("http://{dead}"))
    })
    .await;
    let api = sec.api();
    for (m, url) in [
        (Method::GET, "https://app.example.com/private"),
        (Method::POST, "https://app.example.com/private"),
        (Method::DELETE, "https://app.example.com/admin"),
        (Method::PUT, "https://x.apps.example.com/"),
        (Method::PATCH, "https://app.example.com/"),
        (Method::HEAD, "https://app.example.com/private"),
    ] {
        let r = sec.req(&api, m.clone(), url, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {url}");
    }
    let r = raw(sec.proxy.addr, b"GET /private HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await;
    assert_eq!(raw_status(&r), 401, "{r}");
    let r = raw(sec.proxy.addr, b"GET /private HTTP/1.1\r\nHost: app.example.com\r\nAccept: text/html\r\nConnection: close\r\n\r\n").await;
    assert_eq!(raw_status(&r), 302);
    // With a session the same upstream is a generic 502 with no internal address.
    let b = sec.browser();
    let (r, _) = sec.follow(&b, "https://app.example.com/private").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(!r.body.contains("127.0.0.1"), "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(
        !sec.logs
            .lines_with(&["upstream_error", "connect"])
            .is_empty()
    );
}

/// A one-shot raw upstream: reads a request head, writes `response`, then closes (with RST
/// when `reset`).
async fn raw_upstream(response: Vec<u8>, reset: bool) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(&response).await;
                if reset {
                    // SO_LINGER 0 makes the close a TCP RST (and cannot block: nothing lingers).
                    #[allow(deprecated)]
                    let _ = s.set_linger(Some(Duration::ZERO));
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    addr
}

async fn proxy_to(upstream: std::net::SocketAddr) -> Sec {
    Sec::start_config(move |idp, _| {
        config(
            &idp.issuer(),
            "https://app.example.com",
            "request_timeout = \"2s\"",
            "cookie_name = \"_portcullis\"",
            &route("/", &format!("http://{upstream}"), "auth = \"public\""),
        )
    })
    .await
}

#[tokio::test]
async fn up_04_upstream_reset_mid_response() {
    let mut resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    resp.extend(std::iter::repeat_n(b'x', 500_000));
    let sec = proxy_to(raw_upstream(resp, true).await).await;
    let (r, closed) = raw_for(
        sec.proxy.addr,
        b"GET /big HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed);
    if raw_status(&r) == 200 {
        let body = r.split_once("\r\n\r\n").unwrap().1;
        assert!(body.len() < 1_000_000, "never a complete 200");
    } else {
        assert_eq!(raw_status(&r), 502);
    }
    drop(sec);
    // A chunked body without its final chunk.
    let sec = proxy_to(
        raw_upstream(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec(),
            false,
        )
        .await,
    )
    .await;
    let (r, closed) = raw_for(
        sec.proxy.addr,
        b"GET /c HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed);
    assert!(
        !r.ends_with("0\r\n\r\n"),
        "the client must see an incomplete message: {r}"
    );
    drop(sec);
    // A reset before the head: 502.
    let sec = proxy_to(raw_upstream(Vec::new(), true).await).await;
    let r = raw_get(sec.proxy.addr, "/r", "app.example.com", "").await;
    assert_eq!(raw_status(&r), 502, "{r}");
}

#[tokio::test]
async fn up_05_streaming_not_buffered() {
    // The upstream sends a first chunk, then waits 1.5 s before the rest: the client gets the
    // first bytes before the upstream finishes (no full buffering).
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _ = s.write_all(b"5\r\nlast\n\r\n0\r\n\r\n").await;
    });
    let sec = proxy_to(addr).await;
    let mut s = tokio::net::TcpStream::connect(sec.proxy.addr)
        .await
        .unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("first") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "first chunk after {:?}",
        started.elapsed()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(String::from_utf8_lossy(&got).contains("last"));
}

#[tokio::test]
async fn up_06_upstream_response_hygiene() {
    for (name, resp, ok) in [
        (
            "hop-by-hop",
            "HTTP/1.1 200 OK\r\nConnection: X-Foo\r\nX-Foo: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nContent-Length: 2\r\n\r\nok",
            true,
        ),
        (
            "CL and chunked",
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            false,
        ),
        (
            "two CLs",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            false,
        ),
        (
            "obs-fold",
            "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
            false,
        ),
        (
            "101 to a plain request",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
            false,
        ),
    ] {
        let sec = proxy_to(raw_upstream(resp.as_bytes().to_vec(), false).await).await;
        let r = raw_get(sec.proxy.addr, "/u", "app.example.com", "").await;
        let head = r.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        if ok {
            assert_eq!(raw_status(&r), 200, "{name}: {r}");
            for gone in ["x-foo:", "keep-alive:", "proxy-authenticate:"] {
                assert!(!head.contains(gone), "{name}: {gone} survived");
            }
        } else {
            // 502, or (conflicting framing) the Content-Length dropped; never a tunnel.
            let s = raw_status(&r);
            assert!(
                s == 502 || (s == 200 && !head.contains("content-length: 10")),
                "{name}: {r}"
            );
            assert_ne!(s, 101, "{name}: tunnel");
        }
        sec.finish().await;
    }
    // 1,000 interim 103 responses: answered (or refused) without hanging.
    let mut resp = "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n".repeat(1000);
    resp.push_str("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let sec = proxy_to(raw_upstream(resp.into_bytes(), false).await).await;
    let started = Instant::now();
    let r = raw_get(sec.proxy.addr, "/hints", "app.example.com", "").await;
    assert!(matches!(raw_status(&r), 200 | 502), "{r:.300}");
    assert!(r.matches("103 Early Hints").count() <= 1000);
    assert!(started.elapsed() < Duration::from_secs(4));
    sec.finish().await;
}

#[tokio::test]
async fn up_07_identity_isolation_on_pooled_connections() {
    let sec = Sec::start().await;
    let alice_b = sec.browser();
    sec.login(&alice_b, "https://app.example.com/").await;
    sec.idp.set_auto_login(Some(bob()));
    let bob_b = sec.browser();
    sec.login(&bob_b, "https://app.example.com/").await;
    let mut tasks = vec![];
    for i in 0..400 {
        let (b, user) = if i % 2 == 0 {
            (sec.api_of(&alice_b), "u-alice")
        } else {
            (sec.api_of(&bob_b), "u-bob")
        };
        tasks.push(tokio::spawn(async move {
            let r = b.get(&format!("https://app.example.com/n?nonce={i}")).await;
            assert_eq!(r.status, StatusCode::OK);
            let v = r.json();
            assert_eq!(
                v["uri"],
                format!("/n?nonce={i}"),
                "a response reached the wrong client"
            );
            let users: Vec<_> = v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h[0] == "x-auth-request-user")
                .map(|h| h[1].as_str().unwrap().to_string())
                .collect();
            assert_eq!(users, vec![user.to_string()], "request {i}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    sec.finish().await;
}
