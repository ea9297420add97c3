//! `bench/audit`: what the audit log costs and how fast it answers.
//!
//! 1. Guard throughput with request auditing off vs on (async and sync durability), API key on
//!    `GET /api/v1/contacts`, SQLite, same load generator as `bench/guard`. Target: on ≥ 0.8× off.
//! 2. Appends/s of the log itself (the group-commit appender with many concurrent writers), on
//!    SQLite and, when `PORTCULLIS_TEST_POSTGRES_URL` is set, on PostgreSQL.
//! 3. Search latency over a log of `--entries` entries (default 1,000,000) on SQLite, for the
//!    filters an investigation uses: credential within a month, status class, CIDR, route, MCP
//!    tool, user with `pii_access`, and a deep page. Target: well under a second.
//!
//! ```sh
//! cargo bench -p portcullis-server --bench audit -- --seconds 10 --concurrency 32 --entries 1000000
//! ```

mod common;

use common::{Args, args, load, now, serve};
use portcullis_core::Cx;
use portcullis_core::audit::search::{SearchParams, build_query};
use portcullis_core::audit::{AuditLog, Durability};
use portcullis_core::scopes::Catalogue;
use portcullis_core::settings::Settings;
use portcullis_domain::{SystemClock, WorkspaceId};
use portcullis_store::{AuditRecord, AuditStore, Store};
use portcullis_store_sqlite::SqliteStore;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

const PATH: &str = "/api/v1/contacts";

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        guard_overhead(&a).await;
        appends(&a).await;
        search(&a).await;
    });
}

/// A server on a fresh SQLite file with 20 contacts; returns its base URL and an API key.
async fn server(dir: &std::path::Path, name: &str, f: impl FnOnce(&mut Settings)) -> (String, String) {
    let store = SqliteStore::connect(&format!("sqlite://{}", dir.join(format!("{name}.db")).display()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = Settings::new(base.clone());
    f(&mut settings);
    let cx = Cx::init(store, Arc::new(SystemClock), settings, Catalogue::builtin(), None).await.unwrap();
    let (_, key) = common::bench_workspace(&cx).await;
    serve(listener, portcullis_http::router(cx)).await;
    (base, key)
}

async fn guard_overhead(a: &Args) {
    let dir = tempfile::tempdir().unwrap();
    println!(
        "bench/audit 1: guard throughput, GET {PATH} with an API key (SQLite), {} workers, {} s each",
        a.concurrency, a.seconds
    );
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>7} {:>8}",
        "audit", "req/s", "p50 ms", "p99 ms", "errors", "ratio"
    );
    type Tweak = Box<dyn FnOnce(&mut Settings)>;
    let scenarios: [(&str, Tweak); 3] = [
        ("off", Box::new(|s| s.audit.requests = false)),
        ("on (async, default)", Box::new(|_| {})),
        ("on (sync)", Box::new(|s| s.audit.durability = Durability::Sync)),
    ];
    let mut off = None;
    let mut ratio_async = 0.0;
    for (i, (name, f)) in scenarios.into_iter().enumerate() {
        let (base, key) = server(dir.path(), &format!("g{i}"), f).await;
        let fig = load(&format!("{base}{PATH}"), Some(&key), a).await;
        let base_rps = *off.get_or_insert(fig.rps);
        let ratio = fig.rps / base_rps;
        if i == 1 {
            ratio_async = ratio;
        }
        println!(
            "{name:<22} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>7.2}x",
            fig.rps, fig.p50_ms, fig.p99_ms, fig.errors, ratio
        );
    }
    println!(
        "audit on (async) / off: {ratio_async:.2}x — target 0.80x: {}\n",
        if ratio_async >= 0.8 { "met" } else { "NOT met" }
    );
}

fn record(ws: &WorkspaceId, i: u64, at: OffsetDateTime) -> AuditRecord {
    let mut r = AuditRecord::new("api.request", at);
    r.workspace_id = Some(ws.clone());
    r.credential_kind = Some(if i.is_multiple_of(3) { "access_token" } else { "api_key" }.into());
    r.credential_id = Some(format!("key_{:04}", i % 1000));
    r.user_id = (i.is_multiple_of(3)).then(|| format!("usr_{:03}", i % 500));
    r.client_id = (i.is_multiple_of(3)).then(|| format!("cli_{:02}", i % 20));
    r.ip = Some(std::net::IpAddr::from([10, (i % 4) as u8, ((i / 4) % 256) as u8, (i % 250) as u8 + 1]));
    let routes = ["/api/v1/contacts", "/api/v1/contacts/{id}", "/api/v1/messages", "/api/v1/flows", "/mcp"];
    let route = routes[(i % 5) as usize];
    r.method = Some(if i.is_multiple_of(7) { "POST" } else { "GET" }.into());
    r.route = Some(route.into());
    r.path = Some(route.replace("{id}", &format!("ct_{}", i % 10_000)));
    r.tool =
        (route == "/mcp").then(|| ["list_contacts", "send_message", "execute_flow"][(i % 3) as usize].into());
    r.status = Some(match i % 50 {
        0 => 403,
        1 => 429,
        2 => 401,
        _ => 200,
    });
    r.pii_access = route.starts_with("/api/v1/contacts");
    r.params = r#"{"query":{"limit":"50"}}"#.into();
    r.duration_us = Some(800 + (i % 400) as i64);
    r.request_id = Some(format!("req-{i}"));
    r
}

