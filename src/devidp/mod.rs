//! A small, real OpenID Provider over HTTP for development and tests: the provider behind
//! `portcullis demo` and the integration tests of the proxy. **Not for production**: any
//! username logs in, and RS256 uses committed, public fixture keys.
//!
//! It implements the authorization code flow of OpenID Connect Core 1.0 §3.1 with mandatory
//! PKCE S256 (RFC 7636), client authentication by `client_secret_basic` / `client_secret_post`
//! (RFC 6749 §2.3.1), single-use codes (RFC 6749 §4.1.2), refresh tokens (RFC 6749 §6), the
//! `iss` authorization response parameter (RFC 9207), UserInfo (OIDC Core §5.3), Discovery
//! (OIDC Discovery 1.0 §3–4), a JWKS (RFC 7517) and RP-Initiated Logout 1.0.
//!
//! For security tests it misbehaves on demand: a [`TokenHook`] may rewrite the JOSE header and
//! claims of every ID token and choose how it is signed ([`Signing`]); the token endpoint and
//! UserInfo can be given canned answers; any endpoint can be delayed; keys can be rotated; and
//! requests are counted per endpoint.
//!
//! Endpoints: `/.well-known/openid-configuration`, `/jwks`, `/authorize` (GET form, POST login),
//! `/token`, `/userinfo`, `/end_session`. See `endpoints.rs` for the protocol rules.

mod endpoints;
pub mod jwt;
pub mod keys;
pub mod pages;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use self::jwt::{JwtError, mint_jwt, mint_jwt_hs256, mint_jwt_unsigned};
pub use self::keys::{KeyAlg, KeyError, SigningKey};

/// How long shutdown waits for in-flight requests before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Start-up options of the development provider.
#[derive(Clone)]
pub struct DevIdpOptions {
    /// Listen address; tests use `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// The one registered client.
    pub client_id: String,
    /// Its secret (never logged or printed by `Debug`).
    pub client_secret: String,
    /// Registered redirect URIs, matched exactly at `/authorize` and `/token`; empty accepts any
    /// `http(s)` loopback URI without a fragment.
    pub redirect_uris: Vec<String>,
    /// Registered post-logout redirect URIs, matched exactly; empty accepts any loopback URI.
    pub post_logout_redirect_uris: Vec<String>,
    /// The ID token signing algorithm.
    pub key_alg: KeyAlg,
    /// `Some`: `/authorize` logs this user in at once (302 back, no form).
    pub auto_login: Option<DevUser>,
    /// Lifetime of authorization codes.
    pub code_ttl: Duration,
    /// Lifetime of access and ID tokens.
    pub token_ttl: Duration,
    /// The issuer identifier to publish instead of `http://<bound address>` (no trailing
    /// slash), e.g. an `https://` URL when a TLS-terminating front forwards to this provider.
    /// Its endpoints are `{issuer}/…`.
    pub issuer: Option<String>,
}

impl Default for DevIdpOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            client_id: "portcullis".to_owned(),
            client_secret: "dev-secret".to_owned(),
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            key_alg: KeyAlg::Es256,
            auto_login: None,
            code_ttl: Duration::from_secs(60),
            token_ttl: Duration::from_secs(3600),
            issuer: None,
        }
    }
}

impl fmt::Debug for DevIdpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIdpOptions")
            .field("bind", &self.bind)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .field("key_alg", &self.key_alg)
            .field("auto_login", &self.auto_login)
            .field("code_ttl", &self.code_ttl)
            .field("token_ttl", &self.token_ttl)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// A user the provider logs in; its claims go into ID tokens and UserInfo.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DevUser {
    /// Subject identifier.
    pub sub: String,
    /// `email` claim.
    pub email: Option<String>,
    /// `email_verified` claim.
    pub email_verified: Option<bool>,
    /// `name` claim.
    pub name: Option<String>,
    /// `preferred_username` claim.
    pub preferred_username: Option<String>,
    /// `groups` claim (omitted when `None`).
    pub groups: Option<Vec<String>>,
    /// Further claims; they never replace a standard claim the provider sets.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl DevUser {
    /// A user whose `sub` and `preferred_username` are `username`, with a verified
    /// `username@example.com`, a capitalised `name`, and `groups` `[]` — or `["admins"]` when
    /// the username starts with `admin`.
    pub fn named(username: &str) -> Self {
        let mut chars = username.chars();
        let name = match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => String::new(),
        };
        let groups = if username.starts_with("admin") {
            vec!["admins".to_owned()]
        } else {
            Vec::new()
        };
        Self {
            sub: username.to_owned(),
            email: Some(format!("{username}@example.com")),
            email_verified: Some(true),
            name: Some(name),
            preferred_username: Some(username.to_owned()),
            groups: Some(groups),
            extra: serde_json::Map::new(),
        }
    }
}

