//! SECURITY.md §4 and §5: cookies, sessions and logout (SES-01..SES-10, LO-01). SES-03 and
//! SES-04 are HOLDOUT: our own strongest inputs. SES-06 (refresh) and LO-02/LO-03
//! (back-channel logout) wait for their features; see tests/SECURITY-COVERAGE.md.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::security_support::*;
use crate::support::*;

fn cleared(r: &Resp) -> bool {
    r.set_cookies()
        .iter()
        .any(|c| c.starts_with("_portcullis=") && c.contains("Max-Age=0"))
}

#[tokio::test]
async fn ses_01_cookie_attributes_and_id_quality() {
    let sec = Sec::start().await;
    let mut ids = std::collections::HashSet::new();
    for i in 0..30 {
        let b = sec.browser();
        let cb = sec.until_callback(&b, "https://app.example.com/").await;
        let r = sec.get(&b, &cb).await;
        let sc = r
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("_portcullis="))
            .unwrap();
        if i == 0 {
            let parts: Vec<&str> = sc.split("; ").collect();
            for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
                assert!(parts.contains(&attr), "{attr} in {sc}");
            }
            assert!(!sc.to_ascii_lowercase().contains("domain="), "{sc}");
            assert!(sc.len() <= 4096);
        }
        let v = sc
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string();
        assert!(v.len() >= 22, "at least 128 bits");
        // Opaque: a sealed random id, far too short to carry a token, with no JWT dots.
        assert!(
            v.len() < 200 && !v.contains('.') && !v.contains("alice"),
            "opaque: {v}"
        );
        sec.secret(v.clone());
        assert!(ids.insert(v), "unique");
    }
    // 10,000 ids: generated_ids_are_unique_43_char_base64url (unit, session::tests).
    sec.finish().await;
    // __Host- prefix: no Domain ever.
    let sec = Sec::start_config(|idp, up| {
        reference_config(idp, up, "")(0).replace(
            "cookie_name = \"_portcullis\"",
            "cookie_name = \"__Host-portcullis\"",
        )
    })
    .await;
    let b = sec.browser();
    let cb = sec.until_callback(&b, "https://app.example.com/").await;
    let r = sec.get(&b, &cb).await;
    let sc = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-portcullis="))
        .unwrap();
    assert!(
        sc.contains("Path=/")
            && sc.contains("Secure")
            && !sc.to_ascii_lowercase().contains("domain="),
        "{sc}"
    );
    sec.finish().await;
    // `portcullis check` refuses __Host- with cookie_domain.
    let text = config(
        "http://127.0.0.1:1",
        "https://app.example.com",
        "",
        "cookie_name = \"__Host-x\"\ncookie_domain = \"example.com\"",
        &route("/", "http://127.0.0.1:9", ""),
    );
    let err = portcullis::config::from_str(&text, "t.toml", &|_| None, std::path::Path::new("."));
    assert!(err.is_err(), "__Host- with cookie_domain is refused");
}

#[tokio::test]
async fn ses_02_tampered_forged_garbage_cookie() {
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let good = b.cookie("_portcullis").unwrap();
    let login_value = {
        let x = sec.browser();
        sec.get(&x, "https://app.example.com/y").await;
        let n = x
            .cookie_names()
            .into_iter()
            .find(|n| n.contains("_login"))
            .unwrap();
        x.cookie(&n).unwrap()
    };
    let mut last = good.clone().into_bytes();
    let l = last.len() - 1;
    last[l] = if last[l] == b'A' { b'B' } else { b'A' };
    let cases = [
        String::from_utf8(last).unwrap(),
        good[..good.len() / 2].to_string(),
        "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE".to_string(),
        login_value,
        "%%%".to_string(),
        "x".repeat(4000),
    ];
    let api = sec.api();
    for bad in &cases {
        api.set_cookie("_portcullis", bad);
        let r = sec.get(&api, "https://app.example.com/private").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad:.20}");
        assert!(cleared(&r), "cleared");
        let clear = r
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with("_portcullis="))
            .unwrap();
        for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(clear.contains(attr), "same attributes: {clear}");
        }
        sec.secret(bad.clone());
    }
    assert!(!sec.logs.lines_with(&["session_invalid"]).is_empty());
    // A browser navigation with a bad cookie goes to a clean login (no loop).
    let nav = sec.browser();
    nav.set_cookie("_portcullis", &cases[0]);
    let r = sec.login(&nav, "https://app.example.com/p").await;
    assert_eq!(r.status, StatusCode::OK);
    // A cookie from before a restart (empty store): UNAUTH, then a clean login.
    let (idp, up) = (&sec.idp, &sec.up);
    let p2 = Proxy::start(reference_config(idp, up, "")).await;
    let b2 = Browser::new(p2.addr);
    b2.set_cookie("_portcullis", &good);
    let (r, hops) = b2.follow("https://app.example.com/p").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(hops.iter().any(|h| h.contains("/authorize")), "{hops:?}");
    drop(p2);
    sec.finish().await;
}

