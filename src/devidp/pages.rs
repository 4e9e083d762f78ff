//! HTML pages of the development provider: the login form, the "signed out" page and error
//! pages. Self-contained (inline CSS, no scripts, no external assets) and every echoed value is
//! HTML-escaped; responses carry a restrictive Content-Security-Policy.

use std::fmt::Write as _;

/// The banner shown on every page.
pub const BANNER: &str = "Development OpenID provider — any username logs in; not for production";

/// The CSP sent with every page: no scripts, inline styles only, no framing. No `form-action`:
/// browsers apply it to the redirect that follows the login POST, which goes to the client.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
  font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#eef1f5;color:#1d2330}
main{width:min(26rem,92vw);background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(20,30,60,.12);overflow:hidden}
.banner{background:#fff4d6;border-bottom:1px solid #f0d68a;color:#6b4e00;padding:.75rem 1.25rem;font-size:.875rem;font-weight:600}
.body{padding:1.5rem 1.25rem 1.75rem}
h1{font-size:1.35rem;margin:0 0 .25rem}
p.sub{margin:0 0 1.25rem;color:#5a6475;font-size:.9rem}
label{display:block;font-weight:600;font-size:.9rem;margin:1rem 0 .35rem}
.hint{font-weight:400;color:#6b7485}
input[type=text]{width:100%;padding:.6rem .75rem;border:1px solid #c7cdd8;border-radius:8px;font:inherit}
input[type=text]:focus{outline:2px solid #3b6ef5;border-color:transparent}
button{margin-top:1.5rem;width:100%;padding:.7rem;border:0;border-radius:8px;background:#2f5be0;color:#fff;font:inherit;font-weight:600;cursor:pointer}
button:hover{background:#244bc4}
.error{background:#fdecec;color:#8a1c1c;border-radius:8px;padding:.6rem .75rem;font-size:.9rem;margin-bottom:.5rem}
.meta{margin-top:1.25rem;font-size:.78rem;color:#7a8394;overflow-wrap:anywhere}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
";

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{title} · portcullis dev provider</title><style>{STYLE}</style></head>\
         <body><main><div class=\"banner\" role=\"note\">{banner}</div>\
         <div class=\"body\">{body}</div></main></body></html>\n",
        title = escape(title),
        banner = escape(BANNER),
    )
}

/// The login form. `hidden` is the authorization request to carry through the POST; `error`
/// is shown above the form; `username` pre-fills the field (e.g. from `login_hint`).
pub fn login_page(
    issuer: &str,
    client_id: &str,
    hidden: &[(&str, &str)],
    username: &str,
    error: Option<&str>,
) -> String {
    let mut body = String::new();
    body.push_str("<h1>Sign in</h1>");
    let _ = write!(
        body,
        "<p class=\"sub\">to <strong>{}</strong> — type any username; no password is needed.</p>",
        escape(client_id)
    );
    if let Some(err) = error {
        let _ = write!(
            body,
            "<div class=\"error\" role=\"alert\">{}</div>",
            escape(err)
        );
    }
    body.push_str("<form method=\"post\" action=\"/authorize\">");
    for (name, value) in hidden {
        let _ = write!(
            body,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        );
    }
    let _ = write!(
        body,
        "<label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" required maxlength=\"255\" \
         autocomplete=\"username\" autofocus spellcheck=\"false\">\
         <label for=\"groups\">Groups <span class=\"hint\">(optional, comma-separated)</span></label>\
         <input type=\"text\" id=\"groups\" name=\"groups\" placeholder=\"eng, ops\" spellcheck=\"false\">\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"meta\">Usernames starting with <code>admin</code> also get the group \
         <code>admins</code>. Issuer <code>{}</code></p>",
        escape(username),
        escape(issuer)
    );
    layout("Sign in", &body)
}

/// The page shown after RP-initiated logout when there is no (allowed) place to return to.
pub fn signed_out_page(note: Option<&str>) -> String {
    let mut body = String::from(
        "<h1>Signed out</h1><p class=\"sub\">Your session at the development provider has ended. \
         You can close this tab.</p>",
    );
    if let Some(note) = note {
        let _ = write!(body, "<p class=\"meta\">{}</p>", escape(note));
    }
    layout("Signed out", &body)
}

/// An error page (bad client or redirect URI, so the error cannot be sent back to the client).
pub fn error_page(title: &str, detail: &str) -> String {
    let body = format!(
        "<h1>{}</h1><div class=\"error\" role=\"alert\">{}</div>",
        escape(title),
        escape(detail)
    );
    layout(title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_table() {
        let cases = [
            ("plain", "plain"),
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            ("a\"b'c&d", "a&quot;b&#x27;c&amp;d"),
            ("ünï — ok", "ünï — ok"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input}");
        }
    }

    #[test]
    fn login_page_escapes_everything_echoed() {
        let page = login_page(
            "http://127.0.0.1:1",
            "<c>",
            &[("state", "\"><script>x</script>")],
            "<u>",
            Some("<e>"),
        );
        assert!(page.contains(BANNER));
        assert!(!page.contains("<script>"));
        assert!(!page.contains("<c>") && !page.contains("<u>") && !page.contains("<e>"));
        assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""));
    }

    #[test]
    fn other_pages_carry_the_banner() {
        assert!(signed_out_page(Some("<n>")).contains(BANNER));
        assert!(!signed_out_page(Some("<n>")).contains("<n>"));
        let page = error_page("Bad <request>", "<detail>");
        assert!(page.contains(BANNER) && !page.contains("<detail>") && !page.contains("<request>"));
    }
}
