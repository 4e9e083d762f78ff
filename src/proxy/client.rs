//! hyper-util's pooled client for the upstream requests the per-worker pool
//! ([`super::pool`]) does not carry: `https` upstreams (HTTP/1.1 or HTTP/2 by ALPN) and
//! WebSocket upgrades (HTTP/1.1 only).

use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::http::body::Body;

/// The upstream client type.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Builds the pooled upstream client. The legacy client never follows redirects, which is
/// what a proxy wants: a 3xx goes back to the browser unchanged. `http2`: offer h2 by ALPN to
/// https upstreams (off for the client that carries WebSocket upgrades: an h2 connection
/// cannot upgrade).
pub fn build(tls: rustls::ClientConfig, connect_timeout: Duration, http2: bool) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false); // STACK A1 pitfall 7: wrap_connector needs this for https://
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let connector = if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}
