//! Provider tests against a small programmable IdP on 127.0.0.1.

use std::sync::Mutex;

use serde_json::json;

use super::testutil::{EcKey, Recorded, Reply, TestServer, at_hash, now, test_http};
use super::*;

const CLIENT: &str = "portcullis";
const SECRET: &str = "s3cr:t%";
const REDIRECT: &str = "https://app.example.com/oauth2/callback";

/// Mutable behaviour of the test IdP.
struct IdpState {
    issuer: String,
    discovery: Option<Reply>,
    jwks: Vec<Value>,
    token: Reply,
    userinfo: Reply,
    /// When set, the token endpoint mints a fresh token with a random kid on every call.
    random_kid_tokens: bool,
    nonce: String,
}

struct Idp {
    srv: TestServer,
    state: Arc<Mutex<IdpState>>,
    key: EcKey,
}

impl Idp {
    async fn start() -> Idp {
        let key = EcKey::generate("k1");
        let state = Arc::new(Mutex::new(IdpState {
            issuer: String::new(),
            discovery: None,
            jwks: vec![key.jwk()],
            token: Reply::json(500, "{}"),
            userinfo: Reply::json(500, "{}"),
            random_kid_tokens: false,
            nonce: String::new(),
        }));
        let st = state.clone();
        let srv = TestServer::start(move |req: &Recorded| {
            let s = st.lock().unwrap();
            match req.path() {
                "/.well-known/openid-configuration" => s
                    .discovery
                    .clone()
                    .unwrap_or_else(|| Reply::json(200, &default_discovery(&s.issuer).to_string())),
                "/jwks" => Reply::json(200, &json!({"keys": s.jwks}).to_string()),
                "/token" if s.random_kid_tokens => {
                    let k =
                        EcKey::generate(&format!("kid-{}", URL_SAFE_NO_PAD.encode(rand_bytes())));
                    let id = k.token(&id_claims(&s.issuer, &s.nonce, json!({})));
                    Reply::json(200, &token_body(&id))
                }
                "/token" => s.token.clone(),
                "/userinfo" => s.userinfo.clone(),
                _ => Reply::json(404, "{}"),
            }
        })
        .await;
        state.lock().unwrap().issuer = srv.origin();
        Idp { srv, state, key }
    }
    fn issuer(&self) -> String {
        self.srv.origin()
    }
    fn set(&self, f: impl FnOnce(&mut IdpState)) {
        f(&mut self.state.lock().unwrap());
    }
    fn provider(&self) -> Arc<Provider> {
        provider_for(&self.issuer(), vec![])
    }
    /// Makes the token endpoint answer with an ID token carrying `extra` claims.
    fn issue(&self, nonce: &str, extra: Value) {
        let id = self.key.token(&id_claims(&self.issuer(), nonce, extra));
        self.set(|s| s.token = Reply::json(200, &token_body(&id)));
    }
}

fn rand_bytes() -> [u8; 12] {
    let mut b = [0u8; 12];
    SystemRandom::new().fill(&mut b).unwrap();
    b
}

fn default_discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize?p=policy&state=evil"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "HS256", "none"],
        "code_challenge_methods_supported": ["plain"],
    })
}

