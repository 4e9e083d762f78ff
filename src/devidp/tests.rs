//! End-to-end tests of the development provider over real HTTP on 127.0.0.1:0.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::{Value, json};
use url::Url;

use super::*;

/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:9/oauth2/callback";

/// Headers or form fields.
type Pairs<'a> = Vec<(&'a str, &'a str)>;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not json ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn location(&self) -> Url {
        Url::parse(self.header("location")).expect("location")
    }

    fn location_param(&self, name: &str) -> Option<String> {
        self.location()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(req.body(Full::new(body.into())).expect("request"))
            .await
            .expect("send");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, url, headers, Bytes::new()).await
    }

    async fn post_form(&self, url: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> Reply {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        self.send(Method::POST, url, &all, body).await
    }
}

async fn start(opts: DevIdpOptions) -> DevIdp {
    DevIdp::start(opts).await.expect("start devidp")
}

async fn start_auto(user: &str) -> DevIdp {
    start(DevIdpOptions {
        auto_login: Some(DevUser::named(user)),
        ..Default::default()
    })
    .await
}

fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

fn authorize_url(idp: &DevIdp, extra: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&format!("{}/authorize", idp.issuer())).expect("url");
    url.query_pairs_mut().extend_pairs([
        ("client_id", "portcullis"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid email profile"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]);
    // Later duplicates replace earlier ones; an empty value drops the parameter.
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for (k, v) in extra {
        pairs.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            pairs.push(((*k).to_owned(), (*v).to_owned()));
        }
    }
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

/// Runs `/authorize` with auto-login and returns the code.
async fn get_code(http: &Http, idp: &DevIdp) -> String {
    let reply = http.get(&authorize_url(idp, &[]), &[]).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
    reply.location_param("code").expect("code")
}

async fn exchange(http: &Http, idp: &DevIdp, code: &str, verifier: &str) -> Reply {
    let url = format!("{}/token", idp.issuer());
    let auth = basic("portcullis", "dev-secret");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ];
    http.post_form(&url, &[("authorization", &auth)], &form)
        .await
}

async fn login_tokens(http: &Http, idp: &DevIdp) -> Value {
    let code = get_code(http, idp).await;
    let reply = exchange(http, idp, &code, VERIFIER).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.json()
}

fn split(token: &str) -> (Value, Value, Vec<u8>) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header = jwt::decode_segment(parts[0]).expect("header");
    let claims = jwt::decode_segment(parts[1]).expect("claims");
    (
        header,
        claims,
        URL_SAFE_NO_PAD.decode(parts[2]).expect("sig"),
    )
}

/// Verifies `token` against the provider's JWKS with ring; returns (header, claims).
async fn verify(http: &Http, idp: &DevIdp, token: &str) -> Result<(Value, Value), String> {
    let (header, claims, sig) = split(token);
    let input = &token[..token.rfind('.').expect("dot")];
    let jwks = http
        .get(&format!("{}/jwks", idp.issuer()), &[])
        .await
        .json();
    let kid = header["kid"].as_str().ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or("unknown kid")?;
    let field = |name: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().expect("jwk field"))
            .expect("b64")
    };
    let ok = match header["alg"].as_str() {
        Some("ES256") => {
            let mut point = vec![4u8];
            point.extend(field("x"));
            point.extend(field("y"));
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(input.as_bytes(), &sig)
                .is_ok()
        }
        Some("RS256") => signature::RsaPublicKeyComponents {
            n: field("n"),
            e: field("e"),
        }
        .verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            input.as_bytes(),
            &sig,
        )
        .is_ok(),
        other => return Err(format!("alg {other:?}")),
    };
    if ok {
        Ok((header, claims))
    } else {
        Err("bad signature".into())
    }
}

// === discovery and keys ===

