//! The issuer's signing keys: fetched only from discovery's `jwks_uri`, filtered, cached, and
//! re-fetched — rate-limited and single-flight — when a token names a key we do not have.
//!
//! Rules (OpenID Connect Core §10.1 and §10.1.1, RFC 7517 §4–5, SECURITY IDT-04, IDT-09,
//! IDT-10, IDP-06, DOS-06):
//! - Keys come from `jwks_uri` and nowhere else; nothing in a token header (`jku`, `x5u`,
//!   `jwk`, `x5c`) is ever followed or used.
//! - Unusable JWKs are dropped at load, with one WARN per fetch: unknown `kty` (and `oct`:
//!   no shared-secret keys), `use` other than `sig`, `key_ops` without `verify`, RSA moduli
//!   below 2048 bits, EC/OKP coordinates of the wrong length for their curve, members of the
//!   wrong type. (openidconnect itself skips only keys it cannot deserialise and checks `use`
//!   at lookup, not `key_ops` or key size.)
//! - A fetch that fails, or yields no usable key, keeps the last good set.
//! - An unknown `kid` triggers at most one re-fetch per [`REFETCH_INTERVAL`] across all
//!   callers: concurrent callers wait for the one fetch in flight and then retry with its
//!   result. The interval is measured with `tokio::time::Instant`, so paused test time drives
//!   it. [`JwksCache::verify_with`] is the one entry point; a bearer-token verifier shares the
//!   same cache (and therefore the same throttle) by calling it with its own check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKey, CoreJsonWebKeySet};
use openidconnect::{AsyncHttpClient, JsonWebKeySet};
use serde_json::{Map, Value};
use tokio::time::Instant;
use url::Url;

use super::http::{IdpHttp, IdpHttpError};
use super::verify::parse_json_object;

/// Minimum time between two unknown-`kid` re-fetches.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Why loading the key set failed (the previous set, if any, stays in use).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching the JWKS failed")]
    Http(#[from] IdpHttpError),
    #[error("the JWKS endpoint answered status {0}")]
    Status(u16),
    #[error("the JWKS response is not JSON (content type {0:?})")]
    ContentType(String),
    #[error("the JWKS is not a JSON object with a `keys` array")]
    NotAJwks,
    #[error("the JWKS contains no usable signing key ({ignored} ignored)")]
    NoUsableKey { ignored: usize },
}

struct Current {
    uri: Option<Url>,
    keys: Arc<CoreJsonWebKeySet>,
    /// Bumped on every successful load; tells a waiting caller that a fetch happened.
    generation: u64,
}

/// Cache of the issuer's verification keys, shared (as `Arc`) by every verifier.
pub struct JwksCache {
    http: IdpHttp,
    current: RwLock<Current>,
    /// Single-flight gate and time of the last unknown-`kid` re-fetch attempt.
    refetch: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cur = self.read();
        f.debug_struct("JwksCache")
            .field("uri", &cur.uri.as_ref().map(Url::as_str))
            .field("keys", &cur.keys.keys().len())
            .field("generation", &cur.generation)
            .finish()
    }
}

