//! End to end against an independent, OpenID Certified provider: node's `oidc-provider`
//! (tests/e2e/provider.mjs, pinned by tests/e2e/package-lock.json), run as a child process on
//! a free loopback port. The proxy and the upstream echo are the same fixtures as elsewhere;
//! the browser drives the provider's own login, consent and logout forms over HTTP.
//!
//! The provider puts `groups` in the ID token and `email`/`profile` claims only in userinfo
//! (its certified default), so a login here exercises both the ID token and the userinfo
//! completion.
//!
//! Needs `node` and `tests/e2e/node_modules` (`./scripts/test.sh` installs them with
//! `npm ci`). Without them these tests fail, unless `PORTCULLIS_SKIP_E2E=1` is set, which
//! skips them.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, StatusCode};

use crate::support::*;

const PUBLIC: &str = "https://app.example.com";
const CALLBACK: &str = "https://app.example.com/oauth2/callback";

// === Preconditions ===

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// `true` when the suite can run; `false` (after saying so) when it is to be skipped.
/// Panics with instructions when node or the node packages are missing.
fn e2e_available(test: &str) -> bool {
    if std::env::var("PORTCULLIS_SKIP_E2E").as_deref() == Ok("1") {
        eprintln!("e2e test {test} skipped: PORTCULLIS_SKIP_E2E=1");
        return false;
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        panic!(
            "e2e test {test}: `node` was not found. Run ./scripts/test.sh (it installs node and \
             the e2e packages), or set PORTCULLIS_SKIP_E2E=1 to skip the end-to-end tests."
        );
    }
    if !e2e_dir()
        .join("node_modules/oidc-provider/package.json")
        .is_file()
    {
        panic!(
            "e2e test {test}: tests/e2e/node_modules is missing. Run ./scripts/test.sh (it runs \
             `npm ci` in tests/e2e), or set PORTCULLIS_SKIP_E2E=1 to skip the end-to-end tests."
        );
    }
    true
}

// === The provider process ===

/// `oidc-provider` running as a child process; killed on drop.
struct NodeIdp {
    child: Option<Child>,
    port: u16,
    /// The signing key id the provider announced.
    kid: String,
    stderr: Arc<Mutex<String>>,
}

impl NodeIdp {
    /// Starts the provider on a free loopback port with a new signing key.
    async fn start(dir: &Path) -> NodeIdp {
        let mut last = String::new();
        for attempt in 0..3 {
            let port = free_port();
            match NodeIdp::start_on(port, &dir.join(format!("key-{port}-{attempt}.json"))).await {
                Ok(idp) => return idp,
                Err(e) => last = e,
            }
        }
        panic!("oidc-provider did not start: {last}");
    }

