//! `portcullis explain --config FILE --url URL [--method M] [--claims FILE|JSON]` (SPEC
//! "Command line"): which route a URL reaches, whether it is public, and whether a user with
//! these claims passes its policy, and why.
//!
//! Everything is decided by the code the proxy runs, never a second copy: the request path
//! goes through [`crate::http::path::normalize`], the host through [`crate::http::host::parse`],
//! the route through [`crate::route::RouteTable::find`], claims become an identity through
//! [`crate::oidc::identity_from_claims`] (with the configured `groups_claim`), and the policy
//! is [`crate::policy::explain`], which reports exactly what [`crate::policy::evaluate`]
//! decides. Claims are parsed like token payloads (a JSON object, duplicate members refused).
//!
//! Exit codes: 0 the request would reach the upstream (or is one of portcullis' own
//! endpoints), 3 it would not (400 path, 404 no route, 401/302 without claims, 403 policy),
//! 1 the configuration, claims, method or URL cannot be used.

use std::fmt::Write as _;
use std::path::Path;

use http::{Method, Uri};
use serde_json::{Map, Value};

use crate::config::{self, AuthMode, Config};
use crate::http::{host, path};
use crate::oidc::identity_from_claims;
use crate::oidc::verify::parse_json_object;
use crate::policy::{self, Decision};
use crate::route::RouteTable;

/// What the request would get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Reaches the upstream (or a portcullis endpoint).
    Allow,
    /// Refused before the upstream.
    Deny,
}

impl Verdict {
    /// The process exit code: 0 allow, 3 deny.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Allow => 0,
            Verdict::Deny => 3,
        }
    }
}

/// Why `explain` could not answer (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("invalid configuration:\n{0}")]
    Config(config::ConfigErrors),
    #[error("--url: {0}")]
    Url(String),
    #[error("--method: `{0}` is not an HTTP method")]
    Method(String),
    #[error("--claims: {0}")]
    Claims(String),
}

/// The printed explanation and its verdict.
#[derive(Debug, Clone)]
pub struct Report {
    pub text: String,
    pub verdict: Verdict,
}

/// Reads `--claims`: inline JSON when it starts with `{`, else a file holding JSON.
pub fn load_claims(arg: &str) -> Result<Map<String, Value>, ExplainError> {
    let text = if arg.trim_start().starts_with('{') {
        arg.to_owned()
    } else {
        std::fs::read_to_string(arg)
            .map_err(|e| ExplainError::Claims(format!("cannot read `{arg}`: {e}")))?
    };
    parse_json_object(text.as_bytes()).map_err(|e| {
        ExplainError::Claims(format!(
            "not a JSON object (duplicate members are refused): {e}"
        ))
    })
}

/// The command: load the file and explain. Returns the report or the error for stderr.
pub fn run(
    config_file: &Path,
    url: &str,
    method: &str,
    claims: Option<&str>,
) -> Result<Report, ExplainError> {
    let cfg = config::from_file(config_file).map_err(ExplainError::Config)?;
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| ExplainError::Method(method.into()))?;
    let claims = claims.map(load_claims).transpose()?;
    explain(&cfg, url, &method, claims)
}

