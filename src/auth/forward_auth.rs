//! `/oauth2/auth`: forward-auth for nginx `auth_request`, Traefik ForwardAuth and Caddy
//! `forward_auth` (SPEC "Endpoints"; SECURITY HDR-07, HDR-09).
//!
//! A front proxy asks portcullis, for each request it is about to serve, "may this request
//! pass, and as whom?". portcullis answers with the status alone (the body is not for the
//! front proxy) and, on success, the identity in response headers the front proxy copies
//! into the request it sends upstream.
//!
//! # The contract
//!
//! | answer | when |
//! | --- | --- |
//! | **202**, empty body, the configured `[headers]` (same names, values and encoding as the ones portcullis injects upstream itself, [`App::identity_headers`]) | a valid session, and the route for the original URL allows the user |
//! | **401** `{"error":"unauthenticated"}`, `WWW-Authenticate: Bearer` | no valid session — whatever the `User-Agent`, `Accept`, method or original path; never a redirect (the front proxy turns it into one) |
//! | **403** `{"error":"not_authorized"}` | valid session, but the route denies the user, or no `[[route]]` matches the original URL |
//! | **403** `{"error":"bad_path"}` / `{"error":"bad_forwarded_request"}` | a trusted `X-Forwarded-Uri` whose path fails [`crate::http::path::normalize`], or an `X-Forwarded-Host` / `-Uri` / `-Method` that is malformed or repeated with different values; checked before the session |
//!
//! Every answer carries `Cache-Control: no-store`. There is **never a 2xx without a valid
//! session**: public routes, CORS preflights, health-check user agents and the like get no
//! exemption here. If the front proxy should let something through anonymously, it must not
//! send that request to `/oauth2/auth` (no `auth_request` on that location).
//!
//! A bad original path is a 403 rather than a 400 because nginx's `auth_request` only
//! understands 2xx, 401 and 403 (anything else becomes a 500 for the client).
//!
//! # Which route is judged
//!
//! `X-Forwarded-Host`, `X-Forwarded-Uri` and `X-Forwarded-Method` are believed **only** when
//! the connection's peer is in `server.trusted_proxies`; from anyone else they are ignored
//! (a client talking to portcullis directly cannot name the URL it is judged for).
//!
//! - **Original URL known** (trusted peer that sent `X-Forwarded-Uri`): the host is
//!   `X-Forwarded-Host` (port and case dropped, as for `Host`), or the request's own `Host`
//!   when the front proxy passes the original one (Caddy does). The path is the part of
//!   `X-Forwarded-Uri` before the first `?` (the query never selects a route), normalised
//!   with the same [`crate::http::path::normalize`] the proxy routes on. The first
//!   `[[route]]` matching host and path decides: `required` routes apply their `allow_*`
//!   lists, `public` routes let any session pass; **no matching route is a 403** (fail
//!   closed: forward-auth never vouches for a URL no route describes).
//! - **Original URL unknown** (untrusted peer, or no `X-Forwarded-Uri`): portcullis cannot
//!   know which route applies, so it answers for the strictest one: 202 only when the user
//!   passes the `allow_*` lists of **every** `required` route. With no allow lists anywhere
//!   this is "any valid session" (an app asking "am I signed in?"); with per-route policy, a
//!   front proxy missing from `trusted_proxies` gets 403s instead of silently letting every
//!   user through every route.
//!
//! `X-Forwarded-Method` is validated (a method token) and logged; no route depends on the
//! method, and the `allow_preflight` exemption does not apply to forward-auth (see above).
//!
//! # Tokens
//!
//! `headers.access_token` and `headers.authorization_bearer_id_token` are answered only to a
//! trusted peer: the browser never holds tokens (SPEC "Cookies"), and an untrusted caller of
//! `/oauth2/auth` is a browser.
//!
//! # Session activity
//!
//! Each `/oauth2/auth` answer for a session counts as activity: it resets the session's
//! idle timer (`session.idle_timeout`), exactly like a request proxied by portcullis itself,
//! since it stands for one. It never extends the absolute `session.lifetime`.

use std::net::IpAddr;

use http::header::SET_COOKIE;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::{AccessLog, App};
use crate::config::AuthMode;
use crate::http::body::{Body, empty};
use crate::http::forwarded::{
    X_FORWARDED_HOST, X_FORWARDED_METHOD, X_FORWARDED_URI, forwarded_request,
};
use crate::http::pages::{self, Client};
use crate::http::{host, path};
use crate::policy::{self, Decision};
use crate::session::Session;

/// What `/oauth2/auth` is asked to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Original {
    /// A trusted proxy described the original request.
    Known {
        /// Lower-case host without port.
        host: String,
        /// Normalised path (no query).
        path: String,
    },
    /// Nobody trusted said which URL this is for.
    Unknown,
}

/// Why a trusted description of the original request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Refused {
    #[error("X-Forwarded-Uri path is not acceptable")]
    BadPath,
    #[error("X-Forwarded-{0} is malformed or ambiguous")]
    BadField(&'static str),
}

