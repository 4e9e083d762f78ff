//! Request handling of the development provider, one function per endpoint.
//!
//! Protocol rules, with their sources:
//! - Parameters without a value are treated as omitted and none may repeat (RFC 6749 §3.1,
//!   §3.2); request bodies are capped at 64 KiB.
//! - `/authorize` (OIDC Core §3.1.2.1, RFC 6749 §4.1.1): an unknown `client_id` or an
//!   unregistered `redirect_uri` gets a 400 page, never a redirect (RFC 6749 §4.1.2.1); other
//!   errors are redirected with `error`, `state` and `iss` (RFC 9207). PKCE is mandatory and
//!   S256-only: a missing challenge or `plain`/missing method is `invalid_request`
//!   (RFC 7636 §4.4.1, §4.3). `prompt=none` without auto-login is `login_required`
//!   (OIDC Core §3.1.2.6).
//! - `/token` (RFC 6749 §4.1.3, §5, §6): `client_secret_basic` is the form-urlencoded id and
//!   secret joined by `:` and base64-encoded (RFC 6749 §2.3.1), so both halves are
//!   form-decoded; using two methods at once is refused (§2.3). Codes are single-use; a reused
//!   code revokes the tokens issued from it (§4.1.2). The verifier must be 43–128 unreserved
//!   characters and `BASE64URL(SHA256(verifier))` must equal the challenge (RFC 7636 §4.1,
//!   §4.6), compared in constant time. Responses carry `Cache-Control: no-store` (§5.1).
//!   Refresh tokens rotate: each refresh returns a new one and invalidates the old.
//! - `/userinfo` (OIDC Core §5.3, RFC 6750 §2.1, §3.1): Bearer token, 401 with
//!   `WWW-Authenticate` otherwise.
//! - `/end_session` (RP-Initiated Logout 1.0 §2–3): ends the session named by a recognised
//!   `id_token_hint` (any ID token this provider issued, even expired or already logged out;
//!   its session's access and refresh tokens are revoked) and redirects only to an allowed
//!   `post_logout_redirect_uri`, with `state`; an unrecognised hint gets the page, no redirect.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, PRAGMA,
    REFERRER_POLICY, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use ring::digest;
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use url::{Host, Url};

use super::jwt::{self, b64url};
use super::{
    AccessGrant, ClientAuth, CodeGrant, DevUser, Endpoint, Grant, Shared, Signing, SigningKey,
    TokenRequestSeen, pages,
};

type Resp = Response<Full<Bytes>>;

/// Cap on request bodies (login form, token request, logout form).
const MAX_BODY: usize = 64 * 1024;

/// Cap on a username typed in the login form (OIDC Core §2: `sub` ≤ 255 ASCII characters).
const MAX_USERNAME: usize = 255;

/// Cap on the groups typed in the login form.
const MAX_GROUPS: usize = 64;

/// How many issued ID tokens are remembered for `id_token_hint` (then forgotten wholesale).
const MAX_REMEMBERED_ID_TOKENS: usize = 100_000;

/// Routes one request; every request to a known path is counted, then delayed if asked.
pub(super) async fn handle(shared: &Shared, req: Request<Incoming>) -> Resp {
    let endpoint = match req.uri().path() {
        "/.well-known/openid-configuration" => Endpoint::Discovery,
        "/jwks" => Endpoint::Jwks,
        "/authorize" => Endpoint::Authorize,
        "/token" => Endpoint::Token,
        "/userinfo" => Endpoint::Userinfo,
        "/end_session" => Endpoint::EndSession,
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    let delay = {
        let mut st = shared.lock();
        st.counts.bump(endpoint);
        st.delays[endpoint.index()]
    };
    if !delay.is_zero() {
        let mut stop = shared.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            () = super::stopped(&mut stop) => {}
        }
    }
    let resp = route(shared, endpoint, req).await;
    tracing::debug!(?endpoint, status = resp.status().as_u16(), "devidp request");
    resp
}

