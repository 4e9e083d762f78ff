//! Memory bench of the session store (issue 6): inserts 1,000,000 sessions of realistic size
//! into the real [`MemoryStore`] and reports the resident memory per session, and how much of
//! it is beyond the tokens' own bytes (target: at most 1 KiB).
//!
//! ```sh
//! cargo run --release --example session_memory            # 1,000,000 sessions
//! cargo run --release --example session_memory -- 200000  # fewer
//! cargo run --release --example session_memory -- 1000000 --moka-floor  # moka alone
//! ```
//!
//! Each session is what a login at a typical IdP leaves: an ID token (~1 KB JWS), an access
//! token and a refresh token (~1 KB each), and the identity mapped by the proxy's own
//! [`identity_from_claims`] from the ID token's claims (iss, sub, aud, exp, iat, auth_time,
//! nonce, at_hash, sid, email, names, four groups). Every session's strings are distinct and
//! allocated at their exact length, as deserialised ones are. RSS comes from
//! `/proc/self/status` (`VmRSS`): before, with the sessions built (their own cost), and after
//! they are all in the store (the store's cost on top). A counting wrapper around the system
//! allocator splits those figures into live heap bytes, allocations and glibc chunk bytes;
//! `--moka-floor` measures moka's own per-entry cost with the store's cache features and a
//! value that owns no heap.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use portcullis::oidc::identity_from_claims;
use portcullis::session::{MemoryStore, Session, SessionId};
use serde_json::{Value, json};

const ID_TOKEN_LEN: usize = 1024;
const ACCESS_TOKEN_LEN: usize = 1024;
const REFRESH_TOKEN_LEN: usize = 1024;

/// The system allocator, counting what is live: requested bytes, allocations, and the
/// chunk bytes glibc's malloc hands out for them (on 64-bit: the request plus an 8-byte
/// header, rounded up to 16, at least 32). Still `System`: the RSS figures stay those of the
/// default allocator; the counts split them.
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_ALLOCS: AtomicI64 = AtomicI64::new(0);
static LIVE_CHUNKS: AtomicI64 = AtomicI64::new(0);

fn chunk(size: usize) -> i64 {
    ((size + 8 + 15) & !15).max(32) as i64
}

fn count(layout: Layout, sign: i64) {
    LIVE_BYTES.fetch_add(sign * layout.size() as i64, Relaxed);
    LIVE_ALLOCS.fetch_add(sign, Relaxed);
    LIVE_CHUNKS.fetch_add(sign * chunk(layout.size()), Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout, 1);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout, -1);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout, 1);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout, -1);
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        count(
            unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) },
            1,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Live heap: (requested bytes, allocations, glibc chunk bytes).
#[derive(Clone, Copy)]
struct Heap(i64, i64, i64);

fn heap() -> Heap {
    Heap(
        LIVE_BYTES.load(Relaxed),
        LIVE_ALLOCS.load(Relaxed),
        LIVE_CHUNKS.load(Relaxed),
    )
}

impl Heap {
    fn per(self, since: Heap, n: usize) -> String {
        let n = n as f64;
        format!(
            "{:.0} B requested in {:.1} allocations, {:.0} B in malloc chunks",
            (self.0 - since.0) as f64 / n,
            (self.1 - since.1) as f64 / n,
            (self.2 - since.2) as f64 / n
        )
    }
}

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// A distinct token-like string of exactly `len` base64url characters (capacity == length).
fn token(kind: u8, i: usize, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::with_capacity(len);
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(kind);
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(char::from(ALPHABET[(x & 63) as usize]));
    }
    s
}

/// One realistic session for user number `i`.
fn session(i: usize, now: SystemTime) -> Session {
    let sub = format!("{:08x}-7d2c-4a51-9b1e-{:012x}", i, i * 7919);
    let exp = 1_900_000_000 + i as u64;
    let claims = json!({
        "iss": "https://login.example.com/realms/corp",
        "sub": sub,
        "aud": "portcullis",
        "exp": exp,
        "iat": exp - 300,
        "auth_time": exp - 310,
        "nonce": token(4, i, 43),
        "at_hash": token(5, i, 22),
        "sid": token(6, i, 36),
        "email": format!("user{i}@example.com"),
        "email_verified": true,
        "name": format!("Example User {i}"),
        "given_name": "Example",
        "family_name": format!("User {i}"),
        "preferred_username": format!("user{i}"),
        "groups": ["staff", "engineering", "vpn-users", format!("team-{}", i % 100)],
    });
    let Value::Object(claims) = claims else {
        unreachable!("json! object")
    };
    let sid = claims.get("sid").and_then(Value::as_str).map(Into::into);
    Session {
        id: SessionId::generate(),
        // As the login callback stores it: only the claims `[headers.claims]` names are kept
        // (here one, as in a typical `"X-Tenant" = "tenant"` setup).
        identity: {
            let mut identity = identity_from_claims(claims, "groups");
            identity.retain_claims(["tenant"]);
            identity
        },
        id_token: token(1, i, ID_TOKEN_LEN).into(),
        access_token: token(2, i, ACCESS_TOKEN_LEN).into(),
        refresh_token: Some(token(3, i, REFRESH_TOKEN_LEN).into()),
        sid,
        created_at: now,
        expires_at: now + Duration::from_secs(12 * 3600),
    }
}

