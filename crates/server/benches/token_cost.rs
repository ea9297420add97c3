//! `token_cost`: CPU time of one client-credentials token request inside the process, without
//! sockets: the router is called directly (`tower::ServiceExt::oneshot`) on one thread, next to
//! the same request to a bare axum route and to the ES256 signature alone. It shows what the
//! token endpoint spends beyond the HTTP stack's ceiling and the signature, the part
//! `bench/peers` cannot isolate from kernel and load-generator noise.
//!
//! ```sh
//! cargo bench -p portcullis-server --bench token_cost -- --seconds 3
//! ```

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, header};
use portcullis_core::Cx;
use portcullis_core::scopes::Catalogue;
use portcullis_core::settings::Settings;
use portcullis_domain::SystemClock;
use portcullis_store_sqlite::SqliteStore;
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

mod common;
use common::{args, now};

fn main() {
    let a = args();
    // Logging as `portcullis serve` sets it up by default (JSON lines, `warn,portcullis=info`),
    // written nowhere: span and event costs are counted, output is not.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,portcullis=info"))
        .with_writer(std::io::sink)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .init();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(bench(a.seconds as f64));
}

/// Calls `make()` repeatedly for `secs` (after a warm-up) and returns microseconds per call:
/// the fastest of 20 rounds, since on a shared machine other work only ever adds time.
async fn per_call<F, Fut>(secs: f64, mut make: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..2000 {
        make().await;
    }
    let mut best = f64::MAX;
    for _ in 0..20 {
        let (start, mut n) = (now(), 0u64);
        while (now() - start).as_secs_f64() < secs / 20.0 {
            for _ in 0..100 {
                make().await;
            }
            n += 100;
        }
        best = best.min((now() - start).as_secs_f64() * 1e6 / n as f64);
    }
    best
}

/// One request through `app`, its body read to the end.
async fn call(app: axum::Router, req: Request<Body>) {
    let resp = app.oneshot(req).await.unwrap();
    let _ = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
}

async fn bench(secs: f64) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::connect(&format!("sqlite://{}", dir.path().join("bench.db").display())).await.unwrap();
    let base = "http://127.0.0.1:8080".to_owned();
    let cx = Cx::init(store, Arc::new(SystemClock), Settings::new(base), Catalogue::builtin(), None)
        .await
        .unwrap();
    cx.admin().create_workspace("bench", None).await.unwrap();
    let client = common::bench_client(&cx).await;
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        client.client.id,
        client.secret.as_ref().unwrap().expose_secret()
    );
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let request = |path: &str, body: &str| {
        let mut r = Request::post(path)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body.to_owned()))
            .unwrap();
        r.extensions_mut().insert(ConnectInfo(peer));
        r
    };

    let app = portcullis_http::router(cx.clone());
    let check = app.clone().oneshot(request("/oauth2/token", &form)).await.unwrap();
    assert_eq!(check.status(), 200, "the token request must succeed");
    let token_us = per_call(secs, || call(app.clone(), request("/oauth2/token", &form))).await;

    let hello = axum::Router::new().route(
        "/hello",
        axum::routing::post(|| async { ([("content-type", "application/json")], r#"{"hello":"world"}"#) }),
    );
    let hello_us = per_call(secs, || call(hello.clone(), request("/hello", &form))).await;

    let claims = serde_json::json!({ "iss": "http://127.0.0.1:8080", "sub": client.client.id.to_string() });
    let sign_us = per_call(secs, || {
        let t = cx.keys.sign("at+jwt", &claims, cx.now());
        async move {
            t.unwrap();
        }
    })
    .await;

    println!("in-process, one thread, no sockets (microseconds per request)");
    println!("  token request (client_credentials) {token_us:>8.1}");
    println!("  bare axum route, same request      {hello_us:>8.1}");
    println!("  ES256 signature (Keyring::sign)    {sign_us:>8.1}");
    println!("  token beyond route + signature     {:>8.1}", token_us - hello_us - sign_us);
}
