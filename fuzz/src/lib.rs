//! Property checks shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the corpus
//! replay test (`tests/it/fuzz_corpus.rs` includes this file with `#[path]`, so it also runs on
//! stable in `cargo test`).
//!
//! Each `check_*` function takes one raw fuzz input, feeds it to one portcullis function and
//! panics (`assert!`) when a property does not hold; "no panic" alone is never the property.
//! The expected values are computed here independently of the code under test (a WHATWG URL
//! parser for redirects, a plain re-statement of the SPEC rules for names and cookies), and the
//! cookie checks know exactly which values were sealed, so "it opened" can be compared with
//! "we sealed it".
//!
//! Only portcullis' public API is used. Nothing here touches the network or the file system
//! (the config check skips inputs that could name a file to read).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::header::{COOKIE, HeaderMap, HeaderName, HeaderValue};
use portcullis::auth::login_cookie::{
    FUTURE_SKEW, LOGIN_TTL, LoginCookieError, LoginCookies, LoginState,
};
use portcullis::auth::redirect::RedirectPolicy;
use portcullis::config::{
    CookieSecret, HostPattern, PublicUrl, SameSite, SessionConfig, StoreKind,
};
use portcullis::http::forwarded::{self, PeerTrust};
use portcullis::http::identity_headers::IdentityScrubber;
use portcullis::http::{hop, path};
use portcullis::session::{NoSession, SessionCookies, SessionId};
use url::{Host, Url};

/// A property check over one raw fuzz input; panics when a property fails.
pub type Check = fn(&[u8]);

/// Every fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and the
/// `fuzz/corpus/<name>/` directory) and its check.
pub const TARGETS: [(&str, Check); 6] = [
    ("redirect", check_redirect),
    ("path", check_path),
    ("session_cookie", check_session_cookie),
    ("login_cookie", check_login_cookie),
    ("headers", check_headers),
    ("config", check_config),
];

// === rd validation ===

/// One redirect policy and the facts the properties are checked against.
struct RdSetup {
    policy: RedirectPolicy,
    /// `public_url` as a WHATWG base.
    public: Url,
    /// The callback URL a browser resolves `Location` against after login.
    callback: Url,
    https: bool,
    /// Lower-case public host as `Url::host` prints it (IPv6 in brackets).
    host: String,
    port: u16,
    routes: Vec<HostPattern>,
    reserved: Vec<String>,
}

fn rd_setups() -> &'static [RdSetup] {
    static SETUPS: OnceLock<Vec<RdSetup>> = OnceLock::new();
    SETUPS.get_or_init(|| {
        let make = |https: bool, host: &str, port: Option<u16>, routes: Vec<HostPattern>| {
            let public = PublicUrl {
                https,
                host: host.to_owned(),
                port,
            };
            let reserved = vec!["/oauth2/".to_owned(), "/Auth/Callback".to_owned()];
            let base = Url::parse(&public.origin()).expect("fixture public_url");
            RdSetup {
                policy: RedirectPolicy::new(&public, &routes, reserved.clone()),
                callback: base
                    .join("/Auth/Callback?code=c&state=s")
                    .expect("fixture callback"),
                public: base,
                https,
                host: host.to_owned(),
                port: public.effective_port(),
                routes,
                reserved,
            }
        };
        vec![
            make(
                true,
                "app.example.com",
                None,
                vec![
                    HostPattern::Exact("app.example.com".into()),
                    HostPattern::Wildcard("apps.example.com".into()),
                    HostPattern::Exact("docs.example.com".into()),
                    HostPattern::Exact("xn--bcher-kva.example".into()),
                ],
            ),
            make(
                false,
                "127.0.0.1",
                Some(8080),
                vec![HostPattern::Exact("localhost".into())],
            ),
            make(
                true,
                "[::1]",
                Some(8443),
                vec![HostPattern::Wildcard("example.org".into())],
            ),
        ]
    })
}

