//! "Seen once" memory for values that must not be accepted twice within a short window: the `jti`
//! of DPoP proofs (RFC 9449 §11.1). In-process by default; the server swaps in a Redis-backed one
//! (in the guard crate, next to the shared rate limits) so every replica sees every use.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// The outcome of [`ReplayCache::first_use`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Not seen within its window: now recorded.
    First,
    /// Seen before: a replay.
    Replayed,
    /// The cache is full of live entries and cannot record more; the caller refuses (fails
    /// closed) rather than accept something it cannot remember.
    Full,
}

pub type UseFuture<'a> = Pin<Box<dyn Future<Output = Use> + Send + 'a>>;

/// Remembers keys until they expire.
pub trait ReplayCache: Send + Sync {
    /// Records `key` until `expires_ms` (Unix milliseconds), `now_ms` being the present.
    fn first_use<'a>(&'a self, key: &'a str, now_ms: i64, expires_ms: i64) -> UseFuture<'a>;
}

/// Process-local entries, keyed by a 128-bit digest so memory per entry stays small whatever the
/// key's length. Expired entries are swept when the map grows past the last sweep's size twice.
pub struct MemoryReplay {
    inner: Mutex<Entries>,
    capacity: usize,
}

struct Entries {
    map: HashMap<[u8; 16], i64>,
    sweep_at: usize,
}

impl MemoryReplay {
    pub fn new(capacity: usize) -> Self {
        Self { inner: Mutex::new(Entries { map: HashMap::new(), sweep_at: 1024 }), capacity }
    }

    /// The synchronous check behind [`ReplayCache::first_use`] (also the Redis cache's fallback).
    pub fn check(&self, key: &str, now_ms: i64, expires_ms: i64) -> Use {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if e.map.len() >= e.sweep_at.min(self.capacity) {
            e.map.retain(|_, exp| *exp > now_ms);
            e.sweep_at = (e.map.len() * 2).max(1024);
        }
        match e.map.get(&id) {
            Some(exp) if *exp > now_ms => Use::Replayed,
            _ if e.map.len() >= self.capacity => Use::Full,
            _ => {
                e.map.insert(id, expires_ms);
                Use::First
            }
        }
    }
}

impl Default for MemoryReplay {
    /// Room for two million live entries (about 80 MB at worst).
    fn default() -> Self {
        Self::new(2_000_000)
    }
}

impl ReplayCache for MemoryReplay {
    fn first_use<'a>(&'a self, key: &'a str, now_ms: i64, expires_ms: i64) -> UseFuture<'a> {
        let r = self.check(key, now_ms, expires_ms);
        Box::pin(async move { r })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_accepted_once_until_it_expires() {
        let c = MemoryReplay::new(10);
        assert_eq!(c.check("a", 0, 1000), Use::First);
        assert_eq!(c.check("a", 500, 1500), Use::Replayed);
        assert_eq!(c.check("b", 500, 1500), Use::First);
        assert_eq!(c.check("a", 1001, 2000), Use::First, "expired entries may be used again");
    }

    #[test]
    fn a_full_cache_refuses_rather_than_forgets() {
        let c = MemoryReplay::new(2);
        assert_eq!(c.check("a", 0, 10_000), Use::First);
        assert_eq!(c.check("b", 0, 10_000), Use::First);
        assert_eq!(c.check("c", 0, 10_000), Use::Full);
        assert_eq!(c.check("a", 0, 10_000), Use::Replayed);
    }
}
