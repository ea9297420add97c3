//! Every failure of the authorization code flow: the right RFC error, the right place (page or
//! redirect), and no change to stored state unless the RFC asks for one (code replay).

use crate::support::*;
use portcullis_testkit::{TestApp, both_backends};
use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, LOCATION, WWW_AUTHENTICATE};

both_backends!(
    missing_pkce_is_refused,
    plain_pkce_is_refused,
    wrong_or_missing_verifier_is_invalid_grant,
    redirect_uri_mismatch_never_redirects,
    unknown_client_never_redirects,
    manage_scope_is_invalid_scope,
    unknown_scope_is_invalid_scope,
    denied_consent_redirects_access_denied,
    code_reuse_revokes_the_tokens,
    concurrent_redemption_has_one_winner,
    expired_code_is_invalid_grant,
    wrong_client_cannot_redeem_and_does_not_burn_the_code,
    tampered_jwt_is_rejected,
    token_endpoint_rejects_bad_requests_with_rfc_errors,
    client_authentication_failures_are_401,
    repeated_parameters_are_invalid_request,
    revoked_membership_stops_token_issuance_and_use,
);

/// Starts an authorization request and returns the redirect Location (no sign-in needed: these
/// errors come before any page).
async fn authorize_error(app: &TestApp, url: &str) -> std::collections::HashMap<String, String> {
    let r = browser().get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let loc = location(r.headers());
    assert!(loc.starts_with(REDIRECT), "{loc}");
    let q = query(&loc);
    assert_eq!(q.get("iss"), Some(&app.base), "errors carry iss (RFC 9207)");
    q
}

async fn missing_pkce_is_refused(app: TestApp) {
    let w = world(&app).await;
    let url = format!(
        "{}?response_type=code&client_id={}&redirect_uri={}&scope=contacts:read&state=xyz",
        app.url("/oauth2/authorize"),
        w.client_id,
        urlenc(REDIRECT)
    );
    let q = authorize_error(&app, &url).await;
    assert_eq!(q["error"], "invalid_request");
    assert_eq!(q["state"], "xyz");
    assert!(q["error_description"].contains("code_challenge"));

    // A challenge without a method is refused too (RFC 7636's default would be plain).
    let q = authorize_error(&app, &format!("{url}&code_challenge={}", challenge(&verifier()))).await;
    assert_eq!(q["error"], "invalid_request");
}

async fn plain_pkce_is_refused(app: TestApp) {
    let w = world(&app).await;
    let a = Authz::new(&w.client_id, "contacts:read");
    let url = a.url(&app).replace("code_challenge_method=S256", "code_challenge_method=plain");
    let q = authorize_error(&app, &url).await;
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("plain"));
}

async fn wrong_or_missing_verifier_is_invalid_grant(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let a = Authz::new(&w.client_id, "contacts:read");
    let code = code_from(&app, &authorize(&app, &b, &a).await, &a);

    let r = redeem(&app, &w, &code, &verifier()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(json(r).await["error"], "invalid_grant");

    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["error"], "invalid_grant");

    // Failed attempts did not consume the code: the right verifier still works.
    assert_eq!(redeem(&app, &w, &code, &a.verifier).await.status(), StatusCode::OK);
}

async fn redirect_uri_mismatch_never_redirects(app: TestApp) {
    let w = world(&app).await;
    for bad in [
        "https://app.example/callback/",
        "https://app.example/callback?x=1",
        "https://app.example/callbackx",
        "https://evil.example/callback",
        "https://APP.example/callback",
    ] {
        let mut a = Authz::new(&w.client_id, "contacts:read");
        a.redirect_uri = Some(bad.into());
        let r = browser().get(a.url(&app)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.headers().get(LOCATION).is_none(), "no redirect for {bad}");
        let html = r.text().await.unwrap();
        assert!(html.contains("redirect_uri does not match"), "{html}");
    }
}

async fn unknown_client_never_redirects(app: TestApp) {
    let _ = world(&app).await;
    let a = Authz::new("cl_doesnotexist", "contacts:read");
    let r = browser().get(a.url(&app)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(LOCATION).is_none());
    let r = browser().get(app.url("/oauth2/authorize?response_type=code")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(LOCATION).is_none());
}

async fn manage_scope_is_invalid_scope(app: TestApp) {
    let w = world(&app).await;
    let a = Authz::new(&w.client_id, "contacts:read keys:manage");
    let q = authorize_error(&app, &a.url(&app)).await;
    assert_eq!(q["error"], "invalid_scope");
    assert_eq!(q["state"], a.state);
}

