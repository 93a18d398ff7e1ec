//! Logging: text for people or JSON for log pipelines, `RUST_LOG` honoured, and one line per
//! request.
//!
//! Every line is a `tracing` event. Request lines are events on a target of their own,
//! [`ACCESS_LOG`], written by a layer of their own ([`access_log`]): they are the one line logged
//! thousands of times a second, and that layer writes their few fields straight into the
//! thread's log buffer (bench scenario "quote GET /quote"). Every other event goes through
//! tracing-subscriber's formatter. Both lay a line out the same way, and a test formats the same
//! events through both and compares them, so an upgrade of tracing-subscriber cannot drift
//! unnoticed. On a terminal the formatter writes request lines too, in colour.

mod access_log;
mod sink;
use std::io::IsTerminal;
use std::time::Duration;

use axum::http::Method;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber, span};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::LogFormat;
use crate::identity::ClientIp;
use access_log::{AccessLog, Lines};

/// The target of the request lines: `RUST_LOG=info,access_log=off` silences them.
pub const ACCESS_LOG: &str = "access_log";

/// Flushes the log lines still buffered when dropped: keep it until `main` returns.
#[must_use = "dropping the guard at once would lose the last lines at exit"]
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        sink::flush();
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level. Lines go to
/// stdout in batches, written by a thread of their own; none is dropped.
pub fn init(format: LogFormat) -> LogGuard {
    sink::start();
    // Colour codes only help on a terminal; `kubectl logs` would show them as noise.
    let ansi = std::io::stdout().is_terminal();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let access = (!ansi).then_some(access_log::ToSink);
    let _ = subscriber(format, ansi, sink::MakeSinkWriter, access, filter).try_init();
    LogGuard(())
}

/// tracing-subscriber's formatter for every line, or for every line but the request lines when
/// `access` is given: those then go to the access-log layer.
///
/// The two layers split the events between them by target in `on_event`, rather than through
/// per-layer filters: with filters that disagree about a callsite, `tracing` asks every layer
/// whether it is enabled on every event, and the request line is logged on every request
/// (bench scenario "quote GET /quote").
fn subscriber<W, O>(
    format: LogFormat,
    ansi: bool,
    writer: W,
    access: Option<O>,
    filter: EnvFilter,
) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    O: Lines,
{
    let skip_requests = access.is_some();
    // Built apart, since each sits at its own depth of the stack.
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_target(false)
                    .with_ansi(ansi),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_target(false)
                    .with_ansi(ansi)
                    .json()
                    .flatten_event(true),
            ),
        ),
    };
    Registry::default()
        .with(filter)
        .with(text.map(|inner| OtherLines {
            inner,
            skip_requests,
        }))
        .with(json.map(|inner| OtherLines {
            inner,
            skip_requests,
        }))
        .with(access.map(|out| AccessLog::new(format, out)))
}

/// The formatter, handed every event but the request lines when those have a layer of their own.
struct OtherLines<L> {
    inner: L,
    skip_requests: bool,
}

impl<S: Subscriber, L: Layer<S>> Layer<S> for OtherLines<L> {
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if self.skip_requests && event.metadata().target() == ACCESS_LOG {
            return;
        }
        self.inner.on_event(event, ctx);
    }

    // The rest as the formatter would have it.
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, span: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}

/// What a request's log line says.
pub(crate) struct RequestLine<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    pub client: ClientIp,
    pub id: &'a str,
}

/// Logs a request once it has been answered. Probes and scrapes log at debug level: they come
/// every few seconds and would bury the requests people make.
pub(crate) fn log_request(line: RequestLine<'_>) {
    let probe = crate::observe::is_probe(line.path);
    // Never a made-up method in full: `other`, as the metrics label it.
    let method = crate::metrics::method_name(line.method);
    let (path, status) = (line.path, u64::from(line.status));
    // Whole microseconds: the line shows at most three decimals of a millisecond.
    let latency_ms = line.elapsed.as_micros() as f64 / 1e3;
    let client = access_log::Client(line.client.0);
    let request_id = line.id;
    match probe {
        true => tracing::debug!(
            target: ACCESS_LOG, %method, path, status, latency_ms, %client, request_id, "request"
        ),
        false => tracing::info!(
            target: ACCESS_LOG, %method, path, status, latency_ms, %client, request_id, "request"
        ),
    }
}
