//! Shared harness of the SECURITY.md catalogue tests (`security_*.rs`): the reference
//! deployment, captured logs, and the global invariants of SECURITY.md §0.3, checked on every
//! response a case sees:
//!
//! - INV-1: the upstream echo records every request; cases assert it saw none (or exactly the
//!   allowed ones) with [`Sec::upstream_untouched`].
//! - INV-2: no `UPSTREAM-SECRET` marker in a 302, 401 or 403 ([`Sec::check`]).
//! - INV-3: [`Sec::finish`] checks the proxy still serves, and that no panic happened outside
//!   the test code (a process-wide panic hook records panic locations under `src/`).
//! - INV-4: the proxy's log lines of the case (captured with a thread-scoped `tracing`
//!   subscriber: `#[tokio::test]` runs the proxy, the provider and the test on one thread) hold
//!   none of the secrets the case collected ([`Sec::secret`]), nor the client or cookie secret.
//! - INV-5: every `Location` resolves (WHATWG, `url` crate) against the request URL to `https:`
//!   without userinfo on app.example.com, a subdomain of apps.example.com or docs.example.com,
//!   or to the provider's authorization or end-session endpoint.

use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use http::{Method, StatusCode};
use portcullis::devidp::{DevIdp, Signing};
use serde_json::Value;

use crate::support::*;

// === Captured logs ===

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line (debug and up) emitted on this thread while it lives.
pub struct LogCapture {
    buf: Buf,
    _guard: tracing::subscriber::DefaultGuard,
}

impl LogCapture {
    pub fn start() -> LogCapture {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        LogCapture {
            _guard: tracing::subscriber::set_default(sub),
            buf,
        }
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.0.lock().unwrap()).into_owned()
    }
    /// Lines holding every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }
}

// === Panics outside the test code (INV-3) ===

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

fn install_panic_hook() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(loc) = info.location()
                && loc.file().starts_with("src/")
            {
                PANICS.lock().unwrap().push(format!("{loc}: {info}"));
            }
            prev(info);
        }));
    });
}

// === The environment of one case ===

pub struct Sec {
    pub idp: DevIdp,
    pub up: Upstream,
    pub proxy: Proxy,
    pub logs: LogCapture,
    secrets: Mutex<Vec<String>>,
}

impl Sec {
    /// The reference deployment, alice logging in at the provider.
    pub async fn start() -> Sec {
        Sec::start_with("").await
    }

    /// The reference deployment with `extra` TOML appended after `[headers.claims]`.
    pub async fn start_with(extra: &str) -> Sec {
        let extra = extra.to_string();
        Sec::start_config(move |idp, up| reference_config(idp, up, &extra)(0)).await
    }

    /// Any configuration, built from the provider and the upstream.
    pub async fn start_config(toml: impl FnOnce(&DevIdp, &Upstream) -> String) -> Sec {
        install_panic_hook();
        let logs = LogCapture::start();
        let idp = idp().await;
        idp.set_auto_login(Some(alice()));
        let up = Upstream::start().await;
        let text = toml(&idp, &up);
        let proxy = Proxy::start(move |_| text).await;
        Sec {
            idp,
            up,
            proxy,
            logs,
            secrets: Mutex::new(vec![CLIENT_SECRET.into(), COOKIE_SECRET.into()]),
        }
    }

    /// A browser (navigations: `Accept: text/html`).
    pub fn browser(&self) -> Browser {
        Browser::new(self.proxy.addr)
    }
    /// An API client (`Accept: application/json`).
    pub fn api(&self) -> Browser {
        let mut b = Browser::new(self.proxy.addr);
        b.accept = "application/json";
        b
    }

    /// An API-client copy of `b` (same cookie jar).
    pub fn api_of(&self, b: &Browser) -> Browser {
        let mut a = b.clone();
        a.accept = "application/json";
        a
    }

    /// Remembers a value that must never appear in a log line (INV-4).
    pub fn secret(&self, s: impl Into<String>) {
        let s = s.into();
        if s.len() >= 8 {
            self.secrets.lock().unwrap().push(s);
        }
    }