/// Explains `method url` for a user with `claims` (none: an anonymous request).
pub fn explain(
    cfg: &Config,
    url: &str,
    method: &Method,
    claims: Option<Map<String, Value>>,
) -> Result<Report, ExplainError> {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| {
        let _ = writeln!(out, "{k:<8} {v}");
    };
    let (host, raw_path) = target(cfg, url)?;
    line("url", url);
    line("method", method.as_str());
    line("host", &host);
    let deny = |mut out: String, why: &str| {
        let _ = writeln!(out, "{:<8} DENY: {why}", "result");
        Ok(Report {
            text: out,
            verdict: Verdict::Deny,
        })
    };
    let allow = |mut out: String, why: &str| {
        let _ = writeln!(out, "{:<8} ALLOW: {why}", "result");
        Ok(Report {
            text: out,
            verdict: Verdict::Allow,
        })
    };
    if *method == Method::CONNECT {
        return deny(out, "400 Bad Request (CONNECT is not proxied)");
    }
    let path = match path::normalize(&raw_path) {
        Ok(p) => p,
        Err(e) => {
            line("path", &raw_path);
            return deny(out, &format!("400 Bad Request: the path is refused: {e}"));
        }
    };
    if path == raw_path {
        line("path", &path);
    } else {
        line("path", &format!("{path} (normalised from {raw_path})"));
    }
    if is_own_endpoint(&path, &cfg.oidc.callback_path) {
        line("route", "none: answered by portcullis itself on every host");
        return allow(out, "a portcullis endpoint, never forwarded upstream");
    }
    let routes = RouteTable::new(&cfg.routes);
    let Some(route) = routes.find(&host, &path) else {
        line("route", "none matches this host and path");
        return deny(out, "404 Not Found (no route)");
    };
    line("route", &config::route_summary(route));
    if route.auth == AuthMode::Public {
        line(
            "access",
            "public: no login; identity headers from the client are stripped",
        );
        return allow(out, "public route");
    }
    line(
        "access",
        "protected: needs a session (or a bearer token when oidc.bearer_audiences is set)",
    );
    if route.allow_preflight && *method == Method::OPTIONS {
        line(
            "note",
            "allow_preflight: an OPTIONS with Origin and Access-Control-Request-Method passes without login",
        );
        if claims.is_none() {
            return allow(out, "CORS preflight on a route with allow_preflight");
        }
    }
    let Some(claims) = claims else {
        return deny(
            out,
            "no claims given: an anonymous browser navigation gets 302 to the login, anything else 401",
        );
    };
    let groups_claim = &cfg.oidc.groups_claim;
    let id = identity_from_claims(claims, groups_claim);
    line("claims", &describe(&id, groups_claim));
    let e = policy::explain(route, &id, groups_claim);
    for l in &e.lines {
        line("policy", l);
    }
    match e.decision {
        Decision::Allow(_) => allow(out, "forwarded upstream with the identity headers"),
        Decision::Deny => deny(
            out,
            "403 Forbidden (not_authorized): no allow_* list matched",
        ),
    }
}

/// The host (lower-case, no port) and the raw path of `url`: an absolute `http(s)` URL, or a
/// path (`/…`) on `public_url`'s host.
fn target(cfg: &Config, url: &str) -> Result<(String, String), ExplainError> {
    if url.starts_with('/') {
        let raw = url.split(['?', '#']).next().unwrap_or(url);
        return Ok((cfg.server.public_url.host.clone(), raw.to_owned()));
    }
    let uri: Uri = url.parse().map_err(|_| {
        ExplainError::Url(format!(
            "`{url}` is not a valid absolute http(s) URL or /path (as a request target it would be answered 400)"
        ))
    })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(ExplainError::Url(format!(
                "`{url}` is not an http(s) URL or /path"
            )));
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| ExplainError::Url(format!("`{url}` has no host")))?;
    let h =
        host::parse(authority.as_str()).map_err(|e| ExplainError::Url(format!("`{url}`: {e}")))?;
    Ok((h.host, uri.path().to_owned()))
}

/// The paths the proxy answers itself before routing (`src/auth/endpoints.rs`): `/healthz`,
/// `/readyz`, the callback, and everything under `/oauth2/`.
fn is_own_endpoint(path: &str, callback_path: &str) -> bool {
    path == "/healthz"
        || path == "/readyz"
        || path == callback_path
        || path == "/oauth2"
        || path.starts_with("/oauth2/")
}