async fn route(shared: &Shared, endpoint: Endpoint, req: Request<Incoming>) -> Resp {
    let method = req.method().clone();
    match (endpoint, method) {
        (Endpoint::Discovery, Method::GET | Method::HEAD) => discovery(shared),
        (Endpoint::Jwks, Method::GET | Method::HEAD) => jwks(shared),
        (Endpoint::Authorize, Method::GET) => {
            authorize_get(shared, &Params::parse_query(req.uri().query()))
        }
        (Endpoint::Authorize, Method::POST) => match read_body(req.into_body()).await {
            Ok(body) => authorize_post(shared, &Params::parse(&body)),
            Err(resp) => resp,
        },
        (Endpoint::Token, Method::POST) => token(shared, req).await,
        (Endpoint::Userinfo, Method::GET | Method::POST) => userinfo(shared, req.headers()),
        (Endpoint::EndSession, Method::GET) => {
            end_session(shared, &Params::parse_query(req.uri().query()))
        }
        (Endpoint::EndSession, Method::POST) => match read_body(req.into_body()).await {
            Ok(body) => end_session(shared, &Params::parse(&body)),
            Err(resp) => resp,
        },
        (endpoint, _) => {
            let allow = match endpoint {
                Endpoint::Discovery | Endpoint::Jwks => "GET, HEAD",
                Endpoint::Token => "POST",
                _ => "GET, POST",
            };
            let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
    }
}

// === discovery and keys ===

fn discovery(shared: &Shared) -> Resp {
    let iss = &shared.issuer;
    let doc = json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "end_session_endpoint": format!("{iss}/end_session"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [shared.key_alg.as_str()],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid", "email", "profile", "groups", "offline_access"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid",
            "email", "email_verified", "name", "preferred_username", "groups",
        ],
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    });
    json_resp(StatusCode::OK, &doc)
}

fn jwks(shared: &Shared) -> Resp {
    let keys: Vec<Value> = shared
        .lock()
        .keys
        .published
        .iter()
        .map(|k| k.jwk())
        .collect();
    json_resp(StatusCode::OK, &json!({ "keys": keys }))
}

// === authorization endpoint ===

/// A validated authorization request.
struct AuthRequest {
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    prompt: Option<String>,
    login_hint: Option<String>,
}

