//! Pushed authorization requests (RFC 9126): push, use once, expiry, rejections, and the
//! per-client and global "PAR required" settings.

use crate::support::{
    Authz, REDIRECT, World, authorize, browser, challenge, code_from, json, location, query, redeem, s, world,
};
use portcullis_core::admin::NewClient;
use portcullis_testkit::{Backend, Options, TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::Value;

both_backends!(
    a_pushed_request_is_used_once,
    bad_pushed_requests_are_refused,
    par_can_be_required_of_a_client
);

/// Pushes `a` (plus `extra`) as client `w` with client_secret_basic.
async fn push(app: &TestApp, w: &World, a: &Authz, extra: &[(&str, &str)]) -> reqwest::Response {
    let ch = challenge(&a.verifier);
    let mut form: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("scope", &a.scope),
        ("state", &a.state),
        ("redirect_uri", REDIRECT),
        ("code_challenge", &ch),
        ("code_challenge_method", "S256"),
    ];
    form.extend_from_slice(extra);
    reqwest::Client::new()
        .post(app.url("/oauth2/par"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&form)
        .send()
        .await
        .unwrap()
}

fn authorize_url(app: &TestApp, client_id: &str, request_uri: &str, extra: &str) -> String {
    let mut u = url::Url::parse(&app.url("/oauth2/authorize")).unwrap();
    u.query_pairs_mut().append_pair("client_id", client_id).append_pair("request_uri", request_uri);
    format!("{u}{extra}")
}

async fn a_pushed_request_is_used_once(app: TestApp) {
    let w = world(&app).await;
    let m: Value =
        reqwest::get(app.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    assert_eq!(m["pushed_authorization_request_endpoint"], app.url("/oauth2/par"));
    assert_eq!(m["require_pushed_authorization_requests"], false);

    let a = Authz::new(&w.client_id, "contacts:read");
    let r = push(&app, &w, &a, &[("resource", &app.url("/mcp"))]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v = json(r).await;
    let uri = s(&v, "request_uri");
    assert!(uri.starts_with("urn:ietf:params:oauth:request_uri:"), "{uri}");
    assert_eq!(v["expires_in"], 60);

    // Parameters next to request_uri are ignored: only the pushed ones count.
    let b = browser();
    let mut via = Authz::new(&w.client_id, "contacts:read");
    via.state = a.state.clone();
    via.verifier = a.verifier.clone();
    let url = authorize_url(
        &app,
        &w.client_id,
        &uri,
        "&scope=contacts%3Adelete&redirect_uri=https%3A%2F%2Fevil.example",
    );
    let r = b.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let login = location(r.headers());
    let r = crate::support::sign_in(&app, &b, &login, "ada@example.com", crate::support::PASSWORD).await;
    let consent = location(r.headers());
    let r = crate::support::answer_consent(&app, &b, &consent, None, true).await;
    let callback = location(r.headers());
    let code = code_from(&app, &callback, &via);
    let t = json(redeem(&app, &w, &code, &a.verifier).await).await;
    assert_eq!(t["scope"], "contacts:read");
    assert_eq!(crate::support::claims(&s(&t, "access_token"))["aud"], app.url("/mcp"));

    // Used once.
    let r = b.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "a request_uri is single-use");
    assert!(r.text().await.unwrap().contains("request_uri"));

    // Another client cannot use (or burn) it; it expires after 60 s.
    let other = crate::support::other_client(&app, &w).await;
    let uri = s(&json(push(&app, &w, &a, &[]).await).await, "request_uri");
    let r = b.get(authorize_url(&app, &other.client_id, &uri, "")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = b.get(authorize_url(&app, &w.client_id, &uri, "")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "still usable by its client");
    let uri = s(&json(push(&app, &w, &a, &[]).await).await, "request_uri");
    app.clock.advance(time::Duration::seconds(61));
    let r = b.get(authorize_url(&app, &w.client_id, &uri, "")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "expired");
    let r = b
        .get(authorize_url(&app, &w.client_id, "urn:ietf:params:oauth:request_uri:nope", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn bad_pushed_requests_are_refused(app: TestApp) {
    let w = world(&app).await;
    let a = Authz::new(&w.client_id, "contacts:read");
    let err = |r: reqwest::Response| async move {
        let status = r.status();
        (status, s(&json(r).await, "error"))
    };
    assert_eq!(
        err(push(&app, &w, &a, &[("resource", "https://evil.example")]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_target".into())
    );
    assert_eq!(
        err(push(&app, &w, &a, &[("request_uri", "urn:x")]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    assert_eq!(
        err(push(&app, &w, &a, &[("client_id", "someone-else")]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into())
    );
    assert_eq!(
        err(push(&app, &w, &a, &[("code_challenge_method", "plain")]).await).await,
        (StatusCode::BAD_REQUEST, "invalid_request".into()),
        "the request is checked as the authorization endpoint would"
    );
    let wrong = World { secret: "pcl_cs_wrong".into(), ..w.clone() };
    assert_eq!(
        err(push(&app, &wrong, &a, &[]).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_client".into())
    );
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/par"))
        .form(&[("response_type", "code"), ("scope", "contacts:read")])
        .send()
        .await
        .unwrap();
    assert_eq!(err(r).await, (StatusCode::UNAUTHORIZED, "invalid_client".into()));
}

async fn par_can_be_required_of_a_client(app: TestApp) {
    let w = world(&app).await;
    let strict = crate::support::another_client(
        &app,
        &w,
        NewClient {
            name: "Strict".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "contacts:read".into(),
            require_pushed_requests: true,
            ..Default::default()
        },
    )
    .await;
    let a = Authz::new(&strict.client_id, "contacts:read");
    let r = browser().get(a.url(&app)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let q = query(&location(r.headers()));
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("push"));
    let uri = s(&json(push(&app, &strict, &a, &[]).await).await, "request_uri");
    let r = browser().get(authorize_url(&app, &strict.client_id, &uri, "")).send().await.unwrap();
    assert!(location(r.headers()).starts_with("/login"), "pushed: accepted");
    // Other clients are not affected.
    let b = browser();
    let plain = Authz::new(&w.client_id, "contacts:read");
    let code = code_from(&app, &authorize(&app, &b, &plain).await, &plain);
    assert_eq!(redeem(&app, &w, &code, &plain.verifier).await.status(), StatusCode::OK);
}

async fn required_everywhere(backend: Backend) {
    let opts =
        Options { settings: Some(Box::new(|s| s.require_pushed_requests = true)), ..Default::default() };
    let Some(app) = TestApp::spawn_with(backend, opts).await else { return };
    let w = world(&app).await;
    let m: Value =
        reqwest::get(app.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(m["require_pushed_authorization_requests"], true);
    let a = Authz::new(&w.client_id, "contacts:read");
    let r = browser().get(a.url(&app)).send().await.unwrap();
    assert_eq!(query(&location(r.headers()))["error"], "invalid_request");
    let uri = s(&json(push(&app, &w, &a, &[]).await).await, "request_uri");
    let r = browser().get(authorize_url(&app, &w.client_id, &uri, "")).send().await.unwrap();
    assert!(location(r.headers()).starts_with("/login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn par_required_everywhere_sqlite() {
    required_everywhere(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn par_required_everywhere_postgres() {
    required_everywhere(Backend::Postgres).await;
}