#[tokio::test]
async fn discovery_document_lists_endpoints_and_capabilities() {
    for alg in [KeyAlg::Es256, KeyAlg::Rs256] {
        let idp = start(DevIdpOptions {
            key_alg: alg,
            ..Default::default()
        })
        .await;
        let http = Http::new();
        let iss = idp.issuer();
        assert_eq!(iss, format!("http://{}", idp.addr()));
        assert!(!iss.ends_with('/'));
        let reply = http
            .get(&format!("{iss}/.well-known/openid-configuration"), &[])
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-type"), "application/json");
        let doc = reply.json();
        assert_eq!(doc["issuer"], iss);
        for (field, path) in [
            ("authorization_endpoint", "/authorize"),
            ("token_endpoint", "/token"),
            ("userinfo_endpoint", "/userinfo"),
            ("jwks_uri", "/jwks"),
            ("end_session_endpoint", "/end_session"),
        ] {
            assert_eq!(doc[field], format!("{iss}{path}"), "{field}");
        }
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!([alg.as_str()])
        );
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
        assert_eq!(
            doc["grant_types_supported"],
            json!(["authorization_code", "refresh_token"])
        );
        assert!(
            doc["scopes_supported"]
                .as_array()
                .expect("scopes")
                .contains(&json!("openid"))
        );
        assert!(
            doc["claims_supported"]
                .as_array()
                .expect("claims")
                .contains(&json!("groups"))
        );

        let jwks = http.get(&format!("{iss}/jwks"), &[]).await;
        assert_eq!(jwks.header("content-type"), "application/json");
        let keys = jwks.json()["keys"].as_array().expect("keys").clone();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["alg"], alg.as_str());
        assert_eq!(keys[0]["use"], "sig");
        assert_eq!(keys[0]["kid"], idp.current_key().kid());
        idp.shutdown().await;
    }
}

#[tokio::test]
async fn issuer_option_replaces_the_bound_address_everywhere() {
    // A TLS-terminating front publishes the provider under an https issuer.
    let idp = start(DevIdpOptions {
        issuer: Some("https://idp.test:8443/".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(idp.issuer(), "https://idp.test:8443");
    let doc = Http::new()
        .get(
            &format!("http://{}/.well-known/openid-configuration", idp.addr()),
            &[],
        )
        .await
        .json();
    assert_eq!(doc["issuer"], "https://idp.test:8443");
    assert_eq!(doc["token_endpoint"], "https://idp.test:8443/token");
    assert_eq!(doc["jwks_uri"], "https://idp.test:8443/jwks");
}

// === the code flow ===

#[tokio::test]
async fn full_code_flow_with_pkce_for_both_algorithms() {
    for alg in [KeyAlg::Es256, KeyAlg::Rs256] {
        let idp = start(DevIdpOptions {
            key_alg: alg,
            auto_login: Some(DevUser::named("alice")),
            redirect_uris: vec![REDIRECT.to_owned()],
            ..Default::default()
        })
        .await;
        let http = Http::new();

        let reply = http.get(&authorize_url(&idp, &[]), &[]).await;
        assert_eq!(reply.status, StatusCode::FOUND);
        let loc = reply.location();
        assert_eq!(&loc.as_str()[..REDIRECT.len()], REDIRECT);
        assert_eq!(reply.location_param("state").as_deref(), Some("st-1"));
        assert_eq!(reply.location_param("iss"), Some(idp.issuer()));
        let code = reply.location_param("code").expect("code");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&code).expect("b64url code").len(),
            32
        );

        let reply = exchange(&http, &idp, &code, VERIFIER).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.header("cache-control"), "no-store");
        let tokens = reply.json();
        assert_eq!(tokens["token_type"], "Bearer");
        assert_eq!(tokens["expires_in"], 3600);
        assert_eq!(tokens["scope"], "openid email profile");
        let access = tokens["access_token"].as_str().expect("access token");
        assert!(
            tokens["refresh_token"]
                .as_str()
                .is_some_and(|t| t.len() == 43)
        );

        let id_token = tokens["id_token"].as_str().expect("id_token");
        let (header, claims) = verify(&http, &idp, id_token)
            .await
            .expect("signature verifies");
        assert_eq!(
            header,
            json!({"alg": alg.as_str(), "kid": idp.current_key().kid(), "typ": "JWT"})
        );
        assert_eq!(claims["iss"], idp.issuer());
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "portcullis");
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["name"], "Alice");
        assert_eq!(claims["preferred_username"], "alice");
        assert_eq!(claims["groups"], json!([]));
        assert!(claims.get("azp").is_none());
        assert!(claims["sid"].as_str().is_some_and(|s| !s.is_empty()));
        let (iat, exp) = (
            claims["iat"].as_u64().expect("iat"),
            claims["exp"].as_u64().expect("exp"),
        );
        assert_eq!(exp - iat, 3600);
        assert!(claims["auth_time"].as_u64().expect("auth_time") <= iat);
        let digest = ring::digest::digest(&ring::digest::SHA256, access.as_bytes());
        assert_eq!(
            claims["at_hash"],
            URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
        );

        let seen = idp.last_token_request().expect("token request seen");
        assert_eq!(seen.auth, ClientAuth::Basic);
        assert_eq!(seen.client_id.as_deref(), Some("portcullis"));
        assert_eq!(seen.field("code_verifier"), Some(VERIFIER));
        assert_eq!(seen.field("grant_type"), Some("authorization_code"));

        let counts = idp.counts();
        assert_eq!((counts.authorize, counts.token, counts.jwks), (1, 1, 1));
        idp.shutdown().await;
    }
}

