//! Wire types of Portcullis: what goes over HTTP at the OAuth endpoints, and nothing else.
//!
//! # Layout
//! - [`error`]: the one RFC 6749 error type ([`OAuthError`]) used at every OAuth endpoint; the HTTP
//!   status is derived from the error code, never chosen at the call site.
//! - [`params`]: form and query parameters parsed once at the edge, with the RFC 6749 §3.1 rules
//!   (no repeated parameters, empty values count as absent).
//! - [`token`]: the token request enum (one variant per grant) and the token response.
//! - [`client_auth`]: how a client presented its credentials at the token endpoint.
//! - [`metadata`]: the RFC 8414 / OpenID Connect discovery document.
//! - [`jwk`]: public JSON Web Keys as published at the JWKS endpoint.
//!
//! # Decisions
//! - This crate knows no HTTP framework and no storage: the core consumes these types, the HTTP
//!   adapter produces and serialises them.
//! - `error_description` is client-safe text only; internal detail is logged by the caller with
//!   the request id and never placed here.

pub mod client_auth;
pub mod error;
pub mod jwk;
pub mod metadata;
pub mod params;
pub mod token;

pub use client_auth::ClientAuth;
pub use error::{ErrorCode, OAuthError};
pub use params::Params;
pub use token::{TokenRequest, TokenResponse};
