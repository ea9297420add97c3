//! Gateway mode: a guarded reverse proxy in front of an upstream test server (an axum app on
//! 127.0.0.1:0 that echoes what it received), on both backends.

use crate::support::{json, s, world};
use axum::extract::Request;
use axum::http::StatusCode as S;
use axum::response::IntoResponse;
use portcullis_core::admin::NewClient;
use portcullis_core::api_keys::NewKey;
use portcullis_http::gateway::RouteConfig;
use portcullis_testkit::{Backend, Options, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The upstream: echoes method, path, query, headers and body size; `/v2/teapot` answers 418.
async fn upstream() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let (parts, body) = req.into_parts();
            if parts.uri.path().ends_with("/teapot") {
                return (S::IM_A_TEAPOT, [("x-upstream", "yes")], "short and stout").into_response();
            }
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let headers: serde_json::Map<String, Value> =
                parts.headers.iter().map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("")))).collect();
            axum::Json(json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "headers": headers,
                "body_len": bytes.len(),
                "body_sum": bytes.iter().map(|b| u64::from(*b)).sum::<u64>(),
            }))
            .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, calls)
}

fn route(method: &str, path: &str, scopes: &[&str], upstream: &str) -> RouteConfig {
    RouteConfig {
        method: method.into(),
        path: path.into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        upstream: upstream.into(),
        pii: false,
        resource: None,
    }
}

