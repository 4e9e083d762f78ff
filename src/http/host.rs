//! Which host a request is for (RFC 9112 §3.2, RFC 9110 §7.2, RFC 9113 §8.3.1).
//!
//! HTTP/1.1 needs exactly one `Host` field; an absolute-form target must name the same
//! authority. HTTP/2 uses `:authority`, and a `host` field, when also sent, must agree.
//! Anything missing, repeated, malformed or contradictory is a 400: the host picks the route,
//! so it is never guessed at. Hosts are compared lower-case with one trailing dot removed
//! (`APP.EXAMPLE.COM.` is `app.example.com`).

use http::header::HOST;
use http::{HeaderMap, Uri, Version};

/// The request's host, lower-case, without port or trailing dot, plus the port if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHost {
    pub host: String,
    pub port: Option<u16>,
    /// The authority exactly as the client sent it (for `preserve_host`).
    pub raw: String,
}

/// Why no host could be determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("missing host")]
    Missing,
    #[error("more than one host field")]
    Duplicate,
    #[error("malformed host")]
    Malformed,
    #[error("request target authority differs from host")]
    Mismatch,
}

/// Determines the host of a request from its target and headers.
pub fn request_host(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<RequestHost, HostError> {
    let mut fields = headers.get_all(HOST).iter();
    let field = fields.next();
    if fields.next().is_some() {
        return Err(HostError::Duplicate);
    }
    let field = match field {
        Some(v) => Some(parse(v.to_str().map_err(|_| HostError::Malformed)?)?),
        None => None,
    };
    let authority = match uri.authority() {
        Some(a) => Some(parse(a.as_str())?),
        None => None,
    };
    match (version, authority, field) {
        (_, Some(a), Some(f)) if a.host != f.host || a.port != f.port => Err(HostError::Mismatch),
        (_, Some(a), _) => Ok(a),
        (Version::HTTP_2 | Version::HTTP_3, None, _) => Err(HostError::Missing),
        (_, None, Some(f)) => Ok(f),
        (_, None, None) => Err(HostError::Missing),
    }
}

/// Parses `host[:port]` (reg-name, IPv4 or bracketed IPv6).
pub fn parse(raw: &str) -> Result<RequestHost, HostError> {
    if raw.is_empty() || raw.len() > 255 {
        return Err(HostError::Malformed);
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or(HostError::Malformed)?;
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(HostError::Malformed);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(HostError::Malformed)?),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        let (h, p) = match raw.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        };
        let h = h.strip_suffix('.').unwrap_or(h);
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if h.is_empty() || !h.split('.').all(valid_label) {
            return Err(HostError::Malformed);
        }
        (h.to_ascii_lowercase(), p)
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| HostError::Malformed)?)
        }
        Some(_) => return Err(HostError::Malformed),
    };
    Ok(RequestHost {
        host,
        port,
        raw: raw.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h1(target: &str, hosts: &[&str]) -> Result<RequestHost, HostError> {
        let uri: Uri = target.parse().unwrap();
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(HOST, HeaderValue::from_str(h).unwrap());
        }
        request_host(Version::HTTP_11, &uri, &headers)
    }

    #[test]
    fn host_rules() {
        assert_eq!(
            h1("/x", &["App.Example.com:8080"]).unwrap().host,
            "app.example.com"
        );
        assert_eq!(
            h1("/x", &["App.Example.com:8080"]).unwrap().port,
            Some(8080)
        );
        assert_eq!(
            h1("/x", &["APP.EXAMPLE.COM."]).unwrap().host,
            "app.example.com"
        );
        assert_eq!(h1("/x", &["[::1]:4180"]).unwrap().host, "[::1]");
        assert_eq!(h1("/x", &[]), Err(HostError::Missing));
        assert_eq!(h1("/x", &["a.com", "b.com"]), Err(HostError::Duplicate));
        for bad in [
            "app.example.com@evil.com",
            "app.example.com:80:80",
            "a..b",
            "a b",
            ":80",
            "a.com:",
            "a.com:99999",
            "[zz]",
        ] {
            assert!(h1("/x", &[bad]).is_err(), "{bad}");
        }
        assert_eq!(
            h1("http://app.example.com/admin", &["app.example.com"])
                .unwrap()
                .host,
            "app.example.com"
        );
        assert_eq!(
            h1("https://evil.com/x", &["app.example.com"]),
            Err(HostError::Mismatch)
        );
    }

    #[test]
    fn h2_authority_wins_only_when_consistent() {
        let uri: Uri = "https://app.example.com/x".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(
            request_host(Version::HTTP_2, &uri, &headers).unwrap().host,
            "app.example.com"
        );
        headers.insert(HOST, HeaderValue::from_static("evil.com"));
        assert_eq!(
            request_host(Version::HTTP_2, &uri, &headers),
            Err(HostError::Mismatch)
        );
    }
}
