//! The guard on the reference API: each credential type × allowed / insufficient scope ×
//! revoked / expired × address inside / outside (IPv4 and IPv6) × rate limits, on both backends.

use crate::support::{browser, json, s, tokens_for, world};
use portcullis_core::admin::NewClient;
use portcullis_core::api_keys::{Expiry, NewKey};
use portcullis_testkit::{Backend, Options, TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get(app: &TestApp, cred: &str, path: &str) -> reqwest::Response {
    http().get(app.url(path)).bearer_auth(cred).send().await.unwrap()
}

async fn post(app: &TestApp, cred: &str, path: &str, body: Value) -> reqwest::Response {
    http().post(app.url(path)).bearer_auth(cred).json(&body).send().await.unwrap()
}

/// Asserts a 401 `invalid_token` challenge naming our RFC 9728 metadata.
fn assert_invalid_token(app: &TestApp, r: &reqwest::Response) {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(c.starts_with(r#"Bearer error="invalid_token""#), "{c}");
    let rm = format!(r#"resource_metadata="{}""#, app.url("/.well-known/oauth-protected-resource"));
    assert!(c.contains(&rm), "{c}");
}

/// Asserts a 403 `insufficient_scope` challenge naming `scope`.
fn assert_insufficient(r: &reqwest::Response, scope: &str) {
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let c = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(c.starts_with(r#"Bearer error="insufficient_scope""#), "{c}");
    assert!(c.contains(&format!(r#"scope="{scope}""#)), "{c}");
    assert!(c.contains("resource_metadata="), "{c}");
}

async fn key_with(app: &TestApp, scope: &str, f: impl FnOnce(&mut NewKey)) -> (String, String) {
    let mut req = NewKey { name: "guard test".into(), scope: Some(scope.into()), ..Default::default() };
    f(&mut req);
    let k = app.create_key("acme", req).await;
    (k.secret.expose().to_owned(), k.key.id.to_string())
}

both_backends!(
    metadata_and_missing_credentials,
    api_keys_on_the_reference_api,
    oauth_tokens_follow_grants_and_permissions,
    client_and_service_tokens,
    workspaces_are_isolated,
    other_replicas_revocations_arrive_within_the_cache_ttl,
    reference_api_validates_input,
);

async fn metadata_and_missing_credentials(app: TestApp) {
    let prm: Value = http()
        .get(app.url("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], app.url("/api"));
    assert_eq!(prm["authorization_servers"], json!([app.base]));
    assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
    assert!(prm["scopes_supported"].as_array().unwrap().contains(&json!("contacts:read")));

    let r = http().get(app.url("/api/v1/contacts")).send().await.unwrap();
    assert_invalid_token(&app, &r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    // Another scheme, garbage, a mistyped key, a JWT from elsewhere: all invalid_token.
    let r = http().get(app.url("/api/v1/contacts")).basic_auth("a", Some("b")).send().await.unwrap();
    assert_invalid_token(&app, &r);
    for cred in ["garbage", "pcl_live_notarealkeyatallnotarealkeyatall00", "eyJhbGciOiJIUzI1NiJ9.e30.x"] {
        assert_invalid_token(&app, &get(&app, cred, "/api/v1/contacts").await);
    }
}

async fn api_keys_on_the_reference_api(app: TestApp) {
    world(&app).await;
    let (reader, _) = key_with(&app, "contacts:read", |_| {}).await;
    let (writer, writer_id) = key_with(&app, "contacts:read contacts:write", |k| {
        k.rate_limit = Some("3/min".into());
    })
    .await;
    // Allowed, with the budget in the headers.
    let r =
        post(&app, &writer, "/api/v1/contacts", json!({"name": "Grace", "email": "grace@example.com"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["ratelimit-policy"], r#""credential";q=3;w=60"#);
    assert_eq!(r.headers()["ratelimit"].to_str().unwrap().split(';').nth(1), Some("r=2"));
    let contact = json(r).await;
    let r = get(&app, &reader, "/api/v1/contacts").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("ratelimit").is_none(), "no budget, no header");
    assert_eq!(json(r).await["contacts"][0]["email"], "grace@example.com");
    // Insufficient scope: named in the challenge, nothing written.
    let r = post(&app, &reader, "/api/v1/contacts", json!({"name": "Mallory"})).await;
    assert_insufficient(&r, "contacts:write");
    assert_eq!(json(r).await["scope"], "contacts:write");
    let r = http()
        .delete(app.url(&format!("/api/v1/contacts/{}", s(&contact, "id"))))
        .bearer_auth(&writer)
        .send()
        .await
        .unwrap();
    assert_insufficient(&r, "contacts:delete");
    // Rate limit: 3/min, two spent; the fourth request is refused until time passes.
    assert_eq!(get(&app, &writer, "/api/v1/contacts").await.status(), StatusCode::OK);
    assert_eq!(get(&app, &writer, "/api/v1/contacts").await.status(), StatusCode::OK);
    let r = get(&app, &writer, "/api/v1/contacts").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "20");
    assert_eq!(r.headers()["ratelimit"].to_str().unwrap().split(';').nth(1), Some("r=0"));
    assert_eq!(json(r).await["error"], "rate_limited");
    app.clock.advance(Duration::seconds(20));
    assert_eq!(get(&app, &writer, "/api/v1/contacts").await.status(), StatusCode::OK);
    // Revoked (through the admin API of this server): refused at once.
    let admin = app.api_key("acme", "keys:manage").await;
    let r = http()
        .delete(app.url(&format!("/api/v1/keys/{writer_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = get(&app, &writer, "/api/v1/contacts").await;
    assert_invalid_token(&app, &r);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("revoked"));
    // Expired.
    let (short, _) =
        key_with(&app, "contacts:read", |k| k.expires = Some(Expiry::In(Duration::hours(1)))).await;
    assert_eq!(get(&app, &short, "/api/v1/contacts").await.status(), StatusCode::OK);
    app.clock.advance(Duration::hours(1));
    assert_invalid_token(&app, &get(&app, &short, "/api/v1/contacts").await);
}

/// API key allowlists (IPv4 and IPv6), checked before any quota is spent. Trusted proxies let
/// the test speak for other addresses through `X-Forwarded-For`.
async fn allowlists(backend: Backend) {
    let opts = Options {
        settings: Some(Box::new(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])),
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await else { return };
    world(&app).await;
    let from = |cred: &str, ip: &str| {
        http().get(app.url("/api/v1/contacts")).bearer_auth(cred).header("x-forwarded-for", ip).send()
    };
    let (v4, _) = key_with(&app, "contacts:read", |k| {
        k.allow_cidrs = vec!["203.0.113.0/24".into()];
        k.rate_limit = Some("1/min".into());
    })
    .await;
    // Outside the allowlist: 401 with a structured body, and no quota spent.
    for _ in 0..3 {
        let r = from(&v4, "198.51.100.7").await.unwrap();
        assert_invalid_token(&app, &r);
        let body = json(r).await;
        assert_eq!(body["error"], "ip_not_allowed");
        assert_eq!(body["ip"], "198.51.100.7");
    }
    // Inside: the single request of the budget is still there.
    assert_eq!(from(&v4, "203.0.113.9").await.unwrap().status(), StatusCode::OK);
    assert_eq!(from(&v4, "203.0.113.9").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);

    let (v6, _) = key_with(&app, "contacts:read", |k| k.allow_cidrs = vec!["2001:db8:1::/48".into()]).await;
    assert_eq!(from(&v6, "2001:db8:1::5").await.unwrap().status(), StatusCode::OK);
    let r = from(&v6, "2001:db8:2::5").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(r).await["error"], "ip_not_allowed");
    let r = from(&v6, "203.0.113.9").await.unwrap();
    assert_eq!(json(r).await["error"], "ip_not_allowed", "an IPv4 caller is outside an IPv6 list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlists_sqlite() {
    allowlists(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlists_postgres() {
    allowlists(Backend::Postgres).await;
}

async fn oauth_tokens_follow_grants_and_permissions(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let t = tokens_for(&app, &w, &b, "contacts:read contacts:write").await;
    let at = s(&t, "access_token");
    let r = post(&app, &at, "/api/v1/contacts", json!({"name": "Linus"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_insufficient(&get(&app, &at, "/api/v1/messages").await, "messages:read");
    // The user loses contacts:write: the token loses it at once (same process) …
    app.add_member("acme", "ada@example.com", "contacts:read").await;
    assert_insufficient(&post(&app, &at, "/api/v1/contacts", json!({"name": "X"})).await, "contacts:write");
    assert_eq!(get(&app, &at, "/api/v1/contacts").await.status(), StatusCode::OK);
    // … and the grant revoked: the token stops working.
    let grant = crate::support::claims(&at)["grant_id"].as_str().unwrap().to_owned();
    app.revoke_grant(&grant).await;
    assert_invalid_token(&app, &get(&app, &at, "/api/v1/contacts").await);
    // Expired (15 min, 5 s leeway).
    app.add_member("acme", "ada@example.com", "contacts:read contacts:write").await;
    let at = s(&tokens_for(&app, &w, &browser(), "contacts:read").await, "access_token");
    app.clock.advance(Duration::minutes(15));
    assert_eq!(get(&app, &at, "/api/v1/contacts").await.status(), StatusCode::OK, "within the leeway");
    app.clock.advance(Duration::seconds(5));
    let r = get(&app, &at, "/api/v1/contacts").await;
    assert_invalid_token(&app, &r);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("expired"));
}

async fn client_and_service_tokens(app: TestApp) {
    let w = world(&app).await;
    let cc = crate::support::another_client(
        &app,
        &w,
        NewClient {
            name: "Backend".into(),
            scope: "contacts:read".into(),
            grant_types: vec!["client_credentials".into()],
            workspace: Some("acme".into()),
            ..Default::default()
        },
    )
    .await;
    let tok = |scope: &'static str| {
        http()
            .post(app.url("/oauth2/token"))
            .basic_auth(&cc.client_id, Some(&cc.secret))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
    };
    let at = s(&json(tok("contacts:read").await.unwrap()).await, "access_token");
    assert_eq!(get(&app, &at, "/api/v1/contacts").await.status(), StatusCode::OK);
    assert_insufficient(&post(&app, &at, "/api/v1/contacts", json!({"name": "X"})).await, "contacts:write");
    app.revoke_client(&cc.client_id).await;
    assert_invalid_token(&app, &get(&app, &at, "/api/v1/contacts").await);

    // Service tokens minted by an API key: scoped, and dead with the key.
    let (minter, minter_id) = key_with(&app, "tokens:mint flows:read flows:write", |_| {}).await;
    let st = s(
        &json(post(&app, &minter, "/api/v1/service-tokens", json!({"scope": "flows:read"})).await).await,
        "access_token",
    );
    assert_eq!(get(&app, &st, "/api/v1/flows").await.status(), StatusCode::OK);
    assert_insufficient(
        &post(&app, &st, "/api/v1/flows", json!({"name": "n", "steps": ["a"]})).await,
        "flows:write",
    );
    let admin = app.api_key("acme", "keys:manage").await;
    http().delete(app.url(&format!("/api/v1/keys/{minter_id}"))).bearer_auth(&admin).send().await.unwrap();
    assert_invalid_token(&app, &get(&app, &st, "/api/v1/flows").await);
    // Expired: 15 minutes by default.
    let (minter, _) = key_with(&app, "tokens:mint flows:read", |_| {}).await;
    let st = s(
        &json(
            post(&app, &minter, "/api/v1/service-tokens", json!({"scope": "flows:read", "ttl": "5m"})).await,
        )
        .await,
        "access_token",
    );
    app.clock.advance(Duration::minutes(5) + Duration::seconds(5));
    assert_invalid_token(&app, &get(&app, &st, "/api/v1/flows").await);
}

async fn workspaces_are_isolated(app: TestApp) {
    world(&app).await;
    app.create_workspace("globex").await;
    let a = app.api_key("acme", "contacts:read contacts:write contacts:delete").await;
    let b = app.api_key("globex", "contacts:read contacts:write contacts:delete").await;
    let c = json(post(&app, &a, "/api/v1/contacts", json!({"name": "Ada"})).await).await;
    let path = format!("/api/v1/contacts/{}", s(&c, "id"));
    assert_eq!(get(&app, &b, &path).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(get(&app, &b, "/api/v1/contacts").await).await["contacts"], json!([]));
    let r = http().delete(app.url(&path)).bearer_auth(&b).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&app, &a, &path).await.status(), StatusCode::OK, "still there");
}

/// A revocation written by another replica (here: straight into the store, bypassing this
/// process's cache) is seen once the cache TTL (5 s) has passed.
async fn other_replicas_revocations_arrive_within_the_cache_ttl(app: TestApp) {
    use portcullis_domain::Clock;
    use portcullis_store::ApiKeyStore;
    world(&app).await;
    let (key, id) = key_with(&app, "contacts:read", |_| {}).await;
    assert_eq!(get(&app, &key, "/api/v1/contacts").await.status(), StatusCode::OK);
    let now = app.clock.now();
    portcullis_server::with_store!(app.store(), |s| {
        assert!(s.revoke_api_key(&portcullis_domain::ApiKeyId::from_string(id.as_str()), now).await.unwrap());
    });
    assert_eq!(get(&app, &key, "/api/v1/contacts").await.status(), StatusCode::OK, "cached");
    app.clock.advance(Duration::seconds(5));
    assert_invalid_token(&app, &get(&app, &key, "/api/v1/contacts").await);
}

async fn reference_api_validates_input(app: TestApp) {
    world(&app).await;
    let all = "contacts:read contacts:write contacts:delete messages:read messages:write \
               broadcasts:read broadcasts:write flows:read flows:write flows:execute";
    let k = app.api_key("acme", all).await;
    for (body, why) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "A", "phone": "555-1234"}), "E.164"),
        (json!({"name": "A", "email": "nope"}), "email"),
        (json!({"name": "A", "colour": "red"}), "unknown field"),
    ] {
        let r = post(&app, &k, "/api/v1/contacts", body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(json(r).await["detail"].as_str().unwrap().contains(why));
    }
    let r = http().post(app.url("/api/v1/contacts")).bearer_auth(&k).body("name=A").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json(get(&app, &k, "/api/v1/contacts").await).await["contacts"], json!([]), "nothing written");

    let ann = json(
        post(&app, &k, "/api/v1/contacts", json!({"name": "Ann", "phone": "+14155550123", "tags": ["vip"]}))
            .await,
    )
    .await;
    let bob =
        json(post(&app, &k, "/api/v1/contacts", json!({"name": "Bob", "email": "BOB@example.com"})).await)
            .await;
    assert_eq!(bob["email"], "bob@example.com");
    // PATCH: absent fields stay, null clears.
    let path = format!("/api/v1/contacts/{}", s(&ann, "id"));
    let r = http()
        .patch(app.url(&path))
        .bearer_auth(&k)
        .json(&json!({"phone": null, "name": "Ann B"}))
        .send()
        .await
        .unwrap();
    let ann2 = json(r).await;
    assert_eq!(
        (ann2["name"].as_str(), ann2["phone"].is_null(), ann2["tags"].clone()),
        (Some("Ann B"), true, json!(["vip"]))
    );
    // Messages go where the contact can be reached.
    let r = post(&app, &k, "/api/v1/messages", json!({"contact_id": s(&ann, "id"), "body": "hi"})).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no phone any more");
    let m = json(
        post(
            &app,
            &k,
            "/api/v1/messages",
            json!({"contact_id": s(&bob, "id"), "body": "hi", "channel": "email"}),
        )
        .await,
    )
    .await;
    assert_eq!((m["to"].as_str(), m["status"].as_str()), (Some("bob@example.com"), Some("queued")));
    assert_eq!(json(get(&app, &k, "/api/v1/messages").await).await["messages"].as_array().unwrap().len(), 1);
    // Broadcasts count their recipients.
    let bc = json(
        post(&app, &k, "/api/v1/broadcasts", json!({"name": "Launch", "body": "Hello", "tag": "vip"})).await,
    )
    .await;
    assert_eq!(bc["recipients"], 1);
    let bc = json(post(&app, &k, "/api/v1/broadcasts", json!({"name": "All", "body": "Hello"})).await).await;
    assert_eq!(bc["recipients"], 2);
    // Flows: create, list, execute.
    let f = json(
        post(&app, &k, "/api/v1/flows", json!({"name": "Welcome", "steps": ["send greeting", "wait 1d"]}))
            .await,
    )
    .await;
    let run = post(
        &app,
        &k,
        &format!("/api/v1/flows/{}/execute", s(&f, "id")),
        json!({"contact_id": s(&bob, "id"), "input": {"plan": "pro"}}),
    )
    .await;
    assert_eq!(run.status(), StatusCode::CREATED);
    let run = json(run).await;
    assert_eq!((run["status"].as_str(), run["steps_completed"].as_u64()), (Some("completed"), Some(2)));
    let r = post(&app, &k, "/api/v1/flows/flw_nope/execute", json!({})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Paging.
    let p1 = json(get(&app, &k, "/api/v1/contacts?limit=1").await).await;
    assert_eq!(p1["contacts"].as_array().unwrap().len(), 1);
    let cursor = s(&p1, "next_cursor");
    let p2 = json(get(&app, &k, &format!("/api/v1/contacts?limit=1&after={cursor}")).await).await;
    assert_eq!(p2["contacts"][0]["id"], bob["id"]);
    assert!(p2["next_cursor"].is_null());
    assert_eq!(get(&app, &k, "/api/v1/contacts?limit=0").await.status(), StatusCode::BAD_REQUEST);
    // Delete.
    let r = http().delete(app.url(&path)).bearer_auth(&k).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&app, &k, &path).await.status(), StatusCode::NOT_FOUND);
}
