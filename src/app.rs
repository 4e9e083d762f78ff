//! The request pipeline, top to bottom in one place.
//!
//! Every request goes through the same phases (pingora's vocabulary):
//! 1. **request target**: refuse authority/asterisk forms; determine the host
//!    ([`crate::http::host`]); normalise the path once ([`crate::http::path`]) — that one path
//!    is used for the endpoint match, the route match, the policy and the upstream request;
//! 2. **own endpoints**: `/oauth2/*`, the callback, `/healthz`, `/readyz` on every host
//!    ([`crate::auth::endpoints`]);
//! 3. **route**: first `[[route]]` matching host + path, else 404;
//! 4. **gate** (protected routes): a bearer token when `bearer_audiences` is set
//!    ([`crate::auth::bearer`]: invalid → 401 `invalid_token`, never a cookie fallback), else
//!    session cookie → store; then policy; no session: 302 to the IdP for browser
//!    navigations, 401 JSON for everything else; denied: 403 (HTML for browsers, JSON else);
//! 5. **upstream request filter**: hop-by-hop fields removed *before* anything is added,
//!    identity headers scrubbed on every route, forwarded headers by peer trust, own cookies
//!    removed, identity injected on protected routes, request trailers dropped;
//! 6. **forward** with streamed bodies, 502/504 on failure ([`crate::proxy`]);
//! 7. **logging**: one access-log line per request, with no token, cookie or query in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{AUTHORIZATION, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};

use crate::auth;
use crate::auth::bearer::BearerGate;
use crate::auth::login_cookie::{LoginCookies, LoginState};
use crate::auth::redirect::RedirectPolicy;
use crate::config::{AuthMode, Config, RouteConfig};
use crate::error::StartError;
use crate::http::body::{Body, BoxError};
use crate::http::forwarded::{self, PeerTrust};
use crate::http::host::{self, RequestHost};
use crate::http::identity_headers::{IdentityScrubber, claim_header_value, groups_header_value};
use crate::http::pages::{self, Client, Page};
use crate::http::{browser, hop, path};
use crate::identity::Identity;
use crate::oidc::{IdpHttp, Provider};
use crate::policy::{self, Decision};
use crate::proxy::upgrade::Tunnels;
use crate::proxy::{self, Clients};
use crate::route::RouteTable;
use crate::server::ConnInfo;
use crate::session::cookie::{NoSession, SessionCookies, strip_own_cookies};
use crate::session::{MemoryStore, Session};
use hyper::upgrade::OnUpgrade;

/// Everything a request needs, built once at start-up and shared read-only.
pub struct App {
    pub(crate) cfg: Arc<Config>,
    pub(crate) routes: RouteTable,
    pub(crate) provider: Arc<Provider>,
    pub(crate) store: MemoryStore,
    pub(crate) session_cookies: SessionCookies,
    pub(crate) login_cookies: LoginCookies,
    pub(crate) redirects: RedirectPolicy,
    scrubber: IdentityScrubber,
    /// Upstream clients, one pair per worker thread (`[worker]`) plus one for any other
    /// thread (last): a pooled upstream connection is driven by the runtime that opened it,
    /// so each worker keeps its own pool (see [`crate::server::serve`]).
    clients: Box<[Clients]>,
    /// `Host` for each route's upstream (by route index), built once.
    upstream_hosts: Box<[Option<HeaderValue>]>,
    /// Open WebSocket tunnels.
    pub(crate) tunnels: Arc<Tunnels>,
    /// `https://app.example.com` (no trailing slash).
    pub(crate) public_origin: String,
    request_ids: RequestIds,
}

/// What the access log records about one request. Filled only while the access log is
/// enabled (`portcullis::access` at `info`), so a proxy with it turned off copies no strings.
#[derive(Debug, Default)]
pub(crate) struct AccessLog {
    enabled: bool,
    host: String,
    path: String,
    route: Option<LogRoute>,
    user: Option<String>,
}

/// The `route` field of the access log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogRoute {
    /// The proxy's own endpoints.
    Own,
    /// A `[[route]]`, by index.
    Route(usize),
}

