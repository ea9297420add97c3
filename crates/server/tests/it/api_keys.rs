//! API keys, bundles, service tokens and the admin API, through HTTP, on both backends.

use crate::support::{World, introspect, json, world};
use portcullis_core::api_keys::NewKey;
use portcullis_domain::{ApiKeySecret, KeyEnvironment};
use portcullis_testkit::{TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

const ADMIN: &str = "keys:manage tokens:mint contacts:read contacts:write";

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn get(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    http().get(app.url(path)).bearer_auth(key).send().await.unwrap()
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    http().post(app.url(path)).bearer_auth(key).json(&body).send().await.unwrap()
}

/// Asserts an RFC 9457 problem with `status` and `code`; returns the body.
async fn problem(r: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "about:blank");
    assert_eq!(v["status"], status.as_u16());
    assert_eq!(v["code"], code, "{v}");
    assert!(v["title"].is_string() && v["detail"].is_string(), "{v}");
    v
}

/// Workspace `acme` (with the support world's user and a confidential client, for
/// introspection) and an admin key of it.
async fn setup(app: &TestApp) -> (World, String) {
    let w = world(app).await;
    (w, app.api_key("acme", ADMIN).await)
}

async fn key_is_shown_once_and_verifiable_only_by_its_secret(app: TestApp) {
    let (_, admin) = setup(&app).await;
    let r = post(&app, &admin, "/api/v1/keys", json!({"name": "billing", "scopes": ["contacts:read"]})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let created = json(r).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pcl_live_"), "{secret}");
    assert!(ApiKeySecret::parse(&secret).is_ok());
    assert_eq!(created["prefix"], secret[..13]);
    assert_eq!(created["scopes"], json!(["contacts:read"]));
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("key_"));

    // The secret never appears again: not in show, list, nor the event record.
    for path in [format!("/api/v1/keys/{id}"), "/api/v1/keys".into(), "/api/v1/events".into()] {
        let body = get(&app, &admin, &path).await.text().await.unwrap();
        assert!(body.contains(&id), "{path}: {body}");
        assert!(!body.contains(&secret[13..]), "{path} shows the secret");
    }

    // The key works by its secret…
    let ws = json(get(&app, &secret, "/api/v1/workspace").await).await;
    assert_eq!(ws["slug"], "acme");
    // …and a well-formed key that was never issued does not.
    let forged = ApiKeySecret::generate(KeyEnvironment::Live);
    let v = problem(
        get(&app, forged.expose(), "/api/v1/workspace").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(v["detail"], "the API key is invalid");
    let r = get(&app, forged.expose(), "/api/v1/workspace").await;
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );

    // Without credentials: a bare challenge (RFC 6750 §3.1).
    let r = http().get(app.url("/api/v1/workspace")).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="portcullis""#);
    problem(r, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // A key of the other environment is refused before any lookup.
    let test_key = ApiKeySecret::generate(KeyEnvironment::Test);
    let v = problem(
        get(&app, test_key.expose(), "/api/v1/workspace").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert!(v["detail"].as_str().unwrap().contains("another environment"), "{v}");
}

async fn checksum_rejects_a_mistyped_key_without_a_lookup(app: TestApp) {
    let (_, admin) = setup(&app).await;
    let mut typo = admin.clone().into_bytes();
    let i = 20;
    typo[i] = if typo[i] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    let truncated = &admin[..admin.len() - 1];

    // Take the key table away: any lookup would now fail with a server error.
    {
        use portcullis_server::backend::Backend as B;
        use portcullis_store_sql::sqlx;
        match app.store() {
            B::Sqlite(s) => sqlx::query("DROP TABLE api_keys").execute(s.pool()).await.map(|_| ()),
            B::Postgres(s) => sqlx::query("DROP TABLE api_keys").execute(s.pool()).await.map(|_| ()),
        }
        .unwrap();
    }
    for bad in [typo.as_str(), truncated] {
        let v = problem(get(&app, bad, "/api/v1/workspace").await, StatusCode::UNAUTHORIZED, "invalid_token")
            .await;
        assert!(v["detail"].as_str().unwrap().contains("checksum"), "{v}");
    }
    // The well-formed key does reach the (now missing) table.
    problem(get(&app, &admin, "/api/v1/workspace").await, StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        .await;
}

async fn rotation_keeps_the_old_secret_for_the_grace_period(app: TestApp) {
    let (_, admin) = setup(&app).await;
    let created =
        json(post(&app, &admin, "/api/v1/keys", json!({"name": "ci", "scopes": ["contacts:read"]})).await)
            .await;
    let (id, old) =
        (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned());

    let r = post(&app, &admin, &format!("/api/v1/keys/{id}/rotate"), json!({"grace": "7d"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = json(r).await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(rotated["id"], id.as_str(), "rotation keeps the id");
    assert_ne!(new, old);
    assert!(rotated["previous_secret_expires_at"].is_string());

    assert_eq!(get(&app, &old, "/api/v1/workspace").await.status(), StatusCode::OK);
    assert_eq!(get(&app, &new, "/api/v1/workspace").await.status(), StatusCode::OK);
    app.clock.advance(Duration::days(7) - Duration::seconds(1));
    assert_eq!(get(&app, &old, "/api/v1/workspace").await.status(), StatusCode::OK);
    app.clock.advance(Duration::seconds(1));
    let v =
        problem(get(&app, &old, "/api/v1/workspace").await, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert!(v["detail"].as_str().unwrap().contains("grace period has ended"), "{v}");
    assert_eq!(get(&app, &new, "/api/v1/workspace").await.status(), StatusCode::OK);

    // No body means no grace: the replaced secret stops at once.
    let r =
        http().post(app.url(&format!("/api/v1/keys/{id}/rotate"))).bearer_auth(&admin).send().await.unwrap();
    let newest = json(r).await["secret"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, &new, "/api/v1/workspace").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&app, &newest, "/api/v1/workspace").await.status(), StatusCode::OK);

    // Grace is at most 30 days, and never outlives the key.
    let bad = post(&app, &admin, &format!("/api/v1/keys/{id}/rotate"), json!({"grace": "31d"})).await;
    problem(bad, StatusCode::BAD_REQUEST, "invalid_request").await;
    let short = json(
        post(
            &app,
            &admin,
            "/api/v1/keys",
            json!({"name": "short", "scopes": ["contacts:read"], "expires_in": "1d"}),
        )
        .await,
    )
    .await;
    let r = post(
        &app,
        &admin,
        &format!("/api/v1/keys/{}/rotate", short["id"].as_str().unwrap()),
        json!({"grace": "30d"}),
    )
    .await;
    let v = json(r).await;
    assert_eq!(v["previous_secret_expires_at"], short["expires_at"], "grace ends with the key");
}

async fn expiry_and_revocation(app: TestApp) {
    let (w, admin) = setup(&app).await;
    let k = json(
        post(
            &app,
            &admin,
            "/api/v1/keys",
            json!({"name": "temp", "scopes": ["contacts:read"], "expires_in": "1h"}),
        )
        .await,
    )
    .await;
    let secret = k["secret"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, &secret, "/api/v1/workspace").await.status(), StatusCode::OK);
    app.clock.advance(Duration::hours(1));
    let v = problem(get(&app, &secret, "/api/v1/workspace").await, StatusCode::UNAUTHORIZED, "invalid_token")
        .await;
    assert_eq!(v["detail"], "the API key expired");
    let shown = json(get(&app, &admin, &format!("/api/v1/keys/{}", k["id"].as_str().unwrap())).await).await;
    assert_eq!(shown["status"], "expired");

    let past = post(
        &app,
        &admin,
        "/api/v1/keys",
        json!({"name": "x", "scopes": ["contacts:read"], "expires_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    problem(past, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Revocation is immediate, and ends service tokens the key minted.
    let minter = json(
        post(
            &app,
            &admin,
            "/api/v1/keys",
            json!({"name": "minter", "scopes": ["tokens:mint", "contacts:read"]}),
        )
        .await,
    )
    .await;
    let minter_secret = minter["secret"].as_str().unwrap().to_owned();
    let t =
        json(post(&app, &minter_secret, "/api/v1/service-tokens", json!({"scope": "contacts:read"})).await)
            .await;
    assert_eq!(introspect(&app, &w, t["access_token"].as_str().unwrap()).await["active"], true);
    let r = http()
        .delete(app.url(&format!("/api/v1/keys/{}", minter["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["status"], "revoked");
    let v = problem(
        get(&app, &minter_secret, "/api/v1/workspace").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(v["detail"], "the API key was revoked");
    assert_eq!(introspect(&app, &w, t["access_token"].as_str().unwrap()).await["active"], false);
    let again = http()
        .delete(app.url(&format!("/api/v1/keys/{}", minter["id"].as_str().unwrap())))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    problem(again, StatusCode::CONFLICT, "conflict").await;
}

async fn unknown_scopes_and_wildcards_are_rejected(app: TestApp) {
    let (_, admin) = setup(&app).await;
    for scopes in [json!(["contacts:*"]), json!(["*"]), json!(["nope:read"]), json!([]), json!(["openid"])] {
        let before = json(get(&app, &admin, "/api/v1/keys").await).await;
        let r = post(&app, &admin, "/api/v1/keys", json!({"name": "bad", "scopes": scopes})).await;
        problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert_eq!(json(get(&app, &admin, "/api/v1/keys").await).await, before, "nothing was written");
    }
    for body in [
        json!({"name": "x", "scopes": ["contacts:read"], "allowed_cidrs": ["10.0.0.0/33"]}),
        json!({"name": "x", "scopes": ["contacts:read"], "rate_limit": "lots"}),
        json!({"name": "x", "scopes": ["contacts:read"], "metadata": [1]}),
        json!({"name": "x", "scopes": ["contacts:read"], "sopes": ["typo"]}),
        json!({"name": "", "scopes": ["contacts:read"]}),
    ] {
        problem(post(&app, &admin, "/api/v1/keys", body).await, StatusCode::BAD_REQUEST, "invalid_request")
            .await;
    }
    let r = http().post(app.url("/api/v1/keys")).bearer_auth(&admin).body("name=x").send().await.unwrap();
    problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request").await;

    // A key never hands out scopes it does not hold.
    let r = post(&app, &admin, "/api/v1/keys", json!({"name": "x", "scopes": ["members:manage"]})).await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // And without keys:manage the whole area is closed.
    let reader = app.api_key("acme", "contacts:read").await;
    let r = get(&app, &reader, "/api/v1/keys").await;
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer realm="portcullis", error="insufficient_scope", scope="keys:manage""#
    );
    problem(r, StatusCode::FORBIDDEN, "insufficient_scope").await;
}

async fn bundles_expand_at_creation(app: TestApp) {
    let (_, admin) = setup(&app).await;
    let r = post(
        &app,
        &admin,
        "/api/v1/bundles",
        json!({"name": "Support Read-only", "scopes": ["contacts:read"], "description": "support"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let dup = post(
        &app,
        &admin,
        "/api/v1/bundles",
        json!({"name": "Support Read-only", "scopes": ["contacts:read"]}),
    )
    .await;
    problem(dup, StatusCode::CONFLICT, "conflict").await;
    problem(
        post(&app, &admin, "/api/v1/bundles", json!({"name": "wild", "scopes": ["contacts:*"]})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;

    let k1 =
        json(post(&app, &admin, "/api/v1/keys", json!({"name": "k1", "bundle": "Support Read-only"})).await)
            .await;
    assert_eq!(k1["scopes"], json!(["contacts:read"]));
    assert_eq!(k1["bundle"], "Support Read-only");
    let k2 = json(
        post(
            &app,
            &admin,
            "/api/v1/keys",
            json!({"name": "k2", "bundle": "Support Read-only", "scopes": ["tokens:mint"]}),
        )
        .await,
    )
    .await;
    assert_eq!(k2["scopes"], json!(["contacts:read", "tokens:mint"]), "bundle and explicit scopes combine");

    let r = http()
        .put(app.url("/api/v1/bundles/Support%20Read-only"))
        .bearer_auth(&admin)
        .json(&json!({"scopes": ["contacts:read", "contacts:write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["scopes"], json!(["contacts:read", "contacts:write"]));
    let k1_now = json(get(&app, &admin, &format!("/api/v1/keys/{}", k1["id"].as_str().unwrap())).await).await;
    assert_eq!(k1_now["scopes"], json!(["contacts:read"]), "existing keys are not widened");
    let k3 =
        json(post(&app, &admin, "/api/v1/keys", json!({"name": "k3", "bundle": "Support Read-only"})).await)
            .await;
    assert_eq!(k3["scopes"], json!(["contacts:read", "contacts:write"]));

    let missing = post(&app, &admin, "/api/v1/keys", json!({"name": "k4", "bundle": "Nope"})).await;
    problem(missing, StatusCode::NOT_FOUND, "not_found").await;
    let list = json(get(&app, &admin, "/api/v1/bundles").await).await;
    assert_eq!(list["bundles"].as_array().unwrap().len(), 1);
    let r = http()
        .delete(app.url("/api/v1/bundles/Support%20Read-only"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

async fn service_tokens_are_bounded_and_recorded(app: TestApp) {
    let (w, admin) = setup(&app).await;
    let ok =
        post(&app, &admin, "/api/v1/service-tokens", json!({"scope": "contacts:read", "ttl": "15m"})).await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    let t = json(ok).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert_eq!(t["scope"], "contacts:read");
    let token = t["access_token"].as_str().unwrap().to_owned();
    let claims = crate::support::claims(&token);
    assert_eq!(claims["token_use"], "service");
    assert!(claims["minted_by"].as_str().unwrap().starts_with("key_"));
    assert_eq!(claims["workspace_id"], w.workspace_id);
    let i = introspect(&app, &w, &token).await;
    assert_eq!((i["active"].clone(), i["token_use"].clone()), (json!(true), json!("service")));

    // The service token works on the admin API with its own scopes only.
    assert_eq!(get(&app, &token, "/api/v1/workspace").await.status(), StatusCode::OK);
    problem(get(&app, &token, "/api/v1/keys").await, StatusCode::FORBIDDEN, "insufficient_scope").await;
    // It cannot mint further tokens: minting needs an API key.
    problem(
        post(&app, &token, "/api/v1/service-tokens", json!({"scope": "contacts:read"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    for (ttl, good) in [
        (json!("4m"), false),
        (json!(299), false),
        (json!(300), true),
        (json!("60m"), true),
        (json!("61m"), false),
    ] {
        let r =
            post(&app, &admin, "/api/v1/service-tokens", json!({"scope": "contacts:read", "ttl": ttl})).await;
        if good {
            assert_eq!(r.status(), StatusCode::CREATED, "{ttl}");
        } else {
            problem(r, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
    }
    // Scopes ⊆ the key's scopes.
    let r = post(&app, &admin, "/api/v1/service-tokens", json!({"scope": "contacts:delete"})).await;
    problem(r, StatusCode::FORBIDDEN, "forbidden").await;
    // The key needs tokens:mint.
    let reader = app.api_key("acme", "contacts:read").await;
    let r = post(&app, &reader, "/api/v1/service-tokens", json!({"scope": "contacts:read"})).await;
    problem(r, StatusCode::FORBIDDEN, "insufficient_scope").await;

    // Expires on time.
    app.clock.advance(Duration::minutes(15));
    assert_eq!(introspect(&app, &w, &token).await["active"], false);

    // Every mint is an event, with the jti and never the token.
    let events = json(get(&app, &admin, "/api/v1/events?limit=100").await).await;
    let mints: Vec<&Value> =
        events["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "service_token.minted").collect();
    assert_eq!(mints.len(), 3);
    assert!(mints.iter().any(|e| e["subject"] == claims["jti"]));
    assert!(!events.to_string().contains(&token));
    assert_eq!(mints[0]["detail"]["via"], "api_key");
    assert_eq!(mints[0]["ip"], "127.0.0.1");
    problem(get(&app, &admin, "/api/v1/events?limit=0").await, StatusCode::BAD_REQUEST, "invalid_request")
        .await;
}

async fn cidr_allowlist_rate_limit_and_usage(app: TestApp) {
    app.create_workspace("acme").await;
    let far = NewKey {
        name: "office".into(),
        scope: Some("contacts:read".into()),
        allow_cidrs: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
        ..Default::default()
    };
    let far = app.create_key("acme", far).await.secret.expose().to_owned();
    // As on every guarded route: 401 ip_not_allowed, with the address it came from.
    let v =
        problem(get(&app, &far, "/api/v1/workspace").await, StatusCode::UNAUTHORIZED, "ip_not_allowed").await;
    assert_eq!(v["detail"], "this API key may not be used from 127.0.0.1");
    let near = NewKey {
        name: "local".into(),
        scope: Some("contacts:read".into()),
        allow_cidrs: vec!["127.0.0.0/8".into()],
        rate_limit: Some("2/min".into()),
        ..Default::default()
    };
    let issued = app.create_key("acme", near).await;
    let near = issued.secret.expose().to_owned();
    assert_eq!(get(&app, &near, "/api/v1/workspace").await.status(), StatusCode::OK);
    assert_eq!(get(&app, &near, "/api/v1/workspace").await.status(), StatusCode::OK);
    let r = get(&app, &near, "/api/v1/workspace").await;
    let retry: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    problem(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    app.clock.advance(Duration::seconds(retry));
    assert_eq!(get(&app, &near, "/api/v1/workspace").await.status(), StatusCode::OK);

    // Usage is written in batches, not on every request.
    let admin = app.api_key("acme", "keys:manage").await;
    let path = format!("/api/v1/keys/{}", issued.key.id);
    assert_eq!(json(get(&app, &admin, &path).await).await["last_used_at"], Value::Null);
    app.flush_key_usage().await;
    let shown = json(get(&app, &admin, &path).await).await;
    assert!(shown["last_used_at"].is_string());
    assert_eq!(shown["last_used_ip"], "127.0.0.1");
}

async fn workspaces_are_isolated(app: TestApp) {
    let (w, admin) = setup(&app).await;
    app.create_workspace("other").await;
    let other = app.api_key("other", "keys:manage apps:manage").await;
    let mine =
        json(post(&app, &admin, "/api/v1/keys", json!({"name": "mine", "scopes": ["contacts:read"]})).await)
            .await;
    let id = mine["id"].as_str().unwrap();
    problem(get(&app, &other, &format!("/api/v1/keys/{id}")).await, StatusCode::NOT_FOUND, "not_found").await;
    let r = http().delete(app.url(&format!("/api/v1/keys/{id}"))).bearer_auth(&other).send().await.unwrap();
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(json(get(&app, &admin, &format!("/api/v1/keys/{id}")).await).await["status"], "active");
    let theirs = json(get(&app, &other, "/api/v1/keys").await).await;
    assert!(!theirs.to_string().contains(id));
    // Clients of another workspace are not this workspace's to see.
    let r = get(&app, &other, &format!("/api/v1/clients/{}", w.client_id)).await;
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
    problem(get(&app, &admin, "/api/v1/nope").await, StatusCode::NOT_FOUND, "not_found").await;
}

async fn clients_grants_and_members_through_the_api(app: TestApp) {
    setup(&app).await;
    app.create_user("bob@example.com", crate::support::PASSWORD).await;
    let apps = app.api_key("acme", "apps:manage members:manage").await;
    let r = post(
        &app,
        &apps,
        "/api/v1/clients",
        json!({"name": "Worker", "scopes": ["contacts:read"], "grant_types": ["client_credentials"]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let c = json(r).await;
    assert!(c["client_secret"].as_str().unwrap().starts_with("pcl_cs_"));
    let ws = json(get(&app, &apps, "/api/v1/workspace").await).await;
    assert_eq!(c["workspace_id"], ws["id"], "API-created clients belong to the workspace");
    assert_eq!(c["origin"], "admin");
    assert_eq!(c["require_pushed_authorization_requests"], false);
    assert_eq!(c["dpop_bound_access_tokens"], false);
    assert!(c["last_used_at"].is_null(), "no token issued yet");
    let list = json(get(&app, &apps, "/api/v1/clients").await).await;
    assert_eq!(list["clients"].as_array().unwrap().len(), 1);
    // The client view shows the flags it was created with.
    let strict = json(
        post(
            &app,
            &apps,
            "/api/v1/clients",
            json!({"name": "Strict", "scopes": ["contacts:read"], "grant_types": ["client_credentials"],
                   "require_pushed_authorization_requests": true, "dpop_bound_access_tokens": true}),
        )
        .await,
    )
    .await;
    let shown =
        json(get(&app, &apps, &format!("/api/v1/clients/{}", strict["client_id"].as_str().unwrap())).await)
            .await;
    assert_eq!(shown["require_pushed_authorization_requests"], true);
    assert_eq!(shown["dpop_bound_access_tokens"], true);
    assert_eq!(shown["origin"], "admin");
    let manage = post(
        &app,
        &apps,
        "/api/v1/clients",
        json!({"name": "Bad", "scopes": ["keys:manage"], "grant_types": ["client_credentials"]}),
    )
    .await;
    problem(manage, StatusCode::BAD_REQUEST, "invalid_request").await;
    let id = c["client_id"].as_str().unwrap();
    let rotated =
        json(post(&app, &apps, &format!("/api/v1/clients/{id}/rotate-secret"), json!({"grace": "1h"})).await)
            .await;
    assert_ne!(rotated["client_secret"], c["client_secret"]);
    let r = http().delete(app.url(&format!("/api/v1/clients/{id}"))).bearer_auth(&apps).send().await.unwrap();
    assert!(json(r).await["revoked_at"].is_string());

    let r = http()
        .put(app.url("/api/v1/members/bob@example.com"))
        .bearer_auth(&apps)
        .json(&json!({"permissions": ["contacts:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["permissions"], json!(["contacts:read"]));
    assert_eq!(json(get(&app, &apps, "/api/v1/members").await).await["members"].as_array().unwrap().len(), 2);
    let r =
        http().delete(app.url("/api/v1/members/bob@example.com")).bearer_auth(&apps).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r =
        http().delete(app.url("/api/v1/members/bob@example.com")).bearer_auth(&apps).send().await.unwrap();
    problem(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(json(get(&app, &apps, "/api/v1/grants").await).await["grants"], json!([]));
}

async fn openapi_document_matches_the_router(app: TestApp) {
    let r = http().get(app.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc = json(r).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = doc["paths"].as_object().unwrap();
    for p in ["/api/v1/keys", "/api/v1/keys/{id}/rotate", "/api/v1/service-tokens", "/api/v1/bundles/{name}"]
    {
        assert!(paths.contains_key(p), "{p} documented");
    }
    let mut n = 0;
    for (path, ops) in paths {
        let concrete = path.replace("{id}", "x").replace("{name}", "x").replace("{email}", "x@example.com");
        for method in ops.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http().request(m, app.url(&concrete)).send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} is routed and needs credentials"
            );
            n += 1;
        }
    }
    assert!(n >= 25, "{n} operations");
    let r = http().patch(app.url("/api/v1/keys")).send().await.unwrap();
    problem(r, StatusCode::METHOD_NOT_ALLOWED, "invalid_request").await;
}

both_backends!(
    key_is_shown_once_and_verifiable_only_by_its_secret,
    checksum_rejects_a_mistyped_key_without_a_lookup,
    rotation_keeps_the_old_secret_for_the_grace_period,
    expiry_and_revocation,
    unknown_scopes_and_wildcards_are_rejected,
    bundles_expand_at_creation,
    service_tokens_are_bounded_and_recorded,
    cidr_allowlist_rate_limit_and_usage,
    workspaces_are_isolated,
    clients_grants_and_members_through_the_api,
    openapi_document_matches_the_router,
);
