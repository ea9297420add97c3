//! Test helpers: a real Portcullis server on `127.0.0.1:0` over SQLite or PostgreSQL, a mock
//! clock, and fixtures created through the same admin operations the CLI uses.
//!
//! # Layout
//! - [`TestApp::spawn`]: builds the server exactly as `portcullis serve` does, on a fresh database
//!   (a temporary SQLite file, or a fresh PostgreSQL schema), with a [`MockClock`].
//! - [`both_backends!`]: runs one async test body on each backend.
//! - [`skip`]: prints a skip notice that test-output capture does not swallow.
//!
//! # Decisions
//! - PostgreSQL tests take their URL from `PORTCULLIS_TEST_POSTGRES_URL`; without it they print
//!   that they were skipped and pass. Each test gets its own schema, so tests run in parallel;
//!   schemas older than an hour are dropped on the next run.

use portcullis_core::Cx;
use portcullis_core::admin::{Admin, CreatedClient, NewClient};
use portcullis_core::api_keys::{IssuedKey, NewKey, UsageRecorder};
use portcullis_core::audit::signer::VerifierKey;
use portcullis_core::audit::verify::{LogReport, Window, verify_log};
use portcullis_core::audit::{AuditLog, export};
use portcullis_core::cache::CredentialCache;
use portcullis_core::events::Actor;
use portcullis_core::federation::NewTrustPolicy;
use portcullis_core::keys::{Keyring, Sealer};
use portcullis_core::scopes::Catalogue;
use portcullis_core::settings::Settings;
pub use portcullis_domain::MockClock;
use portcullis_server::Application;
use portcullis_server::backend::Backend as Store;
use portcullis_server::with_store;
use portcullis_store::{User, Workspace};
use portcullis_store_postgres::PgStore;
use portcullis_store_sqlite::SqliteStore;
use secrecy::SecretString;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::oneshot;

pub const POSTGRES_ENV: &str = "PORTCULLIS_TEST_POSTGRES_URL";

/// Which storage backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Prints a skip notice straight to stderr (libtest captures `eprintln!`, not this).
pub fn skip(what: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {what}: {why}");
}

/// Adjusts the settings once the issuer (the bound address) is known.
pub type SettingsHook = Box<dyn FnOnce(&mut Settings) + Send>;

/// Options for [`TestApp::spawn_with`].
#[derive(Default)]
pub struct Options {
    pub settings: Option<SettingsHook>,
    pub key_encryption_key: Option<SecretString>,
    /// Count rate limits in this Redis instead of in-process.
    pub redis_url: Option<String>,
    /// The guard's workspace and token budgets.
    pub budgets: portcullis_guard::Budgets,
    /// Gateway routes (as in the `[[gateway.routes]]` configuration).
    pub gateway: Vec<portcullis_http::gateway::RouteConfig>,
    /// A path for the issuer (`/tenant`): the server is then served under it.
    pub issuer_path: Option<String>,
}