/// How the next ID tokens are signed (for security tests).
#[derive(Clone)]
pub enum Signing {
    /// With the current key, using the (possibly rewritten) header as is.
    Normal,
    /// A valid-looking signature by a key not in the JWKS, header `kid` unchanged.
    WrongKey,
    /// Signed by a key not in the JWKS, header `kid` set to a fresh, unknown value.
    UnknownKid,
    /// Header `alg` set to `none`, empty signature.
    None,
    /// Header `alg` set to `HS256`, HMAC-SHA256 keyed with these bytes (e.g. the client secret).
    Hmac(Vec<u8>),
    /// This string is returned verbatim as the `id_token`.
    Raw(String),
}

impl fmt::Debug for Signing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signing::Normal => f.write_str("Normal"),
            Signing::WrongKey => f.write_str("WrongKey"),
            Signing::UnknownKid => f.write_str("UnknownKid"),
            Signing::None => f.write_str("None"),
            Signing::Hmac(_) => f.write_str("Hmac([redacted])"),
            Signing::Raw(s) => f.debug_tuple("Raw").field(s).finish(),
        }
    }
}

/// Rewrites the JOSE header and claims of each ID token minted (token endpoint and refresh)
/// and chooses how it is signed.
pub type TokenHook =
    Arc<dyn Fn(&mut serde_json::Value, &mut serde_json::Value) -> Signing + Send + Sync>;

/// The provider's endpoints (for delays and counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/.well-known/openid-configuration`
    Discovery,
    /// `/jwks`
    Jwks,
    /// `/authorize` (GET and POST)
    Authorize,
    /// `/token`
    Token,
    /// `/userinfo`
    Userinfo,
    /// `/end_session`
    EndSession,
}

impl Endpoint {
    fn index(self) -> usize {
        self as usize
    }
}

/// Requests seen per endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Discovery document fetches.
    pub discovery: u64,
    /// JWKS fetches.
    pub jwks: u64,
    /// `/authorize` requests (GET and POST).
    pub authorize: u64,
    /// `/token` requests.
    pub token: u64,
    /// `/userinfo` requests.
    pub userinfo: u64,
    /// `/end_session` requests.
    pub end_session: u64,
}

impl Counts {
    fn bump(&mut self, endpoint: Endpoint) {
        let slot = match endpoint {
            Endpoint::Discovery => &mut self.discovery,
            Endpoint::Jwks => &mut self.jwks,
            Endpoint::Authorize => &mut self.authorize,
            Endpoint::Token => &mut self.token,
            Endpoint::Userinfo => &mut self.userinfo,
            Endpoint::EndSession => &mut self.end_session,
        };
        *slot += 1;
    }
}

/// How the client authenticated at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client credentials.
    None,
    /// `Authorization: Basic` (client_secret_basic).
    Basic,
    /// `client_id` + `client_secret` form fields (client_secret_post).
    Post,
    /// Both at once (refused, RFC 6749 §2.3).
    Both,
}

/// The last request the token endpoint saw.
#[derive(Clone)]
pub struct TokenRequestSeen {
    /// Form fields in order, as decoded.
    pub fields: Vec<(String, String)>,
    /// Which client authentication method was used.
    pub auth: ClientAuth,
    /// The client id from the Basic header or the form.
    pub client_id: Option<String>,
}

impl TokenRequestSeen {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for TokenRequestSeen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<(&str, &str)> = self
            .fields
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if k == "client_secret" {
                        "[redacted]"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("TokenRequestSeen")
            .field("fields", &fields)
            .field("auth", &self.auth)
            .field("client_id", &self.client_id)
            .finish()
    }
}

// === shared provider state ===

