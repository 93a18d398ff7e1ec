//! Logging: text for people or JSON for log pipelines, `RUST_LOG` honoured, and one line per
//! request.

use std::io::IsTerminal;

use axum::http::HeaderValue;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::LogFormat;
use crate::identity::ClientIp;

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level. Lines go to
/// stdout through a writer thread that batches them: under load many lines leave in one write,
/// instead of one system call, under a lock, per request. None is dropped: a full queue makes
/// the request wait. Keep the guard until exit; dropping it flushes what is queued.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        // The queue's slots are allocated up front: the default (128k lines) costs 4 MB of
        // memory; a few thousand lines absorb any burst the writer thread cannot batch away.
        .buffered_lines_limit(4096)
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stdout()));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        // Colour codes only help on a terminal; `kubectl logs` would show them as noise.
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}

/// The request's log line, written when it has been answered: method, path, status, latency,
/// client and id. Probes and scrapes log at debug level: they come every few seconds and would
/// bury the requests people make.
pub(crate) fn log_request(
    method: &axum::http::Method,
    path: &str,
    status: u16,
    elapsed: std::time::Duration,
    client: ClientIp,
    id: &HeaderValue,
) {
    // Microsecond precision is plenty, and keeps the lines short.
    let latency_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
    let client = client.0;
    let request_id = id.to_str().unwrap_or("-");
    if path.starts_with("/healthz/") || path == "/metrics" {
        tracing::debug!(%method, path, status, latency_ms, %client, request_id, "request");
    } else {
        tracing::info!(%method, path, status, latency_ms, %client, request_id, "request");
    }
}
