//! `bench/roundtrips`: how many statements each operation sends to the database, on SQLite and
//! (with `PORTCULLIS_TEST_POSTGRES_URL`) PostgreSQL: a full authorization-code flow from the
//! authorization request through sign-in and consent to the first token, a refresh, a
//! client-credentials token, an introspection, and guarded API calls with an API key and a JWT
//! (first call and cached). Counted in-process by `portcullis_store_sql::round_trips` (every
//! statement, and `BEGIN`/`COMMIT` of each transaction); audit-log appends are batched in the
//! background and not part of any one request, so they are not counted. Target for the full
//! authorization-code flow: at most 15 (Hydra needs about 81).
//!
//! ```sh
//! cargo bench -p portcullis-server --bench roundtrips
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::admin::NewClient;
use portcullis_store_sql::round_trips::statements;
use portcullis_testkit::{Backend, TestApp};
use reqwest::header::LOCATION;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

const REDIRECT: &str = "https://app.example/callback";
const PASSWORD: &str = "correct horse battery staple";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        println!("{:<48}{:>8}{:>12}", "operation", "SQLite", "PostgreSQL");
        let sqlite = run(Backend::Sqlite).await.expect("sqlite");
        let postgres = run(Backend::Postgres).await;
        for (i, (name, n)) in sqlite.iter().enumerate() {
            let pg = postgres.as_ref().map_or("-".to_owned(), |p| p[i].1.to_string());
            println!("{name:<48}{n:>8}{pg:>12}");
        }
        let flow = sqlite.iter().filter(|(n, _)| n.starts_with("flow:")).map(|(_, c)| c).sum::<u64>();
        println!("{:<48}{flow:>8}   (target: at most 15)", "full authorization-code flow (sum of flow:)");
    });
}

/// Statements sent while `f` runs.
async fn measure<F: std::future::Future<Output = T>, T>(out: &mut Vec<(String, u64)>, name: &str, f: F) -> T {
    let before = statements();
    let v = f.await;
    out.push((name.to_owned(), statements() - before));
    v
}

fn hidden(html: &str, name: &str) -> String {
    let needle = format!(r#"name="{name}" value=""#);
    let i = html.find(&needle).unwrap_or_else(|| panic!("no {name} in page")) + needle.len();
    html[i..i + html[i..].find('"').unwrap()]
        .replace("&#x2B;", "+")
        .replace("&#x2F;", "/")
        .replace("&#x3D;", "=")
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[LOCATION].to_str().unwrap().to_owned()
}

async fn run(backend: Backend) -> Option<Vec<(String, u64)>> {
    let app = TestApp::spawn(backend).await?;
    app.create_workspace("acme").await;
    app.create_user("ada@example.com", PASSWORD).await;
    app.add_member("acme", "ada@example.com", "contacts:read contacts:write").await;
    let client = app
        .create_client(NewClient {
            name: "App".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "openid contacts:read offline_access".into(),
            ..Default::default()
        })
        .await;
    let (id, secret) = (client.client.id.to_string(), client.secret.unwrap().expose_secret().to_owned());
    let machine = app
        .create_client(NewClient {
            name: "Worker".into(),
            scope: "contacts:read".into(),
            grant_types: vec!["client_credentials".into()],
            workspace: Some("acme".into()),
            ..Default::default()
        })
        .await;
    let (mid, msecret) = (machine.client.id.to_string(), machine.secret.unwrap().expose_secret().to_owned());
    let key = app.api_key("acme", "contacts:read").await;
    let b = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let mut out = Vec::new();

    let verifier = URL_SAFE_NO_PAD.encode([7u8; 32]);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let mut u = url::Url::parse(&app.url("/oauth2/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid contacts:read offline_access")
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let login = measure(&mut out, "flow: authorization request", async {
        location(&b.get(u.as_str()).send().await.unwrap())
    })
    .await;
    let html = measure(&mut out, "flow: sign-in page", async {
        b.get(app.url(&login)).send().await.unwrap().text().await.unwrap()
    })
    .await;
    let consent = measure(&mut out, "flow: sign in", async {
        let form = [
            ("email", "ada@example.com".to_owned()),
            ("password", PASSWORD.to_owned()),
            ("csrf", hidden(&html, "csrf")),
            ("req", hidden(&html, "req")),
        ];
        location(&b.post(app.url("/login")).form(&form).send().await.unwrap())
    })
    .await;
    let html = measure(&mut out, "flow: consent page", async {
        b.get(app.url(&consent)).send().await.unwrap().text().await.unwrap()
    })
    .await;
    let callback = measure(&mut out, "flow: allow", async {
        let ws = {
            let i = html.find(r#"<option value=""#).unwrap() + 15;
            html[i..i + html[i..].find('"').unwrap()].to_owned()
        };
        let form = [
            ("csrf", hidden(&html, "csrf")),
            ("req", hidden(&html, "req")),
            ("workspace", ws),
            ("decision", "allow".into()),
        ];
        location(&b.post(app.url("/consent")).form(&form).send().await.unwrap())
    })
    .await;
    let code =
        url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let tokens: serde_json::Value = measure(&mut out, "flow: code → tokens", async {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ];
        let r = http
            .post(app.url("/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    })
    .await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_owned();
    measure(&mut out, "refresh (rotation)", async {
        let form = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str())];
        let r = http
            .post(app.url("/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    })
    .await;
    let at: String = measure(&mut out, "client_credentials token", async {
        let r = http
            .post(app.url("/oauth2/token"))
            .basic_auth(&mid, Some(&msecret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
    })
    .await;
    measure(&mut out, "introspection", async {
        let r = http
            .post(app.url("/oauth2/introspect"))
            .basic_auth(&mid, Some(&msecret))
            .form(&[("token", at.as_str())])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    })
    .await;
    for (name, token) in [("API key", key.as_str()), ("JWT", at.as_str())] {
        for when in ["first", "cached"] {
            measure(&mut out, &format!("guarded API call, {name}, {when}"), async {
                let r = http.get(app.url("/api/v1/contacts")).bearer_auth(token).send().await.unwrap();
                assert!(r.status().is_success());
            })
            .await;
        }
    }
    Some(out)
}
