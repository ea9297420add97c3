//! Portcullis protocol logic and rules. No axum and no sqlx here: functions take typed inputs, a
//! [`Cx`] (generic over [`portcullis_store::Store`]) and return typed outcomes.
//!
//! # Layout
//! - [`context`]: [`Cx`], the handles every operation receives (store, clock, settings, keys).
//! - [`settings`]: issuer, audience and lifetimes.
//! - [`oauth`]: authorization endpoint, consent, token endpoint with one module per grant
//!   (authorization code, refresh token, client credentials, device code), device authorization,
//!   revocation, introspection, token minting and live verification, userinfo, discovery.
//! - [`sessions`]: sign-in and browser sessions; [`passwords`]: Argon2id; [`csrf`]: form tokens.
//! - [`keys`]: signing keys (generation, sealing at rest, JWKS, sign/verify).
//! - [`scopes`]: the scope catalogue (built-in messaging-CRM default, replaceable by a file).
//! - [`admin`]: workspaces, users, members, clients, grants and signing keys, as used by the CLI.
//! - [`account`]: a signed-in user's own grants, and withdrawing consent.
//! - [`api_keys`]: scoped API keys (create, rotate with grace, revoke, authenticate), batched
//!   usage records (budgets are enforced by the guard).
//! - [`cache`]: recently loaded credential state for the guard, invalidated on change.
//! - [`bundles`]: named scope lists expanded into credentials at creation.
//! - [`service_tokens`]: 5–60 minute tokens, never stored, every mint recorded.
//! - [`federation`]: trust policies and verification of external OIDC tokens for RFC 8693
//!   exchange (the grant itself is [`oauth::grants::token_exchange`]).
//! - [`reference`]: the built-in reference API (contacts, messages, broadcasts, flows) the
//!   guard protects out of the box.
//! - [`views`]: JSON views of records for the CLI and the admin API.
//! - [`audit`]: the tamper-evident audit log (group-commit appender, signed checkpoints,
//!   redaction, verification, search, retention, export, webhook sinks).
//! - [`maintenance`]: deployment-wide upkeep under a lease (sweeps, audit checkpoints, reclamation).
//! - [`events`]: who did what ([`events::Actor`]), recorded as audit entries.
//! - [`replay`]: remembers single-use values (DPoP proof `jti`s) for their window.
//!
//! # Decisions
//! - OAuth endpoints speak only [`portcullis_proto::OAuthError`]; internal failures are logged
//!   with their detail and surface as a generic `server_error` ([`context::internal`]).
//! - Time comes from the [`portcullis_domain::Clock`] in the context; JWT time claims are checked
//!   here against it, not by the JWT library against the wall clock.
//! - Security decisions that race (code redemption, consent submission) are made by single atomic
//!   store operations whose outcome is an enum.

pub mod account;
pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod bundles;
pub mod cache;
pub mod context;
pub mod csrf;
pub mod events;
pub mod federation;
pub mod keys;
pub mod maintenance;
pub mod oauth;
pub mod passwords;
pub mod reference;
pub mod replay;
pub mod scopes;
pub mod service_tokens;
pub mod sessions;
pub mod settings;
pub mod views;

pub use context::Cx;
pub use settings::Settings;

/// Parses a duration such as `15m`, `7d` or `1h 30m` (zero is `0` or `0s`).
pub fn parse_duration(text: &str) -> Result<time::Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(time::Duration::ZERO);
    }
    let d = humantime::parse_duration(t).map_err(|e| format!("{text:?} is not a duration ({e})"))?;
    time::Duration::try_from(d).map_err(|_| format!("{text:?} is too long"))
}

/// RFC 3339 at whole seconds (the precision times are stored with), for JSON views.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    use time::format_description::well_known::Rfc3339;
    t.replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).unwrap_or_default()
}
