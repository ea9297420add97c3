//! `bench/guard`: requests/s and p50/p99 latency of one reference-API route (list contacts, 20
//! contacts, SQLite) four ways — with no authentication (the same handler mounted without the
//! guard), with an API key, with a JWT access token (client credentials), and through gateway
//! mode (guarded, then proxied to the unauthenticated server) — and the ratio of each to the
//! unauthenticated figure. Target: authenticated ≥ 0.7× unauthenticated.
//!
//! The load generator is built in (no oha/wrk needed): `--concurrency` closed-loop workers on
//! keep-alive connections for `--seconds` per scenario after a one-second warm-up. Client and
//! servers share the machine, so compare ratios within one run rather than absolute figures
//! across machines.
//!
//! ```sh
//! cargo bench -p portcullis-server --bench guard -- --seconds 10 --concurrency 32
//! ```

use portcullis_core::Cx;
use portcullis_core::scopes::Catalogue;
use portcullis_core::settings::Settings;
use portcullis_domain::SystemClock;
use portcullis_guard::{CredentialKind, Principal};
use portcullis_http::Protection;
use portcullis_http::gateway::{GatewayRoute, RouteConfig, parse_routes};
use portcullis_store_sqlite::SqliteStore;
use secrecy::ExposeSecret;
use std::sync::Arc;

const PATH: &str = "/api/v1/contacts";
const GATEWAY_PATH: &str = "/bench/api/v1/contacts";

mod common;
use common::{Args, args, load, serve};

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(bench(a));
}

async fn bench(a: Args) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::connect(&format!("sqlite://{}", dir.path().join("bench.db").display())).await.unwrap();
    let guarded = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", guarded.local_addr().unwrap());
    let open_base = format!("http://{}", open.local_addr().unwrap());
    let cx = Cx::init(store, Arc::new(SystemClock), Settings::new(base.clone()), Catalogue::builtin(), None)
        .await
        .unwrap();

    // A workspace with 20 contacts, an API key and a client-credentials client.
    let (ws, key) = common::bench_workspace(&cx).await;
    let client = common::bench_client(&cx).await;

    let gateway: Vec<GatewayRoute> = parse_routes(
        &[RouteConfig {
            method: "GET".into(),
            path: GATEWAY_PATH.into(),
            scopes: vec!["contacts:read".into()],
            upstream: open_base.clone(),
            pii: true,
            resource: None,
        }],
        &cx.catalogue,
    )
    .unwrap();
    serve(guarded, portcullis_http::router_with(cx.clone(), Protection { gateway, ..Default::default() }))
        .await;
    let principal = Principal {
        workspace_id: ws.id.clone(),
        kind: CredentialKind::ApiKey,
        credential_id: "none".into(),
        scopes: portcullis_domain::ScopeSet::parse("contacts:read").unwrap(),
        user_id: None,
        client_id: None,
        grant_id: None,
        minted_by: None,
        ip: "127.0.0.1".parse().unwrap(),
        rate_limit: None,
    };
    let unguarded = portcullis_http::reference::unguarded_contact_list(PATH, principal.clone())
        .merge(portcullis_http::reference::unguarded_contact_list(GATEWAY_PATH, principal))
        .with_state(cx.clone());
    serve(open, unguarded).await;

    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/oauth2/token"))
        .basic_auth(client.client.id.as_str(), client.secret.as_ref().map(|s| s.expose_secret()))
        .form(&[("grant_type", "client_credentials"), ("scope", "contacts:read")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = token["access_token"].as_str().unwrap().to_owned();

    println!(
        "bench/guard: GET {PATH} (20 contacts, SQLite), {} workers, {} s per scenario",
        a.concurrency, a.seconds
    );
    println!(
        "{:<14} {:>10} {:>9} {:>9} {:>7} {:>8}",
        "scenario", "req/s", "p50 ms", "p99 ms", "errors", "ratio"
    );
    let scenarios: [(&str, String, Option<&str>); 4] = [
        ("no auth", format!("{open_base}{PATH}"), None),
        ("api key", format!("{base}{PATH}"), Some(&key)),
        ("jwt", format!("{base}{PATH}"), Some(&jwt)),
        ("gateway", format!("{base}{GATEWAY_PATH}"), Some(&key)),
    ];
    let mut baseline = None;
    let mut worst: f64 = f64::INFINITY;
    for (name, url, bearer) in scenarios {
        let f = load(&url, bearer, &a).await;
        let base_rps = *baseline.get_or_insert(f.rps);
        let ratio = f.rps / base_rps;
        if bearer.is_some() && name != "gateway" {
            worst = worst.min(ratio);
        }
        println!(
            "{name:<14} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>7.2}x",
            f.rps, f.p50_ms, f.p99_ms, f.errors, ratio
        );
    }
    println!(
        "authenticated/unauthenticated (worst of api key, jwt): {worst:.2}x — target 0.70x: {}",
        if worst >= 0.7 { "met" } else { "NOT met" }
    );
}
