//! A scripted browser and an OAuth client for the integration tests.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::admin::NewClient;
use portcullis_testkit::TestApp;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Anything the helpers can talk to: a [`TestApp`] or a `portcullis serve` process.
pub trait Server {
    /// Where requests go.
    fn base(&self) -> &str;
    /// The issuer it was configured with (the base, unless set otherwise).
    fn issuer(&self) -> &str {
        self.base()
    }
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }
}

impl Server for TestApp {
    fn base(&self) -> &str {
        &self.base
    }
}

pub const PASSWORD: &str = "correct horse battery staple";
pub const REDIRECT: &str = "https://app.example/callback";

/// A cookie-keeping client that does not follow redirects (we check every hop).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub fn verifier() -> String {
    let mut b = [0u8; 32];
    rand_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn rand_bytes(b: &mut [u8]) {
    rand::fill(b);
}

/// A workspace `acme` with user `ada@example.com` (contacts:read contacts:write) and a
/// confidential client allowed `openid profile email contacts:read contacts:write contacts:delete
/// offline_access`.
#[derive(Clone)]
pub struct World {
    pub client_id: String,
    pub secret: String,
    pub workspace_id: String,
    pub user_id: String,
}

pub async fn world(app: &TestApp) -> World {
    let ws = app.create_workspace("acme").await;
    let u = app.create_user("ada@example.com", PASSWORD).await;
    app.add_member("acme", "ada@example.com", "contacts:read contacts:write").await;
    let c = app
        .create_client(NewClient {
            name: "Zapier".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "openid profile email contacts:read contacts:write contacts:delete offline_access".into(),
            ..Default::default()
        })
        .await;
    use secrecy::ExposeSecret;
    World {
        client_id: c.client.id.to_string(),
        secret: c.secret.unwrap().expose_secret().to_owned(),
        workspace_id: ws.id.to_string(),
        user_id: u.id.to_string(),
    }
}

pub fn location(h: &HeaderMap) -> String {
    h.get(LOCATION).expect("Location header").to_str().unwrap().to_owned()
}

