//! The relying-party side of portcullis: discovery, the authorization request, the code
//! exchange, ID-token verification and userinfo completion, against one OpenID provider.
//!
//! - **Discovery** (OpenID Connect Discovery 1.0 §4): `{issuer}/.well-known/openid-configuration`,
//!   parsed with openidconnect's `ProviderMetadata` plus the two extra fields we use
//!   (`end_session_endpoint`, RP-Initiated Logout 1.0 §2.1; and
//!   `authorization_response_iss_parameter_supported`, RFC 9207 §3). The document's `issuer`
//!   must equal the configured issuer exactly (§4.3); every endpoint must be `https` unless the
//!   issuer itself is `http` on a loopback address (development IdPs), and may not name a
//!   link-local or unspecified IP; `none`/HMAC-only algorithm lists are refused. Metadata and
//!   keys are swapped in only together and only when both are good: the last good copy stays.
//!   [`Provider::spawn_discovery`] retries with exponential backoff until loaded.
//! - **Authorization request** (Core §3.1.2.1, RFC 7636, RFC 9700 §2.1.1): `response_type=code`,
//!   fresh 256-bit `state` and `nonce`, PKCE `S256` always; the operator's `extra_auth_params`
//!   never replace a parameter we set.
//! - **Token request** (Core §3.1.3.1, RFC 6749 §4.1.3 and §2.3.1): `client_secret_basic` with
//!   form-urlencoded id and secret, sent once (no retry of the POST).
//! - **ID token** (Core §3.1.3.7): see [`verify`]; keys from [`jwks`].
//! - **Bearer JWTs** of API clients (`bearer_audiences`): see [`bearer`]; same keys and
//!   re-fetch throttle as ID tokens.
//! - **Userinfo** (Core §5.3): only when the ID token lacks `email`, `preferred_username` or the
//!   groups claim. The response must be a JSON object (`application/json`; signed userinfo is
//!   not supported) whose `sub` equals the ID token's (§5.3.2). **Precedence: the ID token wins**
//!   — userinfo only fills claims the ID token does not have.

pub mod bearer;
pub mod http;
pub mod jwks;
pub mod verify;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, AsyncHttpClient, ProviderMetadata};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{OidcConfig, Secret};
use crate::identity::{Groups, Identity};

pub use self::bearer::BearerError;
pub use self::http::{IdpHttp, IdpHttpError};
pub use self::jwks::{JwksCache, JwksError};
pub use self::verify::TokenError;

/// Discovery fields beyond openidconnect's core metadata. Kept as raw JSON so an odd value
/// there cannot make the whole document unusable.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct ExtraMetadata {
    #[serde(default)]
    end_session_endpoint: Option<Value>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: Option<Value>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What discovery established (validated).
#[derive(Debug)]
struct Discovered {
    authorization_endpoint: Url,
    token_endpoint: Url,
    userinfo_endpoint: Option<Url>,
    end_session_endpoint: Option<Url>,
    /// Advertised `id_token_signing_alg_values_supported` minus `none` and HMAC (RS256 if
    /// nothing was advertised).
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    /// RFC 9207: the IdP promises `iss` in every authorization response.
    iss_parameter_supported: bool,
}

/// Why a discovery attempt failed. Messages name the problem, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("the configured issuer `{0}` is not an https URL (http only on loopback)")]
    InvalidIssuer(String),
    #[error("fetching the discovery document failed")]
    Http(#[from] IdpHttpError),
    #[error("the discovery endpoint answered status {0}")]
    Status(u16),
    #[error("the discovery document is not JSON (content type {0:?})")]
    ContentType(String),
    #[error("the discovery document is invalid: {0}")]
    Invalid(String),
    #[error("the discovery document names issuer `{found}`, expected exactly `{expected}`")]
    IssuerMismatch { expected: String, found: String },
    #[error("the discovery document has no {0}")]
    MissingEndpoint(&'static str),
    #[error(
        "{name} `{url}` is not allowed (https required; no link-local or unspecified addresses)"
    )]
    InsecureEndpoint { name: &'static str, url: String },
    #[error(
        "the issuer advertises no usable ID token signing algorithm (none and HMAC are refused)"
    )]
    NoUsableAlgorithm,
    #[error("loading the issuer's keys failed")]
    Jwks(#[from] JwksError),
}

