//! Validated newtypes and invariants shared by every Portcullis layer.
//!
//! # Layout
//! - [`audit`]: the audit log's hash chain, RFC 9162 Merkle tree frontier and C2SP signed-note
//!   checkpoints (pure functions; signing keys live in the core).
//! - [`api_key`]: the API key format (environment prefix, 190 random bits, CRC32 checksum),
//!   rate-limit specs (`600/min`) and CIDR allowlists.
//! - [`clock`]: the [`Clock`] trait passed into everything that reads time, [`SystemClock`], and
//!   the [`MockClock`] tests advance instead of sleeping.
//! - [`ids`]: prefixed, time-ordered identifiers (`ws_…`, `usr_…`, `grt_…`).
//! - [`scope`]: [`Scope`] and [`ScopeSet`]; scope tokens per RFC 6749 §3.3, never wildcards.
//! - [`redirect_uri`]: registration rules and the exact-match comparison of RFC 9700 §2.1 (with
//!   RFC 8252 §7.3 port freedom for loopback URIs of native clients).
//! - [`email`], [`slug`]: the two human identifiers, normalised once.
//! - [`secret`]: random opaque tokens with scanner-friendly prefixes, and [`TokenHash`], the only
//!   form in which they are stored.
//!
//! # Decisions
//! - A value of these types is valid by construction; parsing happens at the edges.
//! - Secret material is wrapped in `secrecy` types so it cannot be printed by accident.

pub mod api_key;
pub mod audit;
pub mod clock;
pub mod email;
pub mod ids;
pub mod redirect_uri;
pub mod scope;
pub mod secret;
pub mod slug;

pub use api_key::{ApiKeySecret, KeyEnvironment, MalformedKey, RateLimit};
pub use clock::{Clock, MockClock, SystemClock};
pub use email::Email;
pub use ids::{
    ApiKeyId, AuditEntryId, AuditSinkId, BundleId, ClientId, EventId, FamilyId, GrantId, KeyId,
    TrustPolicyId, UserId, WorkspaceId,
};
pub use redirect_uri::RedirectUri;
pub use scope::{Scope, ScopeSet};
pub use secret::{TokenHash, random_token};
pub use slug::Slug;

/// A validation failure of a domain value; the message is safe to show to the person who typed
/// the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