enum AuthError {
    /// The client or redirect URI cannot be trusted: answer with a page.
    Page(&'static str, String),
    /// Send the error back to the client (RFC 6749 §4.1.2.1).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

fn validate_authorize(shared: &Shared, p: &Params) -> Result<AuthRequest, AuthError> {
    let page = |title: &'static str, detail: &str| AuthError::Page(title, detail.to_owned());
    if p.is_repeated("client_id") || p.is_repeated("redirect_uri") {
        return Err(page(
            "Invalid request",
            "client_id and redirect_uri must each appear once.",
        ));
    }
    let Some(client_id) = p.get("client_id") else {
        return Err(page(
            "Invalid request",
            "The client_id parameter is missing.",
        ));
    };
    if client_id != shared.client_id {
        return Err(page(
            "Unknown client",
            &format!("No client is registered as \"{client_id}\"."),
        ));
    }
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return Err(page(
            "Invalid request",
            "The redirect_uri parameter is missing.",
        ));
    };
    if !uri_allowed(&shared.redirect_uris, redirect_uri) {
        return Err(page(
            "Unregistered redirect URI",
            &format!("{redirect_uri} is not a registered redirect URI for this client."),
        ));
    }
    let state = p.get("state").map(str::to_owned);
    let fail = |error: &'static str, description: &str| AuthError::Redirect {
        redirect_uri: redirect_uri.to_owned(),
        state: state.clone(),
        error,
        description: description.to_owned(),
    };
    if let Some(name) = p.repeated() {
        return Err(fail(
            "invalid_request",
            &format!("parameter {name} appears more than once"),
        ));
    }
    if p.get("request").is_some() {
        return Err(fail(
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if p.get("request_uri").is_some() {
        return Err(fail(
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match p.get("response_type") {
        None => return Err(fail("invalid_request", "response_type is missing")),
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
    }
    let scope = p.get("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return Err(fail("invalid_scope", "scope must include openid"));
    }
    let Some(code_challenge) = p.get("code_challenge") else {
        return Err(fail(
            "invalid_request",
            "code_challenge is required (PKCE with S256)",
        ));
    };
    if p.get("code_challenge_method") != Some("S256") {
        return Err(fail(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if !is_pkce_string(code_challenge) {
        return Err(fail("invalid_request", "code_challenge is malformed"));
    }
    Ok(AuthRequest {
        redirect_uri: redirect_uri.to_owned(),
        scope: scope.to_owned(),
        state,
        nonce: p.get("nonce").map(str::to_owned),
        code_challenge: code_challenge.to_owned(),
        prompt: p.get("prompt").map(str::to_owned),
        login_hint: p.get("login_hint").map(str::to_owned),
    })
}

fn authorize_get(shared: &Shared, p: &Params) -> Resp {
    let req = match validate_authorize(shared, p) {
        Ok(req) => req,
        Err(e) => return auth_error(shared, e),
    };
    let auto = shared.lock().auto_login.clone();
    if let Some(user) = auto {
        return issue_code(shared, &req, user);
    }
    if req
        .prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|v| v == "none"))
    {
        return auth_error(
            shared,
            AuthError::Redirect {
                redirect_uri: req.redirect_uri,
                state: req.state,
                error: "login_required",
                description: "prompt=none but nobody is logged in".to_owned(),
            },
        );
    }
    let hint = req.login_hint.clone().unwrap_or_default();
    login_form(shared, &req, &hint, None, StatusCode::OK)
}

fn authorize_post(shared: &Shared, p: &Params) -> Resp {
    let req = match validate_authorize(shared, p) {
        Ok(req) => req,
        Err(e) => return auth_error(shared, e),
    };
    let username = p.get("username").map(str::trim).unwrap_or_default();
    let problem = if username.is_empty() {
        Some("Please enter a username.")
    } else if username.chars().count() > MAX_USERNAME {
        Some("That username is too long (at most 255 characters).")
    } else if username.chars().any(char::is_control) {
        Some("Usernames cannot contain control characters.")
    } else {
        None
    };
    if let Some(problem) = problem {
        return login_form(
            shared,
            &req,
            username,
            Some(problem),
            StatusCode::BAD_REQUEST,
        );
    }
    let mut user = DevUser::named(username);
    let typed = p.get("groups").unwrap_or_default();
    let groups = user.groups.get_or_insert_with(Vec::new);
    for group in typed
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .take(MAX_GROUPS)
    {
        if !groups.iter().any(|g| g == group) {
            groups.push(group.to_owned());
        }
    }
    issue_code(shared, &req, user)
}

fn login_form(
    shared: &Shared,
    req: &AuthRequest,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Resp {
    let mut hidden = vec![
        ("client_id", shared.client_id.as_str()),
        ("redirect_uri", req.redirect_uri.as_str()),
        ("response_type", "code"),
        ("scope", req.scope.as_str()),
        ("code_challenge", req.code_challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    if let Some(state) = &req.state {
        hidden.push(("state", state));
    }
    if let Some(nonce) = &req.nonce {
        hidden.push(("nonce", nonce));
    }
    let page = pages::login_page(&shared.issuer, &shared.client_id, &hidden, username, error);
    html(status, page)
}

/// Stores a fresh code for `user` and redirects back to the client with it.
fn issue_code(shared: &Shared, req: &AuthRequest, user: DevUser) -> Resp {
    let code = shared.random_token();
    let grant = Grant {
        user: user.into(),
        scope: req.scope.clone(),
        sid: shared.random_token(),
        auth_time: unix_now(),
        grant_id: shared.random_token(),
    };
    let now = Instant::now();
    {
        let mut st = shared.lock();
        st.codes.retain(|_, c| c.expires > now);
        st.codes.insert(
            code.clone(),
            CodeGrant {
                grant,
                client_id: shared.client_id.clone(),
                redirect_uri: req.redirect_uri.clone(),
                code_challenge: req.code_challenge.clone(),
                nonce: req.nonce.clone(),
                expires: now + shared.code_ttl,
            },
        );
    }
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &req.state {
        params.push(("state", state));
    }
    params.push(("iss", &shared.issuer));
    redirect_with(&req.redirect_uri, &params)
}

fn auth_error(shared: &Shared, err: AuthError) -> Resp {
    match err {
        AuthError::Page(title, detail) => {
            html(StatusCode::BAD_REQUEST, pages::error_page(title, &detail))
        }
        AuthError::Redirect {
            redirect_uri,
            state,
            error,
            description,
        } => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = &state {
                params.push(("state", state));
            }
            params.push(("iss", &shared.issuer));
            redirect_with(&redirect_uri, &params)
        }
    }
}

// === token endpoint ===

enum BasicAuth {
    Absent,
    Malformed,
    Creds(String, String),
}

async fn token(shared: &Shared, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(resp) => return resp,
    };
    let form = Params::parse(&body);
    let basic = match parts.headers.get(AUTHORIZATION) {
        None => BasicAuth::Absent,
        Some(value) => parse_basic(value).map_or(BasicAuth::Malformed, |(id, secret)| {
            BasicAuth::Creds(id, secret)
        }),
    };
    let uses_basic = !matches!(basic, BasicAuth::Absent);
    let auth = match (uses_basic, form.get("client_secret").is_some()) {
        (true, true) => ClientAuth::Both,
        (true, false) => ClientAuth::Basic,
        (false, true) => ClientAuth::Post,
        (false, false) => ClientAuth::None,
    };
    let client_id = match &basic {
        BasicAuth::Creds(id, _) => Some(id.clone()),
        _ => form.get("client_id").map(str::to_owned),
    };
    let canned = {
        let mut st = shared.lock();
        st.last_token_request = Some(TokenRequestSeen {
            fields: form.pairs.clone(),
            auth,
            client_id,
        });
        st.token_error.clone()
    };
    if let Some((status, body)) = canned {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return no_store(respond(status, "application/json", body));
    }

    let form_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = form_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body must be application/x-www-form-urlencoded",
        );
    }
    if let Some(name) = form.repeated() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("parameter {name} appears more than once"),
        );
    }

    // Client authentication (RFC 6749 §2.3.1).
    let (id, secret) = match (auth, basic) {
        (ClientAuth::Both, _) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use exactly one client authentication method",
            );
        }
        (_, BasicAuth::Creds(id, secret)) => (id, Some(secret)),
        (_, BasicAuth::Malformed) => return invalid_client(true),
        (ClientAuth::Post, _) => (
            form.get("client_id").unwrap_or_default().to_owned(),
            form.get("client_secret").map(str::to_owned),
        ),
        _ => return invalid_client(false),
    };
    let secret_ok = secret
        .as_deref()
        .is_some_and(|s| ct_eq_hashed(s.as_bytes(), shared.client_secret.as_bytes()));
    if id != shared.client_id || !secret_ok {
        return invalid_client(uses_basic);
    }
    if auth == ClientAuth::Basic && form.get("client_id").is_some_and(|f| f != id) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id does not match the authenticated client",
        );
    }

