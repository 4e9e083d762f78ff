//! Request path normalisation: the one path portcullis routes on, applies policy to and sends
//! upstream.
//!
//! SPEC: "The path used to pick the route and apply the policy is the same normalised path that
//! is sent upstream (dot segments resolved, repeated slashes merged). A path with an encoded `/`,
//! `\`, `#` or NUL, a backslash, or a `..` that climbs above the root is answered 400, never
//! guessed at." [`normalize`] is that rule; every [`PathError`] means "answer 400".
//!
//! What [`normalize`] does, in order, to the path component of the request-target (no query, no
//! fragment):
//!
//! 1. **Shape.** At most [`MAX_PATH_LEN`] bytes and starting with `/` (RFC 3986 §3.3
//!    path-absolute; RFC 9112 §3.2.1 origin-form).
//! 2. **Raw bytes.** Printable ASCII only. A backslash is refused (many servers and WHATWG URL
//!    parsers treat it as `/`), as are space, control bytes, DEL and non-ASCII. A raw `?` or `#`
//!    cannot be part of a path component (RFC 3986 §3.3), so it is refused too rather than
//!    forwarded where the upstream would read it as a query or fragment delimiter.
//! 3. **Percent-encoding, decoded exactly once** (RFC 3986 §2.1, §2.4, §6.2.2.1–6.2.2.2). `%` must
//!    be followed by two hex digits. Escapes of unreserved characters (`ALPHA / DIGIT / "-" / "."
//!    / "_" / "~"`, §2.3) are decoded, so `/%61dmin` is `/admin` and `%2e` takes part in dot
//!    segments. Escapes of `/`, `\`, `#` and of any control byte (`%00`–`%1F`, `%7F`) are refused:
//!    they are not equivalent to the raw character (§2.2) and back ends disagree on them. Every
//!    other escape is kept, with upper-case hex (`%3f` becomes `%3F`). `%252e` stays `%252e`:
//!    only the `%25` escape is looked at, the `2e` after it is literal data.
//! 4. **UTF-8.** The fully decoded bytes must be valid UTF-8 (RFC 3629 §3, §10): overlong forms
//!    such as `%C0%AE` and stray bytes such as `%FF` are refused.
//! 5. **Path parameters.** A `;` anywhere is refused. Servlet containers (Tomcat, Jetty) strip
//!    `;…` from each segment and resolve `..;` as `..`, so `/public/..;/admin` is a classic route
//!    bypass; refusing is safer than guessing which container is behind us. An encoded `%3B` is
//!    kept encoded and is plain data.
//! 6. **Segments.** Repeated slashes are merged (`//admin` is `/admin`) and the dot segments `.`
//!    and `..` are removed (RFC 3986 §5.2.4, §6.2.2.3). A `..` that would climb above `/` is
//!    refused instead of being clamped to the root. A trailing slash is kept, and a path that ends
//!    in a dot segment ends in `/` (`/a/.` and `/a/b/..` give `/a/`).
//!
//! Case is preserved: paths are case-sensitive (RFC 3986 §6.2.2.1 only folds the hex digits of
//! escapes), so routing compares the normalised path as is.
//!
//! The result is idempotent (`normalize(normalize(p)?) == normalize(p)`), starts with `/`, never
//! contains `//`, a `.` or `..` segment, `\`, `;`, `?`, `#`, an encoded `/`, `\`, `#` or control
//! byte, or an escape of an unreserved character.

use std::fmt::Write as _;

/// Longest accepted raw path, in bytes.
pub const MAX_PATH_LEN: usize = 8192;

