//! SECURITY.md §8, request smuggling and malformed HTTP (HTTP-01..HTTP-10), over raw
//! sockets with keep-alive; the upstream echo records every request it parses. HTTP-01 is
//! HOLDOUT: our own strongest inputs. HTTP-08 is covered by tests/it/websocket.rs.

use std::time::{Duration, Instant};

use crate::security_support::*;
use crate::support::*;

const SMUGGLED: &str =
    "GET /admin HTTP/1.1\r\nHost: app.example.com\r\nX-Auth-Request-User: u-bob\r\n\r\n";

/// Sends `req` on a fresh keep-alive connection; the answer and whether the proxy closed.
async fn send(sec: &Sec, req: &str) -> (String, bool) {
    raw_for(sec.proxy.addr, req.as_bytes(), Duration::from_millis(1500)).await
}

/// 400 (or one of `also`), exactly one response, connection closed, nothing for /admin
/// reached the upstream.
fn closed_400(sec: &Sec, name: &str, answer: &(String, bool), also: &[u16]) {
    let (r, closed) = answer;
    let s = raw_status(r);
    assert!(s == 400 || also.contains(&s), "{name}: {s}: {r:.300}");
    assert_eq!(
        r.matches("HTTP/1.1 ").count(),
        1,
        "{name}: one response: {r:.500}"
    );
    assert!(closed, "{name}: connection left open");
    assert!(
        sec.up.seen().iter().all(|x| !x.uri.starts_with("/admin")),
        "{name}: smuggled request reached the upstream"
    );
}