#[tokio::test]
async fn ses_03_session_fixation() {
    let sec = Sec::start().await;
    // The attacker plants a session cookie: its own valid one, then garbage.
    let mut mallory = alice();
    mallory.sub = "u-mallory".into();
    sec.idp.set_auto_login(Some(mallory));
    let attacker = sec.browser();
    sec.login(&attacker, "https://app.example.com/").await;
    let planted = attacker.cookie("_portcullis").unwrap();
    sec.idp.set_auto_login(Some(alice()));
    let victim = sec.browser();
    victim.set_cookie("_portcullis", &planted);
    // The victim signs in (explicitly, as when the planted identity is noticed).
    let r = sec
        .get(&victim, "https://app.example.com/oauth2/start?rd=/mine")
        .await;
    let r = victim.get(&r.location().unwrap()).await;
    let r = sec.get(&victim, &r.location().unwrap()).await;
    assert_eq!(r.location().as_deref(), Some("/mine"));
    let fresh = victim.cookie("_portcullis").unwrap();
    assert_ne!(fresh, planted, "a new id at login");
    sec.secret(fresh.clone());
    // The planted id is dead: the attacker cannot ride the victim's login.
    let r = sec
        .get(&sec.api_of(&attacker), "https://app.example.com/x")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    sec.get(&victim, "https://app.example.com/x").await;
    assert_eq!(
        sec.up.last().one("x-auth-request-user").as_deref(),
        Some("u-alice")
    );
    // An id chosen by the attacker (well-formed, never issued) is never adopted.
    let chosen = "A".repeat(43);
    let v2 = sec.browser();
    v2.set_cookie("_portcullis", &chosen);
    sec.login(&v2, "https://app.example.com/").await;
    assert_ne!(v2.cookie("_portcullis").unwrap(), chosen);
    let a2 = sec.api();
    a2.set_cookie("_portcullis", &chosen);
    assert_eq!(
        sec.get(&a2, "https://app.example.com/x").await.status,
        StatusCode::UNAUTHORIZED
    );
    // A login cookie planted by the attacker cannot bind the victim to the attacker's login
    // (CB-01) and the upstream cannot set the session cookie (dropped, login.rs).
    sec.finish().await;
}

#[tokio::test]
async fn ses_04_replay_after_sign_out() {
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let old = b.cookie("_portcullis").unwrap();
    // A second session of the same user in another browser.
    let other = sec.browser();
    sec.login(&other, "https://app.example.com/").await;
    let before = sec.up.count();
    let r = sec.get(&b, "https://app.example.com/oauth2/sign_out").await;
    assert!(cleared(&r));
    for (method, url) in [
        (Method::GET, "https://app.example.com/x"),
        (Method::POST, "https://app.example.com/x"),
        (Method::GET, "https://x.apps.example.com/"),
        (Method::GET, "https://app.example.com/oauth2/userinfo"),
    ] {
        let a = sec.api();
        a.set_cookie("_portcullis", &old);
        let r = sec.req(&a, method.clone(), url, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {url}");
    }
    // Sign-out with the old cookie again is harmless, and a browser replay gets a fresh login.
    let nav = sec.browser();
    nav.set_cookie("_portcullis", &old);
    let r = sec.get(&nav, "https://app.example.com/x").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.location().unwrap().contains("/authorize"));
    assert_eq!(sec.up.count(), before, "INV-1");
    // Sign-out ends this session only (documented: the other browser keeps its own).
    let r = sec
        .get(&sec.api_of(&other), "https://app.example.com/x")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    sec.finish().await;
}

