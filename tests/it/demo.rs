//! `portcullis demo`: the development provider, the echo upstream and the proxy started
//! in-process on ephemeral loopback ports and driven like a browser over HTTP (login page,
//! form POST, callback, landed page, group policy, sign-out); port-in-use errors; and the real
//! binary (`demo` stops cleanly on SIGTERM, a taken port is a one-line error, `check` accepts
//! `config/demo.toml`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use portcullis::demo::{self, Demo, DemoError, DemoOptions};
use portcullis::devidp::pages::BANNER;

use crate::support::{Browser, Resp};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

const EPHEMERAL: DemoOptions = DemoOptions {
    proxy_port: 0,
    idp_port: 0,
    upstream_port: 0,
};

async fn start_demo() -> Demo {
    demo::start(EPHEMERAL, std::future::pending())
        .await
        .expect("the demo starts on ephemeral ports")
}

fn proxy_addr(demo: &Demo) -> SocketAddr {
    let url = url::Url::parse(demo.url()).unwrap();
    SocketAddr::from(([127, 0, 0, 1], url.port().unwrap()))
}

/// `<input type="hidden" name=".." value="..">` pairs of a page, unescaped.
fn hidden_inputs(page: &str) -> Vec<(String, String)> {
    let unescape = |s: &str| {
        s.replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    page.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once('"').unwrap();
            let value = rest
                .strip_prefix(" value=\"")
                .and_then(|v| v.split_once('"'))
                .map(|(v, _)| v)
                .unwrap_or_default();
            (unescape(name), unescape(value))
        })
        .collect()
}

/// Follows redirects from `url` (relative `Location`s resolved) and returns the final answer
/// with the URL it came from.
async fn follow(b: &Browser, url: &str) -> (Resp, String, Vec<String>) {
    let (resp, hops) = b.follow(url).await;
    let last = hops.last().cloned().unwrap_or_else(|| url.to_string());
    (resp, last, hops)
}

/// The whole login as a browser does it: open the demo, get the provider's login page, POST
/// the form with `username`, follow the callback back. Returns the landed page and its URL.
async fn log_in(b: &Browser, demo: &Demo, username: &str, start: &str) -> (Resp, String) {
    let (page, page_url, _) = follow(b, &format!("{}{}", demo.url(), start)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page_url.starts_with(&format!("{}/authorize?", demo.issuer())),
        "the login page is the provider's: {page_url}"
    );
    assert!(
        page.body.contains(BANNER),
        "the development banner is shown"
    );
    assert!(page.body.contains("name=\"username\""));

    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in hidden_inputs(&page.body) {
        form.append_pair(&k, &v);
    }
    form.append_pair("username", username);
    let posted = b
        .try_request(
            Method::POST,
            &format!("{}/authorize", demo.issuer()),
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(form.finish()),
        )
        .await
        .unwrap();
    assert_eq!(posted.status, StatusCode::FOUND, "{}", posted.body);
    let callback = posted.location().unwrap();
    assert!(
        callback.starts_with(&format!("{}oauth2/callback?", demo.url())),
        "back to the proxy's callback: {callback}"
    );
    let (landed, landed_url, _) = follow(b, &callback).await;
    (landed, landed_url)
}

#[tokio::test]
async fn login_through_the_provider_form_lands_on_the_echo_page() {
    let demo = start_demo().await;
    assert!(demo.url().starts_with("http://127.0.0.1:"));
    assert!(demo.issuer().starts_with("http://127.0.0.1:"));
    assert!(demo.upstream_url().starts_with("http://127.0.0.1:"));
    let welcome = demo.welcome();
    assert!(welcome.contains(demo.url()));
    assert!(welcome.contains("any username") && welcome.contains("admin"));
    assert!(welcome.contains("development only"));

    let b = Browser::new(proxy_addr(&demo));
    let (landed, url) = log_in(&b, &demo, "alice", "").await;
    assert_eq!(url, demo.url());
    assert_eq!(landed.status, StatusCode::OK);
    assert_eq!(
        landed.headers["content-type"], "text/html; charset=utf-8",
        "browsers get the HTML page"
    );
    let page = &landed.body;
    assert!(page.contains("Hello, alice"), "{page}");
    assert!(page.contains("alice@example.com"));
    assert!(page.contains("X-Auth-Request-Email"));
    assert!(page.contains("GET / HTTP/1.1"));
    assert!(page.contains("href=\"/oauth2/sign_out"));

    // The same page as JSON: exactly what the upstream received.
    let json = b
        .request(Method::GET, demo.url(), &[("accept", "application/json")])
        .await
        .json();
    assert_eq!(json["request_line"], "GET / HTTP/1.1");
    assert_eq!(json["identity"]["x-auth-request-user"], "alice");
    assert_eq!(
        json["identity"]["x-auth-request-email"],
        "alice@example.com"
    );
    assert_eq!(
        json["identity"]["x-auth-request-preferred-username"],
        "alice"
    );
    assert_eq!(json["forwarded"]["x-forwarded-proto"], "http");
    assert_eq!(json["forwarded"]["x-forwarded-for"], "127.0.0.1");

    // A client cannot claim to be someone else: its identity headers are replaced.
    let json = b
        .request(
            Method::GET,
            &format!("{}public/x", demo.url()),
            &[
                ("accept", "application/json"),
                ("x-auth-request-user", "mallory"),
            ],
        )
        .await
        .json();
    assert_eq!(json["request_line"], "GET /public/x HTTP/1.1");
    assert_eq!(
        json["identity"],
        serde_json::json!({}),
        "public: no identity"
    );

    demo.stop().await;
}

