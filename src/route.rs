//! The route table: `[[route]]` entries matched by host and path prefix, first match wins.
//!
//! Matching rules (SPEC "Configuration", `[[route]]`):
//! - `host` absent matches any host; an exact host matches case-insensitively; `*.example.com`
//!   matches one or more labels in front of `example.com` on a dot boundary (never
//!   `example.com` itself, never `evil-example.com`).
//! - `path` is a prefix on a segment boundary of the *normalised* path (see
//!   [`crate::http::path`]): `/admin` matches `/admin` and `/admin/x`, not `/administrator`;
//!   `/public/` matches `/public/x` but not `/public` (that request falls through to the next
//!   route, normally a protected one).
//! - Path comparison ignores ASCII case, so a case-insensitive upstream can never serve
//!   `/ADMIN` past a route written `/admin` (SECURITY PATH-04). A public prefix therefore also
//!   matches its upper-case spelling; that only widens what is already public.

use std::sync::Arc;

use crate::config::{HostPattern, RouteConfig};

/// The routes in file order, shared read-only by every request.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Arc<RouteConfig>>,
}

impl RouteTable {
    pub fn new(routes: &[RouteConfig]) -> Self {
        RouteTable {
            routes: routes.iter().cloned().map(Arc::new).collect(),
        }
    }

    /// The first route matching `host` (lower-case, no port) and the normalised `path`.
    pub fn find(&self, host: &str, path: &str) -> Option<&Arc<RouteConfig>> {
        self.routes.iter().find(|r| {
            r.host.as_ref().is_none_or(|h| host_matches(h, host)) && path_matches(&r.path, path)
        })
    }

    /// Every route's host pattern (for redirect validation).
    pub fn host_patterns(&self) -> Vec<HostPattern> {
        self.routes.iter().filter_map(|r| r.host.clone()).collect()
    }

    pub fn routes(&self) -> &[Arc<RouteConfig>] {
        &self.routes
    }
}

/// Whether `host` (already lower-case, without port) matches the pattern.
pub fn host_matches(pattern: &HostPattern, host: &str) -> bool {
    match pattern {
        HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
        HostPattern::Wildcard(domain) => {
            host.len() > domain.len() + 1
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
        }
    }
}

/// Segment-boundary prefix match, ASCII case-insensitive.
pub fn path_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let (p, x) = (prefix.as_bytes(), path.as_bytes());
    if x.len() < p.len() || !x[..p.len()].eq_ignore_ascii_case(p) {
        return false;
    }
    prefix.ends_with('/') || x.len() == p.len() || x[p.len()] == b'/'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let exact = HostPattern::Exact("app.example.com".into());
        let wild = HostPattern::Wildcard("apps.example.com".into());
        let cases = [
            (&exact, "app.example.com", true),
            (&exact, "APP.example.com", true),
            (&exact, "app.example.com.evil.com", false),
            (&exact, "evilapp.example.com", false),
            (&wild, "x.apps.example.com", true),
            (&wild, "a.b.apps.example.com", true),
            (&wild, "apps.example.com", false),
            (&wild, "evil-apps.example.com", false),
            (&wild, "x.apps.example.com.evil.com", false),
            (&wild, ".apps.example.com", false),
        ];
        for (p, h, want) in cases {
            assert_eq!(host_matches(p, h), want, "{p:?} vs {h}");
        }
    }

    #[test]
    fn path_prefixes_on_segment_boundaries() {
        let cases = [
            ("/", "/anything", true),
            ("/admin", "/admin", true),
            ("/admin", "/admin/", true),
            ("/admin", "/admin/x", true),
            ("/admin", "/administrator", false),
            ("/admin", "/ADMIN", true),
            ("/admin", "/Admin/x", true),
            ("/public/", "/public/x", true),
            ("/public/", "/public/", true),
            ("/public/", "/public", false),
            ("/public/", "/publicity/secret", false),
            ("/public/", "/public-old/x", false),
            ("/api/v1", "/api/v1/users", true),
            ("/api/v1", "/api/v10", false),
        ];
        for (prefix, path, want) in cases {
            assert_eq!(path_matches(prefix, path), want, "{prefix} vs {path}");
        }
    }
}
