//! Forwarding to the upstream: URI building, the timed call, and response hygiene.
//!
//! The request headers are prepared by the pipeline ([`crate::app`]) before they get here
//! (hop-by-hop removed, identity scrubbed and injected, forwarded headers set, own cookies
//! removed); this module sends the request with its body streamed, bounds the wait for the
//! response head by `request_timeout` (504), maps connection failures to 502, and cleans the
//! response: hop-by-hop fields (RFC 9110 §7.6.1) and any `Set-Cookie` for the proxy's own
//! cookie names (SECURITY UP-06) are removed. An unexpected `101` is a 502: the proxy never
//! becomes a blind tunnel (SECURITY HTTP-08). Both bodies are guarded by an idle timeout of
//! `request_timeout` between chunks, and the head deadline starts once the request body is
//! sent ([`crate::http::idle`], SECURITY UP-03).

pub mod client;
pub mod pool;
pub mod upgrade;

use std::time::Duration;

use http::header::{CONNECTION, HOST, SET_COOKIE, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use hyper::upgrade::OnUpgrade;

use crate::config::Upstream;
use crate::http::body::Body;
use crate::http::{hop, idle};

pub use client::UpstreamClient;
pub use pool::{H1Pool, PoolError};

/// The upstream clients of one worker thread (see [`crate::server::serve`]).
pub struct Clients {
    /// Plain-`http` upstreams, HTTP/1.1: the hot path.
    pub pool: H1Pool,
    /// `https` upstreams: HTTP/1.1 or HTTP/2 by ALPN.
    pub any: UpstreamClient,
    /// HTTP/1.1 only, for WebSocket upgrades.
    pub h1: UpstreamClient,
}

impl Clients {
    /// The clients for a proxy with `routes` routes.
    pub fn new(tls: rustls::ClientConfig, routes: usize, connect_timeout: Duration) -> Self {
        Clients {
            pool: H1Pool::new(routes, 256, connect_timeout),
            any: client::build(tls.clone(), connect_timeout, true),
            h1: client::build(tls, connect_timeout, false),
        }
    }
}

/// Where a request goes: the worker's clients, the route (its pool slot) and its upstream.
pub struct Target<'a> {
    pub clients: &'a Clients,
    pub route: usize,
    pub upstream: &'a Upstream,
}

/// Why the upstream gave no usable response.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream connection failed: {0}")]
    Connect(#[source] hyper_util::client::legacy::Error),
    #[error("upstream connection failed: {0}")]
    Pool(#[source] PoolError),
    #[error("the client's request body stalled for longer than {0:?}")]
    ClientBodyTimeout(Duration),
    #[error("upstream answered 101 to a request that asked for no upgrade")]
    UnexpectedUpgrade,
    #[error("cannot build the upstream request: {0}")]
    Build(String),
}

impl ProxyError {
    /// 504 for a timeout, 408 for a stalled request body, 502 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::ClientBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
    /// A short word for logs (`event=upstream_error reason=...`).
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::Timeout(_) => "upstream_timeout",
            ProxyError::ClientBodyTimeout(_) => "client_body_timeout",
            ProxyError::Connect(e) if e.is_connect() => "connect_failed",
            ProxyError::Connect(_) => "upstream_reset",
            ProxyError::Pool(e) if e.is_connect() => "connect_failed",
            ProxyError::Pool(_) => "upstream_reset",
            ProxyError::UnexpectedUpgrade => "unexpected_upgrade",
            ProxyError::Build(_) => "bad_request",
        }
    }
    /// The sentence of the error page (no internal detail).
    pub fn message(&self) -> &'static str {
        match self {
            ProxyError::Timeout(_) => "The service did not answer in time.",
            ProxyError::ClientBodyTimeout(_) => "The request body did not arrive in time.",
            _ => "The service is unavailable.",
        }
    }
}

/// The upstream URI: upstream origin + base path + normalised path + raw query. With
/// `origin_form` only the path and query (RFC 9112 §3.2.1: what the per-worker pool sends;
/// no origin to format and parse again).
pub fn upstream_uri(
    up: &Upstream,
    path: &str,
    query: Option<&str>,
    origin_form: bool,
) -> Result<Uri, ProxyError> {
    let mut s = String::with_capacity(
        up.authority.len() + up.base_path.len() + path.len() + query.map_or(0, str::len) + 16,
    );
    if !origin_form {
        s.push_str(if up.https { "https://" } else { "http://" });
        s.push_str(&up.host);
        s.push(':');
        // Writing to a String cannot fail.
        let _ = std::fmt::Write::write_fmt(&mut s, format_args!("{}", up.port));
    }
    s.push_str(&up.base_path);
    s.push_str(path);
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    Uri::try_from(s).map_err(|e| ProxyError::Build(e.to_string()))
}

/// Whether a request goes through the per-worker pool (plain `http`, no upgrade), which
/// takes an origin-form target.
pub fn pooled(up: &Upstream, websocket: bool) -> bool {
    !up.https && !websocket
}

