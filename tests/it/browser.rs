//! A real browser through the demo: Debian's headless `chromium`, driven by `chromedriver`
//! over the W3C WebDriver HTTP API (our own hyper client, JSON by serde_json), opens the demo's
//! URL, fills the development provider's login form, submits it, and must land on the echo
//! page showing the user's email. Screenshots of the login page and the landed page go to
//! `<target>/test-output/browser/`.
//!
//! chromium and chromedriver come from apt (`./scripts/test.sh` installs them). When they are
//! missing the test fails and says so, unless `PORTCULLIS_SKIP_BROWSER=1`, which skips it.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::demo::{self, DemoOptions};
use serde_json::{Value, json};

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Launch flags known to work in containers (root, no GPU, loopback-only network).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--window-size=1100,1090",
];

/// Where the test's screenshots and the driver's log go.
fn output_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`; keep the output beside it.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .join("test-output")
        .join("browser")
}

/// `name` in `PATH`, if executable.
fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// chromedriver and the Chromium it drives; on drop (success or panic) the browser session
/// is ended, the whole process group killed and the profile directory removed.
struct Driver {
    child: Child,
    port: u16,
    session: Option<String>,
    profile: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Driver {
    async fn start(chromedriver: &Path, out: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        // A free loopback port (released just before chromedriver takes it).
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(out.join("chromedriver.log")).unwrap();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            // Its own process group, so Chromium and its helpers can be killed together.
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let profile =
            std::env::temp_dir().join(format!("portcullis-chromium-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let driver = Driver {
            child,
            port,
            session: None,
            profile,
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = driver.call(Method::GET, "/status", None).await
                && status["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not get ready within 20 s (see {})",
                out.join("chromedriver.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One WebDriver command; `Ok` is the response's `value`.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method.clone())
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(60), self.client.request(req))
            .await
            .map_err(|_| format!("{method} {path}: timeout"))?
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{method} {path}: not JSON ({e})"))?;
        if status.is_success() {
            Ok(v["value"].clone())
        } else {
            Err(format!("{method} {path}: {status} {}", v["value"]))
        }
    }

    /// A command of the current session.
    async fn try_session_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let id = self.session.as_deref().expect("a session");
        self.call(method, &format!("/session/{id}{path}"), body)
            .await
    }

    /// A command of the current session; panics with the driver's message on failure.
    async fn session_call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.try_session_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The current URL and the text of `css`, or why not (e.g. while a navigation replaces
    /// the page).
    async fn try_url_and_text(&self, css: &str) -> Result<(String, String), String> {
        let url = self.try_session_call(Method::GET, "/url", None).await?;
        let found = self
            .try_session_call(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        let el = found[ELEMENT].as_str().ok_or("no element reference")?;
        let text = self
            .try_session_call(Method::GET, &format!("/element/{el}/text"), None)
            .await?;
        Ok((
            url.as_str().unwrap_or_default().to_owned(),
            text.as_str().unwrap_or_default().to_owned(),
        ))
    }

    async fn new_session(&mut self, chromium: &Path) {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", self.profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let v = self
            .call(Method::POST, "/session", Some(caps))
            .await
            .unwrap_or_else(|e| panic!("chromium did not start: {e}"));
        self.session = Some(v["sessionId"].as_str().expect("sessionId").to_owned());
    }

    async fn goto(&self, url: &str) {
        self.session_call(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn current_url(&self) -> String {
        let v = self.session_call(Method::GET, "/url", None).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .session_call(
                Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        let v = self
            .session_call(Method::GET, &format!("/element/{el}/text"), None)
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.session_call(
            Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.session_call(
            Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// A PNG screenshot of the viewport, written to `path`.
    async fn screenshot(&self, path: &Path) {
        let v = self.session_call(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        std::fs::write(path, png).unwrap();
    }

    /// Ends the browser session: Chromium quits.
    async fn quit(&mut self) {
        if let Some(id) = self.session.take() {
            let ended = self
                .call(Method::DELETE, &format!("/session/{id}"), None)
                .await;
            assert!(ended.is_ok(), "{ended:?}");
        }
    }

    /// [`Driver::quit`] without a runtime, for `Drop` (e.g. after a failed assertion).
    fn quit_blocking(&mut self) {
        use std::io::{Read, Write};
        let Some(id) = self.session.take() else {
            return;
        };
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = write!(
            s,
            "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        // Read the whole response (chromedriver may keep the connection open).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut chunk) {
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    break;
                }
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.quit_blocking();
        // chromedriver leads its process group; Chromium's processes are in it too.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_through_the_demo() {
    let started = Instant::now();
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        if std::env::var("PORTCULLIS_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!(
                "SKIPPED chromium_logs_in_through_the_demo: chromium or chromedriver is not installed (PORTCULLIS_SKIP_BROWSER=1)"
            );
            return;
        }
        panic!(
            "chromium and chromedriver are not installed: run ./scripts/test.sh (it installs the \
             Debian packages chromium and chromium-driver), or set PORTCULLIS_SKIP_BROWSER=1 to skip \
             this test"
        );
    };
    let out = output_dir();
    std::fs::create_dir_all(&out).unwrap();

    let demo = demo::start(
        DemoOptions {
            proxy_port: 0,
            idp_port: 0,
            upstream_port: 0,
        },
        std::future::pending(),
    )
    .await
    .expect("the demo starts");

    let mut driver = Driver::start(&chromedriver, &out).await;
    driver.new_session(&chromium).await;
    let browser_up = started.elapsed();

    // Open the demo: the proxy sends the browser to the provider's login page.
    driver.goto(demo.url()).await;
    let url = driver.current_url().await;
    assert!(
        url.starts_with(&format!("{}/authorize?", demo.issuer())),
        "the login page: {url}"
    );
    assert!(
        driver
            .text(".banner")
            .await
            .contains("Development OpenID provider")
    );
    driver.screenshot(&out.join("login.png")).await;

    // Log in as alice.
    driver.type_into("#username", "alice").await;
    driver.type_into("#groups", "eng, ops").await;
    driver.click("button[type=submit]").await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        // Commands may fail while the navigation replaces the page: retry until the deadline.
        let seen = driver.try_url_and_text("body").await;
        if let Ok((url, body)) = &seen
            && url == demo.url()
            && body.contains("alice@example.com")
        {
            break body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "did not land on the echo page: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(body.contains("Hello, alice"), "{body}");
    assert!(
        body.contains("eng,ops"),
        "the groups typed in the form: {body}"
    );
    assert!(body.contains("X-Auth-Request-Email"), "{body}");
    let landed = out.join("landed.png");
    driver.screenshot(&landed).await;

    driver.quit().await;
    drop(driver);
    demo.stop().await;
    eprintln!(
        "browser test: chromium up in {:.1?}, whole test {:.1?}; screenshots in {}",
        browser_up,
        started.elapsed(),
        out.display()
    );
}