/// `rd` validation (`RedirectPolicy::validate`), under three policies (https public host with
/// route hosts, http on an IPv4 loopback with a port, https on IPv6 with a port).
///
/// For every accepted target: only RFC 3986 bytes (no control, space, `\`, quote or non-ASCII);
/// a relative target is the input verbatim and never `//…`; it resolves under the WHATWG
/// parser (against `public_url` and against the callback URL, identically) to https, or to the
/// public scheme on the public host, without userinfo, on the public host or a route host, on
/// the scheme's default port or the public port; its path is routable and outside the proxy's
/// own prefixes; and validating the target again returns it unchanged.
pub fn check_redirect(data: &[u8]) {
    let Ok(rd) = std::str::from_utf8(data) else {
        return;
    };
    for s in rd_setups() {
        let Some(target) = s.policy.validate(rd) else {
            continue;
        };
        let ctx = || format!("rd {rd:?} -> {target:?} (public {})", s.public);
        assert!(!target.is_empty(), "{}", ctx());
        assert!(
            target.bytes().all(rfc3986_byte),
            "byte outside RFC 3986: {}",
            ctx()
        );
        if rd.starts_with('/') {
            assert_eq!(target, rd, "relative target not verbatim: {}", ctx());
            assert!(!target.starts_with("//"), "{}", ctx());
        } else {
            let parsed = Url::parse(rd).unwrap_or_else(|e| panic!("{e}: {}", ctx()));
            assert_eq!(target, parsed.as_str(), "not the WHATWG form: {}", ctx());
        }

        let url = s
            .public
            .join(&target)
            .unwrap_or_else(|e| panic!("does not resolve ({e}): {}", ctx()));
        let from_callback = s.callback.join(&target).map(|u| u.to_string());
        assert_eq!(
            from_callback.as_deref(),
            Ok(url.as_str()),
            "resolves differently from the callback page: {}",
            ctx()
        );
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => format!("[{ip}]"),
            None => panic!("no host: {}", ctx()),
        };
        let is_public = host == s.host;
        match url.scheme() {
            "https" => {}
            "http" => assert!(!s.https && is_public, "http target: {}", ctx()),
            other => panic!("scheme {other}: {}", ctx()),
        }
        assert!(
            url.username().is_empty() && url.password().is_none(),
            "userinfo: {}",
            ctx()
        );
        assert!(
            is_public || s.routes.iter().any(|p| host_allowed(p, &host)),
            "host {host} not allowed: {}",
            ctx()
        );
        let default_port = if url.scheme() == "https" { 443 } else { 80 };
        let port = url.port_or_known_default();
        assert!(
            port == Some(default_port) || (is_public && port == Some(s.port)),
            "port {port:?}: {}",
            ctx()
        );
        let routed = path::normalize(url.path())
            .unwrap_or_else(|e| panic!("path the proxy refuses ({e}): {}", ctx()))
            .to_ascii_lowercase();
        for prefix in &s.reserved {
            let bare = prefix.trim_end_matches('/').to_ascii_lowercase();
            assert!(
                routed != bare && !routed.starts_with(&format!("{bare}/")),
                "lands on the proxy's own {prefix}: {}",
                ctx()
            );
        }
        assert_eq!(
            s.policy.validate(&target).as_deref(),
            Some(target.as_str()),
            "not a fixed point: {}",
            ctx()
        );
    }
}

/// RFC 3986 unreserved, reserved and `%`, minus `'`.
fn rfc3986_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&()*+,;=%".contains(&b)
}

/// The SPEC's host rule: exact (case-insensitive), or `*.suffix` on a label boundary with a
/// non-empty label.
fn host_allowed(pattern: &HostPattern, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    match pattern {
        HostPattern::Exact(h) => host == h.to_ascii_lowercase(),
        HostPattern::Wildcard(suffix) => {
            let dotted = format!(".{}", suffix.to_ascii_lowercase());
            host.len() > dotted.len() && host.ends_with(&dotted)
        }
    }
}

// === path normalisation ===

/// `path::normalize`. For every accepted path: it is rooted, no longer than the input, visible
/// ASCII without `\`, `;`, `?`, `#`; has no `//` and no `.`/`..` segment; every escape is
/// two upper-case hex digits of a byte that is neither unreserved, `/`, `\`, `#` nor a control
/// byte (so no `%2F`, `%5C`, `%2E`); it decodes to UTF-8; normalising it again changes
/// nothing; and a WHATWG parser sees the same segments (it would not collapse any); no segment
/// ends in `.` or `%20` (Windows/IIS would drop it). A path made only of unreserved characters
/// and single slashes, no segment ending in `.`, is accepted unchanged.
pub fn check_path(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let plain = raw.starts_with('/')
        && raw.len() <= path::MAX_PATH_LEN
        && !raw.contains("//")
        && raw.split('/').all(|seg| {
            seg != "." && seg != ".." && !seg.ends_with('.') && seg.bytes().all(unreserved)
        });
    let out = match path::normalize(raw) {
        Ok(out) => out,
        Err(e) => {
            assert!(!plain, "plain path {raw:?} refused: {e}");
            return;
        }
    };
    let ctx = || format!("{raw:?} -> {out:?}");
    if plain {
        assert_eq!(out, raw, "plain path changed");
    }
    assert!(out.starts_with('/'), "{}", ctx());
    assert!(out.len() <= raw.len(), "longer: {}", ctx());
    assert!(
        out.bytes()
            .all(|b| b.is_ascii_graphic() && !b"\\;?#".contains(&b)),
        "bad byte: {}",
        ctx()
    );
    assert!(!out.contains("//"), "{}", ctx());
    assert!(
        out.split('/')
            .all(|seg| !seg.ends_with('.') && !seg.ends_with("%20")),
        "segment ending in a dot or a space: {}",
        ctx()
    );
    assert!(
        out.split('/').all(|seg| seg != "." && seg != ".."),
        "dot segment: {}",
        ctx()
    );
    let bytes = out.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
            assert!(
                hex.len() == 2
                    && hex
                        .iter()
                        .all(|h| h.is_ascii_digit() || (b'A'..=b'F').contains(h)),
                "escape not two upper-case hex digits: {}",
                ctx()
            );
            let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
                .unwrap_or_else(|_| panic!("hex: {}", ctx()));
            assert!(
                !unreserved(v) && !matches!(v, b'/' | b'\\' | b'#' | 0..=0x1f | 0x7f),
                "escape %{v:02X} must not survive: {}",
                ctx()
            );
            decoded.push(v);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    assert!(
        std::str::from_utf8(&decoded).is_ok(),
        "not UTF-8: {}",
        ctx()
    );
    assert_eq!(path::normalize(&out), Ok(out.clone()), "not idempotent");
    let whatwg = Url::parse("http://h/")
        .and_then(|b| b.join(&out))
        .unwrap_or_else(|e| panic!("WHATWG refuses ({e}): {}", ctx()));
    assert_eq!(
        whatwg.path().split('/').count(),
        out.split('/').count(),
        "WHATWG sees other segments ({}): {}",
        whatwg.path(),
        ctx()
    );
}

