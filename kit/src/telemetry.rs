//! Logging: one line per request, text for people or JSON for log pipelines, `RUST_LOG` honoured.

use std::io::IsTerminal;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing_subscriber::EnvFilter;

use crate::LogFormat;
use crate::identity::ClientIp;

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level. Safe to call
/// more than once (later calls do nothing), as tests that start several apps do.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only help on a terminal; `kubectl logs` would show them as noise.
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Logs method, path, status, latency, client and request id of every request, and makes the
/// id the task's current one for the handler (see `request_id`).
pub async fn log_request(client: ClientIp, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Probes and scrapes come every few seconds and would bury the requests people make.
    let quiet = path.starts_with("/healthz/") || path == "/metrics";
    let id = request.headers().get(crate::request_id::HEADER).cloned();
    let request_id = id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let response = crate::request_id::scope(id, next.run(request)).await;
    let status = response.status().as_u16();
    // Microsecond precision is plenty, and keeps the lines short.
    let latency_ms = (start.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let client = client.0;
    if quiet {
        tracing::debug!(%method, %path, status, latency_ms, %client, %request_id, "request");
    } else {
        tracing::info!(%method, %path, status, latency_ms, %client, %request_id, "request");
    }
    response
}
