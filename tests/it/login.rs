//! The login flow end to end: redirect, IdP, callback, session, identity headers, sign-out.

use http::{Method, StatusCode};

use crate::support::*;

struct Env {
    idp: portcullis::devidp::DevIdp,
    up: Upstream,
    proxy: Proxy,
}

async fn env(extra: &str) -> Env {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, extra)).await;
    Env { idp, up, proxy }
}

#[tokio::test]
async fn full_login_reaches_upstream_with_identity_headers() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    let r = b
        .login("https://app.example.com/private/page?x=1&y=%2F")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("UPSTREAM-SECRET-/private/page"));
    let seen = e.up.last();
    assert_eq!(seen.uri, "/private/page?x=1&y=%2F");
    assert_eq!(seen.one("x-auth-request-user").as_deref(), Some("u-alice"));
    assert_eq!(
        seen.one("x-auth-request-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        seen.one("x-auth-request-preferred-username").as_deref(),
        Some("alice")
    );
    assert_eq!(seen.one("x-auth-request-groups").as_deref(), Some("eng"));
    assert_eq!(seen.one("x-tenant").as_deref(), Some("t1"));
    assert_eq!(
        seen.one("cookie"),
        None,
        "own cookies must not reach the upstream"
    );
    assert_eq!(seen.one("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        seen.one("x-forwarded-host").as_deref(),
        Some("app.example.com")
    );
    // The IdP saw exactly one token request, with a PKCE verifier.
    assert_eq!(e.idp.counts().token, 1);
    // The upstream's attempt to set the proxy's cookie was dropped; its own cookie passed.
    assert_eq!(b.cookie("upstream").as_deref(), Some("ok"));
    assert_ne!(b.cookie("_portcullis").as_deref(), Some("from-upstream"));
}

#[tokio::test]
async fn unauthenticated_browser_gets_redirect_and_api_gets_401() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    let r = b.get("https://app.example.com/private").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.location().unwrap();
    assert!(
        loc.starts_with(&format!("{}/authorize?", e.idp.issuer())),
        "{loc}"
    );
    let q: std::collections::HashMap<String, String> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 22 && q["nonce"].len() >= 22);
    assert_eq!(q["redirect_uri"], "https://app.example.com/oauth2/callback");
    assert_eq!(r.headers["cache-control"], "no-store");
    let login_cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("_portcullis_login"))
        .expect("login cookie");
    let lc = login_cookie.to_ascii_lowercase();
    assert!(
        lc.contains("httponly")
            && lc.contains("samesite=lax")
            && lc.contains("secure")
            && lc.contains("max-age=600"),
        "{login_cookie}"
    );
    // API clients: 401 JSON, no redirect.
    let mut api = Browser::new(e.proxy.addr);
    api.accept = "application/json";
    let r = api.get("https://app.example.com/private").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(r.json()["error"], "unauthenticated");
    let r = api
        .request(
            Method::POST,
            "https://app.example.com/private",
            &[("accept", "text/html")],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a POST is never redirected to the IdP"
    );
    assert_eq!(e.up.count(), 0, "the upstream saw nothing");
    assert_eq!(e.idp.counts().token, 0);
}

#[tokio::test]
async fn session_cookie_attributes() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    let r = b.get("https://app.example.com/private").await;
    let authorize = r.location().unwrap();
    let r = b.get(&authorize).await; // auto-login at the IdP
    let callback = r.location().unwrap();
    let r = b.get(&callback).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location().as_deref(), Some("/private"));
    let cookies = r.set_cookies();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("_portcullis="))
        .expect("session cookie");
    let lc = session.to_ascii_lowercase();
    for attr in ["path=/", "httponly", "secure", "samesite=lax"] {
        assert!(lc.contains(attr), "{attr} missing in {session}");
    }
    assert!(!lc.contains("domain="), "{session}");
    assert!(session.len() < 4096);
    let value = session
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1;
    assert!(value.len() >= 22, "at least 128 bits");
    assert!(!value.contains("alice"));
    // The login cookie is cleared by the callback.
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("_portcullis_login")
                && c.to_ascii_lowercase().contains("max-age=0")),
        "{cookies:?}"
    );
}

#[tokio::test]
async fn host_prefixed_cookie_name_by_default() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let issuer = idp.issuer();
    let upstream = up.url();
    let routes = route("/", &upstream, "");
    let proxy =
        Proxy::start(move |_| config(&issuer, "https://app.example.com", "", "", &routes)).await;
    let b = Browser::new(proxy.addr);
    let r = b.login("https://app.example.com/").await;
    assert_eq!(r.status, StatusCode::OK);
    let name = b
        .cookie_names()
        .into_iter()
        .find(|n| n.starts_with("__Host-portcullis"))
        .expect("__Host- cookie");
    assert_eq!(name, "__Host-portcullis");
}

