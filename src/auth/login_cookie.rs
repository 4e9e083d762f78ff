//! The login cookie (SPEC "Login cookie"): the encrypted, browser-held record of one login in
//! progress — `state`, `nonce`, PKCE verifier, `rd` and when it began — so that starting a
//! login costs the server no memory (SECURITY DOS-03) and a callback is only accepted from the
//! browser that started it (RFC 6749 §10.12, RFC 9700 §4.7: CSRF protection of the redirect
//! URI).
//!
//! - **One cookie per login, in a fixed set of [`MAX_LOGIN_COOKIES`] slots** named
//!   `<prefix>_0` … `<prefix>_4` (SECURITY CB-05, DOS-03). A new login takes a slot this
//!   browser does not use yet, else the one holding the oldest login (unreadable ones first).
//!   Because the names are fixed, even hundreds of *simultaneous* navigations — which all see
//!   the same `Cookie` header — overwrite the same slot instead of piling up cookies until
//!   every request is a 431; at worst those parallel logins but the last fail cleanly with
//!   `state_mismatch`. Any other cookie under the prefix (a stale or forged name) is removed.
//! - **Bound to its state**: the callback opens the slots and takes the one whose sealed
//!   `state` equals the `state` parameter (constant-time). The AEAD associated data is the
//!   slot's name, so moving a value to another slot fails authentication (CB-13).
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

use std::fmt;

use cookie::Cookie;
use http::{HeaderMap, HeaderValue};
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
/// At most this many stray `<prefix>_*` cookies are removed per response.
const MAX_STRAY_REMOVALS: usize = 8;
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

    /// `Set-Cookie` values for a new login: first the cookie carrying `state` (in a free
    /// slot, else the oldest login's), then removals of stray cookies under the prefix.
    /// Should `rd` make the cookie longer than 4096 bytes, it is replaced by `/` (the SPEC's
    /// fallback for an unusable `rd`).
    pub fn begin(&self, state: &LoginState, request_headers: &HeaderMap) -> Vec<HeaderValue> {
        let (slot, stray) = self.choose_slot(request_headers);
        let name = self.slot_name(slot);
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
        out.extend(stray.into_iter().map(|n| self.removal_for(n)));
        out
    }

    /// The login for the callback's `state` parameter, from this browser's login cookies,
    /// checked against `now_unix`, with the removal of the cookie that held it.
    pub fn take(
        &self,
        state_param: &str,
        request_headers: &HeaderMap,
        now_unix: u64,
    ) -> Result<Taken, LoginCookieError> {
        if state_param.is_empty() || state_param.len() > MAX_STATE_PARAM {
            return Err(LoginCookieError::Missing);
        }
        let mut found = false;
        let mut result = Err(LoginCookieError::Invalid);
        for pair in cookie_pairs(request_headers) {
            let Some(slot) = self.slot_of(pair.name) else {
                continue;
            };
            found = true;
            let name = self.slot_name(slot);
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
            return Ok(Taken {
                login,
                removal: self.removal_for(name),
            });
        }
        if found {
            result
        } else {
            Err(LoginCookieError::Missing)
        }
    }

    // === helpers ===

    /// `<prefix>_<slot>`.
    fn slot_name(&self, slot: usize) -> String {
        format!("{}_{slot}", self.prefix)
    }

    /// The slot a cookie name addresses, if it is one of ours.
    fn slot_of(&self, name: &[u8]) -> Option<usize> {
        let rest = name
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b"_")?;
        match rest {
            [d] if (b'0'..b'0' + MAX_LOGIN_COOKIES as u8).contains(d) => {
                Some(usize::from(d - b'0'))
            }
            _ => None,
        }
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

    /// The slot for a new login — the first one this browser does not use, else the one
    /// holding the oldest login (unreadable ones first; equal times in request order, which
    /// browsers send oldest first, RFC 6265 §5.4) — and the stray `<prefix>_*` names to remove.
    /// Nothing is decrypted while a slot is free.
    fn choose_slot(&self, request_headers: &HeaderMap) -> (usize, Vec<String>) {
        let own = format!("{}_", self.prefix);
        let mut used: Vec<Option<&[u8]>> = vec![None; MAX_LOGIN_COOKIES];
        let mut order = Vec::with_capacity(MAX_LOGIN_COOKIES);
        let mut stray = Vec::new();
        for pair in cookie_pairs(request_headers) {
            match self.slot_of(pair.name) {
                Some(slot) if used[slot].is_none() => {
                    used[slot] = Some(pair.value);
                    order.push(slot);
                }
                Some(_) => {}
                // A name we could not address in a Set-Cookie is not one of ours anyway.
                None if pair.name.starts_with(own.as_bytes())
                    && pair.name.iter().all(u8::is_ascii_graphic)
                    && stray.len() < MAX_STRAY_REMOVALS =>
                {
                    stray.push(String::from_utf8_lossy(pair.name).into_owned());
                }
                None => {}
            }
        }
        if let Some(free) = used.iter().position(Option::is_none) {
            return (free, stray);
        }
        let oldest = order
            .iter()
            .min_by_key(|&&slot| {
                let value = used[slot].unwrap_or_default();
                self.open(&self.slot_name(slot), value).map(|l| l.issued_at)
            })
            .copied()
            .unwrap_or(0);
        (oldest, stray)
    }
}

