//! DPoP (RFC 9449): bound tokens from every grant, proofs checked at the token endpoint and at the
//! guard, public clients' refresh tokens bound to their key, `dpop_jkt`, nonces, and every
//! rejection (replay, wrong htm/htu, stale iat, key mismatch, missing ath, Bearer downgrade).

use crate::support::{Authz, REDIRECT, World, authorize, browser, claims, code_from, json, s, world};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::admin::NewClient;
use portcullis_testkit::{Backend, Options, TestApp, both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

both_backends!(
    bound_tokens_need_proofs_at_the_api,
    token_endpoint_refuses_bad_proofs,
    public_refresh_tokens_are_bound_to_the_key,
    dpop_jkt_and_pushed_proofs_bind_the_code,
    dpop_bound_clients_must_send_proofs
);

/// A client's DPoP key (P-256), signing proofs by hand so tests can send any header or claim.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    pub jwk: Value,
}

impl DpopKey {
    pub fn new() -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        Self { pair, jwk }
    }

    /// RFC 7638 thumbprint.
    pub fn jkt(&self) -> String {
        let j = &self.jwk;
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
            serde_json::to_string(&j["x"]).unwrap(),
            serde_json::to_string(&j["y"]).unwrap()
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
        let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
        let input = format!("{h}.{c}");
        let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// A proof for `htm` `htu` at `iat`, for `token` (its `ath`) and with `nonce`.
    pub fn proof_at(
        &self,
        htm: &str,
        htu: &str,
        iat: i64,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        let mut c = json!({
            "jti": portcullis_domain::secret::random_id(12), "htm": htm, "htu": htu, "iat": iat,
        });
        if let Some(t) = token {
            c["ath"] = json!(URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
        }
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        self.sign(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}), &c)
    }
}

fn now(app: &TestApp) -> i64 {
    portcullis_domain::Clock::now(&app.clock).unix_timestamp()
}

fn proof(app: &TestApp, key: &DpopKey, htm: &str, path: &str, token: Option<&str>) -> String {
    key.proof_at(htm, &app.url(path), now(app), token, None)
}

/// A token request with `form`, client_secret_basic when `secret` is given, and `dpop`.
async fn token_request(
    app: &TestApp,
    client: (&str, Option<&str>),
    form: &[(&str, &str)],
    dpop: Option<&str>,
) -> reqwest::Response {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let mut r = reqwest::Client::new().post(app.url("/oauth2/token"));
    match client.1 {
        Some(secret) => r = r.basic_auth(client.0, Some(secret)),
        None => form.push(("client_id", client.0)),
    }
    if let Some(p) = dpop {
        r = r.header("DPoP", p);
    }
    r.form(&form).send().await.unwrap()
}

/// A code for `a` (browser flow), redeemed with `dpop`.
async fn code_with_proof(app: &TestApp, w: &World, a: &Authz, dpop: Option<&str>) -> reqwest::Response {
    let code = code_from(app, &authorize(app, &browser(), a).await, a);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", a.verifier.as_str()),
    ];
    let secret = (!w.secret.is_empty()).then_some(w.secret.as_str());
    token_request(app, (&w.client_id, secret), &form, dpop).await
}

