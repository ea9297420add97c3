//! Records as stored. Validated domain types all the way down: a corrupt row fails to load
//! instead of producing an invalid value.

pub use portcullis_domain::api_key::IpNet;
use portcullis_domain::{
    ApiKeyId, BundleId, ClientId, Email, FamilyId, GrantId, KeyEnvironment, KeyId, RateLimit, RedirectUri,
    ScopeSet, Slug, TokenHash, TrustPolicyId, UserId, WorkspaceId,
};
use time::{Duration, OffsetDateTime};

#[derive(Clone, Debug, PartialEq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub slug: Slug,
    pub name: String,
    pub created_at: OffsetDateTime,
}

#[derive(Clone, PartialEq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: Option<String>,
    /// An Argon2id PHC string; never the password.
    pub password_hash: String,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A user's permissions in one workspace: the most they can delegate there.
#[derive(Clone, Debug, PartialEq)]
pub struct Membership {
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub permissions: ScopeSet,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Whether a membership write created or replaced a membership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipWrite {
    Created,
    Updated,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    /// `None` for public clients.
    pub secret_hash: Option<TokenHash>,
    pub redirect_uris: Vec<RedirectUri>,
    /// The most this client may ever be granted.
    pub scopes: ScopeSet,
    pub grant_types: Vec<String>,
    /// Set for a workspace's own (first-party or machine) clients; such a client is only ever
    /// granted access to that workspace.
    pub workspace_id: Option<WorkspaceId>,
    pub created_at: OffsetDateTime,
    /// How long the immediately previous refresh token still returns the same successor pair
    /// (for clients that refresh concurrently). Zero by default, at most 60 s.
    pub refresh_overlap: Duration,
    /// The secret replaced by the last rotation, accepted until `previous_secret_expires_at`.
    pub previous_secret_hash: Option<TokenHash>,
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    /// A revoked client cannot authenticate, and every token issued to it is inactive.
    pub revoked_at: Option<OffsetDateTime>,
    /// Its authorization requests must be pushed first (RFC 9126 §6
    /// `require_pushed_authorization_requests`).
    pub require_pushed_requests: bool,
    /// Its access tokens must be DPoP-bound (RFC 9449 §5.2 `dpop_bound_access_tokens`): token
    /// requests without a proof are refused.
    pub dpop_bound: bool,
    /// How the client came to exist; only operator-created clients have a checked name.
    pub origin: ClientOrigin,
    /// Self-registered details (RFC 7591 metadata as JSON, registration token, source).
    pub registration: Option<Registration>,
    /// The last time a token was issued to it (kept to the hour).
    pub last_used_at: Option<OffsetDateTime>,
}

/// How a client came to exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientOrigin {
    /// Created by an operator (CLI or admin API).
    #[default]
    Admin,
    /// Registered itself (RFC 7591).
    Dynamic,
    /// An https `client_id` whose metadata document was fetched.
    MetadataDocument,
}

impl ClientOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Dynamic => "dynamic",
            Self::MetadataDocument => "metadata_document",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Self::Admin,
            "dynamic" => Self::Dynamic,
            "metadata_document" => Self::MetadataDocument,
            _ => return None,
        })
    }
}

/// What a self-registered (or fetched) client brought with it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Registration {
    /// The client metadata (RFC 7591 §2) as registered, JSON.
    pub metadata: String,
    /// SHA-256 of the RFC 7592 registration access token.
    pub token_hash: Option<TokenHash>,
    /// The registering address.
    pub registered_from: Option<String>,
    /// Hash of (address, metadata), for deduplication.
    pub fingerprint: Option<String>,
    /// Metadata documents: when to fetch the document again.
    pub refresh_after: Option<OffsetDateTime>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    pub fn allows_grant(&self, grant_type: &str) -> bool {
        self.grant_types.iter().any(|g| g == grant_type)
    }
}

/// One user's consent for one client in one workspace.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub id: GrantId,
    pub user_id: UserId,
    pub client_id: ClientId,
    pub workspace_id: WorkspaceId,
    pub scopes: ScopeSet,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A validated authorization request waiting for the user to sign in and consent. The payload is
/// owned by the core (opaque JSON here), so the store need not change when the request grows.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingAuthorization {
    pub id: String,
    pub payload: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// An authorization code, stored by hash and bound to everything RFC 6749 §4.1.3 and RFC 7636