/// A login taken by the callback, and the `Set-Cookie` removing its cookie.
#[derive(Debug)]
pub struct Taken {
    pub login: LoginState,
    pub removal: HeaderValue,
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
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
        assert_eq!(pair.0, "_portcullis_login_0");
        let taken = c
            .take(&l.state, &request(&[pair]), NOW + 10)
            .expect("taken");
        assert_eq!(taken.login, l);
        assert!(
            taken
                .removal
                .to_str()
                .unwrap()
                .starts_with("_portcullis_login_0=; ")
        );
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
            assert_eq!(
                got.map(|t| t.login),
                Err(LoginCookieError::Invalid),
                "byte {i}"
            );
        }
        let got = c.take(&l.state, &request(&[(name, "garbage%%".into())]), NOW);
        assert_eq!(
            got.map(|t| t.login).map_err(|e| e.reason()),
            Err("state_mismatch")
        );
    }

    #[test]
    fn swapped_values_are_invalid() {
        let c = cookies();
        let (l1, l2) = (login(1), login(2));
        let (n1, v1) = pair_of(&c.begin(&l1, &HeaderMap::new())[0]);
        let (n2, v2) = pair_of(&c.begin(&l2, &request(&[(n1.clone(), v1.clone())]))[0]);
        assert_eq!(
            (n1.as_str(), n2.as_str()),
            ("_portcullis_login_0", "_portcullis_login_1")
        );
        let swapped = request(&[(n1.clone(), v2.clone()), (n2.clone(), v1.clone())]);
        for l in [&l1, &l2] {
            assert_eq!(
                c.take(&l.state, &swapped, NOW).map(|t| t.login),
                Err(LoginCookieError::Invalid)
            );
        }
        // Both present with their own values: each callback gets its own login.
        let both = request(&[(n1, v1), (n2, v2)]);
        assert_eq!(c.take(&l1.state, &both, NOW).map(|t| t.login.rd), Ok(l1.rd));
        assert_eq!(c.take(&l2.state, &both, NOW).map(|t| t.login.rd), Ok(l2.rd));
    }

    #[test]
    fn missing_cookie_or_unknown_state() {
        let c = cookies();
        let l = login(1);
        let jar = request(&[pair_of(&c.begin(&l, &HeaderMap::new())[0])]);
        let long_state = "s".repeat(8192);
        for state in ["", long_state.as_str()] {
            assert_eq!(
                c.take(state, &jar, NOW).map(|t| t.login),
                Err(LoginCookieError::Missing),
                "{state:.20}"
            );
        }
        for state in ["other-state", "..%2F..%2Fetc"] {
            assert_eq!(
                c.take(state, &jar, NOW).map(|t| t.login),
                Err(LoginCookieError::Invalid),
                "{state}"
            );
        }
        assert_eq!(
            c.take(&l.state, &HeaderMap::new(), NOW).map(|t| t.login),
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
    fn a_sixth_login_replaces_the_oldest() {
        let c = cookies();
        // Five logins in progress, begun one after another but with out-of-order times.
        let mut jar: Vec<(String, String)> = Vec::new();
        for n in [3, 1, 5, 2, 4] {
            let set = c.begin(&login(n), &request(&jar));
            assert_eq!(set.len(), 1);
            jar.push(pair_of(&set[0]));
        }
        let names: Vec<&str> = jar.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "_portcullis_login_0",
                "_portcullis_login_1",
                "_portcullis_login_2",
                "_portcullis_login_3",
                "_portcullis_login_4"
            ]
        );
        // Full: the sixth takes the slot of login 1 (the oldest), which then no longer opens.
        let sets = c.begin(&login(6), &request(&jar));
        assert_eq!(sets.len(), 1);
        assert_eq!(pair_of(&sets[0]).0, "_portcullis_login_1");
        // Under the limit the first free slot is used.
        assert_eq!(
            pair_of(&c.begin(&login(6), &request(&jar[..4]))[0]).0,
            "_portcullis_login_4"
        );
        // Unreadable slots go first; stray names under the prefix are removed.
        let mut odd = jar.clone();
        odd[3].1 = "xyz".into();
        odd.push((format!("{}_garbage", c.prefix()), "xyz".into()));
        odd.push(("theme".into(), "dark".into()));
        odd.push(("_portcullis".into(), "x".into()));
        let sets = c.begin(&login(9), &request(&odd));
        assert_eq!(pair_of(&sets[0]).0, "_portcullis_login_3");
        let removed: Vec<String> = sets[1..].iter().map(|s| pair_of(s).0).collect();
        assert_eq!(removed, vec![format!("{}_garbage", c.prefix())]);
    }

    #[test]
    fn same_second_logins_replace_in_request_order() {
        let c = cookies();
        let same = |n: u64| LoginState {
            issued_at: NOW,
            ..login(n)
        };
        let mut jar: Vec<(String, String)> = Vec::new();
        for n in 1..=5 {
            jar.push(pair_of(&c.begin(&same(n), &request(&jar))[0]));
        }
        // The browser sends the oldest first: that one is replaced.
        jar.rotate_left(2);
        assert_eq!(pair_of(&c.begin(&same(6), &request(&jar))[0]).0, jar[0].0);
    }

    #[test]
    fn simultaneous_navigations_share_one_slot() {
        // Hundreds of tabs opened at once all see the same (empty) Cookie header: they write
        // the same slot, so the browser keeps one login cookie, not hundreds (DOS-03).
        let c = cookies();
        let names: std::collections::HashSet<String> = (0..200)
            .map(|n| pair_of(&c.begin(&login(n), &HeaderMap::new())[0]).0)
            .collect();
        assert_eq!(names.len(), 1);
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
            login_cookies
                .take(&l.state, &as_login, NOW)
                .map(|t| t.login),
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
            assert_eq!(name, format!("{prefix}_0"));
            assert_eq!(&s[name.len() + 1 + value.len()..], attrs, "{s}");
            assert!(set.is_sensitive());
            let clear = c
                .take(
                    &l.state,
                    &request(&[(name.clone(), value.clone())]),
                    l.issued_at,
                )
                .expect("taken")
                .removal;
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
        assert_eq!(
            c.take(&plain.state, &jar, NOW).map(|t| t.login.rd),
            Ok(plain.rd)
        );

        // JSON escaping could blow a hostile rd past the limit: it falls back to `/`.
        let escaped = LoginState {
            rd: "\\".repeat(2048),
            ..login(2)
        };
        let set = c.begin(&escaped, &HeaderMap::new()).remove(0);
        assert!(set.len() <= MAX_SET_COOKIE, "{}", set.len());
        let jar = request(&[pair_of(&set)]);
        assert_eq!(
            c.take(&escaped.state, &jar, NOW)
                .map(|t| t.login.rd)
                .as_deref(),
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
        assert_eq!(
            new.take(&l.state, &jar, NOW).map(|t| t.login),
            Ok(l.clone())
        );
        let jar = request(&[pair_of(&new.begin(&l, &HeaderMap::new())[0])]);
        assert_eq!(
            old.take(&l.state, &jar, NOW).map(|t| t.login),
            Err(LoginCookieError::Invalid)
        );
    }
}