    /// INV-2 and INV-5 on one response to `url`.
    pub fn check(&self, url: &str, r: &Resp) {
        if matches!(r.status.as_u16(), 302 | 401 | 403) {
            assert!(
                !r.body.contains("UPSTREAM-SECRET"),
                "INV-2: upstream content in a {} to {url}",
                r.status
            );
        }
        if let Some(loc) = r.headers.get("location") {
            let loc = loc.to_str().expect("INV-5: Location is visible ASCII");
            self.check_location(url, loc);
        }
        for v in r.headers.values() {
            assert!(
                !v.as_bytes().iter().any(|c| *c < 0x20 && *c != b'\t'),
                "control byte in a response header to {url}"
            );
        }
    }

    /// INV-5 for one `Location` value.
    pub fn check_location(&self, request_url: &str, loc: &str) {
        let base = url::Url::parse(request_url).unwrap();
        let u = base
            .join(loc)
            .unwrap_or_else(|e| panic!("INV-5: {loc:?} does not resolve: {e}"));
        let idp = url::Url::parse(&self.idp.issuer()).unwrap();
        if u.origin() == idp.origin() && (u.path() == "/authorize" || u.path() == "/end_session") {
            return;
        }
        assert_eq!(u.scheme(), "https", "INV-5: {loc:?} -> {u}");
        assert!(
            u.username().is_empty() && u.password().is_none(),
            "INV-5: userinfo in {loc:?} -> {u}"
        );
        let host = u.host_str().unwrap_or_default();
        assert!(
            host == "app.example.com"
                || host == "docs.example.com"
                || host.ends_with(".apps.example.com"),
            "INV-5: {loc:?} resolves to host {host:?} ({u})"
        );
    }

    /// INV-2 and INV-5 on a raw HTTP/1.1 answer.
    pub fn check_raw(&self, request_url: &str, raw: &str) {
        let status = raw_status(raw);
        if matches!(status, 302 | 401 | 403) {
            assert!(!raw.contains("UPSTREAM-SECRET"), "INV-2: {raw:.300}");
        }
        for line in raw.split("\r\n\r\n").next().unwrap_or("").lines() {
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("location")
            {
                self.check_location(request_url, v.trim());
            }
        }
    }

    /// A GET with `b`, checked (INV-2, INV-5).
    pub async fn get(&self, b: &Browser, url: &str) -> Resp {
        self.req(b, Method::GET, url, &[]).await
    }