/// §4.6 check at redemption.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthCode {
    pub hash: TokenHash,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub workspace_id: WorkspaceId,
    pub grant_id: GrantId,
    /// The family every token issued from this code belongs to; revoked if the code is replayed.
    pub family_id: FamilyId,
    pub redirect_uri: String,
    /// Whether the authorization request carried `redirect_uri` (then the token request must too).
    pub redirect_uri_explicit: bool,
    /// `BASE64URL(SHA256(code_verifier))`, RFC 7636 §4.2 (S256 only).
    pub code_challenge: String,
    pub scopes: ScopeSet,
    pub nonce: Option<String>,
    pub auth_time: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub redeemed_at: Option<OffsetDateTime>,
    /// RFC 9449 §10: the key (thumbprint) whose DPoP proof must accompany the redemption.
    pub dpop_jkt: Option<String>,
}

/// Outcome of redeeming an authorization code, decided by one atomic statement.
#[derive(Clone, Debug, PartialEq)]
pub enum CodeRedemption {
    /// This call consumed the code.
    Redeemed(Box<AuthCode>),
    /// The code was consumed before: a replay. The caller revokes `family`.
    AlreadyRedeemed { family: FamilyId },
    /// No such code (or it expired and was swept).
    NotFound,
    /// The code exists and is unused, but this request does not match what it is bound to (or
    /// it expired): nothing changed, so a stolen code presented without its verifier cannot
    /// burn the legitimate client's. The caller finds out which check failed.
    Refused,
}

/// What a token request must match to consume a code (RFC 6749 §4.1.3, RFC 7636 §4.6, RFC 9449
/// §10), checked inside the consuming statement.
#[derive(Clone, Debug)]
pub struct CodeCheck {
    pub client_id: ClientId,
    /// `BASE64URL(SHA256(code_verifier))` of the request.
    pub code_challenge: String,
    /// The request's `redirect_uri`: equal to the stored one, or absent when the authorization
    /// request did not include one.
    pub redirect_uri: Option<String>,
    /// The key of the request's DPoP proof: must be the code's when it is bound to one.
    pub dpop_jkt: Option<String>,
}

/// What issuing tokens in a family needs (redeeming a code, refreshing), read in one statement:
/// the family, whether its grant is still active, its user and the user's current permissions in
/// its workspace.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyState {
    pub family: TokenFamily,
    /// `None` when the grant is gone; `Some(revoked)` otherwise.
    pub grant_active: Option<bool>,
    pub user: Option<User>,
    /// `None` when the user is no longer a member.
    pub permissions: Option<portcullis_domain::ScopeSet>,
}

/// A chain of tokens descending from one authorization code; revoking it kills them all.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenFamily {
    pub id: FamilyId,
    pub client_id: ClientId,
    pub user_id: Option<UserId>,
    pub workspace_id: WorkspaceId,
    pub grant_id: Option<GrantId>,
    pub created_at: OffsetDateTime,
    /// Absolute end of the family: no token of it is valid after this.
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
    /// RFC 8707: the protected resources the authorization was for (empty: none was named, and
    /// tokens get the default audience). A token request may narrow to one of them.
    pub resources: Vec<String>,
}

/// A refresh token, stored by hash.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshToken {
    pub hash: TokenHash,
    pub family_id: FamilyId,
    pub client_id: ClientId,
    pub scopes: ScopeSet,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub consumed_at: Option<OffsetDateTime>,
    /// Set when consumed: the token that replaced this one.
    pub successor_hash: Option<TokenHash>,
    /// The successor token response, sealed under a key derived from this token's secret (only
    /// its holder can open it); kept for clients with an overlap window.
    pub successor_sealed: Option<String>,
    /// RFC 9449 §5: a public client's refresh token is bound to the DPoP key (thumbprint) it was
    /// issued against; using it needs a proof of that key.
    pub dpop_jkt: Option<String>,
}

/// Outcome of rotating a refresh token, decided by one conditional update.
#[derive(Clone, Debug, PartialEq)]
pub enum RefreshRotation {
    /// This call consumed the token and stored its successor.
    Rotated,
    /// The token was consumed before (by a concurrent request or earlier): the row as it is now,
    /// so the caller can tell an overlap or a race from a replay.
    AlreadyConsumed(Box<RefreshToken>),
    NotFound,
}

/// State of a device authorization (RFC 8628).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    Pending,
    Approved,
    Denied,
    /// Tokens were issued; the device code is spent.
    Consumed,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Consumed => "consumed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "consumed" => Self::Consumed,
            _ => return None,
        })
    }
}

/// What the user approved for a device code.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceApproval {
    pub user_id: UserId,
    pub workspace_id: WorkspaceId,
    pub grant_id: GrantId,
    pub family_id: FamilyId,
    pub scopes: ScopeSet,
    pub auth_time: OffsetDateTime,
}

