//! The shared behavioural suite against a fresh SQLite file.

use portcullis_store_sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_the_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("suite.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    portcullis_store::conformance::run_all(store).await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_the_file_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let url = format!("sqlite://{}", path.display());
    SqliteStore::connect(&url).await.unwrap();
    assert!(path.exists());
    SqliteStore::connect(&url).await.unwrap();
    let mode: (String,) = sqlx::query_as("PRAGMA journal_mode")
        .fetch_one(SqliteStore::connect(&url).await.unwrap().pool())
        .await
        .unwrap();
    assert_eq!(mode.0, "wal");
}