#[tokio::test]
async fn http_01_cl_te_and_te_cl() {
    let sec = Sec::start().await;
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let n = body.len();
    let cases = [
        format!(
            "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ),
        format!(
            "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{body}"
        ),
        format!(
            "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {n}\r\nTransfer-Encoding: identity, chunked\r\n\r\n{body}"
        ),
        format!(
            "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ),
        format!(
            "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nContent-length: {n}\r\ntransfer-encoding: CHUNKED\r\n\r\n{body}"
        ),
        format!(
            "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ),
        format!(
            "POST /private HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        ),
    ];
    for (i, c) in cases.iter().enumerate() {
        let a = send(&sec, c).await;
        closed_400(&sec, &format!("case {i}"), &a, &[]);
    }
    sec.upstream_untouched();
    // On a kept-alive connection (second request): chunked wins (RFC 9112 §6.1), the
    // connection closes after the response, and the smuggled request is never parsed.
    let first = "GET /public/one HTTP/1.1\r\nHost: app.example.com\r\n\r\n";
    let second = format!(
        "POST /public/two HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
    );
    let (r, closed) = send(&sec, &format!("{first}{second}")).await;
    assert!(r.matches("HTTP/1.1 ").count() <= 2, "{r}");
    assert!(closed);
    assert!(sec.up.seen().iter().all(|x| !x.uri.starts_with("/admin")));
    assert!(
        sec.up.seen().iter().all(|x| x.body.is_empty()),
        "chunked body was empty"
    );
    sec.finish().await;
}

#[tokio::test]
async fn http_02_duplicate_or_invalid_content_length() {
    let sec = Sec::start().await;
    let body = SMUGGLED.to_string();
    for cl in [
        "Content-Length: 0\r\nContent-Length: 46",
        "Content-Length: 46, 0",
        "Content-Length: +46",
        "Content-Length: 0x2e",
        "Content-Length: -1",
        "Content-Length: 4 6",
        "Content-Length: 99999999999999999999",
        "Content-Length: 46\r\nContent-Length: 46",
    ] {
        let req = format!("POST /public/x HTTP/1.1\r\nHost: app.example.com\r\n{cl}\r\n\r\n{body}");
        let a = send(&sec, &req).await;
        closed_400(&sec, cl, &a, &[]);
    }
    // Control: "46, 46" may be folded into one value (RFC 9110 §8.6) or refused.
    let req = format!(
        "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {}, {}\r\nConnection: close\r\n\r\n{body}",
        body.len(),
        body.len()
    );
    let (r, _) = send(&sec, &req).await;
    assert!(matches!(raw_status(&r), 200 | 400), "{r}");
    assert!(sec.up.seen().iter().all(|x| !x.uri.starts_with("/admin")));
    sec.finish().await;
}

#[tokio::test]
async fn http_03_obfuscated_transfer_encoding() {
    let sec = Sec::start().await;
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let n = body.len();
    for te in [
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: x",
        "Transfer-Encoding: chunked\t",
        "Transfer-Encoding: chunked ",
        "Transfer-Encoding :chunked",
        "Transfer-Encoding:\r\n chunked",
        "Transfer-Encoding: \"chunked\"",
        "Transfer-Encoding: gzip",
    ] {
        // "chunked" + trailing OWS is "chunked" (RFC 9110 §5.5): on its own it is valid
        // framing, so those two are only ambiguous together with Content-Length.
        let ows = te.ends_with('\t') || te.ends_with(' ');
        for cl in ["", &*format!("Content-Length: {n}\r\n")] {
            if ows && cl.is_empty() {
                continue;
            }
            let req = format!(
                "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\n{cl}{te}\r\n\r\n{body}"
            );
            let a = send(&sec, &req).await;
            closed_400(&sec, &format!("{te:?} {cl:?}"), &a, &[501]);
        }
    }
    // TE in an HTTP/1.0 request.
    let a = send(&sec, &format!("POST /public/x HTTP/1.0\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n{body}")).await;
    closed_400(&sec, "HTTP/1.0 TE", &a, &[501]);
    sec.upstream_untouched();
    // Control: the name is case-insensitive.
    let (r, _) = send(&sec, "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\ntRANSFER-ENCODING: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n").await;
    assert_eq!(raw_status(&r), 200, "{r}");
    assert_eq!(sec.up.last().body, b"abc");
    sec.finish().await;
}

#[tokio::test]
async fn http_04_chunk_framing_abuse() {
    let sec = Sec::start().await;
    let ext = format!("5;a={}\r\nhello\r\n0\r\n\r\n", "x".repeat(65_536));
    let trailer = format!("5\r\nhello\r\n0\r\nX-T: {}\r\n\r\n", "t".repeat(1 << 20));
    for (name, chunks) in [
        (
            "64-bit overflow",
            "ffffffffffffffff1\r\nhello\r\n0\r\n\r\n".to_string(),
        ),
        (
            "2^64",
            "10000000000000000\r\nhello\r\n0\r\n\r\n".to_string(),
        ),
        ("negative", "-1\r\nhello\r\n0\r\n\r\n".to_string()),
        ("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n".to_string()),
        ("plus", "+5\r\nhello\r\n0\r\n\r\n".to_string()),
        ("64 KiB extension", ext),
        ("data ended by bare LF", "5\r\nhello\n0\r\n\r\n".to_string()),
        ("1 MiB trailer", trailer),
    ] {
        let req = format!(
            "POST /private HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}{SMUGGLED}"
        );
        let (r, closed) = send(&sec, &req).await;
        // On a protected route without a session: 401 before any body is read; the body is
        // never parsed as a request and the connection does not stay in a desynchronised state.
        assert!(matches!(raw_status(&r), 400 | 401), "{name}: {r:.200}");
        assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "{name}: {r:.400}");
        let _ = closed;
        // On a public route the body is streamed: the bad chunk aborts the upstream request,
        // and the client never gets a 200 for it.
        let req = format!(
            "POST /public/x HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            req.split_once("\r\n\r\n").unwrap().1
        );
        let (r, closed) = send(&sec, &req).await;
        assert!(
            raw_status(&r) != 200
                || !sec.up.last().body.ends_with(b"hello")
                || name == "data ended by bare LF",
            "{name}: {r:.200}"
        );
        assert!(r.matches("HTTP/1.1 ").count() <= 1, "{name}: {r:.400}");
        assert!(closed, "{name}: connection left open after a framing error");
    }
    // The final CRLF missing: the proxy waits for it; nothing is smuggled.
    assert!(sec.up.seen().iter().all(|x| !x.uri.starts_with("/admin")));
    sec.finish().await;
}

#[tokio::test]
async fn http_05_obsolete_line_folding() {
    let sec = Sec::start().await;
    let b = sec.browser();
    sec.login(&b, "https://app.example.com/").await;
    let n = sec.up.count();
    let alice = b.cookie("_portcullis").unwrap();
    for req in [
        "GET /private HTTP/1.1\r\nHost: app.example.com\r\nX-Foo: bar\r\n X-Auth-Request-User: u-bob\r\n\r\n".to_string(),
        format!("GET /private HTTP/1.1\r\nHost: app.example.com\r\nCookie: theme=dark\r\n\t_portcullis={alice}\r\n\r\n"),
        "GET /public/x HTTP/1.1\r\nHost: app.example.com\r\nX-Foo: bar\r\n\tX-Auth-Request-User: u-bob\r\n\r\n".to_string(),
    ] {
        let a = send(&sec, &req).await;
        closed_400(&sec, &req, &a, &[]);
    }
    sec.upstream_saw(n);
    sec.finish().await;
}

#[tokio::test]
async fn http_06_line_endings_controls_request_line() {
    let sec = Sec::start().await;
    for (name, req, ok) in [
        ("bare CR", "GET /public/x HTTP/1.1\r\nHost: app.example.com\r\nX-A: x\rX-Auth-Request-User: u-bob\r\n\r\n".to_string(), &[400u16][..]),
        ("NUL", "GET /public/x HTTP/1.1\r\nHost: app.example.com\r\nX-A: a\0b\r\n\r\n".to_string(), &[400]),
        ("whitespace line", "GET /public/x HTTP/1.1\r\n \r\nHost: app.example.com\r\n\r\n".to_string(), &[400]),
        ("trailing space", "GET /public/x HTTP/1.1 \r\nHost: app.example.com\r\n\r\n".to_string(), &[400]),
        ("double space", "GET  /public/x HTTP/1.1\r\nHost: app.example.com\r\n\r\n".to_string(), &[400]),
        ("HTTP/1.2", "GET /public/x HTTP/1.2\r\nHost: app.example.com\r\n\r\n".to_string(), &[400, 505]),
        ("HTTP/2.0 text", "GET /public/x HTTP/2.0\r\nHost: app.example.com\r\n\r\n".to_string(), &[400, 505]),
        ("HTTP/0.9", "GET /public/x\r\n\r\n".to_string(), &[400, 505]),
        ("100 KiB request line", format!("GET /public/{} HTTP/1.1\r\nHost: app.example.com\r\n\r\n", "a".repeat(100 * 1024)), &[414, 431]),
    ] {
        let a = send(&sec, &req).await;
        let s = raw_status(&a.0);
        // HTTP/0.9 gets no status line at all from some servers: a close without a response
        // is also a refusal.
        if name == "HTTP/0.9" && s == 0 {
            assert!(a.1);
            continue;
        }
        closed_400(&sec, name, &a, ok);
    }
    sec.upstream_untouched();
    // Bare LF line endings may be tolerated; an unknown method is gated like any other.
    let (r, _) = send(
        &sec,
        "GET /public/x HTTP/1.1\nHost: app.example.com\nConnection: close\n\n",
    )
    .await;
    assert!(matches!(raw_status(&r), 200 | 400), "{r}");
    let (r, _) = send(
        &sec,
        "FOO /private HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(matches!(raw_status(&r), 401 | 405 | 501), "{r}");
    assert!(sec.up.seen().iter().all(|x| !x.uri.starts_with("/private")));
    sec.finish().await;
}

#[tokio::test]
async fn http_07_host_and_authority_anomalies() {
    // Missing/duplicated Host, @, :80:80, trailing dot and wildcards: paths.rs
    // request_target_forms_and_hosts. Here: the empty Host and the HTTP/2 authority mismatch.
    let sec = Sec::start().await;
    let (r, _) = send(
        &sec,
        "GET /public/x HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&r), 400, "{r}");
    let (r, _) = send(
        &sec,
        "GET /public/x HTTP/1.1\r\nHost: app.example.com, evil.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&r), 400, "{r}");
    let mut h2 = h2c(sec.proxy.addr).await;
    let req = http::Request::get("http://app.example.com/public/x")
        .header("host", "evil.com")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    match h2.send_request(req).await {
        Ok(resp) => assert_eq!(resp.status(), 400),
        Err(e) => assert!(!e.to_string().is_empty(), "stream reset"),
    }
    let req = http::Request::get("http://docs.example.com/public/x")
        .header("host", "app.example.com")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    if let Ok(resp) = h2.send_request(req).await {
        assert_eq!(resp.status(), 400);
    }
    sec.upstream_untouched();
    sec.finish().await;
}

#[tokio::test]
async fn http_09_h2_to_h1_downgrade() {
    let sec = Sec::start().await;
    let mut h2 = h2c(sec.proxy.addr).await;
    // content-length: 0 with a DATA frame holding a request.
    let req = http::Request::post("http://app.example.com/public/x")
        .header("content-length", "0")
        .body(http_body_util::Full::new(bytes::Bytes::from(SMUGGLED)))
        .unwrap();
    // A stream reset (Err) is fine; an answer is a 400, or a 200 for a zero-length body.
    if let Ok(resp) = h2.send_request(req).await {
        assert!(
            resp.status() == 400 || resp.status() == 200,
            "{}",
            resp.status()
        );
    }
    // content-length larger than the DATA.
    let mut h2 = h2c(sec.proxy.addr).await;
    let req = http::Request::post("http://app.example.com/public/y")
        .header("content-length", "500")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"short",
        )))
        .unwrap();
    let _ = h2.send_request(req).await;
    // /admin never appears upstream, and the DATA beyond `content-length: 0` is never
    // forwarded. (A stream that ends short of its content-length is aborted towards the
    // upstream: the echo then records the head with an empty body.)
    for s in sec.up.seen() {
        assert!(!s.uri.starts_with("/admin"));
        if s.uri == "/public/x" {
            assert!(
                s.body.is_empty(),
                "the DATA beyond content-length 0 was forwarded"
            );
        }
    }
    // :path with dot segments is normalised exactly like HTTP/1.1.
    let mut h2 = h2c(sec.proxy.addr).await;
    let req = http::Request::get("http://app.example.com/public/../admin")
        .header("accept", "application/json")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 401);
    // (The aborted /public/y above may still reach the upstream from another worker thread,
    // so look for /admin rather than counting.)
    assert!(sec.up.seen().iter().all(|s| !s.uri.contains("admin")));
    sec.finish().await;
}

// === A raw HTTP/2 client (RFC 9113 frames, RFC 7541 HPACK without Huffman) ===
//
// hyper's client and the h2 crate refuse to send malformed requests, so the HTTP-09 variants
// are written frame by frame: connection preface, SETTINGS, one HEADERS frame (END_HEADERS,
// END_STREAM unless DATA follows), the field block as "literal without indexing, new name"
// representations (RFC 7541 §6.2.2) with raw (H = 0) strings.

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_GOAWAY: u8 = 0x7;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const PROTOCOL_ERROR: u32 = 0x1;

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A field block of literal-without-indexing, new-name fields, bytes exactly as given.
fn hpack_literals(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend(*name);
        hpack_int(&mut out, 0, 7, value.len());
        out.extend(*value);
    }
    out
}

/// Header fields as raw (name, value) bytes, in order.
type Fields<'a> = Vec<(&'a [u8], &'a [u8])>;

/// What the proxy did with stream 1.
#[derive(Debug, PartialEq)]
enum H2Outcome {
    Status(u16),
    Reset(u32),
    GoAway(u32),
    /// The connection ended (or 3 s passed) without any of the above.
    Nothing,
}

/// Huffman-decodes a string of digits (RFC 7541 Appendix B: '0'..'2' are 5-bit codes
/// 0..2, '3'..'9' 6-bit codes 0x19..0x1f; the padding is all ones).
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < bits.len() {
        if bits[i..].iter().all(|&b| b == 1) && bits.len() - i < 8 {
            break; // padding
        }
        let take = |n: usize| -> Option<u8> {
            bits.get(i..i + n)
                .map(|b| b.iter().fold(0u8, |a, &x| (a << 1) | x))
        };
        match take(5)? {
            c @ 0..=2 => {
                out.push((b'0' + c) as char);
                i += 5;
            }
            _ => match take(6)? {
                c @ 0x19..=0x1f => {
                    out.push((b'3' + c - 0x19) as char);
                    i += 6;
                }
                _ => return None,
            },
        }
    }
    Some(out)
}

