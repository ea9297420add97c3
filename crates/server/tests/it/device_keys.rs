//! Issue 3: the device authorization grant (RFC 8628) and signing-key rotation, on both backends.

use crate::support::*;
use portcullis_core::admin::NewClient;
use portcullis_testkit::{TestApp, both_backends};
use reqwest::StatusCode;
use time::Duration;

both_backends!(
    device_flow_polls_then_issues_tokens,
    device_flow_denial_expiry_and_reuse,
    user_code_guessing_is_rate_limited,
    signing_key_rotation_publishes_first_and_retires_later,
    discovery_lists_the_lifecycle_endpoints,
);

/// A public CLI client allowed the device grant (and refresh).
async fn cli_client(app: &TestApp) -> String {
    app.create_client(NewClient {
        name: "Acme CLI".into(),
        scope: "openid contacts:read contacts:write".into(),
        grant_types: vec!["urn:ietf:params:oauth:grant-type:device_code".into(), "refresh_token".into()],
        public: true,
        ..Default::default()
    })
    .await
    .client
    .id
    .to_string()
}

async fn start(app: &TestApp, client_id: &str, scope: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/device_authorization"))
        .form(&[("client_id", client_id), ("scope", scope)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    json(r).await
}

async fn poll(app: &TestApp, client_id: &str, device_code: &str) -> (StatusCode, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", client_id),
        ])
        .send()
        .await
        .unwrap();
    (r.status(), json(r).await)
}

