//! The bearer gate of protected routes: `Authorization: Bearer <JWT>` as an identity without a
//! session, when `oidc.bearer_audiences` is set (SPEC "Requests to protected routes";
//! RFC 6750 §2.1 and §3.1; SECURITY IDT-15, DOS-04, DOS-06). The token itself is verified by
//! [`crate::oidc::Provider::verify_bearer`].
//!
//! Rules:
//! - Only with a non-empty `bearer_audiences`; otherwise `Authorization` is not looked at and
//!   passes upstream as before.
//! - The scheme matches case-insensitively (RFC 9110 §11.1: `bearer`, `BEARER`); the token
//!   must be one RFC 6750 `b64token`. Another scheme (`Basic …`) is not a bearer: the cookie
//!   session decides, and the header passes upstream.
//! - Two `Authorization` fields are ambiguous (RFC 9110 §5.3: it is not a list field): 400
//!   with `WWW-Authenticate: Bearer error="invalid_request"`, before any cookie is looked at.
//! - An invalid bearer is 401 with `WWW-Authenticate: Bearer error="invalid_token"` — never a
//!   redirect (for browsers too: they did not send that header by accident) and **never
//!   silently replaced by a cookie session** (fail closed: the client asked to be this token).
//! - A valid bearer **takes precedence over a session cookie** sent with it: the request is
//!   the token's subject, and the cookie is not even opened.
//! - The `Authorization` header is passed upstream unchanged.
//! - Invalid-token log lines are rate-limited ([`LOG_BURST`] per [`LOG_WINDOW_SECS`] s, then a
//!   count of what was suppressed): a flood of garbage costs one access-log line per request
//!   and little else (DOS-06).

use std::sync::Mutex;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::app::{App, unix_now};
use crate::http::body::Body;
use crate::http::pages::Client;
use crate::identity::Identity;
use crate::oidc::BearerError;

/// What the `Authorization` header means for the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No `Authorization`, another scheme, or bearer tokens not enabled: the session decides.
    None,
    /// `Bearer <token>` (the token is not verified yet).
    Bearer(&'a str),
    /// `Bearer` with an empty or syntactically invalid token.
    InvalidBearer,
    /// More than one `Authorization` field.
    Ambiguous,
}

