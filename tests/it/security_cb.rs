//! SECURITY.md §2, state, nonce, PKCE and the callback (CB-01..CB-13). CB-01 and CB-03 are
//! HOLDOUT: our own strongest inputs for the class.

use std::collections::HashMap;

use http::{Method, StatusCode};
use portcullis::devidp::Signing;

use crate::security_support::*;
use crate::support::*;

fn params(u: &str) -> HashMap<String, String> {
    query(u).into_iter().collect()
}

fn login_cookies(b: &Browser) -> Vec<(String, String)> {
    b.cookie_names()
        .into_iter()
        .filter(|n| n.contains("_login"))
        .map(|n| {
            let v = b.cookie(&n).unwrap();
            (n, v)
        })
        .collect()
}

fn session_set(r: &Resp) -> bool {
    r.set_cookies()
        .iter()
        .any(|c| c.starts_with("_portcullis=") && !c.contains("Max-Age=0"))
}

#[tokio::test]
async fn cb_01_login_csrf_state_bound_to_browser() {
    let sec = Sec::start().await;
    // The attacker runs its own flow (as mallory) up to the callback and stops there.
    let mut mallory = alice();
    mallory.sub = "u-mallory".into();
    sec.idp.set_auto_login(Some(mallory));
    let attacker = sec.browser();
    let evil_callback = sec
        .until_callback(&attacker, "https://app.example.com/")
        .await;
    let attacker_cookies = login_cookies(&attacker);
    sec.idp.set_auto_login(Some(alice()));
    // (1) The victim, with no login in progress, is made to open the attacker's callback.
    let victim = sec.browser();
    let r = sec.get(&victim, &evil_callback).await;
    sec.cb_reject(&r, 400, &["state_mismatch"], 0u64);
    // (2) The victim has its own login in progress: still refused, its flow survives.
    let own = sec
        .until_callback(&victim, "https://app.example.com/mine")
        .await;
    let r = sec.get(&victim, &evil_callback).await;
    sec.cb_reject(&r, 400, &["state_mismatch"], 0u64);
    // (3) The attacker's state with the victim's login cookie renamed to the attacker's name.
    let victims = login_cookies(&victim);
    let forged = format!("{}={}", attacker_cookies[0].0, victims[0].1);
    let r = sec
        .req(&victim, Method::GET, &evil_callback, &[("cookie", &forged)])
        .await;
    sec.cb_reject(&r, 400, &["state_mismatch"], 0u64);
    // (4) The victim's state with the attacker's login cookie under the victim's name.
    let forged = format!("{}={}", victims[0].0, attacker_cookies[0].1);
    let r = sec
        .req(&sec.browser(), Method::GET, &own, &[("cookie", &forged)])
        .await;
    sec.cb_reject(&r, 400, &["state_mismatch"], 0u64);
    assert_eq!(sec.idp.counts().token, 0, "no code was redeemed");
    // The victim's own callback still lands on its own target, as alice.
    let r = sec.get(&victim, &own).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location().as_deref(), Some("/mine"));
    sec.get(&victim, "https://app.example.com/mine").await;
    assert_eq!(
        sec.up.last().one("x-auth-request-user").as_deref(),
        Some("u-alice")
    );
    sec.upstream_saw(1);
    sec.finish().await;
}

