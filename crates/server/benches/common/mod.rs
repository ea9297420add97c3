//! What the benchmarks share: flags, the closed-loop load generator and a server spawner.

#![allow(dead_code, reason = "each bench uses part of this")]

use std::net::SocketAddr;
use std::time::Duration;

pub struct Args {
    pub seconds: u64,
    pub concurrency: usize,
    /// Other `--name value` flags, for the bench to read.
    pub extra: Vec<(String, String)>,
}

pub fn args() -> Args {
    let mut a = Args { seconds: 10, concurrency: 32, extra: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number after the flag");
        match flag.as_str() {
            "--seconds" => a.seconds = value() as u64,
            "--concurrency" => a.concurrency = value(),
            "--bench" => {}
            other if other.starts_with("--") => a.extra.push((
                other.trim_start_matches("--").to_owned(),
                it.next().expect("a value after the flag"),
            )),
            other => panic!("unknown argument {other}; use --seconds N --concurrency N"),
        }
    }
    a
}

pub struct Figures {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: usize,
}

/// Measuring wall time is the point of a benchmark.
#[allow(clippy::disallowed_methods)]
pub fn now() -> std::time::Instant {
    std::time::Instant::now()
}

pub async fn load(url: &str, bearer: Option<&str>, a: &Args) -> Figures {
    let client = reqwest::Client::builder().pool_max_idle_per_host(a.concurrency).build().unwrap();
    let run = |secs: f64| {
        let (client, url, bearer) = (client.clone(), url.to_owned(), bearer.map(str::to_owned));
        let workers = a.concurrency;
        async move {
            let deadline = now() + Duration::from_secs_f64(secs);
            let tasks: Vec<_> = (0..workers)
                .map(|_| {
                    let (client, url, bearer) = (client.clone(), url.clone(), bearer.clone());
                    tokio::spawn(async move {
                        let (mut lat, mut errors) = (Vec::new(), 0usize);
                        while now() < deadline {
                            let t = now();
                            let mut req = client.get(&url);
                            if let Some(b) = &bearer {
                                req = req.bearer_auth(b);
                            }
                            match req.send().await {
                                Ok(r) if r.status().is_success() => {
                                    let _ = r.bytes().await;
                                    lat.push(t.elapsed());
                                }
                                _ => errors += 1,
                            }
                        }
                        (lat, errors)
                    })
                })
                .collect();
            let (mut all, mut errors) = (Vec::new(), 0);
            for t in tasks {
                let (l, e) = t.await.unwrap();
                all.extend(l);
                errors += e;
            }
            (all, errors)
        }
    };
    run(1.0).await; // warm-up: connections, caches
    let started = now();
    let (mut lat, errors) = run(a.seconds as f64).await;
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Figures { rps: lat.len() as f64 / elapsed, p50_ms: pct(0.50), p99_ms: pct(0.99), errors }
}

pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) {
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
}

impl Args {
    /// The value of `--name`, parsed, or `default`.
    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map_or(default, |(_, v)| v.parse().unwrap_or_else(|_| panic!("--{name}: cannot parse {v:?}")))
    }
}

/// A workspace `bench` with 20 contacts and an API key holding `contacts:read`; returns the
/// workspace and the key's secret.
pub async fn bench_workspace<S: portcullis_store::Store>(
    cx: &portcullis_core::Cx<S>,
) -> (portcullis_store::Workspace, String) {
    use portcullis_core::reference::{ContactInput, ReferenceApi};
    let admin = cx.admin();
    let ws = admin.create_workspace("bench", None).await.unwrap();
    let api = ReferenceApi::new(&cx.store, &cx.clock, &ws.id);
    for i in 0..20 {
        let c = ContactInput {
            name: format!("Contact {i}"),
            email: Some(format!("c{i}@example.com")),
            ..Default::default()
        };
        api.create_contact(c).await.unwrap();
    }
    let key = admin
        .create_key(
            &portcullis_core::events::Actor::cli(),
            &ws,
            portcullis_core::api_keys::NewKey {
                name: "bench".into(),
                scope: Some("contacts:read".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    (ws, key.secret.expose().to_owned())
}

/// The bench's client-credentials client in workspace `bench`, allowed `contacts:read`.
pub async fn bench_client<S: portcullis_store::Store>(
    cx: &portcullis_core::Cx<S>,
) -> portcullis_core::admin::CreatedClient {
    cx.admin()
        .create_client(portcullis_core::admin::NewClient {
            name: "bench".into(),
            scope: "contacts:read".into(),
            grant_types: vec!["client_credentials".into()],
            workspace: Some("bench".into()),
            ..Default::default()
        })
        .await
        .unwrap()
}
