//! The HTTP stack's ceiling on this machine, for `bench/peers`: an axum server (same axum, tokio
//! and runtime settings as `portcullis serve`) whose one route answers a small JSON document.
//!
//!     cargo run --release -p portcullis-server --example hello -- 127.0.0.1:0
//!
//! Prints `listening on ADDR` once it accepts connections.

use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hello", get(|| async { ([("content-type", "application/json")], r#"{"hello":"world"}"#) }));
    axum::serve(listener, app).await
}