    /// A request with `b`, checked (INV-2, INV-5).
    pub async fn req(
        &self,
        b: &Browser,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Resp {
        let r = b.request(method, url, headers).await;
        self.check(url, &r);
        r
    }

    /// Follows redirects like [`Browser::follow`], checking every hop.
    pub async fn follow(&self, b: &Browser, url: &str) -> (Resp, Vec<String>) {
        let mut url = url.to_string();
        let mut hops = vec![];
        for _ in 0..10 {
            let r = self.get(b, &url).await;
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

    /// A full login through `url`; the session cookie becomes a secret.
    pub async fn login(&self, b: &Browser, url: &str) -> Resp {
        let (r, hops) = self.follow(b, url).await;
        assert!(
            hops.iter().any(|h| h.contains("/oauth2/callback")),
            "no callback in {hops:?}: {} {}",
            r.status,
            r.body
        );
        if let Some(c) = b.cookie("_portcullis") {
            self.secret(c);
        }
        r
    }

    /// Starts a login at `start_url` and stops at the callback URL the provider returns.
    /// Records state, nonce, code and the login cookies as secrets.
    pub async fn until_callback(&self, b: &Browser, start_url: &str) -> String {
        let r = self.get(b, start_url).await;
        assert_eq!(r.status, StatusCode::FOUND, "{start_url}: {}", r.body);
        let mut authorize = r.location().unwrap();
        if authorize.starts_with('/') {
            authorize = format!("https://app.example.com{authorize}");
            let r = self.get(b, &authorize).await;
            authorize = r.location().unwrap();
        }
        for (k, v) in query(&authorize) {
            if k == "state" || k == "nonce" {
                self.secret(v);
            }
        }
        for n in b.cookie_names() {
            self.secret(b.cookie(&n).unwrap());
        }
        let r = b.get(&authorize).await;
        let callback = r.location().expect("the provider redirects back");
        for (k, v) in query(&callback) {
            if k == "code" {
                self.secret(v);
            }
        }
        callback
    }

    /// One login whose ID token is rewritten by `hook`; the callback's answer.
    pub async fn login_with_token(
        &self,
        hook: impl Fn(&mut Value, &mut Value) -> Signing + Send + Sync + 'static,
    ) -> Resp {
        self.idp.set_token_hook(Some(Arc::new(hook)));
        let b = self.browser();
        let callback = self
            .until_callback(&b, "https://app.example.com/private")
            .await;
        let r = self.get(&b, &callback).await;
        self.idp.set_token_hook(None);
        if let Some(t) = self.idp.last_token_request()
            && let Some(v) = t.field("code_verifier")
        {
            self.secret(v);
        }
        r
    }

    /// CB-REJECT(status, one of `reasons`): no session cookie, `no-store`, no redirect to
    /// `rd`, nothing unescaped, one WARN `login_failed` naming the reason, no userinfo call
    /// after a rejected ID token.
    pub fn cb_reject(&self, r: &Resp, status: u16, reasons: &[&str], userinfo_before: u64) {
        assert_eq!(r.status.as_u16(), status, "{}", r.body);
        assert!(
            r.set_cookies()
                .iter()
                .all(|c| !c.starts_with("_portcullis=") || c.contains("Max-Age=0")),
            "CB-REJECT: a session cookie was set: {:?}",
            r.set_cookies()
        );
        assert_eq!(
            r.headers.get("cache-control").map(|v| v.to_str().unwrap()),
            Some("no-store")
        );
        assert!(r.location().is_none(), "CB-REJECT: no Location");
        assert!(!r.body.contains("eyJ"), "no token material in the page");
        assert!(!r.body.contains("<script"), "nothing reflected unescaped");
        let text = self.logs.text();
        assert!(
            reasons.iter().any(|reason| {
                text.lines().any(|l| {
                    l.contains("login_failed") && l.contains(&format!("reason=\"{reason}\""))
                })
            }),
            "no login_failed line with a reason in {reasons:?}:\n{}",
            self.logs.lines_with(&["login_failed"]).join("\n")
        );
        assert_eq!(
            self.idp.counts().userinfo,
            userinfo_before,
            "no /userinfo call after a rejected login"
        );
    }

    /// INV-1: the upstream saw exactly `n` requests so far.
    pub fn upstream_saw(&self, n: usize) {
        assert_eq!(self.up.count(), n, "INV-1: upstream contacts");
    }
    /// INV-1: the upstream saw nothing so far.
    pub fn upstream_untouched(&self) {
        self.upstream_saw(0);
    }

    /// INV-3 and INV-4: still serving, no panic in the proxy, no secret in any log line.
    pub async fn finish(self) {
        let r = raw_get(self.proxy.addr, "/healthz", "app.example.com", "").await;
        assert_eq!(
            raw_status(&r),
            200,
            "INV-3: the proxy no longer serves: {r}"
        );
        let r = raw_get(self.proxy.addr, "/alive", "app.example.com", "").await;
        let s = raw_status(&r);
        // Any well-formed answer (a 502 when the case broke the upstream), never an internal
        // error or silence.
        assert!(
            s >= 200 && s != 500,
            "INV-3: the proxy no longer answers: {r}"
        );
        let panics = PANICS.lock().unwrap().clone();
        assert!(panics.is_empty(), "INV-3: panics in the proxy: {panics:?}");
        let text = self.logs.text();
        assert!(!text.contains("panicked at"), "INV-3");
        for s in self.secrets.lock().unwrap().iter() {
            for line in text.lines() {
                assert!(
                    !line.contains(s.as_str()),
                    "INV-4: secret {:.10}… in log line: {line}",
                    s
                );
            }
        }
    }
}

/// The query pairs of a URL.
pub fn query(u: &str) -> Vec<(String, String)> {
    url::Url::parse(u)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Percent-encodes a query value.
pub fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Sends raw bytes and reads the answer until close, or `wait` passes.
pub async fn raw_for(
    addr: std::net::SocketAddr,
    request: &[u8],
    wait: std::time::Duration,
) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}