fn id_claims(issuer: &str, nonce: &str, extra: Value) -> Value {
    let t = now();
    let mut c = json!({
        "iss": issuer, "aud": CLIENT, "sub": "u-alice", "exp": t + 300, "iat": t, "nonce": nonce,
        "email": "alice@example.com", "email_verified": true, "preferred_username": "alice",
        "groups": ["eng"], "at_hash": at_hash("AT"), "sid": "sid-1",
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn token_body(id_token: &str) -> String {
    json!({"access_token": "AT", "token_type": "Bearer", "id_token": id_token, "expires_in": 3600, "refresh_token": "RT"}).to_string()
}

fn provider_for(issuer: &str, extra_auth_params: Vec<(String, String)>) -> Arc<Provider> {
    let cfg = OidcConfig {
        issuer: issuer.to_owned(),
        client_id: CLIENT.into(),
        client_secret: Secret::new(SECRET),
        scopes: vec!["openid".into(), "email".into(), "profile".into()],
        callback_path: "/oauth2/callback".into(),
        groups_claim: "groups".into(),
        extra_auth_params,
        bearer_audiences: vec![],
    };
    Provider::new(&cfg, REDIRECT.into(), test_http())
}

fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    q.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

async fn ready_idp() -> (Idp, Arc<Provider>) {
    let idp = Idp::start().await;
    let p = idp.provider();
    p.discover().await.unwrap();
    (idp, p)
}

// === discovery ===

#[tokio::test]
async fn discovery_loads_metadata_and_keys() {
    let (idp, p) = ready_idp().await;
    assert!(p.is_ready());
    assert_eq!(p.issuer(), idp.issuer());
    // HS256 and none advertised, but only ES256 is ever allowed.
    assert_eq!(
        p.allowed_algs(),
        vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]
    );
    assert_eq!(p.jwks().keys().keys().len(), 1);
}

#[tokio::test]
async fn discovery_refuses_issuer_mismatch() {
    let idp = Idp::start().await;
    for found in [
        format!("{}/", idp.issuer()),
        "https://evil.example.com".into(),
        idp.issuer().to_uppercase(),
    ] {
        let mut doc = default_discovery(&idp.issuer());
        doc["issuer"] = json!(found);
        idp.set(|s| s.discovery = Some(Reply::json(200, &doc.to_string())));
        let p = idp.provider();
        let err = p.discover().await.unwrap_err();
        assert!(
            matches!(err, DiscoveryError::IssuerMismatch { .. }),
            "{found}: {err}"
        );
        assert!(!p.is_ready());
        assert!(p.begin_login().is_err());
    }
}

#[tokio::test]
async fn discovery_refuses_bad_documents() {
    let idp = Idp::start().await;
    let iss = idp.issuer();
    let doc = |k: &str, v: Value| {
        let mut d = default_discovery(&iss);
        if v.is_null() {
            d.as_object_mut().unwrap().remove(k);
        } else {
            d[k] = v;
        }
        Reply::json(200, &d.to_string())
    };
    let cases: Vec<(&str, Reply)> = vec![
        (
            "token endpoint off loopback over http",
            doc("token_endpoint", json!("http://idp.example.com/token")),
        ),
        (
            "metadata IP",
            doc("token_endpoint", json!("http://169.254.169.254/")),
        ),
        (
            "credentials in URL",
            doc("jwks_uri", json!(format!("http://u:p@127.0.0.1:1/jwks"))),
        ),
        (
            "javascript endpoint",
            doc("authorization_endpoint", json!("javascript:alert(1)")),
        ),
        ("no jwks_uri", doc("jwks_uri", Value::Null)),
        ("no token endpoint", doc("token_endpoint", Value::Null)),
        (
            "none only",
            doc("id_token_signing_alg_values_supported", json!(["none"])),
        ),
        (
            "HMAC only",
            doc(
                "id_token_signing_alg_values_supported",
                json!(["HS256", "none"]),
            ),
        ),
        ("500", Reply::json(500, "{}")),
        (
            "html",
            Reply::json(200, "<html>").header("content-type", "text/html"),
        ),
        ("array", Reply::json(200, "[]")),
        (
            "duplicate issuer",
            Reply::json(
                200,
                &format!(
                    "{{\"issuer\":\"{iss}\",{}",
                    &default_discovery(&iss).to_string()[1..]
                ),
            ),
        ),
    ];
    for (name, reply) in cases {
        idp.set(|s| s.discovery = Some(reply));
        let p = idp.provider();
        assert!(p.discover().await.is_err(), "case {name} must be refused");
        assert!(!p.is_ready(), "case {name}");
    }
}

#[tokio::test]
async fn discovery_without_alg_list_means_rs256() {
    let idp = Idp::start().await;
    let mut doc = default_discovery(&idp.issuer());
    doc.as_object_mut()
        .unwrap()
        .remove("id_token_signing_alg_values_supported");
    idp.set(|s| s.discovery = Some(Reply::json(200, &doc.to_string())));
    let p = idp.provider();
    p.discover().await.unwrap();
    assert_eq!(
        p.allowed_algs(),
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
    );
}

#[tokio::test]
async fn failed_rediscovery_keeps_last_good_state() {
    let (idp, p) = ready_idp().await;
    idp.set(|s| s.discovery = Some(Reply::json(503, "{}")));
    assert!(p.discover().await.is_err());
    idp.set(|s| {
        s.discovery = None;
        s.jwks = vec![];
    });
    assert!(matches!(p.discover().await, Err(DiscoveryError::Jwks(_))));
    assert!(p.is_ready());
    assert_eq!(p.jwks().keys().keys().len(), 1);
    assert!(p.begin_login().is_ok());
}

#[test]
fn endpoint_policy() {
    let ok = |u: &str, dev: bool| check_endpoint("e", &Url::parse(u).unwrap(), dev).is_ok();
    assert!(ok("https://idp.example.com/token", false));
    assert!(!ok("http://idp.example.com/token", false));
    assert!(!ok("http://127.0.0.1/token", false));
    assert!(ok("http://127.0.0.1:8080/token", true));
    assert!(ok("http://localhost/token", true));
    assert!(!ok("http://idp.example.com/token", true));
    assert!(!ok("https://169.254.169.254/latest", false));
    assert!(!ok("https://[fe80::1]/x", false));
    assert!(!ok("https://0.0.0.0/x", false));
    assert!(!ok("https://[::ffff:169.254.169.254]/x", false));
    assert!(!ok("https://user:pw@idp.example.com/x", false));
    assert!(!ok("ftp://idp.example.com/x", false));
}

#[tokio::test]
async fn spawned_discovery_retries_until_loaded() {
    let idp = Idp::start().await;
    idp.set(|s| s.discovery = Some(Reply::json(503, "{}")));
    let p = idp.provider();
    let handle = p.spawn_discovery(CancellationToken::new());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!p.is_ready());
    idp.set(|s| s.discovery = None);
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .unwrap()
        .unwrap();
    assert!(p.is_ready());
    assert_eq!(
        idp.srv
            .requests_to("/.well-known/openid-configuration")
            .len(),
        2
    );
}

#[tokio::test]
async fn spawned_discovery_stops_when_cancelled() {
    let idp = Idp::start().await;
    idp.set(|s| s.discovery = Some(Reply::json(503, "{}")));
    let p = idp.provider();
    let cancel = CancellationToken::new();
    let handle = p.spawn_discovery(cancel.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(1), handle)
        .await
        .unwrap()
        .unwrap();
    assert!(!p.is_ready());
}

// === authorization request ===

#[tokio::test]
async fn authorization_request_parameters() {
    let idp = Idp::start().await;
    let extra = [
        ("prompt", "login"),
        ("scope", "openid admin"),
        ("state", "fixed"),
        ("code_challenge_method", "plain"),
        ("redirect_uri", "https://evil.com/cb"),
        ("p", "other"),
    ];
    let p = provider_for(
        &idp.issuer(),
        extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    assert_eq!(p.begin_login().unwrap_err(), NotReady);
    p.discover().await.unwrap();

    let start = p.begin_login().unwrap();
    assert!(
        start
            .authorize_url
            .starts_with(&format!("{}/authorize?", idp.issuer()))
    );
    let q = query(&start.authorize_url);
    for name in [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "p",
    ] {
        assert_eq!(param(&q, name).len(), 1, "{name} exactly once in {q:?}");
    }
    assert_eq!(param(&q, "response_type"), ["code"]);
    assert_eq!(param(&q, "client_id"), [CLIENT]);
    assert_eq!(param(&q, "redirect_uri"), [REDIRECT]);
    assert_eq!(param(&q, "scope"), ["openid email profile"]);
    assert_eq!(param(&q, "state"), [start.state.as_str()]);
    assert_eq!(param(&q, "nonce"), [start.nonce.as_str()]);
    assert_eq!(param(&q, "code_challenge_method"), ["S256"]);
    assert_eq!(param(&q, "prompt"), ["login"]);
    assert_eq!(
        param(&q, "p"),
        ["policy"],
        "the endpoint's own query is kept"
    );
    let challenge = param(&q, "code_challenge")[0];
    assert_eq!(challenge.len(), 43);
    assert_eq!(
        challenge,
        URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            start.pkce_verifier.as_bytes()
        ))
    );
    assert!(!start.authorize_url.contains(&start.pkce_verifier));
    let unreserved = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    };
    assert!((43..=128).contains(&start.pkce_verifier.len()) && unreserved(&start.pkce_verifier));

    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let s = p.begin_login().unwrap();
        assert_eq!((s.state.len(), s.nonce.len()), (43, 43));
        assert!(seen.insert(s.state) && seen.insert(s.nonce) && seen.insert(s.pkce_verifier));
    }
}

