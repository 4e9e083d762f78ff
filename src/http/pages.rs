//! Small pages the proxy answers itself: HTML for browsers, JSON for everything else.
//!
//! Every page carries `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`, and
//! never echoes tokens, secrets or unescaped input (SPEC "Errors"): the only dynamic parts are
//! fixed reason words, the request id and links the proxy built itself, all HTML-escaped.

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use super::body::{Body, empty, full};

/// What kind of client gets the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Browser,
    Api,
}

/// An error or info page.
#[derive(Debug, Clone)]
pub struct Page<'a> {
    pub status: StatusCode,
    /// Machine word for JSON (`{"error": code}`), e.g. `unauthenticated`, `not_authorized`.
    pub code: &'a str,
    /// One human sentence (static text, never user input).
    pub message: &'a str,
    /// Optional link (already validated/built by the proxy) and its label.
    pub link: Option<(&'a str, &'a str)>,
    /// Correlation id shown on the page and logged.
    pub request_id: &'a str,
}

impl Page<'_> {
    pub fn render(&self, client: Client) -> Response<Body> {
        let (ctype, body) = match client {
            Client::Api => {
                let v = serde_json::json!({ "error": self.code, "request_id": self.request_id });
                ("application/json", v.to_string())
            }
            Client::Browser => ("text/html; charset=utf-8", self.html()),
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        no_store(h);
        resp
    }

    fn html(&self) -> String {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let link = match self.link {
            Some((href, label)) => {
                format!("<p><a href=\"{}\">{}</a></p>", escape(href), escape(label))
            }
            None => String::new(),
        };
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
             content=\"width=device-width,initial-scale=1\"><title>{code} {title}</title><style>body{{font:16px/1.5 \
             system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}\
             small{{color:#777}}</style></head><body><h1>{code} {title}</h1><p>{msg}</p>{link}<p><small>portcullis \
             &middot; request id {rid}</small></p></body></html>",
            code = self.status.as_u16(),
            title = escape(title),
            msg = escape(self.message),
            rid = escape(self.request_id),
        )
    }
}

/// The SPEC's 401 for non-browser clients: `{"error":"unauthenticated"}` + `WWW-Authenticate: Bearer`.
pub fn unauthenticated_json() -> Response<Body> {
    let mut resp = Response::new(full(r#"{"error":"unauthenticated"}"#));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    no_store(h);
    resp
}

/// A 302 to `location` (already validated) with `Cache-Control: no-store`.
pub fn redirect(location: HeaderValue) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::FOUND;
    resp.headers_mut().insert(LOCATION, location);
    no_store(resp.headers_mut());
    resp
}

/// `value` serialised with `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026`: the
/// same JSON, but claim values like `<script>` cannot turn into markup should a client ever
/// sniff or embed it (SECURITY SES-10; those characters only occur inside JSON strings).
pub fn html_safe_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// A JSON 200 with the no-store/nosniff headers.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(html_safe_json(value)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    no_store(resp.headers_mut());
    resp
}

/// A plain-text page (health checks).
pub fn text(status: StatusCode, s: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(s));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    no_store(resp.headers_mut());
    resp
}

/// Adds `Cache-Control: no-store` and `X-Content-Type-Options: nosniff`.
pub fn no_store(h: &mut http::HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

/// HTML escaping for text and double- or single-quoted attribute context.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_markup_and_stays_equal() {
        let v = serde_json::json!({"name": "<script>a&b</script>", "n": 1});
        let text = html_safe_json(&v);
        assert!(
            !text.contains('<') && !text.contains('>') && !text.contains('&'),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"/"><script>alert(1)</script>'"#),
            "/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#39;"
        );
        assert_eq!(escape("a\r\nb\0c"), "abc");
    }

    #[test]
    fn pages_carry_no_store_and_escape_links() {
        let p = Page {
            status: StatusCode::BAD_REQUEST,
            code: "state_mismatch",
            message: "The login could not be completed.",
            link: Some(("/oauth2/start?rd=/a\"b", "Start again")),
            request_id: "r1",
        };
        let r = p.render(Client::Browser);
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let r = p.render(Client::Api);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }
}
