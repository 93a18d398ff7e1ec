//! What every Kiada service shares: configuration common to all of them, the listeners and
//! their graceful shutdown, the probes, pod identity, request logging and limits.
//!
//! A service builds its own [`axum::Router`], hands it to [`App::bind`] as an [`AppSpec`]
//! together with a [`ServerConfig`] and an [`Identity`], and either [`App::run`]s it until a
//! signal (its `main.rs`) or [`App::spawn`]s it (tests and the local suite).

// Grouped by concern: flags and operator files (`config`, `config::file`); the listeners, their
// connections and the admin port; what every request goes through; logging; readiness and
// drills; identity; metrics; `Accept` negotiation.
pub mod config;
pub mod health;
pub mod identity;
pub mod metrics;
pub mod negotiate;
mod observe;
mod server;
pub mod telemetry;

pub use observe::{CONNECTION_REQUESTS, request_id};

pub use config::{LogFormat, ServerConfig};
pub use health::Health;
pub use identity::{ClientIp, Identity, IdentityArgs};
pub use server::{
    App, AppSpec, Connection, Error, Running, bind_dual_stack, main_with, shutdown_signal,
};

/// The allocator every binary installs (`#[global_allocator]`): request handling allocates and
/// frees small blocks on one thread and another, which glibc's malloc serialises on arena locks;
/// mimalloc made quote a tenth faster at the same memory (bench scenario "quote GET /quote").
pub use mimalloc::MiMalloc as Allocator;

/// The suite's version, from Cargo; every response carries it in `X-Version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Largest request body any service accepts; bigger ones get 413.
pub const BODY_LIMIT: usize = 16 * 1024;
/// Largest request head (request line and headers) a connection accepts; bigger ones get 431.
pub const HEADER_LIMIT: usize = 16 * 1024;

/// Plain-text 404 for paths no route serves, so curl users see what went wrong.
pub async fn not_found(uri: axum::http::Uri) -> (axum::http::StatusCode, String) {
    (
        axum::http::StatusCode::NOT_FOUND,
        format!("Not found: {}\n", uri.path()),
    )
}

/// How a service words the errors the shared layers answer for it (a body over the limit, a
/// request past its timeout): a line of text for curl, or the `{"error": "…"}` JSON an API
/// promises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ErrorFormat {
    #[default]
    Text,
    Json,
    /// JSON for paths under this prefix, text elsewhere (kiada's proxy routes).
    JsonUnder(&'static str),
}

impl ErrorFormat {
    pub fn response(
        self,
        path: &str,
        status: axum::http::StatusCode,
        message: String,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let json = match self {
            ErrorFormat::Text => false,
            ErrorFormat::Json => true,
            ErrorFormat::JsonUnder(prefix) => path.starts_with(prefix),
        };
        if json {
            let body = serde_json::json!({ "error": message });
            (status, axum::Json(body)).into_response()
        } else {
            (status, format!("{message}\n")).into_response()
        }
    }
}
