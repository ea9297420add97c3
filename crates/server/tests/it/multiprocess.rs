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
    /// The replica's instance id (the holder named in the maintenance lease).
    instance: String,
}

impl Process {
    /// Kills the process without letting it finish anything (SIGKILL): a replica dying.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
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
    let (addr, instance) = loop {
        let line = lines.next().expect("server exited").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "portcullis listening" {
            break (v["addr"].as_str().unwrap().to_owned(), v["instance"].as_str().unwrap().to_owned());
        }
    };
    // Keep draining the log so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Process { child, base: format!("http://{addr}"), instance }
}

/// A fresh PostgreSQL database for one test: the admin pool (to drop it), its name and its URL.
async fn scratch_database(base_url: &str, prefix: &str) -> (sqlx::PgPool, String, String) {
    let name = format!("{prefix}_{:08x}", rand::random::<u32>());
    let admin = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(base_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    let db = match base_url.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{name}"),
        None => panic!("unexpected URL"),
    };
    (admin, name, db)
}

/// Workspace `acme`, the user Ada (contacts:read there) and a confidential app: (user, client).
fn flow_setup(db: &str) -> (serde_json::Value, serde_json::Value) {
    cli(db, &["workspace", "create", "acme"], None);
    let u = cli(db, &["user", "create", "--email", "ada@example.com", "--password-stdin"], Some(PASSWORD));
    let member = ["member", "add", "--workspace", "acme", "--email", "ada@example.com"];
    cli(db, &[&member[..], &["--permissions", "contacts:read"]].concat(), None);
    let c = cli(
        db,
        &["client", "create", "--name", "App", "--redirect-uri", REDIRECT, "--scope", "contacts:read"],
        None,
    );
    (u, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_database_act_as_one_server() {
    let Ok(base_url) = std::env::var(portcullis_testkit::POSTGRES_ENV) else {
        portcullis_testkit::skip("multi-process test", "PORTCULLIS_TEST_POSTGRES_URL is not set");
        return;
    };
    let (admin, name, db) = scratch_database(&base_url, "pcl_mp").await;

    let outcome = tokio::task::spawn_blocking({
        let db = db.clone();
        move || {
            let (u, c) = flow_setup(&db);
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
    let (admin, name, db) = scratch_database(&base_url, "pcl_mpa").await;
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

/// Polls `check` every 100 ms until it holds or `limit` passes; returns how long it took.
async fn within<F, Fut>(limit: std::time::Duration, what: &str, mut check: F) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    #[allow(clippy::disallowed_methods)] // measuring a bound in a test, not protocol time
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn api_status(base: &str, token: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{base}/api/v1/contacts"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn jwks_kids(base: &str) -> Vec<String> {
    let v: serde_json::Value =
        reqwest::get(format!("{base}/oauth2/jwks")).await.unwrap().json().await.unwrap();
    let mut kids: Vec<String> =
        v["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    kids.sort();
    kids
}

/// Three replicas on one PostgreSQL and one Redis, as the scale-out promise states it: each step of
/// a flow on a different replica, a refresh race with one winner, one rate limit, revocations
/// seen everywhere within the credential cache's bound, a complete and verifiable audit log, one
/// signing-key rotation at a time, and the background work taken over when its replica dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_on_postgres_and_redis_act_as_one_server() {
    let (Ok(base_url), Ok(redis)) =
        (std::env::var(portcullis_testkit::POSTGRES_ENV), std::env::var("PORTCULLIS_TEST_REDIS_URL"))
    else {
        portcullis_testkit::skip(
            "three-replica test",
            "PORTCULLIS_TEST_POSTGRES_URL and PORTCULLIS_TEST_REDIS_URL are not both set",
        );
        return;
    };
    let (admin, name, db) = scratch_database(&base_url, "pcl_r3").await;
    // Seconds instead of the production minutes and days, so the test sees background work.
    const ROTATION: i64 = 6;
    const CACHE_TTL: u64 = 2;
    let prefix = format!("pcl-r3-{:08x}", rand::random::<u32>());
    let flags = [
        "--redis-url",
        &redis,
        "--maintenance-interval",
        "1s",
        "--signing-key-rotation",
        &format!("{ROTATION}s"),
        "--signing-key-activation-delay",
        "1s",
        "--credential-cache-ttl",
        &format!("{CACHE_TTL}s"),
        "--audit-durability",
        "sync",
    ]
    .map(str::to_owned);
    let (user, client, key, mut replicas) = tokio::task::spawn_blocking({
        let db = db.clone();
        move || {
            let (u, c) = flow_setup(&db);
            let k = cli(
                &db,
                &[
                    "key",
                    "create",
                    "--workspace",
                    "acme",
                    "--name",
                    &prefix,
                    "--scope",
                    "contacts:read",
                    "--rate-limit",
                    "6/min",
                ],
                None,
            );
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let replicas = vec![serve_with(&db, &flags), serve_with(&db, &flags), serve_with(&db, &flags)];
            (u, c, k, replicas)
        }
    })
    .await
    .unwrap();
    let w = World {
        client_id: s(&client, "client_id"),
        secret: s(&client, "client_secret"),
        workspace_id: String::new(),
        user_id: s(&user, "id"),
    };
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let [a, b, c] = [&replicas[0], &replicas[1], &replicas[2]];

    // 1. Every step of the flow on another replica: authorize on A, sign in on B, consent on C,
    //    the code redeemed on B, the refresh on C, the token accepted by A's guard.
    let br = browser();
    let authz = Authz::new(&w.client_id, "contacts:read");
    let r = br.get(authz.url(a)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let login = location(r.headers());
    let r = sign_in(b, &br, &login, "ada@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "B signs in a request A received");
    let consent = location(r.headers());
    let r = answer_consent(c, &br, &consent, None, true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "C shows and takes the consent");
    let code = code_from(c, &location(r.headers()), &authz);
    let t = json(redeem(b, &w, &code, &authz.verifier).await).await;
    let t = json(refresh(c, &w, &s(&t, "refresh_token"), None).await).await;
    assert_eq!(api_status(&a.base, &s(&t, "access_token")).await, StatusCode::OK, "A accepts C's token");

    // 2. A refresh race over the three replicas: one winner, and the winner's chain lives on.
    let winners = refresh_race(&bases, &w, &s(&t, "refresh_token"), 12).await;
    assert_eq!(winners.len(), 1, "one winner across three replicas");
    let t = json(refresh(a, &w, &s(&winners[0], "refresh_token"), None).await).await;
    let access = s(&t, "access_token");
    for base in &bases {
        assert_eq!(api_status(base, &access).await, StatusCode::OK);
    }

    // 3. One rate limit: 6 calls a minute in all, however they are spread.
    let secret = s(&key, "secret");
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(api_status(&bases[i % 3], &secret).await);
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 6, "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    // 4. Revocations reach every replica within the credential cache's bound. The grant's tokens
    //    are revoked on A while B and C hold its state in their caches.
    let bound = std::time::Duration::from_secs(CACHE_TTL) + std::time::Duration::from_millis(1500);
    assert_eq!(revoke(a, &w, &s(&t, "refresh_token")).await.status(), StatusCode::OK);
    for base in &bases {
        let took = within(bound, "the revoked grant's access token refused", || async {
            api_status(base, &access).await == StatusCode::UNAUTHORIZED
        })
        .await;
        eprintln!("grant revocation seen by {base} after {took:?}");
    }
    // An API key revoked by the CLI (another process, with no cache to clear).
    let fresh = cli(
        &db,
        &["key", "create", "--workspace", "acme", "--name", "second", "--scope", "contacts:read"],
        None,
    );
    let fresh_secret = s(&fresh, "secret");
    for base in &bases {
        assert_eq!(api_status(base, &fresh_secret).await, StatusCode::OK);
    }
    cli(&db, &["key", "revoke", &s(&fresh, "id")], None);
    for base in &bases {
        let took = within(bound, "the revoked API key refused", || async {
            api_status(base, &fresh_secret).await == StatusCode::UNAUTHORIZED
        })
        .await;
        eprintln!("API key revocation seen by {base} after {took:?}");
    }

    // 5. Signing keys: rotations happen on schedule, one at a time, and all replicas publish the
    //    same keys and accept each other's tokens throughout.
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&db).await.unwrap();
    let generations = || async {
        sqlx::query_as::<_, (i64, i64)>("SELECT generation, created_at FROM signing_keys ORDER BY generation")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    within(std::time::Duration::from_secs(3 * ROTATION as u64), "a scheduled rotation", || async {
        generations().await.len() >= 2
    })
    .await;
    within(std::time::Duration::from_secs(5), "every replica publishing the same keys", || async {
        let sets = futures::future::join_all(bases.iter().map(|b| jwks_kids(b))).await;
        sets.iter().all(|s| *s == sets[0])
    })
    .await;
    let holder = || async {
        sqlx::query_as::<_, (String,)>("SELECT holder FROM leases WHERE name = 'maintenance'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .0
    };

    // 6. Kill the replica holding the maintenance lease: another takes it over within the lease
    //    time (three intervals) and the scheduled work goes on there.
    let dead = holder().await;
    let at = replicas.iter().position(|r| r.instance == dead).expect("the holder is one of the replicas");
    let before = generations().await.len();
    replicas[at].kill();
    let survivors: Vec<String> =
        replicas.iter().enumerate().filter(|(i, _)| *i != at).map(|(_, r)| r.instance.clone()).collect();
    let took = within(std::time::Duration::from_secs(8), "another replica taking the lease", || async {
        survivors.contains(&holder().await)
    })
    .await;
    eprintln!("maintenance lease taken over {took:?} after its holder died");
    within(std::time::Duration::from_secs(3 * ROTATION as u64), "a rotation by the new holder", || async {
        generations().await.len() > before
    })
    .await;
    let keys = generations().await;
    let numbers: Vec<i64> = keys.iter().map(|k| k.0).collect();
    assert_eq!(numbers, (1..=keys.len() as i64).collect::<Vec<_>>(), "generations without gaps");
    for pair in keys.windows(2) {
        assert!(pair[1].1 - pair[0].1 >= ROTATION, "one rotation per period, never two at once: {keys:?}");
    }

    // The survivors' tokens are accepted by each other, signed with the newest active key.
    let survivors: Vec<&Process> =
        replicas.iter().enumerate().filter(|(i, _)| *i != at).map(|(_, r)| r).collect();
    let t = tokens_on(survivors[0], &w, &br).await;
    assert_eq!(api_status(&survivors[1].base, &s(&t, "access_token")).await, StatusCode::OK);
    let t = json(refresh(survivors[1], &w, &s(&t, "refresh_token"), None).await).await;
    assert_eq!(api_status(&survivors[0].base, &s(&t, "access_token")).await, StatusCode::OK);

    // 7. The audit log has every guarded call of every replica (sync durability: even the killed
    //    one lost nothing it answered) and verifies.
    drop(replicas);
    let (ok, verify) = cli_outcome(&db, &["audit", "verify"]);
    assert!(ok && verify["ok"] == true, "{verify}");
    let (ok, found) = cli_outcome(
        &db,
        &["audit", "search", "--workspace", "acme", "--event", "api.request", "--limit", "1000"],
    );
    assert!(ok);
    let entries = found["entries"].as_array().unwrap();
    let refused = entries.iter().filter(|e| e["status"] == 429).count();
    assert_eq!(refused, 6, "every rate-limited call is in the log");
    assert!(entries.len() >= 6 + 6 + 3 + 3 + 3 + 2, "{} entries", entries.len());

    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)")))
        .execute(&admin)
        .await
        .unwrap();
}

/// A full authorization on one replica (consent is remembered, so no page is shown).
async fn tokens_on(p: &Process, w: &World, br: &reqwest::Client) -> serde_json::Value {
    let authz = Authz::new(&w.client_id, "contacts:read");
    let callback = authorize(p, br, &authz).await;
    let code = code_from(p, &callback, &authz);
    json(redeem(p, w, &code, &authz.verifier).await).await
}
