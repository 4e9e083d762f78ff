//! Session lifetime on the server (SECURITY SES-05): idle and absolute limits hold whatever
//! the client's cookie says; `preserve_host` and the store bound.

use std::time::Duration;

use http::StatusCode;

use crate::support::*;

async fn start(
    idp: &portcullis::devidp::DevIdp,
    up: &Upstream,
    session: &str,
    route: &str,
) -> Proxy {
    let issuer = idp.issuer();
    let upstream = up.url();
    let session = session.to_string();
    let route = route.to_string();
    let routes = crate::support::route("/", &upstream, &route);
    Proxy::start(move |_| {
        config(
            &issuer,
            "https://app.example.com",
            "",
            &format!("cookie_name = \"_portcullis\"\n{session}"),
            &routes,
        )
    })
    .await
}

fn api(b: &Browser) -> Browser {
    let mut a = b.clone();
    a.accept = "application/json";
    a
}

#[tokio::test]
async fn idle_timeout_ends_an_unused_session() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = start(&idp, &up, "lifetime = \"1h\"\nidle_timeout = \"2s\"", "").await;
    let b = Browser::new(proxy.addr);
    b.login("https://app.example.com/").await;
    let a = api(&b);
    // Used within the idle window, it stays alive past the idle timeout.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            a.get("https://app.example.com/x").await.status,
            StatusCode::OK
        );
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let r = a.get("https://app.example.com/x").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "idle session must end");
}

#[tokio::test]
async fn lifetime_is_absolute_even_when_active() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = start(&idp, &up, "lifetime = \"2s\"\nidle_timeout = \"2s\"", "").await;
    let b = Browser::new(proxy.addr);
    b.login("https://app.example.com/").await;
    let a = api(&b);
    let mut last = StatusCode::OK;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        last = a.get("https://app.example.com/x").await.status;
        if last != StatusCode::OK {
            break;
        }
    }
    assert_eq!(
        last,
        StatusCode::UNAUTHORIZED,
        "a session never outlives its lifetime"
    );
}

#[tokio::test]
async fn max_sessions_bounds_the_store_and_evicted_sessions_need_a_new_login() {
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let up = Upstream::start().await;
    let proxy = start(&idp, &up, "max_sessions = 3", "").await;
    let mut browsers = vec![];
    for _ in 0..8 {
        let b = Browser::new(proxy.addr);
        b.login("https://app.example.com/").await;
        browsers.push(b);
    }
    let mut alive = 0;
    for b in &browsers {
        let r = api(b).get("https://app.example.com/x").await;
        match r.status {
            StatusCode::OK => {
                alive += 1;
                assert_eq!(
                    up.last().one("x-auth-request-user").as_deref(),
                    Some("u-alice")
                );
            }
            StatusCode::UNAUTHORIZED => {}
            s => panic!("unexpected {s}"),
        }
    }
    assert!(alive <= 3, "{alive} sessions alive with max_sessions = 3");
    assert!(alive >= 1);
    // The newest login survives.
    assert_eq!(
        api(browsers.last().unwrap())
            .get("https://app.example.com/x")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn preserve_host_sends_the_client_host() {
    let idp = idp().await;
    let up = Upstream::start().await;
    let proxy = start(&idp, &up, "", "auth = \"public\"\npreserve_host = true").await;
    let b = Browser::new(proxy.addr);
    b.get("https://app.example.com/x").await;
    assert_eq!(up.last().one("host").as_deref(), Some("app.example.com"));
    drop(proxy);
    let proxy = start(&idp, &up, "", "auth = \"public\"").await;
    let b = Browser::new(proxy.addr);
    b.get("https://app.example.com/x").await;
    assert_eq!(up.last().one("host"), Some(up.addr.to_string()));
}