/// RFC 3986 §2.3 `unreserved`.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

// === cookies ===

const SESSION_NAME: &str = "__Host-portcullis";
/// "Now" for the login cookie checks, in Unix seconds.
const NOW: u64 = 1_700_000_000;
/// Marker bytes in a cookie template input; each is replaced by a fixture (see the checks).
const MARKERS: std::ops::RangeInclusive<u8> = 0x01..=0x08;

fn secret(b: u8) -> CookieSecret {
    CookieSecret(vec![b; 32])
}

fn session_cookies(name: &str, secrets: Vec<CookieSecret>) -> SessionCookies {
    let cfg = SessionConfig {
        cookie_name: name.to_owned(),
        cookie_secrets: secrets,
        cookie_domain: None,
        same_site: SameSite::Lax,
        lifetime: Duration::from_secs(3600),
        idle_timeout: Duration::from_secs(600),
        refresh: false,
        store: StoreKind::Memory,
        redis_url: None,
        max_sessions: 10,
    };
    let public = PublicUrl {
        https: true,
        host: "app.example.com".into(),
        port: None,
    };
    SessionCookies::new(&cfg, &public)
}

fn id(b: u8) -> SessionId {
    SessionId::parse(&URL_SAFE_NO_PAD.encode([b; 32])).expect("fixture id")
}

/// `name` and `value` of a `Set-Cookie` field.
fn set_cookie_pair(v: &HeaderValue) -> (String, String) {
    let s = v.to_str().expect("Set-Cookie is ASCII");
    let pair = s.split(';').next().unwrap_or_default();
    let (n, v) = pair.split_once('=').expect("Set-Cookie has a value");
    (n.to_owned(), v.to_owned())
}

/// Every `name=value` pair of every `Cookie` line, OWS-trimmed, as (name, value) bytes.
fn pairs(headers: &HeaderMap) -> Vec<(Vec<u8>, Vec<u8>)> {
    let trim = |s: &[u8]| -> Vec<u8> {
        let start = s.iter().position(|b| !matches!(b, b' ' | b'\t'));
        let end = s.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
        match (start, end) {
            (Some(a), Some(z)) => s[a..=z].to_vec(),
            _ => Vec::new(),
        }
    };
    let mut out = Vec::new();
    for line in headers.get_all(COOKIE) {
        for piece in line.as_bytes().split(|b| *b == b';') {
            let piece = trim(piece);
            if piece.is_empty() {
                continue;
            }
            match piece.iter().position(|b| *b == b'=') {
                Some(i) => out.push((trim(&piece[..i]), trim(&piece[i + 1..]))),
                None => out.push((piece, Vec::new())),
            }
        }
    }
    out
}

/// The AEAD bytes a cookie value stands for: quotes, `%XX` and base64 (lenient on padding and
/// trailing bits) undone. `None` when it is not such an encoding.
fn sealed_bytes(value: &[u8]) -> Option<Vec<u8>> {
    let v = match value {
        [b'"', inner @ .., b'"'] => inner,
        v => v,
    };
    let mut decoded = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' {
            let hex = std::str::from_utf8(v.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(v[i]);
            i += 1;
        }
    }
    let lenient = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    lenient.decode(decoded).ok()
}

