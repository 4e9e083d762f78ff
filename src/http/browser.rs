//! Browser detection for unauthenticated requests to protected routes.
//!
//! SPEC ("Requests to protected routes"): a browser (`GET`/`HEAD` whose
//! `Accept` includes `text/html`) is sent to the IdP with a 302; anything else
//! gets 401 JSON. Redirecting an API call or a `fetch()` to an IdP login page
//! only produces a CORS error or an HTML body a script cannot use, so the test
//! prefers the most specific signal present:
//!
//! 1. Only `GET` and `HEAD` can be navigations worth redirecting.
//! 2. `X-Requested-With` (jQuery, Angular, …) marks a script: 401.
//! 3. `Sec-Fetch-Mode` (Fetch Metadata, W3C): `navigate` or not.
//! 4. `Sec-Fetch-Dest`: `document`, `iframe` or `frame`, or not.
//! 5. `Accept` (RFC 9110 §12.5.1) lists `text/html` or `application/xhtml+xml`
//!    with a qvalue above 0 (RFC 9110 §12.4.2). Wildcards (`*/*`, `text/*`)
//!    do not count: curl and most HTTP libraries send `*/*`.

use http::Method;
use http::header::{ACCEPT, HeaderMap, HeaderName};

/// `X-Requested-With`.
const X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
/// `Sec-Fetch-Mode`.
const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
/// `Sec-Fetch-Dest`.
const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

/// Media types that mark a document navigation.
const HTML_TYPES: [&str; 2] = ["text/html", "application/xhtml+xml"];

/// True when an unauthenticated request should be redirected to the IdP
/// (302) rather than answered 401 JSON. See the module docs for the rules.
pub fn is_browser_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    if headers.contains_key(X_REQUESTED_WITH) {
        return false;
    }
    if headers.contains_key(SEC_FETCH_MODE) {
        return all_values_in(headers, &SEC_FETCH_MODE, &["navigate"]);
    }
    if headers.contains_key(SEC_FETCH_DEST) {
        return all_values_in(headers, &SEC_FETCH_DEST, &["document", "iframe", "frame"]);
    }
    accepts_html(headers)
}

/// True when every line of `name` is (trimmed, case-insensitively) one of
/// `allowed`. Browsers send one line; disagreeing duplicates are not trusted.
fn all_values_in(headers: &HeaderMap, name: &HeaderName, allowed: &[&str]) -> bool {
    headers.get_all(name).iter().all(|v| {
        v.to_str()
            .is_ok_and(|v| allowed.iter().any(|a| a.eq_ignore_ascii_case(v.trim())))
    })
}

/// True when the `Accept` lines, combined, list an HTML type with q > 0.
fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(','))
        .filter_map(parse_media_range)
        .any(|(media, q)| q > 0 && HTML_TYPES.iter().any(|t| t.eq_ignore_ascii_case(media)))
}

/// Splits one Accept member into its media range and its weight in
/// thousandths (1000 when no `q`). `None` for an empty member or an invalid
/// qvalue, which then counts for nothing.
fn parse_media_range(member: &str) -> Option<(&str, u16)> {
    let mut parts = member.split(';');
    let media = parts.next()?.trim();
    if media.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("q") {
            q = parse_qvalue(value.trim())?;
            // Parameters after `q` are accept-ext, not media parameters.
            break;
        }
    }
    Some((media, q))
}

