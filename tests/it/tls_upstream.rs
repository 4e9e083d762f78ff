//! An https upstream through the pooled client: trusted via `server.upstream_ca_file`, and an
//! untrusted certificate is a 502 (SECURITY UP-02), never an insecure fallback.

use std::convert::Infallible;
use std::path::Path;

use crate::pki::{Pki, server_config};
use crate::support::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

async fn tls_echo(cert: &Path, key: &Path) -> std::net::SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(cert, key, &[b"h2", b"http/1.1"]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let body = format!(
                        "tls-upstream {} {:?} user={:?}",
                        req.uri(),
                        req.version(),
                        req.headers().get("x-auth-request-user")
                    );
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_upstream_trusted_by_the_extra_ca_and_refused_otherwise() {
    let pki = Pki::new("tls-upstream");
    let ca = pki.ca.clone();
    let (cert, key) = pki.leaf("srv", "127.0.0.1", "IP:127.0.0.1");
    let upstream = tls_echo(&cert, &key).await;
    let idp = idp().await;
    idp.set_auto_login(Some(alice()));
    let issuer = idp.issuer();
    let ca_path = ca.display().to_string();
    let routes = route("/", &format!("https://{upstream}"), "");
    let proxy = Proxy::start(move |_| {
        config(
            &issuer,
            "https://app.example.com",
            &format!("upstream_ca_file = \"{ca_path}\""),
            "cookie_name = \"_portcullis\"",
            &routes,
        )
    })
    .await;
    let b = Browser::new(proxy.addr);
    let r = b.login("https://app.example.com/secure?x=1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body
            .starts_with(&format!("tls-upstream https://{upstream}/secure?x=1 ")),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("HTTP/2"),
        "ALPN picked h2 with the https upstream: {}",
        r.body
    );
    assert!(r.body.contains("u-alice"));
    drop(proxy);

    // The same upstream without the CA: certificate not trusted → 502.
    let issuer = idp.issuer();
    let routes = route("/", &format!("https://{upstream}"), "auth = \"public\"");
    let proxy =
        Proxy::start(move |_| config(&issuer, "https://app.example.com", "", "", &routes)).await;
    let r = raw_get(proxy.addr, "/x", "app.example.com", "").await;
    assert_eq!(raw_status(&r), 502, "{r}");
}
