//! A per-worker HTTP/1.1 connection pool for plain-`http` upstreams: the hot path of the
//! proxy (issue 6).
//!
//! Each worker thread owns one pool (see [`crate::server::serve`]), so a pooled connection,
//! the task driving it and the requests using it all stay on one thread. Compared with
//! hyper-util's general client (kept for `https` upstreams, HTTP/2 and WebSocket upgrades) a
//! request here takes no boxed future, no pool-key hashing and no extra task to hand the
//! connection back: connections stay in the pool while busy and a request takes the first one
//! whose previous exchange is complete ([`SendRequest::is_ready`], RFC 9112 §9.3: one
//! request at a time per connection, no pipelining).
//!
//! - A connection the upstream closed is dropped at the next look at the pool.
//! - A request that could not be written on a reused connection (it was closed between the
//!   check and the write) is sent once more on a new connection; a request that was written
//!   is never repeated (RFC 9110 §9.2.2: only the proxy knows it did not reach the upstream).
//! - At most `max_idle` connections per route are kept; more concurrent requests open more
//!   connections, which are closed after their exchange.
//! - A connection whose response body was not read to the end (client gone) is closed by
//!   hyper rather than reused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::http::body::Body;

/// Why the pool produced no response.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    #[error("HTTP/1.1 handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("upstream exchange failed: {0}")]
    Exchange(#[source] hyper::Error),
}

impl PoolError {
    /// Whether the connection could not be established (as opposed to failing mid-exchange).
    pub fn is_connect(&self) -> bool {
        !matches!(self, PoolError::Exchange(_))
    }
}

/// How long an unused connection stays pooled (hyper-util's client: 90 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A pooled connection and when its last request was sent.
struct Pooled {
    sender: SendRequest<Body>,
    used: Instant,
}

/// The connections of one worker, per route.
pub struct H1Pool {
    routes: Mutex<Vec<Vec<Pooled>>>,
    max_idle: usize,
    connect_timeout: Duration,
}

impl H1Pool {
    /// A pool for `routes` routes keeping at most `max_idle` connections per route.
    pub fn new(routes: usize, max_idle: usize, connect_timeout: Duration) -> Self {
        H1Pool {
            routes: Mutex::new((0..routes).map(|_| Vec::new()).collect()),
            max_idle,
            connect_timeout,
        }
    }

    /// Sends `req` (origin-form target, `Host` set) to `host:port` for route `route`.
    pub async fn send(
        &self,
        route: usize,
        host: &str,
        port: u16,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, PoolError> {
        let (mut sender, reused) = match self.checkout(route) {
            Some(s) => (s, true),
            // Boxed: connecting is rare, its future large (see `App::handle`).
            None => (Box::pin(self.connect(host, port)).await?, false),
        };
        let resp = match sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => match e.take_message() {
                // Never written: a reused connection closed under us. One more try, new.
                Some(req) if reused => {
                    sender = Box::pin(self.connect(host, port)).await?;
                    sender
                        .send_request(req)
                        .await
                        .map_err(PoolError::Exchange)?
                }
                _ => return Err(PoolError::Exchange(e.into_error())),
            },
        };
        self.checkin(route, sender);
        Ok(resp)
    }

    /// A connection ready for a new request, dropping closed ones on the way.
    fn checkout(&self, route: usize) -> Option<SendRequest<Body>> {
        let mut routes = lock(&self.routes);
        let conns = routes.get_mut(route)?;
        conns.retain(|c| !c.sender.is_closed());
        let ready = conns.iter().position(|c| c.sender.is_ready())?;
        Some(conns.swap_remove(ready).sender)
    }

    /// Closes connections unused for longer than `idle` (run periodically: an upstream that
    /// never closes idle keep-alive connections would otherwise keep them all).
    pub fn prune(&self, idle: Duration) {
        let now = Instant::now();
        for conns in lock(&self.routes).iter_mut() {
            conns.retain(|c| {
                let idle_too_long = c.sender.is_ready() && now.duration_since(c.used) > idle;
                !c.sender.is_closed() && !idle_too_long
            });
        }
    }

