//! Dynamic client registration (RFC 7591) and management (RFC 7592): a self-registered public
//! client completing the code flow, every metadata rejection, deduplication, the per-address
//! rate limit, the initial-access-token policy, reclamation, and registration turned off.

use crate::support::{Authz, PASSWORD, browser, hidden, json, location, options, query, s, world};
use portcullis_core::oauth::registration::RegistrationMode;
use portcullis_testkit::{Backend, Options, TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(
    a_registered_public_client_completes_the_code_flow,
    registration_is_managed_with_its_access_token,
    bad_metadata_is_refused_and_nothing_is_stored,
    identical_registrations_return_the_existing_client,
    unused_registrations_are_reclaimed
);

const LOOPBACK: &str = "http://127.0.0.1:33418/callback";

async fn register_from(app: &TestApp, body: &Value, from: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().post(app.url("/oauth2/register")).json(body);
    if let Some(ip) = from {
        r = r.header("x-forwarded-for", ip);
    }
    r.send().await.unwrap()
}

async fn register(app: &TestApp, body: &Value) -> reqwest::Response {
    register_from(app, body, None).await
}

fn mcp_client() -> Value {
    json!({
        "client_name": "Claude Desktop",
        "redirect_uris": [LOOPBACK],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "contacts:read offline_access"
    })
}

async fn spawn(
    backend: Backend,
    f: impl FnOnce(&mut portcullis_core::Settings) + Send + 'static,
) -> Option<TestApp> {
    let opts = Options {
        settings: Some(Box::new(move |s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            f(s)
        })),
        ..Default::default()
    };
    TestApp::spawn_with(backend, opts).await
}

