//! WebSocket tunnels (RFC 6455 §4, RFC 9110 §7.8 `Upgrade`).
//!
//! Only `Upgrade: websocket` on an HTTP/1.1 request is ever forwarded (the hop-by-hop rules in
//! [`crate::http::hop`] drop every other upgrade, `h2c` included). The upgrade request goes
//! through the same gate as any request — route, session, policy, identity headers — and
//! upstream over an HTTP/1.1-only client (an h2 upstream connection cannot upgrade). When the
//! upstream answers `101`, both upgraded connections are joined by `copy_bidirectional`.
//!
//! hyper's graceful shutdown ends at the `101`, so tunnels are owned here: every tunnel task
//! is tracked, and is closed when
//! - the session it was opened with ends (sign-out, back-channel logout, expiry, eviction:
//!   the store's end notifications), or
//! - the credential it was opened with expires: the session's absolute lifetime (exactly,
//!   not when the store gets round to noticing), a bearer token's `exp` (plus the leeway its
//!   verification allowed), or
//! - the proxy shuts down.
//!
//! Tunnels on public routes have no session and close only on shutdown or when either side
//! closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::body::BoxError;
use crate::session::{MemoryStore, SessionId};

/// Open tunnels, by the session they belong to.
#[derive(Default)]
pub struct Tunnels {
    tracker: TaskTracker,
    shutdown: CancellationToken,
    by_session: Mutex<HashMap<SessionId, (CancellationToken, usize)>>,
}

impl Tunnels {
    pub fn new() -> Arc<Self> {
        Arc::new(Tunnels::default())
    }

    /// Joins the client's and the upstream's upgraded connections in a tracked task, closed
    /// when `session` ends, at `expires` (if any) or at shutdown.
    pub fn spawn(
        self: &Arc<Self>,
        client: OnUpgrade,
        upstream: OnUpgrade,
        session: Option<SessionId>,
        expires: Option<SystemTime>,
    ) {
        let cancel = match &session {
            Some(id) => {
                let mut map = lock(&self.by_session);
                let entry = map
                    .entry(id.clone())
                    .or_insert_with(|| (self.shutdown.child_token(), 0));
                entry.1 += 1;
                entry.0.clone()
            }
            None => self.shutdown.child_token(),
        };
        let this = Arc::clone(self);
        self.tracker.spawn(async move {
            let joined = async {
                let (c, u) = tokio::try_join!(client, upstream).map_err(BoxError::from)?;
                let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                tokio::io::copy_bidirectional(&mut c, &mut u).await.map_err(BoxError::from)?;
                Ok::<(), BoxError>(())
            };
            let expiry = async {
                match expires {
                    Some(at) => {
                        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
                        tokio::time::sleep(left).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = joined => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "websocket tunnel ended with an error");
                    }
                }
                _ = cancel.cancelled() => tracing::info!(event = "websocket_closed", "tunnel closed: session ended or shutdown"),
                () = expiry => tracing::info!(event = "websocket_closed", reason = "credential_expired", "tunnel closed: its session or token expired"),
            }
            if let Some(id) = session {
                this.release(&id);
            }
        });
    }

    fn release(&self, id: &SessionId) {
        let mut map = lock(&self.by_session);
        if let Some(entry) = map.get_mut(id) {
            entry.1 -= 1;
            if entry.1 == 0 {
                map.remove(id);
            }
        }
    }

    /// Closes every tunnel of this session.
    pub fn end_session(&self, id: &SessionId) {
        if let Some((token, _)) = lock(&self.by_session).remove(id) {
            token.cancel();
        }
    }

    /// Number of open tunnels.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Follows the store's session-end notifications until `stop`. When notifications were
    /// missed (the channel lagged), every tunnel whose session is gone is closed.
    pub async fn watch_sessions(self: Arc<Self>, store: MemoryStore, stop: CancellationToken) {
        let mut ends = store.subscribe_ends();
        loop {
            tokio::select! {
                end = ends.recv() => match end {
                    Ok(id) => self.end_session(&id),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let ids: Vec<SessionId> = lock(&self.by_session).keys().cloned().collect();
                        for id in ids {
                            if !store.contains(&id).await {
                                self.end_session(&id);
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Closes every tunnel and waits (bounded) for their tasks to end.
    pub async fn shutdown(&self, wait: Duration) {
        self.shutdown.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(wait, self.tracker.wait()).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