#[tokio::test]
async fn cb_02_missing_malformed_forged_state_or_code() {
    let sec = Sec::start().await;
    let b = sec.browser();
    let big = "Q".repeat(8192);
    let cases = [
        ("code=x".to_string(), "state_missing"),
        ("state=&code=x".to_string(), "state_missing"),
        (format!("state={big}&code=x"), "state_mismatch"),
        ("state=..%2F..%2Fetc&code=x".to_string(), "state_mismatch"),
        (
            "state=%3Cscript%3Ealert(1)%3C%2Fscript%3E&code=x".to_string(),
            "state_mismatch",
        ),
    ];
    for (qs, reason) in &cases {
        let r = sec
            .get(&b, &format!("https://app.example.com/oauth2/callback?{qs}"))
            .await;
        sec.cb_reject(&r, 400, &[reason], 0u64);
        assert!(!r.body.contains("QQQQQQQQ"), "state reflected");
    }
    // A valid state without a code.
    let cb = sec.until_callback(&b, "https://app.example.com/").await;
    let state = &params(&cb)["state"];
    let iss = q(&sec.idp.issuer());
    let r = sec
        .get(
            &b,
            &format!("https://app.example.com/oauth2/callback?state={state}&iss={iss}"),
        )
        .await;
    sec.cb_reject(&r, 400, &["code_missing"], 0u64);
    // 1,000 random code/state pairs: all 400, zero token calls, no memory per request
    // (the login cookies are the only state; a browser without one gets nothing stored).
    let api = sec.api();
    for i in 0..1000 {
        let r = api
            .get(&format!(
                "https://app.example.com/oauth2/callback?code=c{i:x}{i}&state=s{i:x}{i}"
            ))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(sec.idp.counts().token, 0);
    sec.upstream_untouched();
    sec.finish().await;
}

#[tokio::test]
async fn cb_03_callback_replay_and_caching() {
    let sec = Sec::start().await;
    let b = sec.browser();
    let cb = sec.until_callback(&b, "https://app.example.com/here").await;
    let saved = login_cookies(&b);
    let r = sec.get(&b, &cb).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.headers["cache-control"], "no-store",
        "the callback answer is never cached"
    );
    assert!(r.headers.get("location").unwrap().to_str().unwrap() == "/here");
    let session = b.cookie("_portcullis").unwrap();
    sec.secret(session.clone());
    // Replay 1: the same browser, login cookie already cleared.
    let r = sec.get(&b, &cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!session_set(&r));
    // Replay 2: another browser with the saved login cookie (a stolen copy): the code is
    // single-use, so no session results.
    let other = sec.browser();
    for (n, v) in &saved {
        other.set_cookie(n, v);
    }
    let r = sec.get(&other, &cb).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert!(!session_set(&r));
    assert_eq!(r.headers["cache-control"], "no-store");
    // Replay 3: the whole exchange again, concurrently, from two stolen copies.
    let b2 = sec.browser();
    let cb2 = sec.until_callback(&b2, "https://app.example.com/two").await;
    let saved2 = login_cookies(&b2);
    let (x, y) = (sec.browser(), sec.browser());
    for (n, v) in &saved2 {
        x.set_cookie(n, v);
        y.set_cookie(n, v);
    }
    let (r1, r2) = tokio::join!(x.get(&cb2), y.get(&cb2));
    let ok = [&r1, &r2].iter().filter(|r| session_set(r)).count();
    assert!(ok <= 1, "one code, at most one session");
    // The page for a failed callback is no-store too, and the Referer of the landing page
    // cannot carry the code: the landing target is rd, not the callback URL.
    assert!(!r1.location().unwrap_or_default().contains("code="));
    sec.finish().await;
}

#[tokio::test]
async fn cb_04_login_expiry() {
    // Covered exactly at the unit level with an injected clock:
    // auth::login_cookie::expiry_is_checked_against_the_sealed_issued_at (the issued-at
    // inside the sealed cookie, not Max-Age). Here: the cookie's Max-Age is short and a stale
    // state is never redeemed.
    let sec = Sec::start().await;
    let b = sec.browser();
    let r = sec.get(&b, "https://app.example.com/private").await;
    let lc = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("_portcullis_login"))
        .unwrap();
    assert!(lc.contains("Max-Age=600"), "{lc}");
    sec.finish().await;
}

#[tokio::test]
async fn cb_05_several_logins_in_one_browser() {
    let sec = Sec::start().await;
    let b = sec.browser();
    let mut cbs = vec![];
    for p in ["/a", "/b", "/c"] {
        cbs.push(
            sec.until_callback(&b, &format!("https://app.example.com{p}"))
                .await,
        );
    }
    for (i, want) in [(2, "/c"), (0, "/a"), (1, "/b")] {
        let r = sec.get(&b, &cbs[i]).await;
        assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
        assert_eq!(r.location().as_deref(), Some(want));
    }
    // Eight tabs begun within a second: the oldest are dropped (bounded), the newest still
    // complete; the dropped ones fail cleanly with state_mismatch and a restart link, never a
    // 5xx or another tab's rd. The test keeps the cookies in creation order, as browsers send
    // them (RFC 6265 §5.4); the fixture's jar is unordered.
    let mut ordered: Vec<(String, String)> = vec![];
    let mut cbs = vec![];
    for i in 0..8 {
        let t = sec.browser();
        let cookie = ordered
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let hdrs: Vec<(&str, &str)> = if cookie.is_empty() {
            vec![]
        } else {
            vec![("cookie", &cookie)]
        };
        let r = sec
            .req(
                &t,
                Method::GET,
                &format!("https://app.example.com/t{i}"),
                &hdrs,
            )
            .await;
        for c in r.set_cookies() {
            let (nv, _) = c.split_once(';').unwrap();
            let (n, v) = nv.split_once('=').unwrap();
            ordered.retain(|(x, _)| x != n);
            if !c.contains("Max-Age=0") {
                ordered.push((n.to_string(), v.to_string()));
            }
        }
        let r = t.get(&r.location().unwrap()).await;
        cbs.push(r.location().unwrap());
    }
    assert!(ordered.len() <= 5, "{} login cookies", ordered.len());
    let cookie = ordered
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    for (i, cb) in cbs.iter().enumerate().rev() {
        let r = sec
            .req(&sec.browser(), Method::GET, cb, &[("cookie", &cookie)])
            .await;
        match r.status {
            StatusCode::FOUND => assert_eq!(r.location().unwrap(), format!("/t{i}")),
            StatusCode::BAD_REQUEST => {
                assert!(r.body.contains("/oauth2/start"), "restart link");
                assert!(i < 3, "a recent tab failed: {i}");
            }
            s => panic!("tab {i}: {s}"),
        }
    }
    sec.finish().await;
}