    /// Starts the provider on `port` with the key in `key_file` (generated there if absent).
    async fn start_on(port: u16, key_file: &Path) -> Result<NodeIdp, String> {
        let mut child = Command::new("node")
            .current_dir(e2e_dir())
            .arg("provider.mjs")
            .args(["--port", &port.to_string()])
            .arg("--key-file")
            .arg(key_file)
            .args(["--redirect-uri", CALLBACK])
            .args(["--post-logout-redirect-uri", &format!("{PUBLIC}/")])
            .env("E2E_CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning node: {e}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let ready = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) if line.starts_with("ready ") => return Some(line),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await
        .unwrap();
        let mut idp = NodeIdp {
            child: Some(child),
            port,
            kid: String::new(),
            stderr,
        };
        let Some(line) = ready else {
            idp.stop();
            return Err(format!(
                "no ready line within 30 s; stderr:\n{}",
                idp.stderr.lock().unwrap()
            ));
        };
        // `ready <issuer> kid=<kid>`
        let mut words = line.split_whitespace().skip(1);
        assert_eq!(words.next(), Some(idp.issuer().as_str()), "{line}");
        idp.kid = words
            .next()
            .and_then(|w| w.strip_prefix("kid="))
            .unwrap_or_else(|| panic!("no kid in {line:?}"))
            .to_string();
        Ok(idp)
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the process and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a new provider process on the same port (same issuer) with a new signing key.
    async fn restart_with_new_key(&mut self, dir: &Path) {
        self.stop();
        let key = dir.join(format!("key-{}-restart.json", self.port));
        // The port was ours a moment ago; give the kernel a few tries to hand it back.
        let mut last = String::new();
        for _ in 0..20 {
            match NodeIdp::start_on(self.port, &key).await {
                Ok(new) => {
                    *self = new;
                    return;
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "oidc-provider did not restart on port {}: {last}",
            self.port
        );
    }
}

impl Drop for NodeIdp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh scratch directory for key files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-e2e-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// === The proxy in front of it ===

fn config(issuer: &str, upstream: &Upstream) -> impl FnOnce(u16) -> String {
    let issuer = issuer.to_string();
    let up = upstream.url();
    move |_port| {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "{PUBLIC}"
[oidc]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"
[session]
cookie_name = "_portcullis"
cookie_secret = "{COOKIE_SECRET}"
[headers]
authorization_bearer_id_token = true
[headers.claims]
"X-Name" = "name"
[[route]]
host = "app.example.com"
path = "/admin"
upstream = "{up}"
allow_groups = ["admins"]
[[route]]
host = "app.example.com"
path = "/"
upstream = "{up}"
"#
        )
    }
}

struct Env {
    _scratch: Scratch,
    idp: NodeIdp,
    up: Upstream,
    proxy: Proxy,
}

async fn env(name: &str) -> Env {
    let scratch = Scratch::new(name);
    let idp = NodeIdp::start(&scratch.0).await;
    let up = Upstream::start().await;
    let proxy = Proxy::start(config(&idp.issuer(), &up)).await;
    Env {
        _scratch: scratch,
        idp,
        up,
        proxy,
    }
}

// === Driving the provider's pages ===

/// An HTML form: its action and the fields it would submit.
#[derive(Debug)]
struct Form {
    id: Option<String>,
    action: String,
    fields: Vec<(String, String)>,
}

impl Form {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn set(&mut self, name: &str, value: &str) {
        self.fields.retain(|(k, _)| k != name);
        self.fields.push((name.to_string(), value.to_string()));
    }
    fn body(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.fields {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The attributes of one tag (`tag` is the text between `<` and `>`).
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return out;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = rest[..end].to_ascii_lowercase();
        rest = rest[end..].trim_start();
        let mut value = String::new();
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            if let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') {
                let close = after[1..].find(q).map_or(after.len(), |i| i + 1);
                value = unescape(&after[1..close]);
                rest = after.get(close + 1..).unwrap_or("");
            } else {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                value = unescape(&after[..end]);
                rest = &after[end..];
            }
        }
        out.push((name, value));
    }
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Every `<form>` of a page, with its `<input>` fields (name and value, as submitted).
fn forms(html: &str) -> Vec<Form> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<form") {
        let after = &rest[start + 1..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let form_attrs = attributes(&after[..tag_end]);
        let inner_end = after.find("</form>").unwrap_or(after.len());
        let inner = &after[tag_end..inner_end];
        let mut fields = Vec::new();
        let mut i = inner;
        while let Some(s) = i.find("<input") {
            let a = &i[s + 1..];
            let e = a.find('>').unwrap_or(a.len());
            let attrs = attributes(&a[..e]);
            if let Some(name) = attr(&attrs, "name") {
                fields.push((
                    name.to_string(),
                    attr(&attrs, "value").unwrap_or("").to_string(),
                ));
            }
            i = &a[e..];
        }
        out.push(Form {
            id: attr(&form_attrs, "id").map(str::to_string),
            action: attr(&form_attrs, "action").unwrap_or("").to_string(),
            fields,
        });
        rest = &after[inner_end..];
    }
    out
}

/// The one POST form of a provider page.
fn the_form(r: &Resp) -> Form {
    let mut all = forms(&r.body);
    assert_eq!(all.len(), 1, "expected one form: {}", r.body);
    all.remove(0)
}

fn join(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

async fn post_form(b: &Browser, page_url: &str, form: &Form) -> (String, Resp) {
    let action = join(page_url, &form.action);
    let r = b
        .try_request(
            Method::POST,
            &action,
            &[("content-type", "application/x-www-form-urlencoded")],
            Bytes::from(form.body()),
        )
        .await
        .unwrap_or_else(|e| panic!("POST {action}: {e}"));
    (action, r)
}

/// What a login through the provider went through.
#[derive(Debug)]
struct Login {
    /// The callback URL the provider redirected to (not yet requested).
    callback: String,
    /// The provider pages answered on the way: "login", "consent".
    pages: Vec<&'static str>,
}

/// Requests `start` (a protected URL) and drives the provider's pages as `username` until
/// the provider redirects to the proxy's callback, which is returned unrequested.
async fn login_until_callback(b: &Browser, idp: &NodeIdp, start: &str, username: &str) -> Login {
    let mut pages = Vec::new();
    let mut url = start.to_string();
    let mut r = b.get(&url).await;
    for _ in 0..20 {
        if r.status.is_redirection() {
            let next = join(&url, &r.location().expect("redirect without Location"));
            if next.starts_with(CALLBACK) {
                return Login {
                    callback: next,
                    pages,
                };
            }
            assert!(
                next.starts_with(&idp.issuer()),
                "the login left the provider for {next}"
            );
            url = next;
            r = b.get(&url).await;
            continue;
        }
        assert_eq!(r.status, StatusCode::OK, "at {url}: {}", r.body);
        let mut form = the_form(&r);
        let action_url = join(&url, &form.action);
        assert!(
            action_url.starts_with(&idp.issuer()),
            "form posts to {action_url}"
        );
        match form.field("prompt") {
            Some("login") => {
                assert!(form.field("login").is_some(), "no login field: {form:?}");
                form.set("login", username);
                form.set("password", "any-password");
                pages.push("login");
            }
            Some("consent") => pages.push("consent"),
            other => panic!("unexpected provider page (prompt {other:?}): {}", r.body),
        }
        let (action, resp) = post_form(b, &url, &form).await;
        url = action;
        r = resp;
    }
    panic!("the login did not reach the callback; pages {pages:?}");
}

/// A whole login: the provider's pages, then the callback, then the landing page.
async fn login(b: &Browser, idp: &NodeIdp, start: &str, username: &str) -> (Login, Resp) {
    let l = login_until_callback(b, idp, start, username).await;
    let (r, _) = b.follow(&l.callback).await;
    (l, r)
}

fn id_token_payload(bearer: &str) -> serde_json::Value {
    let token = bearer.strip_prefix("Bearer ").expect("a bearer token");
    let payload = token.split('.').nth(1).expect("a JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn id_token_header(bearer: &str) -> serde_json::Value {
    let token = bearer.strip_prefix("Bearer ").expect("a bearer token");
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

// === Tests ===

/// Login, identity headers, group policy, userinfo, sign-out at the provider and back, the
/// old cookie refused.
#[tokio::test]
async fn oidc_provider_login_userinfo_and_sign_out() {
    if !e2e_available("oidc_provider_login_userinfo_and_sign_out") {
        return;
    }
    let e = env("login").await;
    let b = Browser::new(e.proxy.addr);

    // Redirect, the provider's login and consent forms, the callback, the upstream.
    let (l, r) = login(
        &b,
        &e.idp,
        &format!("{PUBLIC}/private/page?x=1"),
        "admin-ada",
    )
    .await;
    assert_eq!(l.pages, ["login", "consent"]);
    let q: std::collections::HashMap<String, String> = url::Url::parse(&l.callback)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        q.get("iss"),
        Some(&e.idp.issuer()),
        "RFC 9207 iss in the response"
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("UPSTREAM-SECRET-/private/page"),
        "{}",
        r.body
    );
    let seen = e.up.last();
    assert_eq!(seen.uri, "/private/page?x=1");
    assert_eq!(
        seen.one("x-auth-request-user").as_deref(),
        Some("admin-ada")
    );
    assert_eq!(
        seen.one("x-auth-request-email").as_deref(),
        Some("admin-ada@example.test")
    );
    assert_eq!(
        seen.one("x-auth-request-preferred-username").as_deref(),
        Some("admin-ada")
    );
    assert_eq!(seen.one("x-auth-request-groups").as_deref(), Some("admins"));
    assert_eq!(seen.one("x-name").as_deref(), Some("E2E admin-ada"));
    // Where the claims came from: groups in the provider's ID token, email and profile only
    // through userinfo (which the proxy therefore called and merged).
    let bearer = seen.one("authorization").expect("the ID token upstream");
    assert_eq!(id_token_header(&bearer)["kid"], e.idp.kid.as_str());
    let claims = id_token_payload(&bearer);
    assert_eq!(claims["sub"], "admin-ada");
    assert_eq!(claims["iss"], e.idp.issuer().as_str());
    assert_eq!(claims["groups"], serde_json::json!(["admins"]));
    assert!(claims.get("email").is_none(), "{claims}");
    assert!(claims.get("preferred_username").is_none(), "{claims}");

    // The group policy with the provider's groups.
    let r = b.get(&format!("{PUBLIC}/admin/panel")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // /oauth2/userinfo
    let r = b
        .request(
            Method::GET,
            &format!("{PUBLIC}/oauth2/userinfo"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json(),
        serde_json::json!({
            "user": "admin-ada",
            "email": "admin-ada@example.test",
            "preferred_username": "admin-ada",
            "groups": ["admins"],
        })
    );

    // Single sign-on at the provider: a new login (through /oauth2/start) shows no page.
    let (l, r) = login(&b, &e.idp, &format!("{PUBLIC}/oauth2/start?rd=%2Fsso"), "-").await;
    assert!(l.pages.is_empty(), "{:?}", l.pages);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(e.up.last().uri, "/sso");

    // A user outside `admins`: no groups header, and the admin route is forbidden.
    let b2 = Browser::new(e.proxy.addr);
    let (_, r) = login(&b2, &e.idp, &format!("{PUBLIC}/x"), "bob").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = e.up.last();
    assert_eq!(seen.one("x-auth-request-user").as_deref(), Some("bob"));
    assert_eq!(seen.one("x-auth-request-groups"), None);
    let r = b2.get(&format!("{PUBLIC}/admin/panel")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);

    // Sign-out: the proxy ends the session and sends the browser to the provider's
    // end_session endpoint; the provider asks for confirmation; back at the proxy.
    let old_cookie = b.cookie("_portcullis").expect("a session cookie");
    let r = b.get(&format!("{PUBLIC}/oauth2/sign_out?rd=/")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let end_session = r.location().unwrap();
    assert!(
        end_session.starts_with(&format!("{}/session/end?", e.idp.issuer())),
        "{end_session}"
    );
    let state = url::Url::parse(&end_session)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a logout state");
    assert_eq!(
        b.cookie("_portcullis"),
        None,
        "the session cookie is cleared"
    );
    let page = b.get(&end_session).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let mut confirm = the_form(&page);
    assert_eq!(confirm.id.as_deref(), Some("op.logoutForm"));
    assert!(confirm.field("xsrf").is_some(), "{confirm:?}");
    assert!(
        page.body.contains(r#"name="logout""#),
        "no confirm button: {}",
        page.body
    );
    confirm.set("logout", "yes"); // "Yes, sign me out"
    let (action, r) = post_form(&b, &end_session, &confirm).await;
    assert!(r.status.is_redirection(), "{}: {}", r.status, r.body);
    let back = join(&action, &r.location().unwrap());
    assert_eq!(back, format!("{PUBLIC}/?state={state}"));
    // Back at the proxy, signed out: the protected page starts a new login.
    let r = b.get(&back).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(r.location().unwrap().starts_with(&e.idp.issuer()));

    // The old cookie no longer opens anything.
    let thief = Browser::new(e.proxy.addr);
    thief.set_cookie("_portcullis", &old_cookie);
    let r = thief
        .request(
            Method::GET,
            &format!("{PUBLIC}/private"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = thief
        .request(
            Method::GET,
            &format!("{PUBLIC}/oauth2/userinfo"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    // The provider's session ended too: the next login asks for the username again.
    let (l, r) = login(&b, &e.idp, &format!("{PUBLIC}/again"), "admin-ada").await;
    assert_eq!(l.pages, ["login", "consent"]);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

/// The provider goes away: sessions keep working, a login in flight gets the 503 page. It
/// comes back with a new signing key: logins work again (the proxy re-fetches the JWKS).
#[tokio::test]
async fn oidc_provider_outage_and_key_rotation() {
    if !e2e_available("oidc_provider_outage_and_key_rotation") {
        return;
    }
    let mut e = env("outage").await;
    let a = Browser::new(e.proxy.addr);
    let (_, r) = login(&a, &e.idp, &format!("{PUBLIC}/a"), "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // A second browser gets as far as the provider's redirect back to the proxy...
    let b = Browser::new(e.proxy.addr);
    let pending = login_until_callback(&b, &e.idp, &format!("{PUBLIC}/b"), "carol").await;

    // ...when the provider stops.
    let old_kid = e.idp.kid.clone();
    e.idp.stop();
    let r = a
        .request(
            Method::GET,
            &format!("{PUBLIC}/still-here"),
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        e.up.last().one("x-auth-request-user").as_deref(),
        Some("alice")
    );
    let r = b.get(&pending.callback).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains("cannot be reached"), "{}", r.body);
    assert_eq!(
        b.cookie("_portcullis"),
        None,
        "no session from a failed login"
    );

    // Back, on the same issuer, with a new signing key.
    let dir = e._scratch.0.clone();
    e.idp.restart_with_new_key(&dir).await;
    assert_ne!(e.idp.kid, old_kid, "the restarted provider has a new key");
    let (l, r) = login(&b, &e.idp, &format!("{PUBLIC}/b"), "carol").await;
    assert_eq!(l.pages, ["login", "consent"]);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = e.up.last();
    assert_eq!(seen.one("x-auth-request-user").as_deref(), Some("carol"));
    let bearer = seen.one("authorization").expect("the ID token upstream");
    assert_eq!(id_token_header(&bearer)["kid"], e.idp.kid.as_str());
    // The session from before the outage still works.
    let r = a.get(&format!("{PUBLIC}/a2")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
