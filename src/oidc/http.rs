//! Outbound HTTP to the OpenID provider: openidconnect's [`AsyncHttpClient`] over our
//! hyper-util client (STACK A3 "HTTP client").
//!
//! Every call to the IdP (discovery, JWKS, token, userinfo) goes through [`IdpHttp`], which is
//! deliberately less capable than a browser-grade client (SECURITY IDP-03, IDP-04, IDP-07):
//! - **No redirects.** A 3xx answer is an error ([`IdpHttpError::Redirect`]); a token request is
//!   never re-sent, with the client secret and code, to wherever `Location` points (RFC 9700
//!   §4.12, RFC 6749 §10.9).
//! - **Bounded bodies.** At most `max_body` bytes are read ([`http_body_util::Limited`]); no
//!   `Accept-Encoding` is sent, so nothing is ever decompressed.
//! - **Deadlines.** A connect timeout and a total timeout per call (connect, headers and body).
//! - **No cookies.** `Set-Cookie` from the IdP is dropped, and none is ever sent.
//!
//! TLS settings (native roots plus an optional extra CA) come from the caller; plain `http://`
//! is allowed at this layer so that loopback development IdPs work — which URLs may be `http`
//! is decided by discovery validation in [`super`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call to the IdP failed at the HTTP level. Messages carry no URL query, body or
/// credential.
#[derive(Debug, thiserror::Error)]
pub enum IdpHttpError {
    /// The request could not be built (bad URI); a programming or configuration error.
    #[error("invalid request to the identity provider")]
    InvalidRequest,
    /// TCP connect or HTTP exchange failed.
    #[error("cannot reach the identity provider")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    /// The TLS handshake failed (untrusted, expired or wrong-host certificate, a protocol
    /// version below TLS 1.2, …); the source names rustls' reason.
    #[error("TLS with the identity provider failed")]
    Tls(#[source] hyper_util::client::legacy::Error),
    /// Connect or total deadline passed.
    #[error("the identity provider did not answer in time")]
    Timeout,
    /// A 3xx answer: never followed.
    #[error("the identity provider answered with a redirect (status {0}), which is not followed")]
    Redirect(u16),
    /// The body is larger than the configured cap.
    #[error("the identity provider's response body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// The connection broke while the body was read.
    #[error("reading the identity provider's response failed")]
    Body(#[source] BoxError),
}

/// HTTP client for IdP calls. Cheap to clone (shares one connection pool).
#[derive(Clone)]
pub struct IdpHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    total_timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for IdpHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpHttp")
            .field("total_timeout", &self.total_timeout)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl IdpHttp {
    /// Builds the client. `tls` comes from the caller (native roots + optional extra CA); any
    /// ALPN list in it is replaced (HTTP/1.1 only). `http://` URLs are allowed too (loopback
    /// development IdPs). `connect_timeout` bounds TCP connect, `total_timeout` the whole call,
    /// `max_body` the bytes read from a response body.
    pub fn new(
        mut tls: rustls::ClientConfig,
        connect_timeout: Duration,
        total_timeout: Duration,
        max_body: usize,
    ) -> Self {
        // hyper-rustls asserts an empty ALPN list and fills it itself.
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.enforce_http(false); // wrap_connector does not do this for us (STACK A2 pitfall 7)
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(4)
            .pool_timer(TokioTimer::new())
            .build(connector);
        IdpHttp {
            client,
            total_timeout,
            max_body,
        }
    }

    /// The total deadline per call.
    pub fn total_timeout(&self) -> Duration {
        self.total_timeout
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, IdpHttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let exchange = async {
            let response = self.client.request(request).await.map_err(classify)?;
            if response.status().is_redirection() {
                return Err(IdpHttpError::Redirect(response.status().as_u16()));
            }
            let (mut parts, body) = response.into_parts();
            parts.headers.remove(http::header::SET_COOKIE);
            let bytes = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        IdpHttpError::BodyTooLarge(self.max_body)
                    } else {
                        IdpHttpError::Body(e)
                    }
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, bytes.to_vec()))
        };
        match tokio::time::timeout(self.total_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(IdpHttpError::Timeout),
        }
    }
}

