//! The login cookie (SPEC "Login cookie"): the encrypted, browser-held record of one login in
//! progress — `state`, `nonce`, PKCE verifier, `rd` and when it began — so that starting a
//! login costs the server no memory (SECURITY DOS-03) and a callback is only accepted from the
//! browser that started it (RFC 6749 §10.12, RFC 9700 §4.7: CSRF protection of the redirect
//! URI).
//!
//! - **One cookie per login** (SECURITY CB-05), named `<prefix>_<tag>` where the tag is the
//!   first 16 characters of base64url(SHA-256(state)). The AEAD associated data is the cookie
//!   name, so a value only opens under the name derived from its own state: swapping the
//!   values of two logins fails authentication (CB-13).
//! - **At most [`MAX_LOGIN_COOKIES`] per browser**: [`LoginCookies::begin`] also returns the
//!   removals of the oldest ones (unreadable ones first), so a flood of tabs cannot grow the
//!   `Cookie` header without bound (DOS-03).
//! - **Confidential and authenticated** (CB-13): AES-256-GCM via the `cookie` crate's private
//!   jar, with keys derived from the `cookie_secret`s under their own label, so a session
//!   cookie value can never be opened as a login cookie or the other way round. The first
//!   secret seals, all open.
//! - **Expiry is checked on the server** (CB-04): the sealed `issued_at` must be at most
//!   [`LOGIN_TTL`] seconds old (and not more than [`FUTURE_SKEW`] seconds ahead), whatever
//!   the browser did with `Max-Age`.
//! - **Attributes**: `HttpOnly`, `Path=/`, `Max-Age=600`, `Secure` for an https `public_url`,
//!   and always `SameSite=Lax` (RFC 6265bis §4.1.2.7: a `Strict` cookie would not come back
//!   with the IdP's cross-site redirect to the callback).

use std::collections::HashSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::Cookie;
use http::{HeaderMap, HeaderValue};
use ring::digest;
use subtle::ConstantTimeEq;

use crate::config::CookieSecret;
use crate::session::cookie::{Keys, cookie_pairs, removal, seconds, to_header};

/// Lifetime of a login, in seconds (`Max-Age` and the server-side `issued_at` check).
pub const LOGIN_TTL: u64 = 600;
/// How far in the future `issued_at` may be (clock differences between replicas).
pub const FUTURE_SKEW: u64 = 60;
/// Login cookies kept per browser; beginning another drops the oldest.
pub const MAX_LOGIN_COOKIES: usize = 5;
/// Length of the state-derived tag in a login cookie's name.
const TAG_LEN: usize = 16;
/// Longest `Set-Cookie` value any browser must accept (RFC 6265bis §6.1, 4096 bytes).
const MAX_SET_COOKIE: usize = 4096;
/// Longest login cookie value considered at all: nothing we seal is larger.
const MAX_LOGIN_VALUE: usize = MAX_SET_COOKIE;
/// Longest `state` parameter worth hashing: ours are 43 characters.
const MAX_STATE_PARAM: usize = 512;
/// Key-derivation label separating login-cookie keys from session-cookie keys.
const KEY_PURPOSE: &[u8] = b"portcullis login cookie v1";

/// What a login cookie carries from `/oauth2/start` to the callback.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginState {
    /// The OAuth `state` sent to the IdP.
    pub state: String,
    /// The OpenID Connect `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE `code_verifier` (RFC 7636 §4.1).
    pub pkce_verifier: String,
    /// Where to land after login (already validated).
    pub rd: String,
    /// When the login began, in Unix seconds.
    pub issued_at: u64,
}

impl fmt::Debug for LoginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginState")
            .field("state", &"[redacted]")
            .field("nonce", &"[redacted]")
            .field("pkce_verifier", &"[redacted]")
            .field("rd", &self.rd)
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

/// Why a callback has no usable login cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginCookieError {
    /// No login cookie for this `state` in this browser.
    #[error("no login cookie for this state")]
    Missing,
    /// The cookie for this state is tampered, sealed with an unknown key, or not ours.
    #[error("invalid login cookie")]
    Invalid,
    /// The login began more than ten minutes ago.
    #[error("login cookie expired")]
    Expired,
}

impl LoginCookieError {
    /// The `reason` logged and shown for a refused callback (SECURITY §0.2 vocabulary).
    pub fn reason(&self) -> &'static str {
        match self {
            LoginCookieError::Missing | LoginCookieError::Invalid => "state_mismatch",
            LoginCookieError::Expired => "state_expired",
        }
    }
}

