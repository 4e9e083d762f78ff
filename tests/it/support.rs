//! Fixtures for the integration tests: a real upstream echo server, the in-repo OpenID
//! provider, the proxy on an ephemeral port, and a cookie-keeping HTTP client ("browser")
//! that can address virtual hosts (app.example.com, …) on loopback.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::devidp::{DevIdp, DevIdpOptions, DevUser};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const COOKIE_SECRET: &str = "dGVzdC1vbmx5LWNvb2tpZS1zZWNyZXQtMzItYnl0ZXMtbG9uZyEh"; // fake test fixture
pub const CLIENT_SECRET: &str = "test-client-secret"; // fake test fixture

// === Upstream echo ===

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// Every value of a header (case-insensitive name).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn one(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(
            all.len() <= 1,
            "header {name} appears {} times: {all:?}",
            all.len()
        );
        all.into_iter().next()
    }
}

/// How the echo upstream behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoMode {
    Normal,
    /// Waits this long before the response head.
    Slow(Duration),
}

pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    mode: Arc<Mutex<EchoMode>>,
    stop: Option<oneshot::Sender<()>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(EchoMode::Normal));
        let (tx, mut rx) = oneshot::channel::<()>();
        let (seen2, mode2) = (seen.clone(), mode.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Ok((tcp, _)) = listener.accept() => {
                        let (seen, mode) = (seen2.clone(), mode2.clone());
                        tokio::spawn(async move {
                            let svc = service_fn(move |req: Request<Incoming>| {
                                let (seen, mode) = (seen.clone(), mode.clone());
                                async move { Ok::<_, Infallible>(echo(req, seen, mode).await) }
                            });
                            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                                .await;
                        });
                    }
                    _ = &mut rx => break,
                }
            }
        });
        Upstream {
            addr,
            seen,
            mode,
            stop: Some(tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    pub fn set_mode(&self, m: EchoMode) {
        *self.mode.lock().unwrap() = m;
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

async fn echo(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    mode: Arc<Mutex<EchoMode>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: headers.clone(),
        body,
    });
    let m = *mode.lock().unwrap();
    if let EchoMode::Slow(d) = m {
        tokio::time::sleep(d).await;
    }
    let v = serde_json::json!({
        "marker": format!("UPSTREAM-SECRET-{}", parts.uri.path()),
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
    });
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp.headers_mut().append(
        "set-cookie",
        "_portcullis=from-upstream; Path=/".parse().unwrap(),
    );
    resp.headers_mut()
        .append("set-cookie", "upstream=ok; Path=/".parse().unwrap());
    resp
}

// === Identity provider ===

pub async fn idp() -> DevIdp {
    idp_with(|_| {}).await
}

pub async fn idp_with(f: impl FnOnce(&mut DevIdpOptions)) -> DevIdp {
    let mut opts = DevIdpOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        client_id: "portcullis".into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec!["https://app.example.com/oauth2/callback".into()],
        post_logout_redirect_uris: vec![
            "https://app.example.com/".into(),
            "https://app.example.com/bye".into(),
        ],
        ..DevIdpOptions::default()
    };
    f(&mut opts);
    DevIdp::start(opts).await.unwrap()
}

pub fn alice() -> DevUser {
    let mut u = DevUser::named("alice");
    u.sub = "u-alice".into();
    u.groups = Some(vec!["eng".into()]);
    u.extra.insert("tenant".into(), "t1".into());
    u
}

pub fn bob() -> DevUser {
    let mut u = DevUser::named("bob");
    u.sub = "u-bob".into();
    u.groups = Some(vec!["admins".into()]);
    u.extra.insert("tenant".into(), "t1".into());
    u
}

// === The proxy ===

pub struct Proxy {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    /// Starts the proxy on 127.0.0.1:0 with a config built by `toml(port)`.
    pub async fn start(toml: impl FnOnce(u16) -> String) -> Proxy {
        let p = Proxy::start_unready(toml).await;
        p.wait_ready().await;
        p
    }