impl std::fmt::Display for LogRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogRoute::Own => f.write_str("portcullis"),
            LogRoute::Route(i) => write!(f, "route{i}"),
        }
    }
}

impl AccessLog {
    fn new() -> Self {
        AccessLog {
            enabled: tracing::enabled!(target: "portcullis::access", tracing::Level::INFO),
            ..AccessLog::default()
        }
    }
    fn set_host(&mut self, host: &str) {
        if self.enabled {
            host.clone_into(&mut self.host);
        }
    }
    fn set_path(&mut self, path: &str) {
        if self.enabled {
            truncate(path, 256).clone_into(&mut self.path);
        }
    }
    pub(crate) fn set_route(&mut self, route: LogRoute) {
        self.route = Some(route);
    }
    pub(crate) fn set_user(&mut self, sub: &str) {
        if self.enabled {
            self.user = Some(sub.to_owned());
        }
    }
}

impl App {
    /// Builds the application from a validated configuration.
    pub fn new(cfg: Config) -> Result<Arc<App>, StartError> {
        let cfg = Arc::new(cfg);
        let s = &cfg.server;
        let public_origin = s.public_url.origin();
        let redirect_uri = format!("{public_origin}{}", cfg.oidc.callback_path);
        let idp_tls = crate::tls::client_config(s.upstream_ca_file.as_deref())?;
        let http = IdpHttp::new(
            idp_tls,
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(15),
            2 * 1024 * 1024,
        );
        let provider = Provider::new(&cfg.oidc, redirect_uri, http);
        let upstream_tls = crate::tls::client_config(s.upstream_ca_file.as_deref())?;
        let connect_timeout = std::time::Duration::from_secs(10);
        let clients = (0..=crate::server::worker_count())
            .map(|_| Clients::new(upstream_tls.clone(), cfg.routes.len(), connect_timeout))
            .collect();
        let routes = RouteTable::new(&cfg.routes);
        let session_cookies = SessionCookies::new(&cfg.session, &s.public_url);
        let login_cookies = LoginCookies::new(
            session_cookies.name(),
            &cfg.session.cookie_secrets,
            s.public_url.https,
        );
        let reserved = vec!["/oauth2/".to_string(), cfg.oidc.callback_path.clone()];
        let redirects = RedirectPolicy::new(&s.public_url, &routes.host_patterns(), reserved);
        let h = &cfg.headers;
        let configured: Vec<_> = [
            &h.user,
            &h.email,
            &h.preferred_username,
            &h.groups,
            &h.access_token,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .chain(h.claims.iter().map(|(n, _)| n.clone()))
        .collect();
        let scrubber = IdentityScrubber::new(&configured);
        let store = MemoryStore::new(
            cfg.session.max_sessions,
            cfg.session.lifetime,
            cfg.session.idle_timeout,
        );
        Ok(Arc::new(App {
            routes,
            provider,
            store,
            session_cookies,
            login_cookies,
            redirects,
            scrubber,
            clients,
            upstream_hosts: cfg
                .routes
                .iter()
                .map(|r| HeaderValue::from_str(&r.upstream.authority).ok())
                .collect(),
            tunnels: Tunnels::new(),
            public_origin,
            request_ids: RequestIds::new(),
            cfg,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn provider(&self) -> &Arc<Provider> {
        &self.provider
    }

    /// How many worker threads serve this app.
    pub fn workers(&self) -> usize {
        self.clients.len() - 1
    }

    /// Closes pooled upstream connections idle for longer than the pool's idle timeout.
    pub(crate) fn prune_upstream_pools(&self) {
        for c in &self.clients {
            c.pool.prune(proxy::pool::IDLE_TIMEOUT);
        }
    }

    /// The calling worker's upstream clients (the shared spare pair off the workers).
    fn clients(&self) -> &Clients {
        let last = self.clients.len() - 1;
        let i = crate::server::current_worker().map_or(last, |w| w.min(last));
        &self.clients[i]
    }

    /// Handles one request; never fails (errors become pages).
    pub async fn handle(&self, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let rid = self.request_ids.next();
        let rid = rid.as_str();
        let method = req.method().clone();
        let mut log = AccessLog::new();
        let started = log.enabled.then(Instant::now);
        let peer = conn.peer;
        let resp = self.dispatch(req, conn, rid, &mut log).await;
        if !log.enabled {
            return resp;
        }
        tracing::info!(
            target: "portcullis::access",
            request_id = %rid,
            method = %method,
            host = %log.host,
            path = %log.path,
            status = resp.status().as_u16(),
            duration_ms = started.map_or(0.0, |t| t.elapsed().as_secs_f64() * 1000.0),
            user = log.user.as_deref().unwrap_or("-"),
            route = %log.route.map_or(String::from("-"), |r| r.to_string()),
            peer = %peer.ip(),
            "request"
        );
        resp
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        rid: &str,
        log: &mut AccessLog,
    ) -> Response<Body> {
        let client = client_kind(req.method(), req.headers());
        // Phase 1: framing and the request target.
        if conn.framing.is_set() {
            tracing::info!(request_id = %rid, event = "bad_framing", "ambiguous message framing refused");
            let mut resp =
                self.bad_request("bad_request", "Ambiguous message framing.", rid, client);
            resp.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
        if req.method() == Method::CONNECT
            || (req.uri().authority().is_some() && req.uri().scheme().is_none())
        {
            return self.bad_request("bad_request", "Unsupported request target.", rid, client);
        }
        if req.uri().path() == "*" {
            return self.bad_request("bad_request", "Unsupported request target.", rid, client);
        }
        let host = match host::request_host(req.version(), req.uri(), req.headers()) {
            Ok(h) => h,
            Err(e) => {
                tracing::info!(request_id = %rid, reason = %e, event = "bad_host", "request refused");
                return self.bad_request("bad_request", "Missing or invalid Host.", rid, client);
            }
        };
        log.set_host(&host.host);
        log.set_path(req.uri().path());
        if req.uri().authority().is_some() {
            // Absolute-form (or HTTP/2 :authority): only hosts this proxy serves.
            if !self.serves_host(&host.host) {
                return self.bad_request("bad_request", "Unknown authority.", rid, client);
            }
        }
        let path = match path::normalize(req.uri().path()) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(request_id = %rid, reason = %e, event = "bad_path", "request refused");
                return self.bad_request(
                    "bad_path",
                    "The request path is not acceptable.",
                    rid,
                    client,
                );
            }
        };
        log.set_path(&path);

        // Phase 2: the proxy's own endpoints, on every host.
        if let Some(resp) = self
            .endpoint(&req, &path, conn.peer.ip(), rid, client, log)
            .await
        {
            return resp;
        }

        // Phase 3: the route.
        let Some(route) = self.routes.find(&host.host, &path).cloned() else {
            return self.page(
                StatusCode::NOT_FOUND,
                "not_found",
                "No service is configured here.",
                rid,
                client,
            );
        };
        log.set_route(LogRoute::Route(route.index));

        // Phase 4: the gate.
        let identity = match route.auth {
            AuthMode::Public => None,
            AuthMode::Required if route.allow_preflight && is_cors_preflight(&req) => None,
            AuthMode::Required => {
                // A bearer token, when enabled and sent, decides alone (src/auth/bearer.rs).
                let bearer = match self.bearer_gate(req.headers(), rid, client).await {
                    BearerGate::Absent => None,
                    BearerGate::Identity(id) => Some(Caller::Bearer(id)),
                    BearerGate::Refuse(resp) => return resp,
                };
                let caller = match bearer {
                    Some(c) => c,
                    None => match self.require_session(&req, &host, &path, rid, client).await {
                        Ok(s) => Caller::Session(s),
                        Err(resp) => return resp,
                    },
                };
                log.set_user(&caller.identity().sub);
                if policy::evaluate(&route, caller.identity()) == Decision::Deny {
                    tracing::info!(request_id = %rid, event = "not_authorized", route = %route.label(), "policy denied");
                    return self.page(
                        StatusCode::FORBIDDEN,
                        "not_authorized",
                        "You are signed in, but not allowed to use this service.",
                        rid,
                        client,
                    );
                }
                Some(caller)
            }
        };

        // Phases 5 and 6: upstream request filter and forward.
        self.forward(
            req,
            conn,
            &host,
            &route,
            &path,
            identity.as_ref(),
            rid,
            client,
        )
        .await
    }

    /// Phase 5 + 6.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
        host: &RequestHost,
        route: &RouteConfig,
        path: &str,
        caller: Option<&Caller>,
        rid: &str,
        client: Client,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let client_upgrade = parts.extensions.remove::<OnUpgrade>();
        let headers = &mut parts.headers;
        // Strip before adding: a client's `Connection: X-Forwarded-For` only removes its own copy.
        // Only an HTTP/1.1 `Upgrade: websocket` survives; every other upgrade (h2c…) is dropped.
        let websocket =
            hop::strip_hop_by_hop(headers).is_some() && parts.version == http::Version::HTTP_11;
        self.scrubber.scrub(headers);
        let trust = if self
            .cfg
            .server
            .trusted_proxies
            .iter()
            .any(|c| c.contains(conn.peer.ip()))
        {
            PeerTrust::Trusted
        } else {
            PeerTrust::Untrusted
        };
        forwarded::apply(headers, conn.peer.ip(), trust, "http", &host.raw);
        strip_own_cookies(
            headers,
            self.session_cookies.name(),
            self.login_cookies.prefix(),
        );
        if let Some(c) = caller {
            self.inject_identity(headers, c, rid);
        }
        let upstream_host = if route.preserve_host {
            HeaderValue::from_str(&host.raw).ok()
        } else {
            self.upstream_hosts.get(route.index).cloned().flatten()
        };
        let origin_form = proxy::pooled(&route.upstream, websocket);
        let uri = match proxy::upstream_uri(&route.upstream, path, parts.uri.query(), origin_form) {
            Ok(u) => u,
            Err(_) => {
                return self.bad_request("bad_request", "Invalid request.", rid, client);
            }
        };
        parts.uri = uri;
        // Request trailers never reach the upstream (SECURITY HDR-05): identity scrubbing
        // would otherwise have to cover a second header section.
        // (A body that is already over — every GET — is replaced without an allocation.)
        let body: Body = if hyper::body::Body::is_end_stream(&body) {
            crate::http::body::empty()
        } else {
            body.map_frame(|f: Frame<Bytes>| {
                if f.is_trailers() {
                    Frame::data(Bytes::new())
                } else {
                    f
                }
            })
            .map_err(|e| Box::new(e) as BoxError)
            .boxed()
        };
        let req = Request::from_parts(parts, body);
        let own = |name: &str| self.is_own_cookie(name);
        let target = proxy::Target {
            clients: self.clients(),
            route: route.index,
            upstream: &route.upstream,
        };
        match proxy::send(
            target,
            req,
            upstream_host,
            self.cfg.server.request_timeout,
            own,
            websocket,
        )
        .await
        {
            Ok(up) => {
                if let (Some(upstream), Some(client_side)) = (up.upgraded, client_upgrade) {
                    tracing::info!(request_id = %rid, event = "websocket_opened", route = %route.label(), "tunnel open");
                    self.tunnels.spawn(
                        client_side,
                        upstream,
                        caller.and_then(Caller::session_id),
                        caller.and_then(Caller::expires_at),
                    );
                }
                up.response
            }
            // A stalled client body is the client's fault, logged by the body wrapper.
            Err(e @ proxy::ProxyError::ClientBodyTimeout(_)) => {
                self.page(e.status(), e.reason(), e.message(), rid, client)
            }
            Err(e) => {
                tracing::error!(request_id = %rid, event = "upstream_error", reason = e.reason(), route = %route.label(), "upstream failed");
                self.page(e.status(), e.reason(), e.message(), rid, client)
            }
        }
    }

    /// A protected route without a bearer: the session, or the answer for a request without
    /// one (302 to the IdP for browser navigations, 401 JSON otherwise; an invalid cookie is
    /// cleared).
    async fn require_session(
        &self,
        req: &Request<Incoming>,
        host: &RequestHost,
        path: &str,
        rid: &str,
        client: Client,
    ) -> Result<Arc<Session>, Response<Body>> {
        let (session, clear) = self.session(req.headers()).await;
        if let Some(session) = session {
            return Ok(session);
        }
        let mut resp = if client == Client::Browser {
            self.login_redirect(req, host, path, rid)
        } else {
            pages::unauthenticated_json()
        };
        if clear {
            resp.headers_mut()
                .append(SET_COOKIE, self.session_cookies.clear_cookie());
        }
        Err(resp)
    }

    /// Sets the configured identity headers from the caller (after scrubbing). For a bearer
    /// caller the access-token header carries the bearer token and `Authorization` is left
    /// exactly as the client sent it.
    fn inject_identity(&self, headers: &mut HeaderMap, caller: &Caller, rid: &str) {
        match caller {
            Caller::Session(s) => self.identity_headers(headers, s, rid, true),
            Caller::Bearer(id) => {
                let token = match auth::bearer::credential(headers) {
                    auth::bearer::Credential::Bearer(t) => HeaderValue::from_str(t).ok(),
                    _ => None,
                };
                self.identity_claim_headers(headers, id, rid);
                if let (Some(name), Some(v)) = (&self.cfg.headers.access_token, token) {
                    headers.insert(name.clone(), v);
                }
            }
        }
    }

    /// Writes the configured `[headers]` for session `s` into `headers`: upstream requests
    /// and `/oauth2/auth` answers share this one encoding. `tokens: false` leaves out
    /// `headers.access_token` and the `Authorization: Bearer <id_token>` header.
    pub(crate) fn identity_headers(
        &self,
        headers: &mut HeaderMap,
        s: &Session,
        rid: &str,
        tokens: bool,
    ) {
        self.identity_claim_headers(headers, &s.identity, rid);
        let h = &self.cfg.headers;
        if let Some(name) = &h.access_token
            && tokens
            && let Ok(mut v) = HeaderValue::from_str(s.access_token.expose())
        {
            v.set_sensitive(true);
            headers.insert(name.clone(), v);
        }
        if h.authorization_bearer_id_token
            && tokens
            && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", s.id_token.expose()))
        {
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
    }

    /// The identity part of `[headers]` (user, email, preferred username, groups,
    /// `[headers.claims]`), shared by sessions and bearer tokens.
    fn identity_claim_headers(&self, headers: &mut HeaderMap, id: &Identity, rid: &str) {
        let h = &self.cfg.headers;
        let mut set = |name: &Option<http::HeaderName>, value: Option<&str>, what: &str| {
            if let (Some(name), Some(v)) = (name, value) {
                match claim_header_value(v) {
                    Some(v) => {
                        headers.insert(name.clone(), v);
                    }
                    None => {
                        tracing::warn!(request_id = %rid, event = "claim_value_skipped", claim = what, "claim not representable as a header")
                    }
                }
            }
        };
        set(&h.user, Some(&id.sub), "sub");
        set(&h.email, id.email.as_deref(), "email");
        set(
            &h.preferred_username,
            id.preferred_username.as_deref(),
            "preferred_username",
        );
        if let Some(name) = &h.groups {
            let g = groups_header_value(&id.groups);
            if g.skipped > 0 || g.truncated {
                tracing::warn!(request_id = %rid, event = "groups_header_trimmed", skipped = g.skipped, truncated = g.truncated, "some group names left out of the header");
            }
            if let Some(v) = g.value {
                headers.insert(name.clone(), v);
            }
        }
        for (name, claim) in &h.claims {
            let value = match id.claims.get(claim) {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
                _ => None,
            };
            if let Some(v) = value {
                match claim_header_value(&v) {
                    Some(v) => {
                        headers.insert(name.clone(), v);
                    }
                    None => {
                        tracing::warn!(request_id = %rid, event = "claim_value_skipped", claim = %claim, "claim not representable as a header")
                    }
                }
            }
        }
    }

    /// The session of this request, and whether its cookie should be cleared (present but
    /// invalid, unknown or expired).
    pub(crate) async fn session(&self, headers: &HeaderMap) -> (Option<Arc<Session>>, bool) {
        match self.session_cookies.open(headers) {
            Ok(id) => match self.store.get(&id).await {
                Some(s) => (Some(s), false),
                None => {
                    tracing::info!(
                        event = "session_invalid",
                        reason = "unknown_or_expired",
                        "no session for cookie"
                    );
                    (None, true)
                }
            },
            Err(NoSession::Absent) => (None, false),
            Err(NoSession::Ambiguous) => {
                tracing::info!(
                    event = "session_invalid",
                    reason = "ambiguous",
                    "several session cookies"
                );
                (None, true)
            }
            Err(NoSession::Invalid) => {
                tracing::info!(
                    event = "session_invalid",
                    reason = "tampered",
                    "session cookie did not open"
                );
                (None, true)
            }
        }
    }

    /// The unauthenticated browser's way to the IdP. On the public host the login starts
    /// here (the login cookie lands where the callback will read it); on another route host
    /// the browser first goes to `/oauth2/start` on the public origin.
    fn login_redirect(
        &self,
        req: &Request<Incoming>,
        host: &RequestHost,
        path: &str,
        rid: &str,
    ) -> Response<Body> {
        let mut target = path.to_string();
        if let Some(q) = req.uri().query() {
            target.push('?');
            target.push_str(q);
        }
        let public = &self.cfg.server.public_url;
        let on_public_host = host.host == public.host
            && host.port.unwrap_or(public.effective_port()) == public.effective_port();
        if on_public_host {
            let rd = self
                .redirects
                .validate(&target)
                .unwrap_or_else(|| "/".into());
            return self.start_login(rd, req.headers(), rid, Client::Browser);
        }
        let scheme = if public.https { "https" } else { "http" };
        let absolute = format!("{scheme}://{}{target}", host.host);
        let rd = self
            .redirects
            .validate(&absolute)
            .unwrap_or_else(|| "/".into());
        let location = format!(
            "{}/oauth2/start?rd={}",
            self.public_origin,
            encode_query_value(&rd)
        );
        match HeaderValue::from_str(&location) {
            Ok(v) => pages::redirect(v),
            Err(_) => self.bad_request("bad_request", "Invalid request.", rid, Client::Browser),
        }
    }

    /// Begins a login: login cookie + 302 to the IdP's authorization endpoint.
    pub(crate) fn start_login(
        &self,
        rd: String,
        req_headers: &HeaderMap,
        rid: &str,
        client: Client,
    ) -> Response<Body> {
        let start = match self.provider.begin_login() {
            Ok(s) => s,
            Err(_) => return self.idp_not_ready(rid, client),
        };
        let state = LoginState {
            state: start.state.clone(),
            nonce: start.nonce.clone(),
            pkce_verifier: start.pkce_verifier.clone(),
            rd,
            issued_at: unix_now(),
        };
        let Ok(location) = HeaderValue::from_str(&start.authorize_url) else {
            return self.page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Login could not start.",
                rid,
                client,
            );
        };
        let mut resp = pages::redirect(location);
        for c in self.login_cookies.begin(&state, req_headers) {
            resp.headers_mut().append(SET_COOKIE, c);
        }
        resp
    }

    /// 503 while discovery has not loaded (or the IdP is down).
    pub(crate) fn idp_not_ready(&self, rid: &str, client: Client) -> Response<Body> {
        let mut resp = self.page(
            StatusCode::SERVICE_UNAVAILABLE,
            "idp_unavailable",
            "The identity provider cannot be reached right now. Please try again shortly.",
            rid,
            client,
        );
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        resp
    }

    /// A 400 page for this client kind.
    pub(crate) fn bad_request(
        &self,
        code: &str,
        message: &str,
        rid: &str,
        client: Client,
    ) -> Response<Body> {
        self.page(StatusCode::BAD_REQUEST, code, message, rid, client)
    }

    /// A page for this client kind.
    pub(crate) fn page(
        &self,
        status: StatusCode,
        code: &str,
        message: &str,
        rid: &str,
        client: Client,
    ) -> Response<Body> {
        Page {
            status,
            code,
            message,
            link: None,
            request_id: rid,
        }
        .render(client)
    }

    /// Whether `host` is the public host or a configured route host.
    fn serves_host(&self, host: &str) -> bool {
        host == self.cfg.server.public_url.host
            || self.routes.routes().iter().any(|r| {
                r.host
                    .as_ref()
                    .is_none_or(|p| crate::route::host_matches(p, host))
            })
    }

    /// The proxy's own cookie names (session cookie, login cookies).
    pub(crate) fn is_own_cookie(&self, name: &str) -> bool {
        name == self.session_cookies.name() || name.starts_with(self.login_cookies.prefix())
    }
}

/// Who a request on a protected route is: a session, or a verified bearer token.
pub(crate) enum Caller {
    Session(Arc<Session>),
    Bearer(Box<Identity>),
}

impl Caller {
    /// The session id, for tying a WebSocket tunnel to the session (a bearer caller has none:
    /// its tunnel ends with the connection or at shutdown).
    pub(crate) fn session_id(&self) -> Option<crate::session::SessionId> {
        match self {
            Caller::Session(s) => Some(s.id.clone()),
            Caller::Bearer(_) => None,
        }
    }

    /// When the credential stops being valid: the session's absolute lifetime, or a bearer
    /// token's `exp` plus the leeway its verification allowed (`None`: no `exp` claim, which
    /// bearer verification refuses anyway).
    pub(crate) fn expires_at(&self) -> Option<std::time::SystemTime> {
        match self {
            Caller::Session(s) => Some(s.expires_at),
            Caller::Bearer(id) => id
                .claims
                .get("exp")
                .and_then(serde_json::Value::as_f64)
                .filter(|exp| exp.is_finite() && (0.0..1e12).contains(exp))
                .map(|exp| {
                    std::time::UNIX_EPOCH
                        + std::time::Duration::from_secs_f64(exp)
                        + crate::oidc::verify::LEEWAY
                }),
        }
    }

    /// The identity policy and identity headers use.
    pub(crate) fn identity(&self) -> &Identity {
        match self {
            Caller::Session(s) => &s.identity,
            Caller::Bearer(id) => id,
        }
    }
}

/// Browser navigation or API client (SPEC: unauthenticated browsers get a 302, others 401).
pub(crate) fn client_kind(method: &Method, headers: &HeaderMap) -> Client {
    if browser::is_browser_navigation(method, headers) {
        Client::Browser
    } else {
        Client::Api
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_cors_preflight(req: &Request<Incoming>) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(http::header::ORIGIN)
        && req
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters stay).
pub(crate) fn encode_query_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Correlation ids: a per-process random prefix and a counter (no allocation of randomness
/// per request).
struct RequestIds {
    prefix: u32,
    counter: AtomicU64,
}

/// A request id, `<8 hex digits of a per-process random prefix>-<hex counter>`, formatted
/// on the stack.
pub(crate) struct RequestId {
    buf: [u8; 25],
    len: usize,
}

impl RequestId {
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII hex digits and '-' are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("-")
    }
}

impl RequestIds {
    fn new() -> Self {
        let mut b = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        RequestIds {
            prefix: u32::from_be_bytes(b),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = RequestId {
            buf: [0; 25],
            len: 0,
        };
        for i in 0..8 {
            id.buf[i] = HEX[((self.prefix >> (28 - 4 * i)) & 0xf) as usize];
        }
        id.buf[8] = b'-';
        let digits = ((64 - n.leading_zeros() as usize).div_ceil(4)).max(1);
        for i in 0..digits {
            id.buf[9 + i] = HEX[((n >> (4 * (digits - 1 - i))) & 0xf) as usize];
        }
        id.len = 9 + digits;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_match_the_formatted_prefix_and_counter() {
        let ids = RequestIds::new();
        for n in [
            0u64,
            1,
            15,
            16,
            255,
            4096,
            u64::from(u32::MAX) + 7,
            u64::MAX,
        ] {
            ids.counter.store(n, Ordering::Relaxed);
            let id = ids.next();
            assert_eq!(id.as_str(), format!("{:08x}-{:x}", ids.prefix, n));
        }
    }
}
