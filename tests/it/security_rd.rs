//! SECURITY.md §3, redirect (`rd`) validation (RD-01..RD-12). For every string the harness
//! of §3 runs: login through `/oauth2/start?rd=`, sign-out with a session, and the
//! `X-Auth-Request-Redirect` header where the bytes are legal in a header. Expected: RD-SAFE
//! (landing `/`, an `event=redirect_rejected` WARN, no control byte in any header) and INV-5
//! on every `Location`. RD-03, RD-05 and RD-08 are HOLDOUT: our own strongest inputs.

use http::{Method, StatusCode};

use crate::security_support::*;

/// Where a login with this raw query value of `rd` lands (after the callback).
async fn login_lands(sec: &Sec, rd_wire: &str, header: Option<&str>) -> String {
    let b = sec.browser();
    let url = match header {
        None => format!("https://app.example.com/oauth2/start?rd={rd_wire}"),
        Some(_) => "https://app.example.com/oauth2/start".to_string(),
    };
    let hdrs: Vec<(&str, &str)> = header
        .map(|h| ("x-auth-request-redirect", h))
        .into_iter()
        .collect();
    let r = sec.req(&b, Method::GET, &url, &hdrs).await;
    assert_eq!(r.status, StatusCode::FOUND, "{rd_wire}: {}", r.body);
    let r = b.get(&r.location().unwrap()).await;
    let cb = r.location().unwrap();
    let r = sec.get(&b, &cb).await;
    assert_eq!(r.status, StatusCode::FOUND, "{rd_wire}: {}", r.body);
    r.location().unwrap()
}

