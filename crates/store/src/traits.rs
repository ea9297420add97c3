//! The storage traits. Each method is one atomic operation.

use crate::StoreResult;
use crate::audit::*;
use crate::records::*;
use portcullis_domain::{
    ApiKeyId, AuditSinkId, ClientId, Email, FamilyId, GrantId, TokenHash, TrustPolicyId, UserId, WorkspaceId,
};
use std::future::Future;
use time::OffsetDateTime;

pub trait WorkspaceStore {
    /// Fails with `Duplicate("slug")` if the slug is taken.
    fn insert_workspace(&self, w: &Workspace) -> impl Future<Output = StoreResult<()>> + Send;
    fn workspace_by_slug(&self, slug: &str) -> impl Future<Output = StoreResult<Option<Workspace>>> + Send;
    fn workspace_by_id(
        &self,
        id: &WorkspaceId,
    ) -> impl Future<Output = StoreResult<Option<Workspace>>> + Send;
    fn list_workspaces(&self) -> impl Future<Output = StoreResult<Vec<Workspace>>> + Send;
}

pub trait UserStore {
    /// Fails with `Duplicate("email")` if the email is taken.
    fn insert_user(&self, u: &User) -> impl Future<Output = StoreResult<()>> + Send;
    fn user_by_email(&self, email: &Email) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    fn user_by_id(&self, id: &UserId) -> impl Future<Output = StoreResult<Option<User>>> + Send;
    fn list_users(&self) -> impl Future<Output = StoreResult<Vec<User>>> + Send;