async fn unknown_scope_is_invalid_scope(app: TestApp) {
    let w = world(&app).await;
    for scope in ["contacts:read nope:nope", "contacts:*", "messages:read"] {
        let a = Authz::new(&w.client_id, scope);
        let q = authorize_error(&app, &a.url(&app)).await;
        assert_eq!(q["error"], "invalid_scope", "{scope}");
    }
}

async fn denied_consent_redirects_access_denied(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let a = Authz::new(&w.client_id, "contacts:read");
    let r = b.get(a.url(&app)).send().await.unwrap();
    let r = sign_in(&app, &b, &location(r.headers()), "ada@example.com", PASSWORD).await;
    let consent = location(r.headers());
    let r = answer_consent(&app, &b, &consent, None, false).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let q = query(&location(r.headers()));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], a.state);
    assert_eq!(q["iss"], app.base);
    assert!(!q.contains_key("code"));

    // The answered request cannot be answered again.
    let r = b.get(app.url(&consent)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

async fn code_reuse_revokes_the_tokens(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let a = Authz::new(&w.client_id, "openid email contacts:read");
    let code = code_from(&app, &authorize(&app, &b, &a).await, &a);
    let t = json(redeem(&app, &w, &code, &a.verifier).await).await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&app, &at).await.status(), StatusCode::OK);

    let r = redeem(&app, &w, &code, &a.verifier).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "invalid_grant");

    // RFC 6749 §4.1.2: tokens issued from the replayed code are revoked.
    let r = userinfo(&app, &at).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#), "{challenge}");
}

/// Concurrent redemptions: the store lets exactly one consume the code, and every other one is a
/// second use of the code (RFC 6749 §4.1.2), so the family is revoked. Depending on timing the
/// winner answers before or after that revocation; either way no usable token survives.
async fn concurrent_redemption_has_one_winner(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let a = Authz::new(&w.client_id, "openid email contacts:read");
    let code = code_from(&app, &authorize(&app, &b, &a).await, &a);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (base, id, secret, code, v) =
            (app.base.clone(), w.client_id.clone(), w.secret.clone(), code.clone(), a.verifier.clone());
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/oauth2/token"))
                .basic_auth(id, Some(secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", v.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut issued = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::OK {
            issued.push(body["access_token"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(body["error"], "invalid_grant");
        }
    }
    assert!(issued.len() <= 1, "at most one redemption succeeds");
    for at in issued {
        assert_eq!(
            userinfo(&app, &at).await.status(),
            StatusCode::UNAUTHORIZED,
            "and its tokens are revoked"
        );
    }
}

async fn expired_code_is_invalid_grant(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let a = Authz::new(&w.client_id, "contacts:read");
    let code = code_from(&app, &authorize(&app, &b, &a).await, &a);
    app.clock.advance(time::Duration::seconds(61));
    let r = redeem(&app, &w, &code, &a.verifier).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "invalid_grant");
}

async fn wrong_client_cannot_redeem_and_does_not_burn_the_code(app: TestApp) {
    let w = world(&app).await;
    let other = other_client(&app, &w).await;
    let b = browser();
    let a = Authz::new(&w.client_id, "contacts:read");
    let code = code_from(&app, &authorize(&app, &b, &a).await, &a);
    let r = redeem(&app, &other, &code, &a.verifier).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "invalid_grant");
    assert_eq!(redeem(&app, &w, &code, &a.verifier).await.status(), StatusCode::OK);
}