    /// Starts the proxy like [`Proxy::start`] without waiting for discovery.
    pub async fn start_unready(toml: impl FnOnce(u16) -> String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let text = toml(addr.port());
        let cfg =
            portcullis::config::from_str(&text, "test.toml", &|_| None, std::path::Path::new("."))
                .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n{text}"));
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            portcullis::serve(listener, cfg, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Proxy {
            addr,
            stop: Some(tx),
            done: Some(done),
        }
    }

    /// Waits until /readyz answers 200 (discovery loaded), at most 10 s.
    pub async fn wait_ready(&self) {
        let b = Browser::new(self.addr);
        for _ in 0..200 {
            if let Ok(r) = b.try_get(&format!("http://{}/readyz", self.addr)).await
                && r.status == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("proxy never became ready");
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = d.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The reference deployment of SECURITY.md 0.1, on loopback: `https://app.example.com` as the
/// public URL (the browser fixture resolves every virtual host to the proxy's address).
pub fn reference_config(
    idp: &DevIdp,
    upstream: &Upstream,
    extra: &str,
) -> impl FnOnce(u16) -> String {
    let issuer = idp.issuer();
    let up = upstream.url();
    let extra = extra.to_string();
    move |_port| {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "https://app.example.com"
trusted_proxies = ["10.0.0.0/8"]
request_timeout = "1s"
[oidc]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"
[session]
cookie_name = "_portcullis"
cookie_secret = "{COOKIE_SECRET}"
max_sessions = 1000
[headers.claims]
"X-Tenant" = "tenant"
{extra}
[[route]]
host = "app.example.com"
path = "/public/"
upstream = "{up}"
auth = "public"
[[route]]
host = "app.example.com"
path = "/admin"
upstream = "{up}"
allow_groups = ["admins"]
[[route]]
host = "app.example.com"
path = "/"
upstream = "{up}"
[[route]]
host = "*.apps.example.com"
path = "/"
upstream = "{up}"
[[route]]
host = "docs.example.com"
path = "/"
upstream = "{up}"
auth = "public"
"#
        )
    }
}

// === Browser ===

/// A response as the test sees it.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn location(&self) -> Option<String> {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_string())
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A cookie-keeping HTTP/1.1 client. Every request goes to the proxy (or, for the IdP's
/// host, to the IdP), whatever host the URL names — like a hosts file mapping
/// app.example.com to loopback.
#[derive(Clone)]
pub struct Browser {
    proxy: SocketAddr,
    jar: Arc<Mutex<HashMap<String, String>>>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    pub accept: &'static str,
}

pub const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

impl Browser {
    pub fn new(proxy: SocketAddr) -> Browser {
        Browser {
            proxy,
            jar: Arc::new(Mutex::new(HashMap::new())),
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
            accept: BROWSER_ACCEPT,
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }
    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar.lock().unwrap().insert(name.into(), value.into());
    }
    pub fn remove_cookie(&self, name: &str) {
        self.jar.lock().unwrap().remove(name);
    }
    pub fn cookie_names(&self) -> Vec<String> {
        self.jar.lock().unwrap().keys().cloned().collect()
    }

    pub async fn get(&self, url: &str) -> Resp {
        self.request(Method::GET, url, &[]).await
    }

    pub async fn try_get(&self, url: &str) -> Result<Resp, String> {
        self.try_request(Method::GET, url, &[], Bytes::new()).await
    }

    pub async fn request(&self, method: Method, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.try_request(method, url, headers, Bytes::new())
            .await
            .unwrap()
    }

    pub async fn try_request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Resp, String> {
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let authority = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        // Loopback URLs go where they say; virtual hosts go to the proxy.
        let target = if host == "127.0.0.1" {
            format!("127.0.0.1:{}", parsed.port_or_known_default().unwrap())
        } else {
            self.proxy.to_string()
        };
        let path = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{target}{path}"))
            .header("host", &authority);
        let has_accept = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"));
        if !has_accept && !self.accept.is_empty() {
            req = req.header("accept", self.accept);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let cookies: Vec<String> = self
            .jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !cookies.is_empty()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        {
            req = req.header("cookie", cookies.join("; "));
        }
        let resp = tokio::time::timeout(
            Duration::from_secs(10),
            self.client.request(req.body(Full::new(body)).unwrap()),
        )
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        for sc in headers.get_all("set-cookie") {
            let sc = sc.to_str().unwrap();
            let first = sc.split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            let removed = sc.to_ascii_lowercase().contains("max-age=0");
            let mut jar = self.jar.lock().unwrap();
            if removed {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_string(), value.trim().to_string());
            }
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Follows 302s from `url` until a non-redirect answer (max 10 hops).
    pub async fn follow(&self, url: &str) -> (Resp, Vec<String>) {
        let mut url = url.to_string();
        let mut hops = vec![];
        for _ in 0..10 {
            let r = self.get(&url).await;
            match r.location() {
                Some(loc) if r.status.is_redirection() => {
                    let next = url::Url::parse(&url)
                        .unwrap()
                        .join(&loc)
                        .unwrap()
                        .to_string();
                    hops.push(next.clone());
                    url = next;
                }
                _ => return (r, hops),
            }
        }
        panic!("redirect loop: {hops:?}");
    }

    /// Full login: GET `url`, follow through the IdP (auto-login) and the callback.
    pub async fn login(&self, url: &str) -> Resp {
        let (r, hops) = self.follow(url).await;
        assert!(
            hops.iter().any(|h| h.contains("/oauth2/callback")),
            "no callback in {hops:?}: {} {}",
            r.status,
            r.body
        );
        r
    }
}

// === Raw sockets ===

/// Sends raw bytes to `addr` and returns everything read until the peer closes or 3 s pass.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw answer.
pub fn raw_status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A raw GET with the given target and extra header lines, `Connection: close`.
pub async fn raw_get(addr: SocketAddr, target: &str, host: &str, extra: &str) -> String {
    raw(addr, format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n{extra}Connection: close\r\n\r\n").as_bytes()).await
}

// === Small configurations ===

/// A configuration with the test client and cookie secret: `server` and `session` are extra
/// lines for those tables, `routes` the `[[route]]` blocks (see [`route`]).
pub fn config(issuer: &str, public_url: &str, server: &str, session: &str, routes: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"{public_url}\"\n{server}\n[oidc]\nissuer = \"{issuer}\"\nclient_id = \"portcullis\"\nclient_secret = \"{CLIENT_SECRET}\"\n[session]\ncookie_secret = \"{COOKIE_SECRET}\"\n{session}\n{routes}"
    )
}

/// One `[[route]]` block.
pub fn route(path: &str, upstream: &str, extra: &str) -> String {
    format!("[[route]]\npath = \"{path}\"\nupstream = \"{upstream}\"\n{extra}\n")
}

/// An HTTP/2 (h2c prior knowledge) connection to `addr`; requests name their `:authority`
/// in the URI.
pub async fn h2c<B>(addr: std::net::SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}