/// Reads the `Authorization` field(s) of a request (no verification).
pub fn credential(headers: &HeaderMap) -> Credential<'_> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let (first, second) = (all.next(), all.next());
    if second.is_some() {
        return Credential::Ambiguous;
    }
    let Some(value) = first else {
        return Credential::None;
    };
    let bytes = value.as_bytes();
    // RFC 9110 §11.4: credentials = auth-scheme [ 1*SP ( token68 / … ) ]. A tab also ends
    // the scheme here, so `Bearer<TAB>x` cannot slip past as "another scheme".
    let (scheme, rest) = match bytes.iter().position(|b| *b == b' ' || *b == b'\t') {
        Some(i) => (&bytes[..i], &bytes[i..]),
        None => (bytes, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Credential::None;
    }
    let token = rest.trim_ascii();
    if !is_b64token(token) {
        return Credential::InvalidBearer;
    }
    // `is_b64token` admits ASCII only.
    match std::str::from_utf8(token) {
        Ok(t) => Credential::Bearer(t),
        Err(_) => Credential::InvalidBearer,
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(t: &[u8]) -> bool {
    let body = t.iter().rposition(|b| *b != b'=').map_or(0, |i| i + 1);
    body > 0
        && t[..body]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
}

/// The outcome of the bearer gate.
pub enum BearerGate {
    /// No bearer credential: fall back to the session cookie.
    Absent,
    /// A verified bearer: the request's identity.
    Identity(Box<Identity>),
    /// Refused: answer this.
    Refuse(Response<Body>),
}

/// Log lines about refused bearer tokens allowed per window.
pub const LOG_BURST: u32 = 20;
/// The window, in seconds.
pub const LOG_WINDOW_SECS: u64 = 10;

/// A small fixed-window budget for log lines (process-wide).
struct LogBudget {
    /// (window start, lines used, lines suppressed in the window).
    state: Mutex<(u64, u32, u64)>,
}

/// What the budget says about one more line.
enum Budget {
    Log { suppressed_before: u64 },
    Suppress,
}

impl LogBudget {
    const fn new() -> Self {
        LogBudget {
            state: Mutex::new((0, 0, 0)),
        }
    }
    fn take(&self, now: u64) -> Budget {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now >= s.0.saturating_add(LOG_WINDOW_SECS) {
            let suppressed = s.2;
            *s = (now, 1, 0);
            return Budget::Log {
                suppressed_before: suppressed,
            };
        }
        if s.1 < LOG_BURST {
            s.1 += 1;
            Budget::Log {
                suppressed_before: 0,
            }
        } else {
            s.2 += 1;
            Budget::Suppress
        }
    }
}

static REFUSED_LOG: LogBudget = LogBudget::new();

fn log_refused(rid: &str, reason: &'static str) {
    match REFUSED_LOG.take(unix_now()) {
        Budget::Log { suppressed_before } => tracing::info!(
            request_id = %rid,
            event = "bearer_invalid",
            reason,
            suppressed_before,
            "bearer token refused"
        ),
        Budget::Suppress => {}
    }
}

impl App {
    /// The bearer gate for a protected route (see the module documentation). `client`
    /// chooses HTML or JSON for the refusal pages; never a redirect.
    pub(crate) async fn bearer_gate(
        &self,
        headers: &HeaderMap,
        rid: &str,
        client: Client,
    ) -> BearerGate {
        let audiences = &self.cfg.oidc.bearer_audiences;
        if audiences.is_empty() {
            return BearerGate::Absent;
        }
        let token = match credential(headers) {
            Credential::None => return BearerGate::Absent,
            Credential::Bearer(t) => t,
            Credential::InvalidBearer => {
                log_refused(rid, "malformed_token");
                return BearerGate::Refuse(self.invalid_token(rid, client));
            }
            Credential::Ambiguous => {
                log_refused(rid, "duplicate_authorization");
                let mut resp = self.page(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "More than one Authorization header.",
                    rid,
                    client,
                );
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_request\""),
                );
                return BearerGate::Refuse(resp);
            }
        };
        // Boxed: the verification future (JWKS refresh included) is large and only a bearer
        // request needs it; every request's future stays small (issue 6).
        match Box::pin(self.provider.verify_bearer(token, audiences)).await {
            Ok(identity) => BearerGate::Identity(Box::new(identity)),
            Err(BearerError::Invalid(e)) => {
                log_refused(rid, e.reason());
                BearerGate::Refuse(self.invalid_token(rid, client))
            }
            Err(BearerError::NotReady(_)) => BearerGate::Refuse(self.idp_not_ready(rid, client)),
        }
    }

    /// 401 with `WWW-Authenticate: Bearer error="invalid_token"` (RFC 6750 §3.1).
    fn invalid_token(&self, rid: &str, client: Client) -> Response<Body> {
        let mut resp = self.page(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The bearer token is not valid.",
            rid,
            client,
        );
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn credential_table() {
        let cases: &[(&[&[u8]], Credential<'_>)] = &[
            (&[], Credential::None),
            (&[b"Bearer abc.def.ghi"], Credential::Bearer("abc.def.ghi")),
            (&[b"bearer abc.def.ghi"], Credential::Bearer("abc.def.ghi")),
            (&[b"BEARER abc.def.ghi"], Credential::Bearer("abc.def.ghi")),
            (&[b"Bearer   abc  "], Credential::Bearer("abc")),
            (&[b"Bearer\tabc"], Credential::Bearer("abc")),
            (&[b"Bearer a+b/c=="], Credential::Bearer("a+b/c==")),
            (&[b"Bearer"], Credential::InvalidBearer),
            (&[b"Bearer "], Credential::InvalidBearer),
            (&[b"Bearer ==="], Credential::InvalidBearer),
            (&[b"Bearer a b"], Credential::InvalidBearer),
            (&[b"Bearer a=b"], Credential::InvalidBearer),
            (&[b"Bearer a,b"], Credential::InvalidBearer),
            (&[b"Bearer a\xc3\xa9"], Credential::InvalidBearer),
            (&[b"Basic YWxpY2U6cHc="], Credential::None),
            (&[b"Bearerx abc"], Credential::None),
            (&[b"Token abc"], Credential::None),
            (&[b"Bearer a", b"Bearer b"], Credential::Ambiguous),
            (&[b"Basic x", b"Bearer b"], Credential::Ambiguous),
        ];
        for (values, want) in cases {
            assert_eq!(&credential(&headers(values)), want, "{values:?}");
        }
    }

    #[test]
    fn log_budget_limits_and_reports_suppressed() {
        let b = LogBudget::new();
        let mut logged = 0;
        for _ in 0..100 {
            if matches!(b.take(1000), Budget::Log { .. }) {
                logged += 1;
            }
        }
        assert_eq!(logged, LOG_BURST);
        match b.take(1000 + LOG_WINDOW_SECS) {
            Budget::Log { suppressed_before } => {
                assert_eq!(suppressed_before, 100 - u64::from(LOG_BURST))
            }
            Budget::Suppress => panic!("a new window logs again"),
        }
    }
}