/// Builds `Cookie` lines from a template: the input split on `\n`, each marker byte replaced
/// by its fixture, lines that are not valid field values dropped.
fn cookie_headers(template: &[u8], fixture: impl Fn(u8) -> Vec<u8>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in template.split(|b| *b == b'\n') {
        let mut bytes = Vec::with_capacity(line.len());
        for &b in line {
            if MARKERS.contains(&b) {
                bytes.extend(fixture(b));
            } else {
                bytes.push(b);
            }
        }
        if let Ok(v) = HeaderValue::from_bytes(&bytes) {
            headers.append(COOKIE, v);
        }
    }
    headers
}

/// Applies `(position, xor)` byte pairs to `value`; xor 0 deletes the byte.
fn mutate(value: &str, edits: &[u8]) -> Vec<u8> {
    let mut v = value.as_bytes().to_vec();
    for e in edits.chunks_exact(2) {
        if v.is_empty() {
            break;
        }
        let at = usize::from(e[0]) % v.len();
        match e[1] {
            0 => {
                v.remove(at);
            }
            x => v[at] ^= x,
        }
    }
    v
}

struct SessionFixture {
    /// Opens with the current and the old secret.
    jar: SessionCookies,
    /// Sealed by `jar` (current secret): opens to `id(1)`.
    current: String,
    /// Sealed with the old secret only: opens to `id(2)` (rotation).
    old: String,
    /// Sealed with a secret `jar` does not have (`id(3)`): never opens.
    foreign: String,
    /// Sealed with the current secret under another cookie name (`id(4)`): never opens.
    renamed: String,
    /// A login cookie value (other key purpose): never opens as a session.
    login: String,
}

fn session_fixture() -> &'static SessionFixture {
    static F: OnceLock<SessionFixture> = OnceLock::new();
    F.get_or_init(|| {
        let jar = session_cookies(SESSION_NAME, vec![secret(1), secret(2)]);
        let seal = |c: &SessionCookies, i: u8| set_cookie_pair(&c.set_cookie(&id(i))).1;
        let login = LoginCookies::new(SESSION_NAME, &[secret(1), secret(2)], true);
        let begun = login.begin(&login_state(9, NOW), &HeaderMap::new());
        SessionFixture {
            current: seal(&jar, 1),
            old: seal(&session_cookies(SESSION_NAME, vec![secret(2)]), 2),
            foreign: seal(&session_cookies(SESSION_NAME, vec![secret(3)]), 3),
            renamed: seal(&session_cookies("_other", vec![secret(1)]), 4),
            login: set_cookie_pair(&begun[0]).1,
            jar,
        }
    })
}

/// Session cookie opening (`SessionCookies::open`) on arbitrary `Cookie` lines.
///
/// First byte even: the rest is a template of `Cookie` lines in which bytes 1–5 stand for the
/// sealed values (current secret, old secret, foreign secret, other cookie name, login cookie)
/// and 6 for the session cookie's name. Odd: byte edits of the current sealed value.
///
/// Properties: `Absent`/`Ambiguous`/candidate follow the count of pairs with our name; a
/// cookie that opens is exactly one pair whose value is an encoding of a value we sealed with a
/// configured secret under this name, and it opens to the id sealed in it. Garbage, foreign
/// keys, other names, login cookies and real mutations never open.
pub fn check_session_cookie(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = session_fixture();
    let headers = if mode % 2 == 0 {
        cookie_headers(rest, |m| match m {
            1 => f.current.clone().into_bytes(),
            2 => f.old.clone().into_bytes(),
            3 => f.foreign.clone().into_bytes(),
            4 => f.renamed.clone().into_bytes(),
            5 => f.login.clone().into_bytes(),
            _ => SESSION_NAME.as_bytes().to_vec(),
        })
    } else {
        let mut v = format!("{SESSION_NAME}=").into_bytes();
        v.extend(mutate(&f.current, rest));
        cookie_headers(&v, |_| Vec::new())
    };
    let ours: Vec<Vec<u8>> = pairs(&headers)
        .into_iter()
        .filter(|(n, _)| n == SESSION_NAME.as_bytes())
        .map(|(_, v)| v)
        .collect();
    let got = f.jar.open(&headers);
    match ours.len() {
        0 => assert_eq!(got, Err(NoSession::Absent), "{headers:?}"),
        1 => {}
        _ => assert_eq!(got, Err(NoSession::Ambiguous), "{headers:?}"),
    }
    if let Ok(opened) = got {
        assert_eq!(ours.len(), 1, "{headers:?}");
        let bytes = sealed_bytes(&ours[0]);
        let want = if bytes == sealed_bytes(f.current.as_bytes()) {
            id(1)
        } else if bytes == sealed_bytes(f.old.as_bytes()) && mode % 2 == 0 {
            id(2)
        } else {
            panic!("a value we did not seal opened: {headers:?}");
        };
        assert!(opened == want, "opened to the wrong id: {headers:?}");
    }
}