async fn gateway(backend: Backend) {
    let (up, calls) = upstream().await;
    let opts = Options {
        gateway: vec![
            route("GET", "/v2/orders", &["analytics:read"], &up),
            route("POST", "/v2/orders", &["files:write"], &up),
            route("*", "/v2/files/{*path}", &["files:read"], &format!("{up}/base/")),
            route("GET", "/v2/teapot", &[], &up),
            route("GET", "/v2/down", &[], "http://127.0.0.1:9"),
        ],
        settings: Some(Box::new(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])),
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await else { return };
    let w = world(&app).await;
    let http = reqwest::Client::new();
    let key = app.api_key("acme", "analytics:read files:read").await;

    // Allowed: path and query pass, Authorization does not, identity headers replace forgeries.
    let r = http
        .get(app.url("/v2/orders?status=open&page=2"))
        .bearer_auth(&key)
        .header("x-portcullis-workspace", "ws_forged")
        .header("x-request-id", "req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = json(r).await;
    assert_eq!((seen["method"].as_str(), seen["path"].as_str()), (Some("GET"), Some("/v2/orders")));
    assert_eq!(seen["query"], "status=open&page=2");
    let h = &seen["headers"];
    assert!(h.get("authorization").is_none(), "{h}");
    assert_eq!(h["x-portcullis-workspace"], w.workspace_id.as_str());
    assert_eq!(h["x-portcullis-credential-kind"], "api_key");
    assert_eq!(h["x-portcullis-scopes"], "analytics:read files:read");
    assert_eq!(h["x-request-id"], "req-1");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");

    // Insufficient scope: refused before the upstream is called.
    let before = calls.load(Ordering::SeqCst);
    let r = http.post(app.url("/v2/orders")).bearer_auth(&key).body("{}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains(r#"scope="files:write""#));
    let r = http.get(app.url("/v2/orders")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("resource_metadata="));
    assert_eq!(calls.load(Ordering::SeqCst), before, "nothing reached the upstream");

    // Any method on a wildcard path, under the upstream's base path; a streamed 1 MiB body.
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = big.iter().map(|b| u64::from(*b)).sum();
    let r = http.put(app.url("/v2/files/a/b.txt")).bearer_auth(&key).body(big).send().await.unwrap();
    let seen = json(r).await;
    assert_eq!(
        (seen["method"].as_str(), seen["path"].as_str()),
        (Some("PUT"), Some("/base/v2/files/a/b.txt"))
    );
    assert_eq!((seen["body_len"].as_u64(), seen["body_sum"].as_u64()), (Some(1_048_576), Some(sum)));

    // Status and headers pass through; an unreachable upstream is a 502 problem.
    let r = http.get(app.url("/v2/teapot")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 418);
    assert_eq!(r.headers()["x-upstream"], "yes");
    assert_eq!(r.text().await.unwrap(), "short and stout");
    let r = http.get(app.url("/v2/down")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);

    // OAuth tokens: a client-credentials token with the scope, then its client revoked.
    let cc = crate::support::another_client(
        &app,
        &w,
        NewClient {
            name: "Reports".into(),
            scope: "analytics:read".into(),
            grant_types: vec!["client_credentials".into()],
            workspace: Some("acme".into()),
            ..Default::default()
        },
    )
    .await;
    let t = http
        .post(app.url("/oauth2/token"))
        .basic_auth(&cc.client_id, Some(&cc.secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "analytics:read")])
        .send()
        .await
        .unwrap();
    let at = s(&json(t).await, "access_token");
    let seen = json(http.get(app.url("/v2/orders")).bearer_auth(&at).send().await.unwrap()).await;
    assert_eq!(seen["headers"]["x-portcullis-credential-kind"], "access_token");
    assert_eq!(seen["headers"]["x-portcullis-client"], cc.client_id.as_str());
    app.revoke_client(&cc.client_id).await;
    assert_eq!(
        http.get(app.url("/v2/orders")).bearer_auth(&at).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // Address allowlists and budgets apply as on any guarded route.
    let k = app
        .create_key(
            "acme",
            NewKey {
                name: "office".into(),
                scope: Some("analytics:read".into()),
                allow_cidrs: vec!["2001:db8::/32".into()],
                rate_limit: Some("1/hour".into()),
                ..Default::default()
            },
        )
        .await;
    let k = k.secret.expose().to_owned();
    let from = |ip: &'static str| {
        http.get(app.url("/v2/orders")).bearer_auth(&k).header("x-forwarded-for", ip).send()
    };
    let r = from("192.0.2.1").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(r).await["error"], "ip_not_allowed");
    assert_eq!(from("2001:db8::1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(from("2001:db8::1").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_sqlite() {
    gateway(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_postgres() {
    gateway(Backend::Postgres).await;
}

#[test]
fn gateway_routes_are_checked() {
    use portcullis_core::scopes::Catalogue;
    use portcullis_http::gateway::parse_routes;
    let c = Catalogue::builtin();
    let ok = route("GET", "/v2/x", &["files:read"], "http://127.0.0.1:1");
    assert!(parse_routes(std::slice::from_ref(&ok), &c).is_ok());
    for (bad, why) in [
        (route("GET", "/oauth2/token", &[], "http://u"), "own paths"),
        (route("GET", "/api/v1/x", &[], "http://u"), "own paths"),
        (route("GET", "/v2/x", &["nope:read"], "http://u"), "catalogue"),
        (route("GET", "/v2/x", &[], "ftp://u"), "http(s)"),
        (route("GET", "/v2/x", &[], "http://u/?q=1"), "http(s)"),
        (route("G T", "/v2/x", &[], "http://u"), "method"),
        (route("GET", "v2/x", &[], "http://u"), "absolute path"),
        (RouteConfig { resource: Some("/api".into()), ..ok.clone() }, "own resources"),
        (RouteConfig { resource: Some("orders".into()), ..ok.clone() }, "plain path"),
        (RouteConfig { resource: Some("/a/../b".into()), ..ok.clone() }, "plain path"),
        (RouteConfig { resource: Some("/o?x".into()), ..ok.clone() }, "plain path"),
    ] {
        let e = parse_routes(&[bad], &c).unwrap_err();
        assert!(e.contains(why), "{e}");
    }
    let e = parse_routes(&[ok.clone(), route("*", "/v2/x", &[], "http://u")], &c).unwrap_err();
    assert!(e.contains("overlap"), "{e}");
}

/// A route with its own resource (RFC 8707/9728): only tokens for `<issuer>/orders` pass it, and
/// those tokens are refused by the built-in API; its metadata is at the path-suffixed location.
async fn route_resources(backend: Backend) {
    let (up, calls) = upstream().await;
    let own = RouteConfig {
        resource: Some("/orders".into()),
        ..route("GET", "/v2/orders", &["contacts:read"], &up)
    };
    let opts = Options {
        gateway: vec![own, route("GET", "/v2/shared", &["contacts:read"], &up)],
        ..Default::default()
    };
    let Some(app) = TestApp::spawn_with(backend, opts).await else { return };
    let w = world(&app).await;
    let orders = app.url("/orders");
    let prm =
        json(reqwest::get(app.url("/.well-known/oauth-protected-resource/orders")).await.unwrap()).await;
    assert_eq!(prm["resource"], orders);
    assert_eq!(prm["scopes_supported"], json!(["contacts:read"]));

    let b = crate::support::browser();
    let for_orders = crate::support::tokens_for_resource(&app, &w, &b, "contacts:read", &orders).await;
    let at = s(&for_orders, "access_token");
    assert_eq!(crate::support::claims(&at)["aud"], orders);
    let get = |path: &str, token: &str| {
        reqwest::Client::new().get(app.url(path)).bearer_auth(token.to_owned()).send()
    };
    assert_eq!(get("/v2/orders", &at).await.unwrap().status(), StatusCode::OK);
    let r = get("/api/v1/contacts", &at).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "an /orders token is not for the API");
    let r = get("/v2/shared", &at).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "nor for routes of the default resource");

    let default = crate::support::tokens_for(&app, &w, &b, "contacts:read").await;
    let api = s(&default, "access_token");
    let r = get("/v2/orders", &api).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains(&app.url("/.well-known/oauth-protected-resource/orders")), "{challenge}");
    assert_eq!(get("/v2/shared", &api).await.unwrap().status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "refused calls never reach the upstream");

    // An unknown resource is still invalid_target.
    let a = crate::support::Authz::new(&w.client_id, "contacts:read").with("resource", &app.url("/nope"));
    let r = b.get(a.url(&app)).send().await.unwrap();
    assert!(crate::support::location(r.headers()).contains("error=invalid_target"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_resources_sqlite() {
    route_resources(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_resources_postgres() {
    route_resources(Backend::Postgres).await;
}
