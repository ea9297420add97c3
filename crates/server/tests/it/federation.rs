//! Workload identity federation (RFC 8693 token exchange) against a local OIDC issuer that
//! publishes a discovery document and a JWKS, on both backends.

use crate::support::{World, claims, introspect, json, world};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_core::federation::NewTrustPolicy;
use portcullis_testkit::{TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, RwLock};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// A change to a token's claims.
type Edit = dyn FnOnce(&mut Value);

const SUBJECT: &str = "repo:acme/app:ref:refs/heads/main";

struct SigningKey {
    kid: String,
    der: Vec<u8>,
    jwk: Value,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self { kid: kid.into(), der, jwk }
    }
}

/// A local OIDC issuer (what a CI provider is to us).
struct Issuer {
    url: String,
    keys: Arc<RwLock<Vec<Value>>>,
    current: SigningKey,
}

impl Issuer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let key = SigningKey::new("ci-1");
        let keys = Arc::new(RwLock::new(vec![key.jwk.clone()]));
        let (u, k) = (url.clone(), keys.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let u = u.clone();
                    async move { axum::Json(json!({"issuer": u, "jwks_uri": format!("{u}/jwks")})) }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    let k = k.clone();
                    async move { axum::Json(json!({"keys": k.read().unwrap().clone()})) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, keys, current: key }
    }

    /// Publishes a new key and signs with it from now on.
    fn rotate(&mut self, kid: &str) {
        let k = SigningKey::new(kid);
        self.keys.write().unwrap().push(k.jwk.clone());
        self.current = k;
    }

    fn sign_with(&self, key: &SigningKey, claims: &Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(&key.der)).unwrap()
    }

    fn token(&self, app: &TestApp, edit: impl FnOnce(&mut Value)) -> String {
        let now = portcullis_domain::Clock::now(&app.clock).unix_timestamp();
        let mut c = json!({
            "iss": self.url, "aud": "portcullis-ci", "sub": SUBJECT, "repository_owner": "acme",
            "ref": "refs/heads/main", "run_id": 42, "iat": now, "nbf": now, "exp": now + 300,
        });
        edit(&mut c);
        self.sign_with(&self.current, &c)
    }
}

fn policy(issuer: &str) -> NewTrustPolicy {
    NewTrustPolicy {
        name: "deploys".into(),
        issuer: issuer.into(),
        audience: "portcullis-ci".into(),
        subject: SUBJECT.into(),
        claims: vec!["repository_owner=acme".into(), "run_id=*".into()],
        scope: Some("contacts:read contacts:write".into()),
        bundle: None,
        max_ttl: time::Duration::minutes(10),
    }
}

async fn exchange(app: &TestApp, token: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut form = vec![("grant_type", EXCHANGE), ("subject_token", token), ("subject_token_type", ID_TOKEN)];
    form.extend_from_slice(extra);
    reqwest::Client::new().post(app.url("/oauth2/token")).form(&form).send().await.unwrap()
}

async fn refused(r: reqwest::Response, code: &str) -> String {
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v = json(r).await;
    assert_eq!(v["error"], code, "{v}");
    v["error_description"].as_str().unwrap_or_default().to_owned()
}

async fn setup(app: &TestApp) -> (World, Issuer, String) {
    let w = world(app).await;
    let issuer = Issuer::start().await;
    let policy_id = app.create_trust_policy("acme", policy(&issuer.url)).await;
    (w, issuer, policy_id)
}