impl App {
    /// Answers `/oauth2/auth` (see the module documentation for the contract).
    pub(crate) async fn forward_auth(
        &self,
        req: &Request<Incoming>,
        peer: IpAddr,
        rid: &str,
        client: Client,
        log: &mut AccessLog,
    ) -> Response<Body> {
        let trusted = self
            .cfg
            .server
            .trusted_proxies
            .iter()
            .any(|c| c.contains(peer));
        let original = if trusted {
            match original_request(req) {
                Ok(o) => o,
                Err(e) => {
                    tracing::info!(request_id = %rid, event = "forward_auth_refused", reason = %e, "forwarded request refused");
                    let code = match e {
                        Refused::BadPath => "bad_path",
                        Refused::BadField(_) => "bad_forwarded_request",
                    };
                    return self.page(
                        StatusCode::FORBIDDEN,
                        code,
                        "The forwarded request is not acceptable.",
                        rid,
                        client,
                    );
                }
            }
        } else {
            if [&X_FORWARDED_URI, &X_FORWARDED_HOST, &X_FORWARDED_METHOD]
                .iter()
                .any(|n| req.headers().contains_key(*n))
            {
                tracing::info!(request_id = %rid, event = "forwarded_ignored", peer = %peer, "X-Forwarded-* from an untrusted peer ignored");
            }
            Original::Unknown
        };

        let (session, clear) = self.session(req.headers()).await;
        let Some(session) = session else {
            let mut resp = pages::unauthenticated_json();
            if clear {
                resp.headers_mut()
                    .append(SET_COOKIE, self.session_cookies.clear_cookie());
            }
            return resp;
        };
        log.set_user(&session.identity.sub);

        if let Err(reason) = self.judge(&original, &session) {
            tracing::info!(request_id = %rid, event = "not_authorized", reason, "forward-auth denied");
            return self.page(
                StatusCode::FORBIDDEN,
                "not_authorized",
                "You are signed in, but not allowed to use this service.",
                rid,
                client,
            );
        }

        let mut resp = Response::new(empty());
        *resp.status_mut() = StatusCode::ACCEPTED;
        self.identity_headers(resp.headers_mut(), &session, rid, trusted);
        if let Some(user) = &self.cfg.headers.user
            && !resp.headers().contains_key(user)
        {
            // The subject could not be written as a header: no 2xx without an identity.
            tracing::warn!(request_id = %rid, event = "not_authorized", reason = "subject_unrepresentable", "forward-auth denied");
            return self.page(
                StatusCode::FORBIDDEN,
                "not_authorized",
                "Your identity cannot be passed on.",
                rid,
                client,
            );
        }
        pages::no_store(resp.headers_mut());
        resp
    }

