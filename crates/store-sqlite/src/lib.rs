//! SQLite backend: the embedded default. One file, WAL mode, created on first start.
//!
//! # Layout
//! - [`SqliteStore::connect`]: opens (creating if needed) the database named by a
//!   `sqlite://` URL and applies this crate's migrations.
//! - The storage traits are implemented by the SQL shared with PostgreSQL
//!   ([`portcullis_store_sql::impl_sql_store!`]); this crate owns only the DDL and connection setup.
//!
//! # Decisions
//! - WAL journal, `synchronous=NORMAL` (durable across process crashes; a power loss may drop the
//!   last transactions but never corrupts), foreign keys on, a 5 s busy timeout so concurrent
//!   writers queue instead of failing.

use portcullis_store::{StoreError, StoreResult};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite store. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: Pool<Sqlite>,
}

impl SqliteStore {
    /// Opens `url` (`sqlite://portcullis.db`, `sqlite:///abs/path.db`, `sqlite::memory:`),
    /// creating the file if missing, and runs pending migrations (idempotent).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open SQLite database: {e}")))?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }

    /// The pool, for tests that inspect or tamper with rows directly.
    pub fn pool(&self) -> &Pool<Sqlite> {
        &self.pool
    }
}

portcullis_store_sql::impl_sql_store!(SqliteStore, sqlx::Sqlite);
