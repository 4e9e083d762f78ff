//! Ambiguous message framing on HTTP/1.1 (RFC 9112 §6.1, §6.3; request smuggling).
//!
//! hyper already refuses most framing errors with a 400 (invalid or conflicting
//! `Content-Length` values, a `Transfer-Encoding` not ending in `chunked`, obs-fold, bare CR,
//! NUL). Two cases it accepts, as RFC 9112 allows: `Content-Length` *and*
//! `Transfer-Encoding` together (it drops the length, uses chunked framing and closes the
//! connection after the response), and repeated identical `Content-Length` fields. By the time
//! the request reaches the service the dropped field is gone, so the proxy could not tell.
//! The SPEC wants both answered 400 and the connection closed.
//!
//! [`HeadGuard`] wraps a connection's byte stream and looks at the **first** request head of
//! the connection as hyper reads it: when that head carries both fields, or more than one
//! `Content-Length` (or a list-valued one), it raises a per-connection flag the pipeline
//! checks before anything else. Later requests on the same connection are not scanned (their
//! positions depend on body framing); for them hyper's own rule applies — chunked framing
//! wins and the connection is closed after the response — so nothing smuggled in a body is
//! ever parsed as a request. The scan stops after the first head, so kept-alive traffic pays
//! one branch per read.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The flag shared between a connection's [`HeadGuard`] and its requests.
#[derive(Debug, Clone, Default)]
pub struct AmbiguousFraming(Arc<AtomicBool>);

impl AmbiguousFraming {
    /// Whether the first request head of the connection had ambiguous framing.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Wraps an IO stream and scans the first request head.
pub struct HeadGuard<IO> {
    inner: IO,
    flag: AmbiguousFraming,
    /// Bytes of an incomplete first head (only when it arrives in pieces); `None` when done.
    scan: Option<Vec<u8>>,
    limit: usize,
}

impl<IO> HeadGuard<IO> {
    /// `limit`: give up scanning after this many head bytes (hyper answers 431 beyond its own limit).
    pub fn new(inner: IO, limit: usize) -> (Self, AmbiguousFraming) {
        let flag = AmbiguousFraming::default();
        (
            HeadGuard {
                inner,
                flag: flag.clone(),
                scan: Some(Vec::new()),
                limit,
            },
            flag,
        )
    }

    fn observe(&mut self, new: &[u8]) {
        let Some(buf) = self.scan.as_mut() else {
            return;
        };
        // Common case: the whole head in the first read, no copy.
        let done = if buf.is_empty() {
            match head_end(new) {
                Some(end) => {
                    if ambiguous(&new[..end]) {
                        self.flag.0.store(true, Ordering::Relaxed);
                    }
                    true
                }
                None => {
                    buf.extend_from_slice(&new[..new.len().min(self.limit)]);
                    new.len() >= self.limit
                }
            }
        } else {
            let room = self.limit.saturating_sub(buf.len());
            buf.extend_from_slice(&new[..new.len().min(room)]);
            match head_end(buf) {
                Some(end) => {
                    if ambiguous(&buf[..end]) {
                        self.flag.0.store(true, Ordering::Relaxed);
                    }
                    true
                }
                None => buf.len() >= self.limit,
            }
        };
        if done || new.is_empty() {
            self.scan = None;
        }
    }
}

/// Offset just past the blank line ending the head, if present.
fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| b.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
}

/// Whether a request head frames its body ambiguously: `Content-Length` with
/// `Transfer-Encoding`, several `Content-Length` fields, or a list-valued one.
pub fn ambiguous(head: &[u8]) -> bool {
    if head.starts_with(b"PRI * HTTP/2.0") {
        return false;
    }
    let (mut cl, mut te, mut cl_list) = (0usize, false, false);
    for line in head.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            cl += 1;
            cl_list |= value.contains(&b',');
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
        }
    }
    (cl > 0 && te) || cl > 1 || cl_list
}

impl<IO: AsyncRead + Unpin> AsyncRead for HeadGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.scan.is_some()
            && let Poll::Ready(Ok(())) = res
        {
            self.observe(&buf.filled()[before..]);
        }
        res
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HeadGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn ambiguous_heads() {
        let cases: &[(&[u8], bool)] = &[
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", true),
            (b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n", true),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", true),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", true),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", false),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: content-length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false),
        ];
        for (head, want) in cases {
            assert_eq!(ambiguous(head), *want, "{}", String::from_utf8_lossy(head));
        }
    }

    async fn scan(chunks: &[&[u8]]) -> bool {
        let mut b = tokio_test_reader(chunks);
        let (mut g, flag) = HeadGuard::new(&mut b, 16 * 1024);
        let mut out = Vec::new();
        g.read_to_end(&mut out).await.unwrap();
        flag.is_set()
    }

    fn tokio_test_reader(chunks: &[&[u8]]) -> impl AsyncRead + Unpin {
        let mut all = Vec::new();
        for c in chunks {
            all.extend_from_slice(c);
        }
        // A reader that yields at most 7 bytes per read, so heads arrive in pieces.
        struct Dribble(Vec<u8>, usize);
        impl AsyncRead for Dribble {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let n = (self.0.len() - self.1).min(7).min(buf.remaining());
                let start = self.1;
                buf.put_slice(&self.0[start..start + n]);
                self.1 += n;
                Poll::Ready(Ok(()))
            }
        }
        Dribble(all, 0)
    }

    #[tokio::test]
    async fn guard_sees_split_first_heads_only() {
        assert!(scan(&[b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]).await);
        assert!(
            !scan(&[
                b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            ])
            .await
        );
    }
}