    /// Back into the pool (busy until its response body is read), unless the pool is full.
    fn checkin(&self, route: usize, sender: SendRequest<Body>) {
        let mut routes = lock(&self.routes);
        if let Some(conns) = routes.get_mut(route)
            && conns.len() < self.max_idle
            && !sender.is_closed()
        {
            conns.push(Pooled {
                sender,
                used: Instant::now(),
            });
        }
    }

    async fn connect(&self, host: &str, port: u16) -> Result<SendRequest<Body>, PoolError> {
        let addr = || format!("{host}:{port}");
        let tcp = match tokio::time::timeout(self.connect_timeout, connect(host, port)).await {
            Err(_) => return Err(PoolError::ConnectTimeout(addr())),
            Ok(Err(source)) => {
                return Err(PoolError::Connect {
                    addr: addr(),
                    source,
                });
            }
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(PoolError::Handshake)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// TCP to `host` (a bracketed IPv6 literal, an IP address or a name) and `port`.
async fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => TcpStream::connect((ip, port)).await,
        Err(_) => TcpStream::connect((bare, port)).await,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw upstream answering each request on a connection with `body`, closing after
    /// `per_conn` answers; returns its port and a counter of accepted connections.
    async fn upstream(per_conn: usize) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut answered = 0;
                    let mut chunk = [0u8; 1024];
                    while answered < per_conn {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            answered += 1;
                            let close = if answered == per_conn {
                                "connection: close\r\n"
                            } else {
                                ""
                            };
                            let resp =
                                format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{close}\r\nok");
                            s.write_all(resp.as_bytes()).await.unwrap();
                        }
                    }
                });
            }
        });
        (port, conns)
    }

    fn get() -> Request<Body> {
        Request::get("/x")
            .header("host", "up")
            .body(crate::http::body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (port, conns) = upstream(usize::MAX).await;
        let pool = H1Pool::new(1, 8, Duration::from_secs(5));
        for _ in 0..5 {
            let resp = pool.send(0, "127.0.0.1", port, get()).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_upstream_is_replaced() {
        let (port, conns) = upstream(1).await;
        let pool = H1Pool::new(1, 8, Duration::from_secs(5));
        for _ in 0..3 {
            let resp = pool.send(0, "127.0.0.1", port, get()).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_still_receiving_a_body_is_not_reused() {
        // Every response announces 10 bytes and sends 2: its connection stays busy.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = conns.clone();
        tokio::spawn(async move {
            let mut open = Vec::new();
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut chunk = [0u8; 1024];
                let _ = s.read(&mut chunk).await;
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nok")
                    .await
                    .unwrap();
                open.push(s);
            }
        });
        let pool = H1Pool::new(1, 8, Duration::from_secs(5));
        let a = pool.send(0, "127.0.0.1", port, get()).await.unwrap();
        let b = pool.send(0, "127.0.0.1", port, get()).await.unwrap();
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
        drop((a, b));
    }

    #[tokio::test]
    async fn idle_connections_are_pruned_and_busy_ones_kept() {
        let (port, conns) = upstream(usize::MAX).await;
        let pool = H1Pool::new(1, 8, Duration::from_secs(5));
        let resp = pool.send(0, "127.0.0.1", port, get()).await.unwrap();
        resp.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.prune(Duration::from_secs(60));
        assert_eq!(lock(&pool.routes)[0].len(), 1, "recently used: kept");
        pool.prune(Duration::ZERO);
        assert!(lock(&pool.routes)[0].is_empty(), "idle: closed");
        let resp = pool.send(0, "127.0.0.1", port, get()).await.unwrap();
        resp.into_body().collect().await.unwrap();
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let pool = H1Pool::new(1, 8, Duration::from_secs(5));
        let err = pool.send(0, "127.0.0.1", port, get()).await.unwrap_err();
        assert!(err.is_connect(), "{err}");
    }
}
