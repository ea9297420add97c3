//! The shared behavioural suite against PostgreSQL, in a fresh schema. Needs
//! `PORTCULLIS_TEST_POSTGRES_URL`; without it the test says it was skipped.

use portcullis_store_postgres::PgStore;

fn url() -> Option<String> {
    let url = std::env::var("PORTCULLIS_TEST_POSTGRES_URL").ok();
    if url.is_none() {
        eprintln!("skipped: PORTCULLIS_TEST_POSTGRES_URL is not set");
    }
    url
}

fn schema() -> String {
    format!("pcl_suite_{}", rand::random::<u32>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_passes_the_store_suite() {
    let Some(url) = url() else { return };
    let store = PgStore::connect_in_schema(&url, &schema()).await.unwrap();
    portcullis_store::conformance::run_all(store).await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let Some(url) = url() else { return };
    let schema = schema();
    PgStore::connect_in_schema(&url, &schema).await.unwrap();
    let again = PgStore::connect_in_schema(&url, &schema).await.unwrap();
    let n: (i64,) =
        sqlx::query_as("SELECT count(*) FROM _sqlx_migrations").fetch_one(again.pool()).await.unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap().count();
    assert_eq!(n.0 as usize, files, "each migration applied exactly once");
}
