//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default `info`), as text or, with
//! `PORTCULLIS_LOG_FORMAT=json`, one JSON object per line.
//!
//! Nothing in the code base records a token, cookie value, authorization code, PKCE verifier,
//! nonce or secret: secrets are newtypes whose `Debug` redacts, requests and headers are
//! never logged whole, and the access log carries the path without its query.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

/// Installs the global subscriber (once; later calls are ignored).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PORTCULLIS_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let reg = tracing_subscriber::registry().with(filter);
    let _ = if json {
        reg.with(
            fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(std::io::stderr),
        )
        .try_init()
    } else {
        reg.with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
}