    match form.get("grant_type") {
        Some("authorization_code") => code_grant(shared, &form, &id),
        Some("refresh_token") => refresh_grant(shared, &form),
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type not supported",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is missing",
        ),
    }
}

fn code_grant(shared: &Shared, form: &Params, client_id: &str) -> Resp {
    let Some(code) = form.get("code") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is missing",
        );
    };
    let now = Instant::now();
    let found = {
        let mut st = shared.lock();
        match st.codes.remove(code) {
            Some(found) => {
                st.used_codes.retain(|_, (_, forget)| *forget > now);
                let forget = now + shared.code_ttl.max(shared.token_ttl);
                st.used_codes
                    .insert(code.to_owned(), (found.grant.grant_id.clone(), forget));
                found
            }
            None => {
                if let Some((grant_id, _)) = st.used_codes.get(code).cloned() {
                    st.access_tokens.retain(|_, a| a.grant.grant_id != grant_id);
                    st.refresh_tokens.retain(|_, g| g.grant_id != grant_id);
                    tracing::warn!(
                        "devidp: authorization code reused; tokens issued from it revoked"
                    );
                }
                return invalid_grant("unknown, expired or already used code");
            }
        }
    };
    if found.expires <= now {
        return invalid_grant("code expired");
    }
    if found.client_id != client_id {
        return invalid_grant("code was issued to another client");
    }
    if form.get("redirect_uri") != Some(found.redirect_uri.as_str()) {
        return invalid_grant("redirect_uri does not match the authorization request");
    }
    let Some(verifier) = form.get("code_verifier") else {
        return invalid_grant("code_verifier is missing");
    };
    if !pkce_matches(verifier, &found.code_challenge) {
        return invalid_grant("code_verifier does not match the code_challenge");
    }
    mint_tokens(shared, &found.grant, found.nonce.as_deref())
}

