//! Several `portcullis serve` processes on one PostgreSQL database behave as one server: a flow
//! started on one finishes on the other, a refresh race spread across both has exactly one
//! winner, and a revocation on one is seen by the other. Needs PORTCULLIS_TEST_POSTGRES_URL.
//! Two processes sharing Redis enforce one rate limit. Needs PORTCULLIS_TEST_REDIS_URL.

use crate::support::*;
use portcullis_store_sql::sqlx;
use reqwest::StatusCode;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};

const ISSUER: &str = "http://portcullis.test";

struct Process {
    child: Child,
    base: String,
}

impl Server for Process {
    fn base(&self) -> &str {
        &self.base
    }
    fn issuer(&self) -> &str {
        ISSUER
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn cli(db: &str, args: &[&str], stdin: Option<&str>) -> serde_json::Value {
    let mut c = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    c.args(["--database-url", db]).args(args).arg("--json").stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn serve(db: &str) -> Process {
    serve_with(db, &[])
}

fn serve_with(db: &str, extra: &[&str]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--database-url", db, "serve", "--bind", "127.0.0.1:0", "--issuer", ISSUER])
        .args(extra)
        .env("PORTCULLIS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server exited").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "portcullis listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    // Keep draining the log so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Process { child, base: format!("http://{addr}") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_database_act_as_one_server() {
    let Ok(base_url) = std::env::var(portcullis_testkit::POSTGRES_ENV) else {
        portcullis_testkit::skip("multi-process test", "PORTCULLIS_TEST_POSTGRES_URL is not set");
        return;
    };
    let name = format!("pcl_mp_{:08x}", rand::random::<u32>());
    let admin = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&base_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    let db = match base_url.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{name}"),
        None => panic!("unexpected URL"),
    };

    let outcome = tokio::task::spawn_blocking({
        let db = db.clone();
        move || {
            cli(&db, &["workspace", "create", "acme"], None);
            let u = cli(
                &db,
                &["user", "create", "--email", "ada@example.com", "--password-stdin"],
                Some(PASSWORD),
            );
            cli(
                &db,
                &[
                    "member",
                    "add",
                    "--workspace",
                    "acme",
                    "--email",
                    "ada@example.com",
                    "--permissions",
                    "contacts:read",
                ],
                None,
            );
            let c = cli(
                &db,
                &[
                    "client",
                    "create",
                    "--name",
                    "App",
                    "--redirect-uri",
                    REDIRECT,
                    "--scope",
                    "contacts:read",
                ],
                None,
            );
            (u, c, serve(&db), serve(&db))
        }
    })
    .await
    .unwrap();
    let (user, client, a, b) = outcome;
    let w = World {
        client_id: s(&client, "client_id"),
        secret: s(&client, "client_secret"),
        workspace_id: String::new(),
        user_id: s(&user, "id"),
    };

    // Authorize and consent on A, redeem the code on B.
    let br = browser();
    let authz = Authz::new(&w.client_id, "contacts:read");
    let callback = authorize(&a, &br, &authz).await;
    let code = code_from(&a, &callback, &authz);
    let r = redeem(&b, &w, &code, &authz.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t = json(r).await;
    assert_eq!(introspect(&a, &w, &s(&t, "access_token")).await["active"], true, "A accepts B's token");

    // A refresh race spread across both processes: exactly one winner, nothing revoked.
    let rt = s(&t, "refresh_token");
    let winners = refresh_race(&[a.base.clone(), b.base.clone()], &w, &rt, 10).await;
    assert_eq!(winners.len(), 1, "one winner across both processes");
    let next = json(refresh(&b, &w, &s(&winners[0], "refresh_token"), None).await).await;
    assert!(next["access_token"].is_string(), "the winner's chain is intact");

    // A revocation on A takes effect on B.
    assert_eq!(revoke(&a, &w, &s(&next, "refresh_token")).await.status(), StatusCode::OK);
    assert_eq!(introspect(&b, &w, &s(&next, "access_token")).await["active"], false);

    drop(a);
    drop(b);
    admin.close().await;
    let admin = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&base_url).await.unwrap();
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&admin)
        .await;
}

/// Two replicas configured with one Redis spend one budget: a key allowed 4 requests a minute
/// gets 4 in all, however its requests are spread over the replicas (each process alone would
/// have allowed 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_sharing_redis_enforce_one_rate_limit() {
    let Ok(redis) = std::env::var("PORTCULLIS_TEST_REDIS_URL") else {
        portcullis_testkit::skip("shared rate-limit test", "PORTCULLIS_TEST_REDIS_URL is not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    cli(&db, &["workspace", "create", "acme"], None);
    let k = cli(
        &db,
        &[
            "key",
            "create",
            "--workspace",
            "acme",
            "--name",
            "ci",
            "--scope",
            "contacts:read",
            "--rate-limit",
            "4/min",
        ],
        None,
    );
    let key = k["secret"].as_str().unwrap().to_owned();
    let (a, b) = (serve_with(&db, &["--redis-url", &redis]), serve_with(&db, &["--redis-url", &redis]));
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let r = http.get(format!("{base}/api/v1/contacts")).bearer_auth(&key).send().await.unwrap();
        statuses.push(r.status());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((ok, limited), (4, 4), "{statuses:?}");
    assert_eq!(&statuses[..4], &[StatusCode::OK; 4], "the first four pass, on both replicas");
}

/// Runs the CLI and returns whether it succeeded, with its JSON output.
fn cli_outcome(db: &str, args: &[&str]) -> (bool, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--database-url", db])
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_append_to_one_verifiable_audit_log() {
    let Ok(base_url) = std::env::var(portcullis_testkit::POSTGRES_ENV) else {
        portcullis_testkit::skip("multi-process audit test", "PORTCULLIS_TEST_POSTGRES_URL is not set");
        return;
    };
    let name = format!("pcl_mpa_{:08x}", rand::random::<u32>());
    let admin = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&base_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    let db = match base_url.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{name}"),
        None => panic!("unexpected URL"),
    };
    let (key, a, b) = tokio::task::spawn_blocking({
        let db = db.clone();
        move || {
            cli(&db, &["workspace", "create", "acme"], None);
            let k = cli(
                &db,
                &["key", "create", "--workspace", "acme", "--name", "ci", "--scope", "contacts:read"],
                None,
            );
            (k["secret"].as_str().unwrap().to_owned(), serve(&db), serve(&db))
        }
    })
    .await
    .unwrap();

    // 80 calls at once, spread over both processes.
    let http = reqwest::Client::new();
    let calls =
        (0..80).map(|i| {
            let (http, key) = (http.clone(), key.clone());
            let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
            async move {
                http.get(format!("{base}/api/v1/contacts")).bearer_auth(&key).send().await.unwrap().status()
            }
        });
    let statuses = futures::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    // A graceful stop flushes each process's queue and signs a final checkpoint.
    drop((a, b));

    let (ok, verify) = cli_outcome(&db, &["audit", "verify"]);
    assert!(ok && verify["ok"] == true, "{verify}");
    let logs = verify["logs"].as_array().unwrap();
    let acme = logs.iter().find(|l| l["log"] != "_system").unwrap();
    assert_eq!(acme["unsigned_tail"], 0, "{acme}");
    let (ok, found) = cli_outcome(
        &db,
        &["audit", "search", "--workspace", "acme", "--event", "api.request", "--limit", "1000"],
    );
    assert!(ok);
    assert_eq!(found["entries"].as_array().unwrap().len(), 80, "every call of both processes is in the log");

    // Edit one row: the CLI names it and fails.
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&db).await.unwrap();
    sqlx::query("UPDATE audit_entries SET status = 500 WHERE seq = 10 AND log <> '_system'")
        .execute(&pool)
        .await
        .unwrap();
    let (ok, broken) = cli_outcome(&db, &["audit", "verify", "--workspace", "acme"]);
    assert!(!ok, "verification must fail after an edit");
    assert_eq!(broken["logs"][0]["problem"]["seq"], 10, "{broken}");
    assert_eq!(broken["logs"][0]["problem"]["kind"], "altered");
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&admin)
        .await
        .unwrap();
}
