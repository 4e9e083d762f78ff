//! The listener: accept loop, connection limits, HTTP/1.1 + h2c, graceful shutdown.
//!
//! Limits from SPEC `[server]`:
//! - `max_header_bytes`: the request head must fit hyper's read buffer (raised to hyper's
//!   8 KiB minimum when smaller); a larger head is answered 431 and the connection closed.
//!   HTTP/2 gets the same bound as `SETTINGS_MAX_HEADER_LIST_SIZE`.
//! - `max_headers`: more fields than this is a 431.
//! - `header_read_timeout`: a request head must arrive within it (slowloris guard). hyper
//!   starts this timer whenever it waits for a head, including on an idle kept-alive
//!   connection, so idle HTTP/1.1 connections close after `min(header_read_timeout,
//!   keepalive_timeout)`.
//! - `keepalive_timeout`: HTTP/2 connections are pinged every `keepalive_timeout / 3` and
//!   closed when a ping is not answered.
//! - `max_connections`: a connection beyond the limit is closed at once, before any read, so
//!   the process keeps serving the ones it has.
//! - at most 256 concurrent HTTP/2 streams per connection (SECURITY DOS-05).
//!
//! Threads: one current-thread runtime per core, each accepting on the same socket (see
//! [`serve`]).
//!
//! Shutdown: on the signal the listener is dropped, in-flight requests finish, and after
//! `shutdown_timeout` whatever is left is abandoned.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::ServerConfig;
use crate::http::framing::{AmbiguousFraming, HeadGuard};

/// Facts about the connection a request came in on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Set when the connection's first request head framed its body ambiguously.
    pub framing: AmbiguousFraming,
}

/// hyper's default `max_headers` (`DEFAULT_MAX_HEADERS` in its HTTP/1 parser).
const HYPER_MAX_HEADERS: usize = 100;

/// Builds the hyper connection builder with the configured limits.
pub fn builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    let header_timeout = cfg.header_read_timeout.min(cfg.keepalive_timeout);
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(cfg.max_header_bytes.max(8192));
    // hyper's own limit is 100 fields, kept in a stack array; naming any limit (even 100)
    // makes it build and fill a fresh vector of that many slots for every request head.
    if cfg.max_headers != HYPER_MAX_HEADERS {
        b.http1().max_headers(cfg.max_headers);
    }
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(cfg.keepalive_timeout / 3)
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(256);
    b
}

/// How many worker threads serve connections: `PORTCULLIS_WORKERS` when set to a positive
/// number, else one per available core (nginx's `worker_processes auto`), at most 64.
pub fn worker_count() -> usize {
    std::env::var("PORTCULLIS_WORKERS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(64)
}

thread_local! {
    /// The index of the worker this thread is, if it is one (see [`serve`]).
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker index of the calling thread; `None` outside the worker threads.
pub fn current_worker() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains the HTTP connections.
///
/// Connections are served by [`worker_count`] threads, each running its own current-thread
/// runtime and accepting on a clone of the listening socket (thread per core, the model of
/// nginx's workers and pingora). A connection, the upstream connections its requests use
/// (one client pool per worker, see [`crate::app::App`]) and the tasks between them stay on one
/// thread: no cross-thread wake-ups on the hot path, which on a busy 2-core machine cost a
/// quarter of the CPU per proxied request under tokio's work-stealing scheduler.
/// `max_connections` is one limit across all workers.
///
/// The returned [`Running`] keeps the worker runtimes alive (upgraded WebSocket tunnels run
/// on them) until [`Running::finish`]; dropping it, or this future, stops everything.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<Running> {
    let listener = listener.into_std()?;
    let workers = app.workers();
    let mut running = Running {
        accept: CancellationToken::new(),
        finish: CancellationToken::new(),
        threads: Vec::with_capacity(workers),
    };
    let limit = Arc::new(Semaphore::new(app.config().server.max_connections));
    let (inboxes, mut receivers): (Vec<_>, Vec<_>) =
        (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
    let balance = Arc::new(Balance {
        open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
        inboxes,
    });
    let mut drained = Vec::with_capacity(workers);
    // Workers log where the caller logs (a scoped subscriber too, not only the global one).
    let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
    for i in 0..workers {
        let dispatch = dispatch.clone();
        let listener = listener.try_clone()?;
        let (app, limit, balance) = (app.clone(), limit.clone(), balance.clone());
        let inbox = receivers.remove(0);
        let (accept, finish) = (running.accept.clone(), running.finish.clone());
        let (done, done_rx) = oneshot::channel::<()>();
        drained.push(done_rx);
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-w{i}"))
            .spawn(move || {
                WORKER.with(|w| w.set(Some(i)));
                let _log = tracing::dispatcher::set_default(&dispatch);
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, worker = i, "cannot start a worker runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            let worker = Worker {
                                index: i,
                                app,
                                limit,
                                balance,
                            };
                            worker.accept_loop(listener, inbox, accept).await;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, worker = i, "cannot register the listener")
                        }
                    }
                    let _ = done.send(());
                    finish.cancelled().await;
                });
            })?;
        running.threads.push(thread);
    }
    drop(listener);
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.accept.cancel();
    for d in drained {
        let _ = d.await;
    }
    Ok(running)
}