/// A grant of one login: what codes, tokens and refreshes carry.
#[derive(Clone)]
struct Grant {
    user: Arc<DevUser>,
    scope: String,
    sid: String,
    auth_time: u64,
    /// Identifies every token from one code exchange, for revocation on code reuse.
    grant_id: String,
}

struct CodeGrant {
    grant: Grant,
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    expires: tokio::time::Instant,
}

struct AccessGrant {
    grant: Grant,
    expires: tokio::time::Instant,
}

/// The signing keys: `current` signs, `published` is the JWKS, `rogue` is never published.
struct KeyRing {
    current: Arc<SigningKey>,
    published: Vec<Arc<SigningKey>>,
    rogue: Arc<SigningKey>,
    generation: usize,
}

struct State {
    auto_login: Option<DevUser>,
    hook: Option<TokenHook>,
    userinfo_override: Option<(u16, String, String)>,
    token_error: Option<(u16, String)>,
    delays: [Duration; 6],
    keys: KeyRing,
    codes: HashMap<String, CodeGrant>,
    /// Redeemed codes → (grant id, forget after), to detect and punish reuse.
    used_codes: HashMap<String, (String, tokio::time::Instant)>,
    access_tokens: HashMap<String, AccessGrant>,
    refresh_tokens: HashMap<String, Grant>,
    /// SHA-256 of every ID token issued → its `sid`, to recognise `id_token_hint`.
    id_tokens: HashMap<Vec<u8>, String>,
    counts: Counts,
    last_token_request: Option<TokenRequestSeen>,
}

/// Everything the request handlers need.
struct Shared {
    issuer: String,
    client_id: String,
    client_secret: String,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
    key_alg: KeyAlg,
    code_ttl: Duration,
    token_ttl: Duration,
    rng: SystemRandom,
    stop: watch::Receiver<bool>,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters for a development provider; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// 256 random bits, base64url: codes, tokens, session ids.
    fn random_token(&self) -> String {
        let mut buf = [0u8; 32];
        // SystemRandom only fails if the OS RNG is unavailable, which `start` already checked.
        let _ = self.rng.fill(&mut buf);
        jwt::b64url(buf)
    }
}

// === impl DevIdp ===

struct Handle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A running development provider. Cheap to clone; dropping the last clone stops the server
/// in the background, [`DevIdp::shutdown`] stops it and waits.
#[derive(Clone)]
pub struct DevIdp {
    inner: Arc<Handle>,
}

impl fmt::Debug for DevIdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIdp")
            .field("issuer", &self.inner.shared.issuer)
            .finish_non_exhaustive()
    }
}

impl DevIdp {
    /// Binds `opts.bind`, generates or loads the signing key and starts serving.
    pub async fn start(opts: DevIdpOptions) -> std::io::Result<DevIdp> {
        let rng = SystemRandom::new();
        let mut probe = [0u8; 1];
        rng.fill(&mut probe)
            .map_err(|_| std::io::Error::other("system random number generator unavailable"))?;

        let listener = TcpListener::bind(opts.bind).await?;
        let addr = listener.local_addr()?;
        let issuer = match opts.issuer {
            Some(issuer) => issuer.trim_end_matches('/').to_owned(),
            None => issuer_for(addr),
        };
        let (stop_tx, stop_rx) = watch::channel(false);

        let key_err = |e: KeyError| std::io::Error::other(format!("devidp signing key: {e}"));
        let first = Arc::new(
            SigningKey::new(opts.key_alg, 0, new_kid(&rng, opts.key_alg, 1)).map_err(key_err)?,
        );
        let rogue = Arc::new(SigningKey::rogue(opts.key_alg, "dev-rogue").map_err(key_err)?);
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            client_id: opts.client_id,
            client_secret: opts.client_secret,
            redirect_uris: opts.redirect_uris,
            post_logout_redirect_uris: opts.post_logout_redirect_uris,
            key_alg: opts.key_alg,
            code_ttl: opts.code_ttl,
            token_ttl: opts.token_ttl,
            rng,
            stop: stop_rx.clone(),
            state: Mutex::new(State {
                auto_login: opts.auto_login,
                hook: None,
                userinfo_override: None,
                token_error: None,
                delays: [Duration::ZERO; 6],
                keys: KeyRing {
                    current: first.clone(),
                    published: vec![first],
                    rogue,
                    generation: 1,
                },
                codes: HashMap::new(),
                used_codes: HashMap::new(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                id_tokens: HashMap::new(),
                counts: Counts::default(),
                last_token_request: None,
            }),
        });