#[tokio::test]
async fn ses_05_idle_and_absolute_timeouts() {
    // With real time on short limits (the store's clock-driven unit tests cover the exact
    // boundaries: session::memory::idle_timeout_* and absolute_lifetime_*).
    let sec = Sec::start_config(|idp, up| {
        reference_config(idp, up, "")(0).replace(
            "max_sessions = 1000",
            "max_sessions = 1000\nlifetime = \"3s\"\nidle_timeout = \"1500ms\"",
        )
    })
    .await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let a = sec.api_of(&b);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        sec.get(&a, "https://app.example.com/x").await.status,
        StatusCode::UNAUTHORIZED,
        "idle"
    );
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let a = sec.api_of(&b);
    let mut last = StatusCode::OK;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = sec.get(&a, "https://app.example.com/x").await.status;
        if last != StatusCode::OK {
            break;
        }
    }
    assert_eq!(last, StatusCode::UNAUTHORIZED, "never outlives lifetime");
    sec.finish().await;
}

#[tokio::test]
async fn ses_07_oversized_malformed_ambiguous_cookies() {
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let good = b.cookie("_portcullis").unwrap();
    let before = sec.up.count();
    // Oversized: 431 before any session lookup.
    let many: String = (0..300)
        .map(|i| format!("c{i}={}; ", "v".repeat(96)))
        .collect();
    let big16 = format!("big={}", "v".repeat(16 * 1024));
    let big64 = format!("big={}", "v".repeat(64 * 1024));
    for c in [&many, &big16, &big64] {
        let r = raw_get(
            sec.proxy.addr,
            "/x",
            "app.example.com",
            &format!("Cookie: {c}\r\n"),
        )
        .await;
        assert_eq!(raw_status(&r), 431, "{:.60}", c);
    }
    // Malformed: no panic, no session.
    for c in [
        ";;;",
        "=",
        "_portcullis",
        "_portcullis=",
        "=_portcullis",
        "_portcullis=\"\"",
        "_portcullis=a=b",
    ] {
        let r = raw_get(
            sec.proxy.addr,
            "/x",
            "app.example.com",
            &format!("Cookie: {c}\r\n"),
        )
        .await;
        assert_eq!(raw_status(&r), 401, "{c}: {r}");
    }
    let r = raw(sec.proxy.addr, b"GET /x HTTP/1.1\r\nHost: app.example.com\r\nCookie: \xff\xfe\r\nConnection: close\r\n\r\n").await;
    assert!(matches!(raw_status(&r), 400 | 401), "{r}");
    for (cookies, want, what) in [
        // Ambiguous: two session cookies, in one line or two, even when one is valid.
        (
            format!("Cookie: _portcullis={good}; _portcullis=b\r\n"),
            401,
            "two in one line",
        ),
        (
            format!("Cookie: _portcullis={good}\r\nCookie: _portcullis=b\r\n"),
            401,
            "two lines",
        ),
        // Tossing: a cookie planted for a parent domain next to the victim's: no mix.
        (
            format!("Cookie: _portcullis=mallory-id; _portcullis={good}\r\n"),
            401,
            "tossed",
        ),
        // Two Cookie lines where only one carries the session: joined, the session works.
        (
            format!("Cookie: theme=dark\r\nCookie: _portcullis={good}\r\n"),
            200,
            "split lines",
        ),
    ] {
        let r = raw_get(sec.proxy.addr, "/x", "app.example.com", &cookies).await;
        assert_eq!(raw_status(&r), want, "{what}: {r}");
    }
    assert_eq!(sec.up.count(), before + 1);
    assert_eq!(sec.up.last().all("cookie"), vec!["theme=dark"]);
    sec.finish().await;
}

#[tokio::test]
async fn ses_08_store_capacity_and_eviction() {
    let sec = Sec::start_config(|idp, up| {
        reference_config(idp, up, "")(0).replace("max_sessions = 1000", "max_sessions = 20")
    })
    .await;
    let mut users = vec![];
    for i in 0..30 {
        let mut u = alice();
        u.sub = format!("u-{i}");
        sec.idp.set_auto_login(Some(u));
        let b = sec.browser();
        sec.login(&b, "https://app.example.com/").await;
        users.push((i, b));
    }
    let mut alive = 0;
    for (i, b) in &users {
        let r = sec.get(&sec.api_of(b), "https://app.example.com/x").await;
        match r.status {
            StatusCode::OK => {
                alive += 1;
                assert_eq!(
                    sec.up.last().one("x-auth-request-user"),
                    Some(format!("u-{i}")),
                    "never another user"
                );
            }
            StatusCode::UNAUTHORIZED => {}
            s => panic!("{s}"),
        }
    }
    assert!((1..=20).contains(&alive), "{alive}");
    // An evicted session gets a fresh login.
    let (_, oldest) = &users[0];
    sec.idp.set_auto_login(Some(alice()));
    let (r, hops) = sec.follow(oldest, "https://app.example.com/again").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(hops.len() <= 4 || hops.iter().any(|h| h.contains("callback")));
    sec.finish().await;
}