/// RFC 9110 §12.4.2: `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`,
/// returned in thousandths.
fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const CHROME_NAV: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
    const FIREFOX_NAV: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    const SAFARI_NAV: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    const CHROME_IMG: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    const CHROME_CSS: &str = "text/css,*/*;q=0.1";

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).expect("test name"),
                HeaderValue::from_str(v).expect("test value"),
            );
        }
        h
    }

    #[test]
    fn navigation_table() {
        let get = Method::GET;
        /// (label, method, fields, expected)
        type Case = (
            &'static str,
            Method,
            &'static [(&'static str, &'static str)],
            bool,
        );
        let cases: &[Case] = &[
            // Real browser navigations, with and without Fetch Metadata.
            (
                "chrome navigate",
                get.clone(),
                &[
                    ("accept", CHROME_NAV),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "document"),
                    ("sec-fetch-site", "none"),
                    ("sec-fetch-user", "?1"),
                ],
                true,
            ),
            (
                "firefox accept only",
                get.clone(),
                &[("accept", FIREFOX_NAV)],
                true,
            ),
            (
                "safari navigate",
                get.clone(),
                &[
                    ("accept", SAFARI_NAV),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "document"),
                ],
                true,
            ),
            (
                "HEAD navigation",
                Method::HEAD,
                &[("accept", FIREFOX_NAV)],
                true,
            ),
            (
                "iframe navigation",
                get.clone(),
                &[
                    ("accept", CHROME_NAV),
                    ("sec-fetch-mode", "navigate"),
                    ("sec-fetch-dest", "iframe"),
                ],
                true,
            ),
            (
                "plain text/html",
                get.clone(),
                &[("accept", "text/html")],
                true,
            ),
            (
                "xhtml only",
                get.clone(),
                &[("accept", "application/xhtml+xml")],
                true,
            ),
            ("upper case", get.clone(), &[("accept", "TEXT/HTML")], true),
            (
                "spaces",
                get.clone(),
                &[("accept", "application/json , text/html ; q=0.5")],
                true,
            ),
            (
                "charset param",
                get.clone(),
                &[("accept", "text/html;charset=utf-8")],
                true,
            ),
            (
                "small q",
                get.clone(),
                &[("accept", "text/html;q=0.001")],
                true,
            ),
            (
                "q=1.000",
                get.clone(),
                &[("accept", "text/html;Q=1.000")],
                true,
            ),
            (
                "q spaces",
                get.clone(),
                &[("accept", "text/html; q = 0.5")],
                true,
            ),
            (
                "accept lines combine",
                get.clone(),
                &[("accept", "application/json"), ("accept", "text/html")],
                true,
            ),
            // Non-browsers.
            ("curl", get.clone(), &[("accept", "*/*")], false),
            ("no accept", get.clone(), &[], false),
            ("text wildcard", get.clone(), &[("accept", "text/*")], false),
            (
                "json",
                get.clone(),
                &[("accept", "application/json")],
                false,
            ),
            (
                "chrome image",
                get.clone(),
                &[("accept", CHROME_IMG)],
                false,
            ),
            (
                "chrome stylesheet",
                get.clone(),
                &[("accept", CHROME_CSS)],
                false,
            ),
            ("q=0", get.clone(), &[("accept", "text/html;q=0")], false),
            (
                "q=0.000",
                get.clone(),
                &[("accept", "text/html;q=0.000, */*")],
                false,
            ),
            (
                "q=0 xhtml",
                get.clone(),
                &[("accept", "text/html;q=0,application/xhtml+xml;q=0")],
                false,
            ),
            (
                "bad q too precise",
                get.clone(),
                &[("accept", "text/html;q=0.0001")],
                false,
            ),
            (
                "bad q above 1",
                get.clone(),
                &[("accept", "text/html;q=1.5")],
                false,
            ),
            (
                "bad q text",
                get.clone(),
                &[("accept", "text/html;q=high")],
                false,
            ),
            (
                "bad q empty",
                get.clone(),
                &[("accept", "text/html;q=")],
                false,
            ),
            (
                "html as param",
                get.clone(),
                &[("accept", "application/json;x=text/html")],
                false,
            ),
            (
                "html prefix",
                get.clone(),
                &[("accept", "text/htmlx")],
                false,
            ),
            (
                "empty members",
                get.clone(),
                &[("accept", ",,;q=1,")],
                false,
            ),
            // fetch()/XHR from a page.
            (
                "fetch cors",
                get.clone(),
                &[
                    ("accept", "*/*"),
                    ("sec-fetch-mode", "cors"),
                    ("sec-fetch-dest", "empty"),
                ],
                false,
            ),
            (
                "fetch asking for html",
                get.clone(),
                &[
                    ("accept", "text/html"),
                    ("sec-fetch-mode", "cors"),
                    ("sec-fetch-dest", "empty"),
                ],
                false,
            ),
            (
                "same-origin fetch",
                get.clone(),
                &[("accept", "text/html"), ("sec-fetch-mode", "same-origin")],
                false,
            ),
            (
                "no-cors",
                get.clone(),
                &[("accept", "text/html"), ("sec-fetch-mode", "no-cors")],
                false,
            ),
            (
                "xhr",
                get.clone(),
                &[
                    ("accept", "text/html, */*"),
                    ("x-requested-with", "XMLHttpRequest"),
                ],
                false,
            ),
            (
                "xhr beats navigate",
                get.clone(),
                &[
                    ("accept", CHROME_NAV),
                    ("x-requested-with", "x"),
                    ("sec-fetch-mode", "navigate"),
                ],
                false,
            ),
            // Sec-Fetch-Mode decides over Dest and Accept.
            (
                "mode navigate, json accept",
                get.clone(),
                &[
                    ("accept", "application/json"),
                    ("sec-fetch-mode", "navigate"),
                ],
                true,
            ),
            (
                "mode case",
                get.clone(),
                &[("sec-fetch-mode", "Navigate")],
                true,
            ),
            (
                "mode mixed duplicates",
                get.clone(),
                &[("sec-fetch-mode", "navigate"), ("sec-fetch-mode", "cors")],
                false,
            ),
            // Sec-Fetch-Dest without Mode.
            (
                "dest document",
                get.clone(),
                &[("sec-fetch-dest", "document")],
                true,
            ),
            (
                "dest frame",
                get.clone(),
                &[("sec-fetch-dest", "frame")],
                true,
            ),
            (
                "dest image",
                get.clone(),
                &[("accept", "text/html"), ("sec-fetch-dest", "image")],
                false,
            ),
            (
                "dest empty",
                get.clone(),
                &[("accept", "text/html"), ("sec-fetch-dest", "empty")],
                false,
            ),
            // Methods.
            (
                "POST with html",
                Method::POST,
                &[("accept", "text/html")],
                false,
            ),
            (
                "POST navigate",
                Method::POST,
                &[("accept", CHROME_NAV), ("sec-fetch-mode", "navigate")],
                false,
            ),
            ("PUT", Method::PUT, &[("accept", "text/html")], false),
            (
                "OPTIONS",
                Method::OPTIONS,
                &[("accept", "text/html")],
                false,
            ),
        ];
        for (label, method, fields, want) in cases {
            assert_eq!(
                is_browser_navigation(method, &map(fields)),
                *want,
                "{label}"
            );
        }
    }

    #[test]
    fn non_ascii_accept_is_ignored_not_panicking() {
        let mut h = HeaderMap::new();
        h.append(
            ACCEPT,
            HeaderValue::from_bytes(b"text/html\xff").expect("obs-text"),
        );
        assert!(!is_browser_navigation(&Method::GET, &h));
        h.append(ACCEPT, HeaderValue::from_static("text/html"));
        assert!(is_browser_navigation(&Method::GET, &h));
    }

    #[test]
    fn qvalue_table() {
        let cases = [
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.123", Some(123)),
            ("1", Some(1000)),
            ("1.0", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0.1234", None),
            ("2", None),
            ("-0", None),
            ("", None),
            (".5", None),
            ("0.5x", None),
            ("00.5", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_qvalue(input), want, "{input:?}");
        }
    }
}