impl JwksCache {
    /// An empty cache; [`JwksCache::load`] (called by discovery) fills it.
    pub fn new(http: IdpHttp) -> Self {
        JwksCache {
            http,
            current: RwLock::new(Current {
                uri: None,
                keys: Arc::new(JsonWebKeySet::new(Vec::new())),
                generation: 0,
            }),
            refetch: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current key set (possibly empty before the first load).
    pub fn keys(&self) -> Arc<CoreJsonWebKeySet> {
        self.read().keys.clone()
    }

    /// Whether a usable key set has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.read().generation > 0
    }

    /// Number of JWKS fetches attempted so far (loads and re-fetches), for metrics and tests.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Fetches `uri` and, if it yields at least one usable key, makes it the current set and
    /// the URI for later re-fetches. On error the previous set and URI stay.
    pub async fn load(&self, uri: Url) -> Result<(), JwksError> {
        let keys = self.fetch(&uri).await?;
        let mut cur = self.current.write().unwrap_or_else(PoisonError::into_inner);
        cur.uri = Some(uri);
        cur.keys = Arc::new(keys);
        cur.generation += 1;
        Ok(())
    }

    /// Runs `verify` with the current keys; if it fails with an error `is_unknown_key` accepts,
    /// re-fetches the set (at most once per [`REFETCH_INTERVAL`] across all callers, one fetch
    /// in flight at a time) and runs `verify` once more.
    pub async fn verify_with<T, E>(
        &self,
        verify: impl Fn(&CoreJsonWebKeySet) -> Result<T, E>,
        is_unknown_key: impl Fn(&E) -> bool,
    ) -> Result<T, E> {
        let (keys, generation) = {
            let cur = self.read();
            (cur.keys.clone(), cur.generation)
        };
        match verify(&keys) {
            Err(e) if is_unknown_key(&e) => {
                if self.refetch_for_unknown_key(generation).await {
                    verify(&self.keys())
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// Returns `true` when the set changed since `seen_generation` (by this call or by one it
    /// waited for), i.e. a retry may succeed.
    async fn refetch_for_unknown_key(&self, seen_generation: u64) -> bool {
        let mut last = self.refetch.lock().await;
        let (uri, generation) = {
            let cur = self.read();
            (cur.uri.clone(), cur.generation)
        };
        if generation != seen_generation {
            return true;
        }
        let Some(uri) = uri else { return false };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < REFETCH_INTERVAL) {
            tracing::debug!("unknown key id: JWKS re-fetch throttled");
            return false;
        }
        *last = Some(now);
        match self.load(uri).await {
            Ok(()) => {
                tracing::info!(
                    keys = self.keys().keys().len(),
                    "JWKS re-fetched for an unknown key id"
                );
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS re-fetch failed; keeping the last good key set");
                false
            }
        }
    }

    async fn fetch(&self, uri: &Url) -> Result<CoreJsonWebKeySet, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(uri.as_str())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .body(Vec::new())
            .map_err(|_| IdpHttpError::InvalidRequest)?;
        let response = self.http.call(request).await?;
        if response.status() != http::StatusCode::OK {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let content_type = super::content_type(response.headers());
        if content_type != "application/json" && content_type != "application/jwk-set+json" {
            return Err(JwksError::ContentType(content_type));
        }
        let doc = parse_json_object(response.body()).map_err(|_| JwksError::NotAJwks)?;
        let (keys, ignored) = usable_keys(&doc).ok_or(JwksError::NotAJwks)?;
        if ignored > 0 {
            tracing::warn!(ignored, usable = keys.len(), "JWKS: ignored unusable keys");
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey { ignored });
        }
        Ok(JsonWebKeySet::new(keys))
    }
}

/// The usable signing keys of a JWKS document and the number ignored; `None` if `doc` has no
/// `keys` array.
pub fn usable_keys(doc: &Map<String, Value>) -> Option<(Vec<CoreJsonWebKey>, usize)> {
    let Value::Array(raw) = doc.get("keys")? else {
        return None;
    };
    let keys: Vec<CoreJsonWebKey> = raw
        .iter()
        .filter_map(|k| k.as_object())
        .filter(|k| usable(k))
        .filter_map(|k| serde_json::from_value(Value::Object(k.clone())).ok())
        .collect();
    let ignored = raw.len() - keys.len();
    Some((keys, ignored))
}

fn usable(key: &Map<String, Value>) -> bool {
    match key.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return false,
    }
    match key.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if ops.iter().any(|o| o.as_str() == Some("verify")) => {}
        Some(_) => return false,
    }
    if let Some(kid) = key.get("kid")
        && !kid.is_string()
    {
        return false;
    }
    let b64 = |name: &str| {
        key.get(name)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
    };
    match key.get("kty").and_then(Value::as_str) {
        Some("RSA") => {
            let (Some(n), Some(e)) = (b64("n"), b64("e")) else {
                return false;
            };
            let n_bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            n_bits >= 2048 && !e.is_empty()
        }
        Some("EC") => {
            let len = match key.get("crv").and_then(Value::as_str) {
                Some("P-256") => 32,
                Some("P-384") => 48,
                Some("P-521") => 66,
                _ => return false,
            };
            matches!((b64("x"), b64("y")), (Some(x), Some(y)) if x.len() == len && y.len() == len)
        }
        Some("OKP") => {
            key.get("crv").and_then(Value::as_str) == Some("Ed25519")
                && b64("x").is_some_and(|x| x.len() == 32)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::testutil::{EcKey, Reply, TestServer, test_http};
    use openidconnect::JsonWebKey;
    use serde_json::json;

    fn doc(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn filters_unusable_keys() {
        let good = EcKey::generate("good").jwk();
        let mut enc = EcKey::generate("enc").jwk();
        enc["use"] = json!("enc");
        let mut encrypt_ops = EcKey::generate("ops").jwk();
        encrypt_ops["key_ops"] = json!(["encrypt"]);
        let mut wrong_len = EcKey::generate("short").jwk();
        wrong_len["x"] = json!("AAAA");
        let small_rsa = json!({"kty":"RSA","kid":"rsa512","n": URL_SAFE_NO_PAD.encode([0xffu8; 64]),"e":"AQAB"});
        let big_rsa = json!({"kty":"RSA","kid":"rsa2048","n": URL_SAFE_NO_PAD.encode([0xffu8; 256]),"e":"AQAB"});
        let d = doc(json!({"keys": [
            good, enc, encrypt_ops, wrong_len, small_rsa, big_rsa,
            {"kty":"AKP","alg":"ML-DSA-99","pub":"AAAA"},
            {"kty":"XYZ"},
            {"kty":"oct","k":"c2VjcmV0"},
            {"kty":"EC","crv":"P-256","x":5,"y":"AA"},
            "not an object",
        ]}));
        let (keys, ignored) = usable_keys(&d).unwrap();
        let kids: Vec<_> = keys
            .iter()
            .map(|k| k.key_id().unwrap().as_str().to_owned())
            .collect();
        assert_eq!(kids, ["good", "rsa2048"]);
        assert_eq!(ignored, 9);
    }

    #[test]
    fn rejects_documents_without_keys_array() {
        assert!(usable_keys(&doc(json!({"keys": {}}))).is_none());
        assert!(usable_keys(&doc(json!({}))).is_none());
    }

    fn jwks_body(keys: &[&EcKey]) -> String {
        json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
    }

    #[tokio::test]
    async fn failed_or_empty_refetch_keeps_last_good_set() {
        let key = EcKey::generate("k1");
        let body = std::sync::Arc::new(std::sync::Mutex::new((200u16, jwks_body(&[&key]))));
        let b = body.clone();
        let srv = TestServer::start(move |_req| {
            let (status, body) = b.lock().unwrap().clone();
            Reply::json(status, &body)
        })
        .await;
        let cache = JwksCache::new(test_http());
        let uri = Url::parse(&srv.url("/jwks")).unwrap();
        cache.load(uri.clone()).await.unwrap();
        assert!(cache.is_loaded());

        for (status, replacement) in [
            (500, jwks_body(&[])),
            (200, "{\"keys\":[]}".to_owned()),
            (200, "<html>".to_owned()),
            (200, json!({"keys":[{"kty":"EC","use":"enc"}]}).to_string()),
        ] {
            *body.lock().unwrap() = (status, replacement);
            assert!(cache.load(uri.clone()).await.is_err());
            assert_eq!(cache.keys().keys().len(), 1, "last good set kept");
            assert_eq!(cache.keys().keys()[0].key_id().unwrap().as_str(), "k1");
        }
    }

    #[tokio::test]
    async fn wrong_content_type_is_refused() {
        let key = EcKey::generate("k1");
        let body = jwks_body(&[&key]);
        let srv = TestServer::start(move |_req| {
            Reply::json(200, &body).header("content-type", "text/html")
        })
        .await;
        let cache = JwksCache::new(test_http());
        let err = cache
            .load(Url::parse(&srv.url("/jwks")).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, JwksError::ContentType(_)), "{err:?}");
        assert!(!cache.is_loaded());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unknown_kid_refetch_is_single_flight_and_throttled() {
        let key = EcKey::generate("k1");
        let body = jwks_body(&[&key]);
        let srv = TestServer::start(move |_req| Reply::json(200, &body)).await;
        let cache = Arc::new(JwksCache::new(test_http()));
        cache
            .load(Url::parse(&srv.url("/jwks")).unwrap())
            .await
            .unwrap();
        assert_eq!(srv.hits(), 1);

        // 100 concurrent verifications naming random unknown kids.
        let lookup = |kid: String| {
            let cache = cache.clone();
            async move {
                cache
                    .verify_with(
                        |keys| {
                            keys.keys()
                                .iter()
                                .find(|k| k.key_id().map(|i| i.as_str()) == Some(kid.as_str()))
                                .map(|_| ())
                                .ok_or(())
                        },
                        |_| true,
                    )
                    .await
            }
        };
        let mut tasks = Vec::new();
        for i in 0..100 {
            tasks.push(tokio::spawn(lookup(format!("random-{i}"))));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_err());
        }
        assert_eq!(srv.hits(), 2, "exactly one re-fetch for 100 unknown kids");

        // Still within 30 s: no further fetch.
        assert!(lookup("again".into()).await.is_err());
        assert_eq!(srv.hits(), 2);

        // 31 s later (paused clock), one more re-fetch is allowed.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(31)).await;
        tokio::time::resume();
        assert!(lookup("later".into()).await.is_err());
        assert_eq!(srv.hits(), 3);
        assert!(lookup("later2".into()).await.is_err());
        assert_eq!(srv.hits(), 3);
        assert_eq!(cache.fetch_count(), 3);
    }

    #[tokio::test]
    async fn rotation_is_picked_up_by_refetch() {
        let old = EcKey::generate("old");
        let new = EcKey::generate("new");
        let body = std::sync::Arc::new(std::sync::Mutex::new(jwks_body(&[&old])));
        let b = body.clone();
        let srv = TestServer::start(move |_req| Reply::json(200, &b.lock().unwrap().clone())).await;
        let cache = JwksCache::new(test_http());
        cache
            .load(Url::parse(&srv.url("/jwks")).unwrap())
            .await
            .unwrap();
        *body.lock().unwrap() = jwks_body(&[&new]);
        let found = cache
            .verify_with(
                |keys| {
                    keys.keys()
                        .iter()
                        .find(|k| k.key_id().map(|i| i.as_str()) == Some("new"))
                        .map(|_| ())
                        .ok_or(())
                },
                |_| true,
            )
            .await;
        assert!(found.is_ok());
    }
}