fn login_state(i: u8, issued_at: u64) -> LoginState {
    let word = |what: &str| format!("{what}{i}-{}", "x".repeat(36));
    LoginState {
        state: word("state"),
        nonce: word("nonce"),
        pkce_verifier: word("verifier"),
        rd: format!("/landing/{i}"),
        issued_at,
    }
}

struct LoginFixture {
    cookies: LoginCookies,
    /// Index 0..5: fresh (current secret), expired, too far in the future, fresh under the old
    /// secret only, fresh under a foreign secret.
    states: Vec<LoginState>,
    /// `(name, value)` of each state's login cookie.
    sealed: Vec<(String, String)>,
    /// A session cookie value (never opens as a login cookie).
    session_value: String,
}

fn login_fixture() -> &'static LoginFixture {
    static F: OnceLock<LoginFixture> = OnceLock::new();
    F.get_or_init(|| {
        let secrets = [secret(1), secret(2)];
        let cookies = LoginCookies::new(SESSION_NAME, &secrets, true);
        let old = LoginCookies::new(SESSION_NAME, &[secret(2)], true);
        let foreign = LoginCookies::new(SESSION_NAME, &[secret(3)], true);
        let states = vec![
            login_state(1, NOW - 5),
            login_state(2, NOW - LOGIN_TTL - 1),
            login_state(3, NOW + FUTURE_SKEW + 1),
            login_state(4, NOW - 5),
            login_state(5, NOW - 5),
        ];
        let by = [&cookies, &cookies, &cookies, &old, &foreign];
        let sealed = states
            .iter()
            .zip(by)
            .map(|(s, c)| set_cookie_pair(&c.begin(s, &HeaderMap::new())[0]))
            .collect();
        let session_value =
            set_cookie_pair(&session_cookies(SESSION_NAME, secrets.to_vec()).set_cookie(&id(1))).1;
        LoginFixture {
            cookies,
            states,
            sealed,
            session_value,
        }
    })
}

/// Login cookie opening (`LoginCookies::take`) on a `state` parameter and `Cookie` lines.
///
/// First byte even: the rest is `state template NUL cookie template`. In the state, bytes 1–5
/// stand for the five fixture states (fresh, expired, future, old secret, foreign secret). In
/// the cookies, bytes 1–5 stand for `name=value` of their login cookies, 6 for the fresh
/// cookie's name with the old-secret cookie's value (a swap), 7 for the fresh cookie's name with
/// a session cookie value, 8 for the fresh cookie's name. Odd: the fresh state with byte edits
/// of its cookie value.
///
/// Properties: a login that opens is one of the two valid fixtures (fresh, or sealed with the
/// old secret), for exactly the `state` asked, within the lifetime and not in the future, and
/// a cookie with its name is present; `Expired` only for the expired fixture; `Missing` exactly
/// when no login-cookie slot is present; and when the exact valid cookie is present, no other
/// cookie (duplicates, garbage) can hide it.
pub fn check_login_cookie(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = login_fixture();
    let (state, headers) = if mode % 2 == 0 {
        let (st, ck) = match rest.iter().position(|b| *b == 0) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        let mut state = Vec::new();
        for &b in st {
            match b {
                1..=5 => state.extend(f.states[usize::from(b - 1)].state.as_bytes()),
                b => state.push(b),
            }
        }
        let Ok(state) = String::from_utf8(state) else {
            return;
        };
        let headers = cookie_headers(ck, |m| {
            let name1 = &f.sealed[0].0;
            match m {
                1..=5 => {
                    let (n, v) = &f.sealed[usize::from(m - 1)];
                    format!("{n}={v}").into_bytes()
                }
                6 => format!("{name1}={}", f.sealed[3].1).into_bytes(),
                7 => format!("{name1}={}", f.session_value).into_bytes(),
                _ => name1.clone().into_bytes(),
            }
        });
        (state, headers)
    } else {
        let (n, v) = &f.sealed[0];
        let mut line = format!("{n}=").into_bytes();
        line.extend(mutate(v, rest));
        (
            f.states[0].state.clone(),
            cookie_headers(&line, |_| Vec::new()),
        )
    };

    let got = f.cookies.take(&state, &headers, NOW).map(|t| t.login);
    let all = pairs(&headers);
    let ctx = || format!("state {state:?}, {headers:?} -> {got:?}");
    let known = f.states.iter().position(|s| s.state == state);
    if let Some(k) = known {
        let (name, value) = &f.sealed[k];
        // Login cookies live in five fixed slots, `<prefix>_0` … `<prefix>_4`.
        let slot = |n: &[u8]| (0..5).any(|d| n == format!("{}_{d}", f.cookies.prefix()).as_bytes());
        let slots = all.iter().filter(|(n, _)| slot(n)).count();
        assert_eq!(
            slots == 0,
            got == Err(LoginCookieError::Missing),
            "Missing iff no login cookie slot is present: {}",
            ctx()
        );
        let exact = all
            .iter()
            .any(|(n, v)| n == name.as_bytes() && v == value.as_bytes());
        if exact && (k == 0 || k == 3) {
            assert_eq!(
                got.as_ref().ok(),
                Some(&f.states[k]),
                "valid cookie hidden: {}",
                ctx()
            );
        }
    }
    if state.is_empty() || state.len() > 512 {
        assert_eq!(got, Err(LoginCookieError::Missing), "{}", ctx());
    }
    match &got {
        Ok(login) => {
            assert_eq!(login.state, state, "{}", ctx());
            assert!(
                *login == f.states[0] || *login == f.states[3],
                "a login we did not seal (or not valid now) opened: {}",
                ctx()
            );
            assert!(
                login.issued_at <= NOW + FUTURE_SKEW
                    && NOW.saturating_sub(login.issued_at) <= LOGIN_TTL,
                "{}",
                ctx()
            );
            if mode % 2 == 1 {
                assert!(
                    all.iter()
                        .any(|(_, v)| sealed_bytes(v) == sealed_bytes(f.sealed[0].1.as_bytes())),
                    "a mutated value opened: {}",
                    ctx()
                );
            }
        }
        Err(LoginCookieError::Expired) => {
            assert_eq!(
                known,
                Some(1),
                "Expired for a login we did not seal: {}",
                ctx()
            );
        }
        Err(_) => {}
    }
}

