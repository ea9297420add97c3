//! Resource indicators (RFC 8707): `resource` on authorization and token requests, tokens
//! audience-restricted to one resource, and each guard accepting only its own audience.

use crate::support::{
    Authz, authorize, browser, claims, code_from, json, location, query, redeem, s, tokens_for, world,
};
use portcullis_core::admin::NewClient;
use portcullis_testkit::{TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::json;

both_backends!(
    tokens_are_for_the_resource_named,
    unknown_resources_are_invalid_target,
    guards_refuse_tokens_for_other_resources,
    client_credentials_and_service_tokens_name_a_resource
);

async fn token(app: &TestApp, w: &crate::support::World, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn error_of(r: reqwest::Response) -> String {
    let status = r.status();
    let v = json(r).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    s(&v, "error")
}

async fn tokens_are_for_the_resource_named(app: TestApp) {
    let w = world(&app).await;
    let (api, mcp) = (app.url("/api"), app.url("/mcp"));
    let b = browser();

    // One resource authorized: the token is for it, with or without `resource` at the token
    // endpoint; another resource there is refused and spends the code.
    let a = Authz::new(&w.client_id, "contacts:read offline_access").with("resource", &mcp);
    let code = code_from(&app, &authorize(&app, &b, &a).await, &a);
    let t = json(redeem(&app, &w, &code, &a.verifier).await).await;
    assert_eq!(claims(&s(&t, "access_token"))["aud"], mcp);
    let rt = s(&t, "refresh_token");
    let r =
        token(&app, &w, &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("resource", &api)]).await;
    assert_eq!(error_of(r).await, "invalid_target", "the API was not authorized");
    let r =
        token(&app, &w, &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("resource", &mcp)]).await;
    assert_eq!(r.status(), StatusCode::OK, "the refused attempt did not consume the token");
    let t = json(r).await;
    assert_eq!(claims(&s(&t, "access_token"))["aud"], mcp);

    let a = Authz::new(&w.client_id, "contacts:read").with("resource", &mcp);
    let code = code_from(&app, &authorize(&app, &b, &a).await, &a);
    let r = token(
        &app,
        &w,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", crate::support::REDIRECT),
            ("code_verifier", &a.verifier),
            ("resource", &api),
        ],
    )
    .await;
    assert_eq!(error_of(r).await, "invalid_target");
    assert_eq!(error_of(redeem(&app, &w, &code, &a.verifier).await).await, "invalid_grant", "spent");

    // Two resources authorized: each token names one; without a name it is ambiguous.
    let a = Authz::new(&w.client_id, "contacts:read offline_access")
        .with("resource", &mcp)
        .with("resource", &api);
    let code = code_from(&app, &authorize(&app, &b, &a).await, &a);
    let t = json(
        token(
            &app,
            &w,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", crate::support::REDIRECT),
                ("code_verifier", &a.verifier),
                ("resource", &api),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(claims(&s(&t, "access_token"))["aud"], api);
    let rt = s(&t, "refresh_token");
    let r = token(&app, &w, &[("grant_type", "refresh_token"), ("refresh_token", &rt)]).await;
    assert_eq!(error_of(r).await, "invalid_target", "ambiguous");
    let r = token(
        &app,
        &w,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("resource", &mcp), ("resource", &api)],
    )
    .await;
    assert_eq!(error_of(r).await, "invalid_target", "one resource per token");
    let r =
        token(&app, &w, &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("resource", &mcp)]).await;
    assert_eq!(claims(&s(&json(r).await, "access_token"))["aud"], mcp);

    // None named anywhere: the default audience, the API.
    let t = tokens_for(&app, &w, &b, "contacts:read").await;
    assert_eq!(claims(&s(&t, "access_token"))["aud"], api);
}

async fn unknown_resources_are_invalid_target(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    for bad in ["https://evil.example/api", "/mcp", &format!("{}#frag", app.url("/mcp")), &app.url("/mcp/")] {
        let a = Authz::new(&w.client_id, "contacts:read").with("resource", bad);
        let r = b.get(a.url(&app)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{bad}");
        let q = query(&location(r.headers()));
        assert_eq!(q["error"], "invalid_target", "{bad}");
        assert_eq!(q["state"], a.state);
        assert_eq!(q["iss"], app.base);
    }
    let t = tokens_for(&app, &w, &b, "contacts:read offline_access").await;
    let r = token(
        &app,
        &w,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &s(&t, "refresh_token")),
            ("resource", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(error_of(r).await, "invalid_target");
    // The device authorization request too.
    let device = crate::support::other_client(&app, &w).await;
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/device_authorization"))
        .basic_auth(&device.client_id, Some(&device.secret))
        .form(&[("scope", "contacts:read"), ("resource", "https://evil.example/api")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(s(&json(r).await, "error"), "invalid_target");
}

async fn guards_refuse_tokens_for_other_resources(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let api_token = s(&tokens_for(&app, &w, &b, "contacts:read").await, "access_token");
    let mcp_token = s(
        &crate::support::tokens_for_resource(&app, &w, &b, "contacts:read", &app.url("/mcp")).await,
        "access_token",
    );
    let http = reqwest::Client::new();
    let list = |t: &str| http.get(app.url("/api/v1/contacts")).bearer_auth(t.to_owned()).send();
    let tools = |t: &str| {
        http.post(app.url("/mcp"))
            .bearer_auth(t.to_owned())
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
            .send()
    };
    assert_eq!(list(&api_token).await.unwrap().status(), StatusCode::OK);
    assert_eq!(tools(&mcp_token).await.unwrap().status(), StatusCode::OK);
    for r in [list(&mcp_token).await.unwrap(), tools(&api_token).await.unwrap()] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let c = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(c.contains(r#"error="invalid_token""#) && c.contains("another resource"), "{c}");
    }
}

async fn client_credentials_and_service_tokens_name_a_resource(app: TestApp) {
    let w = world(&app).await;
    let m = crate::support::another_client(
        &app,
        &w,
        NewClient {
            name: "Nightly sync".into(),
            scope: "contacts:read".into(),
            grant_types: vec!["client_credentials".into()],
            workspace: Some("acme".into()),
            ..Default::default()
        },
    )
    .await;
    let mcp = app.url("/mcp");
    let r = token(&app, &m, &[("grant_type", "client_credentials"), ("resource", &mcp)]).await;
    assert_eq!(claims(&s(&json(r).await, "access_token"))["aud"], mcp);
    let r = token(&app, &m, &[("grant_type", "client_credentials")]).await;
    assert_eq!(claims(&s(&json(r).await, "access_token"))["aud"], app.url("/api"));
    let r =
        token(&app, &m, &[("grant_type", "client_credentials"), ("resource", "https://evil.example")]).await;
    assert_eq!(error_of(r).await, "invalid_target");

    let minter = app.api_key("acme", "tokens:mint contacts:read").await;
    let mint = |resource: &str| {
        reqwest::Client::new()
            .post(app.url("/api/v1/service-tokens"))
            .bearer_auth(&minter)
            .json(&json!({"scope": "contacts:read", "resource": resource}))
            .send()
    };
    let r = mint(&mcp).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(claims(&s(&json(r).await, "access_token"))["aud"], mcp);
    let r = mint("https://evil.example").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(s(&json(r).await, "detail").contains("not a protected resource"));
}
