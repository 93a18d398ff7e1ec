//! Logging and per-request observation: one log line per request (text for people or JSON for
//! log pipelines, `RUST_LOG` honoured), the request's metrics, and its `X-Request-Id`.

use std::io::IsTerminal;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::LogFormat;
use crate::identity::ClientIp;
use crate::metrics::HttpMetrics;
use crate::request_id;

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

/// What [`observe`] records into; the admin listener has no metrics of its own.
#[derive(Clone)]
pub(crate) struct Observer {
    pub metrics: Option<HttpMetrics>,
}

/// One pass per request, in this order: take or make its `X-Request-Id`, run the request with
/// the id as the task's current one (kiada forwards it), return the id, count and time the
/// request by route template, and log one line with method, path, status, latency, client and
/// id. Probes and scrapes log at debug level: they come every few seconds and would bury the
/// requests people make.
pub(crate) async fn observe(
    State(observer): State<Observer>,
    client: ClientIp,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = match request.headers().get(request_id::HEADER) {
        Some(id) => id.clone(),
        None => {
            let id = request_id::make();
            request.headers_mut().insert(request_id::HEADER, id.clone());
            id
        }
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let in_flight = observer.metrics.as_ref().map(HttpMetrics::start);

    let mut response = request_id::scope(id.clone(), next.run(request)).await;
    response
        .headers_mut()
        .insert(request_id::HEADER, id.clone());

    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let (Some(metrics), Some(in_flight)) = (&observer.metrics, in_flight) {
        metrics.finish(in_flight, &method, route.as_ref(), status, elapsed);
    }
    log(&method, &path, status, elapsed, client, &id);
    response
}

fn log(
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
