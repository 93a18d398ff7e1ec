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

/// Logs method, path, status, latency and client of every request. Probes log at debug level:
/// the kubelet calls them every few seconds and would bury the requests people make.
pub async fn log_request(client: ClientIp, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let probe = path.starts_with("/healthz/");
    let response = next.run(request).await;
    let status = response.status().as_u16();
    // Microsecond precision is plenty, and keeps the lines short.
    let latency_ms = (start.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    let client = client.0;
    if probe {
        tracing::debug!(%method, %path, status, latency_ms, %client, "request");
    } else {
        tracing::info!(%method, %path, status, latency_ms, %client, "request");
    }
    response
}