/// Discovery has not completed yet: logins cannot start (answer 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the identity provider is not ready (discovery pending)")]
pub struct NotReady;

/// Which IdP endpoint answered badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    Userinfo,
}

/// Why a login could not be completed. Messages never contain a token, code, verifier,
/// nonce or secret; an IdP error code is kept only if it is a plain `[a-z_]` word.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The ID token failed verification.
    #[error("ID token rejected: {0}")]
    Token(#[from] TokenError),
    /// The token endpoint refused the code (expired, reused, PKCE mismatch): start again.
    #[error("the identity provider refused the authorization code (invalid_grant)")]
    InvalidGrant,
    /// The token endpoint refused our client credentials: a configuration problem.
    #[error("the identity provider refused the client credentials (invalid_client)")]
    InvalidClient,
    /// Another OAuth error from the token endpoint or the authorization response.
    #[error("the identity provider returned error `{code}`")]
    IdpError { code: String },
    /// Connection refused/reset, TLS failure, or a 5xx answer.
    #[error("the identity provider is unavailable")]
    Unavailable,
    /// No answer within the deadline.
    #[error("the identity provider timed out")]
    Timeout,
    /// An answer we cannot use (wrong type, missing fields, redirect, oversized).
    #[error("unusable response from the {endpoint:?} endpoint: {what}")]
    BadResponse {
        endpoint: Endpoint,
        what: &'static str,
    },
    /// Userinfo's `sub` differs from the ID token's.
    #[error("userinfo subject differs from the ID token subject")]
    UserinfoSubMismatch,
    /// RFC 9207 `iss` authorization-response parameter wrong or missing.
    #[error("authorization response issuer does not match")]
    AuthorizationIssMismatch,
    /// Discovery has not completed.
    #[error(transparent)]
    NotReady(#[from] NotReady),
}

/// Authorization-response `error` codes that mean the user (or the IdP's policy for them)
/// declined: answered 403.
const USER_DENIED: &[&str] = &[
    "access_denied",
    "login_required",
    "consent_required",
    "interaction_required",
    "account_selection_required",
];

impl LoginError {
    /// For an authorization response carrying `error=<code>` (RFC 6749 §4.1.2.1).
    pub fn from_authorization_error(code: &str) -> LoginError {
        LoginError::IdpError {
            code: sanitize_error_code(code),
        }
    }

    /// The reason word for logs and metrics (SECURITY.md §0.2).
    pub fn reason(&self) -> &'static str {
        match self {
            LoginError::Token(e) => e.reason(),
            LoginError::InvalidGrant => "invalid_grant",
            LoginError::InvalidClient => "invalid_client",
            LoginError::IdpError { .. } => "idp_error",
            LoginError::Unavailable | LoginError::NotReady(_) => "idp_unavailable",
            LoginError::Timeout => "idp_timeout",
            LoginError::BadResponse { .. } => "idp_bad_response",
            LoginError::UserinfoSubMismatch => "userinfo_sub_mismatch",
            LoginError::AuthorizationIssMismatch => "iss_mismatch",
        }
    }

    /// The HTTP status of the page shown for this failure.
    pub fn status(&self) -> u16 {
        match self {
            LoginError::Token(_) | LoginError::UserinfoSubMismatch => 401,
            LoginError::BadResponse {
                endpoint: Endpoint::Userinfo,
                ..
            } => 401,
            LoginError::InvalidGrant | LoginError::AuthorizationIssMismatch => 400,
            LoginError::InvalidClient => 502,
            LoginError::IdpError { code } if USER_DENIED.contains(&code.as_str()) => 403,
            LoginError::IdpError { code }
                if code == "server_error" || code == "temporarily_unavailable" =>
            {
                503
            }
            LoginError::IdpError { .. } => 502,
            LoginError::Unavailable
            | LoginError::Timeout
            | LoginError::NotReady(_)
            | LoginError::BadResponse {
                endpoint: Endpoint::Token,
                ..
            } => 503,
        }
    }
}