#[tokio::test]
async fn login_form_renders_escapes_and_logs_in() {
    let idp = start(DevIdpOptions::default()).await;
    let http = Http::new();
    let evil_state = "<script>alert(1)</script>";
    let reply = http
        .get(
            &authorize_url(&idp, &[("state", evil_state), ("login_hint", "\"bob")]),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").starts_with("text/html"));
    assert!(
        reply
            .header("content-security-policy")
            .contains("default-src 'none'")
    );
    assert!(reply.body.contains(pages::BANNER));
    assert!(!reply.body.contains(evil_state));
    assert!(reply.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(reply.body.contains("value=\"&quot;bob\""));
    assert!(
        reply.body.contains(
            "name=\"code_challenge\" value=\"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\""
        )
    );

    let url = format!("{}/authorize", idp.issuer());
    let mut form = vec![
        ("client_id", "portcullis"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid"),
        ("state", evil_state),
        ("nonce", "n-2"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("username", "  "),
    ];
    let reply = http.post_form(&url, &[], &form).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("Please enter a username."));

    form.pop();
    form.push(("username", "admin-carol"));
    form.push(("groups", " eng, ops ,,admins"));
    let reply = http.post_form(&url, &[], &form).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.body);
    assert_eq!(reply.location_param("state").as_deref(), Some(evil_state));
    let code = reply.location_param("code").expect("code");
    let tokens = exchange(&http, &idp, &code, VERIFIER).await.json();
    let (_, claims) = verify(&http, &idp, tokens["id_token"].as_str().expect("id_token"))
        .await
        .expect("verifies");
    assert_eq!(claims["sub"], "admin-carol");
    assert_eq!(claims["nonce"], "n-2");
    assert_eq!(claims["groups"], json!(["admins", "eng", "ops"]));
    assert_eq!(idp.counts().authorize, 3);
    idp.shutdown().await;
}

#[tokio::test]
async fn authorize_errors_redirect_or_show_a_page() {
    let idp = start(DevIdpOptions {
        redirect_uris: vec![REDIRECT.to_owned()],
        ..Default::default()
    })
    .await;
    let http = Http::new();
    let redirected = [
        (vec![("code_challenge", "")], "invalid_request"),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (vec![("code_challenge", "too-short")], "invalid_request"),
        (vec![("scope", "email profile")], "invalid_scope"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("response_type", "")], "invalid_request"),
        (vec![("prompt", "none")], "login_required"),
        (vec![("request", "eyJ...")], "request_not_supported"),
    ];
    for (extra, error) in redirected {
        let reply = http.get(&authorize_url(&idp, &extra), &[]).await;
        assert_eq!(reply.status, StatusCode::FOUND, "{extra:?}");
        assert!(reply.location().as_str().starts_with(REDIRECT), "{extra:?}");
        assert_eq!(
            reply.location_param("error").as_deref(),
            Some(error),
            "{extra:?}"
        );
        assert_eq!(
            reply.location_param("state").as_deref(),
            Some("st-1"),
            "{extra:?}"
        );
        assert_eq!(reply.location_param("iss"), Some(idp.issuer()), "{extra:?}");
        assert_eq!(reply.location_param("code"), None, "{extra:?}");
    }
    let repeated = format!("{}&nonce=again", authorize_url(&idp, &[]));
    let reply = http.get(&repeated, &[]).await;
    assert_eq!(
        reply.location_param("error").as_deref(),
        Some("invalid_request")
    );

    let paged = [
        vec![("client_id", "other")],
        vec![("client_id", "")],
        vec![("redirect_uri", "https://evil.example/cb")],
        vec![("redirect_uri", "http://127.0.0.1:9/oauth2/callback/")],
        vec![("redirect_uri", "")],
    ];
    for extra in paged {
        let reply = http.get(&authorize_url(&idp, &extra), &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{extra:?}");
        assert!(reply.headers.get("location").is_none(), "{extra:?}");
        assert!(reply.body.contains(pages::BANNER));
        assert!(!reply.body.contains("<script"), "{extra:?}");
    }
    let twice = format!(
        "{}&redirect_uri=https%3A%2F%2Fevil.example%2F",
        authorize_url(&idp, &[])
    );
    assert_eq!(http.get(&twice, &[]).await.status, StatusCode::BAD_REQUEST);
    idp.shutdown().await;
}

// === token endpoint ===

#[tokio::test]
async fn reused_code_is_invalid_grant_and_revokes_its_tokens() {
    let idp = start_auto("alice").await;
    let http = Http::new();
    let code = get_code(&http, &idp).await;
    let first = exchange(&http, &idp, &code, VERIFIER).await;
    assert_eq!(first.status, StatusCode::OK);
    let access = first.json()["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let userinfo = format!("{}/userinfo", idp.issuer());
    let bearer = format!("Bearer {access}");
    assert_eq!(
        http.get(&userinfo, &[("authorization", &bearer)])
            .await
            .status,
        StatusCode::OK
    );

    let second = exchange(&http, &idp, &code, VERIFIER).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.json()["error"], "invalid_grant");
    assert_eq!(second.header("cache-control"), "no-store");
    assert_eq!(
        http.get(&userinfo, &[("authorization", &bearer)])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn code_exchange_failures_are_invalid_grant() {
    let idp = start_auto("alice").await;
    let http = Http::new();
    let url = format!("{}/token", idp.issuer());
    let auth = basic("portcullis", "dev-secret");
    let other_verifier = "x".repeat(43);
    let cases: [(&str, Option<&str>, Option<&str>); 5] = [
        (
            "wrong verifier",
            Some(other_verifier.as_str()),
            Some(REDIRECT),
        ),
        ("missing verifier", None, Some(REDIRECT)),
        ("malformed verifier", Some("short"), Some(REDIRECT)),
        (
            "other redirect_uri",
            Some(VERIFIER),
            Some("http://127.0.0.1:9/other"),
        ),
        ("missing redirect_uri", Some(VERIFIER), None),
    ];
    for (name, verifier, redirect) in cases {
        let code = get_code(&http, &idp).await;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ];
        form.extend(verifier.map(|v| ("code_verifier", v)));
        form.extend(redirect.map(|r| ("redirect_uri", r)));
        let reply = http
            .post_form(&url, &[("authorization", &auth)], &form)
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(reply.json()["error"], "invalid_grant", "{name}");
    }
    let reply = exchange(&http, &idp, "never-issued", VERIFIER).await;
    assert_eq!(reply.json()["error"], "invalid_grant");
    idp.shutdown().await;

    let idp = start(DevIdpOptions {
        auto_login: Some(DevUser::named("alice")),
        code_ttl: Duration::ZERO,
        ..Default::default()
    })
    .await;
    let code = get_code(&http, &idp).await;
    let reply = exchange(&http, &idp, &code, VERIFIER).await;
    assert_eq!(reply.json()["error"], "invalid_grant", "expired code");
    idp.shutdown().await;
}

#[tokio::test]
async fn client_authentication() {
    let secret = "s:e%c r+t";
    let idp = start(DevIdpOptions {
        client_secret: secret.to_owned(),
        auto_login: Some(DevUser::named("alice")),
        ..Default::default()
    })
    .await;
    let http = Http::new();
    let url = format!("{}/token", idp.issuer());

    // Basic with the form-urlencoded secret (RFC 6749 §2.3.1).
    let code = get_code(&http, &idp).await;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let reply = http
        .post_form(
            &url,
            &[("authorization", &basic("portcullis", secret))],
            &grant,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // client_secret_post.
    let code = get_code(&http, &idp).await;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    form.extend([("client_id", "portcullis"), ("client_secret", secret)]);
    let reply = http.post_form(&url, &[], &form).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let seen = idp.last_token_request().expect("seen");
    assert_eq!(seen.auth, ClientAuth::Post);
    assert!(!format!("{seen:?}").contains(secret));

    let code = get_code(&http, &idp).await;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    // Not form-encoded first: ':' inside the secret splits it wrongly.
    let raw_basic = format!("Basic {}", STANDARD.encode(format!("portcullis:{secret}")));
    let (wrong, other, good) = (
        basic("portcullis", "wrong"),
        basic("other", secret),
        basic("portcullis", secret),
    );
    let failures: Vec<(Pairs<'_>, Pairs<'_>, StatusCode, &str)> = vec![
        (
            vec![("authorization", &wrong)],
            vec![],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("authorization", &other)],
            vec![],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("authorization", &raw_basic)],
            vec![],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("authorization", "Bearer xyz")],
            vec![],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (vec![], vec![], StatusCode::UNAUTHORIZED, "invalid_client"),
        (
            vec![],
            vec![("client_id", "portcullis"), ("client_secret", "wrong")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("authorization", &good)],
            vec![("client_secret", secret)],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (headers, extra, status, error) in failures {
        let mut form = grant.to_vec();
        form.extend(extra.iter().copied());
        let reply = http.post_form(&url, &headers, &form).await;
        assert_eq!(reply.status, status, "{headers:?} {extra:?}");
        assert_eq!(reply.json()["error"], error, "{headers:?} {extra:?}");
    }
    // None of the failures consumed the code.
    let reply = http
        .post_form(
            &url,
            &[("authorization", &basic("portcullis", secret))],
            &grant,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    idp.shutdown().await;
}

#[tokio::test]
async fn token_request_shape_errors() {
    let idp = start_auto("alice").await;
    let http = Http::new();
    let url = format!("{}/token", idp.issuer());
    let auth = basic("portcullis", "dev-secret");
    let reply = http
        .post_form(
            &url,
            &[("authorization", &auth)],
            &[("grant_type", "password")],
        )
        .await;
    assert_eq!(reply.json()["error"], "unsupported_grant_type");
    let reply = http
        .post_form(&url, &[("authorization", &auth)], &[("code", "x")])
        .await;
    assert_eq!(reply.json()["error"], "invalid_request");
    let reply = http
        .send(
            Method::POST,
            &url,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            "{}",
        )
        .await;
    assert_eq!(reply.json()["error"], "invalid_request");
    let big = "a=".to_owned() + &"b".repeat(70 * 1024);
    let reply = http
        .send(
            Method::POST,
            &url,
            &[
                ("authorization", &auth),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            big,
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = http.get(&url, &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    idp.shutdown().await;
}

#[tokio::test]
async fn refresh_grant_rotates_and_omits_nonce() {
    let idp = start_auto("alice").await;
    let http = Http::new();
    let first = login_tokens(&http, &idp).await;
    let (_, first_claims) = verify(&http, &idp, first["id_token"].as_str().expect("id"))
        .await
        .expect("verifies");
    let url = format!("{}/token", idp.issuer());
    let auth = basic("portcullis", "dev-secret");
    let rt = first["refresh_token"].as_str().expect("rt");

    let reply = http
        .post_form(
            &url,
            &[("authorization", &auth)],
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), "no-store");
    let second = reply.json();
    assert_ne!(second["access_token"], first["access_token"]);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let (_, claims) = verify(&http, &idp, second["id_token"].as_str().expect("id"))
        .await
        .expect("verifies");
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims["sub"], first_claims["sub"]);
    assert_eq!(claims["sid"], first_claims["sid"]);
    assert_eq!(claims["auth_time"], first_claims["auth_time"]);
    let access = second["access_token"].as_str().expect("at");
    let digest = ring::digest::digest(&ring::digest::SHA256, access.as_bytes());
    assert_eq!(
        claims["at_hash"],
        URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
    );

    // The old refresh token is gone; a scope beyond the grant is refused without burning it.
    let reply = http
        .post_form(
            &url,
            &[("authorization", &auth)],
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await;
    assert_eq!(reply.json()["error"], "invalid_grant");
    let rt2 = second["refresh_token"].as_str().expect("rt2");
    let wide = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt2),
        ("scope", "openid admin"),
    ];
    assert_eq!(
        http.post_form(&url, &[("authorization", &auth)], &wide)
            .await
            .json()["error"],
        "invalid_scope"
    );
    let narrow = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt2),
        ("scope", "openid"),
    ];
    assert_eq!(
        http.post_form(&url, &[("authorization", &auth)], &narrow)
            .await
            .status,
        StatusCode::OK
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn canned_token_error() {
    let idp = start_auto("alice").await;
    let http = Http::new();
    let code = get_code(&http, &idp).await;
    idp.set_token_error(Some((401, r#"{"error":"invalid_client"}"#.to_owned())));
    let reply = exchange(&http, &idp, &code, VERIFIER).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body, r#"{"error":"invalid_client"}"#);
    assert_eq!(reply.header("content-type"), "application/json");
    assert_eq!(
        idp.last_token_request().expect("seen").field("code"),
        Some(code.as_str())
    );
    idp.set_token_error(None);
    assert_eq!(
        exchange(&http, &idp, &code, VERIFIER).await.status,
        StatusCode::OK
    );
    idp.shutdown().await;
}

// === userinfo ===

#[tokio::test]
async fn userinfo_bearer_and_override() {
    let mut user = DevUser::named("alice");
    user.groups = Some(vec!["eng".into()]);
    user.extra.insert("tenant".into(), json!("t1"));
    user.extra.insert("sub".into(), json!("spoofed"));
    let idp = start(DevIdpOptions {
        auto_login: Some(user),
        ..Default::default()
    })
    .await;
    let http = Http::new();
    let tokens = login_tokens(&http, &idp).await;
    let url = format!("{}/userinfo", idp.issuer());
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().expect("at"));

    let reply = http.get(&url, &[("authorization", &bearer)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"sub":"alice","email":"alice@example.com","email_verified":true,"name":"Alice",
               "preferred_username":"alice","groups":["eng"],"tenant":"t1"})
    );
    let (_, claims) = verify(&http, &idp, tokens["id_token"].as_str().expect("id"))
        .await
        .expect("verifies");
    assert_eq!(
        (&claims["sub"], &claims["tenant"]),
        (&json!("alice"), &json!("t1"))
    );

    let reply = http.get(&url, &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.header("www-authenticate").starts_with("Bearer"));
    let reply = http.get(&url, &[("authorization", "Bearer nope")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.header("www-authenticate").contains("invalid_token"));

    idp.set_userinfo_override(Some((
        200,
        "application/json".into(),
        r#"[{"sub":"alice"}]"#.into(),
    )));
    let reply = http.get(&url, &[]).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, r#"[{"sub":"alice"}]"#)
    );
    idp.set_userinfo_override(Some((502, "text/html".into(), "<h1>down</h1>".into())));
    let reply = http.get(&url, &[("authorization", &bearer)]).await;
    assert_eq!(
        (reply.status, reply.header("content-type")),
        (StatusCode::BAD_GATEWAY, "text/html")
    );
    assert_eq!(idp.counts().userinfo, 5);
    idp.shutdown().await;
}

// === end session ===

#[tokio::test]
async fn end_session_redirects_and_revokes() {
    let idp = start_auto("alice").await;
    let http = Http::new();
    let tokens = login_tokens(&http, &idp).await;
    let hint = tokens["id_token"].as_str().expect("id");
    let mut url = Url::parse(&format!("{}/end_session", idp.issuer())).expect("url");
    url.query_pairs_mut()
        .append_pair("id_token_hint", hint)
        .append_pair("post_logout_redirect_uri", "http://127.0.0.1:9/bye?x=1")
        .append_pair("state", "s&1");
    let reply = http.get(url.as_str(), &[]).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    assert_eq!(
        reply.header("location"),
        "http://127.0.0.1:9/bye?x=1&state=s%261"
    );
    // Signing out again with the same hint still returns to the client.
    assert_eq!(http.get(url.as_str(), &[]).await.status, StatusCode::FOUND);

    // The session's tokens are gone.
    let token_url = format!("{}/token", idp.issuer());
    let refresh = [
        ("grant_type", "refresh_token"),
        (
            "refresh_token",
            tokens["refresh_token"].as_str().expect("rt"),
        ),
    ];
    let reply = http
        .post_form(
            &token_url,
            &[("authorization", &basic("portcullis", "dev-secret"))],
            &refresh,
        )
        .await;
    assert_eq!(reply.json()["error"], "invalid_grant");
    let bearer = format!("Bearer {}", tokens["access_token"].as_str().expect("at"));
    let reply = http
        .get(
            &format!("{}/userinfo", idp.issuer()),
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    let pages_cases = [
        format!("{}/end_session", idp.issuer()),
        format!(
            "{}/end_session?post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F&state=x",
            idp.issuer()
        ),
        format!(
            "{}/end_session?id_token_hint=forged&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%2F",
            idp.issuer()
        ),
        format!(
            "{}/end_session?client_id=other&post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%2F",
            idp.issuer()
        ),
    ];
    for url in pages_cases {
        let reply = http.get(&url, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{url}");
        assert!(reply.headers.get("location").is_none(), "{url}");
        assert!(
            reply.body.contains("Signed out") && reply.body.contains(pages::BANNER),
            "{url}"
        );
    }
    let reply = http
        .post_form(
            &format!("{}/end_session", idp.issuer()),
            &[],
            &[("post_logout_redirect_uri", "http://localhost:1/")],
        )
        .await;
    assert_eq!(reply.header("location"), "http://localhost:1/");
    assert_eq!(idp.counts().end_session, 7);
    idp.shutdown().await;

    let idp = start(DevIdpOptions {
        post_logout_redirect_uris: vec!["http://127.0.0.1:9/bye".into()],
        ..Default::default()
    })
    .await;
    let base = format!("{}/end_session?post_logout_redirect_uri=", idp.issuer());
    let reply = http
        .get(&format!("{base}http%3A%2F%2F127.0.0.1%3A9%2Fbye"), &[])
        .await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let reply = http
        .get(&format!("{base}http%3A%2F%2F127.0.0.1%3A9%2Fbye2"), &[])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    idp.shutdown().await;
}

// === keys and misbehaviour ===

#[tokio::test]
async fn rotate_key_changes_kid_and_jwks() {
    for alg in [KeyAlg::Es256, KeyAlg::Rs256] {
        let idp = start(DevIdpOptions {
            key_alg: alg,
            auto_login: Some(DevUser::named("alice")),
            ..Default::default()
        })
        .await;
        let http = Http::new();
        let jwks_url = format!("{}/jwks", idp.issuer());
        let before = http.get(&jwks_url, &[]).await.json()["keys"].clone();
        let old_kid = idp.current_key().kid().to_owned();
        let old_token = login_tokens(&http, &idp).await["id_token"]
            .as_str()
            .expect("id")
            .to_owned();

        idp.rotate_key(true);
        let new_kid = idp.current_key().kid().to_owned();
        assert_ne!(new_kid, old_kid);
        let kept = http.get(&jwks_url, &[]).await.json()["keys"].clone();
        let kids: Vec<&str> = kept
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
        assert_ne!(kept[0], before[0], "new key material");
        let new_token = login_tokens(&http, &idp).await["id_token"]
            .as_str()
            .expect("id")
            .to_owned();
        assert_eq!(
            verify(&http, &idp, &new_token)
                .await
                .expect("new verifies")
                .0["kid"],
            new_kid.as_str()
        );
        assert!(
            verify(&http, &idp, &old_token).await.is_ok(),
            "old key still published"
        );

        idp.rotate_key(false);
        let only = http.get(&jwks_url, &[]).await.json()["keys"].clone();
        assert_eq!(only.as_array().expect("keys").len(), 1);
        assert_eq!(only[0]["kid"], idp.current_key().kid());
        assert_eq!(
            verify(&http, &idp, &old_token).await,
            Err("unknown kid".into())
        );
        idp.shutdown().await;
    }
}

#[tokio::test]
async fn token_hook_and_every_signing_mode() {
    for alg in [KeyAlg::Es256, KeyAlg::Rs256] {
        let idp = start(DevIdpOptions {
            key_alg: alg,
            auto_login: Some(DevUser::named("alice")),
            ..Default::default()
        })
        .await;
        let http = Http::new();
        let kid = idp.current_key().kid().to_owned();
        let modes = [
            Signing::Normal,
            Signing::WrongKey,
            Signing::UnknownKid,
            Signing::None,
            Signing::Hmac(b"dev-secret".to_vec()),
            Signing::Raw("not.a.jwt".into()),
        ];
        for mode in modes {
            let chosen = mode.clone();
            idp.set_token_hook(Some(Arc::new(
                move |header: &mut Value, claims: &mut Value| {
                    claims["iss"] = json!("https://evil.example.com");
                    header["x-test"] = json!(true);
                    chosen.clone()
                },
            )));
            let token = login_tokens(&http, &idp).await["id_token"]
                .as_str()
                .expect("id")
                .to_owned();
            if let Signing::Raw(raw) = &mode {
                assert_eq!(&token, raw);
                continue;
            }
            let (header, claims, sig) = split(&token);
            assert_eq!(claims["iss"], "https://evil.example.com", "{mode:?}");
            assert_eq!(header["x-test"], true, "{mode:?}");
            let verified = verify(&http, &idp, &token).await;
            match &mode {
                Signing::Normal => {
                    assert_eq!(header["kid"], kid.as_str());
                    assert!(verified.is_ok());
                }
                Signing::WrongKey => {
                    assert_eq!(
                        (header["alg"].as_str(), header["kid"].as_str()),
                        (Some(alg.as_str()), Some(kid.as_str()))
                    );
                    assert!(!sig.is_empty());
                    assert_eq!(verified, Err("bad signature".into()));
                }
                Signing::UnknownKid => {
                    assert_ne!(header["kid"], kid.as_str());
                    assert_eq!(verified, Err("unknown kid".into()));
                }
                Signing::None => {
                    assert_eq!(header["alg"], "none");
                    assert!(token.ends_with('.') && sig.is_empty());
                }
                Signing::Hmac(key) => {
                    assert_eq!(header["alg"], "HS256");
                    let input = &token[..token.rfind('.').expect("dot")];
                    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
                    assert!(ring::hmac::verify(&key, input.as_bytes(), &sig).is_ok());
                }
                Signing::Raw(_) => unreachable!(),
            }
        }
        // A hook may even replace the header with a non-object without crashing the provider.
        idp.set_token_hook(Some(Arc::new(|header: &mut Value, _: &mut Value| {
            *header = json!([1, 2]);
            Signing::None
        })));
        let token = login_tokens(&http, &idp).await["id_token"]
            .as_str()
            .expect("id")
            .to_owned();
        assert_eq!(split(&token).0, json!([1, 2]));
        idp.set_token_hook(None);
        let token = login_tokens(&http, &idp).await["id_token"]
            .as_str()
            .expect("id")
            .to_owned();
        assert!(verify(&http, &idp, &token).await.is_ok());
        idp.shutdown().await;
    }
}

#[tokio::test]
async fn delays_counts_and_shutdown() {
    let idp = start(DevIdpOptions::default()).await;
    let http = Http::new();
    let disco = format!("{}/.well-known/openid-configuration", idp.issuer());
    idp.set_delay(Endpoint::Discovery, Duration::from_millis(200));
    let started = tokio::time::Instant::now();
    assert_eq!(http.get(&disco, &[]).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(200));
    idp.set_delay(Endpoint::Discovery, Duration::ZERO);
    let started = tokio::time::Instant::now();
    http.get(&disco, &[]).await;
    assert!(started.elapsed() < Duration::from_millis(200));

    assert_eq!(
        http.get(&format!("{}/nope", idp.issuer()), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        idp.counts(),
        Counts {
            discovery: 2,
            ..Counts::default()
        }
    );

    // Shutdown does not wait out an injected delay, and the port stops accepting.
    idp.set_delay(Endpoint::Jwks, Duration::from_secs(60));
    let jwks = format!("{}/jwks", idp.issuer());
    let client = http.client.clone();
    let pending = tokio::spawn(async move {
        let req = Request::get(jwks)
            .body(Full::new(Bytes::new()))
            .expect("req");
        client.request(req).await.map(|r| r.status())
    });
    while idp.counts().jwks == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let addr = idp.addr();
    let started = tokio::time::Instant::now();
    idp.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        pending.await.expect("join").expect("answered"),
        StatusCode::OK
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_server() {
    let idp = start(DevIdpOptions::default()).await;
    let addr = idp.addr();
    let clone = idp.clone();
    drop(idp);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_ok(),
        "a clone keeps it alive"
    );
    drop(clone);
    let mut stopped = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(stopped);
}

#[test]
fn dev_user_named() {
    let alice = DevUser::named("alice");
    assert_eq!(
        alice,
        DevUser {
            sub: "alice".into(),
            email: Some("alice@example.com".into()),
            email_verified: Some(true),
            name: Some("Alice".into()),
            preferred_username: Some("alice".into()),
            groups: Some(vec![]),
            extra: serde_json::Map::new(),
        }
    );
    assert_eq!(
        DevUser::named("admin").groups,
        Some(vec!["admins".to_owned()])
    );
    assert_eq!(
        DevUser::named("admin-bob").groups,
        Some(vec!["admins".to_owned()])
    );
    assert_eq!(DevUser::named("bob-admin").groups, Some(vec![]));
    assert_eq!(DevUser::named("").name.as_deref(), Some(""));
}

#[test]
fn options_debug_redacts_the_secret() {
    let dbg = format!(
        "{:?}",
        DevIdpOptions {
            client_secret: "hunter2".into(),
            ..Default::default()
        }
    );
    assert!(!dbg.contains("hunter2") && dbg.contains("[redacted]"));
    assert!(!format!("{:?}", Signing::Hmac(b"hunter2".to_vec())).contains("hunter2"));
}
