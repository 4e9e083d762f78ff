//! Upstream faults (SECURITY UP-02, UP-03): refused → 502, slow → 504, with generic pages;
//! stalled bodies cut after the idle bound, client disconnects cancel the upstream request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::security_support::*;
use crate::support::*;

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let idp = idp().await;
    let up = Upstream::start().await;
    // A port with nothing listening: bind, note, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let issuer = idp.issuer();
    let live = up.url();
    let routes = route("/dead/", &format!("http://{dead}"), "auth = \"public\"")
        + &route("/", &live, "auth = \"public\"");
    let proxy = Proxy::start(move |_| {
        config(
            &issuer,
            "http://app.example.com",
            "request_timeout = \"500ms\"",
            "",
            &routes,
        )
    })
    .await;
    let r = raw_get(proxy.addr, "/dead/x", "app.example.com", "").await;
    assert_eq!(raw_status(&r), 502, "{r}");
    assert!(
        !r.contains(&dead.port().to_string()),
        "no internal address in the page"
    );
    assert!(r.to_ascii_lowercase().contains("cache-control: no-store"));
    up.set_mode(EchoMode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let r = raw_get(proxy.addr, "/slow", "app.example.com", "").await;
    assert_eq!(raw_status(&r), 504, "{r}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    up.set_mode(EchoMode::Normal);
    let r = raw_get(proxy.addr, "/fine", "app.example.com", "").await;
    assert_eq!(raw_status(&r), 200);
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream() {
    let idp = idp().await;
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    let body = bytes::Bytes::from(vec![b'x'; 3 * 1024 * 1024]);
    let r = b
        .try_request(
            http::Method::POST,
            "https://app.example.com/public/upload",
            &[("content-type", "application/octet-stream")],
            body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.last().body.len(), 3 * 1024 * 1024);
    assert_eq!(up.last().method, "POST");
}

// === UP-03: stalled bodies and client disconnects ===

/// A raw TCP upstream: reads each connection's request head, writes `reply(head)` when it
/// gives one, then holds the connection, reading, until the proxy closes it. It counts the
/// connections accepted, the heads read and the connections the proxy closed (EOF seen).
/// With `hold`, it stops reading after the head until `hold` is notified.
struct RawUpstream {
    addr: SocketAddr,
    heads: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(reply: fn(&str) -> Option<&'static str>) -> RawUpstream {
        RawUpstream::start_holding(reply, None).await
    }

    async fn start_holding(
        reply: fn(&str) -> Option<&'static str>,
        hold: Option<Arc<tokio::sync::Notify>>,
    ) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (h, c, a) = (heads.clone(), closed.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (h, c, hold) = (h.clone(), c.clone(), hold.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut replied = false;
                    loop {
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        if !replied && let Some(end) = find(&buf, b"\r\n\r\n") {
                            replied = true;
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            h.fetch_add(1, Ordering::SeqCst);
                            if let Some(r) = reply(&head) {
                                let _ = tcp.write_all(r.as_bytes()).await;
                            }
                            if let Some(hold) = &hold {
                                hold.notified().await;
                            }
                        }
                    }
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        RawUpstream {
            addr,
            heads,
            closed,
            accepted,
        }
    }
    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
    fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
    /// Connections the proxy holds open to this upstream.
    fn open(&self) -> usize {
        self.accepted.load(Ordering::SeqCst) - self.closed()
    }
    /// A route to this upstream for `/stall/` on app.example.com, placed before the reference
    /// routes (login required).
    fn route(&self) -> String {
        format!(
            "[[route]]\nhost = \"app.example.com\"\npath = \"/stall/\"\nupstream = \"http://{}\"\n",
            self.addr
        )
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Polls `cond` every 20 ms for at most `limit`.
async fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Reads from `s` until the peer closes or `wait` passes: (bytes, closed by the peer).
async fn read_all(s: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// The reference deployment with `request_timeout` = `timeout`, the raw upstream's route
/// first, and alice logged in. Returns the session cookie header line.
async fn stall_setup(raw: &RawUpstream, timeout: &str) -> (Sec, Browser, String) {
    let extra = raw.route();
    let timeout = format!("request_timeout = \"{timeout}\"");
    let sec = Sec::start_config(move |idp, up| {
        reference_config(idp, up, &extra)(0).replace("request_timeout = \"1s\"", &timeout)
    })
    .await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let cookie = format!(
        "Cookie: _portcullis={}\r\n",
        b.cookie("_portcullis").unwrap()
    );
    (sec, b, cookie)
}

fn stalling_response(head: &str) -> Option<&'static str> {
    if head.contains("/stall/chunked") {
        Some("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
    } else {
        Some("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    }
}

#[tokio::test]
async fn up_03_stalled_response_body_is_cut_after_the_idle_timeout() {
    let raw = RawUpstream::start(stalling_response).await;
    let (sec, _b, cookie) = stall_setup(&raw, "1s").await;
    // HTTP/1.1, both framings: headers and 10 bytes arrive, then the upstream stalls. No
    // `Connection: close`: only the abort closes the connection.
    for (path, framing) in [
        ("/stall/length", "content-length: 100"),
        ("/stall/chunked", "transfer-encoding: chunked"),
    ] {
        let mut s = TcpStream::connect(sec.proxy.addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: app.example.com\r\n{cookie}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (text, closed) = read_all(&mut s, Duration::from_secs(15)).await;
        let took = started.elapsed();
        assert!(
            closed,
            "{path}: the proxy never closed the stalled stream: {text}"
        );
        assert!(
            took >= Duration::from_millis(900),
            "{path}: cut too early ({took:?})"
        );
        assert!(
            took < Duration::from_secs(12),
            "{path}: cut too late ({took:?})"
        );
        assert_eq!(raw_status(&text), 200, "{text}");
        assert!(text.to_ascii_lowercase().contains(framing), "{text}");
        let body = text.split_once("\r\n\r\n").unwrap().1;
        if framing.starts_with("content-length") {
            assert_eq!(body, "0123456789", "fewer bytes than the Content-Length");
        } else {
            let body = body.to_ascii_lowercase();
            assert!(body.starts_with("a\r\n0123456789\r\n"), "{body:?}");
            assert!(!body.contains("0\r\n\r\n"), "no last chunk: {body:?}");
        }
    }
    // HTTP/2 (h2c): the stream is reset after the data received.
    let mut h2 = h2c(sec.proxy.addr).await;
    let req = http::Request::get("http://app.example.com/stall/length")
        .header("cookie", cookie.trim_end().trim_start_matches("Cookie: "))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let started = Instant::now();
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(15), body.frame()).await {
            Err(_) => panic!("HTTP/2 stream never reset"),
            Ok(None) => panic!("HTTP/2 stream ended cleanly after {got:?}"),
            Ok(Some(Ok(f))) => got.extend_from_slice(&f.into_data().unwrap_or_default()),
            Ok(Some(Err(e))) => break e,
        }
    };
    assert_eq!(got, b"0123456789");
    assert!(format!("{err:?}").contains("INTERNAL_ERROR"), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The upstream connections were closed too, none returned to the pool.
    assert!(
        eventually(Duration::from_secs(10), || raw.heads() == 3
            && raw.open() == 0)
        .await,
        "upstream: {} heads, {} open",
        raw.heads(),
        raw.open()
    );
    let lines = sec
        .logs
        .lines_with(&["upstream_error", "upstream_body_timeout"]);
    assert_eq!(lines.len(), 3, "one WARN per cut stream: {lines:?}");
    assert!(lines.iter().all(|l| l.contains("WARN")), "{lines:?}");
    sec.finish().await;
}

#[tokio::test]
async fn up_03_stalled_request_body_abandons_the_upstream() {
    let raw = RawUpstream::start(|_| None).await;
    let (sec, _b, cookie) = stall_setup(&raw, "1s").await;
    let mut s = TcpStream::connect(sec.proxy.addr).await.unwrap();
    let req = format!(
        "POST /stall/upload HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\n{cookie}Content-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n0123456789"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || raw.heads() == 1).await);
    let started = Instant::now();
    // The upstream sees its connection closed…
    assert!(
        eventually(Duration::from_secs(12), || raw.closed() == 1).await,
        "the upstream request was never abandoned"
    );
    // …and the client, which never sent the other 90 bytes, gets a 408 and a close.
    let (text, closed) = read_all(&mut s, Duration::from_secs(10)).await;
    assert_eq!(raw_status(&text), 408, "{text}");
    assert!(text.contains("client_body_timeout"), "{text}");
    assert!(closed, "the connection is closed after the 408");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(
        sec.logs
            .lines_with(&["client_error", "client_body_timeout"])
            .len(),
        1
    );
    sec.upstream_saw(1); // the login's landing page only
    sec.finish().await;
}

#[tokio::test]
async fn up_03_an_upstream_that_stops_reading_the_request_body_is_504() {
    // The upstream reads the head, then nothing: 64 MiB of body fill the socket buffers, the
    // proxy cannot hand over the next chunk, and no deadline may wait for the body forever.
    let hold = Arc::new(tokio::sync::Notify::new());
    let raw = RawUpstream::start_holding(|_| None, Some(hold.clone())).await;
    let (sec, _b, cookie) = stall_setup(&raw, "1s").await;
    let s = TcpStream::connect(sec.proxy.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    const LEN: usize = 64 * 1024 * 1024;
    let head = format!(
        "POST /stall/upload HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\n{cookie}Content-Length: {LEN}\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&vec![b'x'; LEN]).await
    });
    assert!(eventually(Duration::from_secs(10), || raw.heads() == 1).await);
    let started = Instant::now();
    // The answer comes while the client is still sending (the connection is not closed by
    // it: read until the page is complete).
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = started + Duration::from_secs(15);
    while !String::from_utf8_lossy(&out).contains("upstream_timeout") {
        match tokio::time::timeout_at(deadline.into(), rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&out);
    assert_eq!(raw_status(&text), 504, "{text}");
    assert!(text.contains("upstream_timeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(12));
    // The client could not send its whole body (still blocked, or cut off).
    assert!(!writer.is_finished() || writer.await.unwrap().is_err());
    hold.notify_waiters();
    assert!(
        eventually(Duration::from_secs(10), || raw.open() == 0).await,
        "the upstream request was abandoned"
    );
    sec.finish().await;
}

#[tokio::test]
async fn up_03_a_slow_but_moving_upload_is_not_cut() {
    // Six bytes 400 ms apart: 2.4 s in all, more than request_timeout (1 s), but never idle
    // for 1 s. The response-head deadline starts once the body is sent.
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let session = b.cookie("_portcullis").unwrap();
    let mut s = TcpStream::connect(sec.proxy.addr).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\nCookie: _portcullis={session}\r\nContent-Length: 6\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for c in b"abcdef" {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(&[*c]).await.unwrap();
    }
    let (text, _) = read_all(&mut s, Duration::from_secs(10)).await;
    assert_eq!(raw_status(&text), 200, "{text}");
    assert_eq!(sec.up.last().body, b"abcdef");
    sec.finish().await;
}

#[tokio::test]
async fn up_03_client_disconnect_cancels_the_upstream_request() {
    let raw = RawUpstream::start(|_| None).await;
    // A long response-head deadline: only the disconnect can end the upstream request.
    let (sec, b, cookie) = stall_setup(&raw, "60s").await;
    let request = format!("GET /stall/wait HTTP/1.1\r\nHost: app.example.com\r\n{cookie}\r\n");
    let s = {
        let mut s = TcpStream::connect(sec.proxy.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        s
    };
    assert!(eventually(Duration::from_secs(10), || raw.heads() == 1).await);
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || raw.closed() == 1).await,
        "the upstream never saw its connection closed"
    );
    // Many at once: no task and no upstream connection left behind.
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(sec.proxy.addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        clients.push(s);
    }
    assert!(
        eventually(Duration::from_secs(20), || raw.heads() == 51).await,
        "the upstream saw {} of 51 requests",
        raw.heads()
    );
    assert!(tasks() > before, "the requests are in flight");
    drop(clients);
    assert!(
        eventually(Duration::from_secs(15), || raw.open() == 0).await,
        "{} upstream connections still open",
        raw.open()
    );
    assert!(
        eventually(Duration::from_secs(10), || tasks() <= before).await,
        "tasks: {} before, {} after",
        before,
        tasks()
    );
    // Still serving, upstream and proxy alike.
    let r = b.get("https://app.example.com/after").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        sec.logs
            .lines_with(&["upstream_error", "upstream_timeout"])
            .is_empty(),
        "the requests ended by the disconnects, not by the deadline"
    );
    sec.finish().await;
}