/// Appends `n` records through a fresh appender from `writers` concurrent tasks.
async fn append_rate<S: Store>(store: S, n: u64, writers: u64) -> f64 {
    let cx =
        Cx::init(store, Arc::new(SystemClock), Settings::new("http://127.0.0.1"), Catalogue::builtin(), None)
            .await
            .unwrap();
    let ws = cx.admin().create_workspace("appends", None).await.unwrap().id;
    let audit: Arc<AuditLog> = cx.audit.clone();
    let t0 = now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (audit, ws) = (audit.clone(), ws.clone());
            tokio::spawn(async move {
                let at = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
                for i in (w..n).step_by(writers as usize) {
                    audit.record_call(record(&ws, i, at)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    audit.flush().await;
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    let head = cx.store.audit_head(ws.as_str()).await.unwrap().unwrap();
    assert!(head.size as u64 >= n, "every record was appended");
    rate
}

async fn appends(a: &Args) {
    let n: u64 = a.get("appends", 100_000);
    let writers = a.concurrency as u64;
    println!("bench/audit 2: appends/s of the log (group commit), {n} entries from {writers} writers");
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        SqliteStore::connect(&format!("sqlite://{}", dir.path().join("appends.db").display())).await.unwrap();
    println!("{:<12} {:>12.0} appends/s", "SQLite", append_rate(sqlite, n, writers).await);
    match std::env::var("PORTCULLIS_TEST_POSTGRES_URL") {
        Ok(url) => {
            let schema = format!("pcl_bench_{:08x}", rand::random::<u32>());
            let pg = portcullis_store_postgres::PgStore::connect_in_schema(&url, &schema).await.unwrap();
            println!("{:<12} {:>12.0} appends/s", "PostgreSQL", append_rate(pg.clone(), n, writers).await);
            use portcullis_store_sql::sqlx;
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(pg.pool())
                .await;
        }
        Err(_) => println!("PostgreSQL   skipped (PORTCULLIS_TEST_POSTGRES_URL is not set)"),
    }
    println!();
}

async fn search(a: &Args) {
    let n: u64 = a.get("entries", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::connect(&format!("sqlite://{}", dir.path().join("search.db").display())).await.unwrap();
    let ws = WorkspaceId::generate();
    // Spread over 120 days ending now-ish: about one entry every 10 s at 1M entries.
    let start = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
    let step = Duration::days(120) / n as u32;
    let t0 = now();
    let mut batch = Vec::with_capacity(2000);
    for i in 0..n {
        batch.push(record(&ws, i, start + step * i as u32));
        if batch.len() == 2000 || i + 1 == n {
            store.append_audit(&batch, start).await.unwrap();
            batch.clear();
        }
    }
    println!(
        "bench/audit 3: search over {n} entries in one workspace log (SQLite; loaded in {:.1} s)",
        t0.elapsed().as_secs_f64()
    );
    let day =
        |d: i64| (start + Duration::days(d)).format(&time::format_description::well_known::Rfc3339).unwrap();
    let first_page = store
        .search_audit(
            &build_query(
                ws.as_str(),
                &SearchParams { limit: Some(50), ..Default::default() },
                &str::to_owned,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let cursor = portcullis_core::audit::search::encode_cursor(first_page.last().unwrap());
    let cases: Vec<(&str, SearchParams)> = vec![
        ("newest 50, no filter", SearchParams::default()),
        (
            "credential in a month",
            SearchParams {
                credential: Some("key_0042".into()),
                from: Some(day(30)),
                to: Some(day(58)),
                ..Default::default()
            },
        ),
        ("status 4xx", SearchParams { status: Some("4xx".into()), ..Default::default() }),
        (
            "status 429 in a week",
            SearchParams {
                status: Some("429".into()),
                from: Some(day(60)),
                to: Some(day(67)),
                ..Default::default()
            },
        ),
        ("ip 10.2.7.0/24", SearchParams { ip: Some("10.2.7.0/24".into()), ..Default::default() }),
        (
            "route template",
            SearchParams { route: Some("/api/v1/contacts/{id}".into()), ..Default::default() },
        ),
        (
            "concrete path",
            SearchParams { route: Some("/api/v1/contacts/ct_4241".into()), ..Default::default() },
        ),
        ("MCP tool", SearchParams { tool: Some("execute_flow".into()), ..Default::default() }),
        (
            "user + pii_access",
            SearchParams { user: Some("usr_040".into()), pii: Some(true), ..Default::default() },
        ),
        (
            "kind service_token (none)",
            SearchParams { kind: Some("service_token".into()), ..Default::default() },
        ),
        ("second page (cursor)", SearchParams { cursor: Some(cursor), ..Default::default() }),
    ];
    println!("{:<28} {:>8} {:>10} {:>10}", "query (limit 50)", "found", "p50 ms", "max ms");
    let mut worst: f64 = 0.0;
    for (name, p) in cases {
        let q = build_query(ws.as_str(), &SearchParams { limit: Some(50), ..p }, &str::to_owned).unwrap();
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..7 {
            let t = now();
            found = store.search_audit(&q).await.unwrap().len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        worst = worst.max(times[times.len() - 1]);
        println!("{name:<28} {found:>8} {:>10.2} {:>10.2}", times[times.len() / 2], times[times.len() - 1]);
    }
    println!(
        "slowest search: {worst:.1} ms — target well under 1000 ms: {}",
        if worst < 500.0 { "met" } else { "NOT met" }
    );
}
