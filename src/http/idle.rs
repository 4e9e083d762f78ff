//! Idle timeouts for streamed bodies (SECURITY UP-03, and DOS-02 for request bodies).
//!
//! SPEC `[server]` has a deadline for the upstream's response head (`request_timeout`, 504) but
//! no key for a body that stops moving. portcullis decides like nginx, whose
//! `proxy_read_timeout` and `client_body_timeout` (60 s each) apply "between two successive
//! read operations": `request_timeout` also bounds the wait for the **next chunk** of
//! - the upstream's response body streamed to the client: when it stalls, the stream to the
//!   client is aborted (HTTP/1.1: the connection closes before the `Content-Length` or the last
//!   chunk, so the client sees an incomplete message; HTTP/2: the stream is reset), with a WARN
//!   `event=upstream_error reason=upstream_body_timeout`;
//! - the client's request body streamed to the upstream: when it stalls, the upstream request
//!   is abandoned (its connection closed) and the client gets 408 if no response was under way
//!   (`event=client_error reason=client_body_timeout`).
//!
//! The timer measures only the time spent waiting on the wrapped body (from the first
//! `Pending` after a frame), never the time the consumer takes to poll again, so a slow reader
//! (backpressure) is not mistaken for a stalled writer. Per chunk the cost is one
//! `Sleep::reset` of a single pinned timer, created on the first wait.
//!
//! The upstream's response-head deadline starts once the request body has been sent
//! ([`response_head`]): an upload that keeps moving is never cut by `request_timeout`. While it
//! moves, an upstream that stops taking it (nginx's `proxy_send_timeout`) for `request_timeout`
//! is a 504 like one that does not answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::body::{Body, BoxError};

/// A body waited longer than its idle timeout for its next chunk.
#[derive(Debug, thiserror::Error)]
#[error("{side} body idle for longer than {timeout:?}")]
pub struct IdleTimeout {
    side: Side,
    timeout: Duration,
}

/// Which body a wrapper guards (for the error and the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The upstream's response body, streamed to the client.
    Upstream,
    /// The client's request body, streamed to the upstream.
    Client,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Upstream => "upstream response",
            Side::Client => "client request",
        })
    }
}

/// What the sender of a request learns about its streamed request body.
#[derive(Debug, Default)]
pub struct RequestBody {
    /// The last frame was handed over.
    sent: Notify,
    timed_out: AtomicBool,
    /// Frames handed over so far (the upstream is taking the body).
    frames: AtomicU64,
    /// The wrapper waits for the client (the client's turn, not the upstream's).
    waiting: AtomicBool,
}

impl RequestBody {
    /// The request body stalled past the idle timeout (the client's fault: 408).
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }
}

/// A body whose wait for each next frame is bounded by `timeout`.
struct Idle<B> {
    inner: B,
    timeout: Duration,
    /// Created on the first wait, then only reset.
    sleep: Option<Pin<Box<Sleep>>>,
    /// The timer is armed for the current wait.
    waiting: bool,
    timed_out: bool,
    side: Side,
    progress: Option<Arc<RequestBody>>,
}

impl<B> Idle<B> {
    fn error(&self) -> BoxError {
        Box::new(IdleTimeout {
            side: self.side,
            timeout: self.timeout,
        })
    }
}