/// A running server with its own database and clock.
pub struct TestApp {
    /// The issuer: `http://127.0.0.1:PORT`, followed by [`Options::issuer_path`] if set.
    pub base: String,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    pub clock: MockClock,
    pub backend: Backend,
    store: Store,
    admin_catalogue: Arc<Catalogue>,
    sealer: Arc<Sealer>,
    keys: Arc<Keyring>,
    usage: Arc<UsageRecorder>,
    cache: Arc<CredentialCache>,
    /// The server's audit log handle (flush, checkpoint, signer, redactor).
    pub audit: Arc<AuditLog>,
    key_environment: portcullis_domain::KeyEnvironment,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// A server on `backend`, or `None` (after printing why) when PostgreSQL is not configured.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, Options::default()).await
    }

    pub async fn spawn_with(backend: Backend, opts: Options) -> Option<Self> {
        let (store, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("portcullis.db").display());
                (Store::Sqlite(SqliteStore::connect(&url).await.expect("sqlite")), Some(dir))
            }
            Backend::Postgres => {
                let Ok(url) = std::env::var(POSTGRES_ENV) else {
                    skip("PostgreSQL test", &format!("{POSTGRES_ENV} is not set"));
                    return None;
                };
                let schema = fresh_schema(&url).await;
                (Store::Postgres(PgStore::connect_in_schema(&url, &schema).await.expect("postgres")), None)
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        let base = format!("{origin}{}", opts.issuer_path.as_deref().unwrap_or(""));
        let clock = MockClock::new();
        let mut settings = Settings::new(base.clone());
        settings.resources.extend(portcullis_http::gateway::resources(&base, &opts.gateway));
        if let Some(f) = opts.settings {
            f(&mut settings);
        }
        let catalogue = Catalogue::builtin();
        let (tx, rx) = oneshot::channel::<()>();
        let kek = opts.key_encryption_key;
        let sealer = Arc::new(Sealer::new(kek.as_ref()).expect("kek"));
        let key_environment = settings.key_environment;
        let limiter = match &opts.redis_url {
            Some(url) => portcullis_guard::Limiter::redis(url, &format!("portcullis-test:{}:", test_id()))
                .await
                .expect("redis"),
            None => portcullis_guard::Limiter::default(),
        };
        let gateway =
            portcullis_http::gateway::parse_routes(&opts.gateway, &catalogue).expect("gateway routes");
        let protection = portcullis_http::Protection { limiter, budgets: opts.budgets, gateway };
        let (server, keys, usage, cache, audit) = with_store!(&store, |s| {
            let mut cx =
                Cx::init(s.clone(), Arc::new(clock.clone()), settings, catalogue.clone(), kek.as_ref())
                    .await
                    .expect("init");
            if let Some(url) = &opts.redis_url {
                let prefix = format!("portcullis-test:{}:replay:", test_id());
                cx.replay = Arc::new(
                    portcullis_guard::replay::RedisReplay::connect(url, &prefix).await.expect("redis"),
                );
            }
            let keys = cx.keys.clone();
            let usage = cx.usage.clone();
            let cache = cx.cache.clone();
            let audit = cx.audit.clone();
            let app = Application::build_with(cx, listener, protection);
            let server = tokio::spawn(app.run_until(async {
                let _ = rx.await;
            }));
            (server, keys, usage, cache, audit)
        });
        Some(Self {
            base,
            origin,
            clock,
            backend,
            store,
            admin_catalogue: Arc::new(catalogue),
            sealer,
            keys,
            usage,
            cache,
            audit,
            key_environment,
            shutdown: Some(tx),
            server: Some(server),
            _dir: dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The store, for tests that look at (or tamper with) rows directly.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn create_workspace(&self, slug: &str) -> Workspace {
        with_store!(&self.store, |s| self
            .admin(s.clone())
            .create_workspace(slug, None)
            .await
            .expect("workspace"))
    }

    pub async fn create_user(&self, email: &str, password: &str) -> User {
        with_store!(&self.store, |s| self
            .admin(s.clone())
            .create_user(email, Some("Test User"), SecretString::from(password.to_owned()))
            .await
            .expect("user"))
    }

    pub async fn add_member(&self, workspace: &str, email: &str, permissions: &str) {
        with_store!(&self.store, |s| {
            self.admin(s.clone()).add_member(workspace, email, permissions).await.expect("member");
        })
    }

    pub async fn remove_member(&self, workspace: &str, email: &str) {
        with_store!(&self.store, |s| self
            .admin(s.clone())
            .remove_member(workspace, email)
            .await
            .expect("remove"))
    }

    pub async fn create_client(&self, c: NewClient) -> CreatedClient {
        with_store!(&self.store, |s| self.admin(s.clone()).create_client(c).await.expect("client"))
    }

    fn admin<S: portcullis_store::Store>(&self, s: S) -> Admin<S> {
        Admin::new(s, Arc::new(self.clock.clone()), self.admin_catalogue.clone(), self.sealer.clone())
            .with_key_environment(self.key_environment)
            .with_cache(self.cache.clone())
    }

    /// Creates an API key as `portcullis key create` does.
    pub async fn create_key(&self, workspace: &str, req: NewKey) -> IssuedKey {
        with_store!(&self.store, |s| {
            let admin = self.admin(s.clone());
            let ws = admin.workspace(workspace).await.expect("workspace");
            admin.create_key(&Actor::cli(), &ws, req, None).await.expect("key")
        })
    }

    /// A key of `workspace` with `scope`; returns the secret.
    pub async fn api_key(&self, workspace: &str, scope: &str) -> String {
        let req = NewKey { name: "test key".into(), scope: Some(scope.into()), ..Default::default() };
        self.create_key(workspace, req).await.secret.expose().to_owned()
    }

    pub async fn create_bundle(&self, workspace: &str, name: &str, scope: &str) {
        with_store!(&self.store, |s| {
            let admin = self.admin(s.clone());
            let ws = admin.workspace(workspace).await.expect("workspace");
            admin.create_bundle(&Actor::cli(), &ws, name, scope, None, None).await.expect("bundle");
        })
    }

    pub async fn create_trust_policy(&self, workspace: &str, req: NewTrustPolicy) -> String {
        with_store!(&self.store, |s| {
            let admin = self.admin(s.clone());
            let ws = admin.workspace(workspace).await.expect("workspace");
            admin
                .create_trust_policy(&Actor::cli(), &ws, req, None)
                .await
                .expect("trust policy")
                .id
                .to_string()
        })
    }

    /// Writes the server's batched API key usage now (the server does it every 15 s).
    pub async fn flush_key_usage(&self) {
        with_store!(&self.store, |s| {
            self.usage.flush(s).await.expect("flush usage");
        })
    }

    /// Rotates the signing key as `portcullis signing-key rotate` does, then makes the running
    /// server reload its keys (in production the periodic reload does this within a minute).
    pub async fn rotate_signing_key(&self, delay: time::Duration) -> String {
        let ttl = time::Duration::hours(1);
        let kid = with_store!(&self.store, |s| self
            .admin(s.clone())
            .rotate_signing_key(delay, ttl)
            .await
            .expect("rotate")
            .kid);
        self.reload_keys().await;
        kid.to_string()
    }

    /// Makes the running server reload its signing keys now (at the mock clock's time).
    pub async fn reload_keys(&self) {
        let now = portcullis_domain::Clock::now(&self.clock);
        with_store!(&self.store, |s| self.keys.load(s, now).await.expect("reload keys"));
    }

    pub async fn revoke_grant(&self, id: &str) {
        with_store!(&self.store, |s| {
            self.admin(s.clone()).revoke_grant(id).await.expect("revoke grant");
        })
    }

    pub async fn revoke_client(&self, id: &str) {
        with_store!(&self.store, |s| {
            self.admin(s.clone()).revoke_client(id).await.expect("revoke client");
        })
    }

    /// Rotates a client secret with a grace period; returns the new secret.
    pub async fn rotate_client_secret(&self, id: &str, grace: time::Duration) -> String {
        use secrecy::ExposeSecret;
        with_store!(&self.store, |s| self
            .admin(s.clone())
            .rotate_client_secret(id, grace)
            .await
            .expect("rotate secret")
            .secret
            .expect("secret")
            .expose_secret()
            .to_owned())
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.stop_server().await;
    }

    /// Stops the server gracefully (flushing the audit log) but keeps the store for inspection.
    pub async fn stop_server(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }

    /// Waits until every audit entry queued so far is committed.
    pub async fn flush_audit(&self) {
        self.audit.flush().await;
    }

    /// Signs a checkpoint of every log that grew.
    pub async fn checkpoint_audit(&self) -> Vec<portcullis_store::AuditCheckpoint> {
        self.flush_audit().await;
        with_store!(&self.store, |s| self
            .audit
            .checkpoint(s, portcullis_domain::Clock::now(&self.clock))
            .await
            .expect("checkpoint"))
    }

    /// Verifies `log` against the server's checkpoint key.
    pub async fn verify_audit(&self, log: &str) -> LogReport {
        let key = VerifierKey::of(&self.audit.signer);
        with_store!(&self.store, |s| verify_log(s, &key, log, Window::default()).await.expect("verify"))
    }

    /// Every stored entry of `log`, oldest first.
    pub async fn audit_entries(&self, log: &str) -> Vec<portcullis_store::AuditEntry> {
        use portcullis_store::AuditStore;
        self.flush_audit().await;
        with_store!(&self.store, |s| s.audit_entries(log, 0, 1_000_000).await.expect("entries"))
    }

    /// Prunes entries older than `retention` (at the test clock's now).
    pub async fn prune_audit(&self, retention: time::Duration) -> u64 {
        let now = portcullis_domain::Clock::now(&self.clock);
        with_store!(&self.store, |s| portcullis_core::audit::retention::prune(s, now, retention).await)
            .expect("prune")
            .iter()
            .map(|p| p.deleted)
            .sum()
    }

    /// How many clients exist (any origin, revoked included).
    pub async fn store_client_count(&self) -> usize {
        with_store!(&self.store, |s| portcullis_store::ClientStore::list_clients(s).await)
            .expect("clients")
            .len()
    }

    /// Deletes self-registered clients never used in the last `after` (what the hourly reclaimer
    /// does with the configured period).
    pub async fn reclaim_clients(&self, after: time::Duration) -> u64 {
        let cutoff = portcullis_domain::Clock::now(&self.clock) - after;
        with_store!(&self.store, |s| portcullis_store::ClientStore::reclaim_unused_clients(s, cutoff).await)
            .expect("reclaim")
    }

    /// Exports every log (all time) to `url` in files of `batch` entries.
    pub async fn export_audit(
        &self,
        url: &str,
        opts: &export::Options,
        batch: usize,
    ) -> Result<export::Summary, String> {
        let (from, to) = (time::OffsetDateTime::UNIX_EPOCH, time::macros::datetime!(2200-01-01 0:00 UTC));
        let now = portcullis_domain::Clock::now(&self.clock);
        with_store!(&self.store, |s| export::export(
            s,
            &self.audit.signer,
            now,
            url,
            opts,
            from,
            to,
            None,
            batch
        )
        .await)
    }

    /// Verifies an export against the server's checkpoint key.
    pub async fn verify_audit_export(
        &self,
        url: &str,
        opts: &export::Options,
    ) -> Result<export::Checked, String> {
        export::verify_export(url, opts, &VerifierKey::of(&self.audit.signer)).await
    }

    /// Runs raw SQL (to tamper with rows the way someone with database access could).
    pub async fn execute_sql(&self, sql: &str) {
        use portcullis_store_sql::sqlx;
        match &self.store {
            Store::Sqlite(s) => {
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(s.pool()).await.expect("sql");
            }
            Store::Postgres(s) => {
                sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(s.pool()).await.expect("sql");
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

static CLEANUP: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// A new schema name; the first call in a process also drops test schemas older than an hour.
#[allow(clippy::disallowed_methods, reason = "schema names carry the real creation time for cleanup")]
async fn fresh_schema(url: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    CLEANUP
        .get_or_init(|| async {
            if let Ok(pool) = housekeeping_store(url).await {
                let _ = drop_old_schemas(&pool, now - 3600).await;
            }
        })
        .await;
    format!("pcl_t_{now}_{:08x}", rand::random::<u32>())
}

/// A store in a bookkeeping schema, used only to list and drop old test schemas.
async fn housekeeping_store(url: &str) -> Result<PgStore, String> {
    PgStore::connect_in_schema(url, "pcl_testkit").await.map_err(|e| e.to_string())
}

async fn drop_old_schemas(store: &PgStore, before: i64) -> Result<(), String> {
    use portcullis_store_sql::sqlx;
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'pcl\\_t\\_%' OR nspname LIKE 'pcl\\_suite\\_%'",
    )
    .fetch_all(store.pool())
    .await
    .map_err(|e| e.to_string())?;
    for (name,) in rows {
        let ts =
            name.strip_prefix("pcl_t_").and_then(|r| r.split('_').next()).and_then(|t| t.parse::<i64>().ok());
        if name.starts_with("pcl_suite_") || ts.is_some_and(|t| t < before) {
            let ddl = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
            let _ = sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(store.pool()).await;
        }
    }
    Ok(())
}

/// Runs an async test body `fn(TestApp)` on SQLite and on PostgreSQL (skipped without its URL).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let app = $crate::TestApp::spawn($crate::Backend::Sqlite).await.expect("sqlite app");
                    super::$name(app).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(app) = $crate::TestApp::spawn($crate::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            }
        )+
    };
}

/// A random id (isolates each test's Redis keys).
fn test_id() -> String {
    portcullis_domain::secret::random_id(8)
}
