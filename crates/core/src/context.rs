//! The context every core operation receives: storage, clock, settings, catalogue, keys.

use crate::admin::Admin;
use crate::api_keys::UsageRecorder;
use crate::audit::{AuditLog, AuditSigner, Redactor};
use crate::cache::CredentialCache;
use crate::federation::IssuerKeys;
use crate::keys::{Keyring, Sealer};
use crate::replay::{MemoryReplay, ReplayCache};
use crate::scopes::Catalogue;
use crate::settings::Settings;
use portcullis_domain::Clock;
use portcullis_store::Store;
use portcullis_store::StoreResult;
use secrecy::SecretString;
use std::sync::Arc;
use time::OffsetDateTime;

/// Shared, cheaply cloned handles. Generic over the store so the core never names a backend.
pub struct Cx<S> {
    pub store: S,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    pub catalogue: Arc<Catalogue>,
    pub keys: Arc<Keyring>,
    pub sealer: Arc<Sealer>,
    /// HMAC key for CSRF tokens, shared by all replicas through the database.
    pub csrf_key: Arc<[u8; 32]>,
    /// API key uses waiting to be written (see [`crate::api_keys::UsageRecorder`]).
    pub usage: Arc<UsageRecorder>,
    /// Cached signing keys of external issuers trusted for token exchange.
    pub issuer_keys: Arc<IssuerKeys>,
    /// Recently loaded credential state, for the guard (see [`crate::cache`]).
    pub cache: Arc<CredentialCache>,
    /// The audit log's writer, checkpoint key and redaction rules (see [`crate::audit`]).
    pub audit: Arc<AuditLog>,
    /// Single-use values seen recently (DPoP `jti`s): in-process, or Redis when configured.
    pub replay: Arc<dyn ReplayCache>,
    /// This process's identity among replicas (holder of [`crate::maintenance`]'s lease).
    pub instance: Arc<str>,
}

impl<S: Clone> Clone for Cx<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            clock: self.clock.clone(),
            settings: self.settings.clone(),
            catalogue: self.catalogue.clone(),
            keys: self.keys.clone(),
            sealer: self.sealer.clone(),
            csrf_key: self.csrf_key.clone(),
            usage: self.usage.clone(),
            issuer_keys: self.issuer_keys.clone(),
            cache: self.cache.clone(),
            audit: self.audit.clone(),
            replay: self.replay.clone(),
            instance: self.instance.clone(),
        }
    }
}

impl<S: Store> Cx<S> {
    /// Loads (creating on first start) the signing keys and the server secrets.
    pub async fn init(
        store: S,
        clock: Arc<dyn Clock>,
        settings: Settings,
        catalogue: Catalogue,
        key_encryption_key: Option<&SecretString>,
    ) -> Result<Self, String> {
        let sealer = Arc::new(Sealer::new(key_encryption_key)?);
        let now = clock.now();
        let keys = Arc::new(Keyring::new(sealer.clone()));
        keys.load(&store, now).await?;
        let csrf_key = server_key(&store, &sealer, "csrf", now).await?;
        let signer = AuditSigner::from_seed(&server_key(&store, &sealer, "audit_signing", now).await?)?;
        let redactor = Redactor::new(
            &settings.audit.redaction,
            server_key(&store, &sealer, "audit_pseudonym", now).await?,
        );
        let audit = AuditLog::start(store.clone(), clock.clone(), settings.audit.clone(), redactor, signer);
        Ok(Self {
            store,
            clock,
            settings: Arc::new(settings),
            catalogue: Arc::new(catalogue),
            keys,
            sealer,
            csrf_key: Arc::new(csrf_key),
            usage: Arc::default(),
            issuer_keys: Arc::default(),
            cache: Arc::default(),
            audit,
            replay: Arc::new(MemoryReplay::default()),
            instance: Arc::from(format!("replica_{}", portcullis_domain::secret::random_id(8))),
        })
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Reloads signing keys every [`crate::keys::RELOAD_EVERY`], so a key rotated by any process
    /// is published (and starts signing at its activation time) on every replica.
    pub fn spawn_key_reloader(&self) -> tokio::task::JoinHandle<()> {
        let cx = self.clone();
        tokio::spawn(async move {
            // Within the activation delay of a rotation, and soon after a short maintenance
            // interval (tests and demos rotate in seconds).
            let period = crate::keys::RELOAD_EVERY
                .min(crate::maintenance::period(&cx.settings).unsigned_abs() * 2)
                .min((cx.settings.signing_key_activation_delay / 2_i32).unsigned_abs())
                .max(std::time::Duration::from_secs(1));
            let mut every = tokio::time::interval(period);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = cx.keys.load(&cx.store, cx.now()).await {
                    tracing::error!(error = %e, "reloading signing keys failed");
                }
            }
        })
    }
}

