//! An https upstream through the pooled client: trusted via `server.upstream_ca_file`, and an
//! untrusted certificate is a 502 (SECURITY UP-02), never an insecure fallback.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (installed by scripts/test.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn make_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=portcullis test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

async fn tls_echo(cert: &Path, key: &Path) -> std::net::SocketAddr {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
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
    let dir = std::env::temp_dir().join(format!("portcullis-tls-{}", std::process::id()));
    let (ca, cert, key) = make_pki(&dir);
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
    let _ = std::fs::remove_dir_all(&dir);
}