    /// `Ok` when the session may use the original URL, else the reason for the log.
    fn judge(&self, original: &Original, session: &Session) -> Result<(), &'static str> {
        match original {
            Original::Known { host, path } => {
                let route = self.routes.find(host, path).ok_or("no_route")?;
                match route.auth {
                    AuthMode::Public => Ok(()),
                    AuthMode::Required => match policy::evaluate(route, &session.identity) {
                        Decision::Allow(_) => Ok(()),
                        Decision::Deny => Err("policy"),
                    },
                }
            }
            Original::Unknown => {
                let denied = self.routes.routes().iter().any(|r| {
                    r.auth == AuthMode::Required
                        && policy::evaluate(r, &session.identity) == Decision::Deny
                });
                if denied {
                    Err("policy_without_original_url")
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// The original request described by a trusted front proxy.
fn original_request(req: &Request<Incoming>) -> Result<Original, Refused> {
    original_from(req.headers(), || {
        host::request_host(req.version(), req.uri(), req.headers())
            .ok()
            .map(|h| h.host)
    })
}

/// [`original_request`] over plain headers; `own_host` is the request's own host, used when
/// the front proxy sent no `X-Forwarded-Host`.
fn original_from(
    headers: &HeaderMap,
    own_host: impl FnOnce() -> Option<String>,
) -> Result<Original, Refused> {
    let fr = forwarded_request(headers);
    // Present but unusable (empty, spaces, lines that disagree) is refused, never "absent".
    for (name, value, label) in [
        (&X_FORWARDED_URI, &fr.uri, "Uri"),
        (&X_FORWARDED_HOST, &fr.host, "Host"),
        (&X_FORWARDED_METHOD, &fr.method, "Method"),
    ] {
        if headers.contains_key(name) && value.is_none() {
            return Err(Refused::BadField(label));
        }
    }
    if let Some(m) = &fr.method
        && Method::from_bytes(m.as_bytes()).is_err()
    {
        return Err(Refused::BadField("Method"));
    }
    let host = match &fr.host {
        Some(h) => Some(host::parse(h).map_err(|_| Refused::BadField("Host"))?.host),
        None => None,
    };
    let Some(uri) = &fr.uri else {
        return Ok(Original::Unknown);
    };
    let raw_path = uri.split_once('?').map_or(uri.as_str(), |(p, _)| p);
    let path = path::normalize(raw_path).map_err(|_| Refused::BadPath)?;
    let host = host.or_else(own_host).ok_or(Refused::BadField("Host"))?;
    Ok(Original::Known { host, path })
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;

    fn headers(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("test name"),
                HeaderValue::from_str(v).expect("test value"),
            );
        }
        h
    }

    fn known(host: &str, path: &str) -> Result<Original, Refused> {
        Ok(Original::Known {
            host: host.into(),
            path: path.into(),
        })
    }

    fn own() -> Option<String> {
        Some("own.example.com".into())
    }

    #[test]
    fn original_url_from_trusted_headers() {
        type Case<'a> = (Vec<(&'a str, &'a str)>, Result<Original, Refused>);
        let cases: Vec<Case<'_>> = vec![
            (vec![], Ok(Original::Unknown)),
            (
                vec![("X-Forwarded-Host", "app.example.com")],
                Ok(Original::Unknown),
            ),
            (
                vec![
                    ("X-Forwarded-Host", "App.Example.COM:8443"),
                    ("X-Forwarded-Uri", "/admin?x=1"),
                ],
                known("app.example.com", "/admin"),
            ),
            (
                vec![("X-Forwarded-Uri", "/x")],
                known("own.example.com", "/x"),
            ),
            (
                vec![
                    ("X-Forwarded-Host", "app.example.com"),
                    ("X-Forwarded-Uri", "/public/../admin"),
                ],
                known("app.example.com", "/admin"),
            ),
            (
                vec![
                    ("X-Forwarded-Host", "app.example.com"),
                    ("X-Forwarded-Uri", "//public/%2e%2e/%61dmin/"),
                ],
                known("app.example.com", "/admin/"),
            ),
            // The query never selects a route.
            (
                vec![
                    ("X-Forwarded-Host", "a.b"),
                    ("X-Forwarded-Uri", "/admin?/public/"),
                ],
                known("a.b", "/admin"),
            ),
            (
                vec![
                    ("X-Forwarded-Host", "a.b"),
                    ("X-Forwarded-Uri", "/public/..%2fadmin"),
                ],
                Err(Refused::BadPath),
            ),
            (
                vec![("X-Forwarded-Uri", "/public/..;/admin")],
                Err(Refused::BadPath),
            ),
            (
                vec![("X-Forwarded-Uri", "/public/%2e%2e/%2e%2e/admin")],
                Err(Refused::BadPath),
            ),
            (
                vec![("X-Forwarded-Uri", "/admin#/public/")],
                Err(Refused::BadPath),
            ),
            (
                vec![("X-Forwarded-Uri", "/public\\..\\admin")],
                Err(Refused::BadPath),
            ),
            (
                vec![("X-Forwarded-Uri", "http://app.example.com/admin")],
                Err(Refused::BadPath),
            ),
            (vec![("X-Forwarded-Uri", "*")], Err(Refused::BadPath)),
            (vec![("X-Forwarded-Uri", "admin")], Err(Refused::BadPath)),
            (vec![("X-Forwarded-Uri", "/a%00b")], Err(Refused::BadPath)),
            (vec![("X-Forwarded-Uri", "")], Err(Refused::BadField("Uri"))),
            (
                vec![("X-Forwarded-Uri", "/a b")],
                Err(Refused::BadField("Uri")),
            ),
            (
                vec![
                    ("X-Forwarded-Uri", "/public/"),
                    ("X-Forwarded-Uri", "/admin"),
                ],
                Err(Refused::BadField("Uri")),
            ),
            (
                vec![
                    ("X-Forwarded-Host", "a.example.com,b.example.com"),
                    ("X-Forwarded-Uri", "/"),
                ],
                Err(Refused::BadField("Host")),
            ),
            (
                vec![
                    ("X-Forwarded-Host", "a.example.com"),
                    ("X-Forwarded-Host", "b.example.com"),
                    ("X-Forwarded-Uri", "/"),
                ],
                Err(Refused::BadField("Host")),
            ),
            (
                vec![("X-Forwarded-Host", "evil.com/x"), ("X-Forwarded-Uri", "/")],
                Err(Refused::BadField("Host")),
            ),
            (
                vec![
                    ("X-Forwarded-Host", "user@app.example.com"),
                    ("X-Forwarded-Uri", "/"),
                ],
                Err(Refused::BadField("Host")),
            ),
            (
                vec![("X-Forwarded-Method", "GET,POST"), ("X-Forwarded-Uri", "/")],
                Err(Refused::BadField("Method")),
            ),
            (
                vec![("X-Forwarded-Method", "G(ET"), ("X-Forwarded-Uri", "/")],
                Err(Refused::BadField("Method")),
            ),
            (
                vec![("X-Forwarded-Method", "DELETE"), ("X-Forwarded-Uri", "/x")],
                known("own.example.com", "/x"),
            ),
        ];
        for (fields, want) in cases {
            let h = headers(&fields);
            assert_eq!(original_from(&h, own), want, "{fields:?}");
        }
    }

    #[test]
    fn no_host_anywhere_is_refused() {
        let h = headers(&[("X-Forwarded-Uri", "/x")]);
        assert_eq!(original_from(&h, || None), Err(Refused::BadField("Host")));
    }
}