async fn a_trusted_workload_gets_a_service_token(app: TestApp) {
    let (w, issuer, policy_id) = setup(&app).await;
    let r = exchange(&app, &issuer.token(&app, |_| {}), &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t = json(r).await;
    assert_eq!(t["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 600);
    assert_eq!(t["scope"], "contacts:read contacts:write");
    assert!(t.get("refresh_token").is_none());
    let token = t["access_token"].as_str().unwrap().to_owned();
    let c = claims(&token);
    assert_eq!(c["token_use"], "service");
    assert_eq!(c["minted_by"], policy_id.as_str());
    assert_eq!(c["sub"], SUBJECT);
    assert_eq!(c["workspace_id"], w.workspace_id);
    assert_eq!(introspect(&app, &w, &token).await["active"], true);

    // A narrower scope may be asked for; a wider one may not.
    let t = json(exchange(&app, &issuer.token(&app, |_| {}), &[("scope", "contacts:read")]).await).await;
    assert_eq!(t["scope"], "contacts:read");
    let d = refused(
        exchange(&app, &issuer.token(&app, |_| {}), &[("scope", "contacts:delete")]).await,
        "invalid_scope",
    )
    .await;
    assert!(d.contains("trust policy"), "{d}");

    // The mint is recorded with the external identity.
    let admin = app.api_key("acme", "keys:manage").await;
    let events =
        json(reqwest::Client::new().get(app.url("/api/v1/events")).bearer_auth(&admin).send().await.unwrap())
            .await;
    let mint =
        events["events"].as_array().unwrap().iter().find(|e| e["kind"] == "token.exchanged").unwrap().clone();
    assert_eq!(mint["detail"]["via"], "federation");
    assert_eq!(mint["detail"]["external_subject"], SUBJECT);
    assert_eq!(mint["actor"], policy_id.as_str());

    // Deleting the policy ends its tokens and further exchanges.
    let r = reqwest::Client::new()
        .delete(app.url(&format!("/api/v1/trust-policies/{policy_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(introspect(&app, &w, &token).await["active"], false);
    refused(exchange(&app, &issuer.token(&app, |_| {}), &[]).await, "invalid_request").await;
}

async fn untrusted_or_mismatched_tokens_are_refused(app: TestApp) {
    let (_, issuer, _) = setup(&app).await;
    let other = Issuer::start().await;
    let d = refused(exchange(&app, &other.token(&app, |_| {}), &[]).await, "invalid_request").await;
    assert!(d.contains("no trust policy accepts tokens from this issuer"), "{d}");

    let cases: Vec<(&str, Box<Edit>)> = vec![
        ("wrong audience", Box::new(|c| c["aud"] = json!("someone-else"))),
        ("audience list without ours", Box::new(|c| c["aud"] = json!(["a", "b"]))),
        ("wrong subject", Box::new(|c| c["sub"] = json!("repo:acme/app:ref:refs/heads/feature"))),
        ("other repository", Box::new(|c| c["sub"] = json!("repo:evil/app:ref:refs/heads/main"))),
        ("claim mismatch", Box::new(|c| c["repository_owner"] = json!("evil"))),
        (
            "missing claim",
            Box::new(|c| c.as_object_mut().unwrap().remove("run_id").map(|_| ()).unwrap_or(())),
        ),
    ];
    for (what, edit) in cases {
        let d = refused(exchange(&app, &issuer.token(&app, edit), &[]).await, "invalid_request").await;
        assert!(d.contains("no trust policy admits"), "{what}: {d}");
    }
    // An audience list containing ours is fine.
    let ok = exchange(&app, &issuer.token(&app, |c| c["aud"] = json!(["x", "portcullis-ci"])), &[]).await;
    assert_eq!(ok.status(), StatusCode::OK);

    let d = refused(
        exchange(&app, &issuer.token(&app, |c| c["exp"] = json!(c["iat"].as_i64().unwrap() - 120)), &[])
            .await,
        "invalid_request",
    )
    .await;
    assert!(d.contains("expired"), "{d}");
    let d = refused(
        exchange(&app, &issuer.token(&app, |c| c["nbf"] = json!(c["iat"].as_i64().unwrap() + 600)), &[])
            .await,
        "invalid_request",
    )
    .await;
    assert!(d.contains("not valid yet"), "{d}");

    // Signed by a key the issuer does not publish, under a published kid: bad signature.
    let rogue = SigningKey { kid: issuer.current.kid.clone(), ..SigningKey::new("rogue") };
    let now = portcullis_domain::Clock::now(&app.clock).unix_timestamp();
    let forged = issuer.sign_with(
        &rogue,
        &json!({"iss": issuer.url, "aud": "portcullis-ci", "sub": SUBJECT, "repository_owner": "acme", "run_id": 1, "iat": now, "exp": now + 300}),
    );
    let d = refused(exchange(&app, &forged, &[]).await, "invalid_request").await;
    assert!(d.contains("signature"), "{d}");
    // A symmetric algorithm is never accepted, whatever the key.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": issuer.url, "aud": "portcullis-ci", "sub": SUBJECT, "exp": now + 300}),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let d = refused(exchange(&app, &hs, &[]).await, "invalid_request").await;
    assert!(d.contains("algorithm"), "{d}");
    refused(exchange(&app, "not-a-jwt", &[]).await, "invalid_request").await;

    // Protocol checks (RFC 8693 §2.1, §2.2.2).
    let good = issuer.token(&app, |_| {});
    let form = [("grant_type", EXCHANGE), ("subject_token", good.as_str()), ("subject_token_type", "urn:x")];
    let r = reqwest::Client::new().post(app.url("/oauth2/token")).form(&form).send().await.unwrap();
    refused(r, "invalid_request").await;
    refused(
        exchange(&app, &good, &[("actor_token", "x"), ("actor_token_type", ID_TOKEN)]).await,
        "invalid_request",
    )
    .await;
    refused(exchange(&app, &good, &[("audience", "https://elsewhere.example")]).await, "invalid_target")
        .await;
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .form(&[("grant_type", EXCHANGE), ("subject_token_type", ID_TOKEN)])
        .send()
        .await
        .unwrap();
    refused(r, "invalid_request").await;
}

async fn issuer_key_rotation_is_picked_up(app: TestApp) {
    let (_, mut issuer, _) = setup(&app).await;
    assert_eq!(exchange(&app, &issuer.token(&app, |_| {}), &[]).await.status(), StatusCode::OK);
    issuer.rotate("ci-2");
    // The cached JWKS lacks the new kid; refetches are throttled to one per 30 s.
    app.clock.advance(time::Duration::seconds(31));
    assert_eq!(exchange(&app, &issuer.token(&app, |_| {}), &[]).await.status(), StatusCode::OK);
}

async fn a_token_admitted_by_two_workspaces_is_refused(app: TestApp) {
    let (_, issuer, _) = setup(&app).await;
    app.create_workspace("globex").await;
    app.create_trust_policy("globex", policy(&issuer.url)).await;
    let d = refused(exchange(&app, &issuer.token(&app, |_| {}), &[]).await, "invalid_request").await;
    assert!(d.contains("several workspaces"), "{d}");
}

both_backends!(
    a_trusted_workload_gets_a_service_token,
    untrusted_or_mismatched_tokens_are_refused,
    issuer_key_rotation_is_picked_up,
    a_token_admitted_by_two_workspaces_is_refused,
);