async fn a_registered_public_client_completes_the_code_flow(app: TestApp) {
    world(&app).await;
    let m: Value =
        reqwest::get(app.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    assert_eq!(m["registration_endpoint"], app.url("/oauth2/register"));

    // Browsers may register (CORS, no credentials).
    let pre = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, app.url("/oauth2/register"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");

    let r = register(&app, &mcp_client()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let c = json(r).await;
    let id = s(&c, "client_id");
    assert!(c.get("client_secret").is_none(), "a public client gets no secret");
    assert_eq!(c["token_endpoint_auth_method"], "none");
    assert_eq!(c["application_type"], "native", "loopback redirect URIs make it a native app");
    assert_eq!(c["redirect_uris"], json!([LOOPBACK]));
    assert_eq!(c["scope"], "contacts:read offline_access");
    assert_eq!(c["registration_client_uri"], app.url(&format!("/oauth2/register/{id}")));
    assert!(s(&c, "registration_access_token").starts_with("pcl_rat_"));
    assert!(c["client_id_issued_at"].is_i64());

    // The code flow with PKCE; the consent page says the app is unverified and names the host.
    let b = browser();
    let mut a = Authz::new(&id, "contacts:read offline_access").with("resource", &app.url("/mcp"));
    a.redirect_uri = Some(LOOPBACK.into());
    let r = b.get(a.url(&app)).send().await.unwrap();
    let r = crate::support::sign_in(&app, &b, &location(r.headers()), "ada@example.com", PASSWORD).await;
    let consent = location(r.headers());
    let html = b.get(app.url(&consent)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Unverified app") && html.contains("<code>127.0.0.1</code>"), "{html}");
    let r = b
        .post(app.url("/consent"))
        .form(&[
            ("csrf", hidden(&html, "csrf").as_str()),
            ("req", &hidden(&html, "req")),
            ("workspace", &options(&html)[0]),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    let callback = location(r.headers());
    assert!(callback.starts_with(LOOPBACK), "{callback}");
    let code = query(&callback)["code"].clone();
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", &id),
            ("code", &code),
            ("redirect_uri", LOOPBACK),
            ("code_verifier", &a.verifier),
            ("resource", &app.url("/mcp")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t = json(r).await;
    assert_eq!(crate::support::claims(&s(&t, "access_token"))["aud"], app.url("/mcp"));
    assert!(t["refresh_token"].is_string());
}

async fn registration_is_managed_with_its_access_token(app: TestApp) {
    let body = json!({
        "client_name": "Acme Sync",
        "redirect_uris": ["https://sync.example/cb"],
        "client_uri": "https://sync.example",
        "contacts": ["ops@sync.example"],
    });
    let r = register(&app, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let c = json(r).await;
    let (id, secret, rat) = (s(&c, "client_id"), s(&c, "client_secret"), s(&c, "registration_access_token"));
    assert_eq!(c["token_endpoint_auth_method"], "client_secret_basic", "the RFC 7591 default");
    assert_eq!(c["client_secret_expires_at"], 0);
    assert_eq!(c["application_type"], "web");
    assert_eq!(c["grant_types"], json!(["authorization_code"]));
    let uri = s(&c, "registration_client_uri");
    let http = reqwest::Client::new();

    // Read.
    let r = http.get(&uri).bearer_auth(&rat).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got = json(r).await;
    assert_eq!(got["client_name"], "Acme Sync");
    assert_eq!(got["contacts"], json!(["ops@sync.example"]));
    assert!(got.get("client_secret").is_none());
    for bad in [None, Some("pcl_rat_wrong")] {
        let mut req = http.get(&uri);
        if let Some(t) = bad {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    }
    // Another client's token does not open this one.
    let other = json(register(&app, &json!({"redirect_uris": ["https://other.example/cb"]})).await).await;
    let r = http.get(&uri).bearer_auth(s(&other, "registration_access_token")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Update: the whole metadata, with the client_id; what is omitted takes its default.
    let mut update =
        json!({"client_id": id, "client_name": "Acme Sync 2", "redirect_uris": ["https://sync.example/cb2"]});
    let r = http.put(&uri).bearer_auth(&rat).json(&update).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got = json(r).await;
    assert_eq!(got["client_name"], "Acme Sync 2");
    assert_eq!(got["redirect_uris"], json!(["https://sync.example/cb2"]));
    assert!(got.get("client_uri").is_none());
    for (patch, code) in [
        (json!({"client_id": null}), "invalid_request"),
        (json!({"client_id": "someone-else"}), "invalid_request"),
        (json!({"token_endpoint_auth_method": "none"}), "invalid_client_metadata"),
        (json!({"client_secret": "pcl_cs_wrong"}), "invalid_client_metadata"),
        (json!({"registration_access_token": rat}), "invalid_client_metadata"),
        (json!({"redirect_uris": ["http://sync.example/cb"]}), "invalid_redirect_uri"),
    ] {
        let mut body = update.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = http.put(&uri).bearer_auth(&rat).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{patch}");
        assert_eq!(s(&json(r).await, "error"), code, "{patch}");
    }
    update["client_secret"] = json!(secret);
    assert_eq!(http.put(&uri).bearer_auth(&rat).json(&update).send().await.unwrap().status(), StatusCode::OK);

    // The secret works at the token endpoint until the client is deleted.
    let introspect =
        || http.post(app.url("/oauth2/revoke")).basic_auth(&id, Some(&secret)).form(&[("token", "x")]).send();
    assert_eq!(introspect().await.unwrap().status(), StatusCode::OK);
    let r = http.delete(&uri).bearer_auth(&rat).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(http.get(&uri).bearer_auth(&rat).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(introspect().await.unwrap().status(), StatusCode::UNAUTHORIZED, "a deleted client is gone");
    assert_eq!(http.delete(&uri).bearer_auth(&rat).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

async fn bad_metadata_is_refused_and_nothing_is_stored(app: TestApp) {
    let before = app.store_client_count().await;
    let base = mcp_client();
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("redirect_uris", json!(["http://evil.example/cb"])), "invalid_redirect_uri"),
        (with("redirect_uris", json!(["https://app.example/cb#x"])), "invalid_redirect_uri"),
        (with("redirect_uris", json!(["com.example.app:/cb"])), "invalid_redirect_uri"),
        (with("redirect_uris", json!(["javascript:alert(1)"])), "invalid_redirect_uri"),
        (with("redirect_uris", json!([])), "invalid_redirect_uri"),
        (with("application_type", json!("web")), "invalid_redirect_uri"),
        (with("application_type", json!("desktop")), "invalid_client_metadata"),
        (with("grant_types", json!(["implicit"])), "invalid_client_metadata"),
        (with("grant_types", json!(["client_credentials"])), "invalid_client_metadata"),
        (with("grant_types", json!(["refresh_token"])), "invalid_client_metadata"),
        (with("response_types", json!(["token"])), "invalid_client_metadata"),
        (with("response_types", json!([])), "invalid_client_metadata"),
        (with("token_endpoint_auth_method", json!("private_key_jwt")), "invalid_client_metadata"),
        (with("scope", json!("apps:manage")), "invalid_client_metadata"),
        (with("scope", json!("contacts:read nonsense")), "invalid_client_metadata"),
        (with("client_uri", json!("javascript:alert(1)")), "invalid_client_metadata"),
        (with("client_name", json!("x".repeat(101))), "invalid_client_metadata"),
        (with("redirect_uris", json!("https://app.example/cb")), "invalid_client_metadata"),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ];
    for (body, code) in &cases {
        let r = register(&app, body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(s(&json(r).await, "error"), *code, "{body}");
    }
    for (ct, raw) in
        [("application/json", "{not json"), ("application/x-www-form-urlencoded", "client_name=x")]
    {
        let r = reqwest::Client::new()
            .post(app.url("/oauth2/register"))
            .header("content-type", ct)
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{ct}");
        assert_eq!(s(&json(r).await, "error"), "invalid_client_metadata");
    }
    assert_eq!(app.store_client_count().await, before, "no client was created");
}

async fn identical_registrations_return_the_existing_client(plain: TestApp) {
    let backend = plain.backend;
    drop(plain);
    let Some(app) = spawn(backend, |s| {
        s.registration.rate_limit = portcullis_domain::RateLimit::parse("3/hour").unwrap();
    })
    .await
    else {
        return;
    };
    let http = reqwest::Client::new();
    let first = json(register_from(&app, &mcp_client(), Some("203.0.113.7")).await).await;
    let again = register_from(&app, &mcp_client(), Some("203.0.113.7")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let again = json(again).await;
    assert_eq!(again["client_id"], first["client_id"], "the same client");
    assert_ne!(again["registration_access_token"], first["registration_access_token"], "a fresh token");
    let uri = s(&first, "registration_client_uri");
    let old = http.get(&uri).bearer_auth(s(&first, "registration_access_token")).send().await.unwrap();
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED, "the earlier token was replaced");
    let new = http.get(&uri).bearer_auth(s(&again, "registration_access_token")).send().await.unwrap();
    assert_eq!(new.status(), StatusCode::OK);

    // Another address, other metadata, or a confidential client: new clients.
    let elsewhere = json(register_from(&app, &mcp_client(), Some("198.51.100.9")).await).await;
    assert_ne!(elsewhere["client_id"], first["client_id"]);
    let mut renamed = mcp_client();
    renamed["client_name"] = json!("Claude Code");
    let other = json(register_from(&app, &renamed, Some("203.0.113.7")).await).await;
    assert_ne!(other["client_id"], first["client_id"]);

    // The address's budget (3/hour) is spent by the first, the renamed and... this one.
    let conf = json!({"redirect_uris": ["https://app.example/cb"]});
    let c1 = register_from(&app, &conf, Some("203.0.113.7")).await;
    assert_eq!(c1.status(), StatusCode::CREATED);
    let c2 = register_from(&app, &conf, Some("203.0.113.7")).await;
    assert_eq!(c2.status(), StatusCode::TOO_MANY_REQUESTS, "confidential clients are never deduplicated");
    assert!(c2.headers().contains_key("retry-after"));
    assert_eq!(s(&json(c2).await, "error"), "temporarily_unavailable");
    // A retry of an existing registration is still answered; other addresses are not affected.
    let retry = register_from(&app, &mcp_client(), Some("203.0.113.7")).await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(json(retry).await["client_id"], first["client_id"]);
    assert_eq!(register_from(&app, &conf, Some("192.0.2.1")).await.status(), StatusCode::CREATED);

    // After the dedup window the same registration makes a new client.
    app.clock.advance(time::Duration::minutes(11));
    let later = json(register_from(&app, &mcp_client(), Some("198.51.100.9")).await).await;
    assert_ne!(later["client_id"], elsewhere["client_id"]);
}

async fn unused_registrations_are_reclaimed(app: TestApp) {
    world(&app).await;
    let unused = json(register(&app, &mcp_client()).await).await;
    let mut used_meta = mcp_client();
    used_meta["client_name"] = json!("Used");
    let used = json(register(&app, &used_meta).await).await;
    let used_id = s(&used, "client_id");
    // Used: a token is issued through the whole flow.
    let b = browser();
    let mut a = Authz::new(&used_id, "contacts:read");
    a.redirect_uri = Some(LOOPBACK.into());
    let callback = crate::support::authorize(&app, &b, &a).await;
    let code = query(&callback)["code"].clone();
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", used_id.as_str()),
            ("code", &code),
            ("redirect_uri", LOOPBACK),
            ("code_verifier", &a.verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    app.clock.advance(time::Duration::days(31));
    assert_eq!(app.reclaim_clients(time::Duration::days(30)).await, 1);
    let http = reqwest::Client::new();
    let gone = http
        .get(s(&unused, "registration_client_uri"))
        .bearer_auth(s(&unused, "registration_access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::UNAUTHORIZED);
    let kept = http
        .get(s(&used, "registration_client_uri"))
        .bearer_auth(s(&used, "registration_access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), StatusCode::OK);
}

async fn policies(backend: Backend) {
    // Initial access token required.
    let Some(app) = spawn(backend, |s| s.registration.mode = RegistrationMode::InitialAccessToken).await
    else {
        return;
    };
    app.create_workspace("acme").await;
    let http = reqwest::Client::new();
    let r = http.post(app.url("/oauth2/register")).json(&mcp_client()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let weak = app.api_key("acme", "contacts:read").await;
    let r =
        http.post(app.url("/oauth2/register")).bearer_auth(&weak).json(&mcp_client()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    let r = http
        .post(app.url("/oauth2/register"))
        .bearer_auth("pcl_live_notarealkeynotarealkeynotarealk000000")
        .json(&mcp_client())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let admin = app.api_key("acme", "apps:manage").await;
    let r =
        http.post(app.url("/oauth2/register")).bearer_auth(&admin).json(&mcp_client()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    drop(app);

    // Off: no endpoint, nothing advertised.
    let Some(app) = spawn(backend, |s| s.registration.mode = RegistrationMode::Disabled).await else {
        return;
    };
    let r =
        reqwest::Client::new().post(app.url("/oauth2/register")).json(&mcp_client()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let m: Value =
        reqwest::get(app.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert!(m.get("registration_endpoint").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_policies_sqlite() {
    policies(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_policies_postgres() {
    policies(Backend::Postgres).await;
}
