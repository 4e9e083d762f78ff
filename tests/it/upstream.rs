//! Upstream faults (SECURITY UP-02, UP-03): refused → 502, slow → 504, with generic pages.

use std::time::{Duration, Instant};

use http::StatusCode;

use crate::support::*;

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let idp = idp().await;
    let up = Upstream::start().await;
    // A port with nothing listening: bind, note, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let issuer = idp.issuer();
    let live = up.url();
    let routes = route("/dead/", &format!("http://{dead}"), "auth = \"public\"")
        + &route("/", &live, "auth = \"public\"");
    let proxy = Proxy::start(move |_| {
        config(
            &issuer,
            "http://app.example.com",
            "request_timeout = \"500ms\"",
            "",
            &routes,
        )
    })
    .await;
    let r = raw_get(proxy.addr, "/dead/x", "app.example.com", "").await;
    assert_eq!(raw_status(&r), 502, "{r}");
    assert!(
        !r.contains(&dead.port().to_string()),
        "no internal address in the page"
    );
    assert!(r.to_ascii_lowercase().contains("cache-control: no-store"));
    up.set_mode(EchoMode::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let r = raw_get(proxy.addr, "/slow", "app.example.com", "").await;
    assert_eq!(raw_status(&r), 504, "{r}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    up.set_mode(EchoMode::Normal);
    let r = raw_get(proxy.addr, "/fine", "app.example.com", "").await;
    assert_eq!(raw_status(&r), 200);
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream() {
    let idp = idp().await;
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(&idp, &up, "")).await;
    let b = Browser::new(proxy.addr);
    let body = bytes::Bytes::from(vec![b'x'; 3 * 1024 * 1024]);
    let r = b
        .try_request(
            http::Method::POST,
            "https://app.example.com/public/upload",
            &[("content-type", "application/octet-stream")],
            body,
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.last().body.len(), 3 * 1024 * 1024);
    assert_eq!(up.last().method, "POST");
}
