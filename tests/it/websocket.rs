//! WebSocket upgrades through the proxy against a real WebSocket echo upstream (RFC 6455):
//! gated like any request, identity headers on the upgrade request, tunnel closed when the
//! session ends and on shutdown; h2c upgrades never forwarded.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn accept_key(key: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(d.as_ref())
}

/// A WebSocket echo server: completes the RFC 6455 handshake, then echoes text frames.
type HeaderLog = Arc<Mutex<Vec<Vec<(String, String)>>>>;

struct WsUpstream {
    addr: std::net::SocketAddr,
    seen: HeaderLog,
}

async fn ws_upstream() -> WsUpstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |mut req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push(
                            req.headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect(),
                        );
                        let key = req
                            .headers()
                            .get("sec-websocket-key")
                            .map(|v| v.to_str().unwrap().to_string());
                        let Some(key) = key else {
                            return Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()));
                        };
                        let on = hyper::upgrade::on(&mut req);
                        tokio::spawn(async move {
                            let Ok(up) = on.await else { return };
                            let mut io = TokioIo::new(up);
                            while let Some(msg) = read_frame(&mut io).await {
                                if write_frame(&mut io, &msg, false).await.is_err() {
                                    return;
                                }
                            }
                        });
                        let resp = Response::builder()
                            .status(StatusCode::SWITCHING_PROTOCOLS)
                            .header("upgrade", "websocket")
                            .header("connection", "Upgrade")
                            .header("sec-websocket-accept", accept_key(&key))
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    WsUpstream { addr, seen }
}

/// Reads one small frame (payload < 126 bytes), unmasking if needed. None at EOF/close.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).await.ok()?;
    if h[0] & 0x0f == 0x8 {
        return None;
    }
    let masked = h[1] & 0x80 != 0;
    let len = (h[1] & 0x7f) as usize;
    assert!(len < 126);
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await.ok()?;
    }
    let mut p = vec![0u8; len];
    r.read_exact(&mut p).await.ok()?;
    if masked {
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some(p)
}

async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    payload: &[u8],
    mask: bool,
) -> std::io::Result<()> {
    let mut f = vec![0x81, payload.len() as u8 | if mask { 0x80 } else { 0 }];
    if mask {
        let m = [0x11, 0x22, 0x33, 0x44];
        f.extend_from_slice(&m);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    w.write_all(&f).await
}

/// Opens a WebSocket through the proxy; returns the socket after a 101, or the status line.
async fn open(
    proxy: std::net::SocketAddr,
    host: &str,
    path: &str,
    cookie: Option<&str>,
) -> Result<TcpStream, String> {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    open_with(proxy, host, path, &cookie).await
}

/// Opens a WebSocket through the proxy with `extra` header lines (each ending in CRLF).
async fn open_with(
    proxy: std::net::SocketAddr,
    host: &str,
    path: &str,
    extra: &str,
) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nX-Auth-Request-User: u-bob\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if raw_status(&head) != 101 {
        return Err(head);
    }
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("sec-websocket-accept: {}", accept_key(key)).to_ascii_lowercase()),
        "{head}"
    );
    Ok(s)
}

async fn echo_once(s: &mut TcpStream, msg: &str) -> Option<String> {
    write_frame(s, msg.as_bytes(), true).await.ok()?;
    let got = tokio::time::timeout(Duration::from_secs(2), read_frame(s))
        .await
        .ok()??;
    Some(String::from_utf8(got).unwrap())
}