/// The compact form sealed in the cookie: a JSON array `[state, nonce, verifier, rd, iat]`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire(String, String, String, String, u64);

/// Builds, opens and clears login cookies; built once from the configuration.
pub struct LoginCookies {
    prefix: String,
    keys: Keys,
    /// `Path=/; HttpOnly; SameSite=Lax; Max-Age=600` and `Secure` per `public_url`.
    template: Cookie<'static>,
}

impl LoginCookies {
    /// Login cookies for a proxy whose session cookie is `session_cookie_name`: the prefix is
    /// `<base>_login`, where `<base>` is the session cookie name without a `__Host-` or
    /// `__Secure-` prefix; that prefix is kept (`__Host-portcullis_login`) when `secure`, and
    /// dropped otherwise (browsers refuse it without `Secure`).
    pub fn new(session_cookie_name: &str, secrets: &[CookieSecret], secure: bool) -> Self {
        let (cookie_prefix, base) = ["__Host-", "__Secure-"]
            .iter()
            .find_map(|p| {
                let head = session_cookie_name.get(..p.len())?;
                head.eq_ignore_ascii_case(p)
                    .then(|| (head, &session_cookie_name[p.len()..]))
            })
            .unwrap_or(("", session_cookie_name));
        let cookie_prefix = if secure { cookie_prefix } else { "" };
        let template = Cookie::build((String::new(), String::new()))
            .path("/")
            .http_only(true)
            .secure(secure)
            .same_site(cookie::SameSite::Lax)
            .max_age(seconds(std::time::Duration::from_secs(LOGIN_TTL)))
            .build();
        LoginCookies {
            prefix: format!("{cookie_prefix}{base}_login"),
            keys: Keys::labelled(secrets, KEY_PURPOSE),
            template,
        }
    }

    /// The common start of every login cookie's name (what [`strip_own_cookies`] removes).
    ///
    /// [`strip_own_cookies`]: crate::session::strip_own_cookies
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `Set-Cookie` values for a new login: first the cookie carrying `state`, then the
    /// removals that keep this browser (as seen in `request_headers`) at
    /// [`MAX_LOGIN_COOKIES`]. Should `rd` make the cookie longer than 4096 bytes, it is
    /// replaced by `/` (the SPEC's fallback for an unusable `rd`).
    pub fn begin(&self, state: &LoginState, request_headers: &HeaderMap) -> Vec<HeaderValue> {
        let name = self.name_for(&state.state);
        let mut set = self.sealed_cookie(&name, state);
        if set.len() > MAX_SET_COOKIE {
            tracing::warn!(
                event = "redirect_rejected",
                reason = "too_long",
                "rd too long for the login cookie"
            );
            set = self.sealed_cookie(
                &name,
                &LoginState {
                    rd: "/".to_owned(),
                    ..state.clone()
                },
            );
        }
        let mut out = vec![set];
        out.extend(
            self.evictions(&name, request_headers)
                .into_iter()
                .map(|n| self.removal_for(n)),
        );
        out
    }

    /// The login for the callback's `state` parameter, from this browser's login cookie for
    /// it, checked against `now_unix`. The caller clears the cookie ([`clear`](Self::clear))
    /// whatever the outcome.
    pub fn take(
        &self,
        state_param: &str,
        request_headers: &HeaderMap,
        now_unix: u64,
    ) -> Result<LoginState, LoginCookieError> {
        if state_param.is_empty() || state_param.len() > MAX_STATE_PARAM {
            return Err(LoginCookieError::Missing);
        }
        let name = self.name_for(state_param);
        let mut found = false;
        let mut result = Err(LoginCookieError::Invalid);
        // Normally one; a stale duplicate (another path) must not hide a good one.
        for pair in cookie_pairs(request_headers).filter(|p| p.name == name.as_bytes()) {
            found = true;
            let Some(login) = self.open(&name, pair.value) else {
                continue;
            };
            if !bool::from(login.state.as_bytes().ct_eq(state_param.as_bytes())) {
                continue;
            }
            if login.issued_at > now_unix.saturating_add(FUTURE_SKEW) {
                continue;
            }
            if now_unix.saturating_sub(login.issued_at) > LOGIN_TTL {
                result = Err(LoginCookieError::Expired);
                continue;
            }
            return Ok(login);
        }
        if found {
            result
        } else {
            Err(LoginCookieError::Missing)
        }
    }