/// The upstream's answer, and for a WebSocket upgrade the upstream side of the tunnel.
pub struct Upstreamed {
    pub response: Response<Body>,
    pub upgraded: Option<OnUpgrade>,
}

/// Sends `req` (headers prepared, URI set by the caller with [`upstream_uri`]: origin-form
/// when [`pooled`]) and cleans the response.
/// Plain-`http` upstreams go through the worker's [`H1Pool`], `https` ones through the
/// general client (HTTP/2 by ALPN).
/// `own_cookie`: predicate for the proxy's cookie names, stripped from upstream `Set-Cookie`.
/// `websocket`: the request is a WebSocket upgrade; it goes over `h1_client` (HTTP/1.1 only)
/// with `Connection: upgrade` + `Upgrade: websocket` re-added, and a `101` answer yields the
/// upstream half of the tunnel.
pub async fn send(
    target: Target<'_>,
    mut req: Request<Body>,
    host: Option<HeaderValue>,
    timeout: Duration,
    own_cookie: impl Fn(&str) -> bool,
    websocket: bool,
) -> Result<Upstreamed, ProxyError> {
    match host {
        Some(h) => {
            req.headers_mut().insert(HOST, h);
        }
        None => {
            req.headers_mut().remove(HOST);
        }
    }
    *req.version_mut() = http::Version::HTTP_11;
    req.extensions_mut().clear();
    if websocket {
        let h = req.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
    let (parts, body) = req.into_parts();
    let (body, sent) = idle::request(body, timeout);
    let req = Request::from_parts(parts, body);
    let head = async {
        let clients = target.clients;
        let up = target.upstream;
        if websocket {
            clients.h1.request(req).await.map_err(ProxyError::Connect)
        } else if up.https {
            clients.any.request(req).await.map_err(ProxyError::Connect)
        } else {
            (clients
                .pool
                .send(target.route, &up.host, up.port, req)
                .await)
                .map_err(ProxyError::Pool)
        }
    };
    let mut resp = match idle::response_head(head, timeout, sent.as_deref()).await {
        None => return Err(ProxyError::Timeout(timeout)),
        Some(Err(_)) if sent.as_ref().is_some_and(|s| s.timed_out()) => {
            return Err(ProxyError::ClientBodyTimeout(timeout));
        }
        Some(Err(e)) => return Err(e),
        Some(Ok(resp)) => resp,
    };
    let mut upgraded = None;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let accepted = resp
            .headers()
            .get(UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if !websocket || !accepted {
            return Err(ProxyError::UnexpectedUpgrade);
        }
        upgraded = Some(hyper::upgrade::on(&mut resp));
    }
    let (mut parts, body) = resp.into_parts();
    hop::strip_hop_by_hop_response(&mut parts.headers);
    strip_own_set_cookies(&mut parts.headers, own_cookie);
    if upgraded.is_some() {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts
            .headers
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
    Ok(Upstreamed {
        response: Response::from_parts(parts, idle::response(body, timeout)),
        upgraded,
    })
}

/// Removes upstream `Set-Cookie` fields that would set one of the proxy's own cookies.
fn strip_own_set_cookies(headers: &mut http::HeaderMap, own_cookie: impl Fn(&str) -> bool) {
    if !headers.contains_key(SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| {
            let name = v
                .as_bytes()
                .split(|b| *b == b'=')
                .next()
                .unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            let own = own_cookie(name.trim());
            if own {
                tracing::warn!(
                    event = "upstream_set_cookie_dropped",
                    "upstream tried to set a proxy cookie"
                );
            }
            !own
        })
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for v in kept {
        headers.append(SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_upstream_uri() {
        let up = Upstream {
            https: false,
            host: "127.0.0.1".into(),
            port: 9001,
            base_path: "/base".into(),
            authority: "127.0.0.1:9001".into(),
        };
        assert_eq!(
            upstream_uri(&up, "/a/b", Some("x=1&y=%2F"), false).unwrap(),
            "http://127.0.0.1:9001/base/a/b?x=1&y=%2F"
        );
        assert_eq!(
            upstream_uri(&up, "/", None, false).unwrap(),
            "http://127.0.0.1:9001/base/"
        );
        assert_eq!(
            upstream_uri(&up, "/a/b", Some("x=1"), true).unwrap(),
            "/base/a/b?x=1"
        );
        assert_eq!(upstream_uri(&up, "/", None, true).unwrap(), "/base/");
    }

    #[test]
    fn drops_only_own_set_cookies() {
        let mut h = http::HeaderMap::new();
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("_portcullis=attacker; Path=/"),
        );
        h.append(SET_COOKIE, HeaderValue::from_static("theme=dark"));
        h.append(
            SET_COOKIE,
            HeaderValue::from_static("_portcullis_login_x=1"),
        );
        strip_own_set_cookies(&mut h, |n| {
            n == "_portcullis" || n.starts_with("_portcullis_login")
        });
        let left: Vec<_> = h.get_all(SET_COOKIE).iter().collect();
        assert_eq!(left, vec!["theme=dark"]);
    }
}