/// Query parameters of a URL.
pub fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// The value of `<input name="NAME" value="…">` in a page.
pub fn hidden(html: &str, name: &str) -> String {
    let re = regex::Regex::new(&format!(r#"name="{name}" value="([^"]*)""#)).unwrap();
    re.captures(html).unwrap_or_else(|| panic!("no {name} in page:\n{html}"))[1].to_owned()
}

/// The `<option value>`s of the workspace select.
pub fn options(html: &str) -> Vec<String> {
    regex::Regex::new(r#"<option value="([^"]*)""#)
        .unwrap()
        .captures_iter(html)
        .map(|c| c[1].to_owned())
        .collect()
}

/// Authorization request parameters with PKCE S256.
pub struct Authz {
    pub client_id: String,
    pub scope: String,
    pub state: String,
    pub verifier: String,
    pub redirect_uri: Option<String>,
    pub extra: Vec<(String, String)>,
}

impl Authz {
    pub fn new(client_id: &str, scope: &str) -> Self {
        Self {
            client_id: client_id.into(),
            scope: scope.into(),
            state: format!("st-{}", verifier()),
            verifier: verifier(),
            redirect_uri: Some(REDIRECT.into()),
            extra: vec![],
        }
    }

    pub fn with(mut self, k: &str, v: &str) -> Self {
        self.extra.push((k.into(), v.into()));
        self
    }

    pub fn url(&self, app: &impl Server) -> String {
        let mut u = url::Url::parse(&app.url("/oauth2/authorize")).unwrap();
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("scope", &self.scope)
                .append_pair("state", &self.state)
                .append_pair("code_challenge", &challenge(&self.verifier))
                .append_pair("code_challenge_method", "S256");
            if let Some(r) = &self.redirect_uri {
                q.append_pair("redirect_uri", r);
            }
            for (k, v) in &self.extra {
                q.append_pair(k, v);
            }
        }
        u.to_string()
    }
}

/// Signs in on the login page the authorize request led to; returns the next Location.
pub async fn sign_in(
    app: &impl Server,
    b: &reqwest::Client,
    login_location: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    assert!(login_location.starts_with("/login?req="), "{login_location}");
    let page = b.get(app.url(login_location)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<label for="email">Email</label>"#));
    assert!(html.contains(r#"<label for="password">Password</label>"#));
    assert!(html.contains(">Sign in</button>"));
    let csrf = hidden(&html, "csrf");
    let req = hidden(&html, "req");
    b.post(app.url("/login"))
        .form(&[("email", email), ("password", password), ("csrf", &csrf), ("req", &req)])
        .send()
        .await
        .unwrap()
}

/// On the consent page at `consent_location`, chooses `workspace` (or the first) and answers.
pub async fn answer_consent(
    app: &impl Server,
    b: &reqwest::Client,
    consent_location: &str,
    workspace: Option<&str>,
    allow: bool,
) -> reqwest::Response {
    let page = b.get(app.url(consent_location)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "consent page");
    let html = page.text().await.unwrap();
    let csrf = hidden(&html, "csrf");
    let req = hidden(&html, "req");
    let ws =
        workspace.map(str::to_owned).unwrap_or_else(|| options(&html).first().cloned().unwrap_or_default());
    let decision = if allow { "allow" } else { "deny" };
    b.post(app.url("/consent"))
        .form(&[("csrf", csrf.as_str()), ("req", &req), ("workspace", &ws), ("decision", decision)])
        .send()
        .await
        .unwrap()
}

/// Runs authorize → sign in → consent (Allow, first workspace) and returns the callback URL.
pub async fn authorize(app: &impl Server, b: &reqwest::Client, a: &Authz) -> String {
    let r = b.get(a.url(app)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "authorize: {}", r.text().await.unwrap_or_default());
    let mut loc = location(r.headers());
    if loc.starts_with("/login") {
        let r = sign_in(app, b, &loc, "ada@example.com", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign-in");
        loc = location(r.headers());
    }
    if loc.starts_with("/consent") {
        let page = b.get(app.url(&loc)).send().await.unwrap();
        if page.status() == StatusCode::SEE_OTHER {
            // A remembered consent: straight back to the client, as a browser would follow.
            return location(page.headers());
        }
        let r = answer_consent(app, b, &loc, None, true).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "consent");
        loc = location(r.headers());
    }
    loc
}

/// The code from a success callback, after checking `state` and `iss` (RFC 9207).
pub fn code_from(app: &impl Server, callback: &str, a: &Authz) -> String {
    assert!(callback.starts_with(REDIRECT), "{callback}");
    let q = query(callback);
    assert_eq!(q.get("state"), Some(&a.state), "state is echoed");
    assert_eq!(q.get("iss").map(String::as_str), Some(app.issuer()), "iss is the issuer");
    q.get("code").unwrap_or_else(|| panic!("no code in {callback}")).clone()
}

/// Redeems a code with client_secret_basic.
pub async fn redeem(app: &impl Server, w: &World, code: &str, verifier: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
}

pub async fn json(r: reqwest::Response) -> serde_json::Value {
    r.json().await.unwrap()
}

/// The claims of a JWT, unverified (verification is tested separately).
pub fn claims(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub fn header(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub async fn userinfo(app: &impl Server, token: &str) -> reqwest::Response {
    reqwest::Client::new().get(app.url("/oauth2/userinfo")).bearer_auth(token).send().await.unwrap()
}

/// The whole browser flow for `scope`, then the code redeemed: the token response.
pub async fn tokens_for(app: &impl Server, w: &World, b: &reqwest::Client, scope: &str) -> serde_json::Value {
    let a = Authz::new(&w.client_id, scope);
    let code = code_from(app, &authorize(app, b, &a).await, &a);
    let r = redeem(app, w, &code, &a.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    json(r).await
}

/// Like [`tokens_for`], with an RFC 8707 `resource` on the authorization request.
pub async fn tokens_for_resource(
    app: &impl Server,
    w: &World,
    b: &reqwest::Client,
    scope: &str,
    resource: &str,
) -> serde_json::Value {
    let a = Authz::new(&w.client_id, scope).with("resource", resource);
    let code = code_from(app, &authorize(app, b, &a).await, &a);
    let r = redeem(app, w, &code, &a.verifier).await;
    assert_eq!(r.status(), StatusCode::OK);
    json(r).await
}

/// `grant_type=refresh_token` with client_secret_basic.
pub async fn refresh(app: &impl Server, w: &World, token: &str, scope: Option<&str>) -> reqwest::Response {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// RFC 7662 introspection as client `w`: the raw response.
pub async fn introspect_raw(app: &impl Server, w: &World, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/oauth2/introspect"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// RFC 7662 introspection as client `w`, which must succeed.
pub async fn introspect(app: &impl Server, w: &World, token: &str) -> serde_json::Value {
    let r = introspect_raw(app, w, token).await;
    assert_eq!(r.status(), StatusCode::OK);
    json(r).await
}

/// `n` concurrent refreshes with one token, spread round-robin over `bases`. Returns the token
/// responses of the winners; every loser must have been refused with `invalid_grant`.
pub async fn refresh_race(bases: &[String], w: &World, token: &str, n: usize) -> Vec<serde_json::Value> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let (base, id, secret, rt) =
            (bases[i % bases.len()].clone(), w.client_id.clone(), w.secret.clone(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/oauth2/token"))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str())])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == StatusCode::OK {
            winners.push(body);
        } else {
            assert_eq!(body["error"], "invalid_grant", "{body}");
        }
    }
    winners
}

/// RFC 7009 revocation as client `w`.
pub async fn revoke(app: &impl Server, w: &World, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/oauth2/revoke"))
        .basic_auth(&w.client_id, Some(&w.secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// Another confidential client with the given options, as a [`World`] sharing `w`'s user.
pub async fn another_client(app: &TestApp, w: &World, c: NewClient) -> World {
    use secrecy::ExposeSecret;
    let created = app.create_client(c).await;
    World {
        client_id: created.client.id.to_string(),
        secret: created.secret.map(|s| s.expose_secret().to_owned()).unwrap_or_default(),
        workspace_id: w.workspace_id.clone(),
        user_id: w.user_id.clone(),
    }
}

/// A second plain confidential client ("Other", `contacts:read`, the usual redirect URI).
pub async fn other_client(app: &TestApp, w: &World) -> World {
    another_client(
        app,
        w,
        NewClient {
            name: "Other".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "contacts:read".into(),
            ..Default::default()
        },
    )
    .await
}

pub fn s(v: &serde_json::Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("no {k} in {v}")).to_owned()
}
