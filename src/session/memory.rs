//! The in-process session store (`session.store = "memory"`): a bounded moka cache plus
//! exact `sid`/`sub` indexes for logout.
//!
//! - **Absolute lifetime** (SPEC `lifetime`): a per-entry [`Expiry`] of `expires_at - now`,
//!   and [`MemoryStore::get`] checks `expires_at` itself, so a session never outlives its
//!   lifetime even if the cache is late (SECURITY SES-05).
//! - **Idle timeout** (SPEC `idle_timeout`): moka's time-to-idle; every successful `get`
//!   counts as activity, so a browser that keeps making requests stays logged in (up to the
//!   absolute lifetime).
//! - **Bound** (SPEC `max_sessions`, SECURITY SES-08): `max_capacity` with LRU eviction. moka's
//!   default TinyLFU policy may *refuse* a new entry when full, which would bounce a user who
//!   just logged in straight back to the IdP; LRU always admits the new session and drops the
//!   one unused for longest. An evicted session is simply gone: the next lookup is `None`.
//! - **Logout by `sid`/`sub`** (SPEC "Back-channel logout and sign-out end every session bound
//!   to the same `sid` (or `sub`)", OpenID Connect Back-Channel Logout 1.0 §2.5): a secondary
//!   index kept consistent by the eviction listener, which also announces every session end on
//!   a broadcast channel (for closing WebSocket tunnels).
//!
//! moka runs expiry and its listener piggy-backed on cache operations (no background thread),
//! so end notifications for sessions that merely time out arrive on later cache activity or on
//! [`MemoryStore::run_pending_tasks`]; the server should call that periodically. Lookups are
//! exact, but moka's per-entry timer wheel frees an expired entry (and notifies) only about a
//! second after its deadline.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use tokio::sync::broadcast;

use super::{Session, SessionId};

/// Capacity of the session-end broadcast; a slower receiver sees `Lagged` and should then
/// re-check its sessions against the store.
const ENDS_CAPACITY: usize = 1024;

/// A cheap handle on the in-memory store; clones share the same cache and indexes.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<SessionId, Arc<Session>>,
    index: Arc<Mutex<Index>>,
    ends: broadcast::Sender<SessionId>,
}

/// Which live sessions belong to an IdP session (`sid`) or a subject (`sub`), in one
/// ordered map of about 40 bytes per entry (two entries per session, none per id).
///
/// An entry is keyed by a keyed 64-bit hash of the `sid` (or `sub`, domain-separated) and the
/// address of the very session *value* it was added for, and holds a [`Weak`] to that value.
/// Lookups upgrade the candidates and compare their real `sid`/`sub`, so a hash collision
/// costs a comparison, never a wrong logout; the hash key is random per store
/// ([`RandomState`]), so colliding names cannot be chosen in advance. Entries belong to a
/// value, not an id: when a token refresh replaces a session under the same id, the removal
/// of the old value (whenever the eviction listener runs) takes only the old value's entries,
/// never those of the value that replaced it. The listener removes every value's entries, so
/// the index never holds more than the cache does; while an entry exists its `Weak` keeps the
/// value's allocation, so an address is never reused by another indexed value.
struct Index {
    hasher: RandomState,
    entries: BTreeMap<(u64, usize), Weak<Session>>,
}

/// What an index key names: the `sid` or the `sub`.
#[derive(Clone, Copy, Hash)]
enum Kind {
    Sid,
    Sub,
}

impl Index {
    fn new() -> Self {
        Index {
            hasher: RandomState::new(),
            entries: BTreeMap::new(),
        }
    }

    fn key(&self, kind: Kind, name: &str) -> u64 {
        self.hasher.hash_one((kind, name))
    }

    /// The keys `session` is indexed under.
    fn keys(&self, session: &Arc<Session>) -> impl Iterator<Item = (u64, usize)> + use<> {
        let at = Arc::as_ptr(session) as usize;
        let sid = session
            .sid
            .as_deref()
            .map(|sid| (self.key(Kind::Sid, sid), at));
        let sub = (self.key(Kind::Sub, &session.identity.sub), at);
        sid.into_iter().chain(std::iter::once(sub))
    }

    fn add(&mut self, session: &Arc<Session>) {
        for key in self.keys(session) {
            self.entries.insert(key, Arc::downgrade(session));
        }
    }

