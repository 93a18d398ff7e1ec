//! What happens to every request, in one pass: its `X-Request-Id` is taken or made and made the
//! task's current one (kiada forwards it), it gets the request timeout, the response gets the
//! pod's identity headers, its state (`X-Pod-State`) and the id, and the request is counted,
//! timed and logged.
//!
//! This is one hand-written tower service rather than a stack of `from_fn` middlewares: it runs
//! on every request of every service, and each middleware layer costs a boxed future and a
//! service clone per request. The timeout arms its timer only when the handler does not answer
//! on the first poll, so requests answered at once (quote's tips, probes) never touch the
//! runtime's timer wheel. Against the stock parts (tower-http's request-id and
//! set-response-header layers, tower's timeout) the one pass saves about 16 % and the lazy
//! timer about 3 % of the instructions per request in the bench scenario "quote GET /quote";
//! `cargo run --release -p bench -- --compare REV` measures such a change.

mod body_deadline;
pub mod request_id;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use tokio::task::futures::TaskLocalFuture;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::health::Health;
use crate::health::drills::Faults;
use crate::identity::ClientIp;
use crate::metrics::{HttpMetrics, InFlight};
use crate::{BODY_LIMIT, ErrorFormat, Identity, telemetry};
use body_deadline::BodyReadTimeout;
use request_id::RequestId;

/// How many requests the response's connection has carried, this one included: 1 on a new
/// connection. What explains why a kept-alive client keeps reaching the same pod.
pub const CONNECTION_REQUESTS: HeaderName = HeaderName::from_static("x-connection-requests");

/// Wraps a router's routes with [`Observe`].
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    shared: Arc<Shared>,
}

struct Shared {
    /// The admin listener has no metrics of its own.
    metrics: Option<HttpMetrics>,
    identity_headers: Box<[(HeaderName, HeaderValue)]>,
    state: PodState,
    timeout: Duration,
    body_read_timeout: Duration,
    errors: ErrorFormat,
}

impl ObserveLayer {
    pub(crate) fn new(
        identity: &Identity,
        timeout: Duration,
        body_read_timeout: Duration,
        metrics: Option<HttpMetrics>,
        errors: ErrorFormat,
        state: PodState,
    ) -> Self {
        let shared = Shared {
            metrics,
            identity_headers: identity_headers(identity),
            state,
            timeout,
            body_read_timeout,
            errors,
        };
        ObserveLayer {
            shared: Arc::new(shared),
        }
    }
}

/// The headers naming this pod, made once (`X-Release` when the pod has one: stable, canary);
/// and `nosniff`, so that no browser takes a text answer echoing a path for HTML.
fn identity_headers(identity: &Identity) -> Box<[(HeaderName, HeaderValue)]> {
    let value = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("invalid"));
    let release = identity
        .release
        .as_deref()
        .map(|r| (HeaderName::from_static("x-release"), value(r)));
    [
        (
            HeaderName::from_static("x-pod-name"),
            value(&identity.pod_name),
        ),
        (HeaderName::from_static("x-pod-ip"), value(&identity.pod_ip)),
        (
            HeaderName::from_static("x-node-name"),
            value(&identity.node_name),
        ),
        (HeaderName::from_static("x-version"), value(crate::VERSION)),
        (
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ),
    ]
    .into_iter()
    .chain(release)
    .collect()
}

/// `X-Pod-State`: what this pod is doing besides serving, so that a client watching a Service
/// sees a pod still answering while it drains or after its readiness was turned off — the
/// moments between a pod failing readiness and its endpoint being removed everywhere.
///
/// Read on every response: a few atomic loads pick one of four values made once, whose clones
/// are pointer copies, so nothing is allocated or formatted per request.
#[derive(Clone)]
pub(crate) struct PodState {
    health: Health,
    faults: Faults,
    name: HeaderName,
    /// draining, disabled, fault, ready.
    values: [HeaderValue; 4],
}

impl PodState {
    pub(crate) fn new(health: Health, faults: Faults) -> Self {
        PodState {
            health,
            faults,
            name: HeaderName::from_static("x-pod-state"),
            values: ["draining", "disabled", "fault", "ready"].map(HeaderValue::from_static),
        }
    }