#[tokio::test]
async fn tampered_unknown_and_garbage_cookies_are_no_session() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    b.login("https://app.example.com/").await;
    let good = b.cookie("_portcullis").unwrap();
    let mut api = Browser::new(e.proxy.addr);
    api.accept = "application/json";
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let cases = [
        String::from_utf8(flipped).unwrap(),
        good[..good.len() / 2].to_string(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "%%%".to_string(),
        "x".repeat(4000),
    ];
    let before = e.up.count();
    for bad in cases {
        api.set_cookie("_portcullis", &bad);
        let r = api.get("https://app.example.com/private").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "cookie {bad:.20}");
        assert!(
            r.set_cookies()
                .iter()
                .any(|c| c.starts_with("_portcullis=")
                    && c.to_ascii_lowercase().contains("max-age=0")),
            "a bad cookie is cleared"
        );
    }
    assert_eq!(e.up.count(), before);
    // The real cookie still works.
    api.set_cookie("_portcullis", &good);
    assert_eq!(
        api.get("https://app.example.com/private").await.status,
        StatusCode::OK
    );
    // Two session cookies are ambiguous: no session.
    let r = api
        .request(
            Method::GET,
            "https://app.example.com/private",
            &[("cookie", &format!("_portcullis={good}; _portcullis=other"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn callback_state_not_bound_to_this_browser_is_refused_without_token_call() {
    let e = env("").await;
    let victim = Browser::new(e.proxy.addr);
    let r = victim.get("https://app.example.com/private").await;
    let r = victim.get(&r.location().unwrap()).await;
    let callback = r.location().unwrap();
    // The attacker's browser (no login cookie) replays the victim's callback URL.
    let attacker = Browser::new(e.proxy.addr);
    let r = attacker.get(&callback).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.set_cookies()
            .iter()
            .all(|c| !c.starts_with("_portcullis=")),
        "no session cookie"
    );
    // Missing, empty, duplicated and random states.
    for q in [
        "code=x",
        "state=&code=x",
        "state=a&state=b&code=x",
        "code=a&code=b&state=x",
        &format!("state={}&code=x", "A".repeat(8192)),
    ] {
        let r = victim
            .get(&format!("https://app.example.com/oauth2/callback?{q}"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q:.40}");
        assert!(!r.body.contains("AAAAAAAA"), "state not reflected");
    }
    for i in 0..50 {
        let r = attacker
            .get(&format!(
                "https://app.example.com/oauth2/callback?code=c{i}&state=s{i}"
            ))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        e.idp.counts().token,
        0,
        "no token request for a state this browser did not start"
    );
    // The victim's own callback still works afterwards.
    let r = victim.get(&callback).await;
    assert_eq!(r.status, StatusCode::FOUND);
}

#[tokio::test]
async fn login_cookies_are_bounded_and_parallel_logins_land_on_their_own_rd() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    let mut authorize = vec![];
    for p in ["/a", "/b", "/c"] {
        let r = b.get(&format!("https://app.example.com{p}")).await;
        authorize.push(r.location().unwrap());
    }
    // Complete in the order c, a, b: each lands on its own target.
    for (i, want) in [(2, "/c"), (0, "/a"), (1, "/b")] {
        let r = b.get(&authorize[i]).await;
        let r = b.get(&r.location().unwrap()).await;
        assert_eq!(r.status, StatusCode::FOUND);
        assert_eq!(r.location().as_deref(), Some(want));
    }
    // Many tabs: at most 5 login cookies kept.
    let b = Browser::new(e.proxy.addr);
    for i in 0..12 {
        b.get(&format!("https://app.example.com/t{i}")).await;
    }
    let n = b
        .cookie_names()
        .iter()
        .filter(|n| n.starts_with("_portcullis_login"))
        .count();
    assert!(n <= 5, "{n} login cookies");
}

#[tokio::test]
async fn sign_out_ends_the_session_and_replay_fails() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    b.login("https://app.example.com/").await;
    let old = b.cookie("_portcullis").unwrap();
    let r = b
        .get("https://app.example.com/oauth2/sign_out?rd=/bye")
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.location().unwrap();
    assert!(
        loc.starts_with(&format!("{}/end_session?", e.idp.issuer())),
        "{loc}"
    );
    let q: std::collections::HashMap<String, String> = url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(q["post_logout_redirect_uri"], "https://app.example.com/bye");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(
        r.set_cookies()
            .iter()
            .any(|c| c.starts_with("_portcullis=") && c.to_ascii_lowercase().contains("max-age=0"))
    );
    let r = b.get(&loc).await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "the IdP sends the browser back"
    );
    // Replaying the old cookie gets nothing.
    let mut api = Browser::new(e.proxy.addr);
    api.accept = "application/json";
    api.set_cookie("_portcullis", &old);
    let r = api.get("https://app.example.com/private").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Sign-out without a session still clears and redirects.
    let fresh = Browser::new(e.proxy.addr);
    let r = fresh
        .get("https://app.example.com/oauth2/sign_out?rd=//evil.com")
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location().as_deref(), Some("/"));
}

