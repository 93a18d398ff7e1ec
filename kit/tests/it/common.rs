//! An app with a few test routes, on free ports.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use kit::{App, AppSpec, ClientIp, Identity, Running, ServerConfig};

pub fn routes() -> Router {
    Router::new()
        .route(
            "/client",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/slow",
            get(|| async {
                // Slow on purpose: a request still in flight when a test needs one.
                tokio::time::sleep(Duration::from_millis(800)).await;
                "done"
            }),
        )
        .fallback(kit::not_found)
}

pub fn start_with(config: ServerConfig) -> Running {
    let identity = Identity {
        pod_name: "pod-a".into(),
        pod_ip: "10.0.0.7".into(),
        node_name: "node-1".into(),
        ..Identity::named("pod-a")
    };
    App::bind(&config, &identity, AppSpec::new("test", routes()))
        .expect("bind")
        .spawn()
}

pub fn start() -> Running {
    start_with(ServerConfig::ephemeral())
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub use testkit::eventually;