#[tokio::test]
async fn login_start_debug_is_redacted() {
    let (_idp, p) = ready_idp().await;
    let s = p.begin_login().unwrap();
    let text = format!("{s:?}");
    assert!(
        !text.contains(&s.state) && !text.contains(&s.nonce) && !text.contains(&s.pkce_verifier)
    );
}

#[tokio::test]
async fn authorization_response_iss_parameter() {
    let (idp, p) = ready_idp().await;
    let iss = idp.issuer();
    assert!(p.check_authorization_response_iss(Some(&iss)).is_ok());
    assert!(p.check_authorization_response_iss(None).is_ok());
    for bad in ["https://evil-idp.example", &format!("{iss}/"), ""] {
        let e = p.check_authorization_response_iss(Some(bad)).unwrap_err();
        assert_eq!((e.reason(), e.status()), ("iss_mismatch", 400));
    }
    let mut doc = default_discovery(&iss);
    doc["authorization_response_iss_parameter_supported"] = json!(true);
    idp.set(|s| s.discovery = Some(Reply::json(200, &doc.to_string())));
    p.discover().await.unwrap();
    assert_eq!(
        p.check_authorization_response_iss(None)
            .unwrap_err()
            .reason(),
        "iss_mismatch"
    );
    assert!(p.check_authorization_response_iss(Some(&iss)).is_ok());
}