fn refresh_grant(shared: &Shared, form: &Params) -> Resp {
    let Some(token) = form.get("refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is missing",
        );
    };
    let Some(grant) = shared.lock().refresh_tokens.remove(token) else {
        return invalid_grant("unknown or revoked refresh token");
    };
    if let Some(asked) = form.get("scope") {
        let granted: Vec<&str> = grant.scope.split(' ').collect();
        if !asked
            .split(' ')
            .filter(|s| !s.is_empty())
            .all(|s| granted.contains(&s))
        {
            // Put it back: a bad request does not burn the refresh token.
            shared.lock().refresh_tokens.insert(token.to_owned(), grant);
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "scope exceeds the original grant",
            );
        }
    }
    mint_tokens(shared, &grant, None)
}

/// Issues an access token, a refresh token and an ID token for `grant` (RFC 6749 §5.1,
/// OIDC Core §3.1.3.3); the token hook may rewrite the ID token and pick its signing.
fn mint_tokens(shared: &Shared, grant: &Grant, nonce: Option<&str>) -> Resp {
    let access_token = shared.random_token();
    let refresh_token = shared.random_token();
    let (key, rogue, hook) = {
        let st = shared.lock();
        (
            st.keys.current.clone(),
            st.keys.rogue.clone(),
            st.hook.clone(),
        )
    };
    let mut header = json!({ "alg": key.alg().as_str(), "kid": key.kid(), "typ": "JWT" });
    let mut claims = id_token_claims(shared, grant, nonce, &access_token);
    let signing = hook.map_or(Signing::Normal, |hook| hook(&mut header, &mut claims));
    let id_token = match sign_id_token(shared, &key, &rogue, signing, header, &claims) {
        Ok(token) => token,
        Err(e) => {
            tracing::error!(error = %e, "devidp could not mint an id_token");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not mint the id_token",
            );
        }
    };
    let now = Instant::now();
    {
        let mut st = shared.lock();
        st.access_tokens.retain(|_, a| a.expires > now);
        st.access_tokens.insert(
            access_token.clone(),
            AccessGrant {
                grant: grant.clone(),
                expires: now + shared.token_ttl,
            },
        );
        st.refresh_tokens
            .insert(refresh_token.clone(), grant.clone());
        if st.id_tokens.len() >= MAX_REMEMBERED_ID_TOKENS {
            st.id_tokens.clear();
        }
        st.id_tokens
            .insert(sha256(id_token.as_bytes()), grant.sid.clone());
    }
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": shared.token_ttl.as_secs(),
        "refresh_token": refresh_token,
        "id_token": id_token,
        "scope": grant.scope,
    });
    no_store(json_resp(StatusCode::OK, &body))
}

fn id_token_claims(
    shared: &Shared,
    grant: &Grant,
    nonce: Option<&str>,
    access_token: &str,
) -> Value {
    let iat = unix_now();
    let mut c = Map::new();
    c.insert("iss".into(), shared.issuer.clone().into());
    c.insert("sub".into(), grant.user.sub.clone().into());
    c.insert("aud".into(), shared.client_id.clone().into());
    c.insert(
        "exp".into(),
        iat.saturating_add(shared.token_ttl.as_secs()).into(),
    );
    c.insert("iat".into(), iat.into());
    c.insert("auth_time".into(), grant.auth_time.into());
    if let Some(nonce) = nonce {
        c.insert("nonce".into(), nonce.into());
    }
    // ES256 and RS256 both hash with SHA-256 (OIDC Core §3.1.3.6).
    c.insert("at_hash".into(), jwt::sha256_half_hash(access_token).into());
    c.insert("sid".into(), grant.sid.clone().into());
    if let Value::Object(user) = user_claims(&grant.user) {
        for (k, v) in user {
            c.entry(k).or_insert(v);
        }
    }
    Value::Object(c)
}

