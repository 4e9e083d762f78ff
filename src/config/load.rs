//! Loading the configuration file: TOML text → validated [`Config`], reporting *every* error.
//!
//! SPEC "Configuration": unknown keys are errors, durations are humantime strings, any string
//! value may contain `${NAME}` (read from the environment), any secret may instead be given as
//! `<key>_file` (trailing newline trimmed), and `portcullis check` prints every error with its
//! key path and line:column. serde stops at the first error, so the file is parsed with
//! [`DeTable::parse_recoverable`] into a spanned document (all syntax errors at once) and walked
//! by hand: every key is looked up, type-checked, expanded and validated, and every failure is
//! pushed onto a list instead of returned. Unknown keys are found by comparing each table's keys
//! with the ones it accepts. When the file has syntax errors only those are reported (the
//! recovered document is incomplete, so "missing key" errors would be noise).
//!
//! Protocol rules applied here: cookie names are RFC 6265 §4.1.1 `token`s and the `__Host-` /
//! `__Secure-` prefixes follow RFC 6265bis §4.1.3; header names are RFC 9110 §5.1 field names
//! and hop-by-hop fields (RFC 9110 §7.6.1) may not carry identity; scope tokens are RFC 6749 §3.3
//! `NQCHAR`s; the parameters the authorization request is built from (RFC 6749 §4.1.1,
//! OpenID Connect Core §3.1.2.1, RFC 7636 §4.3) cannot be overridden by `extra_auth_params`.
//!
//! Key paths index arrays from 0 (`route[1]` is the second `[[route]]`, logged as `route1`).
//! Tables are read in file order by sorting entries on their key spans, so `[headers.claims]`
//! keeps its order without toml's `preserve_order` feature. Errors come out sorted by position.
//!
//! Secret values (client secret, cookie secrets, redis URL) never appear in a message.

use std::fmt;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderName;
use toml::Spanned;
use toml::de::{DeTable, DeValue};
use url::{Host, Url};

use super::{
    AuthMode, Cidr, Config, CookieSecret, HeadersConfig, HostPattern, OidcConfig, PublicUrl,
    RouteConfig, SameSite, Secret, ServerConfig, SessionConfig, StoreKind, TlsFiles, Upstream,
};

/// One configuration error: the key path (`session.cookie_secret`, `route[2].upstream`), its
/// 1-based line:column in the file (the value's span, or the table header for a missing key;
/// `None` when not locatable) and a lower-case message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path; `[n]` indexes arrays (0-based, as in `route0`); "" for file-level errors.
    pub key: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Every error found; `Display` prints one per line as `{file}:{line}:{col}: {key}: {message}`
/// (the location is left out when unknown, the key when empty).
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors {
    /// The file label given to [`from_str`] (the path for [`from_file`]).
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&self.file)?;
            if let Some(line) = e.line {
                write!(f, ":{line}")?;
                if let Some(col) = e.column {
                    write!(f, ":{col}")?;
                }
            }
            f.write_str(": ")?;
            if !e.key.is_empty() {
                write!(f, "{}: ", e.key)?;
            }
            f.write_str(&e.message)?;
        }
        Ok(())
    }
}

/// Message for features that are parsed but not implemented yet.
const NOT_YET: &str = "not supported yet in this version";
const COOKIE_SECRET_RULE: &str =
    "must be base64 of at least 32 random bytes; generate one with `portcullis generate-secret`";

const DEFAULT_SCOPES: [&str; 3] = ["openid", "email", "profile"];
const DEFAULT_CALLBACK_PATH: &str = "/oauth2/callback";
/// Authorization-request parameters portcullis sets itself.
const OWNED_AUTH_PARAMS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];
/// Header names that may not carry identity: hop-by-hop fields (RFC 9110 §7.6.1), credentials,
/// routing and framing fields, and the forwarding headers the proxy sets itself.
const RESERVED_HEADERS: [&str; 17] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "cookie",
    "host",
    "content-length",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

type Span = Range<usize>;
type Val<'i> = Spanned<DeValue<'i>>;

/// Parse and validate a configuration from text.
///
/// `file_label` names the file in [`ConfigErrors`]; `env` resolves `${NAME}` (production passes
/// `std::env::var`); `base_dir` resolves relative `*_file` paths.
pub fn from_str(
    text: &str,
    file_label: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base_dir: &Path,
) -> Result<Config, ConfigErrors> {
    let mut cx = Ctx {
        text,
        env,
        base_dir,
        errors: Vec::new(),
    };
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            cx.error("", e.span(), e.message().trim_end());
        }
        return Err(cx.into_errors(file_label));
    }
    let root = Tbl {
        path: String::new(),
        table: Some(doc.get_ref()),
        span: None,
        broken: false,
    };
    cx.check_keys(&root, &["server", "oidc", "session", "headers", "route"]);
    let (public_url, server) = server_section(&mut cx, &root);
    let oidc = oidc_section(&mut cx, &root);
    let session = session_section(&mut cx, &root, public_url.as_ref());
    let headers = headers_section(&mut cx, &root);
    let routes = routes_section(&mut cx, &root);
    match (server, oidc, session, headers, routes) {
        (Some(server), Some(oidc), Some(session), Some(headers), Some(routes))
            if cx.errors.is_empty() =>
        {
            Ok(Config {
                server,
                oidc,
                session,
                headers,
                routes,
            })
        }
        _ => {
            if cx.errors.is_empty() {
                // Unreachable by construction (every `None` above records an error); never
                // hand out a half-built configuration anyway.
                cx.error("", None, "invalid configuration");
            }
            Err(cx.into_errors(file_label))
        }
    }
}

/// Read and validate the configuration file at `path`; `${NAME}` comes from the process
/// environment and relative `*_file` paths are resolved against the file's directory. A read
/// failure is a [`ConfigErrors`] with one error whose key is "".
pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        file: label.clone(),
        errors: vec![ConfigError {
            key: String::new(),
            line: None,
            column: None,
            message: format!("cannot read the configuration file: {e}"),
        }],
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    from_str(&text, &label, &|name| std::env::var(name).ok(), base)
}