/// Where a sign-out with this `rd` sends the browser back to (post_logout_redirect_uri when
/// the provider's end_session is used, else the Location itself).
async fn sign_out_lands(sec: &Sec, rd_wire: &str) -> String {
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let r = sec
        .get(
            &b,
            &format!("https://app.example.com/oauth2/sign_out?rd={rd_wire}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.location().unwrap();
    // The session ended whatever the rd.
    let r2 = sec.get(&sec.api_of(&b), "https://app.example.com/x").await;
    assert_eq!(
        r2.status,
        StatusCode::UNAUTHORIZED,
        "logout happens even when rd is rejected"
    );
    if loc.starts_with(&sec.idp.issuer()) {
        query(&loc)
            .into_iter()
            .find(|(k, _)| k == "post_logout_redirect_uri")
            .map(|(_, v)| v)
            .unwrap()
    } else {
        loc
    }
}

/// RD-SAFE for each value (given decoded; percent-encoded for the query).
async fn rd_safe(sec: &Sec, values: &[&str]) {
    for v in values {
        rd_safe_wire(sec, &q(v), Some(v)).await;
    }
}

/// RD-SAFE for a raw query value; `header` is the decoded value for the header variant.
async fn rd_safe_wire(sec: &Sec, wire: &str, header: Option<&str>) {
    let warns = sec.logs.lines_with(&["redirect_rejected"]).len();
    let landing = login_lands(sec, wire, None).await;
    assert_eq!(landing, "/", "login rd={wire} landed on {landing}");
    assert!(
        sec.logs.lines_with(&["redirect_rejected"]).len() > warns,
        "no redirect_rejected WARN for rd={wire}"
    );
    let after = sign_out_lands(sec, wire).await;
    assert!(
        after == "/" || after == "https://app.example.com/",
        "sign-out rd={wire} -> {after}"
    );
    if let Some(h) = header
        && http::HeaderValue::from_str(h).is_ok()
    {
        let landing = login_lands(sec, "", Some(h)).await;
        assert_eq!(landing, "/", "header {h:?} landed on {landing}");
    }
}

async fn accepted(sec: &Sec, rd: &str, want: &str) {
    let landing = login_lands(sec, &q(rd), None).await;
    assert_eq!(landing, want, "control {rd}");
}

#[tokio::test]
async fn rd_00_controls_are_accepted() {
    let sec = Sec::start().await;
    for (rd, want) in [
        ("/dashboard?tab=1&x=%2F#frag", "/dashboard?tab=1&x=%2F#frag"),
        ("/a/b/../c", "/a/b/../c"),
        (
            "https://docs.example.com/x?y=1",
            "https://docs.example.com/x?y=1",
        ),
        ("https://x.apps.example.com/", "https://x.apps.example.com/"),
        (
            "https://APP.EXAMPLE.COM:443/ok",
            "https://app.example.com/ok",
        ),
    ] {
        accepted(&sec, rd, want).await;
    }
    sec.finish().await;
}

#[tokio::test]
async fn rd_01_protocol_relative_and_slashes() {
    let sec = Sec::start().await;
    rd_safe(
        &sec,
        &[
            "//evil.com",
            "//evil.com/",
            "///evil.com",
            "////evil.com/",
            "/////evil.com",
            "//evil.com/%2f..",
            "//evil.com:443/",
        ],
    )
    .await;
    sec.finish().await;
}

#[tokio::test]
async fn rd_02_backslash_family() {
    let sec = Sec::start().await;
    rd_safe(
        &sec,
        &[
            "/\\evil.com",
            "\\/evil.com",
            "\\\\evil.com",
            "/\\/evil.com/",
            "https:\\\\evil.com",
            "https:/\\evil.com",
        ],
    )
    .await;
    // rd=%2F%255cevil.com decodes once to /%5cevil.com: refused (or kept literal), never \.
    let landing = login_lands(&sec, "%2F%255cevil.com", None).await;
    assert!(landing == "/" || landing == "/%5cevil.com", "{landing}");
    sec.finish().await;
}

#[tokio::test]
async fn rd_03_whitespace_and_controls_between_slashes() {
    let sec = Sec::start().await;
    let mut values: Vec<String> = vec![];
    for c in [
        '\t', '\n', '\r', '\u{b}', '\u{c}', ' ', '\0', '\u{1f}', '\u{7f}', '\u{a0}', '\u{2028}',
        '\u{3000}', '\u{feff}',
    ] {
        values.push(format!("/{c}/evil.com"));
        values.push(format!("{c}//evil.com"));
        values.push(format!("/{c}{c}/evil.com"));
        values.push(format!("/{c}\\evil.com"));
    }
    values.push("/\t\t\t/evil.com".into());
    values.push("/./\\evil.com".into());
    values.push("/\t/\t/evil.com".into());
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    for v in &refs {
        rd_safe_wire(&sec, &q(v), Some(v)).await;
    }
    // Encoded whitespace that survives one decode as text.
    for wire in [
        "%2F%2509%2Fevil.com",
        "%2F%250a%2Fevil.com",
        "/%09/evil.com",
        "%09//evil.com",
    ] {
        let landing = login_lands(&sec, wire, None).await;
        assert!(
            landing == "/" || !landing.starts_with("//"),
            "{wire} -> {landing}"
        );
        sec.check_location("https://app.example.com/oauth2/callback", &landing);
    }
    sec.finish().await;
}

#[tokio::test]
async fn rd_04_scheme_confusion() {
    let sec = Sec::start().await;
    rd_safe(
        &sec,
        &[
            "http:evil.com",
            "https:evil.com",
            "http:/evil.com",
            "HTTP://evil.com",
            "ftp://evil.com",
            "http://app.example.com/",
            "http:3627734734",
            "http://0xd83ad6ce/",
            "http:[::ffff:216.58.214.206]",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(1)",
            "java\tscript:alert(1)",
            "\u{19}javascript:alert(1)",
            "/%09/javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
        ],
    )
    .await;
    sec.finish().await;
}

#[tokio::test]
async fn rd_05_userinfo_and_authority_differentials() {
    let sec = Sec::start().await;
    rd_safe(
        &sec,
        &[
            "https://app.example.com@evil.com/",
            "https://app.example.com:443@evil.com/",
            "https://user:pass@app.example.com/",
            "https://@app.example.com/",
            "https://:@app.example.com/",
            "https://evil.com\\@app.example.com/",
            "https://evil.com#@app.example.com/",
            "https://evil.com?@app.example.com/",
            "https://evil.com;@app.example.com/",
            "https://app.example.com%40evil.com/",
            "https://app.example.com%2540evil.com/",
            "https://app.example.com%2f@evil.com/",
            "https://evil.com%23@app.example.com/",
            "https://app.example.com\t@evil.com/",
            "https://evil.com:443\\@app.example.com",
            "https://[::1]@app.example.com/",
            "https://app.example.com:@evil.com/",
            "https://app.example.com:0/",
            "https://app.example.com:65536/",
            "https://app.example.com:443:443/",
            "//app.example.com@evil.com",
            "https:///app.example.com@evil.com",
        ],
    )
    .await;
    sec.finish().await;
}

#[tokio::test]
async fn rd_06_host_allowlist_matching() {
    let sec = Sec::start().await;
    rd_safe(
        &sec,
        &[
            "https://app.example.com.evil.com/",
            "https://evilapp.example.com/",
            "https://evil-apps.example.com/",
            "https://apps.example.com.evil.com/",
            "https://apps.example.com/",
            "https://app.example.com\u{2044}.evil.com/",
            "https://app.example.com./",
            "https://app.example.com:8443/",
            "https://example.com/",
        ],
    )
    .await;
    accepted(&sec, "https://APP.example.com/", "https://app.example.com/").await;
    sec.finish().await;
}

#[tokio::test]
async fn rd_07_percent_encoding_layers() {
    let sec = Sec::start().await;
    for wire in [
        "%252F%252Fevil.com",
        "%2F%252F%252Fevil.com",
        "%2F%252f%255c%252fevil.com",
        "%2568%2574%2574%2570%253a%252f%252fevil.com",
        "%2F%2568ttp://evil.com",
    ] {
        let landing = login_lands(&sec, wire, None).await;
        // Exactly one decode: rejected, or emitted verbatim as an on-site path.
        let resolved = url::Url::parse("https://app.example.com/oauth2/callback")
            .unwrap()
            .join(&landing)
            .unwrap();
        assert_eq!(
            resolved.host_str(),
            Some("app.example.com"),
            "{wire} -> {landing}"
        );
        assert!(
            !landing.starts_with("//") && !landing.contains("evil.com")
                || landing.starts_with("/%"),
            "{wire} -> {landing}"
        );
        let after = sign_out_lands(&sec, wire).await;
        assert!(!after.starts_with("//"), "{after}");
    }
    sec.finish().await;
}

#[tokio::test]
async fn rd_08_unicode_and_idn() {
    let sec = Sec::start().await;
    rd_safe(
        &sec,
        &[
            "https://app\u{3002}example\u{3002}com/",
            "https://app\u{ff0e}example\u{ff0e}com/",
            "https://аpp.example.com/",
            "https://xn--pp-7ka.example.com/",
            "https://xn--app-8ma.example.com/",
            "https://app.example.com\u{2215}evil.com/",
            "https://app.example.com\u{ff0f}evil.com/",
            "https://evil.com\u{ff03}.app.example.com/",
            "/\u{ff0f}evil.com",
            "/\u{2215}evil.com",
            "\u{ff0f}\u{ff0f}evil.com",
            "https://ａｐｐ.example.com/",
            "https://app.exampl\u{0435}.com/",
            "/café",
            "https://x.apps.example.com\u{200b}/",
        ],
    )
    .await;
    sec.finish().await;
}

#[tokio::test]
async fn rd_09_header_injection_and_markup() {
    let sec = Sec::start().await;
    for wire in [
        "%2F%250d%250aSet-Cookie:%2520_portcullis=attacker",
        "%2F%0d%0aSet-Cookie:%20_portcullis=attacker",
        "%2F%0ALocation:%20https://evil.com",
        "%2F%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "%2F'onmouseover=alert(1)'",
        "%2F%00",
    ] {
        let b = sec.browser();
        let r = sec
            .get(
                &b,
                &format!("https://app.example.com/oauth2/start?rd={wire}"),
            )
            .await;
        let r = b.get(&r.location().unwrap()).await;
        let r = sec.get(&b, &r.location().unwrap()).await;
        let landing = r.location().unwrap();
        assert!(
            !landing.contains('<') && !landing.contains('"') && !landing.contains('\''),
            "{landing}"
        );
        assert!(
            !landing.contains('\r') && !landing.contains('\n'),
            "{landing:?}"
        );
        for c in r.set_cookies() {
            assert!(!c.contains("attacker"), "{c}");
        }
        assert_ne!(b.cookie("_portcullis").as_deref(), Some("attacker"));
    }
    // Pages that show an rd (the restart link) escape it for attributes.
    let b = sec.browser();
    let r = sec
        .get(
            &b,
            "https://app.example.com/oauth2/start?rd=%2F%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        )
        .await;
    let r = b.get(&r.location().unwrap()).await;
    let cb = r.location().unwrap();
    sec.idp
        .set_token_error(Some((400, r#"{"error":"invalid_grant"}"#.into())));
    let r = sec.get(&b, &cb).await;
    sec.idp.set_token_error(None);
    assert!(!r.body.contains("<script>alert"), "{}", r.body);
    assert!(!r.body.contains("\"><script"), "{}", r.body);
    sec.finish().await;
}

#[tokio::test]
async fn rd_10_length_and_encoding_limits() {
    let sec = Sec::start().await;
    // 20,000 characters: over the 16 KiB head limit, the start request itself is refused
    // (431); just under it, the login cookie cannot hold it and rd falls back to /.
    let long = format!("/{}", "a".repeat(20_000));
    let r = sec
        .get(
            &sec.browser(),
            &format!("https://app.example.com/oauth2/start?rd={long}"),
        )
        .await;
    assert_eq!(r.status.as_u16(), 431);
    let long = format!("/{}", "a".repeat(12_000));
    assert_eq!(login_lands(&sec, &long, None).await, "/");
    for wire in ["%2F%C0%AE%C0%AE%2F", "%2F%FF", "%23x", "%3Fx", ""] {
        let landing = login_lands(&sec, wire, None).await;
        assert!(landing == "/" || landing == "/?x", "{wire} -> {landing}");
    }
    // No rd at all.
    let b = sec.browser();
    let r = sec.get(&b, "https://app.example.com/oauth2/start").await;
    let r = b.get(&r.location().unwrap()).await;
    let r = sec.get(&b, &r.location().unwrap()).await;
    assert_eq!(r.location().as_deref(), Some("/"));
    sec.finish().await;
}

#[tokio::test]
async fn rd_11_own_endpoints_and_chains() {
    let sec = Sec::start().await;
    rd_safe(
        &sec,
        &[
            "/oauth2/start?rd=//evil.com",
            "/oauth2/sign_out?rd=//evil.com",
            "/oauth2/callback?code=x&state=y",
            "/oauth2/start?rd=/oauth2/start?rd=/oauth2/start",
            "/OAUTH2/start?rd=//evil.com",
            "/oauth2/%73tart?rd=//evil.com",
            "https://app.example.com/oauth2/start?rd=//evil.com",
        ],
    )
    .await;
    // An on-site redirector is the app's business (documented in the README).
    accepted(&sec, "/go?url=https://evil.com", "/go?url=https://evil.com").await;
    sec.finish().await;
}

#[tokio::test]
async fn rd_12_other_sources_duplicates_post_logout() {
    let sec = Sec::start().await;
    let b = sec.browser();
    // Duplicates: 400.
    for qs in ["rd=/ok&rd=//evil.com", "rd=//evil.com&rd=/ok"] {
        let r = sec
            .get(&b, &format!("https://app.example.com/oauth2/start?{qs}"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{qs}");
    }
    // The header source gets the same validation.
    assert_eq!(login_lands(&sec, "", Some("//evil.com")).await, "/");
    // rd in a POST body is not a source: sign-in is GET.
    let r = b
        .try_request(
            Method::POST,
            "https://app.example.com/oauth2/start",
            &[("content-type", "application/x-www-form-urlencoded")],
            bytes::Bytes::from_static(b"rd=//evil.com"),
        )
        .await
        .unwrap();
    assert!(r.location().is_none_or(|l| !l.contains("evil")));
    // post_logout_redirect_uri from the client is ignored: the IdP gets the configured one.
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let r = sec
        .get(
            &b,
            "https://app.example.com/oauth2/sign_out?post_logout_redirect_uri=https://evil.com",
        )
        .await;
    let loc = r.location().unwrap();
    let pl: Vec<_> = query(&loc)
        .into_iter()
        .filter(|(k, _)| k == "post_logout_redirect_uri")
        .collect();
    assert_eq!(pl.len(), 1);
    assert_eq!(pl[0].1, "https://app.example.com/");
    // rd lives in the sealed login cookie: it cannot be edited between start and callback
    // (a changed cookie is state_mismatch, CB-13), and is validated again at the callback.
    sec.finish().await;
}
