//! Baseline: the least an axum server can do per request — one HTTP hop, a constant answer.
//!   hello <port>

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: hello <port>");
    let app = Router::new().route("/", get(|| async { "Hello\n" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