#[tokio::test]
async fn end_session_url_when_advertised() {
    let (idp, p) = ready_idp().await;
    let url = p
        .end_session_url(Some("ID.TOK.EN"), "https://app.example.com/", "st")
        .unwrap();
    assert!(url.starts_with(&format!("{}/logout?", idp.issuer())));
    let q = query(&url);
    assert_eq!(param(&q, "id_token_hint"), ["ID.TOK.EN"]);
    assert_eq!(
        param(&q, "post_logout_redirect_uri"),
        ["https://app.example.com/"]
    );
    assert_eq!(param(&q, "state"), ["st"]);
    assert_eq!(param(&q, "client_id"), [CLIENT]);
    assert!(
        p.end_session_url(None, "https://app.example.com/", "st")
            .is_some_and(|u| !u.contains("id_token_hint"))
    );

    let mut doc = default_discovery(&idp.issuer());
    doc.as_object_mut().unwrap().remove("end_session_endpoint");
    idp.set(|s| s.discovery = Some(Reply::json(200, &doc.to_string())));
    let p2 = idp.provider();
    p2.discover().await.unwrap();
    assert!(
        p2.end_session_url(Some("x"), "https://app.example.com/", "st")
            .is_none()
    );
}

// === code exchange and login ===

#[tokio::test]
async fn full_login_without_userinfo() {
    let (idp, p) = ready_idp().await;
    let start = p.begin_login().unwrap();
    idp.issue(&start.nonce, json!({"tenant": "t1"}));
    let out = p
        .finish_login("the-code", &start.pkce_verifier, &start.nonce)
        .await
        .unwrap();
    assert_eq!(out.identity.sub, "u-alice");
    assert_eq!(out.identity.email.as_deref(), Some("alice@example.com"));
    assert_eq!(out.identity.email_verified, Some(true));
    assert_eq!(out.identity.preferred_username.as_deref(), Some("alice"));
    assert_eq!(out.identity.groups, ["eng"]);
    assert_eq!(out.identity.claims["tenant"], "t1");
    assert_eq!(
        (
            out.access_token.expose(),
            out.refresh_token
                .as_ref()
                .map(crate::secret::Secret::expose),
            out.sid.as_deref()
        ),
        ("AT", Some("RT"), Some("sid-1"))
    );
    assert!(
        out.access_expires_at
            .is_some_and(|t| t > SystemTime::now() + Duration::from_secs(3500))
    );
    assert_eq!(
        idp.srv.requests_to("/userinfo").len(),
        0,
        "no userinfo call when claims are complete"
    );
    let dbg = format!("{out:?}");
    assert!(
        !dbg.contains(out.id_token.expose()) && !dbg.contains("\"AT\"") && !dbg.contains("RT\"")
    );

    let reqs = idp.srv.requests_to("/token");
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    let basic = r.headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap();
    assert_eq!(
        String::from_utf8(STANDARD.decode(basic).unwrap()).unwrap(),
        "portcullis:s3cr%3At%25"
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(r.body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(param(&form, "grant_type"), ["authorization_code"]);
    assert_eq!(param(&form, "code"), ["the-code"]);
    assert_eq!(param(&form, "redirect_uri"), [REDIRECT]);
    assert_eq!(
        param(&form, "code_verifier"),
        [start.pkce_verifier.as_str()]
    );
    assert!(param(&form, "client_secret").is_empty());
}

#[tokio::test]
async fn login_rejects_bad_id_tokens_with_reasons() {
    let (idp, p) = ready_idp().await;
    let start = p.begin_login().unwrap();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("wrong nonce", json!({"nonce": "other"}), "nonce_mismatch"),
        ("wrong aud", json!({"aud": "other"}), "aud_mismatch"),
        ("expired", json!({"exp": now() - 3600}), "expired"),
        (
            "at_hash of another token",
            json!({"at_hash": at_hash("B")}),
            "at_hash_mismatch",
        ),
    ];
    for (name, extra, want) in cases {
        idp.issue(&start.nonce, extra);
        let e = p
            .finish_login("c", &start.pkce_verifier, &start.nonce)
            .await
            .unwrap_err();
        assert_eq!((e.reason(), e.status()), (want, 401), "case {name}");
    }
    assert_eq!(
        idp.srv.requests_to("/userinfo").len(),
        0,
        "no userinfo after a rejected ID token"
    );
}

#[tokio::test]
async fn userinfo_fills_missing_claims_only() {
    let (idp, p) = ready_idp().await;
    let start = p.begin_login().unwrap();
    idp.issue(&start.nonce, json!({"email": null, "email_verified": null}));
    idp.set(|s| {
        s.userinfo = Reply::json(
            200,
            &json!({"sub": "u-alice", "email": "alice@example.com", "email_verified": "true", "groups": ["admins"], "tenant": "t1"}).to_string(),
        )
        .header("content-type", "application/json; charset=utf-8")
    });
    let out = p
        .finish_login("c", &start.pkce_verifier, &start.nonce)
        .await
        .unwrap();
    assert_eq!(out.identity.email.as_deref(), Some("alice@example.com"));
    assert_eq!(
        out.identity.email_verified, None,
        "a string is not a boolean"
    );
    assert_eq!(
        out.identity.groups,
        ["eng"],
        "the ID token wins over userinfo"
    );
    assert_eq!(out.identity.claims["tenant"], "t1");
    let reqs = idp.srv.requests_to("/userinfo");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].headers["authorization"], "Bearer AT");
}