/// The `:status` of a response field block: the first field, either indexed from the static
/// table (8..=14) or a literal with the static name index 8 (RFC 7541 Appendix A).
fn h2_status(block: &[u8]) -> Option<u16> {
    let first = *block.first()?;
    if first & 0x80 != 0 {
        return [200, 204, 206, 304, 400, 404, 500]
            .get(usize::from(first & 0x7f).checked_sub(8)?)
            .copied();
    }
    let name_index = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if name_index != 8 {
        return None;
    }
    let (huffman, len) = (block[1] & 0x80 != 0, usize::from(block[1] & 0x7f));
    let raw = block.get(2..2 + len)?;
    let text = if huffman {
        huffman_digits(raw)?
    } else {
        String::from_utf8(raw.to_vec()).ok()?
    };
    text.parse().ok()
}

/// Opens an h2c (prior knowledge) connection to `addr`, sends one request on stream 1 made of
/// `fields` (and `data` in one DATA frame when given), and reads frames until the stream is
/// answered, reset or the connection goes away.
async fn h2_raw(
    addr: std::net::SocketAddr,
    fields: &[(&[u8], &[u8])],
    data: Option<&[u8]>,
) -> H2Outcome {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = H2_PREFACE.to_vec();
    out.extend(h2_frame(FRAME_SETTINGS, 0, 0, &[]));
    let flags = FLAG_END_HEADERS | if data.is_none() { FLAG_END_STREAM } else { 0 };
    out.extend(h2_frame(FRAME_HEADERS, flags, 1, &hpack_literals(fields)));
    if let Some(d) = data {
        out.extend(h2_frame(FRAME_DATA, FLAG_END_STREAM, 1, d));
    }
    s.write_all(&out).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16384];
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload = buf[9..9 + len].to_vec();
            buf.drain(..9 + len);
            let code_at = |i: usize| u32::from_be_bytes(payload[i..i + 4].try_into().unwrap());
            match kind {
                FRAME_SETTINGS if flags & FLAG_ACK == 0 => {
                    let _ = s
                        .write_all(&h2_frame(FRAME_SETTINGS, FLAG_ACK, 0, &[]))
                        .await;
                }
                FRAME_HEADERS if stream == 1 => {
                    // The server's SETTINGS allow no padding/priority surprises here: a
                    // response block without PADDED or PRIORITY flags is expected.
                    assert_eq!(flags & 0x28, 0, "padded or prioritised response headers");
                    return h2_status(&payload)
                        .map_or_else(|| panic!("no :status in {payload:02x?}"), H2Outcome::Status);
                }
                FRAME_RST_STREAM if stream == 1 => return H2Outcome::Reset(code_at(0)),
                FRAME_GOAWAY => return H2Outcome::GoAway(code_at(4)),
                _ => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return H2Outcome::Nothing,
        }
    }
}

