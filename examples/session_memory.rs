//! Memory bench of the session store (issue 6): inserts 1,000,000 sessions of realistic size
//! into the real [`MemoryStore`] and reports the resident memory per session, and how much of
//! it is beyond the tokens' own bytes (target: at most 1 KiB).
//!
//! ```sh
//! cargo run --release --example session_memory            # 1,000,000 sessions
//! cargo run --release --example session_memory -- 200000  # fewer
//! ```
//!
//! Each session is what a login at a typical IdP leaves: an ID token (~1 KB JWS), an access
//! token and a refresh token (~1 KB each), and the identity mapped by the proxy's own
//! [`identity_from_claims`] from the ID token's claims (iss, sub, aud, exp, iat, auth_time,
//! nonce, at_hash, sid, email, names, four groups). Every session's strings are distinct and
//! allocated at their exact length, as deserialised ones are. RSS comes from
//! `/proc/self/status` (`VmRSS`): before, with the sessions built (their own cost), and after
//! they are all in the store (the store's cost on top).

use std::time::{Duration, Instant, SystemTime};

use portcullis::oidc::identity_from_claims;
use portcullis::session::{MemoryStore, Session, SessionId};
use serde_json::{Value, json};

const ID_TOKEN_LEN: usize = 1024;
const ACCESS_TOKEN_LEN: usize = 1024;
const REFRESH_TOKEN_LEN: usize = 1024;

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
    let sid = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
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

#[tokio::main(flavor = "current_thread")]
async fn main() {
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
    // First the sessions alone (what any store must keep: tokens, identity, the struct)...
    let t0 = Instant::now();
    let mut sessions: Vec<Session> = (0..n).map(|i| session(i, now)).collect();
    let rss1 = status_bytes("VmRSS:");
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
        "  the store             {:.0} bytes (moka entry, LRU and timer nodes, sid/sub/id indexes)",
        per_session - own
    );
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