fn describe(id: &crate::identity::Identity, groups_claim: &str) -> String {
    let mut s = format!("sub {:?}", id.sub);
    match &id.email {
        Some(e) => {
            let _ = write!(
                s,
                ", email {e:?} (email_verified {})",
                id.claims
                    .get("email_verified")
                    .map_or("missing".to_owned(), Value::to_string)
            );
        }
        None => s.push_str(", no email"),
    }
    let _ = write!(
        s,
        ", groups from `{groups_claim}` [{}]",
        id.groups.join(", ")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CFG: &str = r#"
[server]
listen = "127.0.0.1:4180"
public_url = "https://app.example.com"
[oidc]
issuer = "https://idp.example.com"
client_id = "portcullis"
client_secret = "fake-test-secret"
groups_claim = "roles"
[session]
cookie_secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[route]]
path = "/public/"
upstream = "http://127.0.0.1:9001"
auth = "public"
[[route]]
path = "/admin"
upstream = "http://127.0.0.1:9001"
allow_groups = ["admins"]
[[route]]
host = "api.example.com"
path = "/"
upstream = "http://127.0.0.1:9002"
allow_email_domains = ["example.com"]
allow_preflight = true
[[route]]
host = "app.example.com"
path = "/"
upstream = "http://127.0.0.1:9001"
"#;

    fn cfg() -> Config {
        config::from_str(CFG, "t.toml", &|_| None, Path::new(".")).unwrap()
    }

    #[test]
    fn explain_table() {
        let c = cfg();
        let admin = json!({"sub": "u1", "roles": ["admins"]});
        let eng = json!({"sub": "u2", "roles": ["eng"], "groups": ["admins"]});
        let verified = json!({"sub": "u3", "email": "a@Example.COM", "email_verified": true});
        type Case<'a> = (&'a str, &'a str, Option<Value>, Verdict, &'a [&'a str]);
        let cases: Vec<Case<'_>> = vec![
            (
                "GET",
                "https://app.example.com/public/x",
                None,
                Verdict::Allow,
                &["route0", "public route"],
            ),
            ("GET", "/public/x", None, Verdict::Allow, &["route0"]),
            (
                "GET",
                "https://app.example.com/public/../admin",
                Some(eng.clone()),
                Verdict::Deny,
                &[
                    "/admin (normalised from /public/../admin)",
                    "route1",
                    "groups [eng] ∩ allow_groups [admins] is empty",
                ],
            ),
            (
                "GET",
                "https://app.example.com/%61dmin/x",
                Some(admin.clone()),
                Verdict::Allow,
                &["route1", "allow_groups matched \"admins\" (claim `roles`)"],
            ),
            (
                "GET",
                "https://APP.example.com./ADMIN",
                Some(admin.clone()),
                Verdict::Allow,
                &["host     app.example.com", "route1"],
            ),
            (
                "GET",
                "https://app.example.com/admin",
                None,
                Verdict::Deny,
                &["no claims given"],
            ),
            (
                "GET",
                "https://app.example.com/a/%2e%2e/%2e%2e/etc",
                None,
                Verdict::Deny,
                &["400", "climbs above the root"],
            ),
            (
                "GET",
                "https://app.example.com/a%2fb",
                None,
                Verdict::Deny,
                &["400", "encoded slash"],
            ),
            (
                "GET",
                "https://app.example.com/a;x=1",
                None,
                Verdict::Deny,
                &["400", "semicolon"],
            ),
            (
                "GET",
                "https://other.example.com/x",
                None,
                Verdict::Deny,
                &["404"],
            ),
            (
                "GET",
                "https://app.example.com/oauth2/start?rd=/x",
                None,
                Verdict::Allow,
                &["answered by portcullis"],
            ),
            (
                "GET",
                "https://api.example.com/v1",
                Some(verified.clone()),
                Verdict::Allow,
                &["route2", "allow_email_domains matched \"example.com\""],
            ),
            (
                "GET",
                "https://api.example.com/v1",
                Some(json!({"sub": "x", "email": "a@example.com", "email_verified": false})),
                Verdict::Deny,
                &["email_verified is not true (it is false)", "403"],
            ),
            (
                "OPTIONS",
                "https://api.example.com/v1",
                None,
                Verdict::Allow,
                &["CORS preflight"],
            ),
            (
                "CONNECT",
                "https://api.example.com/v1",
                None,
                Verdict::Deny,
                &["400"],
            ),
            (
                "GET",
                "https://app.example.com/x",
                Some(json!({"sub": "x"})),
                Verdict::Allow,
                &["route3", "any authenticated user passes"],
            ),
        ];
        for (m, url, claims, want, needles) in cases {
            let claims = claims.map(|c| c.as_object().unwrap().clone());
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            let r = explain(&c, url, &m, claims).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(r.verdict, want, "{m} {url}\n{}", r.text);
            for n in needles {
                assert!(r.text.contains(n), "{m} {url}: {n:?} not in\n{}", r.text);
            }
        }
    }

    #[test]
    fn unusable_input_is_an_error() {
        let c = cfg();
        for url in [
            "ftp://app.example.com/x",
            "app.example.com/x",
            "https://user@app.example.com/",
            "https://[::1/",
        ] {
            assert!(
                matches!(
                    explain(&c, url, &Method::GET, None),
                    Err(ExplainError::Url(_))
                ),
                "{url}"
            );
        }
        assert!(matches!(load_claims("[1]"), Err(ExplainError::Claims(_))));
        assert!(matches!(
            load_claims(r#"{"sub": "a", "sub": "b"}"#),
            Err(ExplainError::Claims(_))
        ));
        assert!(matches!(
            load_claims("/nonexistent/portcullis-claims.json"),
            Err(ExplainError::Claims(_))
        ));
    }
}