#[tokio::test]
async fn admin_needs_the_admins_group() {
    let demo = start_demo().await;
    let alice = Browser::new(proxy_addr(&demo));
    log_in(&alice, &demo, "alice", "").await;
    let denied = alice.get(&format!("{}admin", demo.url())).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    // Starting at /admin, the login returns there.
    let admin = Browser::new(proxy_addr(&demo));
    let (landed, url) = log_in(&admin, &demo, "admin1", "admin").await;
    assert_eq!(url, format!("{}admin", demo.url()));
    assert_eq!(landed.status, StatusCode::OK);
    assert!(landed.body.contains("Hello, admin1"));
    let json = admin
        .request(
            Method::GET,
            &format!("{}admin/x", demo.url()),
            &[("accept", "application/json")],
        )
        .await
        .json();
    assert_eq!(json["identity"]["x-auth-request-groups"], "admins");
    assert_eq!(
        json["identity"]["x-auth-request-email"],
        "admin1@example.com"
    );
    demo.stop().await;
}

#[tokio::test]
async fn sign_out_goes_through_the_provider_and_ends_the_session() {
    let demo = start_demo().await;
    let b = Browser::new(proxy_addr(&demo));
    log_in(&b, &demo, "alice", "").await;
    let cookie = b.cookie("_portcullis").expect("session cookie");

    // The echo page's link.
    let (page, url, hops) = follow(&b, &format!("{}oauth2/sign_out?rd=/public/", demo.url())).await;
    assert!(
        hops.iter()
            .any(|h| h.starts_with(&format!("{}/end_session?", demo.issuer()))),
        "through the provider's end_session: {hops:?}"
    );
    assert!(
        url.starts_with(&format!("{}public/", demo.url())),
        "landed on the public page: {url}"
    );
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("A public page"));
    assert!(b.cookie("_portcullis").is_none(), "cookie removed");

    // The old cookie is worth nothing now.
    let old = b
        .request(
            Method::GET,
            demo.url(),
            &[
                ("accept", "application/json"),
                ("cookie", &format!("_portcullis={cookie}")),
            ],
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);

    // The default sign-out (rd=/) is accepted by the provider too.
    log_in(&b, &demo, "alice", "").await;
    let (_, url, _) = follow(&b, &format!("{}oauth2/sign_out", demo.url())).await;
    assert!(
        url.starts_with(&format!("{}/authorize?", demo.issuer())),
        "back at / without a session: the login page again ({url})"
    );
    demo.stop().await;
}

#[tokio::test]
async fn a_port_in_use_names_the_port_and_the_flag() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    for (opts, flag) in [
        (
            DemoOptions {
                proxy_port: port,
                ..EPHEMERAL
            },
            "--port",
        ),
        (
            DemoOptions {
                idp_port: port,
                ..EPHEMERAL
            },
            "--idp-port",
        ),
        (
            DemoOptions {
                upstream_port: port,
                ..EPHEMERAL
            },
            "--upstream-port",
        ),
    ] {
        let err = demo::start(opts, std::future::pending())
            .await
            .expect_err("the port is taken");
        assert!(
            matches!(err, DemoError::PortInUse { port: p, flag: f } if p == port && f == flag),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&port.to_string()) && msg.contains(flag),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
    // Nothing was left listening by the failed starts: a demo starts fine afterwards.
    start_demo().await.stop().await;
}

#[test]
fn the_binary_reports_a_taken_port_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["demo", "--port", &port.to_string()])
        .args(["--idp-port", "0", "--upstream-port", "0"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, before any log: {stderr}");
    assert!(lines[0].contains(&port.to_string()) && lines[0].contains("--port"));
}

#[test]
fn the_binary_serves_until_sigterm_then_exits_0() {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--port",
            "0",
            "--idp-port",
            "0",
            "--upstream-port",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut url = None;
    let mut printed = String::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(u) = line.split("Open ").nth(1) {
            url = Some(u.trim().to_string());
        }
        if line.contains("Ctrl-C") {
            break;
        }
    }
    let url = url.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("no URL printed:\n{printed}")
    });
    assert!(printed.contains("development only"), "{printed}");

    // It serves: the public page answers through the proxy.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let resp = rt.block_on(Browser::new(addr).get(&format!("{url}public/")));
    assert_eq!(resp.status, StatusCode::OK);
    assert!(resp.body.contains("A public page"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The proxy no longer listens.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn check_accepts_config_demo_toml() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let out = Command::new(BIN)
        .args(["check", "--config", file])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok"));
    assert!(stdout.contains("listen 127.0.0.1:4180, public_url http://127.0.0.1:4180"));
    assert!(stdout.contains("oidc issuer http://127.0.0.1:4181"));
    // The file on disk is the one the binary embeds.
    assert_eq!(std::fs::read_to_string(file).unwrap(), demo::CONFIG);
}
