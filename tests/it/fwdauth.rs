//! Forward-auth: `/oauth2/auth` over real HTTP (SECURITY HDR-07, HDR-09), and the committed
//! `deploy/nginx/portcullis.conf` and `deploy/caddy/Caddyfile` run by the real nginx and Caddy
//! in front of portcullis and a real upstream, all on loopback.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::*;

// === Fixtures ===

/// The reference routes, with `trusted_proxies` and `public_url` chosen by the test. The
/// session cookie is not `_portcullis`: the echo upstream sets a `_portcullis` cookie (a hostile
/// app), and in forward-auth mode portcullis is not on the response path to filter it.
fn fwd_config(
    idp: &portcullis::devidp::DevIdp,
    upstream: &Upstream,
    trusted: &str,
    public_url: &str,
    session_extra: &str,
) -> impl FnOnce(u16) -> String {
    let issuer = idp.issuer();
    let up = upstream.url();
    let (trusted, public_url, session_extra) = (
        trusted.to_string(),
        public_url.to_string(),
        session_extra.to_string(),
    );
    move |_port| {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "{public_url}"
trusted_proxies = [{trusted}]
request_timeout = "2s"
[oidc]
issuer = "{issuer}"
client_id = "portcullis"
client_secret = "{CLIENT_SECRET}"
[session]
cookie_name = "pc_session"
cookie_secret = "{COOKIE_SECRET}"
max_sessions = 1000
{session_extra}
[headers]
access_token = "X-Auth-Request-Access-Token"
[headers.claims]
"X-Tenant" = "tenant"
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
host = "docs.example.com"
path = "/"
upstream = "{up}"
auth = "public"
"#
        )
    }
}

const TRUSTED_LOOPBACK: &str = r#""127.0.0.1/32""#;
const TRUSTED_ELSEWHERE: &str = r#""10.0.0.0/8""#;
const AUTH: &str = "https://app.example.com/oauth2/auth";

/// Starts the IdP (auto-login as `user`), the echo upstream and portcullis.
async fn direct(
    trusted: &str,
    user: portcullis::devidp::DevUser,
) -> (portcullis::devidp::DevIdp, Upstream, Proxy) {
    let idp = idp().await;
    idp.set_auto_login(Some(user));
    let up = Upstream::start().await;
    let proxy = Proxy::start(fwd_config(
        &idp,
        &up,
        trusted,
        "https://app.example.com",
        "",
    ))
    .await;
    (idp, up, proxy)
}

/// A browser logged in as the IdP's auto-login user, sending `Accept: application/json`.
async fn logged_in(proxy: &Proxy) -> Browser {
    let mut b = Browser::new(proxy.addr);
    b.login("https://app.example.com/").await;
    assert!(b.cookie("pc_session").is_some());
    b.accept = "application/json";
    b
}

/// Asks `/oauth2/auth` about `host` + `uri` (as a trusted proxy would describe it).
async fn ask(b: &Browser, host: &str, uri: &str, extra: &[(&str, &str)]) -> Resp {
    let mut h = vec![("X-Forwarded-Host", host), ("X-Forwarded-Uri", uri)];
    h.extend_from_slice(extra);
    b.request(Method::GET, AUTH, &h).await
}

fn header(r: &Resp, name: &str) -> Option<String> {
    let all: Vec<_> = r.headers.get_all(name).iter().collect();
    assert!(all.len() <= 1, "{name} appears {} times", all.len());
    all.first().map(|v| v.to_str().unwrap().to_string())
}

/// Every answer of `/oauth2/auth` is uncacheable, and only a 202 carries an identity.
fn assert_contract(r: &Resp) {
    assert_eq!(header(r, "cache-control").as_deref(), Some("no-store"));
    assert!(r.location().is_none(), "/oauth2/auth never redirects");
    if r.status != StatusCode::ACCEPTED {
        assert!(!r.status.is_success(), "no other 2xx: {}", r.status);
        for k in r.headers.keys() {
            assert!(
                !k.as_str().starts_with("x-auth-request-") && k.as_str() != "x-tenant",
                "identity header {k} on a {}",
                r.status
            );
        }
    }
}

fn assert_401(r: &Resp) {
    assert_contract(r);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.json()["error"], "unauthenticated");
    assert_eq!(header(r, "www-authenticate").as_deref(), Some("Bearer"));
}

fn assert_403(r: &Resp, code: &str) {
    assert_contract(r);
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["error"], code, "{}", r.body);
}