// === identity headers, hop-by-hop, forwarding ===

/// Identity header names the scrubber is configured with (besides its built-in ones).
const CONFIGURED: [&str; 4] = [
    "x-auth-request-user",
    "x-email",
    "remote-user",
    "x_claim.dept",
];

/// Names every scrubber protects whatever the configuration (normalised).
const OAUTH2_PROXY: [&str; 5] = [
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
];

const FIXED_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "http2-settings",
];

fn scrubber() -> &'static IdentityScrubber {
    static S: OnceLock<IdentityScrubber> = OnceLock::new();
    S.get_or_init(|| {
        let names: Vec<HeaderName> = CONFIGURED
            .iter()
            .map(|n| HeaderName::from_static(n))
            .collect();
        IdentityScrubber::new(&names)
    })
}

/// SPEC: names compare case-insensitively with `_` and `.` equal to `-`.
fn normalised(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' | b'.' => '-',
            b => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

fn protected(name: &str) -> bool {
    let n = normalised(name);
    n.starts_with("x-auth-request-")
        || OAUTH2_PROXY.contains(&n.as_str())
        || CONFIGURED.iter().any(|c| normalised(c) == n)
}

fn forwarding(name: &str) -> bool {
    let n = normalised(name);
    n.starts_with("x-forwarded-")
        || ["forwarded", "x-real-ip", "x-original-url", "x-original-uri"].contains(&n.as_str())
}

/// Each field's lines, in order.
fn lines(h: &HeaderMap, name: &HeaderName) -> Vec<Vec<u8>> {
    h.get_all(name)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// Checks that `after` holds exactly the fields of `before` that `keep` accepts, line for line.
fn kept_exactly(before: &HeaderMap, after: &HeaderMap, keep: impl Fn(&str) -> bool, what: &str) {
    for name in before.keys() {
        if keep(name.as_str()) {
            assert_eq!(
                lines(before, name),
                lines(after, name),
                "{what}: {name} changed"
            );
        } else {
            assert!(!after.contains_key(name), "{what}: {name} survived");
        }
    }
}

/// Identity-header scrubbing (`IdentityScrubber::scrub`), hop-by-hop stripping
/// (`hop::strip_hop_by_hop`) and forwarding fields (`forwarded::apply`) over an arbitrary header
/// map: the input after its first byte is `name: value` lines (invalid ones dropped); the first
/// byte picks the peer (IPv4, IPv6, IPv4-mapped) and whether it is trusted.
///
/// Properties: scrubbing removes every line of every field whose normalised name is protected,
/// keeps every other field line for line, and counts the lines removed; hop-by-hop stripping
/// removes `Connection`, every field it names and the fixed list, keeps everything else, and
/// reports a WebSocket upgrade exactly when `Connection` has `upgrade` and `Upgrade` is exactly
/// `websocket`; forwarding from an untrusted peer leaves only the proxy's own
/// `X-Forwarded-For/-Proto/-Host`, from a trusted peer appends the peer and keeps one line; and
/// in the proxy's order (hop, forwarding, scrub, then the identity header set) the upstream sees
/// only the proxy's identity value.
pub fn check_headers(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut input = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(trim_ows(&line[colon + 1..])),
        ) else {
            continue;
        };
        input.append(name, value);
    }

    // Scrubbing.
    let mut scrubbed = input.clone();
    let removed = scrubber().scrub(&mut scrubbed);
    kept_exactly(&input, &scrubbed, |n| !protected(n), "scrub");
    assert_eq!(scrubbed.len() + removed, input.len(), "scrub count");

    // Hop-by-hop.
    let named: HashSet<String> = input
        .get_all("connection")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|m| std::str::from_utf8(trim_ows(m)).ok())
        .map(str::to_ascii_lowercase)
        .collect();
    let upgrade: Vec<&[u8]> = input
        .get_all("upgrade")
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(trim_ows)
        .filter(|m| !m.is_empty())
        .collect();
    let wants_ws = named.contains("upgrade")
        && upgrade.len() == 1
        && upgrade[0].eq_ignore_ascii_case(b"websocket");
    let mut stripped = input.clone();
    let ws = hop::strip_hop_by_hop(&mut stripped);
    kept_exactly(
        &input,
        &stripped,
        |n| !FIXED_HOP.contains(&n) && !named.contains(n),
        "hop",
    );
    assert_eq!(
        ws.as_ref().map(HeaderValue::as_bytes),
        wants_ws.then_some(&b"websocket"[..]),
        "upgrade detection"
    );

    // Forwarding, after hop-by-hop as in the proxy.
    let peer = match flags % 3 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
        1 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped()),
    };
    let peer_text = peer.to_canonical().to_string();
    let trusted = flags & 0x80 != 0;
    let mut fwd = stripped.clone();
    let trust = if trusted {
        PeerTrust::Trusted
    } else {
        PeerTrust::Untrusted
    };
    forwarded::apply(&mut fwd, peer, trust, "https", "app.example.com");
    let proxy_set = ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"];
    // The proxy's own three are checked below; every other field is kept or removed whole.
    let mut others = stripped.clone();
    for name in proxy_set {
        others.remove(name);
    }
    kept_exactly(
        &others,
        &fwd,
        |n| !forwarding(n) || (trusted && !n.contains(['_', '.'])),
        "forwarded",
    );
    for name in fwd.keys() {
        assert!(
            !forwarding(name.as_str())
                || proxy_set.contains(&name.as_str())
                || (trusted && stripped.contains_key(name) && !name.as_str().contains(['_', '.'])),
            "forwarded: {name} added or kept"
        );
    }
    let xff = lines(&fwd, &HeaderName::from_static("x-forwarded-for"));
    let proto = lines(&fwd, &HeaderName::from_static("x-forwarded-proto"));
    let host = lines(&fwd, &HeaderName::from_static("x-forwarded-host"));
    if trusted {
        let mut want = Vec::new();
        for l in stripped.get_all("x-forwarded-for") {
            let l = trim_ows(l.as_bytes());
            if !l.is_empty() {
                want.extend_from_slice(l);
                want.extend_from_slice(b", ");
            }
        }
        want.extend_from_slice(peer_text.as_bytes());
        assert_eq!(xff, vec![want], "trusted X-Forwarded-For");
        for (lines_after, name, ours) in [
            (&proto, "x-forwarded-proto", "https"),
            (&host, "x-forwarded-host", "app.example.com"),
        ] {
            let first = stripped
                .get(name)
                .map(|v| {
                    trim_ows(
                        v.as_bytes()
                            .split(|b| *b == b',')
                            .next()
                            .unwrap_or_default(),
                    )
                })
                .filter(|v| !v.is_empty())
                .unwrap_or(ours.as_bytes());
            assert_eq!(lines_after, &vec![first.to_vec()], "trusted {name}");
        }
    } else {
        assert_eq!(xff, vec![peer_text.into_bytes()], "X-Forwarded-For");
        assert_eq!(proto, vec![b"https".to_vec()], "X-Forwarded-Proto");
        assert_eq!(host, vec![b"app.example.com".to_vec()], "X-Forwarded-Host");
    }

    // The pipeline: only the proxy's identity value reaches the upstream.
    scrubber().scrub(&mut fwd);
    fwd.insert("x-auth-request-user", HeaderValue::from_static("alice"));
    for (name, value) in &fwd {
        if protected(name.as_str()) {
            assert_eq!(
                name.as_str(),
                "x-auth-request-user",
                "{name} reaches upstream"
            );
            assert_eq!(value.as_bytes(), b"alice");
        }
    }
}