    /// Creates the membership or replaces its permissions (keeping `created_at`).
    fn put_membership(&self, m: &Membership) -> impl Future<Output = StoreResult<MembershipWrite>> + Send;
    fn membership(
        &self,
        ws: &WorkspaceId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Option<Membership>>> + Send;
    /// Returns whether a membership was removed.
    fn remove_membership(
        &self,
        ws: &WorkspaceId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The user's workspaces with their memberships, ordered by workspace slug.
    fn memberships_of_user(
        &self,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Vec<(Workspace, Membership)>>> + Send;
    /// The workspace's members, ordered by email.
    fn members_of_workspace(
        &self,
        ws: &WorkspaceId,
    ) -> impl Future<Output = StoreResult<Vec<(User, Membership)>>> + Send;
}

pub trait ClientStore {
    fn insert_client(&self, c: &Client) -> impl Future<Output = StoreResult<()>> + Send;
    fn client_by_id(&self, id: &ClientId) -> impl Future<Output = StoreResult<Option<Client>>> + Send;
    fn list_clients(&self) -> impl Future<Output = StoreResult<Vec<Client>>> + Send;
    /// Replaces the secret of a confidential, unrevoked client; the current one becomes the
    /// previous secret, accepted until `previous_expires_at`. Returns whether a client changed.
    fn rotate_client_secret(
        &self,
        id: &ClientId,
        new_hash: &TokenHash,
        previous_expires_at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Marks the client revoked. Returns whether this call revoked it.
    fn revoke_client(
        &self,
        id: &ClientId,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The newest unrevoked client registered with `fingerprint` at or after `since`.
    fn client_by_fingerprint(
        &self,
        fingerprint: &str,
        since: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Option<Client>>> + Send;
    /// Replaces an unrevoked client's name, redirect URIs, scopes, grant types and registration
    /// (RFC 7592 update, a fresh registration token, a refetched metadata document). Returns
    /// whether a client changed.
    fn update_registered_client(&self, c: &Client) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records that a token was issued to the client now.
    fn touch_client(
        &self,
        id: &ClientId,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes self-registered clients created before `cutoff` that were never used: no token
    /// issued, no consent, no device authorization. Returns how many.
    fn reclaim_unused_clients(&self, cutoff: OffsetDateTime)
    -> impl Future<Output = StoreResult<u64>> + Send;
}

pub trait GrantStore {
    /// Records consent: if an active grant exists for the same user, client and workspace, its
    /// scopes become `g.scopes` and the stored grant (with its original id) is returned; otherwise
    /// `g` is inserted. One statement, so two concurrent consents never create two active grants.
    fn upsert_grant(&self, g: &Grant) -> impl Future<Output = StoreResult<Grant>> + Send;
    fn grant_by_id(&self, id: &GrantId) -> impl Future<Output = StoreResult<Option<Grant>>> + Send;
    /// Active (unrevoked) grants of a user to a client, across workspaces.
    fn active_grants(
        &self,
        user: &UserId,
        client: &ClientId,
    ) -> impl Future<Output = StoreResult<Vec<Grant>>> + Send;
    /// Grants matching the filter, newest first.
    fn list_grants(&self, f: &GrantFilter) -> impl Future<Output = StoreResult<Vec<Grant>>> + Send;
    /// Revokes the grant and every token family issued under it, in one transaction. Returns
    /// whether this call revoked it.
    fn revoke_grant(
        &self,
        id: &GrantId,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

pub trait AuthorizationStore {
    fn insert_pending(&self, p: &PendingAuthorization) -> impl Future<Output = StoreResult<()>> + Send;
    /// An unexpired pending request.
    fn pending(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Option<PendingAuthorization>>> + Send;
    /// Removes and returns an unexpired pending request: of two concurrent callers, one gets it.
    fn take_pending(
        &self,
        id: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Option<PendingAuthorization>>> + Send;

    /// Stores a code together with the (new) family its tokens will belong to, atomically, so a
    /// replay can always revoke the family.
    fn insert_code(
        &self,
        code: &AuthCode,
        family: &TokenFamily,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn code_by_hash(&self, hash: &TokenHash) -> impl Future<Output = StoreResult<Option<AuthCode>>> + Send;
    /// Consumes the code in one conditional update, if it is unexpired and `check` matches.
    fn redeem_code(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
        check: &CodeCheck,
    ) -> impl Future<Output = StoreResult<CodeRedemption>> + Send;
    /// A token family with its grant, user and membership (one statement).
    fn family_state(&self, id: &FamilyId) -> impl Future<Output = StoreResult<Option<FamilyState>>> + Send;
}

pub trait TokenStore {
    fn family(&self, id: &FamilyId) -> impl Future<Output = StoreResult<Option<TokenFamily>>> + Send;
    /// Revokes the family, and with it every token in it (each token is checked against its
    /// family). Returns whether this call revoked it (false if already revoked or unknown).
    fn revoke_family(
        &self,
        id: &FamilyId,
        reason: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn insert_refresh_token(&self, t: &RefreshToken) -> impl Future<Output = StoreResult<()>> + Send;
    fn refresh_token(
        &self,
        hash: &TokenHash,
    ) -> impl Future<Output = StoreResult<Option<RefreshToken>>> + Send;
    /// Consumes `presented` (recording its successor and, for overlap windows, the sealed
    /// successor response) and stores `successor`, atomically: of concurrent rotations of one
    /// token exactly one returns `Rotated`.
    fn rotate_refresh(
        &self,
        presented: &TokenHash,
        now: OffsetDateTime,
        successor: &RefreshToken,
        successor_sealed: Option<&str>,
    ) -> impl Future<Output = StoreResult<RefreshRotation>> + Send;
    /// Records a revoked access token (by `jti`) until it would have expired.
    fn revoke_access_token(
        &self,
        jti: &str,
        client: &ClientId,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn access_token_revoked(&self, jti: &str) -> impl Future<Output = StoreResult<bool>> + Send;
}

pub trait DeviceStore {
    /// Fails with `Duplicate("user_code")` when the user code is taken (the caller draws again).
    fn insert_device_code(&self, d: &DeviceCode) -> impl Future<Output = StoreResult<()>> + Send;
    /// A pending, unexpired device authorization by its (normalised) user code.
    fn pending_device_by_user_code(
        &self,
        user_code: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Option<DeviceCode>>> + Send;
    /// Records a poll in one statement and says whether it came sooner than the interval allows
    /// (then the interval grows by 5 s). `None` if the device code does not exist.
    fn poll_device(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Option<(DeviceCode, bool)>>> + Send;
    /// Approves a pending, unexpired device code and stores the family its tokens will belong to,
    /// atomically. Returns false if it was no longer pending.
    fn approve_device(
        &self,
        user_code: &str,
        a: &DeviceApproval,
        family: &TokenFamily,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn deny_device(
        &self,
        user_code: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Marks an approved device code consumed; of concurrent callers exactly one gets true.
    fn consume_device(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn record_user_code_failure(
        &self,
        user: &UserId,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn user_code_failures_since(
        &self,
        user: &UserId,
        since: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
}

pub trait KeyStore {
    fn insert_signing_key(&self, k: &SigningKey) -> impl Future<Output = StoreResult<()>> + Send;
    /// Every signing key, newest first.
    fn signing_keys(&self) -> impl Future<Output = StoreResult<Vec<SigningKey>>> + Send;
    /// Adds `next` and schedules every key not yet retired to retire at `retire_at`, atomically.
    fn rotate_signing_key(
        &self,
        next: &SigningKey,
        retire_at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Stores `candidate` under `name` unless a value exists, and returns the stored value: the
    /// first replica to start decides, the others adopt its value.
    fn server_secret(
        &self,
        name: &str,
        candidate: &str,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<String>> + Send;
}

pub trait SessionStore {
    fn insert_session(&self, s: &Session) -> impl Future<Output = StoreResult<()>> + Send;
    /// An unexpired session.
    fn session(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Option<Session>>> + Send;
    fn delete_session(&self, hash: &TokenHash) -> impl Future<Output = StoreResult<()>> + Send;
}

pub trait ApiKeyStore {
    fn insert_api_key(&self, k: &ApiKey) -> impl Future<Output = StoreResult<()>> + Send;
    /// The key whose current *or previous* secret has this hash (the caller checks which one
    /// matched and whether the previous one is still in its grace period).
    fn api_key_by_hash(&self, hash: &TokenHash) -> impl Future<Output = StoreResult<Option<ApiKey>>> + Send;
    fn api_key_by_id(&self, id: &ApiKeyId) -> impl Future<Output = StoreResult<Option<ApiKey>>> + Send;
    /// The workspace's keys, newest first.
    fn list_api_keys(&self, ws: &WorkspaceId) -> impl Future<Output = StoreResult<Vec<ApiKey>>> + Send;
    /// Replaces the secret of an unrevoked key; the current one becomes the previous secret,
    /// accepted until `previous_expires_at` (`None`: not at all). Returns whether a key changed.
    fn rotate_api_key(
        &self,
        id: &ApiKeyId,
        new_hash: &TokenHash,
        new_prefix: &str,
        previous_expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Returns whether this call revoked the key.
    fn revoke_api_key(
        &self,
        id: &ApiKeyId,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Records last uses; an older use never overwrites a newer one.
    fn record_api_key_usage(&self, uses: &[KeyUsage]) -> impl Future<Output = StoreResult<()>> + Send;
}

pub trait BundleStore {
    /// Fails with `Duplicate("name")` if the workspace has a bundle of that name.
    fn insert_bundle(&self, b: &ScopeBundle) -> impl Future<Output = StoreResult<()>> + Send;
    fn bundle_by_name(
        &self,
        ws: &WorkspaceId,
        name: &str,
    ) -> impl Future<Output = StoreResult<Option<ScopeBundle>>> + Send;
    /// The workspace's bundles, by name.
    fn list_bundles(&self, ws: &WorkspaceId) -> impl Future<Output = StoreResult<Vec<ScopeBundle>>> + Send;
    /// Replaces a bundle's scopes and description. Returns whether a bundle changed.
    fn update_bundle(&self, b: &ScopeBundle) -> impl Future<Output = StoreResult<bool>> + Send;
    fn delete_bundle(&self, ws: &WorkspaceId, name: &str) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// The reference API's documents. Every operation is scoped to one workspace.
pub trait DocumentStore {
    /// Fails with `Duplicate("id")` if the id is taken.
    fn insert_document(&self, d: &Document) -> impl Future<Output = StoreResult<()>> + Send;
    fn document(
        &self,
        ws: &WorkspaceId,
        kind: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<Document>>> + Send;
    /// Up to `limit` documents of `kind` with ids after `after`, by id (creation order).
    fn list_documents(
        &self,
        ws: &WorkspaceId,
        kind: &str,
        after: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<Document>>> + Send;
    /// Replaces the body and `updated_at`. Returns whether a document changed.
    fn update_document(&self, d: &Document) -> impl Future<Output = StoreResult<bool>> + Send;
    fn delete_document(
        &self,
        ws: &WorkspaceId,
        kind: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn count_documents(&self, ws: &WorkspaceId, kind: &str) -> impl Future<Output = StoreResult<i64>> + Send;
}

pub trait TrustPolicyStore {
    fn insert_trust_policy(&self, p: &TrustPolicy) -> impl Future<Output = StoreResult<()>> + Send;
    fn trust_policy_by_id(
        &self,
        id: &TrustPolicyId,
    ) -> impl Future<Output = StoreResult<Option<TrustPolicy>>> + Send;
    /// Every policy for tokens of `issuer`, across workspaces.
    fn trust_policies_for_issuer(
        &self,
        issuer: &str,
    ) -> impl Future<Output = StoreResult<Vec<TrustPolicy>>> + Send;
    fn list_trust_policies(
        &self,
        ws: &WorkspaceId,
    ) -> impl Future<Output = StoreResult<Vec<TrustPolicy>>> + Send;
    fn delete_trust_policy(&self, id: &TrustPolicyId) -> impl Future<Output = StoreResult<bool>> + Send;
}

pub trait AuditStore {
    /// Appends records to their logs (see [`AuditRecord::log`]) in one transaction: each log's
    /// head is locked, every record gets the next position and is chained to its predecessor,
    /// and the head moves on. Returns each record's (log, seq) in input order. Several processes
    /// may append to one log at once; the database serialises them.
    fn append_audit(
        &self,
        records: &[AuditRecord],
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Vec<(String, i64)>>> + Send;
    fn audit_head(&self, log: &str) -> impl Future<Output = StoreResult<Option<AuditHead>>> + Send;
    /// Every log's head, ordered by log.
    fn audit_heads(&self) -> impl Future<Output = StoreResult<Vec<AuditHead>>> + Send;
    /// Entries of `log` with `seq >= from_seq`, ascending, at most `limit`.
    fn audit_entries(
        &self,
        log: &str,
        from_seq: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<AuditEntry>>> + Send;
    /// Newest first, matching every filter of `q`.
    fn search_audit(&self, q: &AuditQuery) -> impl Future<Output = StoreResult<Vec<AuditEntry>>> + Send;
    /// The first position of `log` whose entry is at or after `at` (`None`: no such entry).
    fn audit_seq_at(
        &self,
        log: &str,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;
    /// Stores a checkpoint; `false` if one of that size existed (another replica made it).
    fn insert_audit_checkpoint(&self, c: &AuditCheckpoint) -> impl Future<Output = StoreResult<bool>> + Send;
    /// A log's checkpoints, smallest first.
    fn audit_checkpoints(&self, log: &str) -> impl Future<Output = StoreResult<Vec<AuditCheckpoint>>> + Send;
    /// Deletes entries of `log` with `seq < below`; checkpoints stay. Returns how many went.
    fn prune_audit(&self, log: &str, below: i64) -> impl Future<Output = StoreResult<u64>> + Send;
}

pub trait AuditSinkStore {
    fn insert_audit_sink(&self, s: &AuditSink) -> impl Future<Output = StoreResult<()>> + Send;
    fn audit_sink(&self, id: &AuditSinkId) -> impl Future<Output = StoreResult<Option<AuditSink>>> + Send;
    /// All sinks (every workspace), for the delivery worker; or one workspace's.
    fn list_audit_sinks(
        &self,
        ws: Option<&WorkspaceId>,
    ) -> impl Future<Output = StoreResult<Vec<AuditSink>>> + Send;
    /// Takes the sink's delivery lease until `until` if it is free (or expired) or already
    /// `holder`'s, so one replica delivers to a sink at a time.
    fn lease_audit_sink(
        &self,
        id: &AuditSinkId,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<SinkLease>> + Send;
    /// Records a delivery attempt: on success the cursor moves to `cursor` (never backwards)
    /// and failures reset; on failure the error is kept and failures counted.
    fn record_sink_delivery(
        &self,
        id: &AuditSinkId,
        cursor: Option<i64>,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Returns whether a live sink was disabled.
    fn disable_audit_sink(
        &self,
        id: &AuditSinkId,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Liveness of the backend, for `/healthz`.
pub trait HealthCheck {
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Everything the core needs from storage.
/// Keeping the database small and background work single: leases and sweeps.
pub trait MaintenanceStore {
    /// Takes (or renews) the lease `name` for `holder` until `until`, if it is free, expired, or
    /// already `holder`'s — one atomic statement, so of several replicas exactly one holds it.
    fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Gives the lease up (on shutdown), if `holder` has it.
    fn release_lease(&self, name: &str, holder: &str) -> impl Future<Output = StoreResult<()>> + Send;
    /// Deletes what can never be used again: authorization codes, pending requests, sessions and
    /// device codes expired before `before`; token families (with their refresh tokens and codes)
    /// whose absolute life ended, or that were revoked, before `before`; revoked-token records past
    /// the token's expiry (`now`); user-code failures older than `before`.
    fn sweep_expired(
        &self,
        now: OffsetDateTime,
        before: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<SweepReport>> + Send;
}

pub trait Store:
    WorkspaceStore
    + UserStore
    + ClientStore
    + GrantStore
    + AuthorizationStore
    + TokenStore
    + KeyStore
    + SessionStore
    + DeviceStore
    + ApiKeyStore
    + BundleStore
    + TrustPolicyStore
    + AuditStore
    + AuditSinkStore
    + DocumentStore
    + MaintenanceStore
    + HealthCheck
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: WorkspaceStore
        + UserStore
        + ClientStore
        + GrantStore
        + AuthorizationStore
        + TokenStore
        + KeyStore
        + SessionStore
        + DeviceStore
        + ApiKeyStore
        + BundleStore
        + TrustPolicyStore
        + AuditStore
        + AuditSinkStore
        + DocumentStore
        + MaintenanceStore
        + HealthCheck
        + Clone
        + Send
        + Sync
        + 'static
{
}