#[tokio::test]
async fn userinfo_endpoint() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    let r = b.get("https://app.example.com/oauth2/userinfo").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    b.login("https://app.example.com/").await;
    let r = b.get("https://app.example.com/oauth2/userinfo").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let v = r.json();
    assert_eq!(
        v,
        serde_json::json!({"user":"u-alice","email":"alice@example.com","preferred_username":"alice","groups":["eng"]})
    );
}

#[tokio::test]
async fn new_session_id_on_every_login() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    b.login("https://app.example.com/").await;
    let first = b.cookie("_portcullis").unwrap();
    // Log in again with the old cookie still present: a new id, and the old one is dead.
    let r = b
        .get("https://app.example.com/oauth2/start?rd=/again")
        .await;
    let r = b.get(&r.location().unwrap()).await;
    let r = b.get(&r.location().unwrap()).await;
    assert_eq!(r.location().as_deref(), Some("/again"));
    let second = b.cookie("_portcullis").unwrap();
    assert_ne!(first, second);
    let mut api = Browser::new(e.proxy.addr);
    api.accept = "application/json";
    api.set_cookie("_portcullis", &first);
    assert_eq!(
        api.get("https://app.example.com/x").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn policy_denies_with_403_and_allows_members() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    b.login("https://app.example.com/").await;
    let before = e.up.count();
    let r = b.get("https://app.example.com/admin/panel").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!r.body.contains("UPSTREAM-SECRET"));
    assert_eq!(e.up.count(), before);
    e.idp.set_auto_login(Some(bob()));
    let bb = Browser::new(e.proxy.addr);
    let r = bb.login("https://app.example.com/admin/panel").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        e.up.last().one("x-auth-request-groups").as_deref(),
        Some("admins")
    );
}

#[tokio::test]
async fn key_rotation_keeps_logins_working() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    b.login("https://app.example.com/").await;
    let jwks_before = e.idp.counts().jwks;
    e.idp.rotate_key(false);
    let b2 = Browser::new(e.proxy.addr);
    let r = b2.login("https://app.example.com/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        e.idp.counts().jwks,
        jwks_before + 1,
        "one JWKS re-fetch for the new kid"
    );
    // The earlier session keeps working: no IdP call per request.
    assert_eq!(
        b.get("https://app.example.com/x").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn idp_token_errors_map_to_pages() {
    let e = env("").await;
    for (status, body, want) in [
        (
            400u16,
            r#"{"error":"invalid_grant"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            401,
            r#"{"error":"invalid_client"}"#,
            StatusCode::BAD_GATEWAY,
        ),
        (500, "<html>oops</html>", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        e.idp.set_token_error(Some((status, body.to_string())));
        let b = Browser::new(e.proxy.addr);
        let r = b.get("https://app.example.com/p").await;
        let r = b.get(&r.location().unwrap()).await;
        let r = b.get(&r.location().unwrap()).await;
        assert_eq!(r.status, want, "IdP {status}");
        assert!(b.cookie("_portcullis").is_none());
        assert!(!r.body.contains("oops"), "the IdP's body is never rendered");
    }
}

#[tokio::test]
async fn idp_down_at_callback_is_503_and_sessions_keep_working() {
    let e = env("").await;
    let b = Browser::new(e.proxy.addr);
    b.login("https://app.example.com/").await;
    let pending = Browser::new(e.proxy.addr);
    let r = pending.get("https://app.example.com/p").await;
    let r = pending.get(&r.location().unwrap()).await;
    let callback = r.location().unwrap();
    let Env {
        idp,
        up: _up,
        proxy: _proxy,
    } = e;
    idp.shutdown().await;
    let r = pending.get(&callback).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        b.get("https://app.example.com/x").await.status,
        StatusCode::OK
    );
}
