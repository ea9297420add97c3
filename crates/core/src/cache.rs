//! A short-lived, in-process cache of credential state for the guard: API keys by secret hash,
//! the live status of access tokens by `jti` (client, grant, family and the user's current
//! permissions), and the claims of access tokens whose signature verified.
//!
//! Entries expire after [`crate::settings::Settings::credential_cache_ttl`] (5 s by default), so
//! another replica's revocation or permission change is seen within that time. A change made in
//! this process (revoking a key, grant, client or token family, rotating a key, changing a
//! member) calls [`CredentialCache::invalidate`], which bumps a generation number: every entry
//! cached before it is a miss from then on. One counter for everything keeps the invalidation
//! impossible to forget for one kind of credential; such changes are rare next to requests.
//!
//! The state checks themselves (revoked, expired, grace period, address) are evaluated on every
//! request against the clock; only the database rows are cached.

use portcullis_domain::TokenHash;
use portcullis_store::ApiKey;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use time::{Duration, OffsetDateTime};

/// Entries kept per map before the oldest half is dropped (bounds memory under a flood of
/// made-up credentials).
const MAX_ENTRIES: usize = 50_000;

struct Entry<T> {
    value: T,
    at: OffsetDateTime,
    generation: u64,
}

struct Map<K, T>(Mutex<HashMap<K, Entry<T>>>);

impl<K: Eq + Hash, T: Clone> Map<K, T> {
    fn get<Q>(&self, k: &Q, now: OffsetDateTime, ttl: Duration, generation: u64) -> Option<T>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let m = self.0.lock().expect("lock");
        let e = m.get(k)?;
        (e.generation == generation && now >= e.at && now - e.at < ttl).then(|| e.value.clone())
    }

    fn put(&self, k: K, value: T, now: OffsetDateTime, generation: u64) {
        let mut m = self.0.lock().expect("lock");
        if m.len() >= MAX_ENTRIES {
            let mut ats: Vec<OffsetDateTime> = m.values().map(|e| e.at).collect();
            let (_, median, _) = ats.select_nth_unstable(MAX_ENTRIES / 2);
            let median = *median;
            m.retain(|_, e| e.at > median);
        }
        m.insert(k, Entry { value, at: now, generation });
    }

    fn remove(&self, k: &K) {
        self.0.lock().expect("lock").remove(k);
    }
}

impl<K, T> Default for Map<K, T> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

/// The live status of an access token: its current scopes, or why it no longer works.
pub type LiveStatus = Result<portcullis_domain::ScopeSet, &'static str>;

/// See the module documentation.
#[derive(Default)]
pub struct CredentialCache {
    generation: AtomicU64,
    keys: Map<TokenHash, Option<ApiKey>>,
    live: Map<String, LiveStatus>,
    /// Claims of access tokens whose signature verified, by SHA-256 of the token: the same bytes
    /// verify the same way, so the ECDSA check runs once per token per TTL.
    verified: Map<[u8; 32], crate::oauth::tokens::AccessClaims>,
    /// Client rows by id, for client authentication at the token, introspection and revocation
    /// endpoints (a rotated secret or revoked client on another replica is seen within the TTL).
    clients: Map<String, Option<Arc<portcullis_store::Client>>>,
    /// Browser sessions by cookie hash: the consent page and its submission follow sign-in at
    /// once. A sign-out here removes the entry; one on another replica is seen within the TTL.
    sessions: Map<TokenHash, portcullis_store::Session>,
    /// Pending authorization requests by id. Their rows never change, only disappear when used,
    /// and using one always asks the store (single use), so a cached copy cannot be used twice.
    pending: Map<String, portcullis_store::PendingAuthorization>,
}

impl CredentialCache {
    /// Forgets everything cached so far (called after any change to credential state).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The generation to pass to a later `put_*`: read it *before* loading from the store, so a
    /// change that lands while loading makes the stored entry stale at once.
    pub fn snapshot(&self) -> u64 {
        self.generation()
    }

    pub fn key(&self, hash: &TokenHash, now: OffsetDateTime, ttl: Duration) -> Option<Option<ApiKey>> {
        self.keys.get(hash, now, ttl, self.generation())
    }

    pub fn put_key(&self, hash: TokenHash, key: Option<ApiKey>, now: OffsetDateTime, generation: u64) {
        self.keys.put(hash, key, now, generation);
    }

    pub fn live(&self, jti: &str, now: OffsetDateTime, ttl: Duration) -> Option<LiveStatus> {
        self.live.get(jti, now, ttl, self.generation())
    }

    pub fn put_live(&self, jti: &str, status: LiveStatus, now: OffsetDateTime, generation: u64) {
        self.live.put(jti.to_owned(), status, now, generation);
    }

    pub fn client(
        &self,
        id: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Option<Option<Arc<portcullis_store::Client>>> {
        self.clients.get(id, now, ttl, self.generation())
    }

    pub fn put_client(
        &self,
        id: &str,
        client: Option<Arc<portcullis_store::Client>>,
        now: OffsetDateTime,
        generation: u64,
    ) {
        self.clients.put(id.to_owned(), client, now, generation);
    }

    pub fn session(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Option<portcullis_store::Session> {
        self.sessions.get(hash, now, ttl, self.generation())
    }

    pub fn put_session(&self, s: portcullis_store::Session, now: OffsetDateTime, generation: u64) {
        self.sessions.put(s.hash.clone(), s, now, generation);
    }

    pub fn forget_session(&self, hash: &TokenHash) {
        self.sessions.remove(hash);
    }

    /// A pending request cached less than `ttl` ago (the caller checks its expiry).
    pub fn pending(
        &self,
        id: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Option<portcullis_store::PendingAuthorization> {
        self.pending.get(id, now, ttl, self.generation())
    }

    pub fn put_pending(
        &self,
        p: portcullis_store::PendingAuthorization,
        now: OffsetDateTime,
        generation: u64,
    ) {
        self.pending.put(p.id.clone(), p, now, generation);
    }

    pub fn forget_pending(&self, id: &str) {
        self.pending.remove(&id.to_owned());
    }

    pub fn verified(
        &self,
        token_hash: &[u8; 32],
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Option<crate::oauth::tokens::AccessClaims> {
        self.verified.get(token_hash, now, ttl, self.generation())
    }

    pub fn put_verified(
        &self,
        token_hash: [u8; 32],
        claims: crate::oauth::tokens::AccessClaims,
        now: OffsetDateTime,
        generation: u64,
    ) {
        self.verified.put(token_hash, claims, now, generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_domain::ScopeSet;

    #[test]
    fn entries_expire_and_invalidation_drops_them() {
        let c = CredentialCache::default();
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ttl = Duration::seconds(5);
        let g = c.snapshot();
        c.put_live("j1", Ok(ScopeSet::parse("contacts:read").unwrap()), t, g);
        assert!(c.live("j1", t + Duration::seconds(4), ttl).is_some());
        assert!(c.live("j1", t + Duration::seconds(5), ttl).is_none(), "expired");
        c.put_live("j1", Err("revoked"), t, c.snapshot());
        c.invalidate();
        assert!(c.live("j1", t, ttl).is_none(), "invalidated");
        // An entry loaded while a change landed is stale at once.
        let before = c.snapshot();
        c.invalidate();
        c.put_live("j2", Err("x"), t, before);
        assert!(c.live("j2", t, ttl).is_none());
    }
}
