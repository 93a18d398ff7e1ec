//! Prometheus metrics, `GET /metrics` on the main port. Every app instance owns its registry,
//! kept in its state: the local suite runs several services in one process, and tests run apps
//! side by side, so a process-global recorder would mix their counts.

use axum::extract::{MatchedPath, State};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::fmt::{self, Write};
use std::sync::Arc;

use crate::Health;

/// Latency buckets from 0.5 ms to about 4 s, doubling.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: MethodLabel,
    /// The route template (`/questions/{id}`), never the raw path: one series per route.
    route: RouteLabel,
    status: u16,
}

/// Label values that wrap what the request already holds: looking up a series on every
/// request then allocates nothing.
///
/// Only the standard methods are kept (see [`method_name`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct MethodLabel(&'static str);

impl MethodLabel {
    fn of(method: &Method) -> Self {
        MethodLabel(method_name(method))
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.0)
    }
}

/// A request's method as the metrics' labels and the access log name it: one of the nine
/// standard methods, or `other`. hyper accepts any token as a method, up to the head's 16 KiB:
/// a label per made-up method would let a client grow `/metrics` without bound, and a log line
/// would carry whatever a client sent.
pub(crate) fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[derive(Clone, Debug)]
struct RouteLabel(Option<MatchedPath>);

impl RouteLabel {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for RouteLabel {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RouteLabel {}

impl std::hash::Hash for RouteLabel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for RouteLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// What every service measures about the requests it serves.
#[derive(Clone)]
pub(crate) struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RequestLabels>,
    in_flight: Gauge,
    ready: Gauge,
    /// Tells this app's series apart from another app's in the same process (tests, the suite).
    app: usize,
}

/// A label set's counter and histogram, as a thread last looked them up.
struct Series {
    app: usize,
    labels: RequestLabels,
    requests: Counter,
    latency: Histogram,
}

thread_local! {
    /// Looking a series up in its family hashes the labels under the family's lock, twice per
    /// request; a service answers on a handful of series, which each thread keeps at hand.
    static SERIES: std::cell::RefCell<Vec<Series>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// More distinct series than this per thread (a scan of odd paths, say) are looked up in the
/// families each time instead.
const SERIES_PER_THREAD: usize = 32;

impl HttpMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = HttpMetrics {
            requests: Family::default(),
            latency: HistogramFamily::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            ready: Gauge::default(),
            app: {
                static APPS: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                APPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
        };
        registry.register(
            "http_requests",
            "HTTP requests served",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            metrics.latency.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being answered now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "ready",
            "1 while the readiness probe passes, 0 while it fails",
            metrics.ready.clone(),
        );
        metrics
    }
}

impl HttpMetrics {
    /// A request starts: one more in flight until the token is dropped — when the request is
    /// answered, or abandoned because the client went away.
    pub(crate) fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts and times a finished request by method, route template and status.
    pub(crate) fn finish(
        &self,
        method: &Method,
        route: Option<MatchedPath>,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        let labels = RequestLabels {
            method: MethodLabel::of(method),
            route: RouteLabel(route),
            status,
        };
        let seconds = elapsed.as_secs_f64();
        SERIES.with(|series| {
            let mut series = series.borrow_mut();
            if let Some(known) = series
                .iter()
                .find(|s| s.app == self.app && s.labels == labels)
            {
                known.requests.inc();
                known.latency.observe(seconds);
                return;
            }
            let requests = self.requests.get_or_create_owned(&labels);
            let latency = self.latency.get_or_create_owned(&labels);
            requests.inc();
            latency.observe(seconds);
            if series.len() < SERIES_PER_THREAD {
                let app = self.app;
                series.push(Series {
                    app,
                    labels,
                    requests,
                    latency,
                });
            }
        });
    }
}

/// A request [`HttpMetrics::start`] counted in flight.
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[derive(Clone)]
pub(crate) struct Exposition {
    pub registry: Arc<Registry>,
    pub health: Health,
    pub http: HttpMetrics,
}

/// `GET /metrics`, in the OpenMetrics text format Prometheus reads.
pub(crate) async fn expose(State(exposition): State<Exposition>) -> Response {
    exposition
        .http
        .ready
        .set(i64::from(exposition.health.is_ready()));
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &exposition.registry) {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}\n"),
        )
            .into_response();
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
