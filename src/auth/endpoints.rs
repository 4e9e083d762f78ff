//! The proxy's own endpoints (SPEC "Endpoints"), served on every host.
//!
//! - `/oauth2/start?rd=` — begins a login (`rd` validated; `X-Auth-Request-Redirect` is read
//!   when `rd` is absent, as oauth2-proxy does; a repeated `rd` is a 400).
//! - the callback — state bound to this browser by the login cookie, then the code exchange
//!   and ID-token verification in [`crate::oidc`]; a new session id on every login (the old
//!   session of this browser, if any, is ended: no fixation).
//! - `/oauth2/sign_out?rd=` — ends the session (and every session sharing its IdP `sid`, or
//!   its `sub` when the IdP sent no `sid`), clears the cookies, then RP-initiated logout at
//!   the IdP when it advertises `end_session_endpoint`, else a 302 to `rd`. It accepts GET
//!   (oauth2-proxy compatible); the session cookie is `SameSite=Lax` by default, so a
//!   cross-site `<img>` cannot carry it and cannot sign anyone out.
//! - `/oauth2/userinfo` — the session's identity as JSON, never tokens.
//! - `/oauth2/auth` — forward-auth for a front proxy ([`crate::auth::forward_auth`]).
//! - `/healthz`, `/readyz`.
//!
//! Every other path under `/oauth2/` is reserved and answers 404.

use std::net::IpAddr;
use std::time::SystemTime;

use http::header::SET_COOKIE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::{AccessLog, App, LogRoute, encode_query_value, unix_now};
use crate::auth::login_cookie::{LoginCookieError, Taken};
use crate::http::body::Body;
use crate::http::pages::{self, Client, Page};
use crate::session::{Session, SessionId};

/// Query parameters, with duplicates kept so they can be refused.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Self {
        Params(
            query
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default(),
        )
    }
    /// `Ok(None)` absent, `Ok(Some)` once, `Err(())` repeated.
    fn single(&self, name: &str) -> Result<Option<&str>, ()> {
        let mut it = self.0.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (None, _) => Ok(None),
            (Some((_, v)), None) => Ok(Some(v.as_str())),
            _ => Err(()),
        }
    }
}