async fn closes_within(s: &mut TcpStream, d: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(d, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn websocket_on_protected_route_is_gated_carries_identity_and_closes_on_sign_out() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let ws = ws_upstream().await;
    let up = Upstream::start().await;
    let ws_url = format!("http://{}", ws.addr);
    let issuer = idp.issuer();
    let routes = route("/public/", &ws_url, "auth = \"public\"") + &route("/", &ws_url, "");
    let proxy = Proxy::start(move |_| {
        config(
            &issuer,
            "https://app.example.com",
            "",
            "cookie_name = \"_portcullis\"",
            &routes,
        )
    })
    .await;
    drop(up);
    // Without a session: no upgrade, the upstream sees nothing.
    let err = open(proxy.addr, "app.example.com", "/ws", None)
        .await
        .unwrap_err();
    assert_eq!(raw_status(&err), 401, "{err}");
    assert!(ws.seen.lock().unwrap().is_empty());

    let b = Browser::new(proxy.addr);
    b.follow("https://app.example.com/oauth2/start?rd=/").await;
    let cookie = format!(
        "_portcullis={}",
        b.cookie("_portcullis").expect("logged in")
    );
    let mut s = open(proxy.addr, "app.example.com", "/ws", Some(&cookie))
        .await
        .unwrap();
    assert_eq!(echo_once(&mut s, "hello").await.as_deref(), Some("hello"));
    let seen = ws.seen.lock().unwrap().last().cloned().unwrap();
    let get = |n: &str| {
        seen.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        get("x-auth-request-user"),
        vec!["u-alice"],
        "identity on the upgrade request, spoof removed"
    );
    assert!(get("cookie").is_empty());
    assert_eq!(get("upgrade"), vec!["websocket"]);

    // Sign-out in the same browser closes the tunnel.
    b.get("https://app.example.com/oauth2/sign_out").await;
    assert!(
        closes_within(&mut s, Duration::from_secs(3)).await,
        "tunnel still open after sign-out"
    );

    // Public route: no session needed, no identity forwarded; shutdown closes it.
    let mut p = open(proxy.addr, "app.example.com", "/public/ws", None)
        .await
        .unwrap();
    assert_eq!(echo_once(&mut p, "pub").await.as_deref(), Some("pub"));
    let seen = ws.seen.lock().unwrap().last().cloned().unwrap();
    assert!(
        !seen
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-auth-request-user"))
    );
    proxy.stop().await;
    assert!(
        closes_within(&mut p, Duration::from_secs(3)).await,
        "tunnel still open after shutdown"
    );
}

/// A tunnel opened with a bearer token closes when the token expires (its `exp` plus the
/// verification leeway), not only when a side hangs up; one opened with a longer-lived token
/// stays open past that moment.
#[tokio::test]
async fn websocket_opened_with_a_bearer_token_closes_when_the_token_expires() {
    let idp = idp().await;
    let ws = ws_upstream().await;
    let ws_url = format!("http://{}", ws.addr);
    let issuer = idp.issuer();
    let routes = route("/", &ws_url, "");
    let proxy = Proxy::start(move |_| {
        config(
            &issuer,
            "https://app.example.com",
            "",
            "cookie_name = \"_portcullis\"",
            &routes,
        )
        .replacen(
            "[session]",
            "bearer_audiences = [\"api://ws\"]\n[session]",
            1,
        )
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let token = |exp: i64| {
        let key = idp.current_key();
        let header =
            serde_json::json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "at+jwt"});
        let claims = serde_json::json!({
            "iss": idp.issuer(), "aud": "api://ws", "sub": "svc-ws", "exp": exp, "iat": now - 120,
        });
        portcullis::devidp::mint_jwt(&header, &claims, &key).unwrap()
    };
    // Expired 57 s ago: still inside the 60 s leeway, so accepted — for about 3 more seconds.
    let short = format!("Authorization: Bearer {}\r\n", token(now - 57));
    let long = format!("Authorization: Bearer {}\r\n", token(now + 300));
    let mut s = open_with(proxy.addr, "app.example.com", "/ws", &short)
        .await
        .unwrap();
    let mut l = open_with(proxy.addr, "app.example.com", "/ws", &long)
        .await
        .unwrap();
    assert_eq!(echo_once(&mut s, "hi").await.as_deref(), Some("hi"));
    assert!(
        closes_within(&mut s, Duration::from_secs(10)).await,
        "tunnel still open after its token expired"
    );
    assert_eq!(
        echo_once(&mut l, "still").await.as_deref(),
        Some("still"),
        "the long-lived token's tunnel is unaffected"
    );
    // A token already past its leeway opens nothing.
    let stale = format!("Authorization: Bearer {}\r\n", token(now - 600));
    let err = open_with(proxy.addr, "app.example.com", "/ws", &stale)
        .await
        .unwrap_err();
    assert_eq!(raw_status(&err), 401, "{err}");
}

#[tokio::test]
async fn h2c_upgrade_is_never_forwarded() {
    let idp = idp().await;
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let r = raw(
        proxy.addr,
        b"GET /public/x HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&r), 200, "{r}");
    let seen = up.last();
    assert!(
        seen.all("upgrade").is_empty()
            && seen.all("http2-settings").is_empty()
            && seen.all("connection").is_empty()
    );
}