/// The user's claims as UserInfo returns them; `extra` never overrides a standard claim.
fn user_claims(user: &DevUser) -> Value {
    let mut c = Map::new();
    c.insert("sub".into(), user.sub.clone().into());
    if let Some(v) = &user.email {
        c.insert("email".into(), v.clone().into());
    }
    if let Some(v) = user.email_verified {
        c.insert("email_verified".into(), v.into());
    }
    if let Some(v) = &user.name {
        c.insert("name".into(), v.clone().into());
    }
    if let Some(v) = &user.preferred_username {
        c.insert("preferred_username".into(), v.clone().into());
    }
    if let Some(v) = &user.groups {
        c.insert("groups".into(), v.clone().into());
    }
    for (k, v) in &user.extra {
        c.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(c)
}

fn sign_id_token(
    shared: &Shared,
    key: &SigningKey,
    rogue: &SigningKey,
    signing: Signing,
    mut header: Value,
    claims: &Value,
) -> Result<String, jwt::JwtError> {
    // The hook may have replaced the header with a non-object; only set fields on objects.
    let mut set = |name: &str, value: Value| {
        if let Some(obj) = header.as_object_mut() {
            obj.insert(name.to_owned(), value);
        }
    };
    match signing {
        Signing::Normal => jwt::mint_jwt(&header, claims, key),
        Signing::WrongKey => jwt::mint_jwt(&header, claims, rogue),
        Signing::UnknownKid => {
            let kid = shared.random_token();
            set("kid", format!("dev-unknown-{}", &kid[..12]).into());
            jwt::mint_jwt(&header, claims, rogue)
        }
        Signing::None => {
            set("alg", "none".into());
            jwt::mint_jwt_unsigned(&header, claims)
        }
        Signing::Hmac(secret) => {
            set("alg", "HS256".into());
            jwt::mint_jwt_hs256(&header, claims, &secret)
        }
        Signing::Raw(token) => Ok(token),
    }
}

// === userinfo ===

fn userinfo(shared: &Shared, headers: &HeaderMap) -> Resp {
    let canned = shared.lock().userinfo_override.clone();
    if let Some((status, content_type, body)) = canned {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = respond(status, "application/octet-stream", body);
        match HeaderValue::from_str(&content_type) {
            Ok(v) => resp.headers_mut().insert(CONTENT_TYPE, v),
            Err(_) => resp.headers_mut().remove(CONTENT_TYPE),
        };
        return resp;
    }
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(token) = token else {
        return bearer_challenge("Bearer realm=\"devidp\"");
    };
    let now = Instant::now();
    let user = {
        let st = shared.lock();
        st.access_tokens
            .get(token)
            .filter(|a| a.expires > now)
            .map(|a| a.grant.user.clone())
    };
    match user {
        Some(user) => no_store(json_resp(StatusCode::OK, &user_claims(&user))),
        None => bearer_challenge(
            "Bearer realm=\"devidp\", error=\"invalid_token\", error_description=\"unknown or expired access token\"",
        ),
    }
}

fn bearer_challenge(challenge: &'static str) -> Resp {
    let mut resp = json_resp(
        StatusCode::UNAUTHORIZED,
        &json!({ "error": "invalid_token" }),
    );
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

// === end session ===

fn end_session(shared: &Shared, p: &Params) -> Resp {
    let hint = p.get("id_token_hint");
    let sid = hint.and_then(|h| shared.lock().id_tokens.get(&sha256(h.as_bytes())).cloned());
    if let Some(sid) = &sid {
        let mut st = shared.lock();
        st.access_tokens.retain(|_, a| &a.grant.sid != sid);
        st.refresh_tokens.retain(|_, g| &g.sid != sid);
    }
    let hint_ok = hint.is_none() || sid.is_some();
    let client_ok = p.get("client_id").is_none_or(|c| c == shared.client_id);
    let Some(target) = p.get("post_logout_redirect_uri") else {
        let note = (!hint_ok).then_some("The id_token_hint was not recognised.");
        return html(StatusCode::OK, pages::signed_out_page(note));
    };
    if !(hint_ok && client_ok && uri_allowed(&shared.post_logout_redirect_uris, target)) {
        return html(
            StatusCode::OK,
            pages::signed_out_page(Some(
                "Not redirecting: the post_logout_redirect_uri or id_token_hint was not accepted.",
            )),
        );
    }
    let params: Vec<(&str, &str)> = p.get("state").map(|s| ("state", s)).into_iter().collect();
    redirect_with(target, &params)
}

// === helpers ===

/// Decoded form or query parameters (RFC 6749 Appendix B), in order.
struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(bytes: &[u8]) -> Self {
        Self {
            pairs: url::form_urlencoded::parse(bytes).into_owned().collect(),
        }
    }

    fn parse_query(query: Option<&str>) -> Self {
        Self::parse(query.unwrap_or_default().as_bytes())
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    fn is_repeated(&self, name: &str) -> bool {
        self.pairs.iter().filter(|(k, _)| k == name).count() > 1
    }

    /// The first parameter name that appears more than once.
    fn repeated(&self) -> Option<&str> {
        self.pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| self.is_repeated(k))
    }
}

/// Reads a body of at most [`MAX_BODY`] bytes; 413 beyond, 400 if unreadable.
async fn read_body(body: Incoming) -> Result<Bytes, Resp> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        )),
        Err(_) => Err(plain(StatusCode::BAD_REQUEST, "unreadable request body\n")),
    }
}

