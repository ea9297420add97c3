//! The audit log end to end, on both backends: one entry per guarded call with the right fields
//! and no secrets, credential events, tamper detection (edit, move, delete, insert, rewrite with
//! recomputed hashes), search over HTTP, export with signed digests, webhook delivery through a
//! failing receiver, and the queue flushed at shutdown.

use crate::support::{browser, claims, json, s, tokens_for, world};
use portcullis_core::api_keys::NewKey;
use portcullis_store::{AuditEntry, SYSTEM_LOG};
use portcullis_testkit::{Backend, Options, TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

both_backends!(
    every_guarded_call_writes_one_entry,
    credential_events_are_entries,
    tampering_is_detected,
    search_over_http,
    export_is_readable_and_its_digests_verify,
    shutdown_flushes_the_queue,
);

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn key(app: &TestApp, scope: &str) -> (String, String) {
    let k = app
        .create_key(
            "acme",
            NewKey { name: "audit test".into(), scope: Some(scope.into()), ..Default::default() },
        )
        .await;
    (k.secret.expose().to_owned(), k.key.id.to_string())
}

fn calls(entries: &[AuditEntry]) -> Vec<&AuditEntry> {
    entries.iter().filter(|e| e.record.event.ends_with(".request")).collect()
}

async fn mcp_call(app: &TestApp, cred: &str, tool: &str) -> reqwest::Response {
    http()
        .post(app.url("/mcp"))
        .bearer_auth(cred)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}}))
        .send()
        .await
        .unwrap()
}

