//! Discovery documents, JWKS, health, and signing keys at rest.

use portcullis_testkit::{Backend, Options, TestApp, both_backends};
use reqwest::StatusCode;

both_backends!(
    metadata_documents_describe_what_is_served,
    healthz_answers,
    signing_keys_are_sealed_with_a_kek
);

async fn metadata_documents_describe_what_is_served(app: TestApp) {
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let r = reqwest::get(app.url(path)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let m: serde_json::Value = r.json().await.unwrap();
        assert_eq!(m["issuer"], app.base);
        assert_eq!(m["code_challenge_methods_supported"], serde_json::json!(["S256"]));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
        let grants = m["grant_types_supported"].as_array().unwrap();
        assert!(grants.contains(&"authorization_code".into()));
        assert!(!grants.iter().any(|g| g == "implicit" || g == "password"));
        let methods = m["token_endpoint_auth_methods_supported"].as_array().unwrap();
        for meth in ["client_secret_basic", "client_secret_post", "none"] {
            assert!(methods.contains(&meth.into()), "{meth}");
        }
        let scopes = m["scopes_supported"].as_array().unwrap();
        assert!(scopes.contains(&"contacts:read".into()) && scopes.contains(&"openid".into()));
        assert!(!scopes.iter().any(|s| s.as_str().unwrap().ends_with(":manage")));
        assert_eq!(m["id_token_signing_alg_values_supported"], serde_json::json!(["ES256"]));

        // Every advertised endpoint is served at the advertised URL.
        let jwks = reqwest::get(m["jwks_uri"].as_str().unwrap()).await.unwrap();
        assert_eq!(jwks.status(), StatusCode::OK);
        let authz = reqwest::get(m["authorization_endpoint"].as_str().unwrap()).await.unwrap();
        assert_eq!(authz.status(), StatusCode::BAD_REQUEST, "served (and refuses an empty request)");
        let token = reqwest::Client::new().post(m["token_endpoint"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(token.status(), StatusCode::BAD_REQUEST);
        let ui = reqwest::get(m["userinfo_endpoint"].as_str().unwrap()).await.unwrap();
        assert_eq!(ui.status(), StatusCode::UNAUTHORIZED);
    }
}

async fn healthz_answers(app: TestApp) {
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().get("x-request-id").is_some(), "every response carries a request id");
    assert_eq!(r.text().await.unwrap(), r#"{"status":"ok"}"#);
}

/// With a key-encryption key the private key is stored sealed, never in the clear, and a server
/// without the KEK cannot start on that database.
async fn signing_keys_are_sealed_with_a_kek(plain: TestApp) {
    let backend = plain.backend;
    drop(plain);
    use base64::Engine;
    let kek = secrecy::SecretString::from(base64::engine::general_purpose::STANDARD.encode([42u8; 32]));
    let Some(app) =
        TestApp::spawn_with(backend, Options { key_encryption_key: Some(kek), ..Default::default() }).await
    else {
        return;
    };
    let rows: Vec<String> = match app.store() {
        portcullis_server::backend::Backend::Sqlite(s) => {
            portcullis_store_sql::sqlx::query_scalar("SELECT private_key FROM signing_keys")
                .fetch_all(s.pool())
                .await
                .unwrap()
        }
        portcullis_server::backend::Backend::Postgres(s) => {
            portcullis_store_sql::sqlx::query_scalar("SELECT private_key FROM signing_keys")
                .fetch_all(s.pool())
                .await
                .unwrap()
        }
    };
    assert_eq!(rows.len(), 1);
    assert!(rows[0].starts_with("sealed:v1:"), "{}", &rows[0][..12]);
    // The sealed key works: the server signs tokens (JWKS published, key usable).
    let jwks: serde_json::Value = reqwest::get(app.url("/oauth2/jwks")).await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    let _ = Backend::Sqlite;
}

mod cors {
    use portcullis_testkit::{TestApp, both_backends};

    both_backends!(public_endpoints_allow_browsers_and_pages_do_not);

    async fn public_endpoints_allow_browsers_and_pages_do_not(app: TestApp) {
        let http = reqwest::Client::new();
        let origin = "https://app.example";
        for path in [
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
            "/oauth2/jwks",
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/mcp",
        ] {
            let r = http.get(app.url(path)).header("origin", origin).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
            assert!(
                r.headers().get("access-control-allow-credentials").is_none(),
                "{path}: no credentials mode"
            );
        }
        for path in ["/oauth2/token", "/oauth2/revoke"] {
            let r = http
                .request(reqwest::Method::OPTIONS, app.url(path))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type, dpop")
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: preflight answered ({})", r.status());
            assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
            let methods = r.headers()["access-control-allow-methods"].to_str().unwrap().to_ascii_uppercase();
            assert!(methods.contains("POST"), "{path}: {methods}");
            // The real request gets the header too (an error response here: no client).
            let r = http
                .post(app.url(path))
                .header("origin", origin)
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path}");
        }
        for path in ["/oauth2/authorize", "/login", "/consent", "/oauth2/introspect"] {
            let r = http.get(app.url(path)).header("origin", origin).send().await.unwrap();
            assert!(
                r.headers().get("access-control-allow-origin").is_none(),
                "{path} must not allow other origins"
            );
            let pre = http
                .request(reqwest::Method::OPTIONS, app.url(path))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .send()
                .await
                .unwrap();
            assert!(
                pre.headers().get("access-control-allow-origin").is_none(),
                "{path}: no preflight approval"
            );
        }
    }
}

/// An issuer with a path: every route is served under it, and the metadata at every location
/// clients derive from the issuer (RFC 8414 §3.1, OpenID Discovery §4, RFC 9728 §3.1).
mod issuer_path {
    use crate::support::{Authz, PASSWORD, hidden, location, options, query};
    use portcullis_core::admin::NewClient;
    use portcullis_testkit::{Options, TestApp, both_backends};
    use reqwest::StatusCode;

    both_backends!(served_under_the_path_with_metadata_where_clients_look);

    async fn served_under_the_path_with_metadata_where_clients_look(plain: TestApp) {
        let backend = plain.backend;
        drop(plain);
        let opts = Options { issuer_path: Some("/tenant/eu".into()), ..Default::default() };
        let Some(app) = TestApp::spawn_with(backend, opts).await else { return };
        let (origin, issuer) = (app.origin.clone(), app.base.clone());
        assert_eq!(issuer, format!("{origin}/tenant/eu"));

        for url in [
            format!("{origin}/.well-known/oauth-authorization-server/tenant/eu"),
            format!("{origin}/.well-known/openid-configuration/tenant/eu"),
            format!("{issuer}/.well-known/openid-configuration"),
            format!("{issuer}/.well-known/oauth-authorization-server"),
        ] {
            let r = reqwest::get(&url).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{url}");
            assert_eq!(r.headers()["access-control-allow-origin"], "*", "{url}");
            let m: serde_json::Value = r.json().await.unwrap();
            assert_eq!(m["issuer"], issuer, "{url}");
            assert_eq!(m["token_endpoint"], format!("{issuer}/oauth2/token"));
        }
        // The root locations belong to another issuer: not ours.
        for path in
            ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration", "/oauth2/jwks"]
        {
            let r = reqwest::get(format!("{origin}{path}")).await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
        for (resource, url) in [
            ("mcp", format!("{origin}/.well-known/oauth-protected-resource/tenant/eu/mcp")),
            ("mcp", format!("{issuer}/.well-known/oauth-protected-resource/mcp")),
            ("api", format!("{origin}/.well-known/oauth-protected-resource/tenant/eu/api")),
            ("api", format!("{issuer}/.well-known/oauth-protected-resource/api")),
        ] {
            let r = reqwest::get(&url).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{url}");
            let m: serde_json::Value = r.json().await.unwrap();
            assert_eq!(m["resource"], format!("{issuer}/{resource}"), "{url}");
            assert_eq!(m["authorization_servers"], serde_json::json!([issuer]), "{url}");
        }
        let challenge = reqwest::Client::new().post(format!("{issuer}/mcp")).send().await.unwrap();
        assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
        let www = challenge.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(www.contains(&format!("{issuer}/.well-known/oauth-protected-resource/mcp")), "{www}");

        // A whole browser flow: every redirect and form stays under the path.
        app.create_workspace("acme").await;
        app.create_user("ada@example.com", PASSWORD).await;
        app.add_member("acme", "ada@example.com", "contacts:read").await;
        let c = app
            .create_client(NewClient {
                name: "Zapier".into(),
                redirect_uris: vec![crate::support::REDIRECT.into()],
                scope: "contacts:read".into(),
                ..Default::default()
            })
            .await;
        let id = c.client.id.to_string();
        let b = crate::support::browser();
        let a = Authz::new(&id, "contacts:read");
        let r = b.get(a.url(&app)).send().await.unwrap();
        let login = location(r.headers());
        assert!(login.starts_with("/tenant/eu/login?req="), "{login}");
        let html = b.get(format!("{origin}{login}")).send().await.unwrap().text().await.unwrap();
        assert!(html.contains(r#"action="/tenant/eu/login""#), "{html}");
        let r = b
            .post(format!("{issuer}/login"))
            .form(&[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("csrf", &hidden(&html, "csrf")),
                ("req", &hidden(&html, "req")),
            ])
            .send()
            .await
            .unwrap();
        let consent = location(r.headers());
        assert!(consent.starts_with("/tenant/eu/consent?req="), "{consent}");
        let html = b.get(format!("{origin}{consent}")).send().await.unwrap().text().await.unwrap();
        assert!(html.contains(r#"action="/tenant/eu/consent""#));
        let r = b
            .post(format!("{issuer}/consent"))
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
        let q = query(&callback);
        assert_eq!(q["iss"], issuer);
        let r = reqwest::Client::new()
            .post(format!("{issuer}/oauth2/token"))
            .basic_auth(&id, Some(secrecy::ExposeSecret::expose_secret(c.secret.as_ref().unwrap())))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", crate::support::REDIRECT),
                ("code_verifier", &a.verifier),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let t: serde_json::Value = r.json().await.unwrap();
        assert_eq!(crate::support::claims(t["access_token"].as_str().unwrap())["iss"], issuer);
        // The device page sends a signed-out browser to sign-in under the path.
        let r = crate::support::browser()
            .get(format!("{issuer}/device?user_code=ABCD-EFGH"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            location(r.headers()),
            "/tenant/eu/login?next=%2Ftenant%2Feu%2Fdevice%3Fuser_code%3DABCD-EFGH"
        );
    }
}
