//! The authorization code + PKCE flow, end to end: happy paths and the behaviour of consent.

use crate::support::*;
use portcullis_core::admin::NewClient;
use portcullis_testkit::{TestApp, both_backends};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, SET_COOKIE};

both_backends!(
    happy_path_issues_verifiable_tokens,
    pages_carry_security_headers_and_cookies,
    granted_scopes_are_the_intersection,
    user_chooses_the_workspace,
    remembered_consent_and_prompt_values,
    public_client_with_loopback_port_freedom,
    redirect_uri_may_be_omitted_when_only_one_is_registered,
    workspace_bound_client_only_offers_its_workspace,
    failed_sign_in_shows_an_error_and_opens_no_session,
    jwks_publishes_only_public_keys,
);

async fn happy_path_issues_verifiable_tokens(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let a = Authz::new(&w.client_id, "openid profile email contacts:read").with("nonce", "n-123");
    let callback = authorize(&app, &b, &a).await;
    let code = code_from(&app, &callback, &a);
    assert!(code.starts_with("pcl_ac_"));

    let r = redeem(&app, &w, &code, &a.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let t = json(r).await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    assert_eq!(t["scope"], "contacts:read email openid profile");
    assert!(t["refresh_token"].as_str().unwrap().starts_with("pcl_rt_"));

    // RFC 9068 access token.
    let at = t["access_token"].as_str().unwrap();
    let h = header(at);
    assert_eq!(h["typ"], "at+jwt");
    assert_eq!(h["alg"], "ES256");
    let c = claims(at);
    assert_eq!(c["iss"], app.base);
    assert_eq!(c["sub"], w.user_id);
    assert_eq!(c["aud"], format!("{}/api", app.base));
    assert_eq!(c["client_id"], w.client_id);
    assert_eq!(c["scope"], "contacts:read email openid profile");
    assert_eq!(c["workspace_id"], w.workspace_id);
    assert!(c["grant_id"].as_str().unwrap().starts_with("grt_"));
    assert!(c["jti"].as_str().unwrap().len() >= 20);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);

    // The signature verifies with an independent JWT library against the published JWKS.
    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(app.url("/oauth2/jwks")).await.unwrap().json().await.unwrap();
    let key = jwks.find(h["kid"].as_str().unwrap()).expect("kid is published");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[format!("{}/api", app.base)]);
    v.set_issuer(&[&app.base]);
    jsonwebtoken::decode::<serde_json::Value>(at, &jsonwebtoken::DecodingKey::from_jwk(key).unwrap(), &v)
        .expect("access token verifies");

    // ID token (openid granted).
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], w.client_id);
    assert_eq!(id["nonce"], "n-123");
    assert_eq!(id["email"], "ada@example.com");

    // Userinfo.
    let r = userinfo(&app, at).await;
    assert_eq!(r.status(), StatusCode::OK);
    let u = json(r).await;
    assert_eq!(u["sub"], w.user_id);
    assert_eq!(u["email"], "ada@example.com");
    assert_eq!(u["name"], "Test User");
}