// === configuration ===

/// `config::from_str`. Inputs that could name a file to read (`_file` keys, `\u` escapes that
/// could spell one) are skipped: the check must not touch the file system.
///
/// Properties: parsing never panics and is deterministic (same errors, or the same `Config`
/// and summary, on a second run); every error has a non-empty message and a location inside
/// the text; an accepted configuration satisfies the cross-field rules the rest of the proxy
/// relies on (secrets of 32 bytes or more, `__Host-`/`__Secure-` and `SameSite=None` only with
/// https, idle timeout within the lifetime, `openid` in the scopes, routable route paths and
/// callback path, no identity header on a reserved name), a redirect policy built from it
/// refuses `//` targets, and neither its `Debug` form nor its summary shows a secret.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("_file") || text.contains("\\u") || text.contains("\\U") {
        return;
    }
    let env = |name: &str| match name {
        "CLIENT_SECRET" => Some("fuzz-client-secret-value".to_owned()),
        "COOKIE_SECRET" => Some(URL_SAFE_NO_PAD.encode([7u8; 32])),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let base = Path::new("/nonexistent/portcullis-fuzz");
    let first = portcullis::config::from_str(text, "fuzz.toml", &env, base);
    let second = portcullis::config::from_str(text, "fuzz.toml", &env, base);
    let cfg = match (first, second) {
        (Err(a), Err(b)) => {
            assert_eq!(a.errors, b.errors, "errors differ between runs");
            assert!(!a.errors.is_empty(), "an error without errors");
            let line_count = text.lines().count() + 1;
            for e in &a.errors {
                assert!(!e.message.is_empty(), "empty message: {e:?}");
                if let Some(line) = e.line {
                    assert!(line >= 1 && line <= line_count, "line out of range: {e:?}");
                    assert!(e.column.is_none_or(|c| c >= 1), "column: {e:?}");
                }
            }
            let _ = a.to_string();
            return;
        }
        (Ok(a), Ok(b)) => {
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "configs differ");
            assert_eq!(
                portcullis::config::check_summary(&a),
                portcullis::config::check_summary(&b)
            );
            a
        }
        (a, b) => panic!("accepted once, refused once: {:?} / {:?}", a.err(), b.err()),
    };

    let public = &cfg.server.public_url;
    let s = &cfg.session;
    assert!(!public.host.is_empty() && !public.host.ends_with('.'));
    assert!(!cfg.routes.is_empty(), "no route");
    assert!(!s.cookie_secrets.is_empty(), "no cookie secret");
    assert!(
        s.cookie_secrets.iter().all(|k| k.0.len() >= 32),
        "short cookie secret"
    );
    let lower = s.cookie_name.to_ascii_lowercase();
    if lower.starts_with("__host-") {
        assert!(public.https && s.cookie_domain.is_none(), "__Host- rules");
    }
    if lower.starts_with("__secure-") || s.same_site == SameSite::None {
        assert!(public.https, "Secure needed");
    }
    assert!(s.idle_timeout <= s.lifetime, "idle timeout beyond lifetime");
    assert!(cfg.oidc.scopes.iter().any(|x| x == "openid"), "no openid");
    assert_eq!(
        path::normalize(&cfg.oidc.callback_path).as_deref(),
        Ok(cfg.oidc.callback_path.as_str()),
        "the callback path is not a path the proxy routes"
    );
    for r in &cfg.routes {
        assert_eq!(
            path::normalize(&r.path).as_deref(),
            Ok(r.path.as_str()),
            "route path not normalised"
        );
    }
    let h = &cfg.headers;
    for name in [
        &h.user,
        &h.email,
        &h.preferred_username,
        &h.groups,
        &h.access_token,
    ]
    .into_iter()
    .flatten()
    .chain(h.claims.iter().map(|(n, _)| n))
    {
        assert!(
            ![
                "cookie",
                "host",
                "authorization",
                "connection",
                "x-forwarded-for"
            ]
            .contains(&name.as_str()),
            "identity header {name} is reserved"
        );
    }
    let routes: Vec<HostPattern> = cfg.routes.iter().filter_map(|r| r.host.clone()).collect();
    let policy = RedirectPolicy::new(
        public,
        &routes,
        vec!["/oauth2/".into(), cfg.oidc.callback_path.clone()],
    );
    for bad in ["//evil.example/", "/\\evil.example", "javascript:alert(1)"] {
        assert_eq!(policy.validate(bad), None, "{bad} accepted");
    }

    // No secret in the Debug form or the summary. Only sound when the secret is spelled once in
    // the text and nothing is expanded from the environment (so no other value can equal it).
    if !text.contains("${") {
        let shown = format!("{cfg:?}\n{}", portcullis::config::check_summary(&cfg));
        let client = cfg.oidc.client_secret.expose();
        if client.len() >= 12 && text.matches(client).count() == 1 {
            assert!(!shown.contains(client), "client secret shown");
        }
    }
}
