//! Per-route policy through the real login flow: the 403 page's two forms, and a configurable
//! `groups_claim` read from the ID token with the userinfo fallback (SPEC "Policy", "Claims";
//! SECURITY IDT-14).

use std::sync::Arc;

use http::{Method, StatusCode};
use portcullis::devidp::{DevUser, Signing};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn forbidden_is_html_for_browsers_and_json_otherwise() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    b.login("https://app.example.com/").await;
    let before = up.count();

    let r = b.get("https://app.example.com/admin/panel").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        r.body.contains("403") && r.body.contains("not allowed"),
        "{}",
        r.body
    );

    let mut api = Browser::new(proxy.addr);
    api.accept = "application/json";
    api.set_cookie("_portcullis", &b.cookie("_portcullis").unwrap());
    let r = api.get("https://app.example.com/admin/panel").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.json()["error"], "not_authorized");
    // A POST from a browser is not a navigation: JSON.
    let r = b
        .request(Method::POST, "https://app.example.com/admin/panel", &[])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "not_authorized");
    assert_eq!(
        up.count(),
        before,
        "denied requests never reach the upstream"
    );
}

fn with_roles(name: &str, roles: Option<&[&str]>, groups: Option<&[&str]>) -> DevUser {
    let mut u = DevUser::named(name);
    u.sub = format!("u-{name}");
    u.groups = groups.map(|g| g.iter().map(|s| s.to_string()).collect());
    if let Some(r) = roles {
        u.extra.insert("roles".into(), json!(r));
    }
    u
}

#[tokio::test]
async fn groups_claim_from_the_id_token_with_userinfo_fallback() {
    let idp = idp().await;
    let up = Upstream::start().await;
    let base = reference_config(&idp, &up, "");
    let proxy = Proxy::start(move |port| {
        base(port).replacen("[session]", "groups_claim = \"roles\"\n[session]", 1)
    })
    .await;

    // 1. `roles` in the ID token: no userinfo call.
    idp.set_auto_login(Some(with_roles("carol", Some(&["admins", "eng"]), None)));
    let userinfo_before = idp.counts().userinfo;
    let b = Browser::new(proxy.addr);
    let r = b.login("https://app.example.com/admin/panel").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        up.last().one("x-auth-request-groups").as_deref(),
        Some("admins,eng")
    );
    assert_eq!(
        idp.counts().userinfo,
        userinfo_before,
        "ID token had the claim"
    );

    // 2. `roles` missing from the ID token: completed from userinfo.
    idp.set_token_hook(Some(Arc::new(|_h: &mut Value, c: &mut Value| {
        c.as_object_mut().unwrap().remove("roles");
        Signing::Normal
    })));
    idp.set_auto_login(Some(with_roles("dave", Some(&["admins"]), None)));
    let b = Browser::new(proxy.addr);
    let r = b.login("https://app.example.com/admin/panel").await;
    idp.set_token_hook(None);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        up.last().one("x-auth-request-groups").as_deref(),
        Some("admins")
    );
    assert_eq!(
        idp.counts().userinfo,
        userinfo_before + 1,
        "userinfo filled the gap"
    );
    assert_eq!(
        b.get("https://app.example.com/oauth2/userinfo")
            .await
            .json()["groups"],
        json!(["admins"])
    );

    // 3. The default `groups` claim is not read when another is configured.
    idp.set_auto_login(Some(with_roles("erin", None, Some(&["admins"]))));
    let b = Browser::new(proxy.addr);
    b.login("https://app.example.com/").await;
    let r = b.get("https://app.example.com/admin/panel").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
