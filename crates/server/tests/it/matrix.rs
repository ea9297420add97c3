//! The guard's matrix on all three protected surfaces — the reference API, the MCP endpoint and
//! gateway mode — for each credential type (API key, OAuth user token, service token):
//! allowed / insufficient scope / revoked / expired, then address allowlists (IPv4, IPv6) and
//! budgets (an API key's own, per token, per workspace).

use crate::support::{World, browser, claims, json, s, tokens_for, tokens_for_resource, world};
use portcullis_core::api_keys::{Expiry, NewKey};
use portcullis_domain::RateLimit;
use portcullis_guard::Budgets;
use portcullis_http::gateway::RouteConfig;
use portcullis_testkit::{Backend, Options, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::Duration;

#[derive(Clone, Copy, Debug)]
enum Surface {
    Reference,
    Mcp,
    Gateway,
}

const SURFACES: [Surface; 3] = [Surface::Reference, Surface::Mcp, Surface::Gateway];

/// One read (contacts:read) or write (contacts:write) request on `surface`, optionally from
/// another address (`X-Forwarded-For`; the test server trusts 127.0.0.1 as a proxy).
async fn request(
    app: &TestApp,
    surface: Surface,
    cred: &str,
    write: bool,
    from: Option<&str>,
) -> reqwest::Response {
    let http = reqwest::Client::new();
    let mut r = match (surface, write) {
        (Surface::Reference, false) => http.get(app.url("/api/v1/contacts")),
        (Surface::Reference, true) => http.post(app.url("/api/v1/contacts")).json(&json!({"name": "Matrix"})),
        (Surface::Gateway, false) => http.get(app.url("/v2/contacts")),
        (Surface::Gateway, true) => http.post(app.url("/v2/contacts")).json(&json!({"name": "Matrix"})),
        (Surface::Mcp, write) => {
            let (tool, args) = if write {
                ("create_contact", json!({"name": "Matrix"}))
            } else {
                ("list_contacts", json!({}))
            };
            http.post(app.url("/mcp"))
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-06-18")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}))
        }
    };
    if let Some(ip) = from {
        r = r.header("x-forwarded-for", ip);
    }
    r.bearer_auth(cred).send().await.unwrap()
}

async fn assert_allowed(app: &TestApp, surface: Surface, cred: &str, write: bool, what: &str) {
    let r = request(app, surface, cred, write, None).await;
    assert!(r.status().is_success(), "{surface:?} {what}: {}", r.status());
    if let Surface::Mcp = surface {
        let v = json(r).await;
        assert!(v["result"].is_object() && v["result"]["isError"] != true, "{surface:?} {what}: {v}");
    }
}

async fn assert_status(
    app: &TestApp,
    surface: Surface,
    cred: &str,
    write: bool,
    status: StatusCode,
    error: &str,
    what: &str,
) {
    let r = request(app, surface, cred, write, None).await;
    assert_eq!(r.status(), status, "{surface:?} {what}");
    let c = r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    assert!(
        c.contains(&format!(r#"error="{error}""#)) && c.contains("resource_metadata="),
        "{surface:?} {what}: {c}"
    );
}

/// An upstream for the gateway routes that answers every request with 200 `{}`.
async fn upstream() -> String {
    let app = axum::Router::new().fallback(|| async { axum::Json(json!({})) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn spawn(backend: Backend, budgets: Budgets) -> Option<TestApp> {
    let up = upstream().await;
    let route = |method: &str, scope: &str| RouteConfig {
        method: method.into(),
        path: "/v2/contacts".into(),
        scopes: vec![scope.into()],
        upstream: up.clone(),
        pii: true,
        resource: None,
    };
    let opts = Options {
        gateway: vec![route("GET", "contacts:read"), route("POST", "contacts:write")],
        settings: Some(Box::new(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])),
        budgets,
        ..Default::default()
    };
    TestApp::spawn_with(backend, opts).await
}

/// Three credentials of workspace `acme` holding only `contacts:read`.
struct Creds {
    key: String,
    key_id: String,
    user_token: String,
    service_token: String,
    minter_id: String,
}

/// The RFC 8707 resource a token for `surface` is requested for (API keys have no audience).
fn resource(app: &TestApp, surface: Surface) -> String {
    match surface {
        Surface::Mcp => app.url("/mcp"),
        Surface::Reference | Surface::Gateway => app.url("/api"),
    }
}

/// A user token for `surface`: the whole browser flow with `resource`.
async fn user_token(app: &TestApp, w: &World, surface: Surface) -> String {
    s(
        &tokens_for_resource(app, w, &browser(), "contacts:read", &resource(app, surface)).await,
        "access_token",
    )
}

async fn creds(app: &TestApp, w: &World, surface: Surface) -> Creds {
    let issued = app
        .create_key(
            "acme",
            NewKey {
                name: "reader".into(),
                scope: Some("contacts:read".into()),
                expires: Some(Expiry::In(Duration::minutes(20))),
                ..Default::default()
            },
        )
        .await;
    let user_token = user_token(app, w, surface).await;
    let minter = app
        .create_key(
            "acme",
            NewKey {
                name: "minter".into(),
                scope: Some("tokens:mint contacts:read".into()),
                ..Default::default()
            },
        )
        .await;
    let r = reqwest::Client::new()
        .post(app.url("/api/v1/service-tokens"))
        .bearer_auth(minter.secret.expose())
        .json(&json!({"scope": "contacts:read", "ttl": "10m", "resource": resource(app, surface)}))
        .send()
        .await
        .unwrap();
    Creds {
        key: issued.secret.expose().to_owned(),
        key_id: issued.key.id.to_string(),
        user_token,
        service_token: s(&json(r).await, "access_token"),
        minter_id: minter.key.id.to_string(),
    }
}

async fn matrix(backend: Backend) {
    let Some(app) = spawn(backend, Budgets::default()).await else { return };
    let w = world(&app).await;
    let admin = app.api_key("acme", "keys:manage").await;
    for surface in SURFACES {
        // Allowed and insufficient scope, for each credential type.
        let c = creds(&app, &w, surface).await;
        for (cred, what) in
            [(&c.key, "api key"), (&c.user_token, "user token"), (&c.service_token, "service token")]
        {
            assert_allowed(&app, surface, cred, false, what).await;
            assert_status(&app, surface, cred, true, StatusCode::FORBIDDEN, "insufficient_scope", what).await;
        }
        // Revoked: the key, the user's grant, the service token's minting key.
        let http = reqwest::Client::new();
        http.delete(app.url(&format!("/api/v1/keys/{}", c.key_id))).bearer_auth(&admin).send().await.unwrap();
        app.revoke_grant(claims(&c.user_token)["grant_id"].as_str().unwrap()).await;
        http.delete(app.url(&format!("/api/v1/keys/{}", c.minter_id)))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        for (cred, what) in [
            (&c.key, "revoked key"),
            (&c.user_token, "revoked user token"),
            (&c.service_token, "revoked service token"),
        ] {
            assert_status(&app, surface, cred, false, StatusCode::UNAUTHORIZED, "invalid_token", what).await;
        }
        // Expired: the key after 20 min, the user token after 15, the service token after 10.
        let c = creds(&app, &w, surface).await;
        app.clock.advance(Duration::minutes(20) + Duration::seconds(6));
        for (cred, what) in [
            (&c.key, "expired key"),
            (&c.user_token, "expired user token"),
            (&c.service_token, "expired service token"),
        ] {
            assert_status(&app, surface, cred, false, StatusCode::UNAUTHORIZED, "invalid_token", what).await;
        }
        // Address allowlists, IPv4 and IPv6, checked before the budget is spent.
        let k = app
            .create_key(
                "acme",
                NewKey {
                    name: "office".into(),
                    scope: Some("contacts:read".into()),
                    allow_cidrs: vec!["203.0.113.0/24".into(), "2001:db8::/32".into()],
                    rate_limit: Some("2/hour".into()),
                    ..Default::default()
                },
            )
            .await;
        let k = k.secret.expose().to_owned();
        for ip in ["198.51.100.1", "2001:db9::1", "198.51.100.1"] {
            let r = request(&app, surface, &k, false, Some(ip)).await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{surface:?} from {ip}");
            assert_eq!(json(r).await["error"], "ip_not_allowed", "{surface:?} from {ip}");
        }
        assert!(
            request(&app, surface, &k, false, Some("203.0.113.7")).await.status().is_success(),
            "{surface:?} v4"
        );
        assert!(
            request(&app, surface, &k, false, Some("2001:db8::7")).await.status().is_success(),
            "{surface:?} v6"
        );
        let r = request(&app, surface, &k, false, Some("2001:db8::7")).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{surface:?}: the third request of 2/hour");
        assert!(r.headers().contains_key("retry-after"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_sqlite() {
    matrix(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_postgres() {
    matrix(Backend::Postgres).await;
}

/// Budgets beyond the API key's own: per token (grant) and per workspace, one charge per request
/// to all budgets or none, on every surface.
async fn budgets(backend: Backend) {
    let b = Budgets {
        token: Some(RateLimit::parse("3/hour").unwrap()),
        workspace: Some(RateLimit::parse("5/hour").unwrap()),
    };
    let Some(app) = spawn(backend, b).await else { return };
    let w = world(&app).await;
    let t1 = s(&tokens_for(&app, &w, &browser(), "contacts:read").await, "access_token");
    // Three requests for the grant, spread over the surfaces (the MCP endpoint needs a token of
    // the same grant for its own resource); the fourth is over its budget.
    let t1_mcp = user_token(&app, &w, Surface::Mcp).await;
    for surface in SURFACES {
        let t = if let Surface::Mcp = surface { &t1_mcp } else { &t1 };
        assert!(request(&app, surface, t, false, None).await.status().is_success(), "{surface:?}");
    }
    let r = request(&app, Surface::Reference, &t1, false, None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers()["ratelimit-policy"].to_str().unwrap().starts_with(r#""credential";q=3"#));
    // A new token of the same grant shares its budget; another app's grant has its own, but the
    // workspace (5/hour) has only 2 requests left.
    let again = s(&tokens_for(&app, &w, &browser(), "contacts:read").await, "access_token");
    assert_eq!(
        request(&app, Surface::Gateway, &again, false, None).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let other_app = crate::support::other_client(&app, &w).await;
    let t2 = user_token(&app, &other_app, Surface::Mcp).await;
    let key = app.api_key("acme", "contacts:read").await;
    let ok = request(&app, Surface::Mcp, &t2, false, None).await;
    assert!(ok.status().is_success());
    assert!(request(&app, Surface::Gateway, &key, false, None).await.status().is_success());
    let r = request(&app, Surface::Reference, &key, false, None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = r.json().await.unwrap();
    assert!(body["error_description"].as_str().unwrap().contains("workspace"), "{body}");
    // Another workspace is not affected.
    app.create_workspace("globex").await;
    let other = app.api_key("globex", "contacts:read").await;
    assert!(request(&app, Surface::Reference, &other, false, None).await.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_sqlite() {
    budgets(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_postgres() {
    budgets(Backend::Postgres).await;
}
