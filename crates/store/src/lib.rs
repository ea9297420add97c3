//! Storage contracts of Portcullis: records, traits, the typed error, and the behavioural suite
//! every backend runs.
//!
//! # Layout
//! - [`records`]: plain data as stored (secrets only as [`TokenHash`]es).
//! - [`audit`]: audit log records, their canonical hashing, checkpoints, queries and sinks.
//! - [`error`]: [`StoreError`], the one error type of every storage call.
//! - [`traits`]: one trait per area ([`WorkspaceStore`], [`AuthorizationStore`], …) and the
//!   [`Store`] umbrella the core is generic over.
//! - [`conformance`]: the behavioural test suite; each backend's tests call
//!   [`conformance::run_all`].
//!
//! # Decisions
//! - Each method is one atomic operation. Operations whose result matters for security have an
//!   outcome enum instead of "an error and a value" (for example [`CodeRedemption`]): the
//!   database decides, in one statement, who won a race.
//! - Time is always passed in; backends never read the clock.
//! - Methods return `impl Future + Send` so the core can be generic over a store and still run in
//!   a multi-threaded server.
//!
//! [`TokenHash`]: portcullis_domain::TokenHash

pub mod audit;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod records;
pub mod traits;

pub use audit::*;
pub use error::StoreError;
pub use records::*;
pub use traits::*;

/// Result of every storage call.
pub type StoreResult<T> = Result<T, StoreError>;