impl App {
    /// Answers the request when it is for one of the proxy's endpoints.
    pub(crate) async fn endpoint(
        &self,
        req: &Request<Incoming>,
        path: &str,
        peer: IpAddr,
        rid: &str,
        client: Client,
        log: &mut AccessLog,
    ) -> Option<Response<Body>> {
        // The heavy endpoints are boxed so that the future of every request, which contains
        // this one, stays small (hyper moves it into place per request; issue 6).
        let resp = match path {
            "/healthz" => pages::text(StatusCode::OK, "ok\n"),
            "/readyz" if self.provider.is_ready() => pages::text(StatusCode::OK, "ready\n"),
            "/readyz" => pages::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "identity provider not loaded\n",
            ),
            "/oauth2/start" => self.start(req, rid, client),
            p if p == self.cfg.oidc.callback_path => {
                Box::pin(self.callback(req, rid, client, log)).await
            }
            "/oauth2/sign_out" => Box::pin(self.sign_out(req, rid, client, log)).await,
            "/oauth2/userinfo" => Box::pin(self.userinfo(req, log)).await,
            "/oauth2/auth" => Box::pin(self.forward_auth(req, peer, rid, client, log)).await,
            p if p.starts_with("/oauth2/") || p == "/oauth2" => self.page(
                StatusCode::NOT_FOUND,
                "not_found",
                "No such endpoint.",
                rid,
                client,
            ),
            _ => return None,
        };
        log.set_route(LogRoute::Own);
        Some(resp)
    }

    /// The `rd` of a request: the `rd` query parameter, else `X-Auth-Request-Redirect`;
    /// validated, falling back to `/`. `Err` when `rd` is repeated.
    fn requested_rd(&self, req: &Request<Incoming>, rid: &str) -> Result<String, ()> {
        let params = Params::parse(req.uri().query());
        let raw = match params.single("rd")? {
            Some(v) => Some(v.to_string()),
            None => {
                let mut it = req.headers().get_all("x-auth-request-redirect").iter();
                match (it.next(), it.next()) {
                    (Some(v), None) => v.to_str().ok().map(str::to_owned),
                    (None, _) => None,
                    _ => return Err(()),
                }
            }
        };
        Ok(match raw {
            None => "/".into(),
            Some(r) if r.is_empty() => "/".into(),
            Some(r) => self.redirects.validate(&r).unwrap_or_else(|| {
                tracing::warn!(request_id = %rid, event = "redirect_rejected", "rd is not an allowed target; using /");
                "/".into()
            }),
        })
    }

    fn start(&self, req: &Request<Incoming>, rid: &str, client: Client) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return self.page(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Use GET.",
                rid,
                client,
            );
        }
        let Ok(rd) = self.requested_rd(req, rid) else {
            return self.page(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "The rd parameter is repeated.",
                rid,
                client,
            );
        };
        // A browser that already has a session goes straight to `rd`.
        self.start_login(rd, req.headers(), rid, client)
    }

    async fn callback(
        &self,
        req: &Request<Incoming>,
        rid: &str,
        client: Client,
        log: &mut AccessLog,
    ) -> Response<Body> {
        if req.method() != Method::GET {
            return self.page(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Use GET.",
                rid,
                client,
            );
        }
        let params = Params::parse(req.uri().query());
        let fail = |status: StatusCode, reason: &str, message: &str, restart: Option<&str>| {
            tracing::warn!(request_id = %rid, event = "login_failed", reason, "login refused");
            let link = restart.map(|rd| format!("/oauth2/start?rd={}", encode_query_value(rd)));
            Page {
                status,
                code: reason,
                message,
                link: link.as_deref().map(|l| (l, "Sign in again")),
                request_id: rid,
            }
            .render(client)
        };
        // Security parameters must appear at most once (RFC 6749 §3.1).
        let (Ok(state), Ok(code), Ok(error), Ok(iss)) = (
            params.single("state"),
            params.single("code"),
            params.single("error"),
            params.single("iss"),
        ) else {
            return fail(
                StatusCode::BAD_REQUEST,
                "duplicate_parameter",
                "The login response is malformed.",
                Some("/"),
            );
        };
        let Some(state) = state.filter(|s| !s.is_empty()) else {
            return fail(
                StatusCode::BAD_REQUEST,
                "state_missing",
                "The login response is incomplete.",
                Some("/"),
            );
        };
        if state.len() > 256 {
            return fail(
                StatusCode::BAD_REQUEST,
                "state_mismatch",
                "The login response does not belong to this browser.",
                Some("/"),
            );
        }
        let login = match self.login_cookies.take(state, req.headers(), unix_now()) {
            Ok(l) => l,
            Err(e) => {
                let (reason, message) = match e {
                    LoginCookieError::Expired => ("state_expired", "The login took too long."),
                    _ => (
                        "state_mismatch",
                        "The login response does not belong to this browser.",
                    ),
                };
                // No cookie is cleared: none is known to belong to this state (the others
                // may be logins in progress in other tabs; they expire on their own).
                return fail(StatusCode::BAD_REQUEST, reason, message, Some("/"));
            }
        };
        // From here on the state is consumed: every answer clears its login cookie.
        let Taken {
            login,
            removal: clear_login,
        } = login;
        let rd = self
            .redirects
            .validate(&login.rd)
            .unwrap_or_else(|| "/".into());
        let with_clear = |mut resp: Response<Body>| {
            resp.headers_mut().append(SET_COOKIE, clear_login.clone());
            resp
        };
        if let Some(error) = error {
            let (status, message) = match error {
                "access_denied" => (
                    StatusCode::FORBIDDEN,
                    "The identity provider denied the login.",
                ),
                "server_error" | "temporarily_unavailable" => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The identity provider could not complete the login.",
                ),
                _ => (
                    StatusCode::BAD_REQUEST,
                    "The identity provider refused the login.",
                ),
            };
            let error_word: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            tracing::warn!(request_id = %rid, event = "login_failed", reason = "idp_error", error = %error_word, "identity provider returned an error");
            return with_clear(
                Page {
                    status,
                    code: "idp_error",
                    message,
                    link: Some(("/oauth2/start?rd=%2F", "Sign in again")),
                    request_id: rid,
                }
                .render(client),
            );
        }
        if let Err(e) = self.provider.check_authorization_response_iss(iss) {
            return with_clear(fail(
                StatusCode::BAD_REQUEST,
                e.reason(),
                "The login response came from the wrong issuer.",
                Some(&rd),
            ));
        }
        let Some(code) = code.filter(|c| !c.is_empty()) else {
            return with_clear(fail(
                StatusCode::BAD_REQUEST,
                "code_missing",
                "The login response is incomplete.",
                Some(&rd),
            ));
        };
        if !self.provider.is_ready() {
            return with_clear(self.idp_not_ready(rid, client));
        }
        let outcome = match self
            .provider
            .finish_login(code, &login.pkce_verifier, &login.nonce)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
                let message = match status.as_u16() {
                    400 => "The login could not be completed. Please sign in again.",
                    401 => "The identity provider's answer could not be verified.",
                    403 => "The identity provider denied the login.",
                    503 => {
                        "The identity provider cannot be reached right now. Please try again shortly."
                    }
                    _ => "The identity provider rejected this proxy's credentials.",
                };
                if status == StatusCode::BAD_GATEWAY {
                    tracing::error!(request_id = %rid, event = "login_failed", reason = e.reason(), error = %e, "identity provider refused the client");
                }
                return with_clear(fail(status, e.reason(), message, Some(&rd)));
            }
        };
        // Session fixation: whatever session this browser had ends; the new one gets a new id.
        if let Ok(old) = self.session_cookies.open(req.headers()) {
            self.store.remove(&old).await;
        }
        let now = SystemTime::now();
        let session = Session {
            id: SessionId::generate(),
            identity: {
                let mut identity = outcome.identity;
                identity.retain_claims(self.cfg.headers.claims.iter().map(|(_, c)| c.as_str()));
                identity
            },
            id_token: outcome.id_token,
            access_token: outcome.access_token,
            refresh_token: outcome.refresh_token,
            sid: outcome.sid.map(String::into_boxed_str),
            created_at: now,
            expires_at: now + self.cfg.session.lifetime,
        };
        log.set_user(&session.identity.sub);
        let cookie = self.session_cookies.set_cookie(&session.id);
        self.store.insert(session).await;
        tracing::info!(request_id = %rid, event = "login", "login succeeded");
        let Ok(location) = HeaderValue::from_str(&rd) else {
            return with_clear(pages::redirect(HeaderValue::from_static("/")));
        };
        let mut resp = with_clear(pages::redirect(location));
        resp.headers_mut().append(SET_COOKIE, cookie);
        resp
    }

    async fn sign_out(
        &self,
        req: &Request<Incoming>,
        rid: &str,
        client: Client,
        log: &mut AccessLog,
    ) -> Response<Body> {
        let rd = self.requested_rd(req, rid).unwrap_or_else(|_| "/".into());
        let (session, _) = self.session(req.headers()).await;
        let mut id_token_hint = None;
        if let Some(s) = session {
            log.set_user(&s.identity.sub);
            self.store.remove(&s.id).await;
            let ended = match &s.sid {
                Some(sid) => self.store.remove_by_sid(sid).await,
                None => self.store.remove_by_sub(&s.identity.sub).await,
            };
            tracing::info!(request_id = %rid, event = "sign_out", related_sessions = ended, "signed out");
            id_token_hint = Some(s.id_token.clone());
        }
        let absolute_rd = if rd.starts_with('/') {
            format!("{}{}", self.public_origin, rd)
        } else {
            rd.clone()
        };
        let target = match self.provider.end_session_url(
            id_token_hint.as_ref().map(crate::secret::Secret::expose),
            &absolute_rd,
            &random_state(),
        ) {
            Some(url) if id_token_hint.is_some() => url,
            _ => rd,
        };
        let mut resp = match HeaderValue::from_str(&target) {
            Ok(v) => pages::redirect(v),
            Err(_) => self.page(
                StatusCode::OK,
                "signed_out",
                "You are signed out.",
                rid,
                client,
            ),
        };
        resp.headers_mut()
            .append(SET_COOKIE, self.session_cookies.clear_cookie());
        resp
    }

    async fn userinfo(&self, req: &Request<Incoming>, log: &mut AccessLog) -> Response<Body> {
        let (session, clear) = self.session(req.headers()).await;
        let Some(s) = session else {
            let mut resp = pages::unauthenticated_json();
            if clear {
                resp.headers_mut()
                    .append(SET_COOKIE, self.session_cookies.clear_cookie());
            }
            return resp;
        };
        log.set_user(&s.identity.sub);
        let id = &s.identity;
        pages::json(
            StatusCode::OK,
            &serde_json::json!({
                "user": id.sub,
                "email": id.email,
                "preferred_username": id.preferred_username,
                "groups": id.groups,
            }),
        )
    }
}

/// A random `state` for the RP-initiated logout round trip.
fn random_state() -> String {
    let mut b = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