/// Keeps an IdP-supplied error code only if it is a short `[a-z_]` word (RFC 6749 §5.2 codes
/// are); anything else becomes `other`, so nothing attacker-shaped reaches logs or pages.
fn sanitize_error_code(code: &str) -> String {
    if !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        code.to_owned()
    } else {
        "other".to_owned()
    }
}

/// A login in progress: the authorization URL to redirect to and the secrets the login cookie
/// must keep (never put in a URL other than `authorize_url`, never logged).
pub struct LoginStart {
    pub authorize_url: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
}

impl std::fmt::Debug for LoginStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginStart")
            .field("authorize_url", &"[redacted]")
            .field("state", &"[redacted]")
            .field("nonce", &"[redacted]")
            .field("pkce_verifier", &"[redacted]")
            .finish()
    }
}

/// A completed login.
pub struct LoginOutcome {
    /// Verified ID-token claims, completed from userinfo.
    pub identity: Identity,
    pub id_token: Secret,
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// The ID token's `sid` (for back-channel logout), if any.
    pub sid: Option<String>,
    /// From the token response's `expires_in`.
    pub access_expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginOutcome")
            .field("sub", &self.identity.sub)
            .field("id_token", &self.id_token)
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("sid", &self.sid)
            .field("access_expires_at", &self.access_expires_at)
            .finish()
    }
}

/// One OpenID provider as seen by portcullis. `Send + Sync`; share it as `Arc<Provider>`.
pub struct Provider {
    issuer: String,
    client_id: String,
    client_secret: Secret,
    scopes: Vec<String>,
    groups_claim: String,
    extra_auth_params: Vec<(String, String)>,
    redirect_uri: String,
    http: IdpHttp,
    jwks: Arc<JwksCache>,
    discovered: RwLock<Option<Arc<Discovered>>>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

/// Parameters of the authorization request that only we set (RFC 6749 §3.1: each at most once).
const RESERVED_AUTH_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "request",
    "request_uri",
];

impl Provider {
    /// A provider for `cfg`, not yet discovered. `redirect_uri` is `public_url` +
    /// `callback_path` (never derived from a request).
    pub fn new(cfg: &OidcConfig, redirect_uri: String, http: IdpHttp) -> Arc<Provider> {
        Arc::new(Provider {
            issuer: cfg.issuer.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            scopes: cfg.scopes.clone(),
            groups_claim: cfg.groups_claim.clone(),
            extra_auth_params: cfg.extra_auth_params.clone(),
            redirect_uri,
            jwks: Arc::new(JwksCache::new(http.clone())),
            http,
            discovered: RwLock::new(None),
            rng: SystemRandom::new(),
        })
    }

    /// The configured (and, once ready, discovered) issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The configured client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The shared key cache (for a bearer-token verifier: same keys, same re-fetch throttle).
    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    /// The ID-token signing algorithms accepted (empty before discovery).
    pub fn allowed_algs(&self) -> Vec<CoreJwsSigningAlgorithm> {
        self.current()
            .map(|d| d.allowed_algs.clone())
            .unwrap_or_default()
    }

    /// Metadata and keys are loaded.
    pub fn is_ready(&self) -> bool {
        self.current().is_some() && self.jwks.is_loaded()
    }