/// `Authorization: Basic` with form-urlencoded id and secret (RFC 6749 §2.3.1).
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let (scheme, b64) = value.to_str().ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

fn form_decode(s: &str) -> Option<String> {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// `code_verifier` / `code_challenge` syntax: 43–128 unreserved characters (RFC 7636 §4.1).
fn is_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// S256 check (RFC 7636 §4.6), constant-time.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    is_pkce_string(verifier)
        && ct_eq(
            b64url(sha256(verifier.as_bytes())).as_bytes(),
            challenge.as_bytes(),
        )
}

fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// Constant-time equality for equal-length inputs (lengths are not secret here).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Constant-time equality that does not leak the secret's length either.
fn ct_eq_hashed(a: &[u8], b: &[u8]) -> bool {
    ct_eq(&sha256(a), &sha256(b))
}

/// Exact match against the registered list, or — when none are registered — any `http(s)`
/// loopback URI without credentials or fragment.
fn uri_allowed(registered: &[String], uri: &str) -> bool {
    if !registered.is_empty() {
        return registered.iter().any(|r| r == uri);
    }
    let Ok(url) = Url::parse(uri) else {
        return false;
    };
    let loopback = match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    matches!(url.scheme(), "http" | "https")
        && loopback
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn plain(status: StatusCode, body: &'static str) -> Resp {
    respond(status, "text/plain; charset=utf-8", body)
}

fn json_resp(status: StatusCode, value: &Value) -> Resp {
    respond(status, "application/json", value.to_string())
}

fn html(status: StatusCode, page: String) -> Resp {
    let mut resp = respond(status, "text/html; charset=utf-8", page);
    let h = resp.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(pages::CSP),
    );
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    no_store(resp)
}

fn no_store(mut resp: Resp) -> Resp {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// An OAuth error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Resp {
    no_store(json_resp(
        status,
        &json!({ "error": error, "error_description": description }),
    ))
}

fn invalid_grant(description: &str) -> Resp {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

fn invalid_client(challenge: bool) -> Resp {
    let mut resp = oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client authentication failed",
    );
    if challenge {
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"devidp\""),
        );
    }
    resp
}

