//! `rd` open-redirect corpus through the real endpoints (SECURITY RD-01..RD-12): every attack
//! string ends on `/`, at login and at sign-out; the controls land where they say.

use http::StatusCode;

use crate::support::*;

/// Attack strings as the browser would send them (each is percent-encoded into the query).
const ATTACKS: &[&str] = &[
    "//evil.com",
    "//evil.com/",
    "///evil.com",
    "////evil.com/",
    "/////evil.com",
    "//evil.com/%2f..",
    "//evil.com:443/",
    "/\\evil.com",
    "\\/evil.com",
    "\\\\evil.com",
    "/\\/evil.com/",
    "https:\\\\evil.com",
    "https:/\\evil.com",
    "/%5cevil.com",
    "/\t/evil.com",
    "/\n/evil.com",
    "/\r/evil.com",
    "/ /evil.com",
    "\t//evil.com",
    " //evil.com",
    "/%09/evil.com",
    "/\u{0b}/evil.com",
    "\u{19}javascript:alert(1)",
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
    "/%09/javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "https://app.example.com@evil.com/",
    "https://evil.com\\@app.example.com/",
    "https://app.example.com:443@evil.com/",
    "https://user:pass@app.example.com/",
    "https://app.example.com%40evil.com/",
    "https://app.example.com.evil.com/",
    "https://evilapp.example.com/",
    "https://evil-apps.example.com/",
    "https://apps.example.com.evil.com/",
    "https://app.example.com\u{2044}.evil.com/",
    "https://app\u{3002}example\u{3002}com/",
    "https://xn--pp-7ka.example.com/",
    "https://аpp.example.com/",
    "https://app.example.com./",
    "https://app.example.com:8443/",
    "%2F%2Fevil.com",
    "/%2f%2fevil.com",
    "/%2F%252f%255c%252fevil.com",
    "%68%74%74%70%3a%2f%2fevil.com",
    "/%0d%0aSet-Cookie:%20_portcullis=attacker",
    "/\nLocation: https://evil.com",
    "/\"><script>alert(1)</script>",
    "/'onmouseover=alert(1)'",
    "/%00",
    "/oauth2/start?rd=//evil.com",
    "/oauth2/sign_out?rd=//evil.com",
    "/oauth2/callback?code=x&state=y",
    "//evil.com\\@app.example.com",
    "/\\\\evil.com",
];

const CONTROLS: &[(&str, &str)] = &[
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
];

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn login_landing(b: &Browser, rd_query: &str) -> String {
    let r = b
        .get(&format!("https://app.example.com/oauth2/start?{rd_query}"))
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{rd_query}: {}", r.body);
    let r = b.get(&r.location().unwrap()).await;
    let r = b.get(&r.location().unwrap()).await;
    assert_eq!(r.status, StatusCode::FOUND, "{rd_query}: {}", r.body);
    r.location().unwrap()
}

#[tokio::test]
async fn open_redirect_corpus_falls_back_to_root() {
    assert!(ATTACKS.len() >= 40);
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    for attack in ATTACKS {
        let landing = login_landing(&b, &format!("rd={}", q(attack))).await;
        assert_eq!(landing, "/", "login rd {attack:?} landed on {landing}");
        let r = b
            .get(&format!(
                "https://app.example.com/oauth2/sign_out?rd={}",
                q(attack)
            ))
            .await;
        let loc = r.location().unwrap();
        // After sign-out with a session the IdP's end_session gets the post-logout target.
        if let Some(rest) = loc.strip_prefix(&format!("{}/end_session?", idp.issuer())) {
            let pl: String = url::form_urlencoded::parse(rest.as_bytes())
                .find(|(k, _)| k == "post_logout_redirect_uri")
                .map(|(_, v)| v.into_owned())
                .unwrap();
            assert_eq!(pl, "https://app.example.com/", "sign-out rd {attack:?}");
        } else {
            assert_eq!(loc, "/", "sign-out rd {attack:?}");
        }
        for v in r.headers.values() {
            assert!(
                !v.as_bytes().iter().any(|c| *c < 0x20 && *c != b'\t'),
                "control byte in a header"
            );
        }
    }
    // Duplicated rd: refused.
    let r = b
        .get("https://app.example.com/oauth2/start?rd=/ok&rd=//evil.com")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // X-Auth-Request-Redirect gets the same validation.
    let r = b
        .request(
            http::Method::GET,
            "https://app.example.com/oauth2/start",
            &[("x-auth-request-redirect", "//evil.com")],
        )
        .await;
    let r = b.get(&r.location().unwrap()).await;
    let r = b.get(&r.location().unwrap()).await;
    assert_eq!(r.location().as_deref(), Some("/"));
}

#[tokio::test]
async fn controls_land_where_they_say() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    for (rd, want) in CONTROLS {
        let landing = login_landing(&b, &format!("rd={}", q(rd))).await;
        assert_eq!(&landing, want, "rd {rd:?}");
    }
    // A 20,000-character rd falls back to /.
    let long = format!("/{}", "a".repeat(20_000));
    let landing = login_landing(&b, &format!("rd={long}")).await;
    assert_eq!(landing, "/");
}

#[tokio::test]
async fn protected_request_on_another_route_host_goes_through_start() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    let r = b.get("https://x.apps.example.com/deep?a=1").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(
        r.location().unwrap(),
        "https://app.example.com/oauth2/start?rd=https%3A//x.apps.example.com/deep%3Fa%3D1"
    );
    let (_, hops) = b.follow("https://x.apps.example.com/deep?a=1").await;
    assert!(
        hops.iter()
            .any(|h| h == "https://x.apps.example.com/deep?a=1"),
        "{hops:?}"
    );
}