/// The worker threads after their HTTP connections drained.
pub struct Running {
    accept: CancellationToken,
    finish: CancellationToken,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Ends the worker runtimes (whatever still runs on them is dropped) and joins the threads.
    pub async fn finish(mut self) {
        self.finish.cancel();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.accept.cancel();
        self.finish.cancel();
    }
}

/// Connections handed from one worker to another, and each worker's open connections.
///
/// Every worker accepts on the same socket, and whichever wakes first may take a whole burst
/// of new connections (a load balancer or `wrk` opening its pool at once), leaving the other
/// cores idle. So a worker that accepts a connection while it serves more than the
/// least-loaded worker hands it over (least connections; a `std` socket through a channel,
/// once per connection, never per request).
struct Balance {
    open: Box<[AtomicUsize]>,
    inboxes: Vec<mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>>,
}

impl Balance {
    /// The least-loaded worker when it has fewer open connections than `me`.
    fn better_than(&self, me: usize) -> Option<usize> {
        let mine = self.open[me].load(Ordering::Relaxed);
        let (best, load) = self
            .open
            .iter()
            .enumerate()
            .map(|(i, n)| (i, n.load(Ordering::Relaxed)))
            .min_by_key(|&(_, n)| n)?;
        (best != me && load < mine).then_some(best)
    }

