//! The storage error: typed where the caller must react, opaque where it can only report.

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint refused the write; the field names what collided
    /// (`"slug"`, `"email"`, …). Nothing was written.
    #[error("a record with this {0} already exists")]
    Duplicate(&'static str),
    /// The write referred to a record that does not exist. Nothing was written.
    #[error("a referenced record does not exist")]
    MissingReference,
    /// A stored value could not be decoded (the database was edited by hand or is corrupt).
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    /// The database is unreachable or failed; the detail is for logs, not for clients.
    #[error("storage backend error: {0}")]
    Backend(String),
}