/// moka's own per-entry cost with the features the store uses (LRU, `max_capacity`,
/// time-to-idle, a per-entry expiry, an eviction listener), for a 32-byte key and an
/// 8-byte value that own no heap: the floor any moka-based store pays.
async fn moka_floor(n: usize) {
    struct Ttl;
    impl moka::Expiry<[u8; 32], u64> for Ttl {
        fn expire_after_create(&self, _: &[u8; 32], _: &u64, _: Instant) -> Option<Duration> {
            Some(Duration::from_secs(12 * 3600))
        }
    }
    let cache: moka::sync::Cache<[u8; 32], u64> = moka::sync::Cache::builder()
        .max_capacity(n as u64)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .time_to_idle(Duration::from_secs(3600))
        .expire_after(Ttl)
        .eviction_listener(|_, _, _| {})
        .build();
    cache.insert([0xff; 32], 0);
    cache.run_pending_tasks();
    let (rss0, heap0) = (status_bytes("VmRSS:"), heap());
    for i in 0..n {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
        cache.insert(key, i as u64);
        cache.run_pending_tasks();
    }
    let (rss1, heap1) = (status_bytes("VmRSS:"), heap());
    println!("moka entries            {}", cache.entry_count());
    println!(
        "RSS per entry           {:.0} bytes",
        rss1.saturating_sub(rss0) as f64 / n as f64
    );
    println!("heap per entry          {}", heap1.per(heap0, n));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--moka-floor") {
        let n = std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1_000_000);
        return moka_floor(n).await;
    }
    let n: usize = match std::env::args().nth(1) {
        Some(a) => match a.replace('_', "").parse() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: session_memory [SESSIONS]  (default 1000000)");
                std::process::exit(2);
            }
        },
        None => 1_000_000,
    };
    let store = MemoryStore::new(
        n as u64,
        Duration::from_secs(12 * 3600),
        Duration::from_secs(3600),
    );
    let now = SystemTime::now();
    // Warm the allocator and the store's structures with one session, then measure.
    let probe = session(usize::MAX / 2, now);
    let token_bytes = probe.id_token.len()
        + probe.access_token.len()
        + probe
            .refresh_token
            .as_ref()
            .map_or(0, portcullis::secret::Secret::len);
    let rss0 = status_bytes("VmRSS:");
    let heap0 = heap();
    // First the sessions alone (what any store must keep: tokens, identity, the struct)...
    let t0 = Instant::now();
    let mut sessions: Vec<Session> = (0..n).map(|i| session(i, now)).collect();
    let rss1 = status_bytes("VmRSS:");
    let heap1 = heap();
    let build_time = t0.elapsed();
    // ...then moved into the store; the Vec's buffer is returned to the OS afterwards, so
    // what grows from here is the store's own cost (moka's entries, the sid/sub indexes).
    let mut ids = Vec::with_capacity(1000);
    let t0 = Instant::now();
    for (i, s) in sessions.drain(..).enumerate() {
        if i % (n / 1000).max(1) == 0 {
            ids.push(s.id.clone());
        }
        store.insert(s).await;
        if (i + 1) % 200_000 == 0 {
            eprintln!(
                "{:>9} sessions in the store, {:.1} s",
                i + 1,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    drop(sessions);
    store.run_pending_tasks().await;
    let insert_time = t0.elapsed();
    let rss2 = status_bytes("VmRSS:");
    let heap2 = heap();
    let held = store.len().await;

    // Lookups of sessions spread over the whole store.
    let t1 = Instant::now();
    let mut found = 0usize;
    for _ in 0..100 {
        for id in &ids {
            found += usize::from(store.get(id).await.is_some());
        }
    }
    let lookups = 100 * ids.len();
    let get_ns = t1.elapsed().as_nanos() as f64 / lookups as f64;

    let per = |bytes: u64| bytes as f64 / n as f64;
    let per_session = per(rss2.saturating_sub(rss0));
    let own = per(rss1.saturating_sub(rss0));
    let overhead = per_session - token_bytes as f64;
    println!("sessions inserted       {n}");
    println!("sessions held           {held}");
    println!(
        "RSS before / after      {:.1} MiB / {:.1} MiB (peak {:.1} MiB)",
        rss0 as f64 / 1048576.0,
        rss2 as f64 / 1048576.0,
        status_bytes("VmHWM:") as f64 / 1048576.0
    );
    println!("RSS per session         {per_session:.0} bytes");
    println!(
        "  tokens                {token_bytes} bytes (ID {ID_TOKEN_LEN}, access {ACCESS_TOKEN_LEN}, refresh {REFRESH_TOKEN_LEN})"
    );
    println!(
        "  rest of the session   {:.0} bytes (identity with its claims map, id, struct, allocator)",
        own - token_bytes as f64
    );
    println!(
        "  the store             {:.0} bytes (moka entry, LRU and timer nodes, the sid/sub index)",
        per_session - own
    );
    println!(
        "heap, sessions built    {} (a {} B struct each in the Vec)",
        heap1.per(heap0, n),
        std::mem::size_of::<Session>()
    );
    println!("heap, in the store      {}", heap2.per(heap0, n));
    println!(
        "beyond the tokens       {overhead:.0} bytes per session (target <= 1024): {}",
        if overhead <= 1024.0 { "met" } else { "NOT met" }
    );
    println!(
        "build / insert          {:.2} µs / {:.2} µs per session ({:.1} s / {:.1} s in all)",
        build_time.as_secs_f64() * 1e6 / n as f64,
        insert_time.as_secs_f64() * 1e6 / n as f64,
        build_time.as_secs_f64(),
        insert_time.as_secs_f64()
    );
    println!("lookup                  {get_ns:.0} ns per get ({found}/{lookups} found)");
    assert_eq!(held, n as u64, "the store must hold every session");
    assert_eq!(found, lookups, "every sampled session must be found");
}