#[tokio::test]
async fn ses_09_cross_site_post_and_samesite() {
    let sec = Sec::start().await;
    // A cross-site form POST arrives without the (Lax) cookie: 401, never a 307/308 to the
    // IdP that would re-send the body, upstream untouched.
    let b = sec.browser();
    let r = b
        .try_request(
            Method::POST,
            "https://app.example.com/private/delete",
            &[
                ("origin", "https://evil.com"),
                ("content-type", "application/x-www-form-urlencoded"),
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
            bytes::Bytes::from_static(b"confirm=yes"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.status != StatusCode::TEMPORARY_REDIRECT && r.status != StatusCode::PERMANENT_REDIRECT
    );
    // An <img> (Accept: image/*) is not a navigation: 401, no redirect.
    let r = sec
        .req(
            &b,
            Method::GET,
            "https://app.example.com/private/x",
            &[("accept", "image/avif,image/webp,*/*")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    sec.upstream_untouched();
    // The top-level GET works with the session, and the cookie is SameSite=Lax.
    sec.login(&b, "https://app.example.com/private").await;
    assert_eq!(sec.up.count(), 1);
    sec.finish().await;
}

#[tokio::test]
async fn ses_10_userinfo_exposure() {
    let sec = Sec::start().await;
    let mut u = alice();
    u.name = Some("<script>alert(1)</script>".into());
    u.preferred_username = Some("<script>alert(1)</script>".into());
    sec.idp.set_auto_login(Some(u));
    let b = sec.browser();
    let r = sec.get(&b, "https://app.example.com/oauth2/userinfo").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "unauthenticated");
    sec.login(&b, "https://app.example.com/").await;
    let r = sec
        .req(
            &b,
            Method::GET,
            "https://app.example.com/oauth2/userinfo",
            &[("origin", "https://evil.com")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.headers.get("access-control-allow-origin").is_none());
    assert!(r.headers.get("access-control-allow-credentials").is_none());
    let v = r.json();
    let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    for k in ["user", "email", "preferred_username", "groups"] {
        assert!(v.get(k).is_some());
    }
    assert!(!r.body.contains("eyJ"), "no token");
    assert!(!r.body.contains("<script>"), "escaped in JSON: {}", r.body);
    sec.finish().await;
}

#[tokio::test]
async fn lo_01_rp_initiated_logout() {
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let old = b.cookie("_portcullis").unwrap();
    let r = sec
        .get(&b, "https://app.example.com/oauth2/sign_out?rd=/bye")
        .await;
    // The local session is gone before the browser even reaches the IdP.
    let a = sec.api();
    a.set_cookie("_portcullis", &old);
    assert_eq!(
        sec.get(&a, "https://app.example.com/x").await.status,
        StatusCode::UNAUTHORIZED
    );
    let loc = r.location().unwrap();
    assert!(loc.starts_with(&format!("{}/end_session?", sec.idp.issuer())));
    let p: std::collections::HashMap<_, _> = query(&loc).into_iter().collect();
    assert!(p.contains_key("id_token_hint"));
    sec.secret(p["id_token_hint"].clone());
    assert_eq!(p["post_logout_redirect_uri"], "https://app.example.com/bye");
    assert!(
        p.get("state").is_some_and(|s| s.len() >= 16),
        "a random state"
    );
    // The return trip with a wrong or no state: no redirect anywhere else.
    for back in [
        "https://app.example.com/bye?state=wrong",
        "https://app.example.com/bye",
    ] {
        let r = sec.get(&b, back).await;
        assert!(
            r.location()
                .is_none_or(|l| l.contains("/authorize") || l.starts_with('/'))
        );
    }
    // Cross-site <img> GET of sign_out: documented (GET accepted, oauth2-proxy compatible);
    // with SameSite=Lax the cookie is not sent on a cross-site subresource, so an <img>
    // (no cookie) ends nothing.
    let victim = sec.browser();
    sec.login(&victim, "https://app.example.com/").await;
    let img = sec.browser(); // no cookie, as the browser would send it
    sec.req(
        &img,
        Method::GET,
        "https://app.example.com/oauth2/sign_out",
        &[("accept", "image/*")],
    )
    .await;
    assert_eq!(
        sec.get(&sec.api_of(&victim), "https://app.example.com/x")
            .await
            .status,
        StatusCode::OK
    );
    sec.finish().await;
}