#[test]
fn h2_status_decodes_indexed_literal_and_huffman_forms() {
    assert_eq!(h2_status(&[0x88]), Some(200));
    assert_eq!(h2_status(&[0x8c]), Some(400));
    assert_eq!(h2_status(b"\x48\x03401"), Some(401));
    // Huffman: "401" is 011010 00000 00001 (0x68 0x01); "200" is 00010 00000 00000 and one
    // bit of padding (0x10 0x01).
    assert_eq!(h2_status(&[0x48, 0x82, 0x68, 0x01]), Some(401));
    assert_eq!(h2_status(&[0x08, 0x82, 0x10, 0x01]), Some(200));
    assert_eq!(h2_status(&[0x82]), None, ":method GET is not a status");
}

#[tokio::test]
async fn http_09_malformed_h2_fields_never_reach_the_h1_upstream() {
    let sec = Sec::start().await;
    let base =
        |method: &'static [u8], path: &'static [u8]| -> Vec<(&'static [u8], &'static [u8])> {
            vec![
                (b":method", method),
                (b":scheme", b"https"),
                (b":authority", b"app.example.com"),
                (b":path", path),
            ]
        };
    // Control: the raw client's well-formed request on the public route is answered and
    // forwarded, with its extra field and its DATA (so a refusal below is about the field,
    // not the client).
    let mut control = base(b"POST", b"/public/control");
    control.push((b"x-a", b"b"));
    let ok = h2_raw(sec.proxy.addr, &control, Some(b"hello")).await;
    assert_eq!(ok, H2Outcome::Status(200));
    let seen = sec.up.last();
    assert_eq!(
        (
            seen.uri.as_str(),
            seen.one("x-a").as_deref(),
            &seen.body[..]
        ),
        ("/public/control", Some("b"), &b"hello"[..])
    );
    let before = sec.up.count();

    let chunked = format!("0\r\n\r\n{SMUGGLED}");
    let rows: Vec<(&str, Fields, Option<&[u8]>)> = vec![
        (
            "CRLF in a value",
            vec![(b"x-a", b"b\r\nX-Auth-Request-User: u-bob")],
            None,
        ),
        (
            "bare LF in a value",
            vec![(b"x-a", b"b\nX-Auth-Request-User: u-bob")],
            None,
        ),
        (
            "upper-case name",
            vec![(b"X-Auth-Request-User", b"u-bob")],
            None,
        ),
        ("connection", vec![(b"connection", b"keep-alive")], None),
        ("te other than trailers", vec![(b"te", b"gzip")], None),
        (
            "transfer-encoding",
            vec![(b"transfer-encoding", b"chunked")],
            Some(chunked.as_bytes()),
        ),
    ];
    let mut cases: Vec<(&str, Fields, Option<&[u8]>)> = rows
        .into_iter()
        .map(|(name, extra, data)| {
            let method: &'static [u8] = if data.is_some() { b"POST" } else { b"GET" };
            let mut f = base(method, b"/public/h2");
            f.extend(extra);
            (name, f, data)
        })
        .collect();
    cases.push((":path without a slash", base(b"GET", b"admin"), None));
    cases.push((
        ":method holding a request line",
        base(b"GET /admin HTTP/1.1", b"/public/h2"),
        None,
    ));
    for (name, fields, data) in cases {
        let got = h2_raw(sec.proxy.addr, &fields, data).await;
        assert!(
            matches!(
                got,
                H2Outcome::Reset(PROTOCOL_ERROR)
                    | H2Outcome::GoAway(PROTOCOL_ERROR)
                    | H2Outcome::Status(400)
            ),
            "{name}: {got:?}"
        );
        assert_eq!(
            sec.up.count(),
            before,
            "{name}: reached the upstream: {:?}",
            sec.up.last()
        );
    }
    // The proxy keeps serving HTTP/2.
    let ok = h2_raw(sec.proxy.addr, &base(b"GET", b"/public/after"), None).await;
    assert_eq!(ok, H2Outcome::Status(200));
    assert_eq!(sec.up.count(), before + 1);
    sec.finish().await;
}