/// A device authorization: the device polls with the device code (stored by hash), the user
/// enters the user code.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceCode {
    pub hash: TokenHash,
    /// Normalised: upper case, no separator (`WDJBMJHT`).
    pub user_code: String,
    pub client_id: ClientId,
    pub scopes: ScopeSet,
    pub status: DeviceStatus,
    /// Minimum seconds between polls; grows by 5 s on each `slow_down` (RFC 8628 §3.5).
    pub interval: i64,
    pub last_polled_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// RFC 8707 resources named in the device authorization request.
    pub resources: Vec<String>,
    pub approval: Option<DeviceApproval>,
}

/// Filter for listing grants.
#[derive(Clone, Debug, Default)]
pub struct GrantFilter {
    pub workspace_id: Option<WorkspaceId>,
    pub client_id: Option<ClientId>,
    pub user_id: Option<UserId>,
    pub include_revoked: bool,
}

/// A JWT signing key. `private_key` is PKCS#8, base64, possibly sealed with the key-encryption
/// key (the core decides; the store only keeps text).
#[derive(Clone, PartialEq)]
pub struct SigningKey {
    pub kid: KeyId,
    pub alg: String,
    pub private_key: String,
    pub public_jwk: String,
    pub created_at: OffsetDateTime,
    /// Published from `created_at`; used for signing from `active_from`.
    pub active_from: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
    /// 1 for the first key, one more for each rotation; unique, so two replicas rotating at the
    /// same moment cannot both add a key (the second insert of a generation fails). 0 for keys
    /// created before generations were recorded.
    pub generation: i64,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("active_from", &self.active_from)
            .field("retired_at", &self.retired_at)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A signed-in browser session, stored by the hash of its cookie value.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub hash: TokenHash,
    pub user_id: UserId,
    pub auth_time: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A scoped API key of one workspace. The secret exists only as hashes (the current one and,
/// during a rotation's grace period, the previous one).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    /// Free-form JSON object the operator attached (owner, ticket, …); never interpreted.
    pub metadata: Option<String>,
    pub scopes: ScopeSet,
    /// Empty means any address.
    pub allowed_cidrs: Vec<IpNet>,
    pub rate_limit: Option<RateLimit>,
    pub environment: KeyEnvironment,
    /// Non-secret display prefix of the current secret (`pcl_live_AbCd`).
    pub prefix: String,
    pub secret_hash: TokenHash,
    /// The secret replaced by the last rotation, accepted until `previous_secret_expires_at`.
    pub previous_secret_hash: Option<TokenHash>,
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    /// The bundle the scopes were expanded from at creation, if any (informational).
    pub bundle: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub rotated_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub last_used_ip: Option<String>,
}

/// Last use of an API key, written in batches (see the core's usage recorder).
#[derive(Clone, Debug, PartialEq)]
pub struct KeyUsage {
    pub id: ApiKeyId,
    pub at: OffsetDateTime,
    pub ip: String,
}

/// A named, reusable list of scopes in a workspace. Credentials copy the scopes at creation.
#[derive(Clone, Debug, PartialEq)]
pub struct ScopeBundle {
    pub id: BundleId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: Option<String>,
    pub scopes: ScopeSet,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Which tokens of an external OIDC issuer (a CI provider, a cloud workload) may be exchanged
/// for service tokens of a workspace (RFC 8693), and with which scopes.
#[derive(Clone, Debug, PartialEq)]
pub struct TrustPolicy {
    pub id: TrustPolicyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    /// The exact `iss` of accepted tokens.
    pub issuer: String,
    /// A value the token's `aud` must contain.
    pub audience: String,
    /// Pattern for `sub` (`*` matches any run of characters).
    pub subject: String,
    /// Further claims the token must carry, as (claim, pattern) pairs.
    pub claims: Vec<(String, String)>,
    /// The most a service token from this policy may carry.
    pub scopes: ScopeSet,
    pub max_ttl: Duration,
    pub created_at: OffsetDateTime,
}

/// A document of the built-in reference API (a contact, message, broadcast, flow or flow run):
/// JSON validated by the core, stored per workspace and kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub workspace_id: WorkspaceId,
    /// `contact`, `message`, `broadcast`, `flow`, `flow_run`.
    pub kind: String,
    /// Time-ordered (`ctc_<uuidv7>`…), so listing by id lists by creation.
    pub id: String,
    pub body: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// What a sweep deleted, by table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub authorization_codes: u64,
    pub pending_authorizations: u64,
    pub sessions: u64,
    pub device_codes: u64,
    pub token_families: u64,
    pub refresh_tokens: u64,
    pub revoked_access_tokens: u64,
    pub user_code_failures: u64,
}

impl SweepReport {
    pub fn total(&self) -> u64 {
        self.authorization_codes
            + self.pending_authorizations
            + self.sessions
            + self.device_codes
            + self.token_families
            + self.refresh_tokens
            + self.revoked_access_tokens
            + self.user_code_failures
    }
}
