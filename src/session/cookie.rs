//! The session cookie (SPEC "Cookies"): its attributes, sealing the [`SessionId`] with the
//! configured cookie secrets, reading it back from a request, and removing the proxy's own
//! cookies before a request goes upstream.
//!
//! - **Attributes** (RFC 6265bis §4.1.2): `Path=/`, `HttpOnly`, `Secure` when `public_url` is
//!   https, `SameSite` from config, `Domain` only when `cookie_domain` is set, `Max-Age` =
//!   `lifetime` (advisory only: the store enforces the lifetime, SECURITY SES-05). A `__Host-`
//!   name (§4.1.3.2) needs `Secure`, `Path=/` and no `Domain`; `check` enforces that pairing.
//! - **Sealing**: the `cookie` crate's private jar (AES-256-GCM, the cookie *name* as associated
//!   data), one key per `cookie_secret` derived with `Key::derive_from` (HKDF-SHA256); the first
//!   key seals, every key opens, so secrets rotate without logging anyone out. The id is random
//!   already; sealing means a cookie this proxy did not mint (forged, guessed, garbage) is
//!   refused by one AEAD check, without a store lookup.
//! - **Reading** ([`SessionCookies::open`]): every `Cookie` field is read (HTTP/2 may split
//!   them, RFC 9113 §8.2.3). Exactly one cookie with our name is a candidate; two or more are
//!   [`NoSession::Ambiguous`] — a sibling host can toss a `Domain` cookie with our name (RFC
//!   6265bis §8.6) and the proxy must not guess which one is the victim's. Values over
//!   [`MAX_SESSION_VALUE`] bytes are rejected before any cryptography (SECURITY DOS-06).
//! - **Stripping** ([`strip_own_cookies`]): the session cookie and every login cookie are
//!   removed from what the upstream sees; other cookies pass in order, in one `Cookie` field.
//!
//! Parsing works on raw bytes (a `Cookie` field may carry obs-text) and never panics.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cookie::time::OffsetDateTime;
use cookie::{Cookie, CookieJar, Expiration, Key};
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;

use super::SessionId;
use crate::config::{CookieSecret, PublicUrl, SameSite, SessionConfig};

/// Longest session cookie value considered at all; a sealed id is 96 characters.
pub const MAX_SESSION_VALUE: usize = 512;

/// Why a request has no usable session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoSession {
    /// No cookie with the session cookie's name.
    #[error("no session cookie")]
    Absent,
    /// Two or more cookies with the session cookie's name (even identical ones; a bare name
    /// without `=` counts as one): none is trusted. The caller treats this as no session and
    /// clears its own cookie; a cookie tossed with a `Domain` by a sibling host survives that,
    /// which is why `__Host-` names are recommended.
    #[error("more than one session cookie")]
    Ambiguous,
    /// Oversized, tampered, sealed with an unknown key, or garbage: the caller clears it.
    #[error("invalid session cookie")]
    Invalid,
}

/// Builds and reads the session cookie; built once from the configuration.
pub struct SessionCookies {
    name: String,
    keys: Keys,
    /// Name and attributes with an empty value; every `Set-Cookie` starts from it.
    template: Cookie<'static>,
}

impl SessionCookies {
    /// Derives one key per `cookie_secrets` entry and fixes the attributes.
    pub fn new(cfg: &SessionConfig, public: &PublicUrl) -> Self {
        let mut template = Cookie::build((cfg.cookie_name.clone(), String::new()))
            .path("/")
            .http_only(true)
            .secure(public.https)
            .same_site(match cfg.same_site {
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::None => cookie::SameSite::None,
            })
            .max_age(seconds(cfg.lifetime))
            .build();
        if let Some(domain) = &cfg.cookie_domain {
            template.set_domain(domain.clone());
        }
        SessionCookies {
            name: cfg.cookie_name.clone(),
            keys: Keys::session(&cfg.cookie_secrets),
            template,
        }
    }

    /// The session cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Set-Cookie` value carrying `id` sealed with the first secret.
    pub fn set_cookie(&self, id: &SessionId) -> HeaderValue {
        let mut c = self.template.clone();
        c.set_value(self.keys.seal(&self.name, &id.encode()));
        to_header(&c)
    }