/// 302 to `base` with `params` appended to its query (RFC 6749 §3.1.2 keeps the query).
fn redirect_with(base: &str, params: &[(&str, &str)]) -> Resp {
    let Ok(mut url) = Url::parse(base) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::error_page("Invalid redirect URI", base),
        );
    };
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::error_page("Invalid redirect URI", base),
        );
    };
    let mut resp = respond(StatusCode::FOUND, "text/plain; charset=utf-8", Bytes::new());
    resp.headers_mut().insert(LOCATION, location);
    resp.headers_mut()
        .insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    no_store(resp)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let cases = [
            ("portcullis:dev-secret", Some(("portcullis", "dev-secret"))),
            // RFC 6749 §2.3.1: the secret "a:b%c d" is sent as "a%3Ab%25c+d".
            ("portcullis:a%3Ab%25c+d", Some(("portcullis", "a:b%c d"))),
            ("no-colon", None),
        ];
        for (raw, want) in cases {
            let header =
                HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw))).expect("header");
            let got = parse_basic(&header);
            assert_eq!(
                got.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                want,
                "{raw}"
            );
        }
        for bad in ["Bearer abc", "Basic !!!", "Basic"] {
            assert!(
                parse_basic(&HeaderValue::from_static(bad)).is_none(),
                "{bad}"
            );
        }
        assert!(
            parse_basic(
                &HeaderValue::from_str(&format!("bAsIc {}", STANDARD.encode("a:b"))).expect("h")
            )
            .is_some()
        );
    }

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches("short", challenge));
        assert!(!pkce_matches(&format!("{verifier}!"), challenge));
    }

    #[test]
    fn pkce_string_syntax() {
        let cases = [
            ("a".repeat(42), false),
            ("a".repeat(43), true),
            ("a".repeat(128), true),
            ("a".repeat(129), false),
            (format!("{}-._~", "A9".repeat(20)), true),
            (format!("{}+", "a".repeat(43)), false),
            (format!("{}=", "a".repeat(43)), false),
        ];
        for (s, want) in cases {
            assert_eq!(is_pkce_string(&s), want, "{s}");
        }
    }

    #[test]
    fn loopback_rule_for_unregistered_clients() {
        let cases = [
            ("http://127.0.0.1:8080/oauth2/callback", true),
            ("https://localhost/cb", true),
            ("http://LOCALHOST:1/cb", true),
            ("http://[::1]:9/cb", true),
            ("http://127.8.9.10/cb", true),
            ("http://example.com/cb", false),
            ("http://127.0.0.1.evil.com/cb", false),
            ("http://127.0.0.1/cb#frag", false),
            ("http://user:pw@127.0.0.1/cb", false),
            ("ftp://127.0.0.1/cb", false),
            ("javascript:alert(1)", false),
            ("/relative", false),
        ];
        for (uri, want) in cases {
            assert_eq!(uri_allowed(&[], uri), want, "{uri}");
        }
        let registered = vec!["http://127.0.0.1:1/cb".to_owned()];
        assert!(uri_allowed(&registered, "http://127.0.0.1:1/cb"));
        assert!(!uri_allowed(&registered, "http://127.0.0.1:1/cb/"));
        assert!(!uri_allowed(&registered, "http://127.0.0.1:1/cb?x=1"));
    }

    #[test]
    fn params_treat_empty_as_absent_and_find_repeats() {
        let p = Params::parse(b"a=1&b=&c=x+y&a=2");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y"));
        assert_eq!(p.repeated(), Some("a"));
        assert!(Params::parse(b"x=1&y=2").repeated().is_none());
    }

    #[test]
    fn redirect_keeps_existing_query_and_encodes() {
        let resp = redirect_with(
            "http://127.0.0.1/cb?keep=1",
            &[("code", "a b"), ("state", "<s>&")],
        );
        assert_eq!(resp.status(), StatusCode::FOUND);
        let loc = resp.headers()[LOCATION].to_str().expect("ascii");
        assert_eq!(loc, "http://127.0.0.1/cb?keep=1&code=a+b&state=%3Cs%3E%26");
    }

    #[test]
    fn ct_eq_table() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq_hashed(b"secret", b"secret"));
        assert!(!ct_eq_hashed(b"secret", b"secret2"));
    }
}