    /// The most telling state when several hold: a pod on its way out is `draining` whatever
    /// else is true; one taken out by hand is `disabled` even with a drill on.
    fn value(&self) -> HeaderValue {
        let i = if self.health.is_shutting_down() {
            0
        } else if self.health.is_disabled_by_admin() {
            1
        } else if self.faults.is_on() {
            2
        } else {
            3
        };
        self.values[i].clone()
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        // Handlers read it from `request_id::current()`, not from the request's headers.
        let id = request
            .headers()
            .get(request_id::HEADER)
            .and_then(RequestId::from_header)
            .unwrap_or_default();
        // One look-up for both: the extensions are a map searched on every `get`.
        let connection = request.extensions().get::<crate::Connection>().copied();
        let client = match connection {
            Some(c) => ClientIp::from_socket(c.peer),
            None => ClientIp::from_extensions(request.extensions()),
        };
        let connection_requests = connection.map(|c| c.request);
        let probes_only = connection.is_some_and(|c| c.probes_only);
        // A body still to come gets the body-read deadline; most requests have none.
        let (request, body_expired) = match hyper::body::Body::is_end_stream(request.body()) {
            true => (request, None),
            false => {
                let expired = Arc::new(AtomicBool::new(false));
                let limit = self.shared.body_read_timeout;
                let flag = expired.clone();
                let request = request.map(|body| {
                    Body::new(body_deadline::DeadlineBody::new(body, started, limit, flag))
                });
                (request, Some(expired))
            }
        };
        let record = Record {
            started,
            // Cheap clones: the method is an enum, the URI shares the request's buffer.
            method: request.method().clone(),
            uri: request.uri().clone(),
            route: request.extensions().get::<MatchedPath>().cloned(),
            client,
            _in_flight: self.shared.metrics.as_ref().map(HttpMetrics::start),
            id,
            connection_requests,
            body_expired,
        };
        // A connection past the listener's cap is for the probes and scrapes only.
        let early = if probes_only && !is_probe(record.uri.path()) {
            let message = "The service holds as many connections as it takes \
                           (--max-connections); try again shortly"
                .to_owned();
            let mut response = self.shared.errors.response(
                record.uri.path(),
                StatusCode::SERVICE_UNAVAILABLE,
                message,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Some(response)
        } else if declared_length(&request).is_some_and(|n| n > BODY_LIMIT as u64) {
            // A declared body over the limit is refused before any handler runs, whether or not
            // the route reads bodies; a body of unknown length meets the same limit as it is
            // read.
            let message = format!("The request body is larger than {BODY_LIMIT} bytes");
            Some(self.shared.errors.response(
                record.uri.path(),
                StatusCode::PAYLOAD_TOO_LARGE,
                message,
            ))
        } else {
            None
        };
        if let Some(response) = early {
            return ObserveFuture {
                inner: None,
                early: Some(response),
                deadline: None,
                record: Some(record),
                shared: self.shared.clone(),
            };
        }
        let inner = request_id::scope_sync(id, || self.inner.call(request));
        ObserveFuture {
            inner: Some(request_id::scope_future(id, inner)),
            early: None,
            deadline: None,
            record: Some(record),
            shared: self.shared.clone(),
        }
    }
}

/// What the log line and the metrics need once the response is there.
struct Record {
    started: Instant,
    method: Method,
    uri: Uri,
    route: Option<MatchedPath>,
    client: ClientIp,
    /// Counts the request out of flight when dropped, answered or not.
    _in_flight: Option<InFlight>,
    id: RequestId,
    /// Requests its connection has carried, this one included.
    connection_requests: Option<u64>,
    /// Set when the request's body did not arrive within the body-read timeout.
    body_expired: Option<Arc<AtomicBool>>,
}

pin_project_lite::pin_project! {
    pub(crate) struct ObserveFuture<F> {
        #[pin]
        inner: Option<TaskLocalFuture<RequestId, F>>,
        // The answer, when it was decided before calling the handler.
        early: Option<Response>,
        #[pin]
        deadline: Option<Sleep>,
        record: Option<Record>,
        shared: Arc<Shared>,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = match (this.inner.as_pin_mut(), this.early.take()) {
            (Some(inner), _) => inner.poll(cx),
            (None, early) => Poll::Ready(Ok(early.expect("polled after completion"))),
        };
        let response = match polled {
            Poll::Ready(Ok(response)) => response,
            Poll::Pending => {
                let record = this.record.as_ref().expect("polled after completion");
                if this.deadline.is_none() {
                    let at = record.started + this.shared.timeout;
                    this.deadline.set(Some(tokio::time::sleep_until(at.into())));
                }
                let deadline = this.deadline.as_pin_mut().expect("armed above");
                ready!(deadline.poll(cx));
                timed_out(this.shared.errors, record.uri.path(), this.shared.timeout)
            }
        };
        let record = this.record.take().expect("polled after completion");
        // However the handler took the failed read, the client is told what happened.
        let response = match &record.body_expired {
            Some(expired) if expired.load(Ordering::Relaxed) => {
                let message = BodyReadTimeout(this.shared.body_read_timeout).to_string();
                let path = record.uri.path();
                this.shared
                    .errors
                    .response(path, StatusCode::REQUEST_TIMEOUT, message)
            }
            _ => response,
        };
        Poll::Ready(Ok(finish(this.shared, record, response)))
    }
}

/// The probes and the scrape: answered even on a connection past the listener's cap, and logged
/// at debug level.
pub(crate) fn is_probe(path: &str) -> bool {
    path.starts_with("/healthz/") || path == "/metrics"
}

fn timed_out(errors: ErrorFormat, path: &str, timeout: Duration) -> Response {
    let message = format!(
        "The request took longer than the request timeout ({} s) and was abandoned",
        timeout.as_secs_f64()
    );
    errors.response(path, StatusCode::SERVICE_UNAVAILABLE, message)
}

/// The request's `Content-Length`, when it declares one.
fn declared_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Names the pod (overriding, so that a response relayed from another pod still names the pod
/// that sent it), returns the id, counts and logs.
fn finish(shared: &Shared, record: Record, mut response: Response) -> Response {
    let headers = response.headers_mut();
    // Room for all at once, rather than growing the map on the way.
    headers.reserve(shared.identity_headers.len() + 3);
    for (name, value) in &shared.identity_headers {
        headers.insert(name, value.clone());
    }
    headers.insert(&shared.state.name, shared.state.value());
    headers.insert(request_id::HEADER, record.id.header_value());
    if let Some(n) = record.connection_requests {
        headers.insert(CONNECTION_REQUESTS, HeaderValue::from(n));
    }
    let status = response.status().as_u16();
    let elapsed = record.started.elapsed();
    if let Some(metrics) = &shared.metrics {
        metrics.finish(&record.method, record.route, status, elapsed);
    }
    telemetry::log_request(telemetry::RequestLine {
        method: &record.method,
        path: record.uri.path(),
        status,
        elapsed,
        client: record.client,
        id: record.id.as_str(),
    });
    response
}