/// The short success summary `portcullis check` prints (no secrets): one fact group per line,
/// each line ending in `\n`.
pub fn check_summary(cfg: &Config) -> String {
    let mut lines = vec![
        format!(
            "listen {}, public_url {}",
            cfg.server.listen,
            cfg.server.public_url.origin()
        ),
        format!(
            "oidc issuer {}, client_id {}",
            cfg.oidc.issuer, cfg.oidc.client_id
        ),
        format!(
            "session store {}, cookie {}",
            match cfg.session.store {
                StoreKind::Memory => "memory",
                StoreKind::Redis => "redis",
            },
            cfg.session.cookie_name
        ),
    ];
    for r in &cfg.routes {
        lines.push(route_summary(r));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// One line describing a route (used by `check` and `explain`): label, host, path, auth,
/// upstream and the allow lists that are set.
pub fn route_summary(r: &RouteConfig) -> String {
    let host = match &r.host {
        None => "*".to_owned(),
        Some(HostPattern::Exact(h)) => h.clone(),
        Some(HostPattern::Wildcard(d)) => format!("*.{d}"),
    };
    let auth = match r.auth {
        AuthMode::Required => "required",
        AuthMode::Public => "public",
    };
    let up = &r.upstream;
    let scheme = if up.https { "https" } else { "http" };
    let mut line = format!(
        "{}: host {host}, path {}, auth {auth}, upstream {scheme}://{}{}",
        r.label(),
        r.path,
        up.authority,
        up.base_path
    );
    for (name, list) in [
        ("allow_emails", &r.allow_emails),
        ("allow_email_domains", &r.allow_email_domains),
        ("allow_groups", &r.allow_groups),
    ] {
        if !list.is_empty() {
            let _ = write!(line, ", {name} [{}]", list.join(", "));
        }
    }
    if r.allow_preflight {
        line.push_str(", allow_preflight");
    }
    line
}

// === walking the document ===

/// A table of the document with its key path and header span.
struct Tbl<'t, 'i> {
    /// "" for the root, `server`, `route[0]`, `headers.claims`.
    path: String,
    table: Option<&'t DeTable<'i>>,
    /// The header (`[server]`) or inline table; `None` for the root or an absent table.
    span: Option<Span>,
    /// Present but not a table (already reported): no "missing key" errors inside.
    broken: bool,
}

impl<'t, 'i> Tbl<'t, 'i> {
    fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_owned()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn get(&self, k: &str) -> Option<&'t Val<'i>> {
        self.table?.get(k)
    }

    /// Entries in file order (the map itself is sorted by key).
    fn entries(&self) -> Vec<(&'t Spanned<std::borrow::Cow<'i, str>>, &'t Val<'i>)> {
        let mut v: Vec<_> = self.table.map(|t| t.iter().collect()).unwrap_or_default();
        v.sort_by_key(|(k, _)| k.span().start);
        v
    }
}

/// One resolved secret value and where to blame it.
struct SecretItem {
    value: String,
    key: String,
    span: Span,
    /// Line inside a `_file` holding a list.
    file_line: Option<usize>,
}

impl SecretItem {
    fn message(&self, rule: &str) -> String {
        match self.file_line {
            Some(n) => format!("line {n} of the file: {rule}"),
            None => rule.to_owned(),
        }
    }
}

struct Ctx<'a> {
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    base_dir: &'a Path,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn error(&mut self, key: &str, span: Option<Span>, message: impl Into<String>) {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = line_col(self.text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        self.errors.push(ConfigError {
            key: key.to_owned(),
            line,
            column,
            message: message.into(),
        });
    }

    /// The collected errors in file order (unlocated ones last, in the order found).
    fn into_errors(mut self, file: &str) -> ConfigErrors {
        self.errors
            .sort_by_key(|e| (e.line.is_none(), e.line, e.column));
        ConfigErrors {
            file: file.to_owned(),
            errors: self.errors,
        }
    }

    fn type_error(&mut self, key: &str, v: &Val<'_>, expected: &str) {
        let found = v.get_ref().type_str();
        self.error(
            key,
            Some(v.span()),
            format!("expected {expected}, found {found}"),
        );
    }

    fn missing(&mut self, t: &Tbl<'_, '_>, k: &str, message: &str) {
        if !t.broken {
            self.error(&t.key(k), t.span.clone(), message);
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Every key of `t` not in `allowed` is an error at the key.
    fn check_keys(&mut self, t: &Tbl<'_, '_>, allowed: &[&str]) {
        for (k, _) in t.entries() {
            let name: &str = k.get_ref();
            if !allowed.contains(&name) {
                let message = match suggest(name, allowed) {
                    Some(s) => format!("unknown key (did you mean `{s}`?)"),
                    None => "unknown key".to_owned(),
                };
                self.error(&t.key(name), Some(k.span()), message);
            }
        }
    }

    fn sub_table<'t, 'i>(&mut self, t: &Tbl<'t, 'i>, k: &str) -> Tbl<'t, 'i> {
        let path = t.key(k);
        match t.get(k) {
            None => Tbl {
                path,
                table: None,
                span: None,
                broken: t.broken,
            },
            Some(v) => match v.get_ref() {
                DeValue::Table(table) => Tbl {
                    path,
                    table: Some(table),
                    span: Some(v.span()),
                    broken: false,
                },
                _ => {
                    self.type_error(&path, v, "a table");
                    Tbl {
                        path,
                        table: None,
                        span: None,
                        broken: true,
                    }
                }
            },
        }
    }

    /// `${NAME}` anywhere in `raw` is replaced from the environment.
    fn expand(&mut self, key: &str, raw: &str, span: &Span) -> Option<String> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        let mut ok = true;
        while let Some(pos) = rest.find("${") {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 2..];
            let Some(end) = after.find('}') else {
                self.error(
                    key,
                    Some(span.clone()),
                    "unterminated `${` (write `${NAME}`)",
                );
                return None;
            };
            let name = &after[..end];
            if !is_env_name(name) {
                self.error(
                    key,
                    Some(span.clone()),
                    "invalid environment variable name in `${...}` (letters, digits and `_`)",
                );
                ok = false;
            } else if let Some(value) = (self.env)(name) {
                out.push_str(&value);
            } else {
                self.error(
                    key,
                    Some(span.clone()),
                    format!("environment variable `{name}` is not set"),
                );
                ok = false;
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        ok.then_some(out)
    }

    fn str_value(&mut self, key: &str, v: &Val<'_>) -> Option<(String, Span)> {
        match v.get_ref() {
            DeValue::String(s) => {
                let span = v.span();
                self.expand(key, s, &span).map(|s| (s, span))
            }
            _ => {
                self.type_error(key, v, "a string");
                None
            }
        }
    }

    /// An optional string, validated by `f`; `None` when absent or invalid (then reported).
    fn parsed<T>(
        &mut self,
        t: &Tbl<'_, '_>,
        k: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<(T, Span)> {
        let v = t.get(k)?;
        let key = t.key(k);
        let (s, span) = self.str_value(&key, v)?;
        match f(&s) {
            Ok(x) => Some((x, span)),
            Err(m) => {
                self.error(&key, Some(span), m);
                None
            }
        }
    }

    /// Like [`Ctx::parsed`], and a missing key is an error at the table header.
    fn required<T>(
        &mut self,
        t: &Tbl<'_, '_>,
        k: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if t.get(k).is_none() {
            self.missing(t, k, "missing required key");
            return None;
        }
        self.parsed(t, k, f).map(|x| x.0)
    }

    fn boolean(&mut self, t: &Tbl<'_, '_>, k: &str) -> Option<(bool, Span)> {
        let v = t.get(k)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some((*b, v.span())),
            _ => {
                self.type_error(&t.key(k), v, "a boolean");
                None
            }
        }
    }

    fn integer(&mut self, t: &Tbl<'_, '_>, k: &str, range: RangeInclusive<u64>) -> Option<u64> {
        let v = t.get(k)?;
        let key = t.key(k);
        let DeValue::Integer(i) = v.get_ref() else {
            self.type_error(&key, v, "an integer");
            return None;
        };
        let n = i128::from_str_radix(i.as_str(), i.radix())
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .filter(|n| range.contains(n));
        if n.is_none() {
            let message = if *range.end() == u64::MAX {
                format!("must be at least {}", range.start())
            } else {
                format!("must be between {} and {}", range.start(), range.end())
            };
            self.error(&key, Some(v.span()), message);
        }
        n
    }

    /// A humantime duration string (`"90s"`, `"2m 30s"`).
    fn duration(&mut self, t: &Tbl<'_, '_>, k: &str, allow_zero: bool) -> Option<(Duration, Span)> {
        let v = t.get(k)?;
        let key = t.key(k);
        let DeValue::String(_) = v.get_ref() else {
            self.type_error(&key, v, "a duration string such as \"90s\"");
            return None;
        };
        let (s, span) = self.str_value(&key, v)?;
        match humantime::parse_duration(s.trim()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.error(&key, Some(span), "must be greater than zero");
                None
            }
            Ok(d) => Some((d, span)),
            Err(e) => {
                self.error(
                    &key,
                    Some(span),
                    format!("invalid duration ({e}); write e.g. \"90s\", \"15m\", \"12h\""),
                );
                None
            }
        }
    }

    /// An optional array of strings: (value, span, key path of the element).
    fn str_list(&mut self, t: &Tbl<'_, '_>, k: &str) -> Option<Vec<(String, Span, String)>> {
        let v = t.get(k)?;
        let key = t.key(k);
        let DeValue::Array(a) = v.get_ref() else {
            self.type_error(&key, v, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(a.len());
        let mut ok = true;
        for (i, e) in a.iter().enumerate() {
            let ek = format!("{key}[{i}]");
            match self.str_value(&ek, e) {
                Some((s, span)) => out.push((s, span, ek)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A list of strings each checked by `f` (errors at the element).
    fn checked_list<T>(
        &mut self,
        t: &Tbl<'_, '_>,
        k: &str,
        f: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (s, span, key) in self.str_list(t, k).unwrap_or_default() {
            match f(&s) {
                Ok(x) => out.push(x),
                Err(m) => self.error(&key, Some(span), m),
            }
        }
        out
    }

    /// A secret given as `name` or `name_file` (exactly one). `list`: `name` may be an array,
    /// and a file with several non-empty lines is a list. `None` when absent or invalid.
    fn secret(
        &mut self,
        t: &Tbl<'_, '_>,
        name: &str,
        list: bool,
        required: bool,
    ) -> Option<Vec<SecretItem>> {
        let file_name = format!("{name}_file");
        match (t.get(name), t.get(&file_name)) {
            (Some(_), Some(f)) => {
                self.error(
                    &t.key(&file_name),
                    Some(f.span()),
                    format!("set only one of `{name}` and `{file_name}`"),
                );
                None
            }
            (None, None) => {
                if required {
                    self.missing(t, name, &format!("missing required key (or `{file_name}`)"));
                }
                None
            }
            (Some(v), None) => {
                let key = t.key(name);
                let mut items = Vec::new();
                match v.get_ref() {
                    DeValue::Array(a) if list => {
                        if a.is_empty() {
                            self.error(&key, Some(v.span()), "must not be empty");
                            return None;
                        }
                        let mut ok = true;
                        for (i, e) in a.iter().enumerate() {
                            let ek = format!("{key}[{i}]");
                            match self.str_value(&ek, e) {
                                Some((value, span)) => items.push(SecretItem {
                                    value,
                                    key: ek,
                                    span,
                                    file_line: None,
                                }),
                                None => ok = false,
                            }
                        }
                        if !ok {
                            return None;
                        }
                    }
                    DeValue::String(_) => {
                        let (value, span) = self.str_value(&key, v)?;
                        items.push(SecretItem {
                            value,
                            key,
                            span,
                            file_line: None,
                        });
                    }
                    _ => {
                        let expected = if list {
                            "a string or an array of strings"
                        } else {
                            "a string"
                        };
                        self.type_error(&key, v, expected);
                        return None;
                    }
                }
                let mut ok = true;
                for item in &items {
                    if item.value.is_empty() {
                        self.error(&item.key, Some(item.span.clone()), "must not be empty");
                        ok = false;
                    }
                }
                ok.then_some(items)
            }
            (None, Some(f)) => {
                let key = t.key(&file_name);
                let (p, span) = self.str_value(&key, f)?;
                let path = self.resolve(&p);
                let content = match std::fs::read_to_string(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        self.error(
                            &key,
                            Some(span),
                            format!("cannot read `{}`: {e}", path.display()),
                        );
                        return None;
                    }
                };
                let content = content.trim_end_matches(['\n', '\r']);
                let items: Vec<SecretItem> = if list {
                    content
                        .lines()
                        .enumerate()
                        .map(|(i, l)| (i + 1, l.trim()))
                        .filter(|(_, l)| !l.is_empty())
                        .map(|(n, l)| SecretItem {
                            value: l.to_owned(),
                            key: key.clone(),
                            span: span.clone(),
                            file_line: Some(n),
                        })
                        .collect()
                } else if content.is_empty() {
                    Vec::new()
                } else {
                    vec![SecretItem {
                        value: content.to_owned(),
                        key: key.clone(),
                        span: span.clone(),
                        file_line: None,
                    }]
                };
                if items.is_empty() {
                    self.error(&key, Some(span), format!("`{}` is empty", path.display()));
                    return None;
                }
                Some(items)
            }
        }
    }
}

// === sections ===

fn server_section(
    cx: &mut Ctx<'_>,
    root: &Tbl<'_, '_>,
) -> (Option<PublicUrl>, Option<ServerConfig>) {
    let t = cx.sub_table(root, "server");
    cx.check_keys(
        &t,
        &[
            "listen",
            "public_url",
            "tls_cert",
            "tls_key",
            "admin_listen",
            "trusted_proxies",
            "shutdown_timeout",
            "request_timeout",
            "upstream_ca_file",
            "max_header_bytes",
            "max_headers",
            "header_read_timeout",
            "keepalive_timeout",
            "max_connections",
        ],
    );
    let listen = cx.required(&t, "listen", parse_socket_addr);
    let public_url = cx.required(&t, "public_url", parse_public_url);

    let cert = cx.parsed(&t, "tls_cert", |s| Ok(s.to_owned()));
    let key = cx.parsed(&t, "tls_key", |s| Ok(s.to_owned()));
    for (name, other) in [("tls_cert", "tls_key"), ("tls_key", "tls_cert")] {
        if let Some(v) = t.get(name) {
            if t.get(other).is_none() {
                cx.error(
                    &t.key(name),
                    Some(v.span()),
                    format!("`{name}` needs `{other}`: set both or neither"),
                );
            }
            cx.error(&t.key(name), Some(v.span()), NOT_YET);
        }
    }
    let tls = match (cert, key) {
        (Some((c, _)), Some((k, _))) => Some(TlsFiles {
            cert: cx.resolve(&c),
            key: cx.resolve(&k),
        }),
        _ => None,
    };

    let admin_listen = cx.parsed(&t, "admin_listen", parse_socket_addr);
    if let Some((_, span)) = &admin_listen {
        cx.error(&t.key("admin_listen"), Some(span.clone()), NOT_YET);
    }

    let trusted_proxies = cx.checked_list(&t, "trusted_proxies", |s| Cidr::from_str(s.trim()));

    let shutdown_timeout = cx.duration(&t, "shutdown_timeout", true);
    let request_timeout = cx.duration(&t, "request_timeout", false);
    let header_read_timeout = cx.duration(&t, "header_read_timeout", false);
    let keepalive_timeout = cx.duration(&t, "keepalive_timeout", false);

    let upstream_ca_file = cx.parsed(&t, "upstream_ca_file", |s| Ok(s.to_owned()));
    let upstream_ca_file = upstream_ca_file.and_then(|(p, span)| {
        let path = cx.resolve(&p);
        let problem = match std::fs::read(&path) {
            Err(e) => Some(format!("cannot read `{}`: {e}", path.display())),
            Ok(pem) if !contains(&pem, b"-----BEGIN CERTIFICATE-----") => {
                Some(format!("`{}` contains no PEM certificate", path.display()))
            }
            Ok(_) => None,
        };
        match problem {
            Some(m) => {
                cx.error(&t.key("upstream_ca_file"), Some(span), m);
                None
            }
            None => Some(path),
        }
    });

    let max_header_bytes = cx.integer(&t, "max_header_bytes", 1024..=u64::from(u32::MAX));
    let max_headers = cx.integer(&t, "max_headers", 1..=1000);
    let max_connections = cx.integer(&t, "max_connections", 1..=u64::from(u32::MAX));

    let server = match (listen, public_url.clone()) {
        (Some(listen), Some(public_url)) => Some(ServerConfig {
            listen,
            public_url,
            tls,
            admin_listen: admin_listen.map(|x| x.0),
            trusted_proxies,
            shutdown_timeout: shutdown_timeout.map_or(Duration::from_secs(30), |x| x.0),
            request_timeout: request_timeout.map_or(Duration::from_secs(60), |x| x.0),
            upstream_ca_file,
            max_header_bytes: to_usize(max_header_bytes, 16384),
            max_headers: to_usize(max_headers, 100),
            header_read_timeout: header_read_timeout.map_or(Duration::from_secs(10), |x| x.0),
            keepalive_timeout: keepalive_timeout.map_or(Duration::from_secs(75), |x| x.0),
            max_connections: to_usize(max_connections, 10000),
        }),
        _ => None,
    };
    (public_url, server)
}

fn oidc_section(cx: &mut Ctx<'_>, root: &Tbl<'_, '_>) -> Option<OidcConfig> {
    let t = cx.sub_table(root, "oidc");
    cx.check_keys(
        &t,
        &[
            "issuer",
            "client_id",
            "client_secret",
            "client_secret_file",
            "scopes",
            "callback_path",
            "groups_claim",
            "extra_auth_params",
            "bearer_audiences",
        ],
    );
    let issuer = cx.required(&t, "issuer", check_issuer);
    let client_id = cx.required(&t, "client_id", non_empty);
    let client_secret = cx
        .secret(&t, "client_secret", false, true)
        .and_then(|mut v| v.pop())
        .map(|item| Secret::new(item.value));

    let scopes = match cx.str_list(&t, "scopes") {
        None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        Some(list) => {
            let mut scopes = Vec::new();
            for (s, span, key) in list {
                if s.is_empty() || !s.bytes().all(is_scope_char) {
                    cx.error(
                        &key,
                        Some(span),
                        "a scope must be non-empty, without spaces or `\"` `\\`",
                    );
                } else {
                    scopes.push(s);
                }
            }
            if !scopes.iter().any(|s| s == "openid")
                && let Some(v) = t.get("scopes")
            {
                cx.error(&t.key("scopes"), Some(v.span()), "must contain \"openid\"");
            }
            scopes
        }
    };
    let callback_path = cx
        .parsed(&t, "callback_path", check_callback_path)
        .map_or_else(|| DEFAULT_CALLBACK_PATH.to_owned(), |x| x.0);
    let groups_claim = cx
        .parsed(&t, "groups_claim", non_empty)
        .map_or_else(|| "groups".to_owned(), |x| x.0);

    let params = cx.sub_table(&t, "extra_auth_params");
    let mut extra_auth_params = Vec::new();
    for (k, v) in params.entries() {
        let name: &str = k.get_ref();
        let key = params.key(name);
        let value = cx.str_value(&key, v);
        if name.is_empty() {
            cx.error(&key, Some(k.span()), "parameter name must not be empty");
        } else if OWNED_AUTH_PARAMS
            .iter()
            .any(|p| p.eq_ignore_ascii_case(name))
        {
            cx.error(
                &key,
                Some(k.span()),
                format!("`{name}` is set by portcullis itself and cannot be overridden"),
            );
        } else if let Some((value, _)) = value {
            extra_auth_params.push((name.to_owned(), value));
        }
    }

    // Each audience is compared exactly with the bearer token's `aud` entries.
    let bearer_audiences = cx.checked_list(&t, "bearer_audiences", non_empty);

    Some(OidcConfig {
        issuer: issuer?,
        client_id: client_id?,
        client_secret: client_secret?,
        scopes,
        callback_path,
        groups_claim,
        extra_auth_params,
        bearer_audiences,
    })
}

fn session_section(
    cx: &mut Ctx<'_>,
    root: &Tbl<'_, '_>,
    public_url: Option<&PublicUrl>,
) -> Option<SessionConfig> {
    let t = cx.sub_table(root, "session");
    cx.check_keys(
        &t,
        &[
            "cookie_name",
            "cookie_secret",
            "cookie_secret_file",
            "cookie_domain",
            "same_site",
            "lifetime",
            "idle_timeout",
            "refresh",
            "store",
            "redis_url",
            "redis_url_file",
            "max_sessions",
        ],
    );
    let https = public_url.map(|u| u.https);

    let cookie_secrets = cx
        .secret(&t, "cookie_secret", true, true)
        .and_then(|items| {
            let mut out = Vec::new();
            for item in &items {
                match decode_base64(item.value.trim()) {
                    Some(bytes) if bytes.len() >= 32 => out.push(CookieSecret(bytes)),
                    _ => cx.error(
                        &item.key,
                        Some(item.span.clone()),
                        item.message(COOKIE_SECRET_RULE),
                    ),
                }
            }
            (out.len() == items.len()).then_some(out)
        });

    let cookie_domain = cx.parsed(&t, "cookie_domain", parse_cookie_domain);
    if let (Some((domain, span)), Some(url)) = (&cookie_domain, public_url)
        && url.host != *domain
        && !url.host.ends_with(&format!(".{domain}"))
    {
        cx.error(
            &t.key("cookie_domain"),
            Some(span.clone()),
            format!(
                "public_url host `{}` is not inside cookie_domain `{domain}`",
                url.host
            ),
        );
    }
    let domain_set = t.get("cookie_domain").is_some();

    let cookie_name = match cx.parsed(&t, "cookie_name", check_cookie_name) {
        Some((name, span)) => {
            let key = t.key("cookie_name");
            if starts_with_ignore_case(&name, "__Host-") {
                if domain_set {
                    cx.error(
                        &key,
                        Some(span.clone()),
                        "a `__Host-` cookie cannot have a cookie_domain (RFC 6265bis §4.1.3.2)",
                    );
                }
                if https == Some(false) {
                    cx.error(
                        &key,
                        Some(span.clone()),
                        "a `__Host-` cookie requires an https public_url",
                    );
                }
            } else if starts_with_ignore_case(&name, "__Secure-") && https == Some(false) {
                cx.error(
                    &key,
                    Some(span.clone()),
                    "a `__Secure-` cookie requires an https public_url",
                );
            }
            Some(name)
        }
        None if t.get("cookie_name").is_some() => None,
        None if https == Some(true) && !domain_set => Some("__Host-portcullis".to_owned()),
        None => Some("_portcullis".to_owned()),
    };

    let same_site = cx.parsed(&t, "same_site", |s| match s {
        "lax" => Ok(SameSite::Lax),
        "strict" => Ok(SameSite::Strict),
        "none" => Ok(SameSite::None),
        _ => Err("must be \"lax\", \"strict\" or \"none\"".to_owned()),
    });
    if let Some((SameSite::None, span)) = &same_site
        && https == Some(false)
    {
        cx.error(
            &t.key("same_site"),
            Some(span.clone()),
            "\"none\" requires an https public_url (browsers drop SameSite=None cookies without Secure)",
        );
    }

    let lifetime = cx.duration(&t, "lifetime", false);
    let idle = cx.duration(&t, "idle_timeout", false);
    let lifetime_bad = t.get("lifetime").is_some() && lifetime.is_none();
    let idle_bad = t.get("idle_timeout").is_some() && idle.is_none();
    let lifetime_v = lifetime
        .as_ref()
        .map_or(Duration::from_secs(12 * 3600), |x| x.0);
    let idle_v = idle.as_ref().map_or(Duration::from_secs(3600), |x| x.0);
    if !lifetime_bad && !idle_bad && idle_v > lifetime_v {
        let (key, span) = match (&idle, &lifetime) {
            (Some((_, s)), _) => ("idle_timeout", Some(s.clone())),
            (None, Some((_, s))) => ("lifetime", Some(s.clone())),
            (None, None) => ("idle_timeout", t.span.clone()),
        };
        cx.error(
            &t.key(key),
            span,
            "idle_timeout must not be longer than lifetime",
        );
    }

    let refresh = cx.boolean(&t, "refresh");
    if let Some((true, span)) = &refresh {
        cx.error(&t.key("refresh"), Some(span.clone()), NOT_YET);
    }

    let store = cx.parsed(&t, "store", |s| match s {
        "memory" => Ok(StoreKind::Memory),
        "redis" => Ok(StoreKind::Redis),
        _ => Err("must be \"memory\" or \"redis\"".to_owned()),
    });
    if let Some((StoreKind::Redis, span)) = &store {
        cx.error(&t.key("store"), Some(span.clone()), NOT_YET);
    }

    let redis_url = cx
        .secret(&t, "redis_url", false, false)
        .and_then(|mut v| v.pop())
        .and_then(|item| match check_redis_url(&item.value) {
            Ok(()) => {
                cx.error(&item.key, Some(item.span.clone()), NOT_YET);
                Some(Secret::new(item.value))
            }
            Err(m) => {
                cx.error(&item.key, Some(item.span.clone()), item.message(m));
                None
            }
        });
    let redis_given = t.get("redis_url").is_some() || t.get("redis_url_file").is_some();
    if matches!(store, Some((StoreKind::Redis, _))) && !redis_given {
        cx.missing(
            &t,
            "redis_url",
            "store = \"redis\" requires `redis_url` (or `redis_url_file`)",
        );
    }

    let max_sessions = cx.integer(&t, "max_sessions", 1..=u64::MAX);

    Some(SessionConfig {
        cookie_name: cookie_name?,
        cookie_secrets: cookie_secrets?,
        cookie_domain: cookie_domain.map(|x| x.0),
        same_site: same_site.map_or(SameSite::Lax, |x| x.0),
        lifetime: lifetime_v,
        idle_timeout: idle_v,
        refresh: refresh.is_some_and(|x| x.0),
        store: store.map_or(StoreKind::Memory, |x| x.0),
        redis_url,
        max_sessions: max_sessions.unwrap_or(1_000_000),
    })
}

/// One identity header in use, for the duplicate check.
struct UsedHeader {
    name: HeaderName,
    key: String,
    /// `None` for a default.
    span: Option<Span>,
}

fn headers_section(cx: &mut Ctx<'_>, root: &Tbl<'_, '_>) -> Option<HeadersConfig> {
    let t = cx.sub_table(root, "headers");
    cx.check_keys(
        &t,
        &[
            "user",
            "email",
            "preferred_username",
            "groups",
            "access_token",
            "authorization_bearer_id_token",
            "claims",
        ],
    );
    let mut used = Vec::new();
    let mut field = |cx: &mut Ctx<'_>, k: &str, default: Option<&'static str>| {
        let key = t.key(k);
        match cx.parsed(&t, k, |s| {
            if s.is_empty() {
                Ok(None)
            } else {
                parse_identity_header(s).map(Some)
            }
        }) {
            Some((name, span)) => {
                if let Some(n) = &name {
                    used.push(UsedHeader {
                        name: n.clone(),
                        key,
                        span: Some(span),
                    });
                }
                name
            }
            None if t.get(k).is_some() => None,
            None => {
                let name = default.map(HeaderName::from_static);
                if let Some(n) = &name {
                    used.push(UsedHeader {
                        name: n.clone(),
                        key: format!("{key} (default)"),
                        span: None,
                    });
                }
                name
            }
        }
    };
    let user = field(cx, "user", Some("x-auth-request-user"));
    let email = field(cx, "email", Some("x-auth-request-email"));
    let preferred_username = field(
        cx,
        "preferred_username",
        Some("x-auth-request-preferred-username"),
    );
    let groups = field(cx, "groups", Some("x-auth-request-groups"));
    let access_token = field(cx, "access_token", None);
    let authorization_bearer_id_token = cx
        .boolean(&t, "authorization_bearer_id_token")
        .is_some_and(|x| x.0);

    let claims_t = cx.sub_table(&t, "claims");
    let mut claims = Vec::new();
    for (k, v) in claims_t.entries() {
        let header: &str = k.get_ref();
        let key = claims_t.key(header);
        let claim = cx.str_value(&key, v);
        if let Some((c, span)) = &claim
            && c.is_empty()
        {
            cx.error(&key, Some(span.clone()), "claim name must not be empty");
            continue;
        }
        match parse_identity_header(header) {
            Ok(name) => {
                used.push(UsedHeader {
                    name: name.clone(),
                    key: key.clone(),
                    span: Some(k.span()),
                });
                if let Some((claim, _)) = claim {
                    claims.push((name, claim));
                }
            }
            Err(m) => cx.error(&key, Some(k.span()), m),
        }
    }

    for j in 0..used.len() {
        for i in 0..j {
            if used[i].name != used[j].name {
                continue;
            }
            let (here, other) = if used[j].span.is_some() {
                (&used[j], &used[i])
            } else {
                (&used[i], &used[j])
            };
            cx.error(
                &here.key,
                here.span.clone(),
                format!("header `{}` is already used by `{}`", here.name, other.key),
            );
        }
    }

    Some(HeadersConfig {
        user,
        email,
        preferred_username,
        groups,
        access_token,
        authorization_bearer_id_token,
        claims,
    })
}

fn routes_section(cx: &mut Ctx<'_>, root: &Tbl<'_, '_>) -> Option<Vec<RouteConfig>> {
    const REQUIRED: &str = "at least one [[route]] is required";
    let Some(v) = root.get("route") else {
        cx.error("route", None, REQUIRED);
        return None;
    };
    let DeValue::Array(items) = v.get_ref() else {
        cx.type_error("route", v, "an array of tables ([[route]])");
        return None;
    };
    if items.is_empty() {
        cx.error("route", Some(v.span()), REQUIRED);
        return None;
    }
    let mut routes = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        let path = format!("route[{index}]");
        let DeValue::Table(table) = item.get_ref() else {
            cx.type_error(&path, item, "a table");
            ok = false;
            continue;
        };
        let t = Tbl {
            path,
            table: Some(table),
            span: Some(item.span()),
            broken: false,
        };
        match route(cx, &t, index) {
            Some(r) => routes.push(r),
            None => ok = false,
        }
    }
    ok.then_some(routes)
}

fn route(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>, index: usize) -> Option<RouteConfig> {
    cx.check_keys(
        t,
        &[
            "host",
            "path",
            "upstream",
            "auth",
            "allow_emails",
            "allow_email_domains",
            "allow_groups",
            "preserve_host",
            "allow_preflight",
        ],
    );
    let host = cx.parsed(t, "host", parse_host_pattern).map(|x| x.0);
    let path = cx.required(t, "path", check_route_path);
    let upstream = cx.required(t, "upstream", parse_upstream);
    let auth = cx
        .parsed(t, "auth", |s| match s {
            "required" => Ok(AuthMode::Required),
            "public" => Ok(AuthMode::Public),
            _ => Err("must be \"required\" or \"public\"".to_owned()),
        })
        .map_or(AuthMode::Required, |x| x.0);
    let allow_emails = cx.checked_list(t, "allow_emails", check_email);
    let allow_email_domains = cx.checked_list(t, "allow_email_domains", check_email_domain);
    let allow_groups = cx.checked_list(t, "allow_groups", non_empty);
    if auth == AuthMode::Public {
        for k in ["allow_emails", "allow_email_domains", "allow_groups"] {
            if let Some(v) = t.get(k)
                && matches!(v.get_ref(), DeValue::Array(a) if !a.is_empty())
            {
                cx.error(
                    &t.key(k),
                    Some(v.span()),
                    "allow lists have no effect on a route with auth = \"public\"",
                );
            }
        }
    }
    let preserve_host = cx.boolean(t, "preserve_host").is_some_and(|x| x.0);
    let allow_preflight = cx.boolean(t, "allow_preflight").is_some_and(|x| x.0);
    Some(RouteConfig {
        index,
        host,
        path: path?,
        upstream: upstream?,
        auth,
        allow_emails,
        allow_email_domains,
        allow_groups,
        preserve_host,
        allow_preflight,
    })
}

// === value rules (pure) ===

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| "must be an IP address and port, such as \"0.0.0.0:4180\"".to_owned())
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// Scheme check shared by URL-valued keys: `Ok(true)` for https.
fn http_or_https(u: &Url) -> Result<bool, String> {
    match u.scheme() {
        "http" => Ok(false),
        "https" => Ok(true),
        _ => Err("must be an http or https URL".to_owned()),
    }
}

/// No userinfo, query or fragment.
fn plain_url(u: &Url) -> Result<(), String> {
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not contain user information (`user@`)".to_owned());
    }
    if u.query().is_some() {
        return Err("must not contain a query (`?`)".to_owned());
    }
    if u.fragment().is_some() {
        return Err("must not contain a fragment (`#`)".to_owned());
    }
    Ok(())
}

fn parse_url(s: &str) -> Result<Url, String> {
    Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))
}