    /// Un-indexes this very value (other values under the same id keep their entries).
    fn forget(&mut self, session: &Arc<Session>) {
        for key in self.keys(session) {
            self.entries.remove(&key);
        }
    }

    /// The live values indexed under `name` whose real `sid`/`sub` is `name`.
    fn find(&self, kind: Kind, name: &str) -> Vec<Arc<Session>> {
        let key = self.key(kind, name);
        self.entries
            .range((key, 0)..=(key, usize::MAX))
            .filter_map(|(_, value)| value.upgrade())
            .filter(|s| match kind {
                Kind::Sid => s.sid.as_deref() == Some(name),
                Kind::Sub => s.identity.sub == name,
            })
            .collect()
    }
}

/// Locks the index even if a previous holder panicked: the maps stay structurally valid.
fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Per-entry time-to-live: what is left of the session's absolute lifetime, capped at the
/// configured `lifetime` (so a bogus far-future `expires_at` cannot pin an entry).
struct AbsoluteLifetime {
    cap: Duration,
}

impl AbsoluteLifetime {
    fn ttl(&self, s: &Session) -> Option<Duration> {
        Some(s.remaining_lifetime(SystemTime::now()).min(self.cap))
    }
}

impl Expiry<SessionId, Arc<Session>> for AbsoluteLifetime {
    fn expire_after_create(&self, _: &SessionId, s: &Arc<Session>, _: Instant) -> Option<Duration> {
        self.ttl(s)
    }

    fn expire_after_update(
        &self,
        _: &SessionId,
        s: &Arc<Session>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.ttl(s)
    }
}

// === impl MemoryStore ===
//
// moka's sync cache answers without waiting (a lookup needs no future on the hot path); the
// methods stay `async` because the store's callers are shared with the Redis store SPEC
// plans (`session.store = "redis"`), whose operations are network round trips.

impl MemoryStore {
    /// A store holding at most `max_sessions`, each for at most `lifetime` from its
    /// `created_at` (the session's own `expires_at` is authoritative) and `idle_timeout`
    /// since its last [`get`](Self::get).
    pub fn new(max_sessions: u64, lifetime: Duration, idle_timeout: Duration) -> Self {
        let index = Arc::new(Mutex::new(Index::new()));
        let (ends, _) = broadcast::channel(ENDS_CAPACITY);
        let listener_index = Arc::clone(&index);
        let listener_ends = ends.clone();
        let cache = Cache::builder()
            .name("sessions")
            .max_capacity(max_sessions)
            .eviction_policy(EvictionPolicy::lru())
            .time_to_idle(idle_timeout)
            .expire_after(AbsoluteLifetime { cap: lifetime })
            .eviction_listener(move |id: Arc<SessionId>, value: Arc<Session>, cause| {
                lock(&listener_index).forget(&value);
                // Replaced: the id lives on with a new value (a refresh); not an end.
                if cause == RemovalCause::Replaced {
                    return;
                }
                // No receiver is fine: nothing to close.
                let _ = listener_ends.send(SessionId::clone(&id));
            })
            .build();
        MemoryStore { cache, index, ends }
    }

    /// Stores `session` under its id (replacing any session with the same id, e.g. after a
    /// token refresh) and returns the shared handle.
    pub async fn insert(&self, session: Session) -> Arc<Session> {
        let session = Arc::new(session);
        lock(&self.index).add(&session);
        self.cache.insert(session.id.clone(), Arc::clone(&session));
        // moka enforces `max_capacity` lazily; a login is rare enough to settle the bound
        // right away, so the store never holds more than `max_sessions` (SECURITY SES-08).
        self.cache.run_pending_tasks();
        session
    }