fn assert_202_as(r: &Resp, sub: &str) {
    assert_contract(r);
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(header(r, "x-auth-request-user").as_deref(), Some(sub));
    assert!(r.body.is_empty());
}

/// Health-check and probe user agents that peers once let through, and plain oddities.
const USER_AGENTS: &[&str] = &[
    "",
    "GoogleHC/1.0",
    "kube-probe/1.29",
    "ELB-HealthChecker/2.0",
    "Prometheus/2.51.0",
    "Blackbox Exporter/0.25.0",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "oauth2-proxy",
    "portcullis",
    "Traefik",
    "Caddy",
    "nginx",
];

// === /oauth2/auth over HTTP ===

#[tokio::test]
async fn anonymous_is_401_whatever_the_agent_path_or_method() {
    for trusted in [TRUSTED_LOOPBACK, TRUSTED_ELSEWHERE] {
        let (_idp, up, proxy) = direct(trusted, alice()).await;
        let b = Browser::new(proxy.addr);
        let uris = [
            "/private",
            "/public/x",
            "/healthz",
            "/readyz",
            "/oauth2/start",
            "/oauth2/callback?code=x&state=y",
            "/",
            "/ping",
        ];
        let hosts = ["app.example.com", "docs.example.com"];
        for uri in uris {
            for host in hosts {
                assert_401(&ask(&b, host, uri, &[]).await);
            }
        }
        for (i, ua) in USER_AGENTS.iter().enumerate() {
            let (uri, host) = (uris[i % uris.len()], hosts[i % hosts.len()]);
            assert_401(&ask(&b, host, uri, &[("User-Agent", ua)]).await);
        }
        // Browser navigations, other methods, preflights: still 401, never a 302.
        for method in [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::OPTIONS,
            Method::DELETE,
        ] {
            let r = b
                .request(
                    method.clone(),
                    AUTH,
                    &[
                        ("Accept", BROWSER_ACCEPT),
                        ("Origin", "https://app.example.com"),
                        ("Access-Control-Request-Method", "GET"),
                        ("X-Forwarded-Method", "OPTIONS"),
                        ("X-Forwarded-Uri", "/public/x"),
                        ("X-Forwarded-Host", "docs.example.com"),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method}");
            assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store"));
            assert!(r.location().is_none());
        }
        // Spoofed identity headers are no identity.
        let r = b
            .request(
                Method::GET,
                AUTH,
                &[
                    ("X-Auth-Request-User", "u-bob"),
                    ("X-Forwarded-User", "bob"),
                    ("Authorization", "Bearer forged"),
                ],
            )
            .await;
        assert_401(&r);
        // A tampered cookie is no session, and is cleared.
        b.set_cookie("pc_session", "tampered-value");
        let r = ask(&b, "app.example.com", "/private", &[]).await;
        assert_401(&r);
        assert!(
            r.set_cookies()
                .iter()
                .any(|c| c.starts_with("pc_session=") && c.contains("Max-Age=0")),
            "{:?}",
            r.set_cookies()
        );
        assert_eq!(up.count(), 0, "forward-auth never calls the upstream");
    }
}

#[tokio::test]
async fn session_gets_202_with_the_same_identity_headers_as_upstream() {
    let (_idp, up, proxy) = direct(TRUSTED_LOOPBACK, alice()).await;
    let b = logged_in(&proxy).await;
    let r = ask(&b, "app.example.com", "/private?x=1", &[]).await;
    assert_202_as(&r, "u-alice");
    // The very values portcullis itself injects upstream (one encoding, one code path).
    let proxied = b.get("https://app.example.com/private").await;
    assert_eq!(proxied.status, StatusCode::OK);
    let seen = up.last();
    for name in [
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-preferred-username",
        "x-auth-request-groups",
        "x-tenant",
        "x-auth-request-access-token",
    ] {
        let upstream = seen.one(name);
        assert!(upstream.is_some(), "{name} missing upstream");
        assert_eq!(header(&r, name), upstream, "{name}");
    }
    assert_eq!(header(&r, "x-auth-request-groups").as_deref(), Some("eng"));
    // No session cookie is set or refreshed by /oauth2/auth.
    assert!(r.set_cookies().is_empty(), "{:?}", r.set_cookies());
    // Every user agent gets the same answer for the same session.
    for ua in USER_AGENTS {
        let r = ask(&b, "app.example.com", "/private", &[("User-Agent", ua)]).await;
        assert_202_as(&r, "u-alice");
    }
}

#[tokio::test]
async fn the_route_of_the_trusted_original_url_decides() {
    let (_idp, _up, proxy) = direct(TRUSTED_LOOPBACK, alice()).await;
    let b = logged_in(&proxy).await;
    let cases: &[(&str, &str, Option<&str>)] = &[
        // (host, X-Forwarded-Uri, None = 202 | Some(error word) = 403)
        ("app.example.com", "/private", None),
        ("app.example.com", "/public/x", None),
        ("docs.example.com", "/anything", None),
        ("APP.example.com.:8443", "/private", None),
        ("app.example.com", "/admin", Some("not_authorized")),
        ("app.example.com", "/admin/", Some("not_authorized")),
        (
            "app.example.com",
            "/admin/users?x=/public/",
            Some("not_authorized"),
        ),
        ("app.example.com", "/ADMIN", Some("not_authorized")),
        ("app.example.com", "/Admin/x", Some("not_authorized")),
        ("app.example.com", "//admin", Some("not_authorized")),
        (
            "app.example.com",
            "/public/../admin",
            Some("not_authorized"),
        ),
        (
            "app.example.com",
            "/public/%2e%2e/admin",
            Some("not_authorized"),
        ),
        (
            "app.example.com",
            "/public/%2E%2E/%61dmin",
            Some("not_authorized"),
        ),
        ("app.example.com", "/./admin", Some("not_authorized")),
        ("app.example.com", "/%61dmin", Some("not_authorized")),
        // No route describes these URLs: forward-auth never vouches for them.
        ("evil.example.com", "/private", Some("not_authorized")),
        ("example.com", "/", Some("not_authorized")),
        ("app.example.com.evil.com", "/", Some("not_authorized")),
        // Paths the proxy itself refuses are refused here (403, which nginx understands).
        ("app.example.com", "/public/..%2fadmin", Some("bad_path")),
        ("app.example.com", "/public/..%2Fadmin", Some("bad_path")),
        ("app.example.com", "/public/..;/admin", Some("bad_path")),
        ("app.example.com", "/public;/../admin", Some("bad_path")),
        (
            "app.example.com",
            "/public/%2e%2e%5cadmin",
            Some("bad_path"),
        ),
        ("app.example.com", "/public\\..\\admin", Some("bad_path")),
        ("app.example.com", "/public/%252e%252e/admin", None),
        ("app.example.com", "/../admin", Some("bad_path")),
        ("app.example.com", "/public/../../admin", Some("bad_path")),
        ("app.example.com", "/admin%00", Some("bad_path")),
        ("app.example.com", "/admin#/public/", Some("bad_path")),
        ("app.example.com", "/%C0%AEadmin", Some("bad_path")),
        (
            "app.example.com",
            "http://app.example.com/admin",
            Some("bad_path"),
        ),
        ("app.example.com", "*", Some("bad_path")),
        ("app.example.com", "admin", Some("bad_path")),
        ("evil.com/x", "/private", Some("bad_forwarded_request")),
        (
            "a@app.example.com",
            "/private",
            Some("bad_forwarded_request"),
        ),
        (
            "app.example.com,evil.com",
            "/private",
            Some("bad_forwarded_request"),
        ),
    ];
    for (host, uri, want) in cases {
        let r = ask(&b, host, uri, &[]).await;
        match want {
            None => assert_202_as(&r, "u-alice"),
            Some(code) => assert_403(&r, code),
        }
    }
    // Bad forwarded values are refused before the session is looked at: never a 2xx, and no
    // login loop for an anonymous client.
    let mut anon = Browser::new(proxy.addr);
    anon.accept = "application/json";
    assert_403(
        &ask(&anon, "app.example.com", "/public/..;/admin", &[]).await,
        "bad_path",
    );
    // Ambiguous descriptions are refused, never resolved either way.
    for extra in [
        [
            ("X-Forwarded-Uri", "/public/x"),
            ("X-Forwarded-Uri", "/admin"),
        ],
        [
            ("X-Forwarded-Host", "docs.example.com"),
            ("X-Forwarded-Host", "app.example.com"),
        ],
        [
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Method", "POST"),
        ],
    ] {
        let mut h = vec![
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "/admin"),
        ];
        // The pair replaces the single line it duplicates.
        h.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        h.extend_from_slice(&extra);
        let r = b.request(Method::GET, AUTH, &h).await;
        assert_403(&r, "bad_forwarded_request");
    }
    // Empty, spaced and non-ASCII values (raw bytes: no client library in the way).
    let cookie = format!("Cookie: pc_session={}\r\n", b.cookie("pc_session").unwrap());
    for bad in [
        "X-Forwarded-Uri: \r\n",
        "X-Forwarded-Uri: /public/x /admin\r\n",
        "X-Forwarded-Uri: /admin\u{00e9}\r\n",
        "X-Forwarded-Method: G\"ET\r\nX-Forwarded-Uri: /private\r\n",
    ] {
        let resp = raw_get(
            proxy.addr,
            "/oauth2/auth",
            "app.example.com",
            &format!("{cookie}X-Forwarded-Host: app.example.com\r\n{bad}"),
        )
        .await;
        assert_eq!(raw_status(&resp), 403, "{bad:?}: {resp}");
    }
    // bob is an admin.
    let (_idp, _up, proxy) = direct(TRUSTED_LOOPBACK, bob()).await;
    let b = logged_in(&proxy).await;
    assert_202_as(&ask(&b, "app.example.com", "/admin/x", &[]).await, "u-bob");
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_not_believed() {
    // The tests connect from 127.0.0.1; only 10.0.0.0/8 is trusted here.
    let (_idp, _up, proxy) = direct(TRUSTED_ELSEWHERE, alice()).await;
    let b = logged_in(&proxy).await;
    // Without a trusted original URL, the answer is the strictest route's: alice is not in
    // `admins`, so she is refused whatever public URL the headers claim.
    for (host, uri) in [
        ("docs.example.com", "/"),
        ("app.example.com", "/public/x"),
        ("app.example.com", "/private"),
    ] {
        let r = ask(&b, host, uri, &[("X-Forwarded-Method", "GET")]).await;
        assert_403(&r, "not_authorized");
    }
    // Not even forged malformed values are looked at (no bad_path for an untrusted peer).
    assert_403(
        &ask(&b, "app.example.com", "/public/..;/admin", &[]).await,
        "not_authorized",
    );
    // bob passes every route; the untrusted caller gets his identity but never his tokens.
    let (_idp, _up, proxy) = direct(TRUSTED_ELSEWHERE, bob()).await;
    let b = logged_in(&proxy).await;
    let r = ask(&b, "app.example.com", "/admin", &[]).await;
    assert_202_as(&r, "u-bob");
    assert_eq!(
        header(&r, "x-auth-request-groups").as_deref(),
        Some("admins")
    );
    assert!(
        header(&r, "x-auth-request-access-token").is_none(),
        "tokens only to trusted peers"
    );
    let r = b.request(Method::GET, AUTH, &[]).await;
    assert_202_as(&r, "u-bob");
    // The trusted proxy does get the configured access-token header.
    let (_idp, _up, proxy) = direct(TRUSTED_LOOPBACK, bob()).await;
    let b = logged_in(&proxy).await;
    let r = ask(&b, "app.example.com", "/admin", &[]).await;
    assert_202_as(&r, "u-bob");
    assert!(header(&r, "x-auth-request-access-token").is_some());
    // A trusted peer that names no URL gets the strictest-route answer too.
    let (_idp, _up, proxy) = direct(TRUSTED_LOOPBACK, alice()).await;
    let b = logged_in(&proxy).await;
    let r = b
        .request(
            Method::GET,
            AUTH,
            &[("X-Forwarded-Host", "docs.example.com")],
        )
        .await;
    assert_403(&r, "not_authorized");
}

#[tokio::test]
async fn forward_auth_checks_count_as_session_activity() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(fwd_config(
        &idp,
        &up,
        TRUSTED_LOOPBACK,
        "https://app.example.com",
        "lifetime = \"1h\"\nidle_timeout = \"1s\"",
    ))
    .await;
    let b = logged_in(&proxy).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_202_as(
            &ask(&b, "app.example.com", "/private", &[]).await,
            "u-alice",
        );
    }
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_401(&ask(&b, "app.example.com", "/private", &[]).await);
}

