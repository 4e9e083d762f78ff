//! Validated, typed configuration: what the rest of portcullis runs on.
//!
//! The TOML file (SPEC "Configuration") is parsed by [`load`] into these types. Nothing here
//! is an `Option` the program cannot act on: defaults are applied, secrets resolved, URLs
//! parsed and cross-field rules checked before a [`Config`] exists.

pub mod load;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

pub use load::{ConfigError, ConfigErrors, check_summary, from_file, from_str, route_summary};

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub oidc: OidcConfig,
    pub session: SessionConfig,
    pub headers: HeadersConfig,
    /// At least one; first match wins.
    pub routes: Vec<RouteConfig>,
}

/// `[server]`
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `listen`: where the proxy accepts connections.
    pub listen: SocketAddr,
    /// `public_url`: the external origin (scheme, host, port; no path, query or fragment).
    pub public_url: PublicUrl,
    /// `tls_cert` + `tls_key`: both or neither.
    pub tls: Option<TlsFiles>,
    /// `admin_listen`: /metrics, /healthz, /readyz.
    pub admin_listen: Option<SocketAddr>,
    /// `trusted_proxies`: peers whose `X-Forwarded-*` are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// `shutdown_timeout` (default 30s).
    pub shutdown_timeout: Duration,
    /// `request_timeout` (default 60s): upstream response-headers deadline.
    pub request_timeout: Duration,
    /// `upstream_ca_file`: extra PEM CA bundle for https upstreams and the IdP.
    pub upstream_ca_file: Option<PathBuf>,
    /// `max_header_bytes` (default 16384): a larger request head is answered 431.
    pub max_header_bytes: usize,
    /// `max_headers` (default 100).
    pub max_headers: usize,
    /// `header_read_timeout` (default 10s).
    pub header_read_timeout: Duration,
    /// `keepalive_timeout` (default 75s).
    pub keepalive_timeout: Duration,
    /// `max_connections` (default 10000).
    pub max_connections: usize,
}

/// The external origin of the proxy, from `server.public_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `true` for `https`.
    pub https: bool,
    /// Lower-case host (IPv6 in brackets), no trailing dot.
    pub host: String,
    /// The explicit port, or `None` for the scheme's default.
    pub port: Option<u16>,
}

impl PublicUrl {
    /// `https://host[:port]` — no trailing slash.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        match self.port {
            Some(p) => format!("{scheme}://{}:{p}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }
    /// The port actually used (explicit or the scheme default).
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies inside this network. IPv4-mapped IPv6 addresses are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

pub use crate::secret::Secret;

/// `[oidc]`
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// `issuer`, exactly as configured (compared as a string with discovery's `issuer`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// `scopes` (default `["openid", "email", "profile"]`); always contains `openid`.
    pub scopes: Vec<String>,
    /// `callback_path` (default `/oauth2/callback`); an absolute path.
    pub callback_path: String,
    /// `groups_claim` (default `groups`).
    pub groups_claim: String,
    /// `extra_auth_params`: added to the authorization request (never overriding ours).
    pub extra_auth_params: Vec<(String, String)>,
    /// `bearer_audiences`: non-empty enables bearer JWTs.
    pub bearer_audiences: Vec<String>,
}

/// `session.same_site`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

/// `session.store`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Redis,
}

/// `[session]`
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `cookie_name`, or the default (`__Host-portcullis` for https without `cookie_domain`,
    /// else `_portcullis`).
    pub cookie_name: String,
    /// `cookie_secret` (one or a list; each base64 of >= 32 bytes): the first seals, all open.
    pub cookie_secrets: Vec<CookieSecret>,
    pub cookie_domain: Option<String>,
    pub same_site: SameSite,
    /// `lifetime` (default 12h): absolute.
    pub lifetime: Duration,
    /// `idle_timeout` (default 1h).
    pub idle_timeout: Duration,
    /// `refresh` (default false).
    pub refresh: bool,
    pub store: StoreKind,
    /// `redis_url` / `redis_url_file` (may hold a password): never printed.
    pub redis_url: Option<Secret>,
    /// `max_sessions` (default 1000000): memory store bound.
    pub max_sessions: u64,
}

/// Decoded cookie secret bytes (>= 32): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieSecret(pub Vec<u8>);

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSecret([redacted])")
    }
}

/// `[headers]`: identity headers sent upstream; `None` = turned off (`""`).
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    /// default `X-Auth-Request-User` (the `sub` claim)
    pub user: Option<HeaderName>,
    /// default `X-Auth-Request-Email`
    pub email: Option<HeaderName>,
    /// default `X-Auth-Request-Preferred-Username`
    pub preferred_username: Option<HeaderName>,
    /// default `X-Auth-Request-Groups` (comma-separated)
    pub groups: Option<HeaderName>,
    /// default off
    pub access_token: Option<HeaderName>,
    /// default false: `Authorization: Bearer <id_token>` upstream
    pub authorization_bearer_id_token: bool,
    /// `[headers.claims]`: header name → claim name, in file order.
    pub claims: Vec<(HeaderName, String)>,
}

/// `route.auth`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Public,
}

/// `route.host`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Lower-case host, no port, no trailing dot.
    Exact(String),
    /// `*.example.com` stored as `example.com`: matches `x.example.com`, `a.b.example.com`,
    /// never `example.com` itself.
    Wildcard(String),
}

/// An upstream origin: `http(s)://host[:port]` plus an optional base path.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub https: bool,
    /// host as it appears in an authority (IPv6 bracketed)
    pub host: String,
    pub port: u16,
    /// Path prefix without trailing slash ("" for none), prepended to the request path.
    pub base_path: String,
    /// `host[:port]` as to be sent in `Host` (port omitted when it is the scheme default).
    pub authority: String,
}

/// `[[route]]`
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Index in file order; also the route's label in logs ("route0", ...).
    pub index: usize,
    pub host: Option<HostPattern>,
    /// Normalised absolute path prefix; matched on segment boundaries.
    pub path: String,
    pub upstream: Upstream,
    pub auth: AuthMode,
    pub allow_emails: Vec<String>,
    pub allow_email_domains: Vec<String>,
    pub allow_groups: Vec<String>,
    pub preserve_host: bool,
    pub allow_preflight: bool,
}

impl RouteConfig {
    pub fn label(&self) -> String {
        format!("route{}", self.index)
    }
}