async fn pages_carry_security_headers_and_cookies(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let a = Authz::new(&w.client_id, "contacts:read");
    let r = b.get(a.url(&app)).send().await.unwrap();
    let login = location(r.headers());
    let page = b.get(app.url(&login)).send().await.unwrap();
    let csp = page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let csrf_cookie = page.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Lax"), "{csrf_cookie}");
    assert!(!csrf_cookie.contains("Secure"), "http issuer: no Secure flag");

    let r = sign_in(&app, &b, &login, "ada@example.com", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "303 after the form post");
    let session_cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(session_cookie.starts_with("pcl_session=pcl_ss_"));
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"));

    let consent = location(r.headers());
    let page = b.get(app.url(&consent)).send().await.unwrap();
    assert!(page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("Zapier"), "the app's name");
    assert!(html.contains("View contacts, including their email addresses and phone numbers"));
    assert!(html.contains(r#"<label for="workspace">Workspace</label>"#));
    assert!(html.contains(">Allow</button>") && html.contains(">Deny</button>"));
    assert!(html.contains("app.example"), "the redirect host is shown");

    // A form post without the CSRF token is refused and changes nothing.
    let req = hidden(&html, "req");
    let r = b
        .post(app.url("/consent"))
        .form(&[("req", req.as_str()), ("workspace", &w.workspace_id), ("decision", "allow")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = b
        .post(app.url("/consent"))
        .form(&[
            ("req", req.as_str()),
            ("csrf", "forged"),
            ("workspace", &w.workspace_id),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The pending request survived: the real form still works.
    let r = answer_consent(&app, &b, &consent, None, true).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(r.headers()).starts_with(REDIRECT));
}

async fn granted_scopes_are_the_intersection(app: TestApp) {
    let w = world(&app).await;
    // Requested: contacts:delete (client may, user may not), messages:read (user and client may
    // not), contacts:read (both may).
    let b = browser();
    let a = Authz::new(&w.client_id, "contacts:read contacts:delete messages:read");
    let callback = authorize(&app, &b, &a).await;
    let code = code_from(&app, &callback, &a);
    let t = json(redeem(&app, &w, &code, &a.verifier).await).await;
    assert_eq!(t["scope"], "contacts:read");
    assert_eq!(claims(t["access_token"].as_str().unwrap())["scope"], "contacts:read");
}

async fn user_chooses_the_workspace(app: TestApp) {
    let w = world(&app).await;
    let beta = app.create_workspace("beta").await;
    app.add_member("beta", "ada@example.com", "contacts:read").await;
    let b = browser();
    let a = Authz::new(&w.client_id, "contacts:read contacts:write");
    let r = b.get(a.url(&app)).send().await.unwrap();
    let r = sign_in(&app, &b, &location(r.headers()), "ada@example.com", PASSWORD).await;
    let consent = location(r.headers());
    let html = b.get(app.url(&consent)).send().await.unwrap().text().await.unwrap();
    let mut offered = options(&html);
    offered.sort();
    let mut expected = vec![w.workspace_id.clone(), beta.id.to_string()];
    expected.sort();
    assert_eq!(offered, expected, "both of the user's workspaces are offered");

    let r = answer_consent(&app, &b, &consent, Some(beta.id.as_str()), true).await;
    let code = code_from(&app, &location(r.headers()), &a);
    let t = json(redeem(&app, &w, &code, &a.verifier).await).await;
    let c = claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["workspace_id"], beta.id.as_str());
    assert_eq!(c["scope"], "contacts:read", "beta only grants what ada holds there");

    // A workspace the user does not belong to cannot be smuggled in through the form.
    let a2 = Authz::new(&w.client_id, "contacts:read").with("prompt", "consent");
    let r = b.get(a2.url(&app)).send().await.unwrap();
    let consent = location(r.headers());
    let stranger = app.create_workspace("stranger").await;
    let r = answer_consent(&app, &b, &consent, Some(stranger.id.as_str()), true).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn remembered_consent_and_prompt_values(app: TestApp) {
    let w = world(&app).await;
    let b = browser();

    // prompt=none before signing in: login_required, redirected with state and iss.
    let a = Authz::new(&w.client_id, "contacts:read").with("prompt", "none");
    let r = b.get(a.url(&app)).send().await.unwrap();
    let q = query(&location(r.headers()));
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], a.state);
    assert_eq!(q["iss"], app.base);

    // Sign in and consent once.
    let a = Authz::new(&w.client_id, "contacts:read");
    let cb = authorize(&app, &b, &a).await;
    code_from(&app, &cb, &a);

    // The same request again: the remembered consent is reused without a page.
    let a = Authz::new(&w.client_id, "contacts:read");
    let r = b.get(a.url(&app)).send().await.unwrap();
    let cb = location(r.headers());
    let code = code_from(&app, &cb, &a);
    assert_eq!(redeem(&app, &w, &code, &a.verifier).await.status(), StatusCode::OK);

    // prompt=none with the remembered consent: a code, no page.
    let a = Authz::new(&w.client_id, "contacts:read").with("prompt", "none");
    let r = b.get(a.url(&app)).send().await.unwrap();
    code_from(&app, &location(r.headers()), &a);

    // More scopes than were consented: consent is needed again (prompt=none says so).
    let a = Authz::new(&w.client_id, "contacts:read contacts:write").with("prompt", "none");
    let r = b.get(a.url(&app)).send().await.unwrap();
    assert_eq!(query(&location(r.headers()))["error"], "consent_required");

    // prompt=consent always shows the page, even when consent is remembered (MCP clients).
    let a = Authz::new(&w.client_id, "contacts:read").with("prompt", "consent");
    let r = b.get(a.url(&app)).send().await.unwrap();
    let loc = location(r.headers());
    assert!(loc.starts_with("/consent?req="), "{loc}");

    // prompt=login asks for the password again before anything else.
    let a = Authz::new(&w.client_id, "contacts:read").with("prompt", "login");
    let r = b.get(a.url(&app)).send().await.unwrap();
    assert!(location(r.headers()).starts_with("/login?req="));

    // prompt=none combined with another value is invalid.
    let a = Authz::new(&w.client_id, "contacts:read").with("prompt", "none consent");
    let r = b.get(a.url(&app)).send().await.unwrap();
    assert_eq!(query(&location(r.headers()))["error"], "invalid_request");
}

async fn public_client_with_loopback_port_freedom(app: TestApp) {
    let w = world(&app).await;
    let c = app
        .create_client(NewClient {
            name: "CLI".into(),
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            scope: "contacts:read".into(),
            public: true,
            ..Default::default()
        })
        .await;
    assert!(c.secret.is_none());
    let b = browser();
    let mut a = Authz::new(c.client.id.as_str(), "contacts:read");
    a.redirect_uri = Some("http://127.0.0.1:53682/callback".into());
    let r = b.get(a.url(&app)).send().await.unwrap();
    let r = sign_in(&app, &b, &location(r.headers()), "ada@example.com", PASSWORD).await;
    let r = answer_consent(&app, &b, &location(r.headers()), None, true).await;
    let cb = location(r.headers());
    assert!(cb.starts_with("http://127.0.0.1:53682/callback?code="), "{cb}");
    let code = query(&cb)["code"].clone();

    // Public client: client_id in the body, no secret.
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:53682/callback"),
            ("code_verifier", &a.verifier),
            ("client_id", c.client.id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _ = w;

    // A confidential client gets no port freedom.
    let conf = app
        .create_client(NewClient {
            name: "Server app".into(),
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            scope: "contacts:read".into(),
            ..Default::default()
        })
        .await;
    let mut a = Authz::new(conf.client.id.as_str(), "contacts:read");
    a.redirect_uri = Some("http://127.0.0.1:53682/callback".into());
    let r = b.get(a.url(&app)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
}

async fn redirect_uri_may_be_omitted_when_only_one_is_registered(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let mut a = Authz::new(&w.client_id, "contacts:read");
    a.redirect_uri = None;
    let cb = authorize(&app, &b, &a).await;
    let code = code_from(&app, &cb, &a);
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("code_verifier", &a.verifier)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn workspace_bound_client_only_offers_its_workspace(app: TestApp) {
    let _ = world(&app).await;
    app.create_workspace("beta").await;
    app.add_member("beta", "ada@example.com", "contacts:read").await;
    let c = app
        .create_client(NewClient {
            name: "Beta internal tool".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "contacts:read".into(),
            workspace: Some("beta".into()),
            ..Default::default()
        })
        .await;
    let b = browser();
    let a = Authz::new(c.client.id.as_str(), "contacts:read");
    let r = b.get(a.url(&app)).send().await.unwrap();
    let r = sign_in(&app, &b, &location(r.headers()), "ada@example.com", PASSWORD).await;
    let html = b.get(app.url(&location(r.headers()))).send().await.unwrap().text().await.unwrap();
    assert_eq!(options(&html), vec![c.client.workspace_id.unwrap().to_string()]);
}

async fn failed_sign_in_shows_an_error_and_opens_no_session(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let a = Authz::new(&w.client_id, "contacts:read");
    let r = b.get(a.url(&app)).send().await.unwrap();
    let login = location(r.headers());
    for (email, pw) in [("ada@example.com", "wrong password"), ("nobody@example.com", PASSWORD)] {
        let r = sign_in(&app, &b, &login, email, pw).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get(SET_COOKIE).is_none_or(|c| !c.to_str().unwrap().contains("pcl_session")));
        let html = r.text().await.unwrap();
        assert!(html.contains("the email or password is incorrect"), "same message for both");
    }
    // Still not signed in: the consent page sends us to sign in.
    let req = login.trim_start_matches("/login?req=");
    let r = b.get(app.url(&format!("/consent?req={req}"))).send().await.unwrap();
    assert!(location(r.headers()).starts_with("/login"));
}

async fn jwks_publishes_only_public_keys(app: TestApp) {
    let jwks: serde_json::Value = reqwest::get(app.url("/oauth2/jwks")).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let k = &jwks["keys"][0];
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["crv"], "P-256");
    assert_eq!(k["alg"], "ES256");
    assert!(k.get("d").is_none(), "no private part is published");
}