// === The real nginx and Caddy with the committed configuration files ===

/// Spoofed identity headers a client sends through the front proxy.
const SPOOFS: &[(&str, &str)] = &[
    ("X-Auth-Request-User", "u-bob"),
    ("x-auth-request-email", "bob@example.com"),
    ("X-AUTH-REQUEST-GROUPS", "admins"),
    ("X-Auth-Request-Preferred-Username", "bob"),
    ("X_Auth_Request_User", "u-bob"),
    ("x_auth_request_groups", "admins"),
    ("x.auth.request.email", "bob@example.com"),
    ("X_Forwarded_User", "bob"),
    ("X-Auth-Request-Access-Token", "forged"),
    ("X-Forwarded-User", "bob"),
    ("X-Forwarded-Email", "bob@example.com"),
    ("X-Forwarded-Groups", "admins"),
    ("X-Forwarded-Preferred-Username", "bob"),
    ("X-Forwarded-Access-Token", "forged"),
];

fn assert_no_spoof(seen: &Seen) {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['_', '.'], "-");
    for (name, value) in SPOOFS {
        for (k, v) in &seen.headers {
            if norm(k) == norm(name) {
                assert_ne!(v, value, "spoofed {name} reached the upstream as {k}: {v}");
            }
        }
    }
    for (k, v) in &seen.headers {
        assert!(
            !v.contains("u-bob") && !v.contains("forged") && !v.contains("admins"),
            "spoofed value reached the upstream in {k}: {v}"
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    Nginx,
    Caddy,
}

/// A front proxy running as a child process with everything (config, pid, logs, temp files)
/// in its own directory; killed and cleaned up on drop.
struct FrontProxy {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    kind: Front,
}

impl FrontProxy {
    fn start(kind: Front, port: u16, portcullis: SocketAddr, app: SocketAddr) -> FrontProxy {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-fwdauth-{kind:?}-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = match kind {
            Front::Nginx => {
                let site = render(
                    &repo.join("deploy/nginx/portcullis.conf"),
                    &[
                        ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
                        ("SERVER_NAME", "app.example.com".into()),
                        ("PORTCULLIS_UPSTREAM", portcullis.to_string()),
                        ("APP_UPSTREAM", app.to_string()),
                    ],
                );
                std::fs::write(dir.join("site.conf"), site).unwrap();
                let d = dir.display();
                // Test harness only: a root-less, foreground nginx whose every path is in `dir`.
                let main = format!(
                    "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                     error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
                     http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
                     proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                     uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                     include {d}/site.conf;\n}}\n"
                );
                std::fs::write(dir.join("nginx.conf"), main).unwrap();
                Command::new(binary("nginx"))
                    .arg("-p")
                    .arg(&dir)
                    .arg("-c")
                    .arg(dir.join("nginx.conf"))
                    .arg("-e")
                    .arg(dir.join("error.log"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("nginx must be installed (./scripts/test.sh installs it)")
            }
            Front::Caddy => {
                let site = render(
                    &repo.join("deploy/caddy/Caddyfile"),
                    &[
                        ("SITE_ADDRESS", format!("http://app.example.com:{port}")),
                        ("PORTCULLIS_UPSTREAM", portcullis.to_string()),
                        ("APP_UPSTREAM", app.to_string()),
                    ],
                );
                let d = dir.display();
                // Test harness only: global options (no admin endpoint, no certificates, state
                // in `dir`) in front of the committed site block.
                let global = format!(
                    "{{\n\tadmin off\n\tauto_https off\n\t\
                     storage file_system {d}/data\n\tdefault_bind 127.0.0.1\n}}\n\n"
                );
                std::fs::write(dir.join("Caddyfile"), global + &site).unwrap();
                Command::new(binary("caddy"))
                    .arg("run")
                    .arg("--config")
                    .arg(dir.join("Caddyfile"))
                    .arg("--adapter")
                    .arg("caddyfile")
                    .env("HOME", &dir)
                    .env("XDG_CONFIG_HOME", dir.join("config"))
                    .env("XDG_DATA_HOME", dir.join("data"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("caddy must be installed (./scripts/test.sh installs it)")
            }
        };
        FrontProxy {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            kind,
        }
    }

    /// Waits until the front proxy accepts connections (at most 15 s).
    async fn wait_listening(&mut self) {
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{:?} exited with {status}:\n{}", self.kind, self.logs());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{:?} never listened:\n{}", self.kind, self.logs());
    }

    fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The committed file with its placeholders replaced; every placeholder must be used.
fn render(path: &Path, vars: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (k, v) in vars {
        assert!(text.contains(k), "{} has no {k}", path.display());
        text = text.replace(k, v);
    }
    text
}

/// `name` from PATH, else from the sbin directories root's PATH has.
fn binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found: run ./scripts/test.sh, which installs it"))
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole flow through `front`: anonymous → login redirect, login, identity upstream,
/// spoofed headers stripped, the route policy enforced for the original URL.
async fn front_proxy_flow(kind: Front) {
    let port = free_port();
    let origin = format!("http://app.example.com:{port}");
    let idp = idp_with(|o| {
        o.redirect_uris = vec![format!("{origin}/oauth2/callback")];
    })
    .await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(fwd_config(&idp, &up, TRUSTED_LOOPBACK, &origin, "")).await;
    let mut front = FrontProxy::start(kind, port, proxy.addr, up.addr);
    front.wait_listening().await;
    let b = Browser::new(front.addr);
    let logs = |what: &str| format!("{kind:?}: {what}\n{}", front.logs());

    // Anonymous: sent to the IdP's login, carrying the original URL; the app never sees it.
    let spoofed: Vec<(&str, &str)> = SPOOFS.to_vec();
    let r = b
        .request(Method::GET, &format!("{origin}/private?a=1&b=2"), &spoofed)
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", logs(&r.body));
    let location = r.location().unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", idp.issuer())),
        "{location}"
    );
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("pc_session_login")),
        "{:?}",
        r.set_cookies()
    );
    assert_eq!(
        up.count(),
        0,
        "{}",
        logs("anonymous request reached the app")
    );
    // An API call is sent to the login as well (the front proxy decides on a 401).
    let r = b
        .request(
            Method::GET,
            &format!("{origin}/api/x"),
            &[("Accept", "application/json")],
        )
        .await;
    assert!(
        r.status == StatusCode::FOUND || r.status == StatusCode::UNAUTHORIZED,
        "{}",
        r.status
    );
    assert_eq!(up.count(), 0);

    // Login through the front proxy lands on the original URL, served by the app as alice.
    let (r, hops) = b.follow(&format!("{origin}/private?a=1&b=2")).await;
    assert!(
        hops.iter().any(|h| h.contains("/oauth2/callback")),
        "{hops:?}"
    );
    assert_eq!(r.status, StatusCode::OK, "{}", logs(&r.body));
    assert_eq!(
        hops.last().map(String::as_str),
        Some(format!("{origin}/private?a=1&b=2").as_str()),
        "{hops:?}"
    );
    let seen = up.last();
    assert_eq!(seen.uri, "/private?a=1&b=2");
    assert_eq!(seen.one("x-auth-request-user").as_deref(), Some("u-alice"));
    assert_eq!(
        seen.one("x-auth-request-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(seen.one("x-auth-request-groups").as_deref(), Some("eng"));
    assert!(
        seen.one("cookie").is_some(),
        "the front proxy passes the app its cookies"
    );

    // Logged in, with every spoofed header: the app sees alice, never the client's values.
    let r = b
        .request(Method::GET, &format!("{origin}/private"), &spoofed)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.last();
    assert_no_spoof(&seen);
    assert_eq!(seen.all("x-auth-request-user"), vec!["u-alice"]);
    assert_eq!(seen.all("x-auth-request-groups"), vec!["eng"]);
    // The client cannot name another URL for the check either.
    let before = up.count();
    let mut forged = spoofed.clone();
    forged.extend_from_slice(&[
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Forwarded-Host", "docs.example.com"),
        ("X-Forwarded-Method", "OPTIONS"),
        ("X-Original-URI", "/public/x"),
    ]);
    for path in [
        "/admin",
        "/admin/x",
        "/ADMIN",
        "/public/../admin",
        "//admin",
    ] {
        let r = b
            .request(Method::GET, &format!("{origin}{path}"), &forged)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", logs(&r.body));
    }
    assert_eq!(up.count(), before, "a denied request reached the app");
    // A public route with a session: passed, with identity (and still no spoof).
    let r = b
        .request(Method::GET, &format!("{origin}/public/x"), &spoofed)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_no_spoof(&up.last());
    // Clients cannot call the auth endpoint through the front proxy.
    let r = b.get(&format!("{origin}/oauth2/auth")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    // Signed out: back to the login redirect, the app is not reached.
    let r = b.get(&format!("{origin}/oauth2/sign_out")).await;
    assert!(r.status.is_redirection(), "{}", r.status);
    let before = up.count();
    let r = b
        .request(Method::GET, &format!("{origin}/private"), &spoofed)
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.location().unwrap().starts_with(&idp.issuer()));
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn nginx_with_the_committed_config() {
    front_proxy_flow(Front::Nginx).await;
}

#[tokio::test]
async fn caddy_with_the_committed_caddyfile() {
    front_proxy_flow(Front::Caddy).await;
}