async fn api(app: &TestApp, auth: &str, dpop: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().get(app.url("/api/v1/contacts")).header("Authorization", auth);
    if let Some(p) = dpop {
        r = r.header("DPoP", p);
    }
    r.send().await.unwrap()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn error_of(r: reqwest::Response) -> String {
    s(&json(r).await, "error")
}

async fn bound_tokens_need_proofs_at_the_api(app: TestApp) {
    let w = world(&app).await;
    let m: Value =
        reqwest::get(app.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    assert!(m["dpop_signing_alg_values_supported"].as_array().unwrap().contains(&json!("ES256")));

    let key = DpopKey::new();
    let a = Authz::new(&w.client_id, "contacts:read");
    let r = code_with_proof(&app, &w, &a, Some(&proof(&app, &key, "POST", "/oauth2/token", None))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t = json(r).await;
    assert_eq!(t["token_type"], "DPoP");
    let at = s(&t, "access_token");
    assert_eq!(claims(&at)["cnf"]["jkt"], key.jkt());

    let dpop_auth = format!("DPoP {at}");
    let ok = api(&app, &dpop_auth, Some(&proof(&app, &key, "GET", "/api/v1/contacts", Some(&at)))).await;
    assert_eq!(ok.status(), StatusCode::OK, "{}", challenge(&ok));

    // Sent as a bearer token, with no proof, or with a proof of another key: refused.
    let r = api(&app, &format!("Bearer {at}"), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).starts_with(r#"Bearer error="invalid_token""#), "{}", challenge(&r));
    let r = api(&app, &dpop_auth, None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&r);
    assert!(c.starts_with(r#"DPoP error="invalid_dpop_proof""#) && c.contains("algs="), "{c}");
    let other = DpopKey::new();
    let r = api(&app, &dpop_auth, Some(&proof(&app, &other, "GET", "/api/v1/contacts", Some(&at)))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains("another key"), "{}", challenge(&r));

    // Wrong method, wrong URL, no ath, stale or future iat, replay.
    let cases = [
        ("htm", proof(&app, &key, "POST", "/api/v1/contacts", Some(&at))),
        ("htu", proof(&app, &key, "GET", "/api/v1/messages", Some(&at))),
        ("ath", proof(&app, &key, "GET", "/api/v1/contacts", None)),
        ("ath", proof(&app, &key, "GET", "/api/v1/contacts", Some("another token"))),
        ("too old", key.proof_at("GET", &app.url("/api/v1/contacts"), now(&app) - 120, Some(&at), None)),
        ("future", key.proof_at("GET", &app.url("/api/v1/contacts"), now(&app) + 60, Some(&at), None)),
    ];
    for (why, p) in cases {
        let r = api(&app, &dpop_auth, Some(&p)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert!(challenge(&r).contains("invalid_dpop_proof"), "{why}: {}", challenge(&r));
    }
    let p = proof(&app, &key, "GET", "/api/v1/contacts", Some(&at));
    assert_eq!(api(&app, &dpop_auth, Some(&p)).await.status(), StatusCode::OK);
    let r = api(&app, &dpop_auth, Some(&p)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a replayed proof");
    assert!(challenge(&r).contains("already used"), "{}", challenge(&r));
    // A query string is not part of htu.
    let p = proof(&app, &key, "GET", "/api/v1/contacts", Some(&at));
    let r = reqwest::Client::new()
        .get(app.url("/api/v1/contacts?limit=5"))
        .header("Authorization", &dpop_auth)
        .header("DPoP", p)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Two proofs are one too many.
    let r = reqwest::Client::new()
        .get(app.url("/api/v1/contacts"))
        .header("Authorization", &dpop_auth)
        .header("DPoP", proof(&app, &key, "GET", "/api/v1/contacts", Some(&at)))
        .header("DPoP", proof(&app, &key, "GET", "/api/v1/contacts", Some(&at)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // An unbound token may not pose as DPoP; and a plain bearer token still works as Bearer.
    let plain = crate::support::tokens_for(&app, &w, &browser(), "contacts:read").await;
    let pat = s(&plain, "access_token");
    assert_eq!(plain["token_type"], "Bearer");
    let r =
        api(&app, &format!("DPoP {pat}"), Some(&proof(&app, &key, "GET", "/api/v1/contacts", Some(&pat))))
            .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).starts_with(r#"DPoP error="invalid_token""#), "{}", challenge(&r));
    assert_eq!(api(&app, &format!("Bearer {pat}"), None).await.status(), StatusCode::OK);
}

async fn token_endpoint_refuses_bad_proofs(app: TestApp) {
    let w = world(&app).await;
    let key = DpopKey::new();
    let token_url = app.url("/oauth2/token");
    let t = now(&app);
    let private = {
        let mut jwk = key.jwk.clone();
        jwk["d"] = json!("AAAA");
        key.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
            &json!({"jti": "p1", "htm": "POST", "htu": token_url, "iat": t}),
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("htm", key.proof_at("GET", &token_url, t, None, None)),
        ("htu", key.proof_at("POST", &app.url("/oauth2/par"), t, None, None)),
        ("stale iat", key.proof_at("POST", &token_url, t - 300, None, None)),
        ("not a JWT", "not-a-jwt".into()),
        (
            "typ",
            key.sign(
                &json!({"typ": "JWT", "alg": "ES256", "jwk": key.jwk}),
                &json!({"jti": "p2", "htm": "POST", "htu": token_url, "iat": t}),
            ),
        ),
        (
            "alg none/hmac",
            key.sign(
                &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk}),
                &json!({"jti": "p3", "htm": "POST", "htu": token_url, "iat": t}),
            ),
        ),
        ("private key in jwk", private),
        (
            "signed by another key",
            DpopKey::new().sign(
                &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk}),
                &json!({"jti": "p4", "htm": "POST", "htu": token_url, "iat": t}),
            ),
        ),
    ];
    for (why, p) in cases {
        let r = token_request(
            &app,
            (&w.client_id, Some(&w.secret)),
            &[("grant_type", "client_credentials")],
            Some(&p),
        )
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{why}");
        assert_eq!(error_of(r).await, "invalid_dpop_proof", "{why}");
    }

    // A good proof works once; its replay is refused. The authorization-code grant here (the
    // world's client has no client-credentials grant, so use a code).
    let a = Authz::new(&w.client_id, "contacts:read");
    let p = proof(&app, &key, "POST", "/oauth2/token", None);
    let r = code_with_proof(&app, &w, &a, Some(&p)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let a = Authz::new(&w.client_id, "contacts:read");
    let r = code_with_proof(&app, &w, &a, Some(&p)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e = json(r).await;
    assert_eq!(e["error"], "invalid_dpop_proof");
    assert!(s(&e, "error_description").contains("already used"), "{e}");

    // Nonces are off by default: no DPoP-Nonce header.
    let a = Authz::new(&w.client_id, "contacts:read");
    let r = code_with_proof(&app, &w, &a, Some(&proof(&app, &key, "POST", "/oauth2/token", None))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("dpop-nonce").is_none());
}

async fn public_refresh_tokens_are_bound_to_the_key(app: TestApp) {
    let w = world(&app).await;
    let public = crate::support::another_client(
        &app,
        &w,
        NewClient {
            name: "CLI".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "contacts:read offline_access".into(),
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            public: true,
            ..Default::default()
        },
    )
    .await;
    assert!(public.secret.is_empty());
    let key = DpopKey::new();
    let a = Authz::new(&public.client_id, "contacts:read offline_access");
    let r = code_with_proof(&app, &public, &a, Some(&proof(&app, &key, "POST", "/oauth2/token", None))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t = json(r).await;
    let rt = s(&t, "refresh_token");

    let refresh = |rt: String, p: Option<String>| {
        let app = &app;
        let id = public.client_id.clone();
        async move {
            token_request(
                app,
                (&id, None),
                &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
                p.as_deref(),
            )
            .await
        }
    };
    // Without a proof, or with another key's: refused, and nothing is revoked.
    let r = refresh(rt.clone(), None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(r).await, "invalid_dpop_proof");
    let other = DpopKey::new();
    let r = refresh(rt.clone(), Some(proof(&app, &other, "POST", "/oauth2/token", None))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(r).await, "invalid_dpop_proof");
    // With the key: rotated, and the successor is bound too.
    let r = refresh(rt.clone(), Some(proof(&app, &key, "POST", "/oauth2/token", None))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t2 = json(r).await;
    assert_eq!(t2["token_type"], "DPoP");
    assert_eq!(claims(&s(&t2, "access_token"))["cnf"]["jkt"], key.jkt());
    let rt2 = s(&t2, "refresh_token");
    let r = refresh(rt2.clone(), Some(proof(&app, &other, "POST", "/oauth2/token", None))).await;
    assert_eq!(error_of(r).await, "invalid_dpop_proof");
    let r = refresh(rt2, Some(proof(&app, &key, "POST", "/oauth2/token", None))).await;
    assert_eq!(r.status(), StatusCode::OK);

    // A confidential client's refresh token is bound to its credentials, not to a key: it may
    // refresh with a new key (the new access token is bound to that one).
    let a = Authz::new(&w.client_id, "contacts:read offline_access");
    let r = code_with_proof(&app, &w, &a, Some(&proof(&app, &key, "POST", "/oauth2/token", None))).await;
    let rt = s(&json(r).await, "refresh_token");
    let r = token_request(
        &app,
        (&w.client_id, Some(&w.secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        Some(&proof(&app, &other, "POST", "/oauth2/token", None)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(claims(&s(&json(r).await, "access_token"))["cnf"]["jkt"], other.jkt());
}

async fn dpop_jkt_and_pushed_proofs_bind_the_code(app: TestApp) {
    let w = world(&app).await;
    let key = DpopKey::new();
    let other = DpopKey::new();
    // A malformed dpop_jkt goes back to the client.
    let a = Authz::new(&w.client_id, "contacts:read").with("dpop_jkt", "short");
    let r = browser().get(a.url(&app)).send().await.unwrap();
    let loc = crate::support::location(r.headers());
    assert!(loc.starts_with(REDIRECT) && loc.contains("error=invalid_request"), "{loc}");

    let a = Authz::new(&w.client_id, "contacts:read").with("dpop_jkt", &key.jkt());
    let code = code_from(&app, &authorize(&app, &browser(), &a).await, &a);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", a.verifier.as_str()),
    ];
    let c = (w.client_id.as_str(), Some(w.secret.as_str()));
    let r = token_request(&app, c, &form, None).await;
    assert_eq!(error_of(r).await, "invalid_dpop_proof", "no proof");
    let r = token_request(&app, c, &form, Some(&proof(&app, &other, "POST", "/oauth2/token", None))).await;
    assert_eq!(error_of(r).await, "invalid_dpop_proof", "another key");
    // The code was not spent by the refused attempts.
    let r = token_request(&app, c, &form, Some(&proof(&app, &key, "POST", "/oauth2/token", None))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(r).await["token_type"], "DPoP");

    // A DPoP proof sent with the pushed request binds the code the same way.
    let a = Authz::new(&w.client_id, "contacts:read");
    let ch = crate::support::challenge(&a.verifier);
    let push = |p: String, extra: Option<(&'static str, String)>| {
        let mut form = vec![
            ("response_type", "code".to_owned()),
            ("scope", a.scope.clone()),
            ("state", a.state.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_challenge", ch.clone()),
            ("code_challenge_method", "S256".to_owned()),
        ];
        form.extend(extra);
        reqwest::Client::new()
            .post(app.url("/oauth2/par"))
            .basic_auth(&w.client_id, Some(&w.secret))
            .header("DPoP", p)
            .form(&form)
            .send()
    };
    let r =
        push(proof(&app, &key, "POST", "/oauth2/par", None), Some(("dpop_jkt", other.jkt()))).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "dpop_jkt disagrees with the proof");
    assert_eq!(error_of(r).await, "invalid_dpop_proof");
    let r = push(proof(&app, &key, "POST", "/oauth2/token", None), None).await.unwrap();
    assert_eq!(error_of(r).await, "invalid_dpop_proof", "a proof for the token endpoint is not one for PAR");
    let r = push(proof(&app, &key, "POST", "/oauth2/par", None), None).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let uri = s(&json(r).await, "request_uri");
    let mut u = url::Url::parse(&app.url("/oauth2/authorize")).unwrap();
    u.query_pairs_mut().append_pair("client_id", &w.client_id).append_pair("request_uri", &uri);
    let b = browser();
    let r = b.get(u.as_str()).send().await.unwrap();
    let loc = crate::support::location(r.headers());
    let r = crate::support::sign_in(&app, &b, &loc, "ada@example.com", crate::support::PASSWORD).await;
    let loc = crate::support::location(r.headers());
    // The user consented to this client before: the consent page sends the browser straight back.
    let page = b.get(app.url(&loc)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    let code = code_from(&app, &crate::support::location(page.headers()), &a);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", a.verifier.as_str()),
    ];
    let r = token_request(&app, c, &form, Some(&proof(&app, &other, "POST", "/oauth2/token", None))).await;
    assert_eq!(error_of(r).await, "invalid_dpop_proof");
    let r = token_request(&app, c, &form, Some(&proof(&app, &key, "POST", "/oauth2/token", None))).await;
    assert_eq!(r.status(), StatusCode::OK);
}

async fn dpop_bound_clients_must_send_proofs(app: TestApp) {
    let w = world(&app).await;
    let machine = crate::support::another_client(
        &app,
        &w,
        NewClient {
            name: "Worker".into(),
            scope: "contacts:read".into(),
            grant_types: vec!["client_credentials".into()],
            workspace: Some("acme".into()),
            dpop_bound: true,
            ..Default::default()
        },
    )
    .await;
    let c = (machine.client_id.as_str(), Some(machine.secret.as_str()));
    let r = token_request(&app, c, &[("grant_type", "client_credentials")], None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(r).await, "invalid_dpop_proof");
    let key = DpopKey::new();
    let r = token_request(
        &app,
        c,
        &[("grant_type", "client_credentials")],
        Some(&proof(&app, &key, "POST", "/oauth2/token", None)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let t = json(r).await;
    assert_eq!(t["token_type"], "DPoP");
    let at = s(&t, "access_token");
    let p = proof(&app, &key, "GET", "/api/v1/contacts", Some(&at));
    assert_eq!(api(&app, &format!("DPoP {at}"), Some(&p)).await.status(), StatusCode::OK);
    // Introspection tells a resource server the token is DPoP-bound, and to which key.
    let i = crate::support::introspect(&app, &machine, &at).await;
    assert_eq!(i["token_type"], "DPoP");
    assert_eq!(i["cnf"]["jkt"], key.jkt());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonces_are_required_when_configured() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let opts =
            Options { settings: Some(Box::new(|s| s.dpop.require_nonce = true)), ..Default::default() };
        let Some(app) = TestApp::spawn_with(backend, opts).await else { continue };
        let w = world(&app).await;
        let key = DpopKey::new();
        let a = Authz::new(&w.client_id, "contacts:read");
        let r = code_with_proof(&app, &w, &a, Some(&proof(&app, &key, "POST", "/oauth2/token", None))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let nonce = r.headers()["dpop-nonce"].to_str().unwrap().to_owned();
        assert_eq!(error_of(r).await, "use_dpop_nonce");
        // A forged nonce is no better.
        let a = Authz::new(&w.client_id, "contacts:read");
        let p = key.proof_at(
            "POST",
            &app.url("/oauth2/token"),
            now(&app),
            None,
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        );
        let r = code_with_proof(&app, &w, &a, Some(&p)).await;
        assert_eq!(error_of(r).await, "use_dpop_nonce");
        let a = Authz::new(&w.client_id, "contacts:read");
        let p = key.proof_at("POST", &app.url("/oauth2/token"), now(&app), None, Some(&nonce));
        let r = code_with_proof(&app, &w, &a, Some(&p)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let at = s(&json(r).await, "access_token");

        // The guard asks for its nonce the same way (401 with DPoP-Nonce).
        let url = app.url("/api/v1/contacts");
        let r =
            api(&app, &format!("DPoP {at}"), Some(&key.proof_at("GET", &url, now(&app), Some(&at), None)))
                .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(challenge(&r).contains(r#"error="use_dpop_nonce""#), "{}", challenge(&r));
        let nonce = r.headers()["dpop-nonce"].to_str().unwrap().to_owned();
        let p = key.proof_at("GET", &url, now(&app), Some(&at), Some(&nonce));
        assert_eq!(api(&app, &format!("DPoP {at}"), Some(&p)).await.status(), StatusCode::OK);
        // Nonces expire: two windows later the old one is refused.
        app.clock.advance(time::Duration::minutes(11));
        let p = key.proof_at("GET", &url, now(&app), Some(&at), Some(&nonce));
        let r = api(&app, &format!("DPoP {at}"), Some(&p)).await;
        assert!(challenge(&r).contains("use_dpop_nonce"), "{}", challenge(&r));
    }
}

/// Replicas sharing Redis share the proof memory: a proof used at one is a replay at the other
/// (two caches with one prefix stand for two processes), and the guard uses it end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_redis_refuse_replayed_proofs() {
    use portcullis_core::replay::{ReplayCache, Use};
    use portcullis_guard::replay::RedisReplay;
    let Ok(url) = std::env::var("PORTCULLIS_TEST_REDIS_URL") else {
        portcullis_testkit::skip("shared DPoP replay test", "PORTCULLIS_TEST_REDIS_URL is not set");
        return;
    };
    let prefix = format!("portcullis-test:{}:replay:", portcullis_domain::secret::random_id(8));
    let one = RedisReplay::connect(&url, &prefix).await.unwrap();
    let two = RedisReplay::connect(&url, &prefix).await.unwrap();
    assert_eq!(one.first_use("dpop:k:j1", 0, 60_000).await, Use::First);
    assert_eq!(two.first_use("dpop:k:j1", 0, 60_000).await, Use::Replayed);
    assert_eq!(two.first_use("dpop:k:j2", 0, 60_000).await, Use::First);

    let opts = Options { redis_url: Some(url), ..Default::default() };
    let app = TestApp::spawn_with(Backend::Sqlite, opts).await.unwrap();
    let w = world(&app).await;
    let key = DpopKey::new();
    let a = Authz::new(&w.client_id, "contacts:read");
    let r = code_with_proof(&app, &w, &a, Some(&proof(&app, &key, "POST", "/oauth2/token", None))).await;
    let at = s(&json(r).await, "access_token");
    let p = proof(&app, &key, "GET", "/api/v1/contacts", Some(&at));
    assert_eq!(api(&app, &format!("DPoP {at}"), Some(&p)).await.status(), StatusCode::OK);
    let r = api(&app, &format!("DPoP {at}"), Some(&p)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).contains("already used"));
}