#[tokio::test]
async fn userinfo_failures() {
    let (idp, p) = ready_idp().await;
    let start = p.begin_login().unwrap();
    idp.issue(&start.nonce, json!({"groups": null}));
    let cases: Vec<(&str, Reply, &str, u16)> = vec![
        (
            "other sub",
            Reply::json(200, r#"{"sub":"u-mallory","groups":["admins"]}"#),
            "userinfo_sub_mismatch",
            401,
        ),
        (
            "no sub",
            Reply::json(200, r#"{"groups":["admins"]}"#),
            "userinfo_sub_mismatch",
            401,
        ),
        (
            "top-level array",
            Reply::json(200, r#"[{"sub":"u-alice"}]"#),
            "idp_bad_response",
            401,
        ),
        (
            "signed userinfo",
            Reply::json(200, "a.b.c").header("content-type", "application/jwt"),
            "idp_bad_response",
            401,
        ),
        (
            "duplicate sub",
            Reply::json(200, r#"{"sub":"u-alice","sub":"u-bob"}"#),
            "idp_bad_response",
            401,
        ),
        ("401", Reply::json(401, "{}"), "idp_bad_response", 401),
        ("500", Reply::json(500, "{}"), "idp_unavailable", 503),
    ];
    for (name, reply, reason, status) in cases {
        idp.set(|s| s.userinfo = reply);
        let e = p
            .finish_login("c", &start.pkce_verifier, &start.nonce)
            .await
            .unwrap_err();
        assert_eq!((e.reason(), e.status()), (reason, status), "case {name}");
    }
}

#[tokio::test]
async fn token_endpoint_error_mapping() {
    let (idp, p) = ready_idp().await;
    let start = p.begin_login().unwrap();
    let good_id = idp
        .key
        .token(&id_claims(&idp.issuer(), &start.nonce, json!({})));
    let body = |v: Value| v.to_string();
    let target = TestServer::start(|_r| Reply::json(200, "{}")).await;
    let cases: Vec<(&str, Reply, &str, u16)> = vec![
        (
            "invalid_grant",
            Reply::json(
                400,
                r#"{"error":"invalid_grant","error_description":"<b>"}"#,
            ),
            "invalid_grant",
            400,
        ),
        (
            "invalid_client json",
            Reply::json(401, r#"{"error":"invalid_client"}"#),
            "invalid_client",
            502,
        ),
        (
            "invalid_client 400",
            Reply::json(400, r#"{"error":"invalid_client"}"#),
            "invalid_client",
            502,
        ),
        (
            "bare 401",
            Reply::json(401, "<html>").header("content-type", "text/html"),
            "invalid_client",
            502,
        ),
        (
            "other error",
            Reply::json(400, r#"{"error":"invalid_request"}"#),
            "idp_error",
            502,
        ),
        (
            "hostile error code",
            Reply::json(400, r#"{"error":"<script>"}"#),
            "idp_error",
            502,
        ),
        (
            "500 html",
            Reply::json(500, "<html>").header("content-type", "text/html"),
            "idp_unavailable",
            503,
        ),
        (
            "503",
            Reply::json(503, "").header("retry-after", "30"),
            "idp_unavailable",
            503,
        ),
        (
            "400 without error",
            Reply::json(400, "{}"),
            "idp_bad_response",
            503,
        ),
        (
            "200 html",
            Reply::json(200, "<html>").header("content-type", "text/html"),
            "idp_bad_response",
            503,
        ),
        (
            "truncated",
            Reply::json(200, r#"{"access_token":"x","id_tok"#),
            "idp_bad_response",
            503,
        ),
        ("array", Reply::json(200, "[]"), "idp_bad_response", 503),
        ("null", Reply::json(200, "null"), "idp_bad_response", 503),
        ("empty", Reply::json(200, ""), "idp_bad_response", 503),
        (
            "wrong types",
            Reply::json(
                200,
                r#"{"access_token":123,"id_token":null,"token_type":"Bearer"}"#,
            ),
            "idp_bad_response",
            503,
        ),
        (
            "no id_token",
            Reply::json(
                200,
                &body(json!({"access_token":"AT","token_type":"Bearer"})),
            ),
            "idp_bad_response",
            503,
        ),
        (
            "id_token object",
            Reply::json(
                200,
                &body(json!({"access_token":"AT","token_type":"Bearer","id_token":{}})),
            ),
            "idp_bad_response",
            503,
        ),
        (
            "token_type mac",
            Reply::json(
                200,
                &body(json!({"access_token":"AT","token_type":"mac","id_token":good_id})),
            ),
            "idp_bad_response",
            503,
        ),
        (
            "no access_token",
            Reply::json(
                200,
                &body(json!({"token_type":"Bearer","id_token":good_id})),
            ),
            "idp_bad_response",
            503,
        ),
        (
            "duplicate id_token",
            Reply::json(
                200,
                &format!(
                    r#"{{"access_token":"AT","token_type":"Bearer","id_token":"{good_id}","id_token":"x"}}"#
                ),
            ),
            "idp_bad_response",
            503,
        ),
        (
            "unterminated string",
            Reply::json(200, "{\"access_token\":\"\u{fffd}"),
            "idp_bad_response",
            503,
        ),
        (
            "nested arrays",
            Reply::json(200, &"[".repeat(100_000)),
            "idp_bad_response",
            503,
        ),
        (
            "oversized",
            Reply::json(200, &format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024))),
            "idp_bad_response",
            503,
        ),
        (
            "redirect",
            Reply::json(307, "").header("location", &target.url("/token")),
            "idp_bad_response",
            503,
        ),
        (
            "slow",
            Reply::json(200, &token_body(&good_id)).delay(Duration::from_secs(5)),
            "idp_timeout",
            503,
        ),
    ];
    for (name, reply, reason, status) in cases {
        idp.set(|s| s.token = reply);
        let e = p
            .finish_login("c", &start.pkce_verifier, &start.nonce)
            .await
            .unwrap_err();
        assert_eq!((e.reason(), e.status()), (reason, status), "case {name}");
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains(SECRET) && !text.contains(&start.pkce_verifier) && !text.contains("<"),
            "case {name}: {text}"
        );
    }
    assert_eq!(target.hits(), 0, "redirects are never followed");
    // The token POST is sent once per login, never retried.
    assert_eq!(idp.srv.requests_to("/token").len(), 25);
}

#[tokio::test]
async fn unreachable_token_endpoint() {
    let (idp, p) = ready_idp().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut doc = default_discovery(&idp.issuer());
    doc["token_endpoint"] = json!(format!("http://127.0.0.1:{port}/token"));
    idp.set(|s| s.discovery = Some(Reply::json(200, &doc.to_string())));
    p.discover().await.unwrap();
    let start = p.begin_login().unwrap();
    let e = p
        .finish_login("c", &start.pkce_verifier, &start.nonce)
        .await
        .unwrap_err();
    assert_eq!((e.reason(), e.status()), ("idp_unavailable", 503));
}

#[tokio::test]
async fn key_rotation_keeps_logins_working() {
    let (idp, p) = ready_idp().await;
    let new_key = EcKey::generate("k2");
    idp.set(|s| s.jwks = vec![new_key.jwk()]);
    let start = p.begin_login().unwrap();
    let id = new_key.token(&id_claims(&idp.issuer(), &start.nonce, json!({})));
    idp.set(|s| s.token = Reply::json(200, &token_body(&id)));
    let out = p
        .finish_login("c", &start.pkce_verifier, &start.nonce)
        .await
        .unwrap();
    assert_eq!(out.identity.sub, "u-alice");
    assert_eq!(idp.srv.requests_to("/jwks").len(), 2);
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_kids_at_login_refetch_once_per_interval() {
    let (idp, p) = ready_idp().await;
    let start = p.begin_login().unwrap();
    idp.set(|s| {
        s.random_kid_tokens = true;
        s.nonce = start.nonce.clone();
    });
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (p, v, n) = (p.clone(), start.pkce_verifier.clone(), start.nonce.clone());
        tasks.push(tokio::spawn(
            async move { p.finish_login("c", &v, &n).await },
        ));
    }
    for t in tasks {
        let e = t.await.unwrap().unwrap_err();
        assert_eq!((e.reason(), e.status()), ("unknown_kid", 401));
    }
    assert_eq!(
        idp.srv.requests_to("/jwks").len(),
        2,
        "discovery + exactly one re-fetch"
    );

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(31)).await;
    tokio::time::resume();
    let e = p
        .finish_login("c", &start.pkce_verifier, &start.nonce)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "unknown_kid");
    assert_eq!(
        idp.srv.requests_to("/jwks").len(),
        3,
        "one more after the interval"
    );
}

// === errors and identity ===

#[test]
fn login_error_reasons_and_statuses() {
    let cases: Vec<(LoginError, &str, u16)> = vec![
        (
            LoginError::Token(TokenError::BadSignature),
            "bad_signature",
            401,
        ),
        (LoginError::InvalidGrant, "invalid_grant", 400),
        (LoginError::InvalidClient, "invalid_client", 502),
        (
            LoginError::from_authorization_error("access_denied"),
            "idp_error",
            403,
        ),
        (
            LoginError::from_authorization_error("login_required"),
            "idp_error",
            403,
        ),
        (
            LoginError::from_authorization_error("server_error"),
            "idp_error",
            503,
        ),
        (
            LoginError::from_authorization_error("<script>alert(1)</script>"),
            "idp_error",
            502,
        ),
        (LoginError::Unavailable, "idp_unavailable", 503),
        (LoginError::Timeout, "idp_timeout", 503),
        (LoginError::NotReady(NotReady), "idp_unavailable", 503),
        (
            LoginError::BadResponse {
                endpoint: Endpoint::Token,
                what: "x",
            },
            "idp_bad_response",
            503,
        ),
        (
            LoginError::BadResponse {
                endpoint: Endpoint::Userinfo,
                what: "x",
            },
            "idp_bad_response",
            401,
        ),
        (
            LoginError::UserinfoSubMismatch,
            "userinfo_sub_mismatch",
            401,
        ),
        (LoginError::AuthorizationIssMismatch, "iss_mismatch", 400),
    ];
    for (e, reason, status) in cases {
        assert_eq!((e.reason(), e.status()), (reason, status), "{e:?}");
    }
    assert!(
        !LoginError::from_authorization_error("<script>")
            .to_string()
            .contains('<')
    );
}

#[test]
fn identity_mapping() {
    let claims = json!({
        "sub": "u-bob", "email": "bob@example.com", "email_verified": "true",
        "preferred_username": 5, "roles": "admins", "groups": ["eng", 1, null, "ops"],
    });
    let id = identity_from_claims(claims.as_object().unwrap().clone(), "groups");
    assert_eq!(id.sub, "u-bob");
    assert_eq!(id.email_verified, None);
    assert_eq!(id.preferred_username, None);
    assert_eq!(id.groups, ["eng", "ops"]);
    assert_eq!(id.claims.len(), 6);
    let id = identity_from_claims(claims.as_object().unwrap().clone(), "roles");
    assert_eq!(id.groups, ["admins"]);
    let id = identity_from_claims(
        json!({"sub":"x","email_verified":false})
            .as_object()
            .unwrap()
            .clone(),
        "groups",
    );
    assert_eq!((id.email_verified, id.groups.len()), (Some(false), 0));
}

#[test]
fn provider_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Provider>();
    assert_send_sync::<JwksCache>();
    assert_send_sync::<IdpHttp>();
}