/// Why a request path was refused; every variant is answered 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty, or not starting with `/`.
    #[error("path does not start with `/`")]
    NotAbsolute,
    /// Longer than [`MAX_PATH_LEN`].
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// A raw `\`.
    #[error("backslash in path")]
    Backslash,
    /// A raw space.
    #[error("space in path")]
    Space,
    /// A raw control byte (0x00–0x1F) or DEL.
    #[error("control character in path")]
    ControlChar,
    /// A raw byte >= 0x80.
    #[error("non-ascii byte in path")]
    NonAscii,
    /// A raw `?` or `#`, which cannot be part of a path component.
    #[error("query or fragment delimiter in path")]
    Delimiter,
    /// A `;` (path parameters).
    #[error("semicolon (path parameter) in path")]
    Semicolon,
    /// A segment ending in `.` or an encoded space (`/admin.`, `/admin%20`): Windows and IIS
    /// drop those, so such a segment would reach an upstream as another one (`/admin`) than
    /// the route and policy saw (SECURITY PATH-04). Refused rather than guessed at.
    #[error("path segment ends in a dot or a space")]
    SegmentEnd,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-encoding in path")]
    BadPercent,
    /// `%2F`.
    #[error("encoded slash in path")]
    EncodedSlash,
    /// `%5C`.
    #[error("encoded backslash in path")]
    EncodedBackslash,
    /// `%23`.
    #[error("encoded hash in path")]
    EncodedHash,
    /// `%00`–`%1F` or `%7F`.
    #[error("encoded control character in path")]
    EncodedControl,
    /// The percent-decoded path is not valid UTF-8 (includes overlong forms).
    #[error("path is not valid utf-8 once decoded")]
    InvalidUtf8,
    /// A `..` segment would leave the root.
    #[error("dot segment climbs above the root")]
    ClimbsAboveRoot,
}