#[tokio::test]
async fn cb_06_pkce_state_nonce_generation() {
    let sec = Sec::start().await;
    let api = sec.browser();
    let (mut states, mut nonces, mut challenges) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    let b64url = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    for _ in 0..1000 {
        let b = Browser::new(api_addr(&sec));
        let r = b.get("https://app.example.com/p").await;
        let p = params(&r.location().unwrap());
        assert_eq!(p["response_type"], "code");
        assert_eq!(p["code_challenge_method"], "S256");
        assert_eq!(p["code_challenge"].len(), 43);
        assert!(b64url(&p["code_challenge"]));
        for k in ["state", "nonce"] {
            assert!(p[k].len() >= 22 && b64url(&p[k]), "{k}: at least 128 bits");
        }
        assert!(!r.location().unwrap().contains("code_verifier"));
        assert!(states.insert(p["state"].clone()));
        assert!(nonces.insert(p["nonce"].clone()));
        assert!(challenges.insert(p["code_challenge"].clone()));
        // The verifier is not in any cookie in readable form: login cookies are sealed.
        for c in r.set_cookies() {
            assert!(!c.contains(&p["state"]) && !c.contains(&p["nonce"]));
        }
    }
    drop(api);
    // The token request carries a verifier matching the challenge.
    let b = sec.browser();
    let r = sec.get(&b, "https://app.example.com/p").await;
    let challenge = params(&r.location().unwrap())["code_challenge"].clone();
    let r = b.get(&r.location().unwrap()).await;
    b.get(&r.location().unwrap()).await;
    let v = sec
        .idp
        .last_token_request()
        .unwrap()
        .field("code_verifier")
        .unwrap()
        .to_string();
    sec.secret(v.clone());
    assert!((43..=128).contains(&v.len()));
    assert!(
        v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
    );
    let d = ring::digest::digest(&ring::digest::SHA256, v.as_bytes());
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref()),
        challenge
    );
    sec.finish().await;
}

fn api_addr(sec: &Sec) -> std::net::SocketAddr {
    sec.proxy.addr
}

#[tokio::test]
async fn cb_07_code_injection_pkce_binding() {
    let sec = Sec::start().await;
    let mut mallory = alice();
    mallory.sub = "u-mallory".into();
    sec.idp.set_auto_login(Some(mallory));
    let attacker = sec.browser();
    let evil = sec
        .until_callback(&attacker, "https://app.example.com/")
        .await;
    let code_m = params(&evil)["code"].clone();
    sec.idp.set_auto_login(Some(alice()));
    let victim = sec.browser();
    let own = sec
        .until_callback(&victim, "https://app.example.com/")
        .await;
    let state_v = params(&own)["state"].clone();
    let injected = format!(
        "https://app.example.com/oauth2/callback?code={code_m}&state={state_v}&iss={}",
        q(&sec.idp.issuer())
    );
    let r = sec.get(&victim, &injected).await;
    // The provider refuses the code (PKCE verifier differs): a 400 "start again" page (SPEC:
    // invalid_grant is 400), no session.
    sec.cb_reject(&r, 400, &["invalid_grant", "idp_error"], 0u64);
    assert_eq!(
        sec.idp.last_token_request().unwrap().field("code").unwrap(),
        code_m
    );
    sec.upstream_untouched();
    sec.finish().await;
}