    /// The live session for `id`: `None` when unknown, evicted, past `expires_at` or idle for
    /// longer than `idle_timeout`. A hit counts as activity for the idle timeout.
    pub async fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        let session = self.cache.get(id)?;
        // moka measures its deadline on the monotonic clock from insertion; `expires_at` is
        // wall-clock time and the contract, so it is checked here as well.
        if session.is_expired(SystemTime::now()) {
            self.cache.invalidate(id);
            return None;
        }
        Some(session)
    }

    /// Whether `id` is a live session, without counting as activity.
    pub async fn contains(&self, id: &SessionId) -> bool {
        self.cache.contains_key(id)
    }

    /// Ends the session `id` (sign-out); returns it if it was live.
    pub async fn remove(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.cache.remove(id)
    }

    /// Ends every session bound to the IdP session `sid` (back-channel logout, sign-out);
    /// returns how many were live.
    pub async fn remove_by_sid(&self, sid: &str) -> usize {
        let found = lock(&self.index).find(Kind::Sid, sid);
        self.remove_all(found).await
    }

    /// Ends every session of the subject `sub`; returns how many were live.
    pub async fn remove_by_sub(&self, sub: &str) -> usize {
        let found = lock(&self.index).find(Kind::Sub, sub);
        self.remove_all(found).await
    }

    /// Number of live sessions, after letting moka process pending evictions and expiries.
    pub async fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Whether no session is live (see [`len`](Self::len)).
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// Processes pending expiries and evictions now, which also sends their end
    /// notifications; call it periodically (and before reading gauges).
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// Session ends (remove, logout by `sid`/`sub`, expiry, eviction), as they are processed.
    pub fn subscribe_ends(&self) -> broadcast::Receiver<SessionId> {
        self.ends.subscribe()
    }

    async fn remove_all(&self, sessions: Vec<Arc<Session>>) -> usize {
        let mut removed = 0;
        for session in sessions {
            // The listener (run by `remove`) updates the index; the lock is not held here.
            if self.cache.remove(&session.id).is_some() {
                removed += 1;
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::identity::Identity;

    const HOUR: Duration = Duration::from_secs(3600);

    fn session(sub: &str, sid: Option<&str>, lifetime: Duration) -> Session {
        let now = SystemTime::now();
        Session {
            id: SessionId::generate(),
            identity: Identity {
                sub: sub.to_owned(),
                ..Identity::default()
            },
            id_token: format!("id-token-of-{sub}").into(),
            access_token: format!("access-token-of-{sub}").into(),
            refresh_token: None,
            sid: sid.map(Into::into),
            created_at: now,
            expires_at: now + lifetime,
        }
    }

    /// Waits (real time: moka's clock ignores tokio's pause) until expired entries are gone;
    /// its timer wheel frees them up to ~1.1 s after their deadline.
    async fn drain_expired(store: &MemoryStore) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.len().await > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (`sid` entries, `sub` entries, distinct session values) in the index; every entry must
    /// still name a live value (the listener removes an ended value's entries).
    fn index_sizes(store: &MemoryStore) -> (usize, usize, usize) {
        let index = lock(&store.index);
        let (mut sids, mut subs, mut values) = (0, 0, HashSet::new());
        for (&(key, at), value) in &index.entries {
            let s = value.upgrade().expect("an indexed value is live");
            assert_eq!(at, Arc::as_ptr(&s) as usize);
            values.insert(at);
            if s.sid
                .as_deref()
                .is_some_and(|sid| key == index.key(Kind::Sid, sid))
            {
                sids += 1;
            } else {
                assert_eq!(key, index.key(Kind::Sub, &s.identity.sub));
                subs += 1;
            }
        }
        (sids, subs, values.len())
    }

    #[tokio::test]
    async fn insert_then_get_returns_the_same_session() {
        let store = MemoryStore::new(10, HOUR, HOUR);
        let s = session("u-alice", Some("sid-1"), HOUR);
        let id = s.id.clone();
        store.insert(s).await;
        let got = store.get(&id).await.expect("live session");
        assert_eq!(got.id, id);
        assert_eq!(got.identity.sub, "u-alice");
        assert_eq!(got.access_token.expose(), "access-token-of-u-alice");
        assert!(store.get(&SessionId::generate()).await.is_none());
        assert_eq!(store.len().await, 1);
    }

    #[tokio::test]
    async fn absolute_lifetime_ends_even_an_active_session() {
        // Generous margins: the machine running the tests may be loaded.
        let lifetime = Duration::from_secs(2);
        let store = MemoryStore::new(10, lifetime, HOUR);
        let s = session("u-alice", None, lifetime);
        let id = s.id.clone();
        let started = std::time::Instant::now();
        store.insert(s).await;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() < Duration::from_millis(1500) {
                assert!(store.get(&id).await.is_some());
            }
        }
        tokio::time::sleep(lifetime.saturating_sub(started.elapsed()) + Duration::from_millis(200))
            .await;
        assert!(store.get(&id).await.is_none());
    }

    #[tokio::test]
    async fn an_already_expired_session_is_never_returned() {
        // The configured lifetime is an hour; only the session's expires_at says it is over.
        let store = MemoryStore::new(10, HOUR, HOUR);
        let mut s = session("u-alice", Some("sid-x"), HOUR);
        s.expires_at = SystemTime::now() - Duration::from_secs(1);
        let id = s.id.clone();
        store.insert(s).await;
        assert!(store.get(&id).await.is_none());
        drain_expired(&store).await;
        assert_eq!(store.len().await, 0);
        assert_eq!(index_sizes(&store), (0, 0, 0));
    }

    #[tokio::test]
    async fn idle_timeout_ends_an_unused_session_and_get_refreshes_it() {
        let idle = Duration::from_secs(1);
        let store = MemoryStore::new(10, HOUR, idle);
        let active = session("u-alice", None, HOUR);
        let idle_one = session("u-bob", None, HOUR);
        let (active_id, idle_id) = (active.id.clone(), idle_one.id.clone());
        store.insert(active).await;
        store.insert(idle_one).await;
        // 8 × 200 ms = well past the idle timeout, with a get every 200 ms (margins for a
        // loaded machine).
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(store.get(&active_id).await.is_some());
        }
        assert!(store.get(&idle_id).await.is_none());
    }

    #[tokio::test]
    async fn capacity_is_bounded_and_eviction_never_mixes_users() {
        let store = MemoryStore::new(1000, HOUR, HOUR);
        let mut ids = Vec::new();
        for i in 0..1100 {
            let s = session(&format!("u-{i}"), Some(&format!("sid-{i}")), HOUR);
            ids.push(s.id.clone());
            store.insert(s).await;
        }
        assert!(store.len().await <= 1000);
        let mut missing = 0;
        for (i, id) in ids.iter().enumerate() {
            match store.get(id).await {
                Some(s) => {
                    assert_eq!(s.identity.sub, format!("u-{i}"));
                    assert_eq!(s.id, *id);
                }
                None => missing += 1,
            }
        }
        assert!(missing >= 100, "{missing}");
        // LRU admits new logins: the newest session is always there.
        assert!(store.get(&ids[1099]).await.is_some());
        // The index follows the evictions.
        let (sids, subs, by_id) = index_sizes(&store);
        assert!(
            sids <= 1000 && subs <= 1000 && by_id <= 1000,
            "{sids} {subs} {by_id}"
        );
    }

    #[tokio::test]
    async fn remove_by_sid_ends_only_matching_sessions() {
        let store = MemoryStore::new(10, HOUR, HOUR);
        let a1 = session("u-alice", Some("sid-a"), HOUR);
        let a2 = session("u-alice", Some("sid-a"), HOUR);
        let a3 = session("u-alice", Some("sid-other"), HOUR);
        let b = session("u-bob", Some("sid-b"), HOUR);
        let ids = [a1.id.clone(), a2.id.clone(), a3.id.clone(), b.id.clone()];
        for s in [a1, a2, a3, b] {
            store.insert(s).await;
        }
        assert_eq!(store.remove_by_sid("sid-a").await, 2);
        assert!(store.get(&ids[0]).await.is_none());
        assert!(store.get(&ids[1]).await.is_none());
        assert!(store.get(&ids[2]).await.is_some());
        assert!(store.get(&ids[3]).await.is_some());
        assert_eq!(store.remove_by_sid("sid-a").await, 0);
        assert_eq!(store.remove_by_sid("unknown").await, 0);
        assert_eq!(store.len().await, 2);
    }

    #[tokio::test]
    async fn remove_by_sub_ends_every_session_of_the_subject() {
        let store = MemoryStore::new(10, HOUR, HOUR);
        let a1 = session("u-alice", Some("sid-1"), HOUR);
        let a2 = session("u-alice", None, HOUR);
        let b = session("u-bob", Some("sid-2"), HOUR);
        let b_id = b.id.clone();
        for s in [a1, a2, b] {
            store.insert(s).await;
        }
        assert_eq!(store.remove_by_sub("u-alice").await, 2);
        assert_eq!(store.len().await, 1);
        assert!(store.get(&b_id).await.is_some());
        assert_eq!(index_sizes(&store), (1, 1, 1));
    }

    #[tokio::test]
    async fn remove_returns_the_session_once() {
        let store = MemoryStore::new(10, HOUR, HOUR);
        let s = session("u-alice", Some("sid-1"), HOUR);
        let id = s.id.clone();
        store.insert(s).await;
        assert_eq!(
            store.remove(&id).await.map(|s| s.id.clone()),
            Some(id.clone())
        );
        assert!(store.remove(&id).await.is_none());
        assert!(store.get(&id).await.is_none());
        assert_eq!(index_sizes(&store), (0, 0, 0));
    }

    #[tokio::test]
    async fn replacing_a_session_reindexes_it() {
        let store = MemoryStore::new(10, HOUR, HOUR);
        let s = session("u-alice", Some("sid-old"), HOUR);
        let id = s.id.clone();
        let mut refreshed = s.clone();
        refreshed.sid = Some("sid-new".into());
        refreshed.access_token = "refreshed".into();
        store.insert(s).await;
        store.insert(refreshed).await;
        store.run_pending_tasks().await;
        assert_eq!(
            store
                .get(&id)
                .await
                .map(|s| s.access_token.expose().to_owned())
                .as_deref(),
            Some("refreshed")
        );
        assert_eq!(store.remove_by_sid("sid-old").await, 0);
        assert_eq!(store.remove_by_sid("sid-new").await, 1);
        assert_eq!(index_sizes(&store), (0, 0, 0));
    }

    #[tokio::test]
    async fn removal_of_an_old_value_keeps_its_replacement_indexed() {
        // A sign-out of the old value racing with a refresh that already indexed the new one.
        let store = MemoryStore::new(10, HOUR, HOUR);
        let s = session("u-alice", Some("sid-old"), HOUR);
        let id = s.id.clone();
        let refreshed = Arc::new(Session {
            sid: Some("sid-new".into()),
            ..s.clone()
        });
        store.insert(s).await;
        lock(&store.index).add(&refreshed);
        store.cache.remove(&id);
        store.cache.insert(id.clone(), refreshed);
        assert_eq!(store.remove_by_sid("sid-new").await, 1);
        assert!(store.get(&id).await.is_none());
        assert_eq!(index_sizes(&store), (0, 0, 0));
    }

    #[tokio::test]
    async fn index_is_cleaned_after_expiry() {
        let lifetime = Duration::from_millis(150);
        let store = MemoryStore::new(10, lifetime, HOUR);
        for i in 0..5 {
            store
                .insert(session(
                    &format!("u-{i}"),
                    Some(&format!("sid-{i}")),
                    lifetime,
                ))
                .await;
        }
        assert_eq!(index_sizes(&store), (5, 5, 5));
        tokio::time::sleep(Duration::from_millis(300)).await;
        drain_expired(&store).await;
        assert_eq!(store.len().await, 0);
        assert_eq!(index_sizes(&store), (0, 0, 0));
    }

    #[tokio::test]
    async fn subscribers_hear_every_kind_of_end() {
        let lifetime = Duration::from_millis(150);
        let store = MemoryStore::new(10, lifetime, HOUR);
        let mut ends = store.subscribe_ends();
        let removed = session("u-a", None, lifetime);
        let by_sid = session("u-b", Some("sid-b"), lifetime);
        let by_sub = session("u-c", None, lifetime);
        let expiring = session("u-d", None, lifetime);
        let expected: HashSet<SessionId> = [&removed, &by_sid, &by_sub, &expiring]
            .iter()
            .map(|s| s.id.clone())
            .collect();
        let removed_id = removed.id.clone();
        for s in [removed, by_sid, by_sub, expiring] {
            store.insert(s).await;
        }
        store.remove(&removed_id).await;
        store.remove_by_sid("sid-b").await;
        store.remove_by_sub("u-c").await;
        drain_expired(&store).await;
        let mut got = HashSet::new();
        while let Ok(id) = ends.try_recv() {
            got.insert(id);
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: T) {}
        let store = MemoryStore::new(10, HOUR, HOUR);
        let id = SessionId::generate();
        send(store.insert(session("u", None, HOUR)));
        send(store.get(&id));
        send(store.remove(&id));
        send(store.remove_by_sid("s"));
        send(store.remove_by_sub("u"));
        send(store.len());
    }

    #[tokio::test]
    async fn clones_share_the_store() {
        let store = MemoryStore::new(10, HOUR, HOUR);
        let other = store.clone();
        let s = session("u-alice", None, HOUR);
        let id = s.id.clone();
        store.insert(s).await;
        assert!(other.get(&id).await.is_some());
        other.remove(&id).await;
        assert!(store.get(&id).await.is_none());
    }
}
