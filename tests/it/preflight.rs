//! CORS preflights on a route with `allow_preflight = true` (SPEC `[[route]]`): `OPTIONS` with
//! `Origin` and `Access-Control-Request-Method` reaches the upstream without a session, with
//! client identity headers still stripped; anything less needs a login as usual.

use http::{Method, StatusCode};

use crate::support::*;

const CORS_ROUTE: &str = r#"
[[route]]
host = "cors.example.com"
path = "/"
upstream = "UPSTREAM"
allow_preflight = true
"#;

#[tokio::test]
async fn preflights_pass_only_where_allowed_and_only_when_complete() {
    let idp = idp().await;
    let up = Upstream::start().await;
    let proxy = Proxy::start(reference_config(
        &idp,
        &up,
        &CORS_ROUTE.replace("UPSTREAM", &up.url()),
    ))
    .await;
    let mut api = Browser::new(proxy.addr);
    api.accept = "*/*";
    let preflight: &[(&str, &str)] = &[
        ("origin", "https://web.example.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "content-type"),
        ("x-auth-request-user", "admin"),
        ("x_auth_request_email", "admin@example.com"),
        ("x-forwarded-user", "admin"),
    ];

    let r = api
        .request(
            Method::OPTIONS,
            "https://cors.example.com/api/items",
            preflight,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = up.last();
    assert_eq!(seen.method, "OPTIONS");
    assert_eq!(seen.uri, "/api/items");
    assert_eq!(
        seen.one("origin").as_deref(),
        Some("https://web.example.com")
    );
    assert_eq!(
        seen.one("access-control-request-method").as_deref(),
        Some("PUT")
    );
    for h in [
        "x-auth-request-user",
        "x_auth_request_email",
        "x-auth-request-email",
        "x-forwarded-user",
    ] {
        assert!(seen.all(h).is_empty(), "{h} reached the upstream");
    }

    let before = up.count();
    // Incomplete preflights, other methods, and routes without the key need a login.
    type Case<'a> = (Method, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        (
            Method::OPTIONS,
            "https://cors.example.com/api/items",
            vec![],
        ),
        (
            Method::OPTIONS,
            "https://cors.example.com/api/items",
            vec![("origin", "https://web.example.com")],
        ),
        (
            Method::OPTIONS,
            "https://cors.example.com/api/items",
            vec![("access-control-request-method", "PUT")],
        ),
        (
            Method::GET,
            "https://cors.example.com/api/items",
            preflight.to_vec(),
        ),
        (
            Method::PUT,
            "https://cors.example.com/api/items",
            preflight.to_vec(),
        ),
        (
            Method::OPTIONS,
            "https://app.example.com/api/items",
            preflight.to_vec(),
        ),
    ];
    for (method, url, headers) in cases {
        let r = api.request(method.clone(), url, &headers).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{method} {url} {headers:?}"
        );
        assert_eq!(r.json()["error"], "unauthenticated");
    }
    assert_eq!(up.count(), before);
}