/// `server.public_url`: an origin.
fn parse_public_url(s: &str) -> Result<PublicUrl, String> {
    let u = parse_url(s)?;
    let https = http_or_https(&u)?;
    plain_url(&u)?;
    if !matches!(u.path(), "" | "/") {
        return Err(
            "must be an origin without a path, such as \"https://app.example.com\"".to_owned(),
        );
    }
    let host = u.host_str().unwrap_or_default();
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err("must have a host".to_owned());
    }
    Ok(PublicUrl {
        https,
        host: host.to_ascii_lowercase(),
        port: u.port(),
    })
}

/// `oidc.issuer`: https, or http on a loopback host; kept exactly as written.
fn check_issuer(s: &str) -> Result<String, String> {
    let u = parse_url(s)?;
    let https = http_or_https(&u)?;
    plain_url(&u)?;
    let loopback = match u.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        None => return Err("must have a host".to_owned()),
    };
    if !https && !loopback {
        return Err("issuer must be https".to_owned());
    }
    Ok(s.to_owned())
}

/// `oidc.callback_path`: absolute, visible ASCII, no `?`, `#` or `\`, and already in the form
/// [`crate::http::path::normalize`] gives it: requests are routed on the normalised path, so a
/// callback path such as `/auth/./cb` or `/auth/%63b` would never be matched (and would not
/// be reserved against `rd`).
fn check_callback_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err("must start with `/`".to_owned());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'\\'))
    {
        return Err("must be visible ASCII without spaces, `?`, `#` or `\\`".to_owned());
    }
    match crate::http::path::normalize(s) {
        Ok(n) if n == s => Ok(s.to_owned()),
        Ok(n) => Err(format!(
            "must be a normalised path (requests are routed on it): write \"{n}\""
        )),
        Err(e) => Err(format!("is a path the proxy refuses: {e}")),
    }
}