    fn current(&self) -> Option<Arc<Discovered>> {
        self.discovered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn ready(&self) -> Result<Arc<Discovered>, NotReady> {
        match self.current() {
            Some(d) if self.jwks.is_loaded() => Ok(d),
            _ => Err(NotReady),
        }
    }

    /// One discovery attempt: the metadata document, then the JWKS. Both replace the previous
    /// copies only if both are valid.
    pub async fn discover(&self) -> Result<(), DiscoveryError> {
        let issuer_url = Url::parse(&self.issuer)
            .map_err(|_| DiscoveryError::InvalidIssuer(self.issuer.clone()))?;
        let dev_loopback = match issuer_url.scheme() {
            "https" => false,
            "http" if is_loopback(&issuer_url) => true,
            _ => return Err(DiscoveryError::InvalidIssuer(self.issuer.clone())),
        };
        // Discovery §4: remove a terminating `/` before appending the well-known path.
        let config_url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let request = ::http::Request::builder()
            .method(::http::Method::GET)
            .uri(config_url)
            .header(::http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|_| DiscoveryError::InvalidIssuer(self.issuer.clone()))?;
        let response = self.http.call(request).await?;
        if response.status() != ::http::StatusCode::OK {
            return Err(DiscoveryError::Status(response.status().as_u16()));
        }
        let ct = content_type(response.headers());
        if ct != "application/json" {
            return Err(DiscoveryError::ContentType(ct));
        }
        let mut doc = verify::parse_json_object(response.body()).map_err(|_| {
            DiscoveryError::Invalid("not a JSON object (or duplicate members)".into())
        })?;
        // Not advertised means RS256 (Discovery §3 default); openidconnect insists on the field.
        doc.entry("id_token_signing_alg_values_supported")
            .or_insert_with(|| Value::Array(Vec::new()));
        let meta: Metadata = serde_json::from_value(Value::Object(doc))
            .map_err(|e| DiscoveryError::Invalid(truncate(&e.to_string())))?;

        if meta.issuer().as_str() != self.issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: truncate(meta.issuer().as_str()),
            });
        }
        let check = |name: &'static str, url: &Url| check_endpoint(name, url, dev_loopback);
        let authorization_endpoint = check(
            "authorization_endpoint",
            meta.authorization_endpoint().url(),
        )?;
        let token_endpoint = meta
            .token_endpoint()
            .ok_or(DiscoveryError::MissingEndpoint("token_endpoint"))?;
        let token_endpoint = check("token_endpoint", token_endpoint.url())?;
        let jwks_uri = check("jwks_uri", meta.jwks_uri().url())?;
        let userinfo_endpoint = meta
            .userinfo_endpoint()
            .map(|u| check("userinfo_endpoint", u.url()))
            .transpose()?;
        let extra = meta.additional_metadata();
        let end_session_endpoint = match &extra.end_session_endpoint {
            Some(Value::String(s)) => {
                let url = Url::parse(s).map_err(|_| {
                    DiscoveryError::Invalid("end_session_endpoint is not a URL".into())
                })?;
                Some(check("end_session_endpoint", &url)?)
            }
            _ => None,
        };
        if jwks_uri.host_str() != issuer_url.host_str() {
            tracing::warn!(jwks_uri = %jwks_uri, "jwks_uri is on a different host than the issuer");
        }
        let advertised = meta.id_token_signing_alg_values_supported();
        let allowed_algs: Vec<_> = if advertised.is_empty() {
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        } else {
            advertised
                .iter()
                .filter(|a| verify::is_asymmetric(a))
                .cloned()
                .collect()
        };
        if allowed_algs.is_empty() {
            return Err(DiscoveryError::NoUsableAlgorithm);
        }
        let discovered = Discovered {
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            end_session_endpoint,
            allowed_algs,
            iss_parameter_supported: extra.authorization_response_iss_parameter_supported
                == Some(Value::Bool(true)),
        };

        self.jwks.load(jwks_uri).await?;
        *self
            .discovered
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(discovered));
        Ok(())
    }

    /// Runs discovery in the background until it succeeds or `cancel` fires: exponential
    /// backoff from 1 s, doubling, capped at 60 s, with up to 10 % jitter. Each failure is
    /// logged at WARN, the success at INFO.
    pub fn spawn_discovery(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let provider = Arc::clone(self);
        tokio::spawn(async move {
            let mut delay = Duration::from_secs(1);
            loop {
                let attempt = tokio::select! {
                    r = provider.discover() => r,
                    _ = cancel.cancelled() => return,
                };
                match attempt {
                    Ok(()) => {
                        tracing::info!(issuer = %provider.issuer, "OpenID provider discovered; keys loaded");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(issuer = %provider.issuer, error = %error_chain(&e), retry_in = ?delay, "OpenID provider discovery failed");
                    }
                }
                let jitter = delay.mul_f64(f64::from(provider.random_u8()) / 255.0 * 0.1);
                tokio::select! {
                    _ = tokio::time::sleep(delay + jitter) => {}
                    _ = cancel.cancelled() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        })
    }

    fn random_u8(&self) -> u8 {
        let mut b = [0u8; 1];
        let _ = self.rng.fill(&mut b);
        b[0]
    }

    /// 256 bits from the system CSPRNG, base64url (43 characters, RFC 7636 §4.1 alphabet).
    fn random_token(&self) -> Result<String, NotReady> {
        let mut bytes = [0u8; 32];
        // The OS RNG failing is not recoverable per request; refuse the login rather than panic.
        self.rng.fill(&mut bytes).map_err(|_| NotReady)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Builds the authorization request: `response_type=code`, the configured scopes,
    /// `client_id`, `redirect_uri`, fresh `state` and `nonce`, and a PKCE `S256` challenge
    /// (never `plain`, whatever discovery says), then `extra_auth_params` that do not collide
    /// with any of those.
    pub fn begin_login(&self) -> Result<LoginStart, NotReady> {
        let d = self.ready()?;
        let state = self.random_token()?;
        let nonce = self.random_token()?;
        let pkce_verifier = self.random_token()?;
        let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            pkce_verifier.as_bytes(),
        ));

        let mut url = d.authorization_endpoint.clone();
        let existing: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !RESERVED_AUTH_PARAMS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut q = url.query_pairs_mut();
            q.clear();
            q.extend_pairs(&existing);
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("scope", &self.scopes.join(" "))
                .append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            let mut seen: Vec<&str> = existing.iter().map(|(k, _)| k.as_str()).collect();
            for (k, v) in &self.extra_auth_params {
                if !RESERVED_AUTH_PARAMS.contains(&k.as_str()) && !seen.contains(&k.as_str()) {
                    q.append_pair(k, v);
                    seen.push(k);
                }
            }
        }
        Ok(LoginStart {
            authorize_url: url.into(),
            state,
            nonce,
            pkce_verifier,
        })
    }

    /// RFC 9207 §2.4: the authorization response's `iss` must equal the issuer exactly when
    /// present, and must be present when discovery advertised
    /// `authorization_response_iss_parameter_supported`.
    pub fn check_authorization_response_iss(&self, iss: Option<&str>) -> Result<(), LoginError> {
        let required = self.current().is_some_and(|d| d.iss_parameter_supported);
        match iss {
            Some(v) if v == self.issuer => Ok(()),
            Some(_) => Err(LoginError::AuthorizationIssMismatch),
            None if required => Err(LoginError::AuthorizationIssMismatch),
            None => Ok(()),
        }
    }

    /// Exchanges `code` (with the PKCE verifier), verifies the ID token against `nonce`, and
    /// completes the identity from userinfo when needed.
    pub async fn finish_login(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<LoginOutcome, LoginError> {
        let d = self.ready()?;
        let tokens = self.exchange_code(&d, code, pkce_verifier).await?;

        let allowed_algs = d.allowed_algs.clone();
        let expected = verify::Expected {
            issuer: &self.issuer,
            client_id: &self.client_id,
            nonce: Some(nonce),
        };
        let policy = verify::JwsPolicy {
            allowed_algs: &allowed_algs,
            allowed_typs: verify::ID_TOKEN_TYPS,
        };
        let parsed = verify::parse_jws(&tokens.id_token, &policy)?;
        verify::check_claims(&parsed.claims, &expected, SystemTime::now())?;
        self.jwks
            .verify_with(
                |keys| verify::verify_signature(&parsed, keys, &expected, &allowed_algs),
                |e| *e == TokenError::UnknownKid,
            )
            .await?;
        verify::check_at_hash(&parsed.claims, &parsed.alg, &tokens.access_token)?;
        let mut claims = parsed.claims;

        let lacks = |c: &Map<String, Value>, name: &str| c.get(name).is_none_or(Value::is_null);
        if let Some(userinfo_endpoint) = &d.userinfo_endpoint
            && (lacks(&claims, "email")
                || lacks(&claims, "preferred_username")
                || lacks(&claims, &self.groups_claim))
        {
            let sub = claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let extra = self
                .userinfo(userinfo_endpoint, &tokens.access_token, &sub)
                .await?;
            for (k, v) in extra {
                if lacks(&claims, &k) {
                    claims.insert(k, v);
                }
            }
        }

        let sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
        let identity = identity_from_claims(claims, &self.groups_claim);
        Ok(LoginOutcome {
            identity,
            id_token: Secret::new(tokens.id_token),
            access_token: Secret::new(tokens.access_token),
            refresh_token: tokens.refresh_token.map(Secret::new),
            sid,
            access_expires_at: tokens
                .expires_in
                .map(|s| SystemTime::now() + Duration::from_secs(s)),
        })
    }

    async fn exchange_code(
        &self,
        d: &Discovered,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<TokenResponse, LoginError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("code_verifier", pkce_verifier)
            .finish();
        // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
        let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = STANDARD.encode(format!(
            "{}:{}",
            form(&self.client_id),
            form(self.client_secret.expose())
        ));
        let request = ::http::Request::builder()
            .method(::http::Method::POST)
            .uri(d.token_endpoint.as_str())
            .header(
                ::http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(::http::header::ACCEPT, "application/json")
            .header(::http::header::AUTHORIZATION, format!("Basic {basic}"))
            .body(body.into_bytes())
            .map_err(|_| LoginError::Unavailable)?;
        let response = self
            .http
            .call(request)
            .await
            .map_err(|e| http_error(e, Endpoint::Token))?;
        parse_token_response(
            response.status().as_u16(),
            &content_type(response.headers()),
            response.body(),
        )
    }

    async fn userinfo(
        &self,
        endpoint: &Url,
        access_token: &str,
        sub: &str,
    ) -> Result<Map<String, Value>, LoginError> {
        let bad = |what| LoginError::BadResponse {
            endpoint: Endpoint::Userinfo,
            what,
        };
        let request = ::http::Request::builder()
            .method(::http::Method::GET)
            .uri(endpoint.as_str())
            .header(::http::header::ACCEPT, "application/json")
            .header(
                ::http::header::AUTHORIZATION,
                format!("Bearer {access_token}"),
            )
            .body(Vec::new())
            .map_err(|_| LoginError::Unavailable)?;
        let response = self
            .http
            .call(request)
            .await
            .map_err(|e| http_error(e, Endpoint::Userinfo))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(LoginError::Unavailable);
        }
        if status != ::http::StatusCode::OK {
            return Err(bad("status"));
        }
        if content_type(response.headers()) != "application/json" {
            return Err(bad("content type (signed userinfo is not supported)"));
        }
        let claims =
            verify::parse_json_object(response.body()).map_err(|_| bad("not a JSON object"))?;
        match claims.get("sub") {
            Some(Value::String(s)) if s == sub => Ok(claims),
            _ => Err(LoginError::UserinfoSubMismatch),
        }
    }

    /// RP-Initiated Logout 1.0 §2: the IdP's `end_session_endpoint` with `id_token_hint` (if
    /// given), `post_logout_redirect_uri`, `state` and `client_id`; `None` if the IdP advertised
    /// no such endpoint.
    pub fn end_session_url(
        &self,
        id_token_hint: Option<&str>,
        post_logout_redirect_uri: &str,
        state: &str,
    ) -> Option<String> {
        const OURS: &[&str] = &[
            "id_token_hint",
            "post_logout_redirect_uri",
            "state",
            "client_id",
        ];
        let mut url = self.current()?.end_session_endpoint.clone()?;
        let existing: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !OURS.contains(&k.as_ref()))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut q = url.query_pairs_mut();
            q.clear();
            q.extend_pairs(&existing);
            if let Some(hint) = id_token_hint {
                q.append_pair("id_token_hint", hint);
            }
            q.append_pair("post_logout_redirect_uri", post_logout_redirect_uri)
                .append_pair("state", state)
                .append_pair("client_id", &self.client_id);
        }
        Some(url.into())
    }
}

