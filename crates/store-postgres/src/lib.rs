//! PostgreSQL backend: for several stateless replicas sharing one database.
//!
//! # Layout
//! - [`PgStore::connect`]: connects to a `postgres://` URL and applies this crate's migrations.
//! - The storage traits are implemented by the SQL shared with SQLite
//!   ([`portcullis_store_sql::impl_sql_store!`]); this crate owns only the DDL and connection setup.
//!
//! # Decisions
//! - Migrations run under sqlx's advisory lock, so replicas starting together apply them once.
//! - [`PgStore::connect_in_schema`] isolates a test run in its own schema (via `search_path`), so
//!   tests can run in parallel against one database.

use portcullis_store::{StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Pool, Postgres};
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The PostgreSQL store. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: Pool<Postgres>,
}

impl PgStore {
    /// Connects to `url` and runs pending migrations (idempotent).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::open(Self::options(url)?).await
    }

    /// Like [`PgStore::connect`], but every connection uses `schema` (created if missing).
    pub async fn connect_in_schema(url: &str, schema: &str) -> StoreResult<Self> {
        if !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(StoreError::Backend(format!("invalid schema name {schema:?}")));
        }
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(Self::options(url)?)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        let ddl = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
        sqlx::query(sqlx::AssertSqlSafe(ddl))
            .execute(&admin)
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        admin.close().await;
        Self::open(Self::options(url)?.options([("search_path", schema)])).await
    }

    fn options(url: &str) -> StoreResult<PgConnectOptions> {
        PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))
    }

    async fn open(opts: PgConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot connect to PostgreSQL: {e}")))?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        Ok(Self { pool })
    }

    /// The pool, for tests that inspect or tamper with rows directly.
    pub fn pool(&self) -> &Pool<Postgres> {
        &self.pool
    }
}

portcullis_store_sql::impl_sql_store!(PgStore, sqlx::Postgres);