/// The user: opens the verification URI, signs in, sees the consent page for the code, answers.
async fn user_answers(app: &TestApp, b: &reqwest::Client, user_code: &str, allow: bool) -> reqwest::Response {
    let r = b.get(app.url(&format!("/device?user_code={user_code}"))).send().await.unwrap();
    let loc = location(r.headers());
    if loc.starts_with("/login?next=") {
        let page = b.get(app.url(&loc)).send().await.unwrap().text().await.unwrap();
        let r = b
            .post(app.url("/login"))
            .form(&[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("csrf", &hidden(&page, "csrf")),
                ("req", ""),
                ("next", &hidden(&page, "next")),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(location(r.headers()).starts_with("/device?user_code="), "back to the device page");
    }
    let page = b.get(app.url(&format!("/device?user_code={user_code}"))).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Acme CLI") && html.contains(r#"<label for="workspace">Workspace</label>"#));
    assert!(html.contains(">Allow</button>") && html.contains(">Deny</button>"));
    b.post(app.url("/device"))
        .form(&[
            ("csrf", hidden(&html, "csrf").as_str()),
            ("user_code", &hidden(&html, "user_code")),
            ("workspace", &options(&html)[0]),
            ("decision", if allow { "allow" } else { "deny" }),
        ])
        .send()
        .await
        .unwrap()
}

async fn device_flow_polls_then_issues_tokens(app: TestApp) {
    let w = world(&app).await;
    let cli = cli_client(&app).await;
    let d = start(&app, &cli, "openid contacts:read").await;
    let user_code = s(&d, "user_code");
    assert!(
        regex::Regex::new("^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")
            .unwrap()
            .is_match(&user_code),
        "{user_code}"
    );
    assert_eq!(d["verification_uri"], app.url("/device"));
    assert_eq!(d["verification_uri_complete"], app.url(&format!("/device?user_code={user_code}")));
    assert_eq!(d["expires_in"], 600);
    assert_eq!(d["interval"], 5);
    let dc = s(&d, "device_code");

    let (st, body) = poll(&app, &cli, &dc).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "authorization_pending");
    let (_, body) = poll(&app, &cli, &dc).await;
    assert_eq!(body["error"], "slow_down", "polling faster than the interval");
    app.clock.advance(Duration::seconds(11));
    assert_eq!(poll(&app, &cli, &dc).await.1["error"], "authorization_pending");

    // The page's "Code" field, empty, before the user has a code.
    let b = browser();
    let r = user_answers(&app, &b, &user_code, true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(r.headers()), "/device/done?result=approved");
    let html = b.get(app.url("/device")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"<label for="user_code">Code</label>"#));

    app.clock.advance(Duration::seconds(11));
    let (st, t) = poll(&app, &cli, &dc).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["scope"], "contacts:read openid");
    assert!(t["refresh_token"].is_string() && t["id_token"].is_string());
    let c = claims(&s(&t, "access_token"));
    assert_eq!(c["sub"], w.user_id);
    assert_eq!(c["workspace_id"], w.workspace_id);
    assert_eq!(introspect(&app, &w, &s(&t, "access_token")).await["active"], true);

    app.clock.advance(Duration::seconds(11));
    assert_eq!(poll(&app, &cli, &dc).await.1["error"], "invalid_grant", "the device code is spent");
    // The device keeps its session going with the refresh token.
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", s(&t, "refresh_token").as_str()),
            ("client_id", cli.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn device_flow_denial_expiry_and_reuse(app: TestApp) {
    let _ = world(&app).await;
    let cli = cli_client(&app).await;
    let d = start(&app, &cli, "contacts:read").await;
    let r = user_answers(&app, &browser(), &s(&d, "user_code"), false).await;
    assert_eq!(location(r.headers()), "/device/done?result=denied");
    let (st, body) = poll(&app, &cli, &s(&d, "device_code")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "access_denied");

    let d = start(&app, &cli, "contacts:read").await;
    app.clock.advance(Duration::minutes(11));
    assert_eq!(poll(&app, &cli, &s(&d, "device_code")).await.1["error"], "expired_token");
    // The user cannot approve an expired code either.
    let b = browser();
    let r = b.get(app.url(&format!("/device?user_code={}", s(&d, "user_code")))).send().await.unwrap();
    assert!(location(r.headers()).starts_with("/login"));

    // Unknown device codes, other clients' device codes, clients without the grant.
    assert_eq!(poll(&app, &cli, "pcl_dc_unknown").await.1["error"], "invalid_grant");
    let w = world_client(&app).await;
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/device_authorization"))
        .basic_auth(&w.0, Some(&w.1))
        .form(&[("scope", "contacts:read")])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["error"], "unauthorized_client");
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/device_authorization"))
        .form(&[("client_id", cli.as_str()), ("scope", "keys:manage")])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["error"], "invalid_scope");
}

async fn world_client(app: &TestApp) -> (String, String) {
    use secrecy::ExposeSecret;
    let c = app
        .create_client(NewClient {
            name: "Web".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "contacts:read".into(),
            ..Default::default()
        })
        .await;
    (c.client.id.to_string(), c.secret.unwrap().expose_secret().to_owned())
}

async fn user_code_guessing_is_rate_limited(app: TestApp) {
    let _ = world(&app).await;
    let cli = cli_client(&app).await;
    let d = start(&app, &cli, "contacts:read").await;
    let b = browser();
    // Sign in through the device page first.
    let r = b.get(app.url("/device")).send().await.unwrap();
    let login = location(r.headers());
    let page = b.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    b.post(app.url("/login"))
        .form(&[
            ("email", "ada@example.com"),
            ("password", PASSWORD),
            ("csrf", &hidden(&page, "csrf")),
            ("next", "/device"),
        ])
        .send()
        .await
        .unwrap();
    for guess in ["BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD", "FFFF-FFFF", "GGGG-GGGG"] {
        let r = b.get(app.url(&format!("/device?user_code={guess}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.text().await.unwrap().contains("not valid"));
    }
    // Even the right code is refused now, until the window passes.
    let right = s(&d, "user_code");
    let r = b.get(app.url(&format!("/device?user_code={right}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(Duration::minutes(5));
    let r = b.get(app.url(&format!("/device?user_code={}", right.to_lowercase()))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "the 15-minute window has not passed");
    app.clock.advance(Duration::minutes(11));
    // (The device code itself expired meanwhile; the lookup is allowed again and says so.)
    let r = b.get(app.url(&format!("/device?user_code={right}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn signing_key_rotation_publishes_first_and_retires_later(app: TestApp) {
    let w = world(&app).await;
    let jwks = || async {
        json(reqwest::get(app.url("/oauth2/jwks")).await.unwrap()).await["keys"].as_array().unwrap().clone()
    };
    let before = tokens_for(&app, &w, &browser(), "openid email contacts:read").await;
    let old_kid = header(&s(&before, "access_token"))["kid"].as_str().unwrap().to_owned();
    assert_eq!(jwks().await.len(), 1);

    let new_kid = app.rotate_signing_key(Duration::minutes(10)).await;
    let keys = jwks().await;
    assert_eq!(keys.len(), 2, "the new key is published at once");
    assert!(keys.iter().any(|k| k["kid"] == new_kid.as_str()));
    let during = tokens_for(&app, &w, &browser(), "contacts:read").await;
    assert_eq!(header(&s(&during, "access_token"))["kid"], old_kid.as_str(), "but does not sign yet");

    app.clock.advance(Duration::minutes(10));
    app.reload_keys().await;
    let after = tokens_for(&app, &w, &browser(), "contacts:read").await;
    assert_eq!(
        header(&s(&after, "access_token"))["kid"],
        new_kid.as_str(),
        "the new key signs after the delay"
    );
    // Tokens signed before the rotation still verify.
    assert_eq!(introspect(&app, &w, &s(&during, "access_token")).await["active"], true);
    assert_eq!(userinfo(&app, &s(&during, "access_token")).await.status(), StatusCode::OK);

    // The old key stays published until everything it signed has expired, then leaves.
    app.clock.advance(Duration::minutes(30));
    app.reload_keys().await;
    assert_eq!(jwks().await.len(), 2);
    app.clock.advance(Duration::minutes(31));
    app.reload_keys().await;
    let keys = jwks().await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], new_kid.as_str());
}

async fn discovery_lists_the_lifecycle_endpoints(app: TestApp) {
    let m = json(reqwest::get(app.url("/.well-known/oauth-authorization-server")).await.unwrap()).await;
    assert_eq!(m["revocation_endpoint"], app.url("/oauth2/revoke"));
    assert_eq!(m["introspection_endpoint"], app.url("/oauth2/introspect"));
    assert_eq!(m["device_authorization_endpoint"], app.url("/oauth2/device_authorization"));
    let grants: Vec<&str> =
        m["grant_types_supported"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
    for g in [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        assert!(grants.contains(&g), "{g}");
    }
    assert_eq!(
        m["introspection_endpoint_auth_methods_supported"],
        serde_json::json!(["client_secret_basic", "client_secret_post"])
    );
    for path in ["/oauth2/revoke", "/oauth2/introspect", "/oauth2/device_authorization"] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} answers GET with invalid_request");
        assert_eq!(json(r).await["error"], "invalid_request");
    }
}