/// A connect timeout surfaces as a connect error whose cause is `io::ErrorKind::TimedOut`; a
/// failed handshake as one whose cause is a `rustls::Error` (hyper-rustls wraps tokio-rustls'
/// `io::Error` in another one, and `io::Error::source` skips the wrapped error itself, so
/// wrapped errors are looked into too).
fn classify(err: hyper_util::client::legacy::Error) -> IdpHttpError {
    let mut tls = false;
    let mut pending: Vec<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(&err).into_iter().collect();
    // Bounded: error chains are short; the cap only guards against a pathological cycle.
    for _ in 0..32 {
        let Some(e) = pending.pop() else { break };
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::TimedOut {
                return IdpHttpError::Timeout;
            }
            if let Some(inner) = io.get_ref() {
                pending.push(inner);
            }
        }
        tls |= e.is::<rustls::Error>();
        pending.extend(e.source());
    }
    if tls {
        IdpHttpError::Tls(err)
    } else {
        IdpHttpError::Unreachable(err)
    }
}

impl<'c> AsyncHttpClient<'c> for IdpHttp {
    type Error = IdpHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, IdpHttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::testutil::{Reply, TestServer, test_http};

    fn get(url: &str) -> HttpRequest {
        http::Request::builder().uri(url).body(Vec::new()).unwrap()
    }

    #[tokio::test]
    async fn returns_body_and_drops_set_cookie() {
        let srv =
            TestServer::start(|_req| Reply::json(200, "{\"ok\":true}").header("set-cookie", "a=b"))
                .await;
        let http = test_http();
        let resp = http.call(get(&srv.url("/x"))).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), b"{\"ok\":true}");
        assert!(resp.headers().get("set-cookie").is_none());
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let target = TestServer::start(|_req| Reply::json(200, "{}")).await;
        let location = target.url("/token");
        let srv =
            TestServer::start(move |_req| Reply::json(307, "").header("location", &location)).await;
        let err = test_http().call(get(&srv.url("/token"))).await.unwrap_err();
        assert!(matches!(err, IdpHttpError::Redirect(307)), "{err:?}");
        assert_eq!(target.hits(), 0, "redirect target must never be contacted");
    }

    #[tokio::test]
    async fn oversized_body_is_refused() {
        let big = "x".repeat(70 * 1024);
        let srv = TestServer::start(move |_req| Reply::json(200, &big)).await;
        let err = test_http().call(get(&srv.url("/"))).await.unwrap_err();
        assert!(matches!(err, IdpHttpError::BodyTooLarge(65536)), "{err:?}");
    }

    #[tokio::test]
    async fn slow_answer_times_out() {
        let srv =
            TestServer::start(|_req| Reply::json(200, "{}").delay(Duration::from_secs(5))).await;
        let started = std::time::Instant::now();
        let err = test_http().call(get(&srv.url("/"))).await.unwrap_err();
        assert!(matches!(err, IdpHttpError::Timeout), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = test_http()
            .call(get(&format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert!(matches!(err, IdpHttpError::Unreachable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn failed_handshake_is_a_tls_error_naming_the_cause() {
        // An https URL to a plain-HTTP server: rustls refuses what comes back.
        let srv = TestServer::start(|_req| Reply::json(200, "{}")).await;
        let url = srv.url("/").replacen("http://", "https://", 1);
        let err = test_http().call(get(&url)).await.unwrap_err();
        assert!(matches!(err, IdpHttpError::Tls(_)), "{err:?}");
        let chain = crate::oidc::error_chain(&err);
        assert!(
            chain.starts_with("TLS with the identity provider failed: "),
            "{chain}"
        );
        assert_eq!(srv.hits(), 0, "no HTTP request was served");
    }
}