/// The useful part of a successful token response (RFC 6749 §5.1, Core §3.1.3.3).
struct TokenResponse {
    id_token: String,
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

fn parse_token_response(
    status: u16,
    content_type: &str,
    body: &[u8],
) -> Result<TokenResponse, LoginError> {
    let bad = |what| LoginError::BadResponse {
        endpoint: Endpoint::Token,
        what,
    };
    let json = verify::parse_json_object(body)
        .ok()
        .filter(|_| content_type == "application/json");
    if status != 200 {
        // RFC 6749 §5.2: error responses are 400 (or 401 for client authentication).
        let code = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(Value::as_str);
        return Err(match (status, code) {
            (_, Some("invalid_grant")) => LoginError::InvalidGrant,
            (_, Some("invalid_client")) | (401, _) => LoginError::InvalidClient,
            (500..=599, _) => LoginError::Unavailable,
            (_, Some(code)) => LoginError::IdpError {
                code: sanitize_error_code(code),
            },
            _ => bad("error status without an OAuth error"),
        });
    }
    let json = json.ok_or(bad("not a JSON object"))?;
    let string = |name: &str| match json.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let id_token = string("id_token").ok_or(bad("no id_token"))?;
    let access_token = string("access_token").ok_or(bad("no access_token"))?;
    match json.get("token_type") {
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        _ => return Err(bad("token_type is not Bearer")),
    }
    let refresh_token = match json.get("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(bad("refresh_token is not a string")),
    };
    // Some IdPs send `expires_in` as a string; anything unusable is ignored (it is advisory).
    let expires_in = match json.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .map(|s: u64| s.min(10 * 365 * 24 * 3600));
    Ok(TokenResponse {
        id_token,
        access_token,
        refresh_token,
        expires_in,
    })
}

fn http_error(e: IdpHttpError, endpoint: Endpoint) -> LoginError {
    match e {
        IdpHttpError::Timeout => LoginError::Timeout,
        IdpHttpError::Unreachable(_)
        | IdpHttpError::Tls(_)
        | IdpHttpError::Body(_)
        | IdpHttpError::InvalidRequest => LoginError::Unavailable,
        IdpHttpError::Redirect(_) => LoginError::BadResponse {
            endpoint,
            what: "redirect (not followed)",
        },
        IdpHttpError::BodyTooLarge(_) => LoginError::BadResponse {
            endpoint,
            what: "body too large",
        },
    }
}

/// Maps verified (and completed) claims to an [`Identity`]: `email` and `preferred_username`
/// only as strings, `email_verified` only as a JSON boolean, groups from `groups_claim` as an
/// array of strings (non-strings ignored) or a single string (a one-element list).
pub fn identity_from_claims(claims: Map<String, Value>, groups_claim: &str) -> Identity {
    let string = |name: &str| claims.get(name).and_then(Value::as_str);
    let groups = match claims.get(groups_claim) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => [s].into_iter().collect(),
        _ => Groups::default(),
    };
    Identity {
        sub: string("sub").unwrap_or_default().to_owned(),
        email: string("email").map(Into::into),
        email_verified: claims.get("email_verified").and_then(Value::as_bool),
        preferred_username: string("preferred_username").map(Into::into),
        groups,
        claims: claims.into(),
    }
}