    /// `Set-Cookie` value removing the login cookie that belongs to `state_param`.
    pub fn clear(&self, state_param: &str) -> HeaderValue {
        self.removal_for(self.name_for(state_param))
    }

    // === helpers ===

    /// `<prefix>_<first 16 chars of base64url(SHA-256(state))>`.
    fn name_for(&self, state: &str) -> String {
        let digest = digest::digest(&digest::SHA256, state.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(digest.as_ref());
        format!("{}_{}", self.prefix, &tag[..TAG_LEN])
    }

    fn sealed_cookie(&self, name: &str, state: &LoginState) -> HeaderValue {
        let wire = Wire(
            state.state.clone(),
            state.nonce.clone(),
            state.pkce_verifier.clone(),
            state.rd.clone(),
            state.issued_at,
        );
        // Serialising strings and an integer cannot fail.
        let plain = serde_json::to_string(&wire).unwrap_or_default();
        let mut c = self.template.clone();
        c.set_name(name.to_owned());
        c.set_value(self.keys.seal(name, &plain));
        to_header(&c)
    }

    fn removal_for(&self, name: String) -> HeaderValue {
        let mut c = self.template.clone();
        c.set_name(name);
        to_header(&removal(c))
    }

    fn open(&self, name: &str, value: &[u8]) -> Option<LoginState> {
        if value.len() > MAX_LOGIN_VALUE {
            return None;
        }
        let plain = self.keys.open(name, value)?;
        let Wire(state, nonce, pkce_verifier, rd, issued_at) = serde_json::from_str(&plain).ok()?;
        Some(LoginState {
            state,
            nonce,
            pkce_verifier,
            rd,
            issued_at,
        })
    }

    /// Names of the existing login cookies to remove so that, with the new one called
    /// `new_name`, at most [`MAX_LOGIN_COOKIES`] remain: unreadable ones first, then the
    /// oldest by sealed `issued_at`. Nothing is decrypted while under the limit.
    fn evictions(&self, new_name: &str, request_headers: &HeaderMap) -> Vec<String> {
        let own = format!("{}_", self.prefix);
        let mut seen = HashSet::new();
        let mut existing: Vec<(&[u8], &[u8])> = Vec::new();
        for pair in cookie_pairs(request_headers) {
            // A name we could not address in a Set-Cookie is not one of ours anyway.
            if pair.name.starts_with(own.as_bytes())
                && pair.name.iter().all(u8::is_ascii_graphic)
                && pair.name != new_name.as_bytes()
                && seen.insert(pair.name)
            {
                existing.push((pair.name, pair.value));
            }
        }
        let keep = MAX_LOGIN_COOKIES - 1;
        if existing.len() <= keep {
            return Vec::new();
        }
        let mut aged: Vec<(Option<u64>, String)> = existing
            .into_iter()
            .map(|(name, value)| {
                let name = String::from_utf8_lossy(name).into_owned();
                let issued_at = self.open(&name, value).map(|l| l.issued_at);
                (issued_at, name)
            })
            .collect();
        // `None` (unreadable) sorts before every `Some`. Logins begun in the same second
        // keep the request's order, which browsers send oldest first (RFC 6265 §5.4): a
        // stable sort on the time alone, never a tie broken by the (random) name.
        aged.sort_by_key(|(issued_at, _)| *issued_at);
        let excess = aged.len() - keep;
        aged.into_iter()
            .take(excess)
            .map(|(_, name)| name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use http::header::COOKIE;

    use super::*;
    use crate::config::{PublicUrl, SameSite, SessionConfig, StoreKind};
    use crate::session::{NoSession, SessionCookies, SessionId};

    const NOW: u64 = 1_700_000_000;

    fn secrets() -> Vec<CookieSecret> {
        vec![CookieSecret(vec![9; 32])]
    }

    fn cookies() -> LoginCookies {
        LoginCookies::new("_portcullis", &secrets(), true)
    }

    fn login(n: u64) -> LoginState {
        LoginState {
            state: format!("STATE{n}-abcdefghijklmnopqrstuvwxyz0123456789"),
            nonce: format!("NONCE{n}-abcdefghijklmnopqrstuvwxyz0123456789"),
            pkce_verifier: format!("VERIFIER{n}-abcdefghijklmnopqrstuvwxyz0123456789"),
            rd: format!("/landing/page-{n}?x=1"),
            issued_at: NOW + n,
        }
    }

    /// `name=value` of a Set-Cookie value.
    fn pair_of(set: &HeaderValue) -> (String, String) {
        let s = set.to_str().expect("ascii");
        let pair = s.split(';').next().unwrap_or_default();
        let (n, v) = pair.split_once('=').expect("pair");
        (n.to_owned(), v.to_owned())
    }

    fn request(pairs: &[(String, String)]) -> HeaderMap {
        let line = pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut h = HeaderMap::new();
        if !line.is_empty() {
            h.insert(COOKIE, HeaderValue::from_str(&line).expect("header"));
        }
        h
    }

    #[test]
    fn round_trip() {
        let c = cookies();
        let l = login(1);
        let sets = c.begin(&l, &HeaderMap::new());
        assert_eq!(sets.len(), 1);
        let pair = pair_of(&sets[0]);
        assert!(pair.0.starts_with("__Host-") || pair.0.starts_with("_portcullis_login_"));
        assert_eq!(c.take(&l.state, &request(&[pair]), NOW + 10), Ok(l));
    }

    #[test]
    fn flipped_bit_is_invalid() {
        let c = cookies();
        let l = login(1);
        let (name, value) = pair_of(&c.begin(&l, &HeaderMap::new())[0]);
        let mut raw = STANDARD.decode(&value).expect("base64");
        for i in [0, raw.len() / 2, raw.len() - 1] {
            raw[i] ^= 0x01;
            let flipped = STANDARD.encode(&raw);
            raw[i] ^= 0x01;
            let got = c.take(&l.state, &request(&[(name.clone(), flipped)]), NOW);
            assert_eq!(got, Err(LoginCookieError::Invalid), "byte {i}");
        }
        let got = c.take(&l.state, &request(&[(name, "garbage%%".into())]), NOW);
        assert_eq!(got.map_err(|e| e.reason()), Err("state_mismatch"));
    }

    #[test]
    fn swapped_values_are_invalid() {
        let c = cookies();
        let (l1, l2) = (login(1), login(2));
        let (n1, v1) = pair_of(&c.begin(&l1, &HeaderMap::new())[0]);
        let (n2, v2) = pair_of(&c.begin(&l2, &HeaderMap::new())[0]);
        assert_ne!(n1, n2);
        let swapped = request(&[(n1.clone(), v2.clone()), (n2.clone(), v1.clone())]);
        assert_eq!(
            c.take(&l1.state, &swapped, NOW),
            Err(LoginCookieError::Invalid)
        );
        assert_eq!(
            c.take(&l2.state, &swapped, NOW),
            Err(LoginCookieError::Invalid)
        );
        // Both present with their own values: each callback gets its own login.
        let both = request(&[(n1, v1), (n2, v2)]);
        assert_eq!(c.take(&l1.state, &both, NOW).map(|l| l.rd), Ok(l1.rd));
        assert_eq!(c.take(&l2.state, &both, NOW).map(|l| l.rd), Ok(l2.rd));
    }

    #[test]
    fn missing_cookie_or_unknown_state() {
        let c = cookies();
        let l = login(1);
        let jar = request(&[pair_of(&c.begin(&l, &HeaderMap::new())[0])]);
        let long_state = "s".repeat(8192);
        for state in ["", "other-state", "..%2F..%2Fetc", long_state.as_str()] {
            assert_eq!(
                c.take(state, &jar, NOW),
                Err(LoginCookieError::Missing),
                "{state:.20}"
            );
        }
        assert_eq!(
            c.take(&l.state, &HeaderMap::new(), NOW),
            Err(LoginCookieError::Missing)
        );
    }

    #[test]
    fn expiry_is_checked_against_the_sealed_issued_at() {
        let c = cookies();
        let l = LoginState {
            issued_at: NOW,
            ..login(1)
        };
        let jar = request(&[pair_of(&c.begin(&l, &HeaderMap::new())[0])]);
        let cases = [
            (NOW, Ok(())),
            (NOW + LOGIN_TTL, Ok(())),
            (NOW + LOGIN_TTL + 1, Err(LoginCookieError::Expired)),
            (NOW + 86_400, Err(LoginCookieError::Expired)),
            (NOW - FUTURE_SKEW, Ok(())),
            (NOW - FUTURE_SKEW - 1, Err(LoginCookieError::Invalid)),
        ];
        for (now, want) in cases {
            assert_eq!(
                c.take(&l.state, &jar, now).map(|_| ()),
                want,
                "now = NOW {:+}",
                now as i64 - NOW as i64
            );
        }
        assert_eq!(LoginCookieError::Expired.reason(), "state_expired");
    }

    #[test]
    fn a_sixth_login_drops_the_oldest() {
        let c = cookies();
        // Five logins in progress, begun out of order.
        let order = [3, 1, 5, 2, 4];
        let jar: Vec<(String, String)> = order
            .iter()
            .map(|&n| pair_of(&c.begin(&login(n), &HeaderMap::new())[0]))
            .collect();
        let sets = c.begin(&login(6), &request(&jar));
        assert_eq!(sets.len(), 2);
        let oldest = pair_of(&c.begin(&login(1), &HeaderMap::new())[0]).0;
        let removed = sets[1].to_str().expect("ascii");
        assert!(removed.starts_with(&format!("{oldest}=; ")), "{removed}");
        assert!(removed.contains("Max-Age=0"));

        // Under the limit nothing is removed.
        assert_eq!(c.begin(&login(6), &request(&jar[..4])).len(), 1);

        // Eight present: four go, unreadable ones first, then the oldest.
        let mut big = jar.clone();
        big.push((format!("{}_garbage", c.prefix()), "xyz".into()));
        big.push(pair_of(&c.begin(&login(7), &HeaderMap::new())[0]));
        big.push(pair_of(&c.begin(&login(8), &HeaderMap::new())[0]));
        let sets = c.begin(&login(9), &request(&big));
        let removed: Vec<String> = sets[1..].iter().map(|s| pair_of(s).0).collect();
        let name = |n| pair_of(&c.begin(&login(n), &HeaderMap::new())[0]).0;
        assert_eq!(
            removed,
            vec![format!("{}_garbage", c.prefix()), name(1), name(2), name(3)]
        );
        // Other cookies are never touched.
        let mut with_others = jar;
        with_others.push(("theme".into(), "dark".into()));
        with_others.push(("_portcullis".into(), "x".into()));
        assert_eq!(c.begin(&login(6), &request(&with_others)).len(), 2);
    }

    #[test]
    fn same_second_logins_are_evicted_in_request_order() {
        // Eight tabs within one second: the browser sends them oldest first; the newest four
        // (plus the one being begun) survive, whatever their (random) names sort like.
        let c = cookies();
        let same = |n: u64| LoginState {
            issued_at: NOW,
            ..login(n)
        };
        let jar: Vec<(String, String)> = (1..=8)
            .map(|n| pair_of(&c.begin(&same(n), &HeaderMap::new())[0]))
            .collect();
        let sets = c.begin(&same(9), &request(&jar));
        let removed: Vec<String> = sets[1..].iter().map(|s| pair_of(s).0).collect();
        let expected: Vec<String> = jar[..4].iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(removed, expected);
    }

    #[test]
    fn login_and_session_cookies_never_open_as_each_other() {
        let cfg = SessionConfig {
            cookie_name: "_portcullis".into(),
            cookie_secrets: secrets(),
            cookie_domain: None,
            same_site: SameSite::Lax,
            lifetime: std::time::Duration::from_secs(3600),
            idle_timeout: std::time::Duration::from_secs(3600),
            refresh: false,
            store: StoreKind::Memory,
            redis_url: None,
            max_sessions: 10,
        };
        let public = PublicUrl {
            https: false,
            host: "app.example.com".into(),
            port: None,
        };
        let session = SessionCookies::new(&cfg, &public);
        let login_cookies = LoginCookies::new("_portcullis", &secrets(), false);
        let l = login(1);
        let (login_name, login_value) = pair_of(&login_cookies.begin(&l, &HeaderMap::new())[0]);
        let (_, session_value) = pair_of(&session.set_cookie(&SessionId::generate()));

        let as_session = request(&[("_portcullis".into(), login_value.clone())]);
        assert_eq!(session.open(&as_session), Err(NoSession::Invalid));
        let as_login = request(&[(login_name.clone(), session_value)]);
        assert_eq!(
            login_cookies.take(&l.state, &as_login, NOW),
            Err(LoginCookieError::Invalid)
        );

        // Even under the same name (same associated data), the keys differ.
        let session_keys = Keys::session(&secrets());
        assert!(
            session_keys
                .open(&login_name, login_value.as_bytes())
                .is_none()
        );
        let sealed = session_keys.seal(&login_name, "[\"a\",\"b\",\"c\",\"/\",1]");
        assert!(login_cookies.open(&login_name, sealed.as_bytes()).is_none());
    }

    #[test]
    fn sealed_value_holds_no_plaintext() {
        let c = cookies();
        let l = login(1);
        let (name, value) = pair_of(&c.begin(&l, &HeaderMap::new())[0]);
        let raw = STANDARD.decode(&value).expect("base64");
        for secret in [
            &l.state,
            &l.nonce,
            &l.pkce_verifier,
            &l.rd,
            &"landing".to_owned(),
        ] {
            let needle = secret.as_bytes();
            assert!(!raw.windows(needle.len()).any(|w| w == needle), "{secret}");
            assert!(!value.contains(secret.as_str()) && !name.contains(secret.as_str()));
        }
        let debug = format!("{l:?}");
        assert!(
            !debug.contains(&l.state)
                && !debug.contains(&l.nonce)
                && !debug.contains(&l.pkce_verifier)
        );
    }

    #[test]
    fn attributes_and_names() {
        let l = login(1);
        let tag = &URL_SAFE_NO_PAD
            .encode(digest::digest(&digest::SHA256, l.state.as_bytes()).as_ref())[..16];
        let cases = [
            (
                "_portcullis",
                false,
                "_portcullis_login",
                "; HttpOnly; SameSite=Lax; Path=/; Max-Age=600",
            ),
            (
                "_portcullis",
                true,
                "_portcullis_login",
                "; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=600",
            ),
            (
                "__Host-portcullis",
                true,
                "__Host-portcullis_login",
                "; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=600",
            ),
            (
                "__Secure-px",
                true,
                "__Secure-px_login",
                "; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=600",
            ),
            // Without Secure a browser would refuse the `__Host-` name: it is dropped.
            (
                "__Host-portcullis",
                false,
                "portcullis_login",
                "; HttpOnly; SameSite=Lax; Path=/; Max-Age=600",
            ),
        ];
        for (session_name, secure, prefix, attrs) in cases {
            let c = LoginCookies::new(session_name, &secrets(), secure);
            assert_eq!(c.prefix(), prefix);
            let set = c.begin(&l, &HeaderMap::new()).remove(0);
            let s = set.to_str().expect("ascii");
            let (name, value) = pair_of(&set);
            assert_eq!(name, format!("{prefix}_{tag}"));
            assert_eq!(&s[name.len() + 1 + value.len()..], attrs, "{s}");
            assert!(set.is_sensitive());
            let clear = c.clear(&l.state);
            let want = attrs.replace(
                "Max-Age=600",
                "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            );
            assert_eq!(clear.to_str().expect("ascii"), format!("{name}={want}"));
        }
    }

    #[test]
    fn long_rd_stays_under_4096_bytes() {
        let c = LoginCookies::new("__Host-portcullis", &secrets(), true);
        let plain = LoginState {
            rd: format!("/{}", "a".repeat(2047)),
            ..login(1)
        };
        let set = c.begin(&plain, &HeaderMap::new()).remove(0);
        assert!(set.len() <= MAX_SET_COOKIE, "{}", set.len());
        let jar = request(&[pair_of(&set)]);
        assert_eq!(c.take(&plain.state, &jar, NOW).map(|l| l.rd), Ok(plain.rd));

        // JSON escaping could blow a hostile rd past the limit: it falls back to `/`.
        let escaped = LoginState {
            rd: "\\".repeat(2048),
            ..login(2)
        };
        let set = c.begin(&escaped, &HeaderMap::new()).remove(0);
        assert!(set.len() <= MAX_SET_COOKIE, "{}", set.len());
        let jar = request(&[pair_of(&set)]);
        assert_eq!(
            c.take(&escaped.state, &jar, NOW).map(|l| l.rd).as_deref(),
            Ok("/")
        );
    }

    #[test]
    fn rotation_first_seals_all_open() {
        let a = vec![CookieSecret(vec![1; 32])];
        let ba = vec![CookieSecret(vec![2; 32]), CookieSecret(vec![1; 32])];
        let old = LoginCookies::new("_portcullis", &a, true);
        let new = LoginCookies::new("_portcullis", &ba, true);
        let l = login(1);
        let jar = request(&[pair_of(&old.begin(&l, &HeaderMap::new())[0])]);
        assert_eq!(new.take(&l.state, &jar, NOW), Ok(l.clone()));
        let jar = request(&[pair_of(&new.begin(&l, &HeaderMap::new())[0])]);
        assert_eq!(
            old.take(&l.state, &jar, NOW),
            Err(LoginCookieError::Invalid)
        );
    }
}
