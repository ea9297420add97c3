//! The storage backend named by the database URL.

use portcullis_store_postgres::PgStore;
use portcullis_store_sqlite::SqliteStore;

pub enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// `sqlite:…` opens (creating) a SQLite file; `postgres://` / `postgresql://` connects to
/// PostgreSQL. Either way pending migrations run first.
pub async fn open(url: &str) -> Result<Backend, String> {
    if url.starts_with("sqlite:") {
        SqliteStore::connect(url).await.map(Backend::Sqlite).map_err(|e| e.to_string())
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        PgStore::connect(url).await.map(Backend::Postgres).map_err(|e| e.to_string())
    } else {
        // Only the scheme is echoed: the rest may hold a password.
        let scheme = url.split(':').next().unwrap_or("");
        Err(format!("unsupported database URL scheme {scheme:?}: use sqlite://FILE or postgres://…"))
    }
}

/// Runs `$body` with `$store` bound to the concrete store, whichever backend it is.
#[macro_export]
macro_rules! with_store {
    ($backend:expr, |$store:ident| $body:expr) => {
        match $backend {
            $crate::backend::Backend::Sqlite($store) => $body,
            $crate::backend::Backend::Postgres($store) => $body,
        }
    };
}
