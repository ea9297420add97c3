//! The storage traits. Each method is one atomic operation.

use crate::StoreResult;
use crate::records::*;
use portcullis_domain::{ClientId, Email, FamilyId, GrantId, TokenHash, UserId, WorkspaceId};
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
    /// Consumes the code in one conditional update.
    fn redeem_code(
        &self,
        hash: &TokenHash,
        now: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<CodeRedemption>> + Send;
}

pub trait TokenStore {
    fn family(&self, id: &FamilyId) -> impl Future<Output = StoreResult<Option<TokenFamily>>> + Send;
    /// Revokes the family and every refresh token in it. Returns whether this call revoked it
    /// (false if it was already revoked or does not exist).
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
}

pub trait KeyStore {
    fn insert_signing_key(&self, k: &SigningKey) -> impl Future<Output = StoreResult<()>> + Send;
    /// Every signing key, newest first.
    fn signing_keys(&self) -> impl Future<Output = StoreResult<Vec<SigningKey>>> + Send;
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

/// Liveness of the backend, for `/healthz`.
pub trait HealthCheck {
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Everything the core needs from storage.
pub trait Store:
    WorkspaceStore
    + UserStore
    + ClientStore
    + GrantStore
    + AuthorizationStore
    + TokenStore
    + KeyStore
    + SessionStore
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
        + HealthCheck
        + Clone
        + Send
        + Sync
        + 'static
{
}
