//! Issue 3: refresh rotation and replay detection, overlap windows, revocation, introspection,
//! grants, client credentials and secret rotation — on both backends.

use crate::support::*;
use portcullis_core::admin::NewClient;
use portcullis_testkit::{TestApp, both_backends};
use reqwest::StatusCode;
use time::Duration;

both_backends!(
    refresh_rotates_and_a_replay_revokes_the_family,
    refresh_race_has_one_winner_and_no_revocation,
    overlap_window_returns_the_same_successor_pair,
    refresh_is_bound_to_its_client,
    refresh_scope_may_narrow_but_never_widen,
    refresh_tokens_expire_when_idle,
    revocation_endpoint,
    introspection_reports_live_state,
    permission_changes_apply_to_issued_tokens,
    revoking_a_grant_in_one_workspace_leaves_the_others,
    a_user_withdraws_consent_on_the_account_page,
    client_credentials_grant,
    client_secret_rotation_grace_and_client_revocation,
);

async fn refresh_rotates_and_a_replay_revokes_the_family(app: TestApp) {
    let w = world(&app).await;
    let t0 = tokens_for(&app, &w, &browser(), "openid email contacts:read").await;
    let rt0 = s(&t0, "refresh_token");

    let r = refresh(&app, &w, &rt0, None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t1 = json(r).await;
    let rt1 = s(&t1, "refresh_token");
    assert_ne!(rt1, rt0, "a new refresh token on every use");
    assert_eq!(t1["scope"], "contacts:read email openid");
    assert!(t1.get("id_token").is_none(), "no ID token on refresh");
    assert_eq!(userinfo(&app, &s(&t1, "access_token")).await.status(), StatusCode::OK);

    // Well after the rotation, the consumed token comes back: a replay.
    app.clock.advance(Duration::seconds(30));
    let r = refresh(&app, &w, &rt0, None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(r).await["error"], "invalid_grant");

    // The whole family is revoked: the current refresh token and every access token.
    assert_eq!(json(refresh(&app, &w, &rt1, None).await).await["error"], "invalid_grant");
    assert_eq!(introspect(&app, &w, &s(&t1, "access_token")).await, serde_json::json!({"active": false}));
    assert_eq!(introspect(&app, &w, &s(&t0, "access_token")).await["active"], false);
    assert_eq!(introspect(&app, &w, &rt1).await["active"], false);
}

async fn refresh_race_has_one_winner_and_no_revocation(app: TestApp) {
    let w = world(&app).await;
    let t0 = tokens_for(&app, &w, &browser(), "contacts:read").await;
    let rt0 = s(&t0, "refresh_token");
    let winners = refresh_race(std::slice::from_ref(&app.base), &w, &rt0, 8).await;
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh succeeds");
    // No true replay happened: the winner's tokens keep working.
    let won = &winners[0];
    assert_eq!(introspect(&app, &w, &s(won, "access_token")).await["active"], true);
    assert_eq!(refresh(&app, &w, &s(won, "refresh_token"), None).await.status(), StatusCode::OK);
}

async fn overlap_window_returns_the_same_successor_pair(app: TestApp) {
    let w = world(&app).await;
    let c = another_client(
        &app,
        &w,
        NewClient {
            name: "SSR app".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "contacts:read".into(),
            refresh_overlap: Some(Duration::seconds(10)),
            ..Default::default()
        },
    )
    .await;
    let t0 = tokens_for(&app, &c, &browser(), "contacts:read").await;
    let rt0 = s(&t0, "refresh_token");
    let t1 = json(refresh(&app, &c, &rt0, None).await).await;

    // Within the window, the immediately previous token returns the very same pair.
    app.clock.advance(Duration::seconds(5));
    let again = refresh(&app, &c, &rt0, None).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again = json(again).await;
    assert_eq!(again["access_token"], t1["access_token"]);
    assert_eq!(again["refresh_token"], t1["refresh_token"]);

    // Once the successor is used, the old token is a replay even inside the window.
    let t2 = json(refresh(&app, &c, &s(&t1, "refresh_token"), None).await).await;
    let r = refresh(&app, &c, &rt0, None).await;
    assert_eq!(json(r).await["error"], "invalid_grant");
    assert_eq!(introspect(&app, &c, &s(&t2, "access_token")).await["active"], false, "family revoked");

    // After the window, the previous token is a replay too.
    let t0 = tokens_for(&app, &c, &browser(), "contacts:read").await;
    let rt0 = s(&t0, "refresh_token");
    let t1 = json(refresh(&app, &c, &rt0, None).await).await;
    app.clock.advance(Duration::seconds(11));
    assert_eq!(json(refresh(&app, &c, &rt0, None).await).await["error"], "invalid_grant");
    assert_eq!(introspect(&app, &c, &s(&t1, "access_token")).await["active"], false);

    // Without an overlap window (the default), a quick second use is refused but revokes nothing.
    let t0 = tokens_for(&app, &w, &browser(), "contacts:read").await;
    let rt0 = s(&t0, "refresh_token");
    let t1 = json(refresh(&app, &w, &rt0, None).await).await;
    assert_eq!(json(refresh(&app, &w, &rt0, None).await).await["error"], "invalid_grant");
    assert_eq!(introspect(&app, &w, &s(&t1, "access_token")).await["active"], true);
}

async fn refresh_is_bound_to_its_client(app: TestApp) {
    let w = world(&app).await;
    let other = other_client(&app, &w).await;
    let t0 = tokens_for(&app, &w, &browser(), "contacts:read").await;
    let rt0 = s(&t0, "refresh_token");
    assert_eq!(json(refresh(&app, &other, &rt0, None).await).await["error"], "invalid_grant");
    assert_eq!(refresh(&app, &w, &rt0, None).await.status(), StatusCode::OK, "untouched by the attempt");
}

async fn refresh_scope_may_narrow_but_never_widen(app: TestApp) {
    let w = world(&app).await;
    let t0 = tokens_for(&app, &w, &browser(), "openid contacts:read contacts:write").await;
    let r = refresh(&app, &w, &s(&t0, "refresh_token"), Some("contacts:read")).await;
    let t1 = json(r).await;
    assert_eq!(t1["scope"], "contacts:read");
    assert_eq!(claims(&s(&t1, "access_token"))["scope"], "contacts:read");
    // The new refresh token keeps the original scope (RFC 6749 §6).
    let t2 = json(refresh(&app, &w, &s(&t1, "refresh_token"), None).await).await;
    assert_eq!(t2["scope"], "contacts:read contacts:write openid");
    let r = refresh(&app, &w, &s(&t2, "refresh_token"), Some("contacts:read contacts:delete")).await;
    assert_eq!(json(r).await["error"], "invalid_scope");
    let r = refresh(&app, &w, &s(&t2, "refresh_token"), Some("keys:manage")).await;
    assert_eq!(json(r).await["error"], "invalid_scope");
}

async fn refresh_tokens_expire_when_idle(app: TestApp) {
    let w = world(&app).await;
    let t0 = tokens_for(&app, &w, &browser(), "contacts:read").await;
    app.clock.advance(Duration::days(29));
    let t1 = json(refresh(&app, &w, &s(&t0, "refresh_token"), None).await).await;
    app.clock.advance(Duration::days(31));
    let r = refresh(&app, &w, &s(&t1, "refresh_token"), None).await;
    assert_eq!(json(r).await["error"], "invalid_grant", "30 days idle");
}

async fn revocation_endpoint(app: TestApp) {
    let w = world(&app).await;
    let t0 = tokens_for(&app, &w, &browser(), "contacts:read").await;

    // Revoking the access token: that token only.
    let r = revoke(&app, &w, &s(&t0, "access_token")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(introspect(&app, &w, &s(&t0, "access_token")).await["active"], false);
    let t1 = json(refresh(&app, &w, &s(&t0, "refresh_token"), None).await).await;
    assert_eq!(introspect(&app, &w, &s(&t1, "access_token")).await["active"], true);

    // Revoking the refresh token: the whole family.
    assert_eq!(revoke(&app, &w, &s(&t1, "refresh_token")).await.status(), StatusCode::OK);
    assert_eq!(introspect(&app, &w, &s(&t1, "access_token")).await["active"], false);
    assert_eq!(json(refresh(&app, &w, &s(&t1, "refresh_token"), None).await).await["error"], "invalid_grant");

    // Unknown and malformed tokens answer 200 (RFC 7009 §2.2).
    for t in ["pcl_rt_unknown", "garbage", "a.b.c"] {
        assert_eq!(revoke(&app, &w, t).await.status(), StatusCode::OK);
    }
    // Another client cannot revoke our tokens (answered 200, nothing revoked).
    let other = other_client(&app, &w).await;
    let t2 = tokens_for(&app, &w, &browser(), "contacts:read").await;
    assert_eq!(revoke(&app, &other, &s(&t2, "refresh_token")).await.status(), StatusCode::OK);
    assert_eq!(revoke(&app, &other, &s(&t2, "access_token")).await.status(), StatusCode::OK);
    assert_eq!(introspect(&app, &w, &s(&t2, "access_token")).await["active"], true);
    // Client authentication is still required, and the token parameter.
    let r =
        reqwest::Client::new().post(app.url("/oauth2/revoke")).form(&[("token", "x")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(json(r).await["error"], "invalid_request");
}

async fn introspection_reports_live_state(app: TestApp) {
    let w = world(&app).await;
    let t = tokens_for(&app, &w, &browser(), "openid contacts:read").await;
    let i = introspect(&app, &w, &s(&t, "access_token")).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["scope"], "contacts:read openid");
    assert_eq!(i["client_id"], w.client_id);
    assert_eq!(i["sub"], w.user_id);
    assert_eq!(i["iss"], app.base);
    assert_eq!(i["aud"], format!("{}/api", app.base));
    assert_eq!(i["workspace_id"], w.workspace_id);
    assert_eq!(i["token_type"], "Bearer");
    assert!(i["exp"].as_i64().unwrap() > i["iat"].as_i64().unwrap());

    let r = introspect(&app, &w, &s(&t, "refresh_token")).await;
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");
    assert_eq!(r["workspace_id"], w.workspace_id);

    for bad in ["garbage", "pcl_rt_unknown", "eyJhbGciOiJub25lIn0.e30."] {
        assert_eq!(introspect(&app, &w, bad).await, serde_json::json!({"active": false}));
    }
    // Public clients may not introspect; unauthenticated callers neither.
    let public = app
        .create_client(NewClient {
            name: "SPA".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "contacts:read".into(),
            public: true,
            ..Default::default()
        })
        .await;
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/introspect"))
        .form(&[("token", s(&t, "access_token").as_str()), ("client_id", public.client.id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    app.clock.advance(Duration::minutes(16));
    assert_eq!(introspect(&app, &w, &s(&t, "access_token")).await["active"], false, "expired");
}

async fn permission_changes_apply_to_issued_tokens(app: TestApp) {
    let w = world(&app).await;
    let t = tokens_for(&app, &w, &browser(), "contacts:read contacts:write").await;
    let at = s(&t, "access_token");
    assert_eq!(introspect(&app, &w, &at).await["scope"], "contacts:read contacts:write");

    // Narrowed permissions narrow the live scope; removing the last one deactivates the token.
    app.add_member("acme", "ada@example.com", "contacts:read").await;
    assert_eq!(introspect(&app, &w, &at).await["scope"], "contacts:read");
    let t1 = json(refresh(&app, &w, &s(&t, "refresh_token"), None).await).await;
    assert_eq!(t1["scope"], "contacts:read");
    app.add_member("acme", "ada@example.com", "messages:read").await;
    assert_eq!(introspect(&app, &w, &at).await["active"], false);
    app.remove_member("acme", "ada@example.com").await;
    assert_eq!(introspect(&app, &w, &s(&t1, "access_token")).await["active"], false);
    assert_eq!(json(refresh(&app, &w, &s(&t1, "refresh_token"), None).await).await["error"], "invalid_grant");
}

async fn revoking_a_grant_in_one_workspace_leaves_the_others(app: TestApp) {
    let w = world(&app).await;
    let mut per_workspace = Vec::new();
    for slug in ["acme", "beta", "gamma"] {
        let ws = if slug == "acme" {
            w.workspace_id.clone()
        } else {
            app.create_workspace(slug).await.id.to_string()
        };
        app.add_member(slug, "ada@example.com", "contacts:read").await;
        let b = browser();
        let a = Authz::new(&w.client_id, "contacts:read").with("prompt", "consent");
        let r = b.get(a.url(&app)).send().await.unwrap();
        let r = sign_in(&app, &b, &location(r.headers()), "ada@example.com", PASSWORD).await;
        let r = answer_consent(&app, &b, &location(r.headers()), Some(&ws), true).await;
        let code = code_from(&app, &location(r.headers()), &a);
        let t = json(redeem(&app, &w, &code, &a.verifier).await).await;
        per_workspace.push((ws, t));
    }
    let grants: Vec<String> = per_workspace
        .iter()
        .map(|(_, t)| claims(&s(t, "access_token"))["grant_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(grants.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "one grant per workspace");

    app.revoke_grant(&grants[1]).await;
    let active: Vec<bool> = {
        let mut v = Vec::new();
        for (_, t) in &per_workspace {
            v.push(introspect(&app, &w, &s(t, "access_token")).await["active"] == true);
        }
        v
    };
    assert_eq!(active, [true, false, true]);
    assert_eq!(
        json(refresh(&app, &w, &s(&per_workspace[1].1, "refresh_token"), None).await).await["error"],
        "invalid_grant"
    );
    assert_eq!(
        refresh(&app, &w, &s(&per_workspace[0].1, "refresh_token"), None).await.status(),
        StatusCode::OK
    );
}

async fn a_user_withdraws_consent_on_the_account_page(app: TestApp) {
    let w = world(&app).await;
    let b = browser();
    let t = tokens_for(&app, &w, &b, "contacts:read").await;
    let page = b.get(app.url("/account")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Zapier") && html.contains(">Revoke</button>"), "{html}");
    let csrf = hidden(&html, "csrf");
    let grant = hidden(&html, "grant");
    let r = b
        .post(app.url("/account/revoke"))
        .form(&[("csrf", csrf.as_str()), ("grant", &grant)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(introspect(&app, &w, &s(&t, "access_token")).await["active"], false);
    assert_eq!(json(refresh(&app, &w, &s(&t, "refresh_token"), None).await).await["error"], "invalid_grant");
    // Someone else's browser cannot revoke it (not signed in: sent to sign in).
    let r = browser().get(app.url("/account")).send().await.unwrap();
    assert!(location(r.headers()).starts_with("/login?next=%2Faccount"));
}

async fn client_credentials_grant(app: TestApp) {
    let w = world(&app).await;
    let m = another_client(
        &app,
        &w,
        NewClient {
            name: "Nightly sync".into(),
            scope: "contacts:read contacts:write".into(),
            grant_types: vec!["client_credentials".into()],
            workspace: Some("acme".into()),
            ..Default::default()
        },
    )
    .await;
    let cc = |scope: Option<&'static str>, who: &World| {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        reqwest::Client::new()
            .post(app.url("/oauth2/token"))
            .basic_auth(&who.client_id, Some(&who.secret))
            .form(&form)
            .send()
    };
    let t = json(cc(None, &m).await.unwrap()).await;
    assert_eq!(t["scope"], "contacts:read contacts:write");
    assert!(t.get("refresh_token").is_none(), "no refresh token (RFC 6749 §4.4.3)");
    let c = claims(&s(&t, "access_token"));
    assert_eq!(c["sub"], m.client_id);
    assert_eq!(c["client_id"], m.client_id);
    assert_eq!(c["workspace_id"], w.workspace_id);
    assert!(c.get("grant_id").is_none());
    let i = introspect(&app, &w, &s(&t, "access_token")).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], m.client_id);

    assert_eq!(json(cc(Some("contacts:read"), &m).await.unwrap()).await["scope"], "contacts:read");
    assert_eq!(json(cc(Some("contacts:delete"), &m).await.unwrap()).await["error"], "invalid_scope");
    assert_eq!(json(cc(Some("members:manage"), &m).await.unwrap()).await["error"], "invalid_scope");
    // A client without the grant is refused.
    assert_eq!(json(cc(None, &w).await.unwrap()).await["error"], "unauthorized_client");

    // Revoking the client kills its tokens and its access.
    app.revoke_client(&m.client_id).await;
    assert_eq!(introspect(&app, &w, &s(&t, "access_token")).await["active"], false);
    assert_eq!(cc(None, &m).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

async fn client_secret_rotation_grace_and_client_revocation(app: TestApp) {
    let w = world(&app).await;
    let new_secret = app.rotate_client_secret(&w.client_id, Duration::days(7)).await;
    let with = |secret: &str| World { secret: secret.to_owned(), ..w.clone() };
    let t = tokens_for(&app, &with(&w.secret), &browser(), "contacts:read").await;
    assert!(t["access_token"].is_string(), "the old secret works during the grace period");
    let t = tokens_for(&app, &with(&new_secret), &browser(), "contacts:read").await;
    assert!(t["access_token"].is_string(), "the new secret works");

    app.clock.advance(Duration::days(7) + Duration::seconds(1));
    let r = introspect_raw(&app, &with(&w.secret), "x").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the old secret stops after the grace period");
    assert_eq!(introspect_raw(&app, &with(&new_secret), "x").await.status(), StatusCode::OK);
}
