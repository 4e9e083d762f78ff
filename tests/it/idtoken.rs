//! Every ID-token defect of OpenID Connect Core §3.1.3.7 is refused at the callback with no
//! session (SECURITY IDT-01..IDT-13), and the controls are accepted.

use std::sync::Arc;

use http::StatusCode;
use portcullis::devidp::{DevIdp, Signing};
use serde_json::{Value, json};

use crate::support::*;

type Mutation = Box<dyn Fn(&mut Value, &mut Value, &str) -> Signing + Send + Sync>;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Runs one login whose ID token is changed by `m`; returns the callback's status and whether
/// a session cookie was set.
async fn login_with(idp: &DevIdp, proxy: &Proxy, m: Mutation) -> (StatusCode, bool) {
    let issuer = idp.issuer();
    let m = Arc::new(m);
    idp.set_token_hook(Some(Arc::new(move |h: &mut Value, c: &mut Value| {
        m(h, c, &issuer)
    })));
    let b = Browser::new(proxy.addr);
    let r = b.get("https://app.example.com/p").await;
    let r = b.get(&r.location().unwrap()).await;
    let r = b.get(&r.location().unwrap()).await;
    idp.set_token_hook(None);
    let session = r
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("_portcullis=") && !c.contains("Max-Age=0"));
    assert!(!r.body.contains("eyJ"), "no token in the page");
    (r.status, session)
}

fn set(key: &'static str, v: Value) -> Mutation {
    Box::new(move |_, c, _| {
        c[key] = v.clone();
        Signing::Normal
    })
}

fn remove(key: &'static str) -> Mutation {
    Box::new(move |_, c, _| {
        c.as_object_mut().unwrap().remove(key);
        Signing::Normal
    })
}

fn header(key: &'static str, v: Value, s: fn() -> Signing) -> Mutation {
    Box::new(move |h, _, _| {
        h[key] = v.clone();
        s()
    })
}

#[tokio::test]
async fn id_token_defects_are_refused() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let t = now();
    let cases: Vec<(&str, Mutation)> = vec![
        ("bad signature", Box::new(|_, _, _| Signing::WrongKey)),
        ("alg none", Box::new(|_, _, _| Signing::None)),
        (
            "missing alg",
            Box::new(|h, _, _| {
                h.as_object_mut().unwrap().remove("alg");
                Signing::Normal
            }),
        ),
        (
            "HS256 keyed with the client secret",
            Box::new(|_, _, _| Signing::Hmac(CLIENT_SECRET.as_bytes().to_vec())),
        ),
        (
            "attacker key with jku",
            header("jku", json!("https://evil.com/jwks.json"), || {
                Signing::UnknownKid
            }),
        ),
        (
            "attacker key with x5u",
            header("x5u", json!("https://evil.com/c.pem"), || {
                Signing::UnknownKid
            }),
        ),
        (
            "kid traversal",
            header("kid", json!("../../dev/null"), || Signing::WrongKey),
        ),
        (
            "kid sql",
            header("kid", json!("x' OR '1'='1"), || Signing::WrongKey),
        ),
        (
            "kid 10 KiB",
            header("kid", json!("k".repeat(10 * 1024)), || Signing::WrongKey),
        ),
        (
            "crit",
            header("crit", json!(["urn:x-unknown"]), || Signing::Normal),
        ),
        (
            "typ logout+jwt",
            header("typ", json!("logout+jwt"), || Signing::Normal),
        ),
        (
            "typ at+jwt",
            header("typ", json!("at+jwt"), || Signing::Normal),
        ),
        ("iss other", set("iss", json!("https://evil.example.com"))),
        (
            "iss trailing slash",
            Box::new(|_, c, iss| {
                c["iss"] = json!(format!("{iss}/"));
                Signing::Normal
            }),
        ),
        (
            "iss upper case",
            Box::new(|_, c, iss| {
                c["iss"] = json!(iss.to_ascii_uppercase());
                Signing::Normal
            }),
        ),
        (
            "iss array",
            Box::new(|_, c, iss| {
                c["iss"] = json!([iss]);
                Signing::Normal
            }),
        ),
        ("iss missing", remove("iss")),
        ("aud other", set("aud", json!("other"))),
        ("aud missing", remove("aud")),
        ("aud [other]", set("aud", json!(["other"]))),
        ("aud trailing space", set("aud", json!("portcullis "))),
        ("aud upper case", set("aud", json!("PORTCULLIS"))),
        ("aud number", set("aud", json!(42))),
        (
            "two audiences, no azp",
            set("aud", json!(["portcullis", "untrusted-rp"])),
        ),
        (
            "two audiences, azp untrusted",
            Box::new(|_, c, _| {
                c["aud"] = json!(["portcullis", "untrusted-rp"]);
                c["azp"] = json!("untrusted-rp");
                Signing::Normal
            }),
        ),
        ("azp mismatch", set("azp", json!("someone-else"))),
        ("expired an hour ago", set("exp", json!(t - 3600))),
        ("expired 61 s ago", set("exp", json!(t - 61))),
        ("exp missing", remove("exp")),
        ("exp string", set("exp", json!("9999999999"))),
        ("exp negative", set("exp", json!(-1))),
        ("iat missing", remove("iat")),
        ("iat an hour ahead", set("iat", json!(t + 3600))),
        ("nbf an hour ahead", set("nbf", json!(t + 3600))),
        ("sub missing", remove("sub")),
        ("sub empty", set("sub", json!(""))),
        ("sub number", set("sub", json!(12345))),
        ("sub 256 chars", set("sub", json!("s".repeat(256)))),
        ("nonce wrong", set("nonce", json!("not-the-nonce"))),
        ("nonce missing", remove("nonce")),
        (
            "at_hash wrong",
            set("at_hash", json!("AAAAAAAAAAAAAAAAAAAAAA")),
        ),
        (
            "at_hash padded",
            set("at_hash", json!("AAAAAAAAAAAAAAAAAAAAAA==")),
        ),
        (
            "four segments",
            Box::new(|_, _, _| Signing::Raw("a.b.c.d".into())),
        ),
        (
            "five segments (JWE)",
            Box::new(|_, _, _| Signing::Raw("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d".into())),
        ),
        (
            "not JSON",
            Box::new(|_, _, _| Signing::Raw("bm90IGpzb24.bm90IGpzb24.c2ln".into())),
        ),
        (
            "1 MiB token",
            Box::new(|_, _, _| {
                Signing::Raw(format!(
                    "{}.{}.{}",
                    "a".repeat(1 << 19),
                    "b".repeat(1 << 19),
                    "c"
                ))
            }),
        ),
    ];
    for (name, m) in cases {
        let (status, session) = login_with(&idp, &proxy, m).await;
        assert!(!session, "{name}: a session was created");
        assert!(status.is_client_error(), "{name}: status {status}");
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST,
            "{name}: status {status}"
        );
    }
    assert_eq!(up.count(), 0);
    // Controls: these are accepted.
    let controls: Vec<(&str, Mutation)> = vec![
        ("unchanged", Box::new(|_, _, _| Signing::Normal)),
        (
            "aud as a one-element list",
            set("aud", json!(["portcullis"])),
        ),
        (
            "expired 30 s ago (within leeway)",
            set("exp", json!(t - 30)),
        ),
        ("azp equal to client_id", set("azp", json!("portcullis"))),
        ("fractional exp", set("exp", json!(t as f64 + 600.5))),
    ];
    for (name, m) in controls {
        let (status, session) = login_with(&idp, &proxy, m).await;
        assert_eq!(status, StatusCode::FOUND, "{name}");
        assert!(session, "{name}: no session");
    }
}