impl<S: Store> Cx<S> {
    /// Stores a pending authorization request and keeps a copy here: the sign-in and consent
    /// pages that follow on this replica read it without a round trip.
    pub async fn insert_pending(&self, p: &portcullis_store::PendingAuthorization) -> StoreResult<()> {
        let generation = self.cache.snapshot();
        self.store.insert_pending(p).await?;
        self.cache.put_pending(p.clone(), self.now(), generation);
        Ok(())
    }

    /// An unexpired pending request, from this replica's copy or the store. Only for reading:
    /// using one goes through [`Cx::take_pending`], which always asks the store.
    pub async fn pending(&self, id: &str) -> StoreResult<Option<portcullis_store::PendingAuthorization>> {
        let now = self.now();
        let keep = self.settings.authorization_request_ttl.max(time::Duration::minutes(1));
        if let Some(p) = self.cache.pending(id, now, keep) {
            return Ok((p.expires_at > now).then_some(p));
        }
        let generation = self.cache.snapshot();
        let p = self.store.pending(id, now).await?;
        if let Some(p) = &p {
            self.cache.put_pending(p.clone(), now, generation);
        }
        Ok(p)
    }

    /// Uses a pending request up: of concurrent attempts on any replicas, one gets it.
    pub async fn take_pending(
        &self,
        id: &str,
    ) -> StoreResult<Option<portcullis_store::PendingAuthorization>> {
        self.cache.forget_pending(id);
        self.store.take_pending(id, self.now()).await
    }
}

impl<S: Store> Cx<S> {
    /// The administrative operations, acting with this context's store, clock and settings.
    pub fn admin(&self) -> Admin<S> {
        Admin::new(self.store.clone(), self.clock.clone(), self.catalogue.clone(), self.sealer.clone())
            .with_key_environment(self.settings.key_environment)
            .with_cache(self.cache.clone())
            .with_audit(self.audit.clone())
    }

    /// Where this context's events go.
    pub fn events(&self) -> crate::events::Writer<'_, S> {
        crate::events::Writer { store: &self.store, audit: Some(&self.audit) }
    }

    /// The deployment-wide upkeep ([`crate::maintenance`]): whichever replica holds the lease
    /// checkpoints and prunes the audit log, reclaims unused clients and sweeps expired rows.
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let cx = self.clone();
        tokio::spawn(async move {
            let period = crate::maintenance::period(&cx.settings).unsigned_abs();
            let mut every = tokio::time::interval(period);
            every.tick().await;
            let mut schedule = crate::maintenance::Schedule::default();
            loop {
                every.tick().await;
                crate::maintenance::tick(&cx, &mut schedule).await;
            }
        })
    }

    /// Streams audit entries to the workspaces' webhook sinks.
    pub fn spawn_audit_sinks(&self) -> tokio::task::JoinHandle<()> {
        let a = &self.settings.audit;
        crate::audit::sinks::spawn_delivery(self.clone(), a.sink_poll, a.sink_retry_base)
    }

    /// Signs checkpoints of logs that grew (also done at shutdown, after the last flush).
    pub async fn audit_checkpoint(&self) {
        if let Err(e) = self.audit.checkpoint(&self.store, self.now()).await {
            tracing::error!(error = %e, "checkpointing the audit log failed");
        }
    }

    /// Writes recorded API key uses every [`crate::api_keys::USAGE_FLUSH_EVERY`].
    pub fn spawn_usage_flusher(&self) -> tokio::task::JoinHandle<()> {
        let cx = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::api_keys::USAGE_FLUSH_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                cx.flush_usage().await;
            }
        })
    }

    /// Writes recorded API key uses now (also done at shutdown).
    pub async fn flush_usage(&self) {
        if let Err(e) = self.usage.flush(&self.store).await {
            tracing::error!(error = %e, "writing API key usage failed; will retry");
        }
    }
}

/// A 256-bit server key stored (sealed) in the database; the first replica creates it.
async fn server_key<S: Store>(
    store: &S,
    sealer: &Sealer,
    name: &str,
    now: OffsetDateTime,
) -> Result<[u8; 32], String> {
    let mut fresh = [0u8; 32];
    aws_lc_rs::rand::fill(&mut fresh).map_err(|_| "no randomness")?;
    let aad = format!("server_secret:{name}");
    let stored =
        store.server_secret(name, &sealer.seal(&fresh, &aad), now).await.map_err(|e| e.to_string())?;
    let bytes = sealer.open(&stored, &aad)?;
    bytes.try_into().map_err(|_| format!("server secret {name} has the wrong length"))
}

/// Logs an internal failure with its detail and returns the generic `server_error` the client
/// sees (design rule: internal detail never reaches a client).
pub fn internal(e: impl std::fmt::Display) -> portcullis_proto::OAuthError {
    tracing::error!(error = %e, "internal error");
    portcullis_proto::OAuthError::server_error()
}
