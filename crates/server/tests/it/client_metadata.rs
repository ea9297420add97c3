//! Client ID Metadata Documents: an https `client_id` resolved by fetching it from a local https
//! server (its own test CA), cached per `Cache-Control`; and every refusal (client_id mismatch,
//! oversize, wrong type, redirect to another host, unknown redirect URI, private addresses).

use crate::support::{Authz, REDIRECT, browser, code_from, json, location, s, world};
use axum::http::{HeaderValue, StatusCode as AxStatus, header};
use axum::response::IntoResponse;
use axum::routing::get;
use portcullis_testkit::{Backend, Options, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A CA and a certificate for 127.0.0.1 signed by it, made with the openssl CLI.
fn certificates(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out =
            std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca"],
    ]
    .concat());
    run(&[&["req"][..], &ec, &["-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    dir.join("ca.pem")
}

/// Serves `router` over https on 127.0.0.1; returns its origin.
async fn serve_https(router: axum::Router, dir: &Path) -> String {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject};
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    origin
}

/// The documents the tests serve, by path, with a fetch counter.
async fn documents(dir: &Path, fetches: Arc<AtomicUsize>) -> String {
    let listener_origin = Arc::new(std::sync::OnceLock::<String>::new());
    let o = listener_origin.clone();
    let doc = move |path: &'static str, edit: fn(&mut serde_json::Value)| {
        let o = o.clone();
        let fetches = fetches.clone();
        get(move || {
            let o = o.clone();
            let fetches = fetches.clone();
            async move {
                fetches.fetch_add(1, Ordering::SeqCst);
                let origin = o.get().cloned().unwrap_or_default();
                let mut v = json!({
                    "client_id": format!("{origin}{path}"),
                    "client_name": "Doc App",
                    "redirect_uris": [REDIRECT],
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "scope": "contacts:read offline_access",
                });
                edit(&mut v);
                let mut r = axum::Json(v).into_response();
                r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=600"));
                r
            }
        })
    };
    let router = axum::Router::new()
        .route("/app.json", doc("/app.json", |_| {}))
        .route(
            "/mismatch.json",
            doc("/mismatch.json", |v| v["client_id"] = json!("https://elsewhere.example/app.json")),
        )
        .route(
            "/secret.json",
            doc("/secret.json", |v| v["token_endpoint_auth_method"] = json!("client_secret_basic")),
        )
        .route("/huge.json", doc("/huge.json", |v| v["client_name"] = json!("x".repeat(8000))))
        .route("/text.json", get(|| async { "not json" }))
        .route("/missing.json", get(|| async { AxStatus::NOT_FOUND }))
        .route(
            "/moved.json",
            get(|| async {
                // Another host (localhost is not 127.0.0.1, whatever it resolves to).
                (AxStatus::FOUND, [(header::LOCATION, "https://localhost:1/app.json")])
            }),
        );
    let origin = serve_https(router, dir).await;
    listener_origin.set(origin.clone()).unwrap();
    origin
}

fn options(ca: PathBuf) -> Options {
    Options {
        settings: Some(Box::new(move |s| {
            s.client_metadata.allow_private_addresses = true;
            s.client_metadata.ca_file = Some(ca);
        })),
        ..Default::default()
    }
}

/// Starts an authorization for `client_id`: the first response.
async fn start(app: &TestApp, b: &reqwest::Client, client_id: &str) -> (Authz, reqwest::Response) {
    let a = Authz::new(client_id, "contacts:read");
    let r = b.get(a.url(app)).send().await.unwrap();
    (a, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_documents_identify_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certificates(dir.path());
    let fetches = Arc::new(AtomicUsize::new(0));
    let origin = documents(dir.path(), fetches.clone()).await;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::spawn_with(backend, options(ca.clone())).await else { continue };
        fetches.store(0, Ordering::SeqCst);
        let _w = world(&app).await;
        let m: serde_json::Value = reqwest::get(app.url("/.well-known/oauth-authorization-server"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(m["client_id_metadata_document_supported"], true);

        let client_id = format!("{origin}/app.json");
        let b = browser();
        let (a, r) = start(&app, &b, &client_id).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
        let loc = location(r.headers());
        let r = crate::support::sign_in(&app, &b, &loc, "ada@example.com", crate::support::PASSWORD).await;
        let consent = location(r.headers());
        let html = b.get(app.url(&consent)).send().await.unwrap().text().await.unwrap();
        assert!(html.contains("Doc App") && html.contains("Unverified app"), "{html}");
        assert!(html.contains("<code>app.example</code>"), "the consent page names the redirect host");
        let r = crate::support::answer_consent(&app, &b, &consent, None, true).await;
        let code = code_from(&app, &location(r.headers()), &a);
        let t = reqwest::Client::new()
            .post(app.url("/oauth2/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", client_id.as_str()),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", a.verifier.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(t.status(), StatusCode::OK);
        let t = json(t).await;
        assert_eq!(crate::support::claims(&s(&t, "access_token"))["client_id"], client_id);
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "fetched once, then served from our copy");

        // Only the document's redirect URIs are accepted.
        let a = Authz::new(&client_id, "contacts:read").with("redirect_uri", "https://evil.example/cb");
        let mut a = a;
        a.redirect_uri = None;
        let r = b.get(a.url(&app)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "an unknown redirect URI is never redirected to");

        // After max-age (600 s) it is fetched again.
        app.clock.advance(time::Duration::minutes(11));
        let (_, r) = start(&app, &browser(), &client_id).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metadata_documents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = certificates(dir.path());
    let origin = documents(dir.path(), Arc::default()).await;
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options(ca)).await else { return };
    let cases = [
        ("/mismatch.json", "does not equal its URL"),
        ("/secret.json", "not supported for metadata documents"),
        ("/huge.json", "larger than"),
        ("/text.json", "application/json"),
        ("/missing.json", "404"),
        ("/moved.json", "could not be fetched"),
        ("/a/../app.json", "dot segments"),
    ];
    for (path, why) in cases {
        let (_, r) = start(&app, &browser(), &format!("{origin}{path}")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let html = r.text().await.unwrap();
        assert!(html.contains(why), "{path}: {html}");
    }
    // The token endpoint refuses such a client the same way.
    let r = reqwest::Client::new()
        .post(app.url("/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &format!("{origin}/mismatch.json")),
            ("refresh_token", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(r).await["error"], "invalid_client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_not_fetched() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let fetches = Arc::new(AtomicUsize::new(0));
    let origin = documents(dir.path(), fetches.clone()).await;
    let port = origin.rsplit(':').next().unwrap().to_owned();
    // Default settings: loopback and private addresses are refused, by literal or by name.
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    for client_id in [format!("{origin}/app.json"), format!("https://localhost:{port}/app.json")] {
        let (_, r) = start(&app, &browser(), &client_id).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{client_id}");
        let html = r.text().await.unwrap();
        assert!(html.contains("public address"), "{client_id}: {html}");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 0, "nothing was fetched");
}
