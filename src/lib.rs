//! portcullis: an authenticating reverse proxy.
//!
//! Unauthenticated browsers are sent through an OpenID Connect login (authorization code
//! flow with PKCE) at the identity provider; the proxy keeps a server-side session and
//! forwards authenticated requests upstream with identity headers. The binary is a thin
//! shell over this library: [`run`] serves a validated [`config::Config`].
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod devidp;
pub mod error;
pub mod explain;
pub mod http;
pub mod identity;
pub mod oidc;
pub mod policy;
pub mod proxy;
pub mod route;
pub mod secret;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod tls;

use std::future::Future;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::StartError;

/// Binds `server.listen` and serves until `shutdown` resolves.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let addr = cfg.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    serve(listener, cfg, shutdown).await
}

/// Serves on an already bound listener (tests bind `127.0.0.1:0` first).
pub async fn serve(
    listener: TcpListener,
    cfg: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let app = app::App::new(cfg)?;
    let cancel = CancellationToken::new();
    let discovery = app.provider().spawn_discovery(cancel.clone());
    let housekeeping = tokio::spawn(housekeeping(app.clone(), cancel.clone()));
    let tunnels = tokio::spawn(
        app.tunnels
            .clone()
            .watch_sessions(app.store.clone(), cancel.clone()),
    );
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, public_url = %app.config().server.public_url.origin(), "portcullis listening");
    }
    let shutdown_timeout = app.config().server.shutdown_timeout;
    let served = server::serve(listener, app.clone(), shutdown).await;
    let result = match served {
        Ok(running) => {
            // hyper's graceful shutdown does not cover upgraded connections: close them
            // here, while the worker runtimes they run on are still alive.
            app.tunnels.shutdown(shutdown_timeout).await;
            running.finish().await;
            Ok(())
        }
        Err(source) => Err(StartError::Workers { source }),
    };
    cancel.cancel();
    let _ = tunnels.await;
    let _ = discovery.await;
    let _ = housekeeping.await;
    result
}

/// moka expires lazily: run its pending work every few seconds so expired sessions are freed,
/// their indexes cleaned and their end notifications sent even when the store is quiet. The
/// upstream pools drop connections idle for longer than [`proxy::pool::IDLE_TIMEOUT`].
async fn housekeeping(app: std::sync::Arc<app::App>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                app.store.run_pending_tasks().await;
                app.prune_upstream_pools();
            }
            _ = cancel.cancelled() => return,
        }
    }
}

/// A fresh cookie secret: 32 random bytes, base64.
pub fn generate_secret() -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the OS random source failed");
    base64::engine::general_purpose::STANDARD.encode(b)
}