/// The media type of `Content-Type`, lower-cased, without parameters (`""` if absent).
pub(crate) fn content_type(headers: &::http::HeaderMap) -> String {
    headers
        .get(::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Endpoint policy (Discovery §3, RFC 9700 §4.4, SECURITY IDP-05): https, or http on loopback
/// when the issuer itself is http on loopback; no credentials in the URL; never a link-local
/// or unspecified IP literal (cloud metadata services live at 169.254.169.254).
fn check_endpoint(
    name: &'static str,
    url: &Url,
    dev_loopback: bool,
) -> Result<Url, DiscoveryError> {
    let refuse = || DiscoveryError::InsecureEndpoint {
        name,
        url: truncate(url.as_str()),
    };
    let scheme_ok = match url.scheme() {
        "https" => true,
        "http" => dev_loopback && is_loopback(url),
        _ => false,
    };
    if !scheme_ok || !url.username().is_empty() || url.password().is_some() {
        return Err(refuse());
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(
            v6.to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
        ),
        Some(url::Host::Domain(_)) => None,
        None => return Err(refuse()),
    };
    let forbidden = match ip {
        Some(IpAddr::V4(v4)) => v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        Some(IpAddr::V6(v6)) => v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
        None => false,
    };
    if forbidden {
        return Err(refuse());
    }
    Ok(url.clone())
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(v4)) => v4.is_loopback(),
        Some(url::Host::Ipv6(v6)) => v6.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