#[tokio::test]
async fn http_10_unread_bodies_pipelining_early_responses() {
    let sec = Sec::start().await;
    // A body that is itself a request, on a keep-alive connection, without a session.
    let req = format!(
        "POST /private HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    let (r, _) = send(&sec, &req).await;
    assert_eq!(raw_status(&r), 401, "{r}");
    assert_eq!(
        r.matches("HTTP/1.1 ").count(),
        1,
        "the body was parsed as a request: {r}"
    );
    // Expect: 100-continue: no 100 Continue for an unauthenticated request.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sec.proxy.addr)
        .await
        .unwrap();
    s.write_all(format!("POST /private HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", SMUGGLED.len()).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(!head.contains("100 Continue"), "{head}");
    assert_eq!(raw_status(&head), 401, "{head}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = s.write_all(SMUGGLED.as_bytes()).await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(1500), s.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("HTTP/1.1 "), "a second response: {rest}");
    // A 10 GiB Content-Length without a session: immediate 401 and a close, memory flat.
    let started = Instant::now();
    let (r, closed) = send(&sec, "POST /private HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\nContent-Length: 10737418240\r\n\r\npartial").await;
    assert_eq!(raw_status(&r), 401, "{r}");
    assert!(closed, "the connection is closed, not drained for 10 GiB");
    assert!(started.elapsed() < Duration::from_secs(3));
    sec.upstream_untouched();
    sec.finish().await;
}