async fn tampered_jwt_is_rejected(app: TestApp) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let w = world(&app).await;
    let t = tokens_for(&app, &w, &browser(), "openid email contacts:read").await;
    let at = t["access_token"].as_str().unwrap();
    let parts: Vec<&str> = at.split('.').collect();

    let mut c = claims(at);
    c["sub"] = serde_json::Value::String("usr_someone_else".into());
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
    let alg_none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let flipped = URL_SAFE_NO_PAD.encode(sig);
    let id_token = t["id_token"].as_str().unwrap();
    for bad in [
        format!("{}.{}.{}", parts[0], forged_payload, parts[2]),
        format!("{alg_none}.{}.", parts[1]),
        format!("{}.{}.{flipped}", parts[0], parts[1]),
        id_token.to_owned(),
        "not-a-jwt".to_owned(),
    ] {
        let r = userinfo(&app, &bad).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers()[WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_token"));
    }
    // No token at all: a bare challenge (RFC 6750 §3.1).
    let r = reqwest::get(app.url("/oauth2/userinfo")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()[WWW_AUTHENTICATE], r#"Bearer realm="portcullis""#);

    // An expired token is refused even with a valid signature.
    app.clock.advance(time::Duration::minutes(16));
    assert_eq!(userinfo(&app, at).await.status(), StatusCode::UNAUTHORIZED);
}

async fn token_endpoint_rejects_bad_requests_with_rfc_errors(app: TestApp) {
    let w = world(&app).await;
    let http = reqwest::Client::new();
    let token = app.url("/oauth2/token");

    let r = http
        .post(&token)
        .basic_auth(&w.client_id, Some(&w.secret))
        .json(&serde_json::json!({"grant_type":"authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "JSON body: invalid_request, not a framework 4xx");
    assert_eq!(json(r).await["error"], "invalid_request");

    let r = http
        .post(&token)
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[("grant_type", "password"), ("username", "a"), ("password", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["error"], "unsupported_grant_type");

    let r = http
        .post(&token)
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["error"], "invalid_request");

    let r = http
        .post(&token)
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "pcl_ac_unknown"),
            ("code_verifier", &verifier()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "invalid_grant");

    let r = http.get(&token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "invalid_request");

    let big = "x".repeat(100 * 1024);
    let r = http
        .post(&token)
        .form(&[("grant_type", "authorization_code"), ("code", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "invalid_request");
}

async fn client_authentication_failures_are_401(app: TestApp) {
    let w = world(&app).await;
    let http = reqwest::Client::new();
    let token = app.url("/oauth2/token");
    let form = [("grant_type", "authorization_code"), ("code", "pcl_ac_x"), ("code_verifier", "v")];
    let cases = [
        http.post(&token).basic_auth(&w.client_id, Some("pcl_cs_wrong")).form(&form),
        http.post(&token).basic_auth("cl_unknown", Some(&w.secret)).form(&form),
        http.post(&token).form(&form),
        http.post(&token).form(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", &w.client_id),
        ]),
        http.post(&token).form(&[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", &w.client_id),
            ("client_secret", "nope"),
        ]),
        http.post(&token).header("authorization", "Basic !!!").form(&form),
    ];
    for req in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers()[WWW_AUTHENTICATE].to_str().unwrap().starts_with("Basic"));
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(json(r).await["error"], "invalid_client");
    }
    // Two authentication methods at once: invalid_request (RFC 6749 §2.3).
    let r = http
        .post(&token)
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[("grant_type", "authorization_code"), ("code", "x"), ("client_secret", &w.secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["error"], "invalid_request");
    // client_secret_post works as well as basic (a bad code, but the client authenticated).
    let r = http
        .post(&token)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "pcl_ac_x"),
            ("code_verifier", &verifier()),
            ("client_id", &w.client_id),
            ("client_secret", &w.secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["error"], "invalid_grant");
}

async fn repeated_parameters_are_invalid_request(app: TestApp) {
    let w = world(&app).await;
    let a = Authz::new(&w.client_id, "contacts:read");
    let q = authorize_error(&app, &format!("{}&scope=contacts:write", a.url(&app))).await;
    assert_eq!(q["error"], "invalid_request");
    // A repeated client_id or redirect_uri cannot be trusted: page, no redirect.
    let r = browser().get(format!("{}&client_id={}", a.url(&app), w.client_id)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(LOCATION).is_none());
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .body("grant_type=authorization_code&code=a&code=b")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["error"], "invalid_request");
}

async fn revoked_membership_stops_token_issuance_and_use(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let t = tokens_for(&app, &w, &b, "openid email contacts:read").await;
    let at = t["access_token"].as_str().unwrap().to_owned();

    let a2 = Authz::new(&w.client_id, "openid email contacts:read");
    let code2 = code_from(&app, &authorize(&app, &b, &a2).await, &a2);
    app.remove_member("acme", "ada@example.com").await;
    // The live check refuses the token already issued, and no new token is issued.
    assert_eq!(userinfo(&app, &at).await.status(), StatusCode::UNAUTHORIZED);
    let r = redeem(&app, &w, &code2, &a2.verifier).await;
    assert_eq!(json(r).await["error"], "invalid_grant");
}

fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