    /// `Set-Cookie` value removing the session cookie: same name, path, domain and
    /// attributes, empty value, `Max-Age=0` and an `Expires` in the past.
    pub fn clear_cookie(&self) -> HeaderValue {
        to_header(&removal(self.template.clone()))
    }

    /// The session id sealed in the request's session cookie (see the module doc for the
    /// rules).
    pub fn open(&self, headers: &HeaderMap) -> Result<SessionId, NoSession> {
        let mut ours = cookie_pairs(headers).filter(|p| p.name == self.name.as_bytes());
        let Some(pair) = ours.next() else {
            return Err(NoSession::Absent);
        };
        if ours.next().is_some() {
            return Err(NoSession::Ambiguous);
        }
        if pair.value.len() > MAX_SESSION_VALUE {
            return Err(NoSession::Invalid);
        }
        self.keys
            .open_with(&self.name, pair.value, |plain| {
                SessionId::parse(std::str::from_utf8(plain).ok()?)
            })
            .ok_or(NoSession::Invalid)
    }
}

/// Removes the proxy's own cookies — `session_cookie` and every cookie whose name starts with
/// `login_prefix` — from the request's `Cookie` fields.
///
/// All `Cookie` fields are rebuilt into one, the remaining pairs in their original order
/// joined by `"; "` (RFC 9113 §8.2.3); empty pairs (`;;`) are dropped; the field is removed
/// when nothing is left. A bare name without `=` counts as a cookie of that name (so a bare
/// `_portcullis` is removed too). Pairs that are not ours are kept byte for byte, including
/// ones that are not UTF-8 or look malformed (`=`): deciding what they mean is the upstream's
/// business.
pub fn strip_own_cookies(headers: &mut HeaderMap, session_cookie: &str, login_prefix: &str) {
    if !headers.contains_key(COOKIE) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for pair in cookie_pairs(headers) {
        let own = pair.name == session_cookie.as_bytes()
            || (!login_prefix.is_empty() && pair.name.starts_with(login_prefix.as_bytes()));
        if own {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair.raw);
    }
    headers.remove(COOKIE);
    if kept.is_empty() {
        return;
    }
    // The pieces came from valid field values, so this holds; if not, dropping the field
    // is the safe side (our cookies never leak).
    if let Ok(mut value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(kept)) {
        value.set_sensitive(true);
        headers.insert(COOKIE, value);
    }
}

// === shared with the login cookie ===

/// One `name=value` piece of a `Cookie` field, OWS-trimmed.
pub(crate) struct CookiePair<'a> {
    /// The whole trimmed piece, as sent.
    pub raw: &'a [u8],
    /// Before the first `=` (the whole piece when there is none).
    pub name: &'a [u8],
    /// After the first `=` (empty when there is none).
    pub value: &'a [u8],
}

/// Every non-empty cookie pair of every `Cookie` field, in order.
pub(crate) fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = CookiePair<'_>> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(trim_ows)
        .filter(|raw| !raw.is_empty())
        .map(|raw| match raw.iter().position(|&b| b == b'=') {
            Some(i) => CookiePair {
                raw,
                name: trim_ows(&raw[..i]),
                value: trim_ows(&raw[i + 1..]),
            },
            None => CookiePair {
                raw,
                name: raw,
                value: b"",
            },
        })
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// AEAD keys from the cookie secrets: the first seals, all open.
///
/// Sealing goes through the `cookie` crate's private jar (AES-256-GCM, the cookie name as
/// associated data, base64 of nonce ‖ ciphertext ‖ tag). Opening — on every request — reads
/// that same format with `ring` into stack buffers: no allocation, the same checks (a value
/// that is not base64, too short, or fails authentication under every key does not open).
pub(crate) struct Keys {
    keys: Vec<Key>,
    open: Vec<LessSafeKey>,
}

/// AES-GCM nonce and tag sizes of the `cookie` crate's private jar.
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Decoded values up to this size are opened on the stack (session cookies always are).
const STACK_OPEN: usize = 768;

impl Keys {
    /// Session-cookie keys: `Key::derive_from(secret)`.
    pub(crate) fn session(secrets: &[CookieSecret]) -> Self {
        Self::build(secrets, |s| {
            if s.len() >= 32 {
                Key::derive_from(s)
            } else {
                // `check` rejects short secrets; never panic on one anyway.
                Key::derive_from(&label(s, b"portcullis session cookie (short secret)"))
            }
        })
    }