/// Normalises the path component of a request-target (no query, no fragment), exactly as
/// received, into the path used for routing, policy and the upstream request.
///
/// See the module documentation for the rules; any error means the request is answered 400.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }

    // Pass 1: byte checks and the single percent-decoding step. `semi` is the path with
    // unreserved escapes decoded and other escapes upper-cased; `decoded` is every escape decoded,
    // used only for the UTF-8 check.
    let mut semi = String::with_capacity(bytes.len());
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let v = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => match (hex_val(h), hex_val(l)) {
                        (Some(h), Some(l)) => (h << 4) | l,
                        _ => return Err(PathError::BadPercent),
                    },
                    _ => return Err(PathError::BadPercent),
                };
                match v {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    b'#' => return Err(PathError::EncodedHash),
                    0x00..=0x1f | 0x7f => return Err(PathError::EncodedControl),
                    _ if is_unreserved(v) => semi.push(char::from(v)),
                    _ => {
                        // Writing to a String cannot fail.
                        let _ = write!(semi, "%{v:02X}");
                    }
                }
                decoded.push(v);
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b' ' => return Err(PathError::Space),
            0x00..=0x1f | 0x7f => return Err(PathError::ControlChar),
            0x80..=0xff => return Err(PathError::NonAscii),
            b'?' | b'#' => return Err(PathError::Delimiter),
            b';' => return Err(PathError::Semicolon),
            _ => {
                semi.push(char::from(b));
                decoded.push(b);
                i += 1;
            }
        }
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::InvalidUtf8);
    }

    // Pass 2: merge slashes and remove dot segments (RFC 3986 §5.2.4), refusing to climb above
    // the root. `semi` starts with `/`, so the first split item is the empty string before it.
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = semi.split('/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return Err(PathError::ClimbsAboveRoot);
                }
            }
            s if s.ends_with('.') || s.ends_with("%20") => return Err(PathError::SegmentEnd),
            s => stack.push(s),
        }
        if last {
            trailing_slash = matches!(seg, "" | "." | "..");
        }
    }

    let mut out = String::with_capacity(semi.len());
    for seg in &stack {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// RFC 3986 §2.3 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathError::*;

    fn ok(raw: &str, want: &str) {
        assert_eq!(normalize(raw), Ok(want.to_string()), "input {raw:?}");
        // Every accepted output is a fixed point.
        assert_eq!(
            normalize(want),
            Ok(want.to_string()),
            "output {want:?} not idempotent"
        );
    }

    fn err(raw: &str, want: PathError) {
        assert_eq!(normalize(raw), Err(want), "input {raw:?}");
    }

    #[test]
    fn segments_ending_in_a_dot_or_space_are_refused() {
        for raw in [
            "/admin.",
            "/admin./x",
            "/admin%20",
            "/admin%2e",
            "/a/.../b",
            "/x%20/y",
        ] {
            err(raw, SegmentEnd);
        }
        ok("/admin.json", "/admin.json");
        ok("/a%20b", "/a%20b");
        ok("/.well-known/x", "/.well-known/x");
    }

    #[test]
    fn controls_are_accepted_unchanged() {
        for p in [
            "/",
            "/a/b",
            "/a/",
            "/a%20b",
            "/caf%C3%A9",
            "/public/",
            "/public/x",
            "/admin",
            "/a.b/c-d_e~f",
            "/a:b@c!$&'()*+,=",
            "/%25",
            "/%3F",
            "/%3B",
            "/%2B",
            "/.a/..b/a",
            "/x/%E2%81%84",
        ] {
            ok(p, p);
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_once() {
        for (raw, want) in [
            ("/%61dmin", "/admin"),
            ("/adm%69n", "/admin"),
            ("/%41%5A%30%39%2D%2E%5F%7E", "/AZ09-._~"),
            ("/%7e%2d", "/~-"),
            ("/%2561dmin", "/%2561dmin"),
            ("/%252e", "/%252e"),
            ("/%252E", "/%252E"),
            ("/%252e%252e/admin", "/%252e%252e/admin"),
            ("/%252f", "/%252f"),
        ] {
            ok(raw, want);
        }
    }

    #[test]
    fn other_escapes_get_upper_case_hex() {
        for (raw, want) in [
            ("/%3f", "/%3F"),
            ("/a%20b", "/a%20b"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/%3b", "/%3B"),
            ("/%25", "/%25"),
            ("/%7b%7D", "/%7B%7D"),
            ("/%ef%bc%8f", "/%EF%BC%8F"),
        ] {
            ok(raw, want);
        }
    }

    #[test]
    fn slashes_are_merged_and_trailing_slash_kept() {
        for (raw, want) in [
            ("//admin", "/admin"),
            ("///admin", "/admin"),
            ("/a//b", "/a/b"),
            ("/admin//", "/admin/"),
            ("//", "/"),
            ("////", "/"),
            ("/a/", "/a/"),
            ("/a//", "/a/"),
        ] {
            ok(raw, want);
        }
    }

    #[test]
    fn dot_segments_are_removed() {
        for (raw, want) in [
            ("/./admin", "/admin"),
            ("/.", "/"),
            ("/a/.", "/a/"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/..", "/"),
            ("/a/../", "/"),
            ("/a/b/../c", "/a/c"),
            ("/a/b/c/../../d", "/a/d"),
            ("/public/../admin", "/admin"),
            ("/public/./../admin/", "/admin/"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/public/%2e./admin", "/admin"),
            ("/public/%2e/x", "/public/x"),
            ("/a//..", "/"),
            ("/a/b//../c", "/a/c"),
        ] {
            ok(raw, want);
        }
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        for raw in [
            "/..",
            "/../",
            "/../admin",
            "/a/../..",
            "/a/../../b",
            "/%2e%2e",
            "/%2E%2e/x",
            "/./..",
            "//..",
        ] {
            err(raw, ClimbsAboveRoot);
        }
    }

    #[test]
    fn shape_and_length() {
        err("", NotAbsolute);
        err("admin", NotAbsolute);
        err("*", NotAbsolute);
        err("http://evil.com/admin", NotAbsolute);
        err("%2Fadmin", NotAbsolute);
        let max = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        ok(&max, &max);
        err(&format!("/{}", "a".repeat(MAX_PATH_LEN)), TooLong);
        err(&"/".repeat(100_000), TooLong);
    }

    #[test]
    fn raw_byte_rules() {
        for (raw, want) in [
            ("/a\\b", Backslash),
            ("/public\\..\\admin", Backslash),
            ("\\admin", NotAbsolute),
            ("/a b", Space),
            ("/admin ", Space),
            ("/a\tb", ControlChar),
            ("/a\nb", ControlChar),
            ("/a\rb", ControlChar),
            ("/a\0b", ControlChar),
            ("/a\x7fb", ControlChar),
            ("/caf\u{e9}", NonAscii),
            ("/\u{ff0f}admin", NonAscii),
            ("/a?b", Delimiter),
            ("/a#b", Delimiter),
            ("/admin;", Semicolon),
            ("/admin;jsessionid=x", Semicolon),
            ("/public/..;/admin", Semicolon),
            ("/public;/../admin", Semicolon),
        ] {
            err(raw, want);
        }
    }

    #[test]
    fn bad_percent_encoding() {
        for raw in [
            "/%", "/a%", "/a%2", "/%zz", "/%2g", "/%g2", "/%%32%65", "/%-1", "/% 2",
        ] {
            err(raw, BadPercent);
        }
    }

    #[test]
    fn encoded_forbidden_characters() {
        for (raw, want) in [
            ("/%2f", EncodedSlash),
            ("/%2F", EncodedSlash),
            ("/a%2Fb", EncodedSlash),
            ("/%5c", EncodedBackslash),
            ("/%5C", EncodedBackslash),
            ("/%23", EncodedHash),
            ("/admin%00", EncodedControl),
            ("/admin%00.css", EncodedControl),
            ("/admin%09", EncodedControl),
            ("/%0d%0a", EncodedControl),
            ("/%1F", EncodedControl),
            ("/%7f", EncodedControl),
        ] {
            err(raw, want);
        }
    }

    #[test]
    fn invalid_utf8_once_decoded() {
        for raw in [
            "/%FF",
            "/%ff",
            "/%C0%AE",
            "/%c0%ae%c0%ae/",
            "/%E2%81",
            "/%80",
            "/%ED%A0%80",
            "/%F8%88%80%80%80",
        ] {
            err(raw, InvalidUtf8);
        }
        ok("/%F0%9F%98%80", "/%F0%9F%98%80");
    }

    /// SECURITY.md section 7: PATH-03, PATH-04, PATH-05 and the PATH-01/PATH-02 classes.
    #[test]
    fn security_path_cases() {
        // PATH-01: dot-segment traversal out of a public prefix (class).
        for (raw, want) in [
            ("/public/../admin", Ok("/admin")),
            ("/public/./../admin", Ok("/admin")),
            ("/public/%2e%2e/admin", Ok("/admin")),
            ("/public/%2e%2e%2fadmin", Err(EncodedSlash)),
            ("/public/..%2fadmin", Err(EncodedSlash)),
            ("/public/..\\admin", Err(Backslash)),
            ("/public/..;/admin", Err(Semicolon)),
            ("/public/%252e%252e/admin", Ok("/public/%252e%252e/admin")),
            ("/public/../../admin", Err(ClimbsAboveRoot)),
            ("/public/x/../../admin", Ok("/admin")),
            ("/public/.../admin", Err(SegmentEnd)),
        ] {
            assert_eq!(normalize(raw), want.map(String::from), "PATH-01 {raw:?}");
        }
        // PATH-02: encoded delimiters, query and fragment (class).
        for (raw, want) in [
            ("/public%23/../admin", Err(EncodedHash)),
            ("/public/%23/../../admin", Err(EncodedHash)),
            ("/public%3F/../admin", Ok("/admin")),
            ("/public%3f", Ok("/public%3F")),
            ("/public?/../admin", Err(Delimiter)),
            ("/public#/../admin", Err(Delimiter)),
            ("/public%2f..%2fadmin", Err(EncodedSlash)),
            ("/public%00/../admin", Err(EncodedControl)),
        ] {
            assert_eq!(normalize(raw), want.map(String::from), "PATH-02 {raw:?}");
        }
        // PATH-03: repeated slashes and segment boundaries.
        for (raw, want) in [
            ("//admin", "/admin"),
            ("///admin", "/admin"),
            ("/./admin", "/admin"),
            ("/admin//", "/admin/"),
            ("/publicity/secret", "/publicity/secret"),
            ("/public-old/x", "/public-old/x"),
            ("/public", "/public"),
        ] {
            ok(raw, want);
        }
        // PATH-04: case, suffixes, path parameters, encoded unreserved characters.
        for (raw, want) in [
            ("/ADMIN", Ok("/ADMIN")),
            ("/Admin/", Ok("/Admin/")),
            ("/admin.", Err(SegmentEnd)),
            ("/admin./", Err(SegmentEnd)),
            ("/admin%20", Err(SegmentEnd)),
            ("/admin%09", Err(EncodedControl)),
            ("/admin;", Err(Semicolon)),
            ("/admin;jsessionid=x", Err(Semicolon)),
            ("/admin%00", Err(EncodedControl)),
            ("/admin%00.css", Err(EncodedControl)),
            ("/admin.json", Ok("/admin.json")),
            ("/%61dmin", Ok("/admin")),
            ("/adm%69n", Ok("/admin")),
            ("/%2561dmin", Ok("/%2561dmin")),
        ] {
            assert_eq!(normalize(raw), want.map(String::from), "PATH-04 {raw:?}");
        }
        // PATH-05: encoded slashes and backslashes, and non-ASCII.
        for (raw, want) in [
            ("/public%2F..%2Fadmin", EncodedSlash),
            ("/public/x%2F..%2F..%2Fadmin", EncodedSlash),
            ("/public%5C..%5Cadmin", EncodedBackslash),
            ("/public/%c0%ae%c0%ae/admin", InvalidUtf8),
        ] {
            err(raw, want);
        }
        // U+FF0F FULLWIDTH SOLIDUS is valid UTF-8 but is data, not a separator: kept encoded.
        ok(
            "/public/%ef%bc%8f..%ef%bc%8fadmin",
            "/public/%EF%BC%8F..%EF%BC%8Fadmin",
        );
        // A raw 0xFF byte cannot be in a &str; its lossy form is non-ASCII.
        err(&String::from_utf8_lossy(b"/public/\xff"), NonAscii);
    }

    /// Deterministic xorshift64* generator; no external crates.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// PATH-06 property: every accepted output is rooted, merged, dot-free, free of encoded
    /// separators and a fixed point of `normalize`.
    #[test]
    fn property_random_paths() {
        const ALPHABET: [&str; 20] = [
            "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "\\", ";", "%00", "%23", "%3F", "?", "#",
            "%25", "public", "admin", "x", "A", "%61",
        ];
        const CASES: usize = 150_000;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut accepted, mut rejected) = (0usize, 0usize);
        for _ in 0..CASES {
            let mut raw = String::new();
            // Mostly rooted inputs, so that many are accepted.
            if rng.below(8) != 0 {
                raw.push('/');
            }
            for _ in 0..1 + rng.below(12) {
                raw.push_str(ALPHABET[rng.below(ALPHABET.len())]);
            }
            match normalize(&raw) {
                Ok(out) => {
                    accepted += 1;
                    assert!(out.starts_with('/'), "{raw:?} -> {out:?}");
                    assert!(!out.contains("//"), "{raw:?} -> {out:?}");
                    assert!(
                        out.split('/').all(|s| s != "." && s != ".."),
                        "dot segment: {raw:?} -> {out:?}"
                    );
                    let upper = out.to_ascii_uppercase();
                    for bad in [
                        "%2F", "%5C", "%23", "%00", "%2E", "%61", "\\", ";", "?", "#",
                    ] {
                        assert!(!upper.contains(bad), "{bad} in {raw:?} -> {out:?}");
                    }
                    assert_eq!(normalize(&out), Ok(out.clone()), "not idempotent: {raw:?}");
                }
                Err(_) => rejected += 1,
            }
        }
        assert_eq!(accepted + rejected, CASES);
        // The generator must exercise both outcomes substantially.
        assert!(accepted > CASES / 20, "only {accepted} accepted");
        assert!(rejected > CASES / 20, "only {rejected} rejected");
    }

    #[test]
    fn errors_have_lower_case_messages() {
        for e in [
            NotAbsolute,
            TooLong,
            Backslash,
            EncodedSlash,
            ClimbsAboveRoot,
            InvalidUtf8,
        ] {
            let msg = e.to_string();
            assert!(
                msg.chars().next().is_some_and(|c| c.is_ascii_lowercase()),
                "{msg}"
            );
        }
    }
}
