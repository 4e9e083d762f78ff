//! `portcullis demo`: the one-command local demo (SPEC "Command line"). It starts, all on
//! 127.0.0.1 and nowhere else,
//!
//! - the development OpenID provider ([`crate::devidp`], with its login page; any username
//!   logs in, usernames starting with `admin` get the group `admins`),
//! - an echo upstream ([`echo`]) that shows the identity headers it receives,
//! - the proxy, configured by `config/demo.toml` (embedded at build time).
//!
//! Ports default to 4180 (proxy), 4181 (provider) and 4182 (upstream); the parsed
//! configuration is patched with the ports actually bound (0 picks a free one, for tests).
//! Every listener is bound before anything is served, so a port in use is one clear error.

pub mod echo;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigErrors};
use crate::devidp::{DevIdp, DevIdpOptions};
use crate::error::StartError;

/// `config/demo.toml`, the proxy's configuration in the demo.
pub const CONFIG: &str = include_str!("../config/demo.toml");

/// How the embedded configuration is named in messages.
pub const CONFIG_LABEL: &str = "config/demo.toml";

/// How long the proxy may take to load the provider's discovery document and keys.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The demo's ports, all on 127.0.0.1. `0` picks a free port (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoOptions {
    /// The proxy: the URL to open (`--port`, default 4180).
    pub proxy_port: u16,
    /// The development OpenID provider (`--idp-port`, default 4181).
    pub idp_port: u16,
    /// The echo upstream (`--upstream-port`, default 4182).
    pub upstream_port: u16,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            proxy_port: 4180,
            idp_port: 4181,
            upstream_port: 4182,
        }
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Another program (or another demo) listens on the port.
    #[error(
        "port {port} on 127.0.0.1 is already in use; stop what uses it or pick another port with {flag} PORT"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The command-line flag that sets it.
        flag: &'static str,
    },
    /// Binding failed for another reason (e.g. a privileged port).
    #[error("cannot listen on 127.0.0.1:{port} (set by {flag}): {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The command-line flag that sets it.
        flag: &'static str,
        /// What the OS said.
        source: io::Error,
    },
    /// Two components were given the same port.
    #[error("{first} and {second} are both {port}; give each its own port")]
    SamePort {
        /// The shared port.
        port: u16,
        /// One flag.
        first: &'static str,
        /// The other flag.
        second: &'static str,
    },
    /// The embedded `config/demo.toml` does not validate (a build defect).
    #[error("the demo configuration is invalid:\n{0}")]
    Config(#[from] ConfigErrors),
    /// The proxy refused to start.
    #[error("{0}")]
    Start(#[from] StartError),
    /// The proxy did not load the provider's discovery document in time.
    #[error("the demo proxy did not become ready within {0:?}")]
    NotReady(Duration),
}

/// A running demo. [`Demo::wait`] returns once the shutdown future given to [`start`] resolved
/// and all three servers stopped; dropping the handle stops them in the background.
#[derive(Debug)]
pub struct Demo {
    url: String,
    issuer: String,
    upstream_url: String,
    cancel: CancellationToken,
    done: Option<JoinHandle<()>>,
}

/// The parsed, validated `config/demo.toml` with its default ports.
pub fn config() -> Result<Config, ConfigErrors> {
    config::from_str(CONFIG, CONFIG_LABEL, &|_| None, Path::new("."))
}

/// Starts the provider, the echo upstream and the proxy, waits until the proxy is ready and
/// returns. Everything stops when `shutdown` resolves (or the handle is dropped).
pub async fn start(
    opts: DemoOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Demo, DemoError> {
    let ports = [
        (opts.proxy_port, "--port"),
        (opts.idp_port, "--idp-port"),
        (opts.upstream_port, "--upstream-port"),
    ];
    for (i, &(port, first)) in ports.iter().enumerate() {
        if let Some(&(_, second)) = ports[i + 1..].iter().find(|(p, _)| *p == port && port != 0) {
            return Err(DemoError::SamePort {
                port,
                first,
                second,
            });
        }
    }
    let mut cfg = config()?;

    // Bind everything first: a port in use fails before anything is served or logged.
    let proxy_listener = bind(opts.proxy_port, "--port").await?;
    let upstream_listener = bind(opts.upstream_port, "--upstream-port").await?;
    let proxy_addr = proxy_listener
        .local_addr()
        .map_err(|source| DemoError::Bind {
            port: opts.proxy_port,
            flag: "--port",
            source,
        })?;
    let upstream_port = upstream_listener
        .local_addr()
        .map_err(|source| DemoError::Bind {
            port: opts.upstream_port,
            flag: "--upstream-port",
            source,
        })?
        .port();
    let origin = format!("http://127.0.0.1:{}", proxy_addr.port());

    let idp = DevIdp::start(DevIdpOptions {
        bind: loopback(opts.idp_port),
        client_id: cfg.oidc.client_id.clone(),
        client_secret: cfg.oidc.client_secret.expose().to_owned(),
        redirect_uris: vec![format!("{origin}{}", cfg.oidc.callback_path)],
        // The echo page signs out to /public/; the default sign-out lands on /.
        post_logout_redirect_uris: vec![format!("{origin}/"), format!("{origin}/public/")],
        auto_login: None,
        ..DevIdpOptions::default()
    })
    .await
    .map_err(|source| bind_error(opts.idp_port, "--idp-port", source))?;

    let issuer = idp.issuer();
    patch(&mut cfg, proxy_addr, &issuer, upstream_port);

    let cancel = CancellationToken::new();
    let echo_task = tokio::spawn(echo::serve(
        upstream_listener,
        cancel.clone().cancelled_owned(),
    ));
    let mut proxy_task = tokio::spawn(crate::serve(
        proxy_listener,
        cfg,
        cancel.clone().cancelled_owned(),
    ));

    let ready = tokio::select! {
        ready = wait_ready(proxy_addr) => ready.map_err(|()| DemoError::NotReady(READY_TIMEOUT)),
        ended = &mut proxy_task => Err(match ended {
            Ok(Err(e)) => DemoError::Start(e),
            _ => DemoError::NotReady(READY_TIMEOUT),
        }),
    };
    if let Err(e) = ready {
        cancel.cancel();
        let _ = echo_task.await;
        idp.shutdown().await;
        return Err(e);
    }

    // Poll `shutdown` once now, so signal handlers it installs are in place before the
    // caller prints the URL.
    let mut shutdown = Box::pin(shutdown);
    let already = tokio::select! {
        biased;
        () = &mut shutdown => true,
        () = std::future::ready(()) => false,
    };
    let stop = cancel.clone();
    let done = tokio::spawn(async move {
        if !already {
            tokio::select! {
                () = shutdown => {}
                () = stop.cancelled() => {}
            }
        }
        stop.cancel();
        let _ = proxy_task.await;
        let _ = echo_task.await;
        idp.shutdown().await;
        tracing::info!("portcullis demo stopped");
    });

    Ok(Demo {
        url: format!("{origin}/"),
        issuer,
        upstream_url: format!("http://127.0.0.1:{upstream_port}"),
        cancel,
        done: Some(done),
    })
}

impl Demo {
    /// The URL to open: `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The development provider's issuer, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The echo upstream, `http://127.0.0.1:PORT`.
    pub fn upstream_url(&self) -> &str {
        &self.upstream_url
    }

    /// What `portcullis demo` prints once everything is up.
    pub fn welcome(&self) -> String {
        let lines = [
            String::new(),
            format!("  portcullis demo is running. Open {}", self.url),
            String::new(),
            "  Log in with any username (try `admin…` for the admins group).".to_owned(),
            "  Routes: / any logged-in user · /public/ no login · /admin group admins only"
                .to_owned(),
            format!(
                "  The OpenID provider at {} is for development only: any username logs in.",
                self.issuer
            ),
            format!(
                "  The echo upstream at {} shows what portcullis sends it.",
                self.upstream_url
            ),
            String::new(),
            "  Press Ctrl-C to stop.".to_owned(),
        ];
        lines.join("\n")
    }

    /// Waits until the shutdown future resolved and all three servers stopped.
    pub async fn wait(mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }

    /// Stops all three servers now and waits for them.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.wait().await;
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.done.is_some() {
            self.cancel.cancel();
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

async fn bind(port: u16, flag: &'static str) -> Result<TcpListener, DemoError> {
    TcpListener::bind(loopback(port))
        .await
        .map_err(|source| bind_error(port, flag, source))
}

fn bind_error(port: u16, flag: &'static str, source: io::Error) -> DemoError {
    if source.kind() == io::ErrorKind::AddrInUse {
        DemoError::PortInUse { port, flag }
    } else {
        DemoError::Bind { port, flag, source }
    }
}

/// Points the parsed configuration at the ports actually bound.
fn patch(cfg: &mut Config, proxy: SocketAddr, issuer: &str, upstream_port: u16) {
    cfg.server.listen = proxy;
    cfg.server.public_url.port = Some(proxy.port());
    cfg.oidc.issuer = issuer.to_owned();
    for route in &mut cfg.routes {
        route.upstream.port = upstream_port;
        route.upstream.authority = format!("{}:{upstream_port}", route.upstream.host);
    }
}

/// Polls the proxy's `/readyz` until it answers 200 (discovery and keys loaded).
async fn wait_ready(proxy: SocketAddr) -> Result<(), ()> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{proxy}/readyz").parse().map_err(|_| ())?;
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while tokio::time::Instant::now() < deadline {
        let attempt = tokio::time::timeout(Duration::from_secs(2), client.get(uri.clone())).await;
        if let Ok(Ok(resp)) = attempt
            && resp.status() == http::StatusCode::OK
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AuthMode;

    #[test]
    fn embedded_config_is_loopback_only_and_matches_the_defaults() {
        let cfg = config().expect("config/demo.toml is valid");
        let d = DemoOptions::default();
        assert!(cfg.server.listen.ip().is_loopback());
        assert_eq!(cfg.server.listen, loopback(d.proxy_port));
        assert_eq!(
            cfg.server.public_url.origin(),
            format!("http://127.0.0.1:{}", d.proxy_port)
        );
        assert_eq!(cfg.oidc.issuer, format!("http://127.0.0.1:{}", d.idp_port));
        let routes: Vec<(&str, AuthMode, &[String])> = cfg
            .routes
            .iter()
            .map(|r| (r.path.as_str(), r.auth, r.allow_groups.as_slice()))
            .collect();
        assert_eq!(
            routes,
            [
                ("/public/", AuthMode::Public, &[][..]),
                ("/admin", AuthMode::Required, &["admins".to_owned()][..]),
                ("/", AuthMode::Required, &[][..]),
            ]
        );
        for r in &cfg.routes {
            assert_eq!(r.upstream.host, "127.0.0.1");
            assert_eq!(r.upstream.port, d.upstream_port);
        }
    }

    #[test]
    fn patch_moves_every_address() {
        let mut cfg = config().unwrap();
        patch(&mut cfg, loopback(5000), "http://127.0.0.1:5001", 5002);
        assert_eq!(cfg.server.listen, loopback(5000));
        assert_eq!(cfg.server.public_url.origin(), "http://127.0.0.1:5000");
        assert_eq!(cfg.oidc.issuer, "http://127.0.0.1:5001");
        for r in &cfg.routes {
            assert_eq!(r.upstream.port, 5002);
            assert_eq!(r.upstream.authority, "127.0.0.1:5002");
        }
    }

    #[tokio::test]
    async fn the_same_port_twice_is_refused() {
        let opts = DemoOptions {
            proxy_port: 0,
            idp_port: 4999,
            upstream_port: 4999,
        };
        let err = start(opts, std::future::pending()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "--idp-port and --upstream-port are both 4999; give each its own port"
        );
    }
}