    /// Keys derived from the same secrets under `purpose`, independent of the session keys
    /// (HMAC-SHA256(secret, purpose) as the HKDF master): domain separation.
    pub(crate) fn labelled(secrets: &[CookieSecret], purpose: &[u8]) -> Self {
        Self::build(secrets, |s| Key::derive_from(&label(s, purpose)))
    }

    fn build(secrets: &[CookieSecret], derive: impl Fn(&[u8]) -> Key) -> Self {
        let mut keys: Vec<Key> = secrets.iter().map(|s| derive(&s.0)).collect();
        if keys.is_empty() {
            // The configuration always has a secret; without one, cookies last one process.
            tracing::error!("no cookie secret configured: using a random per-process key");
            keys.push(Key::generate());
        }
        let open = keys
            .iter()
            .filter_map(|k| UnboundKey::new(&AES_256_GCM, k.encryption()).ok())
            .map(LessSafeKey::new)
            .collect();
        Keys { keys, open }
    }

    /// `plaintext` sealed for a cookie called `name` (base64 of nonce ‖ ciphertext ‖ tag).
    pub(crate) fn seal(&self, name: &str, plaintext: &str) -> String {
        let mut jar = CookieJar::new();
        if let Some(first) = self.keys.first() {
            jar.private_mut(first)
                .add(Cookie::new(name.to_owned(), plaintext.to_owned()));
        }
        jar.get(name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// The plaintext of a value sealed for `name` by any of the keys. Accepts the value raw
    /// or percent-encoded (as `Cookie::encoded` writes it).
    pub(crate) fn open(&self, name: &str, sealed: &[u8]) -> Option<String> {
        self.open_with(name, sealed, |plain| {
            std::str::from_utf8(plain).ok().map(str::to_owned)
        })
    }

    /// Like [`open`](Self::open), handing the plaintext to `read` instead of copying it.
    pub(crate) fn open_with<T>(
        &self,
        name: &str,
        sealed: &[u8],
        read: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Option<T> {
        let sealed = unquote(sealed);
        let unescaped;
        let sealed = if sealed.contains(&b'%') {
            unescaped = percent_decode(sealed)?;
            &unescaped[..]
        } else {
            sealed
        };
        let mut stack = [0u8; STACK_OPEN];
        let mut heap = Vec::new();
        let estimate = base64::decoded_len_estimate(sealed.len());
        let buf: &mut [u8] = if estimate <= STACK_OPEN {
            &mut stack[..]
        } else {
            heap.resize(estimate, 0);
            &mut heap[..]
        };
        let n = STANDARD.decode_slice(sealed, buf).ok()?;
        if n < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, cipher) = buf[..n].split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let mut work_stack = [0u8; STACK_OPEN];
        let mut work_heap = Vec::new();
        let work: &mut [u8] = if cipher.len() <= STACK_OPEN {
            &mut work_stack[..cipher.len()]
        } else {
            work_heap.resize(cipher.len(), 0);
            &mut work_heap[..]
        };
        for key in &self.open {
            work.copy_from_slice(cipher);
            let nonce = Nonce::assume_unique_for_key(nonce);
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(name.as_bytes()), &mut *work) {
                return read(plain);
            }
        }
        None
    }
}

fn label(secret: &[u8], purpose: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), purpose);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// RFC 6265 allows a cookie-value in double quotes.
fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// `%XX` decoding; `None` on a malformed escape.
fn percent_decode(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            let hi = (*v.get(i + 1)? as char).to_digit(16)?;
            let lo = (*v.get(i + 2)? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    Some(out)
}

/// `Max-Age` in whole seconds.
pub(crate) fn seconds(d: Duration) -> cookie::time::Duration {
    cookie::time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The removal form of `c`: empty value, `Max-Age=0`, `Expires` at the epoch.
pub(crate) fn removal(mut c: Cookie<'static>) -> Cookie<'static> {
    c.set_value("");
    c.set_max_age(cookie::time::Duration::ZERO);
    c.set_expires(Expiration::DateTime(OffsetDateTime::UNIX_EPOCH));
    c
}

/// A `Set-Cookie` field value, marked sensitive (kept out of HPACK tables and debug output).
pub(crate) fn to_header(c: &Cookie<'_>) -> HeaderValue {
    match HeaderValue::try_from(c.to_string()) {
        Ok(mut v) => {
            v.set_sensitive(true);
            v
        }
        // Names and domains are validated by the configuration; values are base64.
        Err(_) => {
            tracing::error!(
                cookie = c.name(),
                "cookie does not form a valid header value"
            );
            HeaderValue::from_static("")
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::StoreKind;

    fn secret(byte: u8) -> CookieSecret {
        CookieSecret(vec![byte; 32])
    }

    fn config(name: &str, secrets: Vec<CookieSecret>) -> SessionConfig {
        SessionConfig {
            cookie_name: name.to_owned(),
            cookie_secrets: secrets,
            cookie_domain: None,
            same_site: SameSite::Lax,
            lifetime: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(3600),
            refresh: false,
            store: StoreKind::Memory,
            redis_url: None,
            max_sessions: 1000,
        }
    }

    fn https() -> PublicUrl {
        PublicUrl {
            https: true,
            host: "app.example.com".into(),
            port: None,
        }
    }

    fn http_url() -> PublicUrl {
        PublicUrl {
            https: false,
            host: "app.example.com".into(),
            port: Some(8080),
        }
    }

    /// The stack-buffer opener agrees with the `cookie` crate's own private jar on sealed
    /// values and on every one-character corruption and truncation of them.
    #[test]
    fn opening_matches_the_cookie_crates_private_jar() {
        let keys = Keys::session(&[secret(1), secret(2)]);
        let by_crate = |key: &Key, v: &str| {
            CookieJar::new()
                .private(key)
                .decrypt(Cookie::new("_portcullis", v.to_owned()))
                .map(|c| c.value().to_owned())
        };
        let by_crate_any = |v: &str| keys.keys.iter().find_map(|k| by_crate(k, v));
        for plain in ["", "x", &"y".repeat(43), &"z".repeat(600)] {
            let sealed = keys.seal("_portcullis", plain);
            assert_eq!(
                keys.open("_portcullis", sealed.as_bytes()).as_deref(),
                Some(plain)
            );
            assert_eq!(keys.open("other", sealed.as_bytes()), None);
            let mut variants = vec![sealed[..sealed.len() / 2].to_owned(), String::new()];
            for i in (0..sealed.len()).step_by(3) {
                let mut b = sealed.clone().into_bytes();
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                variants.push(String::from_utf8(b).unwrap());
            }
            for v in variants {
                assert_eq!(
                    keys.open("_portcullis", v.as_bytes()),
                    by_crate_any(&v),
                    "{v}"
                );
            }
        }
        // Sealed under the second (older) key only: still opens.
        let old = Keys::session(&[secret(2)]).seal("_portcullis", "rotated");
        assert_eq!(
            keys.open("_portcullis", old.as_bytes()).as_deref(),
            Some("rotated")
        );
    }

    fn cookies(name: &str) -> SessionCookies {
        SessionCookies::new(&config(name, vec![secret(1)]), &https())
    }

    fn request(cookie_lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in cookie_lines {
            h.append(COOKIE, HeaderValue::from_str(line).expect("test header"));
        }
        h
    }

    /// The `name=value` part of a Set-Cookie value.
    fn pair_of(set_cookie: &HeaderValue) -> String {
        let s = set_cookie.to_str().expect("ascii");
        s.split(';').next().unwrap_or_default().to_owned()
    }

    #[test]
    fn round_trip() {
        let c = cookies("_portcullis");
        let id = SessionId::generate();
        let set = c.set_cookie(&id);
        assert!(set.is_sensitive());
        assert_eq!(c.open(&request(&[&pair_of(&set)])), Ok(id));
    }

    #[test]
    fn attributes_per_public_url_and_name() {
        let id = SessionId::generate();
        let cases: Vec<(SessionConfig, PublicUrl, &str)> = vec![
            (
                config("_portcullis", vec![secret(1)]),
                http_url(),
                "; HttpOnly; SameSite=Lax; Path=/; Max-Age=43200",
            ),
            (
                config("_portcullis", vec![secret(1)]),
                https(),
                "; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=43200",
            ),
            (
                config("__Host-portcullis", vec![secret(1)]),
                https(),
                "; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=43200",
            ),
            (
                SessionConfig {
                    cookie_domain: Some("example.com".into()),
                    same_site: SameSite::Strict,
                    ..config("_portcullis", vec![secret(1)])
                },
                https(),
                "; HttpOnly; SameSite=Strict; Secure; Path=/; Domain=example.com; Max-Age=43200",
            ),
            (
                SessionConfig {
                    same_site: SameSite::None,
                    ..config("_portcullis", vec![secret(1)])
                },
                https(),
                "; HttpOnly; SameSite=None; Secure; Path=/; Max-Age=43200",
            ),
        ];
        for (cfg, public, attrs) in cases {
            let c = SessionCookies::new(&cfg, &public);
            let set = c.set_cookie(&id);
            let s = set.to_str().expect("ascii");
            let value = pair_of(&set);
            assert!(value.starts_with(&format!("{}=", cfg.cookie_name)), "{s}");
            assert_eq!(&s[value.len()..], attrs, "{s}");
            assert!(s.len() <= 4096);
            assert!(!s.contains(&id.encode()), "the id is sealed");

            let clear = c.clear_cookie();
            let clear = clear.to_str().expect("ascii");
            let clear_attrs = attrs.replace(
                "Max-Age=43200",
                "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            );
            assert_eq!(clear, format!("{}={clear_attrs}", cfg.cookie_name));
        }
    }

    #[test]
    fn open_absent_ambiguous_invalid() {
        let c = cookies("_portcullis");
        let good = pair_of(&c.set_cookie(&SessionId::generate()));
        let other = pair_of(&c.set_cookie(&SessionId::generate()));
        let value = good.trim_start_matches("_portcullis=").to_owned();
        let mut last_changed = value.clone();
        let last = if last_changed.pop() == Some('A') {
            'B'
        } else {
            'A'
        };
        last_changed.push(last);
        let random = STANDARD.encode([7u8; 32]);
        let cases: Vec<(Vec<String>, Result<(), NoSession>)> = vec![
            (vec![], Err(NoSession::Absent)),
            (vec!["theme=dark".into()], Err(NoSession::Absent)),
            (vec![";;;".into()], Err(NoSession::Absent)),
            (vec!["=".into()], Err(NoSession::Absent)),
            (vec![format!("theme=dark; {good}")], Ok(())),
            (vec!["theme=dark".into(), good.clone()], Ok(())),
            (vec![format!("{good}; {other}")], Err(NoSession::Ambiguous)),
            (vec![format!("{good}; {good}")], Err(NoSession::Ambiguous)),
            (vec![good.clone(), other.clone()], Err(NoSession::Ambiguous)),
            (
                vec![format!("{good}; _portcullis")],
                Err(NoSession::Ambiguous),
            ),
            (vec!["_portcullis".into()], Err(NoSession::Invalid)),
            (vec!["_portcullis=".into()], Err(NoSession::Invalid)),
            (vec!["_portcullis=%%%".into()], Err(NoSession::Invalid)),
            (
                vec![format!("_portcullis={last_changed}")],
                Err(NoSession::Invalid),
            ),
            (
                vec![format!("_portcullis={}", &value[..value.len() - 4])],
                Err(NoSession::Invalid),
            ),
            (
                vec![format!("_portcullis={random}")],
                Err(NoSession::Invalid),
            ),
            (
                vec![format!("_portcullis={}", "A".repeat(4000))],
                Err(NoSession::Invalid),
            ),
            (
                vec![format!("_portcullis={}", "A".repeat(MAX_SESSION_VALUE + 1))],
                Err(NoSession::Invalid),
            ),
            // The name is case-sensitive.
            (vec![format!("_PORTCULLIS={value}")], Err(NoSession::Absent)),
        ];
        for (lines, want) in cases {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let got = c.open(&request(&refs)).map(|_| ());
            assert_eq!(got, want, "{lines:?}");
        }
    }

    #[test]
    fn open_accepts_quoted_and_percent_encoded_values() {
        let c = cookies("_portcullis");
        let id = SessionId::generate();
        let set = c.set_cookie(&id);
        let value = pair_of(&set).trim_start_matches("_portcullis=").to_owned();
        let encoded = value.replace('=', "%3D").replace('/', "%2F");
        for v in [format!("\"{value}\""), encoded] {
            assert_eq!(
                c.open(&request(&[&format!("_portcullis={v}")])),
                Ok(id.clone()),
                "{v}"
            );
        }
    }

    #[test]
    fn wrong_key_and_wrong_name_do_not_open() {
        let a = cookies("_portcullis");
        let b = SessionCookies::new(&config("_portcullis", vec![secret(2)]), &https());
        let set = a.set_cookie(&SessionId::generate());
        assert_eq!(b.open(&request(&[&pair_of(&set)])), Err(NoSession::Invalid));
        // The name is the associated data: the same value under another name fails.
        let renamed = SessionCookies::new(&config("_other", vec![secret(1)]), &https());
        let value = pair_of(&set).replacen("_portcullis=", "_other=", 1);
        assert_eq!(renamed.open(&request(&[&value])), Err(NoSession::Invalid));
    }

    #[test]
    fn secret_rotation_first_seals_all_open() {
        let old = cookies("_portcullis");
        let rotated =
            SessionCookies::new(&config("_portcullis", vec![secret(2), secret(1)]), &https());
        let id = SessionId::generate();
        let sealed_with_a = pair_of(&old.set_cookie(&id));
        assert_eq!(rotated.open(&request(&[&sealed_with_a])), Ok(id.clone()));
        // New cookies are sealed with the new first key: the old-only jar can't open them.
        let sealed_with_b = pair_of(&rotated.set_cookie(&id));
        assert_eq!(
            old.open(&request(&[&sealed_with_b])),
            Err(NoSession::Invalid)
        );
    }

    #[test]
    fn short_or_missing_secrets_do_not_panic() {
        let short = SessionCookies::new(&config("_p", vec![CookieSecret(vec![1; 5])]), &https());
        let none = SessionCookies::new(&config("_p", vec![]), &https());
        for c in [short, none] {
            let id = SessionId::generate();
            assert_eq!(c.open(&request(&[&pair_of(&c.set_cookie(&id))])), Ok(id));
        }
    }

    #[test]
    fn strip_own_cookies_table() {
        type Case = (Vec<&'static [u8]>, Option<&'static [u8]>);
        let cases: Vec<Case> = vec![
            (
                vec![b"_portcullis=x; theme=dark; _portcullis_login_abc=y"],
                Some(b"theme=dark"),
            ),
            (
                vec![b"a=1; _portcullis=x", b"b=2;_portcullis_login_q=z; c=3"],
                Some(b"a=1; b=2; c=3"),
            ),
            (vec![b";;;"], None),
            (vec![b"_portcullis=x"], None),
            (vec![b"="], Some(b"=")),
            (vec![b"_portcullis; theme"], Some(b"theme")),
            (vec![b"_portcullis_login"], None),
            (vec![b" a = 1 ;; b=2 "], Some(b"a = 1; b=2")),
            (
                vec![b"_PORTCULLIS=x; _portcullisx=y"],
                Some(b"_PORTCULLIS=x; _portcullisx=y"),
            ),
            (vec![b"bin=\xff\xfe; _portcullis=x"], Some(b"bin=\xff\xfe")),
            (vec![b"q=\"a=b\"; t=x=y"], Some(b"q=\"a=b\"; t=x=y")),
        ];
        for (lines, want) in cases {
            let mut h = HeaderMap::new();
            for line in &lines {
                h.append(COOKIE, HeaderValue::from_bytes(line).expect("test header"));
            }
            h.insert(http::header::ACCEPT, HeaderValue::from_static("text/html"));
            strip_own_cookies(&mut h, "_portcullis", "_portcullis_login");
            let got: Vec<&[u8]> = h
                .get_all(COOKIE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            match want {
                Some(w) => assert_eq!(got, vec![w], "{lines:?}"),
                None => assert!(got.is_empty(), "{lines:?}"),
            }
            assert!(h.contains_key(http::header::ACCEPT));
        }
        let mut h = HeaderMap::new();
        strip_own_cookies(&mut h, "_portcullis", "_portcullis_login");
        assert!(h.is_empty());
    }
}