async fn every_guarded_call_writes_one_entry(app: TestApp) {
    let w = world(&app).await;
    let (secret, key_id) = key(&app, "contacts:read contacts:write").await;

    let r1 = http().get(app.url("/api/v1/contacts?limit=5")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r1.status(), StatusCode::OK);
    let request_id = r1.headers()["x-request-id"].to_str().unwrap().to_owned();
    let r2 = http()
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&secret)
        .json(
            &json!({"name": "Ann Lee", "email": "ann@example.com", "phone": "+15551234567", "tags": ["vip"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r2.status(), StatusCode::CREATED);
    let r3 = http().get(app.url("/api/v1/messages")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r3.status(), StatusCode::FORBIDDEN);
    assert_eq!(mcp_call(&app, &secret, "list_contacts").await.status(), StatusCode::OK);
    let tokens = tokens_for(&app, &w, &browser(), "contacts:read").await;
    let access = s(&tokens, "access_token");
    let r5 = http().get(app.url("/api/v1/contacts")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(r5.status(), StatusCode::OK);
    // Unknown credentials belong to no workspace: the instance log.
    let bogus_key = "pcl_live_0000000000000000000000000000000000000";
    for bad in [bogus_key, "a.b.c"] {
        let r = http().get(app.url("/api/v1/contacts")).bearer_auth(bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    let entries = app.audit_entries(&w.workspace_id).await;
    let made = calls(&entries);
    assert_eq!(made.len(), 5, "exactly one entry per call: {made:#?}");
    let [e1, e2, e3, e4, e5] = [made[0], made[1], made[2], made[3], made[4]].map(|e| &e.record);

    assert_eq!(e1.event, "api.request");
    assert_eq!(e1.credential_kind.as_deref(), Some("api_key"));
    assert_eq!(e1.credential_id.as_deref(), Some(key_id.as_str()));
    assert_eq!(e1.ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!((e1.method.as_deref(), e1.route.as_deref()), (Some("GET"), Some("/api/v1/contacts")));
    assert_eq!(e1.path.as_deref(), Some("/api/v1/contacts"));
    assert_eq!(e1.status, Some(200));
    assert_eq!(e1.request_id.as_deref(), Some(request_id.as_str()));
    assert!(e1.pii_access, "contacts are personal data");
    assert!(e1.duration_us.unwrap() > 0);
    let p1: Value = serde_json::from_str(&e1.params).unwrap();
    assert_eq!(p1["query"]["limit"], "5");

    let p2: Value = serde_json::from_str(&e2.params).unwrap();
    assert_eq!((e2.method.as_deref(), e2.status), (Some("POST"), Some(201)));
    assert_eq!(p2["body"]["name"], "[redacted]");
    assert_eq!(
        p2["body"]["email"],
        app.audit.redactor.pseudonym("ann@example.com"),
        "equal values, equal hashes"
    );
    assert_eq!(p2["body"]["phone"], app.audit.redactor.pseudonym("+15551234567"));
    assert_eq!(p2["body"]["tags"], json!(["vip"]));
    // Equal values stay searchable without being readable.
    let reader = app.api_key("acme", "audit:read").await;
    let found = json(
        http()
            .get(app.url("/api/v1/audit?value=Ann@example.com&event=api.request"))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let found = found["entries"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["method"], "POST");

    assert_eq!((e3.status, e3.error.as_deref()), (Some(403), Some("insufficient_scope")));
    assert_eq!(e3.route.as_deref(), Some("/api/v1/messages"));
    assert!(!e3.pii_access);

    assert_eq!(e4.event, "mcp.request");
    assert_eq!(e4.tool.as_deref(), Some("list_contacts"));
    assert!(e4.pii_access);

    let c = claims(&access);
    assert_eq!(e5.credential_kind.as_deref(), Some("access_token"));
    assert_eq!(e5.credential_id.as_deref(), c["jti"].as_str());
    assert_eq!(e5.user_id.as_deref(), Some(w.user_id.as_str()));
    assert_eq!(e5.client_id.as_deref(), Some(w.client_id.as_str()));

    let system = app.audit_entries(SYSTEM_LOG).await;
    let refused = calls(&system);
    assert_eq!(refused.len(), 2, "{refused:#?}");
    for e in &refused {
        assert_eq!((e.record.status, e.record.error.as_deref()), (Some(401), Some("invalid_token")));
        assert_eq!(e.record.credential_id, None);
    }

    // No secret and no raw personal data anywhere in the log.
    let all = format!("{entries:?}{system:?}");
    for secret_text in [secret.as_str(), access.as_str(), s(&tokens, "refresh_token").as_str(), bogus_key] {
        assert!(!all.contains(secret_text), "a credential leaked into the audit log");
    }
    for pii in ["Ann Lee", "ann@example.com", "Ann@Example.com", "5551234567", "correct horse"] {
        assert!(!all.contains(pii), "{pii} leaked into the audit log");
    }
    assert!(app.verify_audit(&w.workspace_id).await.ok);
}

async fn credential_events_are_entries(app: TestApp) {
    let w = world(&app).await;
    let (_, key_id) = key(&app, "contacts:read").await;
    let admin = app.api_key("acme", "keys:manage").await;
    let r =
        http().delete(app.url(&format!("/api/v1/keys/{key_id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let tokens = tokens_for(&app, &w, &browser(), "contacts:read offline_access").await;
    let refresh = s(&tokens, "refresh_token");
    for _ in 0..2 {
        // The second use of the same refresh token (past the race tolerance) is a replay: the
        // family is revoked.
        crate::support::refresh(&app, &w, &refresh, None).await;
        app.clock.advance(time::Duration::seconds(5));
    }
    app.rotate_client_secret(&w.client_id, time::Duration::ZERO).await;

    let entries = app.audit_entries(&w.workspace_id).await;
    let kinds: Vec<&str> = entries.iter().map(|e| e.record.event.as_str()).collect();
    for k in
        ["api_key.created", "api_key.revoked", "consent.given", "grant.created", "refresh_token.replayed"]
    {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let revoked = entries.iter().find(|e| e.record.event == "api_key.revoked").unwrap();
    assert_eq!(revoked.record.subject.as_deref(), Some(key_id.as_str()));
    let admin_call = entries.iter().find(|e| e.record.event == "admin.request").unwrap();
    assert_eq!(admin_call.record.route.as_deref(), Some("/api/v1/keys/{id}"));
    assert_eq!(admin_call.record.status, Some(200));
    // The client belongs to every workspace: its events are instance events.
    let system = app.audit_entries(SYSTEM_LOG).await;
    let sys_kinds: Vec<&str> = system.iter().map(|e| e.record.event.as_str()).collect();
    assert!(sys_kinds.contains(&"login.succeeded"), "{sys_kinds:?}");
    assert!(sys_kinds.contains(&"client.secret_rotated"), "{sys_kinds:?}");
    let login = system.iter().find(|e| e.record.event == "login.succeeded").unwrap();
    assert_eq!(login.record.user_id.as_deref(), Some(w.user_id.as_str()));
    assert!(!format!("{system:?}").contains("ada@example.com"), "sign-in emails are kept as keyed hashes");
}

/// Calls that leave 12 entries in acme's log.
async fn seed(app: &TestApp) -> String {
    let w = world(app).await;
    let (secret, _) = key(app, "contacts:read").await;
    for i in 0..12 {
        let path = if i % 4 == 3 { "/api/v1/messages" } else { "/api/v1/contacts" };
        http().get(app.url(path)).bearer_auth(&secret).send().await.unwrap();
    }
    w.workspace_id
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SQL literal of a hash (`X'…'` in SQLite, `'\x…'::bytea` in PostgreSQL).
fn blob(app: &TestApp, h: &[u8]) -> String {
    match app.backend {
        Backend::Sqlite => format!("X'{}'", hex(h)),
        Backend::Postgres => format!("'\\x{}'::bytea", hex(h)),
    }
}

async fn expect_broken(app: &TestApp, log: &str, seq: i64, kind: &str) {
    let report = app.verify_audit(log).await;
    let p = report.problem.unwrap_or_else(|| panic!("tampering not detected (expected {kind} at {seq})"));
    assert_eq!((p.seq, p.kind), (seq, kind), "{}", p.detail);
}

async fn tampering_is_detected(app: TestApp) {
    let log = seed(&app).await;
    let entries = app.audit_entries(&log).await;
    let n = entries.len() as i64;
    assert!(n >= 14, "{n}");
    app.checkpoint_audit().await;
    assert!(app.verify_audit(&log).await.ok);
    app.execute_sql("CREATE TABLE audit_backup AS SELECT * FROM audit_entries").await;
    app.execute_sql("CREATE TABLE audit_logs_backup AS SELECT * FROM audit_logs").await;
    let restore = format!(
        "DELETE FROM audit_entries WHERE log = '{log}'; \
         INSERT INTO audit_entries SELECT * FROM audit_backup WHERE log = '{log}'; \
         UPDATE audit_logs SET head = (SELECT head FROM audit_logs_backup WHERE log = '{log}'), \
         frontier = (SELECT frontier FROM audit_logs_backup WHERE log = '{log}') WHERE log = '{log}'"
    );
    let restore = async |app: &TestApp| {
        for stmt in restore.split("; ") {
            app.execute_sql(stmt).await;
        }
        let report = app.verify_audit(&log).await;
        assert!(report.ok, "restored: {report:?}");
    };

    // Edited: a refused call made to look allowed.
    app.execute_sql(&format!("UPDATE audit_entries SET status = 200 WHERE log = '{log}' AND seq = 5")).await;
    expect_broken(&app, &log, 5, "altered").await;
    restore(&app).await;

    // Reordered: two entries swap places.
    for (from, to) in [(6, -1), (7, 6), (-1, 7)] {
        app.execute_sql(&format!("UPDATE audit_entries SET seq = {to} WHERE log = '{log}' AND seq = {from}"))
            .await;
    }
    expect_broken(&app, &log, 6, "altered").await;
    restore(&app).await;

    // Deleted: one in the middle, and the last one.
    app.execute_sql(&format!("DELETE FROM audit_entries WHERE log = '{log}' AND seq = 8")).await;
    expect_broken(&app, &log, 8, "missing").await;
    restore(&app).await;
    app.execute_sql(&format!("DELETE FROM audit_entries WHERE log = '{log}' AND seq = {}", n - 1)).await;
    expect_broken(&app, &log, n - 1, "missing").await;
    restore(&app).await;

    // Inserted: a forged entry correctly chained after entry 3, later entries shifted up.
    app.execute_sql(&format!(
        "UPDATE audit_entries SET seq = seq + 1000000 WHERE log = '{log}' AND seq >= 4"
    ))
    .await;
    app.execute_sql(&format!(
        "UPDATE audit_entries SET seq = seq - 999999 WHERE log = '{log}' AND seq >= 1000000"
    ))
    .await;
    let mut forged = entries[4].record.clone();
    forged.id = portcullis_domain::AuditEntryId::generate();
    forged.status = Some(200);
    let f = AuditEntry::chain(&log, 4, entries[3].hash, forged);
    app.execute_sql(&format!(
        "INSERT INTO audit_entries SELECT log, 4, '{}', at, workspace_id, event, actor, subject, credential_kind, \
         credential_id, user_id, client_id, ip, ip_key, method, route, path, tool, params, 200, NULL, duration_us, \
         request_id, pii_access, {}, {} FROM audit_backup WHERE log = '{log}' AND seq = 4",
        f.record.id,
        blob(&app, &f.prev_hash),
        blob(&app, &f.hash)
    ))
    .await;
    expect_broken(&app, &log, 5, "altered").await;
    restore(&app).await;
    // Inserted beyond the head.
    app.execute_sql(&format!(
        "INSERT INTO audit_entries SELECT log, {n}, 'aud_x', at, workspace_id, event, actor, subject, credential_kind, \
         credential_id, user_id, client_id, ip, ip_key, method, route, path, tool, params, status, error, duration_us, \
         request_id, pii_access, prev_hash, hash FROM audit_backup WHERE log = '{log}' AND seq = 0"
    ))
    .await;
    expect_broken(&app, &log, n, "extra").await;
    restore(&app).await;

    // Rewritten by someone with full database access who recomputes every hash after the edit
    // and moves the head: the chain is consistent again, but the signed checkpoint is not.
    let mut prev = entries[1].hash;
    let mut frontier = portcullis_domain::audit::Frontier::default();
    entries[..2].iter().for_each(|e| frontier.push(e.hash));
    for (i, e) in entries.iter().enumerate().skip(2) {
        let mut r = e.record.clone();
        if i == 2 {
            r.status = Some(500);
        }
        let c = AuditEntry::chain(&log, e.seq, prev, r);
        app.execute_sql(&format!(
            "UPDATE audit_entries SET status = {}, prev_hash = {}, hash = {} WHERE log = '{log}' AND seq = {}",
            c.record.status.unwrap(),
            blob(&app, &c.prev_hash),
            blob(&app, &c.hash),
            e.seq
        ))
        .await;
        prev = c.hash;
        frontier.push(c.hash);
    }
    app.execute_sql(&format!(
        "UPDATE audit_logs SET head = {}, frontier = {} WHERE log = '{log}'",
        blob(&app, &prev),
        blob(&app, &frontier.to_bytes())
    ))
    .await;
    let report = app.verify_audit(&log).await;
    let p = report.problem.expect("a rewrite with recomputed hashes is caught by the signed checkpoint");
    assert_eq!(p.kind, "checkpoint", "{}", p.detail);
    restore(&app).await;

    // Pruning at a checkpoint keeps the rest verifiable: calls three days later, then a
    // one-day window.
    app.clock.advance(time::Duration::days(3));
    let (later, _) = key(&app, "contacts:read").await;
    for _ in 0..3 {
        http().get(app.url("/api/v1/contacts")).bearer_auth(&later).send().await.unwrap();
    }
    app.flush_audit().await;
    assert_eq!(app.prune_audit(time::Duration::days(1)).await, n as u64);
    let report = app.verify_audit(&log).await;
    assert!(report.ok && report.start == n && report.entries_checked >= 4, "{report:?}");
}

async fn search_over_http(app: TestApp) {
    let log = seed(&app).await;
    app.flush_audit().await;
    let reader = app.api_key("acme", "audit:read").await;
    let get = async |q: &str| {
        http().get(app.url(&format!("/api/v1/audit{q}"))).bearer_auth(&reader).send().await.unwrap()
    };
    let page = json(get("?status=4xx").await).await;
    let refused = page["entries"].as_array().unwrap();
    assert_eq!(refused.len(), 3, "{page}");
    assert!(refused.iter().all(|e| e["status"] == 403 && e["route"] == "/api/v1/messages"));
    let pii = json(get("?pii=true&route=/api/v1/contacts").await).await;
    assert_eq!(pii["entries"].as_array().unwrap().len(), 9, "{pii:#}");
    assert_eq!(
        json(get("?ip=127.0.0.0/8&status=200&event=api.request").await).await["entries"]
            .as_array()
            .unwrap()
            .len(),
        9
    );
    assert!(json(get("?ip=10.0.0.0/8").await).await["entries"].as_array().unwrap().is_empty());
    let one = &refused[0];
    let by_cred = json(
        get(&format!("?credential={}&kind=api_key&limit=100", one["credential_id"].as_str().unwrap())).await,
    )
    .await;
    assert_eq!(by_cred["entries"].as_array().unwrap().len(), 12);

    // Newest first, in pages that neither skip nor repeat.
    let mut seen: Vec<i64> = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = json(get(&format!("?event=api.request&limit=5{cursor}")).await).await;
        seen.extend(page["entries"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(seen, sorted, "newest first, no repeats");
    assert_eq!(seen.len(), 12);

    for bad in ["?status=6xx", "?ip=nope", "?limit=0", "?from=yesterday", "?cursor=zzz", "?colour=red"] {
        let r = get(bad).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let outsider = app.api_key("acme", "contacts:read").await;
    let r = http().get(app.url("/api/v1/audit")).bearer_auth(&outsider).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v =
        json(http().get(app.url("/api/v1/audit/verify")).bearer_auth(&reader).send().await.unwrap()).await;
    assert_eq!(v["report"]["ok"], true, "{v}");
    assert_eq!(v["report"]["log"], log.as_str());
}

async fn export_is_readable_and_its_digests_verify(app: TestApp) {
    seed(&app).await;
    app.checkpoint_audit().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let summary = app.export_audit(&url, &[], 5).await.expect("export");
    assert!(summary.entries >= 14 && summary.files.len() >= 3, "{summary:?}");
    let checked = app.verify_audit_export(&url, &[]).await.expect("the export verifies");
    assert_eq!(checked.entries, summary.entries);

    // Readable as gzip JSON Lines.
    let first = dir.path().join(&summary.files[0]);
    let text =
        std::io::read_to_string(flate2::read::GzDecoder::new(std::fs::File::open(&first).unwrap())).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(line["id"].as_str().unwrap().starts_with("aud_"));

    // An edited file, or a missing one, fails verification.
    let mut edited = text.replacen("\"status\":200", "\"status\":201", 1).into_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &edited).unwrap();
    edited = gz.finish().unwrap();
    let original = std::fs::read(&first).unwrap();
    std::fs::write(&first, &edited).unwrap();
    assert!(app.verify_audit_export(&url, &[]).await.is_err());
    std::fs::write(&first, &original).unwrap();
    assert!(app.verify_audit_export(&url, &[]).await.is_ok());
    let second = dir.path().join(&summary.files[1]);
    std::fs::remove_file(
        second.with_file_name(format!("{}.digest.json", second.file_name().unwrap().to_str().unwrap())),
    )
    .unwrap();
    let err = app.verify_audit_export(&url, &[]).await.unwrap_err();
    assert!(err.contains("chain"), "{err}");
}

async fn shutdown_flushes_the_queue(mut app: TestApp) {
    let log = seed(&app).await;
    app.stop_server().await;
    let entries = app.audit_entries(&log).await;
    assert_eq!(calls(&entries).len(), 12, "every answered call is in the log after shutdown");
    let report = app.verify_audit(&log).await;
    assert!(report.ok && report.unsigned_tail == 0, "shutdown signs a final checkpoint: {report:?}");
}

/// A receiver that fails its first `fail` requests, then records every batch.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn receiver(fail: usize) -> (String, Received) {
    use axum::routing::post;
    let got: Received = Arc::default();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (g, s2) = (got.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (g, s2) = (g.clone(), s2.clone());
            async move {
                if s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                let ts: i64 = headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
                let sig = headers["webhook-signature"].to_str().unwrap().to_owned();
                g.lock().unwrap().push((format!("{id}|{ts}|{sig}"), body.to_vec()));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_deliver_through_a_failing_receiver() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let opts = Options {
            settings: Some(Box::new(|s| {
                s.audit.sink_poll = std::time::Duration::from_millis(50);
                s.audit.sink_retry_base = std::time::Duration::from_millis(50);
            })),
            ..Default::default()
        };
        let Some(app) = TestApp::spawn_with(backend, opts).await else { continue };
        let (url, got) = receiver(3).await;
        let ws = app.create_workspace("acme").await;
        let manager = app.api_key("acme", "audit:manage").await;
        let r = http()
            .post(app.url("/api/v1/audit/sinks"))
            .bearer_auth(&manager)
            .json(&json!({"url": url, "from_start": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let created = json(r).await;
        let secret = s(&created, "secret");
        assert!(secret.starts_with("whsec_"));
        let bad = http()
            .post(app.url("/api/v1/audit/sinks"))
            .bearer_auth(&manager)
            .json(&json!({"url": "http://siem.example/hook"}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let (reader, _) = key(&app, "contacts:read").await;
        for _ in 0..20 {
            http().get(app.url("/api/v1/contacts")).bearer_auth(&reader).send().await.unwrap();
        }
        let expected: Vec<String> =
            app.audit_entries(ws.id.as_str()).await.iter().map(|e| e.record.id.to_string()).collect();
        assert!(expected.len() >= 22, "the sink creation, 20 calls and the key's creation");
        let mut delivered: std::collections::BTreeSet<String> = Default::default();
        for _ in 0..200 {
            delivered = got
                .lock()
                .unwrap()
                .iter()
                .flat_map(|(_, b)| {
                    serde_json::from_slice::<Value>(b).unwrap()["data"]["entries"].as_array().unwrap().clone()
                })
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect();
            if expected.iter().all(|id| delivered.contains(id)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let sinks =
            json(http().get(app.url("/api/v1/audit/sinks")).bearer_auth(&manager).send().await.unwrap())
                .await;
        assert!(
            expected.iter().all(|id| delivered.contains(id)),
            "nothing is lost after the receiver recovers: {sinks} {} of {}",
            delivered.len(),
            expected.len()
        );
        let batches = got.lock().unwrap().clone();
        let mut ids_by_msg: std::collections::HashMap<String, Vec<String>> = Default::default();
        for (meta, raw) in &batches {
            let mut parts = meta.split('|');
            let (id, ts, sig) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            let expected_sig =
                portcullis_core::audit::sinks::signature(&secret, id, ts.parse().unwrap(), raw).unwrap();
            assert_eq!(sig, expected_sig, "Standard Webhooks signature over the exact body");
            let body: Value = serde_json::from_slice(raw).unwrap();
            let entries: Vec<String> = body["data"]["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned())
                .collect();
            if let Some(prev) = ids_by_msg.insert(id.to_owned(), entries.clone()) {
                assert_eq!(prev, entries, "a redelivered batch carries the same entries");
            }
            assert!(sig.starts_with("v1,") && ts.parse::<i64>().is_ok());
        }
        let sinks =
            json(http().get(app.url("/api/v1/audit/sinks")).bearer_auth(&manager).send().await.unwrap())
                .await;
        assert_eq!(sinks["sinks"][0]["failures"], 0, "{sinks}");
    }
}

/// The same export to an S3-compatible server (moto in CI), when `PORTCULLIS_TEST_S3_URL` names
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_an_s3_compatible_store() {
    let Ok(endpoint) = std::env::var("PORTCULLIS_TEST_S3_URL") else {
        portcullis_testkit::skip("S3 export test", "PORTCULLIS_TEST_S3_URL is not set");
        return;
    };
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    seed(&app).await;
    app.checkpoint_audit().await;
    let bucket = format!("audit-{:08x}", rand::random::<u32>());
    // moto creates buckets on an unsigned PUT.
    let r = http().put(format!("{endpoint}/{bucket}")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let opts: Vec<(String, String)> = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_region", "us-east-1"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let url = format!("s3://{bucket}/exports/2026");
    let summary = app.export_audit(&url, &opts, 5).await.expect("export to S3");
    assert!(summary.entries >= 14);
    let checked = app.verify_audit_export(&url, &opts).await.expect("the S3 export verifies");
    assert_eq!(checked.entries, summary.entries);
}
