//! Background upkeep that must run once for the whole deployment, not once per replica: sweeping
//! rows that can never be used again, signing audit checkpoints and pruning the log, reclaiming
//! unused self-registered clients, rotating the signing key on schedule. Replicas compete for one
//! lease in the database every [`period`]; the holder renews it as it works, and if it dies the
//! lease lapses after [`lease_ttl`] (three periods) and another replica takes over. Per-process
//! work (key reloads, usage flushes, webhook delivery cursors) stays in every replica.

use crate::context::Cx;
use portcullis_store::{Store, SweepReport};
use time::{Duration, OffsetDateTime};

/// The lease's name.
pub const LEASE: &str = "maintenance";

/// How often replicas try for the lease (and the holder works): the configured interval, or the
/// audit checkpoint interval when that is shorter.
pub fn period(settings: &crate::Settings) -> Duration {
    settings.maintenance_interval.min(settings.audit.checkpoint_interval).max(Duration::SECOND)
}

/// How long a holder keeps the lease without renewing it: three periods, so one slow round does
/// not hand it over, and a dead holder is replaced soon after.
pub fn lease_ttl(settings: &crate::Settings) -> Duration {
    period(settings) * 3_i32
}
/// Expired rows are kept this long after they expire (support questions, forensics).
pub const KEEP_EXPIRED: Duration = Duration::days(1);
/// How often the holder sweeps.
pub const SWEEP_EVERY: Duration = Duration::minutes(10);

/// When the holder last did each job.
#[derive(Default)]
pub struct Schedule {
    checkpoint: Option<OffsetDateTime>,
    prune: Option<OffsetDateTime>,
    reclaim: Option<OffsetDateTime>,
    sweep: Option<OffsetDateTime>,
    rotation: Option<OffsetDateTime>,
}

/// How often the holder checks whether the signing key is due for rotation.
const ROTATION_CHECK_EVERY: Duration = Duration::minutes(1);

fn due(last: Option<OffsetDateTime>, now: OffsetDateTime, every: Duration) -> bool {
    last.is_none_or(|t| now - t >= every)
}

/// One round: takes or renews the lease and, if held, does what is due. Returns whether this
/// replica holds the lease.
pub async fn tick<S: Store>(cx: &Cx<S>, s: &mut Schedule) -> bool {
    let now = cx.now();
    match cx.store.acquire_lease(LEASE, &cx.instance, now, now + lease_ttl(&cx.settings)).await {
        Ok(true) => {}
        Ok(false) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "taking the maintenance lease failed");
            return false;
        }
    }
    if let Some(every) = cx.settings.signing_key_rotation
        && due(s.rotation, now, ROTATION_CHECK_EVERY.min(every / 2_i32))
    {
        s.rotation = Some(now);
        rotate_signing_key(cx, every).await;
    }
    if due(s.checkpoint, now, cx.settings.audit.checkpoint_interval) {
        s.checkpoint = Some(now);
        cx.audit_checkpoint().await;
    }
    if due(s.prune, now, Duration::HOUR) {
        s.prune = Some(now);
        if let Err(e) = crate::audit::retention::prune(&cx.store, now, cx.settings.audit.retention).await {
            tracing::error!(error = %e, "pruning the audit log failed");
        }
    }
    if due(s.reclaim, now, Duration::HOUR) {
        s.reclaim = Some(now);
        if let Err(e) = crate::oauth::registration::reclaim(cx).await {
            tracing::error!(error = %e, "reclaiming unused clients failed");
        }
    }
    if due(s.sweep, now, SWEEP_EVERY) {
        s.sweep = Some(now);
        match sweep(cx).await {
            Ok(r) if r.total() > 0 => {
                tracing::info!(event = "swept", deleted = r.total(), report = ?r, "expired rows deleted")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "sweeping expired rows failed"),
        }
    }
    true
}

/// Rotates the signing key if the newest is `every` old. The store refuses a second key of the
/// same generation, so even two replicas that both believe they hold the lease add one key.
async fn rotate_signing_key<S: Store>(cx: &Cx<S>, every: Duration) {
    let now = cx.now();
    let s = &cx.settings;
    match crate::keys::rotate_if_due(
        &cx.keys,
        &cx.store,
        now,
        every,
        s.signing_key_activation_delay,
        s.longest_token_ttl(),
    )
    .await
    {
        Ok(Some(k)) => {
            tracing::info!(
                event = "signing_key_rotated",
                kid = %k.kid,
                generation = k.generation,
                active_from = %k.active_from,
                "signing key rotated on schedule"
            );
            // Publish it here at once; the other replicas load it within their reload period,
            // well before it starts signing.
            if let Err(e) = cx.keys.load(&cx.store, now).await {
                tracing::error!(error = %e, "reloading signing keys failed");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "rotating the signing key failed"),
    }
}

/// Deletes rows that expired more than [`KEEP_EXPIRED`] ago.
pub async fn sweep<S: Store>(cx: &Cx<S>) -> Result<SweepReport, portcullis_store::StoreError> {
    let now = cx.now();
    cx.store.sweep_expired(now, now - KEEP_EXPIRED).await
}

/// Gives the lease up at shutdown so another replica need not wait for it to lapse.
pub async fn release<S: Store>(cx: &Cx<S>) {
    if let Err(e) = cx.store.release_lease(LEASE, &cx.instance).await {
        tracing::warn!(error = %e, "releasing the maintenance lease failed");
    }
}
