//! The `portcullis` binary: configuration, start-up and the admin CLI, as a library so tests can
//! start the very same server in-process.
//!
//! # Layout
//! - [`config`]: flags > environment > TOML file > defaults.
//! - [`Application`]: builds the server on a listener the caller binds (tests bind
//!   `127.0.0.1:0` and read the port) and runs it until a shutdown future resolves.
//! - [`backend`]: picks SQLite or PostgreSQL from the database URL.
//! - [`logging`]: the log subscriber (JSON lines for `serve`) and its span-field formatter.
//! - [`cli`]: the admin commands (`workspace`, `user`, `member`, `client`, `grant`,
//!   `signing-key`, `key`, `bundle`, `token`, `trust-policy`), human or `--json` output.

pub mod audit_cli;
pub mod backend;
pub mod cli;
pub mod config;
pub mod logging;

use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A built server, not yet running.
pub struct Application {
    listener: TcpListener,
    router: Router,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Work to finish after the last request (writing batched API key usage).
    on_stop: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Application {
    /// Wires the router for `cx` onto `listener`.
    /// Must be called inside a Tokio runtime: it starts the background key reloader and the
    /// API key usage writer.
    pub fn build<S: portcullis_store::Store>(cx: portcullis_core::Cx<S>, listener: TcpListener) -> Self {
        Self::build_with(cx, listener, portcullis_http::Protection::default())
    }

    /// [`Application::build`] with the guard's budgets and rate-limit backend.
    pub fn build_with<S: portcullis_store::Store>(
        cx: portcullis_core::Cx<S>,
        listener: TcpListener,
        protection: portcullis_http::Protection,
    ) -> Self {
        let background = vec![
            cx.spawn_key_reloader(),
            cx.spawn_usage_flusher(),
            cx.spawn_maintenance(),
            cx.spawn_audit_sinks(),
        ];
        let flush = cx.clone();
        let on_stop = Box::pin(async move {
            flush.flush_usage().await;
            // Every call answered before shutdown is in the log, and the log ends signed.
            flush.audit.flush().await;
            flush.audit_checkpoint().await;
            portcullis_core::maintenance::release(&flush).await;
        });
        Self { listener, router: portcullis_http::router_with(cx, protection), background, on_stop }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests (graceful shutdown).
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let served =
            axum::serve(self.listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(shutdown)
                .await;
        for task in self.background {
            task.abort();
        }
        self.on_stop.await;
        served
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
