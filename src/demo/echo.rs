//! The demo's echo upstream: the application behind the proxy. It answers every request with a
//! page showing the request line and the identity and forwarding headers it received (JSON when
//! the client asks for `application/json`), so a newcomer sees what portcullis sends upstream.
//!
//! Everything echoed is HTML-escaped; pages carry a restrictive Content-Security-Policy (no
//! scripts, inline styles only).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::devidp::pages::escape;

/// The identity headers portcullis sets with `config/demo.toml`, in display order.
pub const IDENTITY_HEADERS: [&str; 4] = [
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
];

/// The forwarding headers shown, in display order (others starting `x-forwarded-` follow).
const FORWARDED_HEADERS: [&str; 3] = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];

/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;min-height:100vh;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#eef1f5;color:#1d2330}
header{background:#1d2a4d;color:#fff;padding:.8rem 1.5rem;display:flex;gap:1rem;align-items:center;justify-content:space-between;flex-wrap:wrap}
header .brand{font-weight:700;letter-spacing:.02em}
header .brand span{font-weight:400;opacity:.75}
nav a{color:#dfe6ff;text-decoration:none;margin-left:1rem;font-size:.92rem}
nav a:hover{text-decoration:underline}
nav a.signout{background:#fff;color:#1d2a4d;padding:.3rem .8rem;border-radius:6px;font-weight:600}
main{max-width:52rem;margin:2rem auto;padding:0 1rem}
.card{background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(20,30,60,.10);padding:1.5rem 1.75rem;margin-bottom:1.25rem}
h1{font-size:1.5rem;margin:0 0 .25rem}
h2{font-size:1.05rem;margin:0 0 .75rem}
p.sub{margin:0;color:#5a6475}
.badge{display:inline-block;background:#e3f6e8;color:#17622f;border-radius:999px;padding:.1rem .7rem;font-size:.8rem;font-weight:600;margin-left:.4rem;vertical-align:middle}
.badge.public{background:#eef0f4;color:#4a5363}
table{width:100%;border-collapse:collapse;font-size:.92rem}
th,td{text-align:left;padding:.5rem .6rem;border-top:1px solid #e6e9ef;vertical-align:top}
th{width:1%;white-space:nowrap;padding-right:2rem;font-weight:600;color:#3a4352}
td{word-break:break-all}
.none{color:#8a93a3;font-style:italic}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
pre{margin:0;background:#f4f6fa;border-radius:8px;padding:.7rem .9rem;overflow-x:auto}
.note{font-size:.85rem;color:#5a6475;margin:.75rem 0 0}
.note a{color:#2f5be0}
";

/// Serves the echo page on `listener` until `stop` resolves, then lets in-flight requests
/// finish (bounded).
pub async fn serve(listener: TcpListener, stop: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let builder = builder.clone();
                let watcher = graceful.watcher();
                conns.spawn(async move {
                    let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                        Ok::<_, Infallible>(respond(&req))
                    });
                    let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, "echo upstream connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = &mut stop => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    conns.shutdown().await;
}

/// The echo answer for one request (the body is never read).
pub fn respond<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let seen = Seen::of(req);
    let (content_type, body) = if wants_json(req.headers()) {
        ("application/json", seen.json().to_string())
    } else {
        ("text/html; charset=utf-8", seen.html())
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    resp
}

/// JSON when the client asks for it and not for HTML.
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
        .to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/html")
}

/// What the page shows.
struct Seen {
    request_line: String,
    path: String,
    /// Identity headers: the four standard ones (value or `None`), then any other
    /// `x-auth-request-*`.
    identity: Vec<(String, Option<String>)>,
    /// `x-forwarded-*` and `forwarded`, as received.
    forwarded: Vec<(String, String)>,
}

impl Seen {
    fn of<B>(req: &Request<B>) -> Seen {
        let headers = req.headers();
        let value = |name: &str| -> Option<String> {
            let values: Vec<String> = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        };
        let mut names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut identity: Vec<(String, Option<String>)> = IDENTITY_HEADERS
            .iter()
            .map(|n| ((*n).to_owned(), value(n)))
            .collect();
        for n in &names {
            if n.starts_with("x-auth-request-") && !IDENTITY_HEADERS.contains(n) {
                identity.push(((*n).to_owned(), value(n)));
            }
        }
        let mut forwarded: Vec<(String, String)> = Vec::new();
        for n in FORWARDED_HEADERS {
            if let Some(v) = value(n) {
                forwarded.push((n.to_owned(), v));
            }
        }
        for n in &names {
            let other_forwarded = n.starts_with("x-forwarded-") && !FORWARDED_HEADERS.contains(n);
            if (other_forwarded || *n == "forwarded")
                && let Some(v) = value(n)
            {
                forwarded.push(((*n).to_owned(), v));
            }
        }
        let target = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        Seen {
            request_line: format!("{} {} {:?}", req.method(), target, req.version()),
            path: req.uri().path().to_owned(),
            identity,
            forwarded,
        }
    }

    fn user(&self) -> Option<&str> {
        let get = |name: &str| {
            self.identity
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.as_deref())
        };
        get("x-auth-request-preferred-username").or_else(|| get("x-auth-request-user"))
    }

    fn json(&self) -> Value {
        let identity: Map<String, Value> = self
            .identity
            .iter()
            .filter_map(|(n, v)| v.as_ref().map(|v| (n.clone(), Value::from(v.as_str()))))
            .collect();
        let forwarded: Map<String, Value> = self
            .forwarded
            .iter()
            .map(|(n, v)| (n.clone(), Value::from(v.as_str())))
            .collect();
        serde_json::json!({
            "request_line": self.request_line,
            "identity": identity,
            "forwarded": forwarded,
        })
    }

    fn html(&self) -> String {
        let mut b = String::new();
        let _ = write!(
            b,
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <meta name=\"robots\" content=\"noindex\">\
             <title>{} · portcullis demo</title><style>{STYLE}</style></head><body>\
             <header><div class=\"brand\">portcullis demo <span>· echo upstream</span></div><nav>\
             <a href=\"/\">Home</a><a href=\"/public/\">Public page</a>\
             <a href=\"/admin\">Admins only</a><a href=\"/oauth2/userinfo\">Session (JSON)</a>\
             <a class=\"signout\" href=\"/oauth2/sign_out?rd=/public/\">Sign out</a></nav></header><main>",
            escape(&self.path)
        );
        b.push_str("<section class=\"card\">");
        match self.user() {
            Some(user) => {
                let _ = write!(
                    b,
                    "<h1>Hello, {}<span class=\"badge\">signed in</span></h1>\
                     <p class=\"sub\">portcullis checked your login and passed who you are to \
                     this application in the headers below.</p>",
                    escape(user)
                );
            }
            None => b.push_str(
                "<h1>A public page<span class=\"badge public\">no login</span></h1>\
                 <p class=\"sub\">This route needs no login, so portcullis sent no identity; \
                 identity headers a client sends itself are always removed.</p>",
            ),
        }
        b.push_str("</section><section class=\"card\"><h2>Request line</h2><pre>");
        b.push_str(&escape(&self.request_line));
        b.push_str("</pre></section><section class=\"card\"><h2>Identity headers</h2><table>");
        for (name, value) in &self.identity {
            let shown = match value {
                Some(v) if v.is_empty() => "<span class=\"none\">(empty)</span>".to_owned(),
                Some(v) => escape(v),
                None => "<span class=\"none\">not sent</span>".to_owned(),
            };
            let _ = write!(
                b,
                "<tr><th>{}</th><td>{shown}</td></tr>",
                escape(&display_name(name))
            );
        }
        b.push_str("</table></section><section class=\"card\"><h2>Forwarding headers</h2><table>");
        if self.forwarded.is_empty() {
            b.push_str("<tr><td class=\"none\">none received</td></tr>");
        }
        for (name, value) in &self.forwarded {
            let _ = write!(
                b,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(&display_name(name)),
                escape(value)
            );
        }
        b.push_str(
            "</table><p class=\"note\">This page is the demo's echo upstream, the application \
             behind portcullis. Try <a href=\"/admin\">/admin</a> (only users in the group \
             <code>admins</code>, e.g. <code>admin1</code>) or sign out and log in as someone \
             else.</p></section></main></body></html>\n",
        );
        b
    }
}

/// `x-auth-request-user` → `X-Auth-Request-User`.
fn display_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn request(accept: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder()
            .uri("/a?b=c&d=e")
            .header("accept", accept);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    async fn body(resp: Response<Full<Bytes>>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn html_escapes_everything_echoed() {
        let req = request(
            "text/html",
            &[
                ("x-auth-request-user", "<script>alert(1)</script>"),
                ("x-auth-request-email", "a\"b@example.com"),
                ("x-auth-request-tenant", "<t>"),
                ("x-forwarded-host", "<h>"),
            ],
        );
        let resp = respond(&req);
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(resp.headers()["content-security-policy"], CSP);
        let page = body(resp).await;
        assert!(!page.contains("<script>") && !page.contains("<t>") && !page.contains("<h>"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a&quot;b@example.com"));
        assert!(page.contains("X-Auth-Request-Tenant"));
        assert!(
            page.contains("GET /a?b=c&amp;d=e HTTP/1.1"),
            "the request line is escaped too"
        );
        assert!(page.contains("href=\"/oauth2/sign_out"));
    }

    #[tokio::test]
    async fn json_when_asked_for() {
        let req = request(
            "application/json",
            &[
                ("x-auth-request-user", "alice"),
                ("x-forwarded-for", "127.0.0.1"),
                ("x-forwarded-for", "10.0.0.1"),
            ],
        );
        let resp = respond(&req);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v: Value = serde_json::from_str(&body(resp).await).unwrap();
        assert_eq!(v["request_line"], "GET /a?b=c&d=e HTTP/1.1");
        assert_eq!(v["identity"]["x-auth-request-user"], "alice");
        assert!(v["identity"].get("x-auth-request-email").is_none());
        assert_eq!(v["forwarded"]["x-forwarded-for"], "127.0.0.1, 10.0.0.1");
    }

    #[test]
    fn browsers_get_html() {
        let accept = "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8";
        assert!(!wants_json(request(accept, &[]).headers()));
        assert!(wants_json(request("application/json", &[]).headers()));
        assert!(!wants_json(request("*/*", &[]).headers()));
    }

    #[tokio::test]
    async fn public_page_says_no_identity() {
        let page = body(respond(&request("text/html", &[]))).await;
        assert!(page.contains("A public page"));
        assert!(page.contains("not sent"));
    }
}