/// RFC 6749 §3.3: `NQCHAR = %x21 / %x23-5B / %x5D-7E`.
fn is_scope_char(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// RFC 6265 §4.1.1 `cookie-name = token` (RFC 9110 §5.6.2 `tchar`).
fn check_cookie_name(s: &str) -> Result<String, String> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if s.is_empty() || !s.bytes().all(tchar) {
        return Err("must be a cookie token: letters, digits and !#$%&'*+-.^_`|~".to_owned());
    }
    Ok(s.to_owned())
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// `session.cookie_domain`: a DNS name (a leading dot is ignored, RFC 6265 §5.2.3), lower-cased.
fn parse_cookie_domain(s: &str) -> Result<String, String> {
    let d = s.strip_prefix('.').unwrap_or(s).to_ascii_lowercase();
    if d.parse::<IpAddr>().is_ok() {
        return Err("must be a domain name, not an IP address".to_owned());
    }
    check_dns_name(&d)?;
    Ok(d)
}

/// A lower-case ASCII DNS name without trailing dot.
fn check_dns_name(d: &str) -> Result<(), String> {
    if d.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if !d.is_ascii() {
        return Err(
            "must be ASCII; write an internationalised name in its punycode (xn--) form".to_owned(),
        );
    }
    if d.len() > 253
        || d.split('.').any(|l| {
            l.is_empty()
                || l.len() > 63
                || !l
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
    {
        return Err("must be a host name such as \"app.example.com\" (no port)".to_owned());
    }
    Ok(())
}

/// `route.host`: `app.example.com`, `[::1]`, or `*.example.com`.
fn parse_host_pattern(s: &str) -> Result<HostPattern, String> {
    let lower = s.to_ascii_lowercase();
    if lower == "*" {
        return Err("`*` alone is not a host pattern; leave host out to match any host".to_owned());
    }
    if let Some(domain) = lower.strip_prefix("*.") {
        if domain.contains('*') {
            return Err(
                "only the whole first label may be `*`, as in \"*.example.com\"".to_owned(),
            );
        }
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        check_dns_name(domain)?;
        return Ok(HostPattern::Wildcard(domain.to_owned()));
    }
    if lower.contains('*') {
        return Err("only the whole first label may be `*`, as in \"*.example.com\"".to_owned());
    }
    if let Some(inner) = lower.strip_prefix('[') {
        let ip = inner
            .strip_suffix(']')
            .and_then(|a| a.parse::<Ipv6Addr>().ok())
            .ok_or_else(|| {
                "must be a host without port; an IPv6 address as \"[::1]\"".to_owned()
            })?;
        return Ok(HostPattern::Exact(format!("[{ip}]")));
    }
    if lower.parse::<Ipv6Addr>().is_ok() {
        return Err("write an IPv6 address in brackets, as \"[::1]\"".to_owned());
    }
    if lower.contains(':') {
        return Err("must be a host without port".to_owned());
    }
    let host = lower.strip_suffix('.').unwrap_or(&lower);
    check_dns_name(host)?;
    Ok(HostPattern::Exact(host.to_owned()))
}

/// `route.path`: an absolute, already-normal path prefix, kept as written.
fn check_route_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err("must start with `/`".to_owned());
    }
    if let Some(c) = s
        .chars()
        .find(|c| matches!(c, '%' | '\\' | ';' | '?' | '#'))
    {
        return Err(format!(
            "must not contain `{c}` (routes match the decoded, normalised path)"
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII without spaces".to_owned());
    }
    if s.contains("//") {
        return Err("must not contain repeated slashes".to_owned());
    }
    if s.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("must not contain `.` or `..` segments".to_owned());
    }
    Ok(s.to_owned())
}

/// `route.upstream`: `http(s)://host[:port][/base]`.
fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let u = parse_url(s)?;
    let https = http_or_https(&u)?;
    plain_url(&u)?;
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "must have a host".to_owned())?
        .to_owned();
    let port = u
        .port_or_known_default()
        .ok_or_else(|| "must have a port".to_owned())?;
    let authority = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    Ok(Upstream {
        https,
        host,
        port,
        base_path: u.path().trim_end_matches('/').to_owned(),
        authority,
    })
}

/// `allow_emails`: exactly one `@`, both sides non-empty; lower-cased.
fn check_email(s: &str) -> Result<String, String> {
    let ok = s.matches('@').count() == 1
        && !s.starts_with('@')
        && !s.ends_with('@')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err("must be an email address with exactly one `@`".to_owned());
    }
    Ok(s.to_lowercase())
}

/// `allow_email_domains`: a domain (no `@`); lower-cased.
fn check_email_domain(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && !s.contains('@')
        && !s.starts_with('.')
        && !s.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err("must be a domain such as \"example.com\" (no `@`)".to_owned());
    }
    Ok(s.to_lowercase())
}

/// An identity header name: a valid field name that is not reserved.
fn parse_identity_header(s: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| "not a valid HTTP header name".to_owned())?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "`{name}` is a reserved header and cannot carry identity"
        ));
    }
    Ok(name)
}

/// A redis URL; the message never contains the (secret) value.
fn check_redis_url(s: &str) -> Result<(), &'static str> {
    match Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss" | "redis+unix" | "unix") => Ok(()),
        _ => Err("must be a redis:// or rediss:// URL"),
    }
}

/// Base64, standard or URL-safe alphabet, padding optional.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);
    STANDARD.decode(s).or_else(|_| URL_SAFE.decode(s)).ok()
}

fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn to_usize(v: Option<u64>, default: usize) -> usize {
    v.and_then(|v| usize::try_from(v).ok()).unwrap_or(default)
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The allowed key closest to a misspelt one (edit distance <= 2).
fn suggest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(name, a), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 bytes (0..=31), standard base64 with padding.
    const SECRET_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    const BASE: &str = r#"[server]
listen = "127.0.0.1:4180"
public_url = "https://app.example.com"

[oidc]
issuer = "https://idp.example.com/realms/main"
client_id = "portcullis"
client_secret = "s3cret-value"

[session]
cookie_secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

[headers]

[[route]]
path = "/"
upstream = "http://127.0.0.1:8080"
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORTCULLIS_CLIENT_SECRET" => Some("from-env".to_owned()),
            "PORTCULLIS_COOKIE_SECRET" => Some(SECRET_B64.to_owned()),
            "UPSTREAM_HOST" => Some("10.1.2.3".to_owned()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        from_str(text, "test.toml", &env, &std::env::temp_dir())
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match load(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e.errors,
        }
    }

    fn ok(text: &str) -> Config {
        match load(text) {
            Ok(c) => c,
            Err(e) => panic!("unexpected errors:\n{e}\nfor:\n{text}"),
        }
    }

    /// 1-based line:column of the first occurrence of `needle` (ASCII test texts).
    fn pos(text: &str, needle: &str) -> (usize, usize) {
        text.lines()
            .enumerate()
            .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
            .unwrap_or_else(|| panic!("`{needle}` not in text"))
    }

    /// BASE with `line` inserted right after the line `after`.
    fn add(after: &str, line: &str) -> String {
        let mut out = String::new();
        let mut done = false;
        for l in BASE.lines() {
            out.push_str(l);
            out.push('\n');
            if !done && l == after {
                out.push_str(line);
                out.push('\n');
                done = true;
            }
        }
        assert!(done, "`{after}` not in BASE");
        out
    }

    /// BASE with one exact substring replaced.
    fn replace(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "`{from}` not in BASE");
        BASE.replacen(from, to, 1)
    }

    fn assert_one(text: &str, key: &str, at: (usize, usize), message: &str) {
        let errs = errors(text);
        assert_eq!(
            errs.len(),
            1,
            "expected one error, got {errs:#?}\nfor:\n{text}"
        );
        let e = &errs[0];
        assert_eq!(e.key, key, "{e:?}");
        assert_eq!((e.line, e.column), (Some(at.0), Some(at.1)), "{e:?}");
        assert!(
            e.message.contains(message),
            "message `{}` lacks `{message}`",
            e.message
        );
    }

    #[test]
    fn base_is_valid_and_defaults_are_applied() {
        let c = ok(BASE);
        let s = &c.server;
        assert_eq!(s.listen, "127.0.0.1:4180".parse::<SocketAddr>().unwrap());
        assert_eq!(
            s.public_url,
            PublicUrl {
                https: true,
                host: "app.example.com".into(),
                port: None
            }
        );
        assert!(s.tls.is_none() && s.admin_listen.is_none() && s.upstream_ca_file.is_none());
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(s.request_timeout, Duration::from_secs(60));
        assert_eq!(s.max_header_bytes, 16384);
        assert_eq!(s.max_headers, 100);
        assert_eq!(s.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.keepalive_timeout, Duration::from_secs(75));
        assert_eq!(s.max_connections, 10000);

        let o = &c.oidc;
        assert_eq!(o.issuer, "https://idp.example.com/realms/main");
        assert_eq!(o.client_id, "portcullis");
        assert_eq!(o.client_secret.expose(), "s3cret-value");
        assert_eq!(o.scopes, ["openid", "email", "profile"]);
        assert_eq!(o.callback_path, "/oauth2/callback");
        assert_eq!(o.groups_claim, "groups");
        assert!(o.extra_auth_params.is_empty() && o.bearer_audiences.is_empty());

        let ss = &c.session;
        assert_eq!(ss.cookie_name, "__Host-portcullis");
        assert_eq!(ss.cookie_secrets, [CookieSecret((0u8..32).collect())]);
        assert_eq!(ss.cookie_domain, None);
        assert_eq!(ss.same_site, SameSite::Lax);
        assert_eq!(ss.lifetime, Duration::from_secs(12 * 3600));
        assert_eq!(ss.idle_timeout, Duration::from_secs(3600));
        assert!(!ss.refresh);
        assert_eq!(ss.store, StoreKind::Memory);
        assert!(ss.redis_url.is_none());
        assert_eq!(ss.max_sessions, 1_000_000);

        let h = &c.headers;
        assert_eq!(h.user.as_ref().unwrap(), "x-auth-request-user");
        assert_eq!(h.email.as_ref().unwrap(), "x-auth-request-email");
        assert_eq!(
            h.preferred_username.as_ref().unwrap(),
            "x-auth-request-preferred-username"
        );
        assert_eq!(h.groups.as_ref().unwrap(), "x-auth-request-groups");
        assert!(h.access_token.is_none() && !h.authorization_bearer_id_token);
        assert!(h.claims.is_empty());

        assert_eq!(c.routes.len(), 1);
        let r = &c.routes[0];
        assert_eq!((r.index, r.label()), (0, "route0".to_owned()));
        assert_eq!((r.host.clone(), r.path.as_str()), (None, "/"));
        assert_eq!(r.auth, AuthMode::Required);
        assert!(r.allow_emails.is_empty() && r.allow_email_domains.is_empty());
        assert!(r.allow_groups.is_empty() && !r.preserve_host && !r.allow_preflight);
        let u = &r.upstream;
        assert_eq!(
            (
                u.https,
                u.host.as_str(),
                u.port,
                u.base_path.as_str(),
                u.authority.as_str()
            ),
            (false, "127.0.0.1", 8080, "", "127.0.0.1:8080")
        );
    }

    #[test]
    fn explicit_values_are_read() {
        let text = r#"[server]
listen = "[::1]:8443"
public_url = "http://App.Example.COM.:8080/"
trusted_proxies = ["10.0.0.0/8", "::1"]
shutdown_timeout = "0s"
request_timeout = "2m 30s"
max_header_bytes = 1024
max_headers = 1000
header_read_timeout = "5s"
keepalive_timeout = "1m"
max_connections = 1

[oidc]
issuer = "http://127.0.0.1:9000/"
client_id = "c"
client_secret = "${PORTCULLIS_CLIENT_SECRET}"
scopes = ["openid", "offline_access"]
callback_path = "/auth/cb"
groups_claim = "roles"
extra_auth_params = { prompt = "login", acr_values = "mfa" }
bearer_audiences = ["api://portcullis", "c"]

[session]
cookie_name = "sid"
cookie_secret = ["${PORTCULLIS_COOKIE_SECRET}", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj"]
cookie_domain = ".Example.COM"
same_site = "strict"
lifetime = "8h"
idle_timeout = "8h"
refresh = false
store = "memory"
max_sessions = 5

[headers]
user = "X-User"
email = ""
access_token = "X-Token"
authorization_bearer_id_token = true

[headers.claims]
"X-Zeta" = "zeta"
"X-Alpha" = "alpha"

[[route]]
host = "*.Example.com"
path = "/api/"
upstream = "https://${UPSTREAM_HOST}:443/base/"
allow_emails = ["Alice@Example.com"]
allow_email_domains = ["Example.org"]
allow_groups = ["Admins"]
preserve_host = true
allow_preflight = true

[[route]]
host = "App.Example.com."
path = "/pub"
upstream = "http://[::1]:9000"
auth = "public"
"#;
        let c = ok(text);
        assert_eq!(c.server.listen, "[::1]:8443".parse::<SocketAddr>().unwrap());
        assert_eq!(c.server.public_url.origin(), "http://app.example.com:8080");
        assert_eq!(
            c.server.trusted_proxies,
            [
                Cidr::from_str("10.0.0.0/8").unwrap(),
                Cidr::from_str("::1/128").unwrap()
            ]
        );
        assert_eq!(c.server.shutdown_timeout, Duration::ZERO);
        assert_eq!(c.server.request_timeout, Duration::from_secs(150));
        assert_eq!(
            (c.server.max_header_bytes, c.server.max_headers),
            (1024, 1000)
        );
        assert_eq!(c.server.header_read_timeout, Duration::from_secs(5));
        assert_eq!(c.server.keepalive_timeout, Duration::from_secs(60));
        assert_eq!(c.server.max_connections, 1);
        assert_eq!(c.oidc.issuer, "http://127.0.0.1:9000/");
        assert_eq!(c.oidc.client_secret.expose(), "from-env");
        assert_eq!(c.oidc.scopes, ["openid", "offline_access"]);
        assert_eq!(c.oidc.callback_path, "/auth/cb");
        assert_eq!(c.oidc.groups_claim, "roles");
        assert_eq!(c.oidc.bearer_audiences, ["api://portcullis", "c"]);
        assert_eq!(
            c.oidc.extra_auth_params,
            [
                ("prompt".to_owned(), "login".to_owned()),
                ("acr_values".to_owned(), "mfa".to_owned())
            ]
        );
        let s = &c.session;
        assert_eq!(s.cookie_name, "sid");
        assert_eq!(s.cookie_secrets.len(), 2);
        assert_eq!(s.cookie_secrets[1].0.len(), 36);
        assert_eq!(s.cookie_domain.as_deref(), Some("example.com"));
        assert_eq!(s.same_site, SameSite::Strict);
        assert_eq!(
            (s.lifetime, s.idle_timeout),
            (Duration::from_secs(8 * 3600), Duration::from_secs(8 * 3600))
        );
        assert_eq!(s.max_sessions, 5);
        let h = &c.headers;
        assert_eq!(h.user.as_ref().unwrap(), "x-user");
        assert!(h.email.is_none());
        assert_eq!(h.access_token.as_ref().unwrap(), "x-token");
        assert!(h.authorization_bearer_id_token);
        // file order, not key order
        let claims: Vec<_> = h
            .claims
            .iter()
            .map(|(n, c)| (n.as_str(), c.as_str()))
            .collect();
        assert_eq!(claims, [("x-zeta", "zeta"), ("x-alpha", "alpha")]);

        let r0 = &c.routes[0];
        assert_eq!(r0.host, Some(HostPattern::Wildcard("example.com".into())));
        assert_eq!(r0.path, "/api/");
        assert_eq!(
            (
                r0.upstream.https,
                r0.upstream.host.as_str(),
                r0.upstream.port
            ),
            (true, "10.1.2.3", 443)
        );
        assert_eq!(r0.upstream.base_path, "/base");
        assert_eq!(r0.upstream.authority, "10.1.2.3");
        assert_eq!(r0.allow_emails, ["alice@example.com"]);
        assert_eq!(r0.allow_email_domains, ["example.org"]);
        assert_eq!(r0.allow_groups, ["Admins"]);
        assert!(r0.preserve_host && r0.allow_preflight);
        let r1 = &c.routes[1];
        assert_eq!(r1.index, 1);
        assert_eq!(r1.host, Some(HostPattern::Exact("app.example.com".into())));
        assert_eq!(r1.auth, AuthMode::Public);
        assert_eq!(
            (r1.upstream.host.as_str(), r1.upstream.authority.as_str()),
            ("[::1]", "[::1]:9000")
        );
    }

    #[test]
    fn cookie_name_defaults_follow_public_url_and_domain() {
        let http = replace("https://app.example.com", "http://app.example.com");
        assert_eq!(ok(&http).session.cookie_name, "_portcullis");
        let domain = add("[session]", "cookie_domain = \"example.com\"");
        assert_eq!(ok(&domain).session.cookie_name, "_portcullis");
        assert_eq!(ok(BASE).session.cookie_name, "__Host-portcullis");
    }

    enum Edit {
        Add(&'static str, &'static str),
        Replace(&'static str, &'static str),
    }

    /// Every rule: one mistake → exactly one error at (key, position of `at`), message part.
    #[test]
    fn each_rule_reports_key_and_position() {
        use Edit::{Add, Replace};
        #[rustfmt::skip]
        let cases: &[(Edit, &str, &str, &str)] = &[
            // edit, key, needle locating the error, message part
            // --- unknown keys and types
            (Add("[server]", "lisen = \"1.2.3.4:1\""), "server.lisen", "lisen", "unknown key (did you mean `listen`?)"),
            (Add("[headers]", "[sever]"), "sever", "sever", "unknown key"),
            (Add("[[route]]", "uptream = \"x\""), "route[0].uptream", "uptream", "unknown key"),
            (Add("[server]", "max_headers = \"100\""), "server.max_headers", "\"100\"", "expected an integer, found string"),
            (Add("[session]", "refresh = \"yes\""), "session.refresh", "\"yes\"", "expected a boolean"),
            (Add("[oidc]", "scopes = \"openid\""), "oidc.scopes", "\"openid\"", "expected an array of strings"),
            (Add("[oidc]", "groups_claim = 7"), "oidc.groups_claim", "7", "expected a string, found integer"),
            (Add("[oidc]", "extra_auth_params = 5"), "oidc.extra_auth_params", "5", "expected a table, found integer"),
            // --- env
            (Add("[oidc]", "groups_claim = \"g-${NOPE_VAR}\""), "oidc.groups_claim", "\"g-", "environment variable `NOPE_VAR` is not set"),
            (Add("[oidc]", "groups_claim = \"${oops\""), "oidc.groups_claim", "\"${oops", "unterminated"),
            (Add("[oidc]", "groups_claim = \"${a-b}\""), "oidc.groups_claim", "\"${a-b}", "invalid environment variable name"),
            // --- server
            (Replace("listen = \"127.0.0.1:4180\"\n", ""), "server.listen", "[server]", "missing required key"),
            (Replace("127.0.0.1:4180", "localhost:4180"), "server.listen", "\"localhost", "IP address and port"),
            (Replace("public_url = \"https://app.example.com\"\n", ""), "server.public_url", "[server]", "missing required key"),
            (Replace("https://app.example.com", "ftp://app.example.com"), "server.public_url", "\"ftp", "http or https"),
            (Replace("https://app.example.com", "https://u:p@app.example.com"), "server.public_url", "\"https://u", "user information"),
            (Replace("https://app.example.com", "https://app.example.com/?a"), "server.public_url", "\"https://app", "query"),
            (Replace("https://app.example.com", "https://app.example.com#f"), "server.public_url", "\"https://app", "fragment"),
            (Replace("https://app.example.com", "https://app.example.com/app"), "server.public_url", "\"https://app", "without a path"),
            (Replace("https://app.example.com", "app.example.com"), "server.public_url", "\"app.", "not a valid URL"),
            (Add("[server]", "admin_listen = \"127.0.0.1:9090\""), "server.admin_listen", "\"127.0.0.1:9090", NOT_YET),
            (Add("[server]", "admin_listen = \"nope\""), "server.admin_listen", "\"nope", "IP address and port"),
            (Add("[server]", "trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]"), "server.trusted_proxies[1]", "\"10.0.0.0/33", "prefix length"),
            (Add("[server]", "trusted_proxies = [\"proxy.local\"]"), "server.trusted_proxies[0]", "\"proxy", "not an IP address"),
            (Add("[server]", "request_timeout = \"0s\""), "server.request_timeout", "\"0s", "greater than zero"),
            (Add("[server]", "header_read_timeout = \"0s\""), "server.header_read_timeout", "\"0s", "greater than zero"),
            (Add("[server]", "keepalive_timeout = \"0s\""), "server.keepalive_timeout", "\"0s", "greater than zero"),
            (Add("[server]", "shutdown_timeout = \"30 minutes-ish\""), "server.shutdown_timeout", "\"30", "invalid duration"),
            (Add("[server]", "request_timeout = 60"), "server.request_timeout", "60", "expected a duration string"),
            (Add("[server]", "upstream_ca_file = \"portcullis-no-such-ca.pem\""), "server.upstream_ca_file", "\"portcullis-no-such", "cannot read"),
            (Add("[server]", "max_header_bytes = 1023"), "server.max_header_bytes", "1023", "between 1024 and"),
            (Add("[server]", "max_headers = 0"), "server.max_headers", "0", "between 1 and 1000"),
            (Add("[server]", "max_headers = 1001"), "server.max_headers", "1001", "between 1 and 1000"),
            (Add("[server]", "max_connections = 0"), "server.max_connections", "0", "between 1 and"),
            (Add("[server]", "max_connections = -5"), "server.max_connections", "-5", "between 1 and"),
            // --- oidc
            (Replace("issuer = \"https://idp.example.com/realms/main\"\n", ""), "oidc.issuer", "[oidc]", "missing required key"),
            (Replace("https://idp.example.com/realms/main", "http://idp.example.com/realms/main"), "oidc.issuer", "\"http://idp", "issuer must be https"),
            (Replace("https://idp.example.com/realms/main", "https://idp.example.com/?x=1"), "oidc.issuer", "\"https://idp", "query"),
            (Replace("https://idp.example.com/realms/main", "idp.example.com"), "oidc.issuer", "\"idp", "not a valid URL"),
            (Replace("client_id = \"portcullis\"", "client_id = \"\""), "oidc.client_id", "\"\"", "must not be empty"),
            (Replace("client_id = \"portcullis\"\n", ""), "oidc.client_id", "[oidc]", "missing required key"),
            (Replace("client_secret = \"s3cret-value\"\n", ""), "oidc.client_secret", "[oidc]", "missing required key (or `client_secret_file`)"),
            (Add("[oidc]", "client_secret_file = \"x\""), "oidc.client_secret_file", "\"x", "set only one of"),
            (Replace("client_secret = \"s3cret-value\"", "client_secret = \"\""), "oidc.client_secret", "\"\"", "must not be empty"),
            (Replace("client_secret = \"s3cret-value\"", "client_secret_file = \"portcullis-no-such-secret\""), "oidc.client_secret_file", "\"portcullis-no-such", "cannot read"),
            (Add("[oidc]", "scopes = [\"email\", \"profile\"]"), "oidc.scopes", "[\"email", "must contain \"openid\""),
            (Add("[oidc]", "scopes = [\"openid\", \"a b\"]"), "oidc.scopes[1]", "\"a b", "scope"),
            (Add("[oidc]", "callback_path = \"oauth2/callback\""), "oidc.callback_path", "\"oauth2", "must start with `/`"),
            (Add("[oidc]", "callback_path = \"/cb?x\""), "oidc.callback_path", "\"/cb", "visible ASCII"),
            (Add("[oidc]", "callback_path = \"/a b\""), "oidc.callback_path", "\"/a b", "visible ASCII"),
            (Add("[oidc]", "callback_path = \"/a\\\\b\""), "oidc.callback_path", "\"/a\\", "visible ASCII"),
            (Add("[oidc]", "callback_path = \"/auth/./cb\""), "oidc.callback_path", "\"/auth/./cb", "write \"/auth/cb\""),
            (Add("[oidc]", "callback_path = \"//cb\""), "oidc.callback_path", "\"//cb", "write \"/cb\""),
            (Add("[oidc]", "callback_path = \"/auth/%63b\""), "oidc.callback_path", "\"/auth/%63b", "write \"/auth/cb\""),
            (Add("[oidc]", "callback_path = \"/cb;x\""), "oidc.callback_path", "\"/cb;x", "semicolon"),
            (Add("[oidc]", "callback_path = \"/../cb\""), "oidc.callback_path", "\"/../cb", "climbs above"),
            (Add("[oidc]", "groups_claim = \"\""), "oidc.groups_claim", "\"\"", "must not be empty"),
            (Add("[oidc]", "extra_auth_params = { prompt = \"login\", redirect_uri = \"https://evil\" }"), "oidc.extra_auth_params.redirect_uri", "redirect_uri", "cannot be overridden"),
            (Add("[oidc]", "extra_auth_params = { Scope = \"x\" }"), "oidc.extra_auth_params.Scope", "Scope", "cannot be overridden"),
            (Add("[oidc]", "extra_auth_params = { prompt = 1 }"), "oidc.extra_auth_params.prompt", "1 }", "expected a string"),
            (Add("[oidc]", "bearer_audiences = [\"\"]"), "oidc.bearer_audiences[0]", "\"\"", "must not be empty"),
            (Add("[oidc]", "bearer_audiences = \"api://x\""), "oidc.bearer_audiences", "\"api", "expected an array"),
            // --- session
            (Replace("cookie_secret = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n", ""), "session.cookie_secret", "[session]", "missing required key (or `cookie_secret_file`)"),
            (Replace("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "c2hvcnQ="), "session.cookie_secret", "\"c2hv", COOKIE_SECRET_RULE),
            (Replace("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "not base64!"), "session.cookie_secret", "\"not base64", "generate one with `portcullis generate-secret`"),
            (Replace("\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"", "[\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\", \"c2hvcnQ\"]"), "session.cookie_secret[1]", "\"c2hv", "at least 32"),
            (Replace("\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"", "[]"), "session.cookie_secret", "[]", "must not be empty"),
            (Replace("\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"", "32"), "session.cookie_secret", "32", "expected a string or an array of strings"),
            (Add("[session]", "cookie_secret_file = \"x\""), "session.cookie_secret_file", "\"x", "set only one of"),
            (Add("[session]", "cookie_name = \"bad name\""), "session.cookie_name", "\"bad name", "cookie token"),
            (Add("[session]", "cookie_name = \"a;b\""), "session.cookie_name", "\"a;b", "cookie token"),
            (Add("[session]", "cookie_name = \"__Host-x\"\ncookie_domain = \"example.com\""), "session.cookie_name", "\"__Host-x", "cannot have a cookie_domain"),
            (Add("[session]", "cookie_domain = \"other.org\""), "session.cookie_domain", "\"other.org", "not inside cookie_domain"),
            (Add("[session]", "cookie_domain = \"10.0.0.1\""), "session.cookie_domain", "\"10.0.0.1", "not an IP address"),
            (Add("[session]", "same_site = \"Lax\""), "session.same_site", "\"Lax", "\"lax\", \"strict\" or \"none\""),
            (Add("[session]", "lifetime = \"0s\""), "session.lifetime", "\"0s", "greater than zero"),
            (Add("[session]", "idle_timeout = \"0s\""), "session.idle_timeout", "\"0s", "greater than zero"),
            (Add("[session]", "idle_timeout = \"13h\""), "session.idle_timeout", "\"13h", "not be longer than lifetime"),
            (Add("[session]", "lifetime = \"30m\""), "session.lifetime", "\"30m", "not be longer than lifetime"),
            (Add("[session]", "refresh = true"), "session.refresh", "true", NOT_YET),
            (Add("[session]", "store = \"file\""), "session.store", "\"file", "\"memory\" or \"redis\""),
            (Add("[session]", "redis_url = \"redis://:pw@127.0.0.1:6379\""), "session.redis_url", "\"redis://", NOT_YET),
            (Add("[session]", "max_sessions = 0"), "session.max_sessions", "0", "at least 1"),
            // --- headers
            (Add("[headers]", "user = \"X User\""), "headers.user", "\"X User", "not a valid HTTP header name"),
            (Add("[headers]", "email = \"Transfer-Encoding\""), "headers.email", "\"Transfer", "reserved header"),
            (Add("[headers]", "groups = \"X-Auth-Request-User\""), "headers.groups", "\"X-Auth-Request-User", "already used by `headers.user (default)`"),
            (Add("[headers]", "user = \"X-Id\"\nemail = \"x-id\""), "headers.email", "\"x-id", "already used by `headers.user`"),
            (Add("[headers]", "[headers.claims]\n\"X-Auth-Request-Email\" = \"mail\""), "headers.claims.X-Auth-Request-Email", "\"X-Auth-Request-Email\" =", "already used by `headers.email (default)`"),
            (Add("[headers]", "[headers.claims]\n\"Cookie\" = \"c\""), "headers.claims.Cookie", "\"Cookie", "reserved header"),
            (Add("[headers]", "[headers.claims]\n\"Connection\" = \"c\""), "headers.claims.Connection", "\"Connection", "reserved header"),
            (Add("[headers]", "[headers.claims]\n\"X Bad\" = \"c\""), "headers.claims.X Bad", "\"X Bad", "not a valid HTTP header name"),
            (Add("[headers]", "[headers.claims]\n\"X-Tenant\" = \"\""), "headers.claims.X-Tenant", "\"\"", "claim name must not be empty"),
            (Add("[headers]", "authorization_bearer_id_token = 1"), "headers.authorization_bearer_id_token", "1", "expected a boolean"),
            // --- routes
            (Add("[[route]]", "host = \"*\""), "route[0].host", "\"*\"", "leave host out"),
            (Add("[[route]]", "host = \"a.*.example.com\""), "route[0].host", "\"a.*", "whole first label"),
            (Add("[[route]]", "host = \"*.*.example.com\""), "route[0].host", "\"*.*", "whole first label"),
            (Add("[[route]]", "host = \"*foo.example.com\""), "route[0].host", "\"*foo", "whole first label"),
            (Add("[[route]]", "host = \"*.\""), "route[0].host", "\"*.\"", "must not be empty"),
            (Add("[[route]]", "host = \"app.example.com:8080\""), "route[0].host", "\"app.example.com:8080", "without port"),
            (Add("[[route]]", "host = \"a b.com\""), "route[0].host", "\"a b", "host name"),
            (Replace("path = \"/\"\n", ""), "route[0].path", "[[route]]", "missing required key"),
            (Replace("path = \"/\"", "path = \"api\""), "route[0].path", "\"api", "must start with `/`"),
            (Replace("path = \"/\"", "path = \"/a/../b\""), "route[0].path", "\"/a/..", "`.` or `..` segments"),
            (Replace("path = \"/\"", "path = \"/a/.\""), "route[0].path", "\"/a/.", "`.` or `..` segments"),
            (Replace("path = \"/\"", "path = \"/a%2fb\""), "route[0].path", "\"/a%", "`%`"),
            (Replace("path = \"/\"", "path = \"/a;b\""), "route[0].path", "\"/a;", "`;`"),
            (Replace("path = \"/\"", "path = \"/a?b\""), "route[0].path", "\"/a?", "`?`"),
            (Replace("path = \"/\"", "path = \"/a#b\""), "route[0].path", "\"/a#", "`#`"),
            (Replace("path = \"/\"", "path = \"/a\\\\b\""), "route[0].path", "\"/a\\", "`\\`"),
            (Replace("path = \"/\"", "path = \"/a//b\""), "route[0].path", "\"/a//", "repeated slashes"),
            (Replace("upstream = \"http://127.0.0.1:8080\"\n", ""), "route[0].upstream", "[[route]]", "missing required key"),
            (Replace("http://127.0.0.1:8080", "ws://127.0.0.1:8080"), "route[0].upstream", "\"ws:", "http or https"),
            (Replace("http://127.0.0.1:8080", "http://u@127.0.0.1:8080"), "route[0].upstream", "\"http://u@", "user information"),
            (Replace("http://127.0.0.1:8080", "http://127.0.0.1:8080/?q"), "route[0].upstream", "\"http://127", "query"),
            (Replace("http://127.0.0.1:8080", "http://127.0.0.1:8080/#f"), "route[0].upstream", "\"http://127", "fragment"),
            (Replace("http://127.0.0.1:8080", "127.0.0.1:8080"), "route[0].upstream", "\"127.0.0.1:8080", "not a valid URL"),
            (Replace("http://127.0.0.1:8080", "upstream.internal:8080"), "route[0].upstream", "\"upstream.internal", "http or https"),
            (Add("[[route]]", "auth = \"optional\""), "route[0].auth", "\"optional", "\"required\" or \"public\""),
            (Add("[[route]]", "allow_emails = [\"alice\"]"), "route[0].allow_emails[0]", "\"alice", "exactly one `@`"),
            (Add("[[route]]", "allow_emails = [\"a@b@c\"]"), "route[0].allow_emails[0]", "\"a@b@c", "exactly one `@`"),
            (Add("[[route]]", "allow_email_domains = [\"@example.com\"]"), "route[0].allow_email_domains[0]", "\"@example", "no `@`"),
            (Add("[[route]]", "allow_groups = [\"\"]"), "route[0].allow_groups[0]", "\"\"", "must not be empty"),
            (Add("[[route]]", "auth = \"public\"\nallow_groups = [\"admins\"]"), "route[0].allow_groups", "[\"admins", "no effect on a route with auth = \"public\""),
            (Add("[[route]]", "preserve_host = \"yes\""), "route[0].preserve_host", "\"yes", "expected a boolean"),
            (Add("[[route]]", "allow_preflight = 0"), "route[0].allow_preflight", "0", "expected a boolean"),
        ];
        for (edit, key, at, message) in cases {
            let text = match edit {
                Edit::Add(after, line) => add(after, line),
                Edit::Replace(from, to) => replace(from, to),
            };
            // the needle is searched after the edit point for Add (values repeat in BASE)
            let p = match edit {
                Edit::Add(after, line) => {
                    let (l0, _) = pos(&text, after);
                    let (l, c) = pos(line, at);
                    (l0 + l, c)
                }
                Edit::Replace(..) => pos(&text, at),
            };
            assert_one(&text, key, p, message);
        }
    }

    #[test]
    fn http_public_url_rules() {
        let http = |line: &str| {
            replace("https://app.example.com", "http://app.example.com").replacen(
                "[session]\n",
                &format!("[session]\n{line}\n"),
                1,
            )
        };
        let t = http("cookie_name = \"__Host-x\"");
        assert_one(
            &t,
            "session.cookie_name",
            pos(&t, "\"__Host-x"),
            "requires an https public_url",
        );
        let t = http("cookie_name = \"__secure-x\"");
        assert_one(
            &t,
            "session.cookie_name",
            pos(&t, "\"__secure-x"),
            "requires an https public_url",
        );
        let t = http("same_site = \"none\"");
        assert_one(
            &t,
            "session.same_site",
            pos(&t, "\"none"),
            "requires an https public_url",
        );
        // fine with https
        let t = add(
            "[session]",
            "same_site = \"none\"\ncookie_name = \"__Secure-x\"",
        );
        assert_eq!(ok(&t).session.same_site, SameSite::None);
    }

    #[test]
    fn tls_pair_and_not_supported() {
        let t = add("[server]", "tls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"");
        let errs = errors(&t);
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.key.as_str(), e.line, e.column, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("server.tls_cert", Some(2), Some(12), NOT_YET),
                ("server.tls_key", Some(3), Some(11), NOT_YET)
            ]
        );
        let t = add("[server]", "tls_key = \"/k.pem\"");
        let errs = errors(&t);
        assert_eq!(errs.len(), 2);
        assert!(
            errs.iter()
                .all(|e| e.key == "server.tls_key" && (e.line, e.column) == (Some(2), Some(11)))
        );
        assert!(errs[0].message.contains("needs `tls_cert`"));
        assert_eq!(errs[1].message, NOT_YET);
    }

    #[test]
    fn redis_store_is_not_supported_and_needs_url() {
        let t = add("[session]", "store = \"redis\"");
        let errs = errors(&t);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert_eq!(
            (errs[0].key.as_str(), errs[0].line, errs[0].column),
            ("session.redis_url", Some(10), Some(1))
        );
        assert!(errs[0].message.contains("requires `redis_url`"));
        assert_eq!(
            (
                errs[1].key.as_str(),
                errs[1].line,
                errs[1].column,
                errs[1].message.as_str()
            ),
            ("session.store", Some(11), Some(9), NOT_YET)
        );
        // a bad redis URL is reported without echoing it
        let t = add("[session]", "redis_url = \"http://:hunter2@x\"");
        let errs = errors(&t);
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("redis://") && !errs[0].message.contains("hunter2"));
    }

    #[test]
    fn syntax_errors_come_with_position() {
        let t = "[server]\nlisten = 127.0.0.1:4180\n";
        let errs = errors(t);
        assert!(!errs.is_empty());
        assert_eq!((errs[0].key.as_str(), errs[0].line), ("", Some(2)));
        assert!(errs[0].column.is_some());
        let t = add("[server]", "listen = \"x\"");
        let errs = errors(&t);
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].line, errs[0].column), (Some(3), Some(1)));
        assert!(
            errs[0].message.contains("duplicate key"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn five_mistakes_are_all_reported() {
        let text = r#"[server]
listen = "127.0.0.1:4180"
public_url = "https://app.example.com"
request_timeout = "soon"

[oidc]
issuer = "http://idp.example.com"
client_id = "portcullis"
client_secret = "s3cret-value"
colour = "blue"

[session]
cookie_secret = "dG9vIHNob3J0"

[[route]]
path = "/"
upstream = "http://127.0.0.1:8080"

[[route]]
path = "/api/../admin"
upstream = "http://127.0.0.1:8081"
"#;
        let errs = errors(text);
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.key.as_str(), e.line.unwrap(), e.column.unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("server.request_timeout", 4, 19),
                ("oidc.issuer", 7, 10),
                ("oidc.colour", 10, 1),
                ("session.cookie_secret", 13, 17),
                ("route[1].path", 20, 8),
            ]
        );
        let shown = ConfigErrors {
            file: "p.toml".into(),
            errors: errs,
        }
        .to_string();
        assert_eq!(shown.lines().count(), 5);
        assert!(shown.starts_with("p.toml:4:19: server.request_timeout: invalid duration"));
        assert!(shown.contains("\np.toml:7:10: oidc.issuer: issuer must be https\n"));
    }

    #[test]
    fn unknown_keys_in_routes_report_the_route_index() {
        let text = r#"[server]
listen = "127.0.0.1:4180"
public_url = "https://app.example.com"
[oidc]
issuer = "https://idp.example.com"
client_id = "c"
client_secret = "s"
[session]
cookie_secret = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[[route]]
path = "/"
upstream = "http://127.0.0.1:1"
[[route]]
path = "/b"
  uptream = "http://127.0.0.1:2"
"#;
        let errs = errors(text);
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.key.as_str(), e.line, e.column, e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "route[1].upstream",
                    Some(13),
                    Some(1),
                    "missing required key"
                ),
                (
                    "route[1].uptream",
                    Some(15),
                    Some(3),
                    "unknown key (did you mean `upstream`?)"
                ),
            ]
        );
    }

    #[test]
    fn missing_sections_and_routes() {
        let errs = errors("");
        let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.listen",
                "server.public_url",
                "oidc.issuer",
                "oidc.client_id",
                "oidc.client_secret",
                "session.cookie_secret",
                "route"
            ]
        );
        assert!(errs.iter().all(|e| e.line.is_none() && e.column.is_none()));
        assert_eq!(errs[6].message, "at least one [[route]] is required");

        let no_route = BASE.replace(
            "[[route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:8080\"\n",
            "",
        );
        assert_ne!(no_route, BASE);
        let t = format!("route = []\n{no_route}");
        assert_one(&t, "route", (1, 9), "at least one [[route]]");
        let t = format!("route = 1\n{no_route}");
        assert_one(&t, "route", (1, 9), "expected an array of tables");
        let t = format!("headers = 5\n{}", BASE.replace("[headers]\n", ""));
        assert_one(&t, "headers", (1, 11), "expected a table");
        let t = format!("route = [1]\n{no_route}");
        assert_one(&t, "route[0]", (1, 10), "expected a table");
        let errs = errors(&no_route);
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].key.as_str(), errs[0].line), ("route", None));
    }

    #[test]
    fn missing_env_var_names_key_and_variable() {
        let t = replace("\"s3cret-value\"", "\"${PORTCULLIS_MISSING}\"");
        let errs = errors(&t);
        assert_eq!(errs.len(), 1);
        let e = &errs[0];
        assert_eq!(e.key, "oidc.client_secret");
        assert_eq!((e.line, e.column), (Some(8), Some(17)));
        assert_eq!(
            e.message,
            "environment variable `PORTCULLIS_MISSING` is not set"
        );
        // embedded and repeated expansion
        let t = replace(
            "\"s3cret-value\"",
            "\"a-${UPSTREAM_HOST}-b-${UPSTREAM_HOST}\"",
        );
        assert_eq!(ok(&t).oidc.client_secret.expose(), "a-10.1.2.3-b-10.1.2.3");
        // a lone `$` or `{` is literal
        let t = replace("\"s3cret-value\"", "\"$x{y}$\"");
        assert_eq!(ok(&t).oidc.client_secret.expose(), "$x{y}$");
    }

    /// A unique temp file path for this test process.
    fn temp_file(name: &str, content: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("portcullis-cfg-{}-{name}", std::process::id()));
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn secret_files() {
        let client = temp_file("client", "file-secret\r\n");
        let cookies = temp_file(
            "cookies",
            &format!("{SECRET_B64}\n\n  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj  \n"),
        );
        let t = BASE
            .replace(
                "client_secret = \"s3cret-value\"",
                &format!("client_secret_file = \"{}\"", client.display()),
            )
            .replace(
                &format!("cookie_secret = \"{SECRET_B64}\""),
                // relative to base_dir (the temp dir)
                &format!(
                    "cookie_secret_file = \"{}\"",
                    cookies.file_name().unwrap().to_str().unwrap()
                ),
            );
        let c = ok(&t);
        assert_eq!(c.oidc.client_secret.expose(), "file-secret");
        assert_eq!(c.session.cookie_secrets.len(), 2);
        assert_eq!(c.session.cookie_secrets[1].0.len(), 36);

        // a bad line in a list file is named by line, not by value
        let bad = temp_file("badcookies", &format!("{SECRET_B64}\nc2hvcnQ=\n"));
        let t = replace(
            &format!("cookie_secret = \"{SECRET_B64}\""),
            &format!("cookie_secret_file = \"{}\"", bad.display()),
        );
        let errs = errors(&t);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            (errs[0].key.as_str(), errs[0].line, errs[0].column),
            ("session.cookie_secret_file", Some(11), Some(22))
        );
        assert!(
            errs[0]
                .message
                .starts_with("line 2 of the file: must be base64")
        );
        assert!(!errs[0].message.contains("c2hvcnQ"));

        let empty = temp_file("empty", "\n");
        let t = replace(
            "client_secret = \"s3cret-value\"",
            &format!("client_secret_file = \"{}\"", empty.display()),
        );
        assert_one(&t, "oidc.client_secret_file", (8, 22), "is empty");

        for p in [client, cookies, bad, empty] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn upstream_ca_file_must_hold_a_certificate() {
        let pem = temp_file(
            "ca.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        );
        let junk = temp_file("junk.pem", "hello\n");
        let t = add(
            "[server]",
            &format!("upstream_ca_file = \"{}\"", pem.display()),
        );
        assert_eq!(
            ok(&t).server.upstream_ca_file.as_deref(),
            Some(pem.as_path())
        );
        let t = add(
            "[server]",
            &format!("upstream_ca_file = \"{}\"", junk.display()),
        );
        assert_one(&t, "server.upstream_ca_file", (2, 20), "no PEM certificate");
        let _ = std::fs::remove_file(pem);
        let _ = std::fs::remove_file(junk);
    }

    #[test]
    fn secrets_never_appear_in_messages_or_debug() {
        let t = replace(
            &format!("cookie_secret = \"{SECRET_B64}\""),
            "cookie_secret = \"hunter2-not-base64\"",
        );
        let shown = load(&t).unwrap_err().to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        let dbg = format!("{:?}", ok(BASE));
        assert!(
            !dbg.contains("s3cret-value") && !dbg.contains("AAEC"),
            "{dbg}"
        );
    }

    #[test]
    fn display_format() {
        let e = ConfigErrors {
            file: "f.toml".into(),
            errors: vec![
                ConfigError {
                    key: "a.b".into(),
                    line: Some(3),
                    column: Some(7),
                    message: "bad".into(),
                },
                ConfigError {
                    key: "route".into(),
                    line: None,
                    column: None,
                    message: "none".into(),
                },
                ConfigError {
                    key: String::new(),
                    line: Some(1),
                    column: Some(2),
                    message: "syntax".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "f.toml:3:7: a.b: bad\nf.toml: route: none\nf.toml:1:2: syntax"
        );
    }

    #[test]
    fn from_file_reports_read_errors_and_resolves_relative_files() {
        let missing = std::env::temp_dir().join("portcullis-definitely-missing.toml");
        let err = from_file(&missing).unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert_eq!((err.errors[0].key.as_str(), err.errors[0].line), ("", None));
        assert!(
            err.errors[0]
                .message
                .starts_with("cannot read the configuration file")
        );

        let dir = std::env::temp_dir().join(format!("portcullis-cfgdir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("client.secret"), "from-relative-file\n").unwrap();
        let text = BASE.replace(
            "client_secret = \"s3cret-value\"",
            "client_secret_file = \"client.secret\"",
        );
        std::fs::write(dir.join("p.toml"), text).unwrap();
        let c = from_file(&dir.join("p.toml")).unwrap();
        assert_eq!(c.oidc.client_secret.expose(), "from-relative-file");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn example_file_is_accepted() {
        let text = include_str!("../../config/portcullis.toml");
        let c = match from_str(text, "portcullis.toml", &env, Path::new("/nonexistent")) {
            Ok(c) => c,
            Err(e) => panic!("example rejected:\n{e}"),
        };
        assert_eq!(c.oidc.client_secret.expose(), "from-env");
        assert_eq!(c.session.cookie_secrets.len(), 1);
        assert_eq!(c.routes.len(), 3);
        assert_eq!(c.routes[0].auth, crate::config::AuthMode::Public);
        assert_eq!(c.session.cookie_name, "__Host-portcullis");
    }

    #[test]
    fn example_file_mentions_every_key() {
        let text = include_str!("../../config/portcullis.toml");
        for key in [
            "listen",
            "public_url",
            "tls_cert",
            "tls_key",
            "admin_listen",
            "trusted_proxies",
            "shutdown_timeout",
            "request_timeout",
            "upstream_ca_file",
            "max_header_bytes",
            "max_headers",
            "header_read_timeout",
            "keepalive_timeout",
            "max_connections",
            "issuer",
            "client_id",
            "client_secret",
            "client_secret_file",
            "scopes",
            "callback_path",
            "groups_claim",
            "extra_auth_params",
            "bearer_audiences",
            "cookie_name",
            "cookie_secret",
            "cookie_secret_file",
            "cookie_domain",
            "same_site",
            "lifetime",
            "idle_timeout",
            "refresh",
            "store",
            "redis_url",
            "redis_url_file",
            "max_sessions",
            "user",
            "email",
            "preferred_username",
            "groups",
            "access_token",
            "authorization_bearer_id_token",
            "[headers.claims]",
            "host",
            "path",
            "upstream",
            "auth",
            "allow_emails",
            "allow_email_domains",
            "allow_groups",
            "preserve_host",
            "allow_preflight",
        ] {
            let found = text.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{key} ")) || l.starts_with(&format!("{key}=")) || l == key
            });
            assert!(found, "example lacks `{key}`");
        }
    }

    #[test]
    fn summary_lists_the_essentials() {
        let t = format!(
            "{BASE}\n[[route]]\nhost = \"*.example.com\"\npath = \"/api\"\nupstream = \"https://api.internal:8443/v1/\"\nallow_groups = [\"admins\", \"ops\"]\nallow_emails = [\"a@example.com\"]\n\n[[route]]\nhost = \"Static.Example.com\"\npath = \"/static\"\nupstream = \"https://cdn.internal\"\nauth = \"public\"\n"
        );
        let s = check_summary(&ok(&t));
        assert_eq!(
            s,
            "listen 127.0.0.1:4180, public_url https://app.example.com\n\
             oidc issuer https://idp.example.com/realms/main, client_id portcullis\n\
             session store memory, cookie __Host-portcullis\n\
             route0: host *, path /, auth required, upstream http://127.0.0.1:8080\n\
             route1: host *.example.com, path /api, auth required, upstream https://api.internal:8443/v1, allow_emails [a@example.com], allow_groups [admins, ops]\n\
             route2: host static.example.com, path /static, auth public, upstream https://cdn.internal\n"
        );
        assert!(!s.contains("s3cret"));
    }

    #[test]
    fn value_rules_table() {
        // (input, expected Ok output or None for error)
        let hosts: &[(&str, Option<HostPattern>)] = &[
            (
                "App.Example.COM",
                Some(HostPattern::Exact("app.example.com".into())),
            ),
            (
                "app.example.com.",
                Some(HostPattern::Exact("app.example.com".into())),
            ),
            ("10.0.0.1", Some(HostPattern::Exact("10.0.0.1".into()))),
            ("[::1]", Some(HostPattern::Exact("[::1]".into()))),
            ("[0:0::1]", Some(HostPattern::Exact("[::1]".into()))),
            (
                "*.Example.com",
                Some(HostPattern::Wildcard("example.com".into())),
            ),
            ("::1", None),
            ("[::1]:80", None),
            ("", None),
            ("a..b", None),
            ("bücher.de", None),
            ("*", None),
            ("*.", None),
        ];
        for (input, want) in hosts {
            assert_eq!(parse_host_pattern(input).ok(), *want, "{input}");
        }
        let paths: &[(&str, bool)] = &[
            ("/", true),
            ("/api", true),
            ("/api/", true),
            ("/a.b/c..d/~x", true),
            ("", false),
            ("/..", false),
            ("/./a", false),
            ("//", false),
            ("/a b", false),
            ("/é", false),
        ];
        for (input, good) in paths {
            assert_eq!(check_route_path(input).is_ok(), *good, "{input}");
        }
        let ups = [
            (
                "https://x.internal",
                (true, "x.internal", 443, "", "x.internal"),
            ),
            ("http://x:80/", (false, "x", 80, "", "x")),
            ("http://x:81/a/b/", (false, "x", 81, "/a/b", "x:81")),
            (
                "https://[::1]:8443",
                (true, "[::1]", 8443, "", "[::1]:8443"),
            ),
        ];
        for (input, (https, host, port, base, auth)) in ups {
            let u = parse_upstream(input).unwrap();
            assert_eq!(
                (
                    u.https,
                    u.host.as_str(),
                    u.port,
                    u.base_path.as_str(),
                    u.authority.as_str()
                ),
                (https, host, port, base, auth),
                "{input}"
            );
        }
        let issuers: &[(&str, bool)] = &[
            ("https://idp.example.com", true),
            ("http://localhost:9000", true),
            ("http://127.0.0.2/x", true),
            ("http://[::1]:1/", true),
            ("http://idp.example.com", false),
            ("http://localhost.example.com", false),
            ("https://user@idp", false),
            ("file:///x", false),
        ];
        for (input, good) in issuers {
            assert_eq!(check_issuer(input).is_ok(), *good, "{input}");
        }
        let urls = [
            (
                "https://App.Example.com:443",
                ("app.example.com", None, true),
            ),
            (
                "http://app.example.com:8080/",
                ("app.example.com", Some(8080), false),
            ),
            ("https://[::1]:4443", ("[::1]", Some(4443), true)),
        ];
        for (input, (host, port, https)) in urls {
            let u = parse_public_url(input).unwrap();
            assert_eq!(
                (u.host.as_str(), u.port, u.https),
                (host, port, https),
                "{input}"
            );
        }
        for (input, ok) in [
            (SECRET_B64, true),
            ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", true),
            ("-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_", true),
            ("+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/", true),
            ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg", false), // 31 bytes
        ] {
            assert_eq!(
                decode_base64(input).is_some_and(|b| b.len() >= 32),
                ok,
                "{input}"
            );
        }
        for (name, good) in [
            ("_portcullis", true),
            ("__Host-a", true),
            ("a=b", false),
            ("", false),
            ("a\"b", false),
        ] {
            assert_eq!(check_cookie_name(name).is_ok(), good, "{name}");
        }
        assert_eq!(line_col("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(line_col("ab\ncdé\nx", 7), (2, 4));
        assert_eq!(line_col("ab\ncdé\nx", 6), (2, 3)); // inside `é`: clamped back
        assert_eq!(line_col("ab", 99), (1, 3));
        assert_eq!(line_col("ab\nc", 0), (1, 1));
        assert_eq!(suggest("uptream", &["upstream", "path"]), Some("upstream"));
        assert_eq!(suggest("zzz", &["upstream", "path"]), None);
    }
}