#[tokio::test]
async fn cb_08_idp_error_responses() {
    let sec = Sec::start().await;
    for (err, extra, status) in [
        (
            "access_denied",
            "&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            403,
        ),
        ("server_error", "&error_uri=javascript:alert(1)", 503),
        ("login_required", "", 0),
        (
            "invalid_request",
            &*format!("&error_description={}", "A".repeat(12 * 1024)),
            400,
        ),
        ("%3Cb%3Ex", "", 400),
    ] {
        let b = sec.browser();
        let cb = sec
            .until_callback(&b, "https://app.example.com/target")
            .await;
        let state = params(&cb)["state"].clone();
        let url =
            format!("https://app.example.com/oauth2/callback?error={err}{extra}&state={state}");
        let r = sec.get(&b, &url).await;
        let status = if status == 0 {
            r.status.as_u16().clamp(400, 403)
        } else {
            status
        };
        assert!(status == 400 || status == 403 || status == 503, "{err}");
        sec.cb_reject(&r, status, &["idp_error"], 0u64);
        assert!(!r.body.contains("javascript:"), "error_uri not rendered");
        assert!(
            !r.body.contains("AAAAAAAAAAAAAAAA"),
            "description not echoed unbounded"
        );
        assert!(r.body.len() < 8192);
        assert!(!r.body.contains("<b>"));
        // The state is consumed: the real code cannot be used afterwards.
        let r = sec.get(&b, &cb).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
    assert!(
        !sec.logs
            .lines_with(&["login_failed", "error=access_denied"])
            .is_empty()
    );
    // A 100 KiB error_description exceeds the 16 KiB head limit: refused before any work.
    let r = raw_get(
        sec.proxy.addr,
        &format!(
            "/oauth2/callback?error=x&error_description={}&state=s",
            "A".repeat(100 * 1024)
        ),
        "app.example.com",
        "",
    )
    .await;
    assert_eq!(raw_status(&r), 431);
    assert_eq!(sec.idp.counts().token, 0);
    sec.upstream_untouched();
    sec.finish().await;
}

#[tokio::test]
async fn cb_09_parameter_pollution() {
    let sec = Sec::start().await;
    let b = sec.browser();
    let cb = sec.until_callback(&b, "https://app.example.com/").await;
    let p = params(&cb);
    let (state, code) = (&p["state"], &p["code"]);
    for qs in [
        format!("code={code}&code=B&state={state}"),
        format!("state={state}&state=T&code={code}"),
        format!("state={state}&code={code}&iss=a&iss=b"),
    ] {
        let r = sec
            .get(&b, &format!("https://app.example.com/oauth2/callback?{qs}"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{qs}");
        assert!(!session_set(&r));
    }
    assert_eq!(sec.idp.counts().token, 0);
    // (b) Client-supplied OAuth parameters never reach the authorization request.
    let r = sec
        .get(&b, "https://app.example.com/oauth2/start?rd=/&scope=openid+admin&redirect_uri=https://evil.com/cb&client_id=other&response_type=token&code_challenge_method=plain&prompt=none&nonce=fixed&state=fixed")
        .await;
    let loc = r.location().unwrap();
    let pairs = query(&loc);
    for k in [
        "scope",
        "redirect_uri",
        "client_id",
        "response_type",
        "code_challenge_method",
        "nonce",
        "state",
        "code_challenge",
    ] {
        assert_eq!(
            pairs.iter().filter(|(n, _)| n == k).count(),
            1,
            "{k} in {loc}"
        );
    }
    let p: HashMap<_, _> = pairs.into_iter().collect();
    assert_eq!(p["scope"], "openid email profile");
    assert_eq!(p["redirect_uri"], "https://app.example.com/oauth2/callback");
    assert_eq!(p["client_id"], "portcullis");
    assert_eq!(p["response_type"], "code");
    assert_eq!(p["code_challenge_method"], "S256");
    assert!(p["nonce"] != "fixed" && p["state"] != "fixed");
    assert!(!p.contains_key("prompt"));
    sec.finish().await;
}

#[tokio::test]
async fn cb_10_mix_up_iss_parameter() {
    // The development provider advertises authorization_response_iss_parameter_supported.
    let sec = Sec::start().await;
    let b = sec.browser();
    let cb = sec.until_callback(&b, "https://app.example.com/").await;
    let p = params(&cb);
    assert_eq!(
        p.get("iss"),
        Some(&sec.idp.issuer()),
        "the provider sends iss"
    );
    for qs in [
        format!(
            "code={}&state={}&iss=https%3A%2F%2Fevil-idp.example",
            p["code"], p["state"]
        ),
        format!("code={}&state={}", p["code"], p["state"]),
    ] {
        let b2 = sec.browser();
        let cb2 = sec.until_callback(&b2, "https://app.example.com/").await;
        let p2 = params(&cb2);
        let qs = qs
            .replace(&p["code"], &p2["code"])
            .replace(&p["state"], &p2["state"]);
        let r = sec
            .get(
                &b2,
                &format!("https://app.example.com/oauth2/callback?{qs}"),
            )
            .await;
        sec.cb_reject(&r, 400, &["iss_mismatch"], 0u64);
    }
    assert_eq!(sec.idp.counts().token, 0);
    sec.finish().await;
}

#[tokio::test]
async fn cb_11_redirect_uri_never_from_host_or_forwarded() {
    let sec = Sec::start().await;
    let check = |loc: &str| {
        assert!(!loc.contains("evil.com"), "{loc}");
        let p = params(loc);
        if let Some(r) = p.get("redirect_uri") {
            assert_eq!(r, "https://app.example.com/oauth2/callback");
        }
    };
    // Unknown Host: no route (404), never a login built from it.
    let r = raw(
        sec.proxy.addr,
        b"GET /private HTTP/1.1\r\nHost: evil.com\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(matches!(raw_status(&r), 400 | 404 | 421), "{r}");
    assert!(!r.contains("evil.com"));
    // Forwarded headers from an untrusted peer (127.0.0.1).
    let b = sec.browser();
    let r = sec
        .req(
            &b,
            Method::GET,
            "https://app.example.com/private",
            &[
                ("x-forwarded-host", "evil.com"),
                ("x-forwarded-proto", "http"),
            ],
        )
        .await;
    check(&r.location().unwrap());
    for c in r.set_cookies() {
        assert!(c.contains("Secure"), "{c}");
    }
    sec.finish().await;
    // From a trusted peer: X-Forwarded-Host is honoured only for configured route hosts, and
    // redirect_uri still comes from public_url.
    let sec = Sec::start_config(|idp, up| {
        reference_config(idp, up, "")(0).replace(
            "trusted_proxies = [\"10.0.0.0/8\"]",
            "trusted_proxies = [\"127.0.0.0/8\"]",
        )
    })
    .await;
    let b = sec.browser();
    for xfh in ["evil.com", "x.apps.example.com"] {
        let r = b
            .request(
                Method::GET,
                "https://app.example.com/private",
                &[("x-forwarded-host", xfh), ("x-forwarded-proto", "http")],
            )
            .await;
        if let Some(loc) = r.location() {
            check(&loc);
            sec.check_location("https://app.example.com/private", &loc);
        }
        for c in r.set_cookies() {
            assert!(c.contains("Secure"), "{c}");
        }
    }
    sec.finish().await;
}

#[tokio::test]
async fn cb_12_token_response_and_front_channel_tokens() {
    let sec = Sec::start().await;
    for (name, body) in [
        (
            "(a) no id_token",
            r#"{"access_token":"a","token_type":"Bearer"}"#,
        ),
        (
            "(b) id_token {}",
            r#"{"access_token":"a","token_type":"Bearer","id_token":{}}"#,
        ),
        (
            "(c) token_type mac",
            r#"{"access_token":"a","token_type":"mac","id_token":"x.y.z"}"#,
        ),
        (
            "(d) no access_token",
            r#"{"token_type":"Bearer","id_token":"x.y.z"}"#,
        ),
    ] {
        sec.idp.set_token_error(Some((200, body.into())));
        let b = sec.browser();
        let cb = sec.until_callback(&b, "https://app.example.com/").await;
        let r = sec.get(&b, &cb).await;
        eprintln!("{name}");
        sec.cb_reject(&r, 503, &["idp_bad_response"], 0u64);
    }
    sec.idp.set_token_error(None);
    // (e) Tokens on the front channel are ignored: identity comes from the token endpoint.
    let forged = portcullis::devidp::mint_jwt_unsigned(
        &serde_json::json!({"alg":"none"}),
        &serde_json::json!({"sub":"u-bob","groups":["admins"]}),
    )
    .unwrap();
    let b = sec.browser();
    let cb = sec.until_callback(&b, "https://app.example.com/").await;
    let r = sec
        .get(&b, &format!("{cb}&id_token={forged}&access_token=x"))
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    sec.get(&b, "https://app.example.com/me").await;
    assert_eq!(
        sec.up.last().one("x-auth-request-user").as_deref(),
        Some("u-alice")
    );
    // (f) POST to the callback: 405, never a weaker path.
    let b = sec.browser();
    let cb = sec.until_callback(&b, "https://app.example.com/").await;
    let (_, qs) = cb.split_once('?').unwrap();
    let r = b
        .try_request(
            Method::POST,
            "https://app.example.com/oauth2/callback",
            &[("content-type", "application/x-www-form-urlencoded")],
            bytes::Bytes::from(qs.to_string()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!session_set(&r));
    sec.upstream_saw(1);
    sec.finish().await;
}

#[tokio::test]
async fn cb_13_login_cookie_integrity() {
    let sec = Sec::start().await;
    let b = sec.browser();
    let cb = sec
        .until_callback(&b, "https://app.example.com/secret-rd-path")
        .await;
    let p = params(&cb);
    let (name, value) = login_cookies(&b).remove(0);
    // AEAD ciphertext: no plaintext field in any decoding of the value.
    use base64::Engine;
    for engine in [
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
    ] {
        if let Ok(raw) = engine.decode(value.trim_end_matches('=')) {
            let text = String::from_utf8_lossy(&raw);
            for needle in ["secret-rd-path", &p["state"][..12]] {
                assert!(!text.contains(needle));
            }
        }
    }
    assert!(!value.contains("secret-rd-path"));
    // One flipped character.
    let mut flipped = value.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let r = sec
        .req(
            &b,
            Method::GET,
            &cb,
            &[("cookie", &format!("{name}={flipped}"))],
        )
        .await;
    sec.cb_reject(&r, 400, &["state_mismatch"], 0u64);
    // Swapped between two concurrent flows.
    let b2 = sec.browser();
    let cb2 = sec
        .until_callback(&b2, "https://app.example.com/other")
        .await;
    let (_, value2) = login_cookies(&b2).remove(0);
    // Login cookies live in fixed slots (`…_login_0`..`_4`, the slot name is the AEAD
    // associated data): the other flow's value under our slot has the wrong state, and our
    // own value moved to another slot does not open.
    let other_slot = format!(
        "{}{}",
        &name[..name.len() - 1],
        if name.ends_with('0') { '1' } else { '0' }
    );
    for cookie in [format!("{name}={value2}"), format!("{other_slot}={value}")] {
        let r = sec.req(&b, Method::GET, &cb, &[("cookie", &cookie)]).await;
        sec.cb_reject(&r, 400, &["state_mismatch"], 0u64);
    }
    let _ = cb2;
    assert_eq!(sec.idp.counts().token, 0);
    // Attributes: HttpOnly; Secure; SameSite=Lax even with session same_site = strict.
    sec.finish().await;
    let sec = Sec::start_config(|idp, up| {
        reference_config(idp, up, "")(0).replace(
            "max_sessions = 1000",
            "max_sessions = 1000\nsame_site = \"strict\"",
        )
    })
    .await;
    let b = sec.browser();
    let r = sec.get(&b, "https://app.example.com/x").await;
    let lc = r
        .set_cookies()
        .into_iter()
        .find(|c| c.contains("_login"))
        .unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax", "Max-Age=600"] {
        assert!(lc.contains(attr), "{attr} in {lc}");
    }
    let r = sec.login(&b, "https://app.example.com/x").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "strict session cookie, lax login cookie"
    );
    sec.finish().await;
    // Rotating cookie_secret between start and callback: a graceful 400 with a restart link.
    let sec = Sec::start().await;
    let b = sec.browser();
    let cb = sec.until_callback(&b, "https://app.example.com/").await;
    let (idp, up) = (&sec.idp, &sec.up);
    let other = "b3RoZXItdGVzdC1vbmx5LWNvb2tpZS1zZWNyZXQtMzItYnl0ZXMh"; // fake test fixture
    let text = reference_config(idp, up, "")(0).replace(COOKIE_SECRET, other);
    let p2 = Proxy::start(move |_| text).await;
    let b2 = Browser::new(p2.addr);
    for (n, v) in login_cookies(&b) {
        b2.set_cookie(&n, &v);
    }
    let r = b2.get(&cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("/oauth2/start"), "restart link");
    drop(p2);
    let _ = Signing::Normal;
    sec.finish().await;
}