        let task = tokio::spawn(serve(listener, shared.clone(), stop_rx));
        tracing::warn!(
            %issuer,
            "development OpenID provider started: any username logs in; not for production"
        );
        Ok(DevIdp {
            inner: Arc::new(Handle {
                shared,
                addr,
                stop: stop_tx,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` (no trailing slash) unless
    /// [`DevIdpOptions::issuer`] named another.
    pub fn issuer(&self) -> String {
        self.inner.shared.issuer.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Logs `user` in at once on every `/authorize` (`None`: show the login form).
    pub fn set_auto_login(&self, user: Option<DevUser>) {
        self.inner.shared.lock().auto_login = user;
    }

    /// Applies `hook` to every ID token minted from now on.
    pub fn set_token_hook(&self, hook: Option<TokenHook>) {
        self.inner.shared.lock().hook = hook;
    }

    /// Answers every `/userinfo` request with (status, content type, body).
    pub fn set_userinfo_override(&self, body: Option<(u16, String, String)>) {
        self.inner.shared.lock().userinfo_override = body;
    }

    /// Answers every `/token` request with (status, JSON body), e.g.
    /// `(400, r#"{"error":"invalid_grant"}"#)`.
    pub fn set_token_error(&self, err: Option<(u16, String)>) {
        self.inner.shared.lock().token_error = err;
    }

    /// Delays every response of `endpoint` by `delay` (`Duration::ZERO` clears it).
    pub fn set_delay(&self, endpoint: Endpoint, delay: Duration) {
        self.inner.shared.lock().delays[endpoint.index()] = delay;
    }

    /// Switches to a new signing key with a new `kid`. The JWKS then serves the new key, plus
    /// the previously published ones when `keep_old`. RS256 cycles through the fixture keys.
    pub fn rotate_key(&self, keep_old: bool) {
        let shared = &self.inner.shared;
        let generation = shared.lock().keys.generation + 1;
        let kid = new_kid(&shared.rng, shared.key_alg, generation);
        // Fixture indexes are 0-based: generation 1 used fixture 0.
        let key = match SigningKey::new(shared.key_alg, generation - 1, kid) {
            Ok(key) => Arc::new(key),
            Err(e) => {
                tracing::error!(error = %e, "devidp key rotation failed; keeping the current key");
                return;
            }
        };
        let mut st = shared.lock();
        let ring = &mut st.keys;
        if !keep_old {
            ring.published.clear();
        }
        ring.published.insert(0, key.clone());
        ring.current = key;
        ring.generation = generation;
    }

    /// The key that currently signs ID tokens (for tests minting their own tokens).
    pub fn current_key(&self) -> Arc<SigningKey> {
        self.inner.shared.lock().keys.current.clone()
    }

    /// Requests seen per endpoint.
    pub fn counts(&self) -> Counts {
        self.inner.shared.lock().counts
    }

    /// The form fields and client authentication of the last `/token` request.
    pub fn last_token_request(&self) -> Option<TokenRequestSeen> {
        self.inner.shared.lock().last_token_request.clone()
    }

    /// Stops accepting connections, lets in-flight requests finish (bounded) and ends every
    /// task of the provider.
    pub async fn shutdown(self) {
        let _ = self.inner.stop.send(true);
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Resolves once shutdown was requested or every handle is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it right here.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// A fresh key id: `dev-<alg>-<generation>-<8 random hex digits>`, unique across restarts.
fn new_kid(rng: &SystemRandom, alg: KeyAlg, generation: usize) -> String {
    let mut buf = [0u8; 4];
    let _ = rng.fill(&mut buf);
    let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "dev-{}-{generation}-{hex}",
        alg.as_str().to_ascii_lowercase()
    )
}

/// `http://HOST:PORT` for the bound address; an unspecified address maps to loopback.
fn issuer_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The accept loop: every connection is watched for graceful shutdown and owned by a JoinSet.
async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::debug!(error = %e, "devidp accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let shared = shared.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(endpoints::handle(&shared, req).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(tcp), svc);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(error = %e, %peer, "devidp connection ended with an error");
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            // A send of `true` or the last handle dropping the sender: stop either way.
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    conns.shutdown().await;
}