    /// Hands worker `me`'s new connection to worker `to` (counted for it right away, so a
    /// burst spreads evenly). Returns it when it stays with `me`: `to` is gone (a worker that failed to start),
    /// which is then never picked again.
    fn hand_over(
        &self,
        me: usize,
        to: usize,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<(TcpStream, SocketAddr)> {
        let open = &self.open;
        open[to].fetch_add(1, Ordering::Relaxed);
        let Ok(std) = tcp.into_std() else {
            open[to].fetch_sub(1, Ordering::Relaxed);
            return None;
        };
        // Sent: `to` serves it (`None` here). Not sent: the stream comes back in the error.
        let mpsc::error::SendError((std, peer)) = self.inboxes[to].send((std, peer)).err()?;
        open[to].store(usize::MAX / 2, Ordering::Relaxed);
        open[me].fetch_add(1, Ordering::Relaxed);
        match TcpStream::from_std(std) {
            Ok(tcp) => Some((tcp, peer)),
            Err(_) => {
                open[me].fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// One worker thread's share of the server.
struct Worker {
    index: usize,
    app: Arc<App>,
    limit: Arc<Semaphore>,
    balance: Arc<Balance>,
}

impl Worker {
    /// Accepts (and takes handed-over connections) until `stop`, then drains this worker's
    /// connections (at most `shutdown_timeout`).
    async fn accept_loop(
        &self,
        listener: TcpListener,
        mut inbox: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
        stop: CancellationToken,
    ) {
        let cfg = &self.app.config().server;
        let builder = builder(cfg);
        let graceful = GracefulShutdown::new();
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => match self.balance.better_than(self.index) {
                        Some(to) => match self.balance.hand_over(self.index, to, tcp, peer) {
                            Some(kept) => kept,
                            None => continue,
                        },
                        None => {
                            self.balance.open[self.index].fetch_add(1, Ordering::Relaxed);
                            (tcp, peer)
                        }
                    },
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                Some((std, peer)) = inbox.recv() => match TcpStream::from_std(std) {
                    Ok(tcp) => (tcp, peer),
                    Err(e) => {
                        self.balance.open[self.index].fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "cannot take over a connection");
                        continue;
                    }
                },
                _ = stop.cancelled() => break,
            };
            self.serve_connection(tcp, peer, &builder, &graceful);
        }
        drop(listener);
        if tokio::time::timeout(cfg.shutdown_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown_timeout reached; abandoning remaining connections");
        }
    }

    /// Serves one connection on this worker (already counted in its `open`), or closes it at
    /// once past `max_connections`.
    fn serve_connection(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        builder: &auto::Builder<TokioExecutor>,
        graceful: &GracefulShutdown,
    ) {
        let (balance, me) = (self.balance.clone(), self.index);
        let Ok(permit) = self.limit.clone().try_acquire_owned() else {
            balance.open[me].fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%peer, event = "connection_refused", "max_connections reached");
            drop(tcp);
            return;
        };
        let cfg = &self.app.config().server;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(peer);
        let (io, framing) = HeadGuard::new(tcp, cfg.max_header_bytes.max(8192));
        let info = ConnInfo {
            peer,
            local,
            framing,
        };
        let app = self.app.clone();
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(io),
                service_fn(move |req: hyper::Request<Incoming>| {
                    let (app, info) = (app.clone(), info.clone());
                    async move { Ok::<_, Infallible>(app.handle(req, info).await) }
                }),
            )
            .into_owned();
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            balance.open[me].fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balance(open: &[usize]) -> Balance {
        Balance {
            open: open.iter().map(|&n| AtomicUsize::new(n)).collect(),
            inboxes: Vec::new(),
        }
    }

    #[test]
    fn a_connection_goes_to_the_least_loaded_worker() {
        // Equal loads: keep it (no hand-over churn).
        assert_eq!(balance(&[0, 0]).better_than(0), None);
        assert_eq!(balance(&[3, 3, 3]).better_than(2), None);
        // More than another worker: hand over to the least loaded.
        assert_eq!(balance(&[1, 0]).better_than(0), Some(1));
        assert_eq!(balance(&[5, 2, 4]).better_than(0), Some(1));
        assert_eq!(balance(&[5, 2, 4]).better_than(2), Some(1));
        // Already the least loaded: keep it.
        assert_eq!(balance(&[5, 2, 4]).better_than(1), None);
        // One worker: always keep.
        assert_eq!(balance(&[9]).better_than(0), None);
    }

    #[tokio::test]
    async fn hand_over_sends_to_a_live_worker_and_keeps_the_connection_if_it_is_gone() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = || async {
            let _client = TcpStream::connect(addr).await.unwrap();
            let (tcp, peer) = l.accept().await.unwrap();
            (tcp, peer, _client)
        };
        let (live, mut live_rx) = mpsc::unbounded_channel();
        let (gone, gone_rx) = mpsc::unbounded_channel();
        drop(gone_rx);
        let b = Balance {
            open: (0..3).map(|_| AtomicUsize::new(0)).collect(),
            inboxes: vec![live.clone(), live, gone],
        };
        let (tcp, peer, _c1) = accepted().await;
        assert!(b.hand_over(0, 1, tcp, peer).is_none(), "handed over");
        assert_eq!(live_rx.recv().await.map(|(_, p)| p), Some(peer));
        assert_eq!(b.open[1].load(Ordering::Relaxed), 1);
        let (tcp, peer, _c2) = accepted().await;
        let kept = b
            .hand_over(0, 2, tcp, peer)
            .expect("kept: worker 2 is gone");
        assert_eq!(kept.1, peer);
        assert_eq!(b.open[0].load(Ordering::Relaxed), 1);
        b.open[1].store(5, Ordering::Relaxed);
        assert_eq!(b.better_than(1), Some(0), "worker 2 is never picked again");
        assert!(b.open[2].load(Ordering::Relaxed) > 1_000_000);
    }
}