impl<B> HttpBody for Idle<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(Some(Err(this.error())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                if let Some(p) = &this.progress {
                    p.waiting.store(false, Ordering::Relaxed);
                    p.frames.fetch_add(1, Ordering::Relaxed);
                    if match &frame {
                        None => true,
                        Some(Ok(_)) => this.inner.is_end_stream(),
                        Some(Err(_)) => false,
                    } {
                        p.sent.notify_one();
                    }
                }
                Poll::Ready(frame.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let sleep = match &mut this.sleep {
                    Some(s) => {
                        if !this.waiting {
                            s.as_mut().reset(Instant::now() + this.timeout);
                        }
                        s
                    }
                    None => this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep(this.timeout))),
                };
                if !this.waiting
                    && let Some(p) = &this.progress
                {
                    p.waiting.store(true, Ordering::Relaxed);
                }
                this.waiting = true;
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.timed_out = true;
                match this.side {
                    Side::Upstream => tracing::warn!(
                        event = "upstream_error",
                        reason = "upstream_body_timeout",
                        timeout_ms = this.timeout.as_millis() as u64,
                        "upstream response body stalled; stream to the client aborted"
                    ),
                    Side::Client => {
                        if let Some(p) = &this.progress {
                            p.timed_out.store(true, Ordering::Relaxed);
                        }
                        tracing::info!(
                            event = "client_error",
                            reason = "client_body_timeout",
                            timeout_ms = this.timeout.as_millis() as u64,
                            "client request body stalled; upstream request abandoned"
                        )
                    }
                }
                Poll::Ready(Some(Err(this.error())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.timed_out && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Boxes an upstream response body for streaming to the client, each next chunk awaited at
/// most `idle`.
pub fn response(body: hyper::body::Incoming, idle: Duration) -> Body {
    Idle {
        inner: body,
        timeout: idle,
        sleep: None,
        waiting: false,
        timed_out: false,
        side: Side::Upstream,
        progress: None,
    }
    .boxed()
}

/// Guards a client's request body on its way upstream, each next chunk awaited at most
/// `idle`. An empty body is returned as is, with no progress to watch.
pub fn request(body: Body, idle: Duration) -> (Body, Option<Arc<RequestBody>>) {
    if body.is_end_stream() {
        return (body, None);
    }
    let progress = Arc::new(RequestBody::default());
    let body = Idle {
        inner: body,
        timeout: idle,
        sleep: None,
        waiting: false,
        timed_out: false,
        side: Side::Client,
        progress: Some(progress.clone()),
    }
    .boxed();
    (body, Some(progress))
}

/// Awaits `head` (the upstream's response head) at most `timeout` after the request body was
/// sent (`body`: from [`request`]; `None`: no body, the deadline starts now). `None` when a
/// deadline passed.
///
/// While the body streams, the client's pauses are bounded by the body's own idle timeout,
/// and the upstream's by this watchdog (nginx's `proxy_send_timeout`): an upstream that takes
/// no chunk of the body for `timeout` while one is ready is timed out too (it is checked every
/// `timeout`, so it is noticed between one and two `timeout`s after it stopped).
pub async fn response_head<F: Future>(
    head: F,
    timeout: Duration,
    body: Option<&RequestBody>,
) -> Option<F::Output> {
    let mut head = std::pin::pin!(head);
    if let Some(b) = body {
        let mut seen = b.frames.load(Ordering::Relaxed);
        let watchdog = tokio::time::sleep(timeout);
        let mut watchdog = std::pin::pin!(watchdog);
        loop {
            tokio::select! {
                biased;
                out = &mut head => return Some(out),
                () = b.sent.notified() => break,
                () = &mut watchdog => {
                    let now = b.frames.load(Ordering::Relaxed);
                    if now == seen && !b.waiting.load(Ordering::Relaxed) {
                        return None;
                    }
                    seen = now;
                    watchdog.as_mut().reset(Instant::now() + timeout);
                }
            }
        }
    }
    tokio::time::timeout(timeout, head).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    type Tx = mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

    /// A body fed by hand through a channel (never at its end until the sender is dropped).
    struct Channel(mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

    impl HttpBody for Channel {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx)
        }
    }

    fn channel_body() -> (Tx, Body) {
        let (tx, rx) = mpsc::channel(4);
        (tx, Channel(rx).boxed())
    }

    const T: Duration = Duration::from_secs(60);

    async fn data(tx: &Tx, s: &'static str) {
        tx.send(Ok(Frame::data(Bytes::from_static(s.as_bytes()))))
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn chunks_within_the_idle_bound_pass() {
        let (tx, body) = channel_body();
        let (mut body, progress) = request(body, T);
        let progress = progress.unwrap();
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(T - Duration::from_secs(1)).await;
                data(&tx, "x").await;
            }
        });
        let mut got = 0;
        while let Some(f) = body.frame().await {
            assert_eq!(f.unwrap().into_data().unwrap(), "x");
            got += 1;
        }
        feeder.await.unwrap();
        assert_eq!(got, 5, "five chunks 59 s apart: never idle for 60 s");
        assert!(!progress.timed_out());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_longer_than_the_bound_is_an_error() {
        let (tx, body) = channel_body();
        let (mut body, progress) = request(body, T);
        let progress = progress.unwrap();
        data(&tx, "a").await;
        let started = Instant::now();
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.downcast_ref::<IdleTimeout>().is_some(), "{err}");
        assert_eq!(
            started.elapsed(),
            T,
            "cut exactly one idle bound after the last chunk"
        );
        assert!(progress.timed_out());
        assert!(!body.is_end_stream(), "a cut body never looks complete");
        assert!(body.frame().await.unwrap().is_err(), "it stays failed");
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_is_not_a_stalled_writer() {
        let (tx, body) = channel_body();
        let (mut body, _) = request(body, T);
        data(&tx, "a").await;
        assert!(body.frame().await.unwrap().is_ok());
        // The consumer (a client reading slowly) comes back long after the bound; the next
        // chunk is already there, so nothing is cut.
        data(&tx, "b").await;
        tokio::time::sleep(T * 3).await;
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "b"
        );
        // The consumer is slow again, and this time the next chunk is not there yet when it
        // comes back: the wait starts then, and gets a whole bound.
        tokio::time::sleep(T * 3).await;
        let t = tokio::spawn(async move {
            tokio::time::sleep(T - Duration::from_secs(1)).await;
            data(&tx, "c").await;
        });
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "c"
        );
        t.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn empty_bodies_are_not_wrapped() {
        let (body, progress) = request(super::super::body::empty(), T);
        assert!(progress.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn the_head_deadline_starts_when_the_body_is_sent() {
        let (tx, body) = channel_body();
        let (mut body, progress) = request(body, T);
        let progress = progress.unwrap();
        // The "upstream" reads the body slowly (three chunks, 50 s apart: 150 s in all), then
        // never answers.
        let reader = tokio::spawn(async move {
            while let Some(f) = body.frame().await {
                f.unwrap();
            }
        });
        let feeder = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                data(&tx, "x").await;
            }
        });
        let started = Instant::now();
        let out = response_head(std::future::pending::<()>(), T, Some(&progress)).await;
        assert!(out.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(150) + T);
        feeder.await.unwrap();
        reader.await.unwrap();
        // Without a body the deadline runs from the start; an early answer wins.
        let started = Instant::now();
        assert!(
            response_head(std::future::pending::<()>(), T, None)
                .await
                .is_none()
        );
        assert_eq!(started.elapsed(), T);
        assert_eq!(response_head(async { 7 }, T, None).await, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_that_stops_taking_the_body_is_timed_out() {
        let (tx, body) = channel_body();
        let (mut body, progress) = request(body, T);
        let progress = progress.unwrap();
        // Two chunks are taken, then the "upstream" stops polling while a third is ready.
        for s in ["a", "b", "c"] {
            data(&tx, s).await;
        }
        let reader = tokio::spawn(async move {
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_secs(40)).await;
                body.frame().await.unwrap().unwrap();
            }
            std::future::pending::<()>().await;
        });
        let started = Instant::now();
        let out = response_head(std::future::pending::<()>(), T, Some(&progress)).await;
        assert!(out.is_none());
        let took = started.elapsed();
        // Last chunk taken at 80 s; noticed at the first check a whole bound after it.
        assert!(took > Duration::from_secs(80) + T, "{took:?}");
        assert!(took <= Duration::from_secs(80) + 2 * T, "{took:?}");
        assert!(!progress.timed_out(), "not the client's fault");
        reader.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn size_and_end_are_those_of_the_inner_body() {
        let inner = http_body_util::Full::new(Bytes::from_static(b"hello"))
            .map_err(|never| match never {})
            .boxed();
        let (body, progress) = request(inner, T);
        assert!(progress.is_some());
        assert_eq!(body.size_hint().exact(), Some(5));
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all, "hello");
    }
}
