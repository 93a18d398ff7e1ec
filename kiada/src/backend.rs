//! Calls to the quote and quiz Services: timeouts, which pod answered, and failures classified
//! with a hint of what to check.
//!
//! Connection strategy. A ClusterIP Service balances connections, not requests: a pooled
//! connection keeps reaching the same pod. kiada keeps idle connections only for a short while
//! (`--backend-pool-idle-ms`, 1 s by default), so a person reloading the page every few seconds
//! gets a fresh connection, and so a freshly chosen pod, each time, while a load of many requests
//! a second reuses its connections and stays fast (a new connection per call costs about three
//! times as much and can exhaust ephemeral ports). 0 opens a new connection for every call.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::discovery::Discovered;
use crate::hop::{Hop, Resolutions, Route};

/// How a backend call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// The name did not resolve.
    Dns,
    /// Nothing listens at the address.
    Refused,
    /// No complete answer within the backend timeout.
    Timeout,
    /// The connection was closed before an answer.
    Closed,
    /// Some other connection failure.
    Connect,
    /// The backend answered with an error status.
    Status(u16),
    /// The backend answered something that is not what it should.
    InvalidResponse,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendError {
    pub kind: FailureKind,
    /// What happened, in a sentence.
    pub message: String,
}

impl BackendError {
    /// What to check, in one line.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            FailureKind::Dns => {
                "The name did not resolve: check the Service name and namespace (kubectl get svc -n kiada)."
            }
            FailureKind::Refused => {
                "Connection refused: no ready endpoints? Check the Service selector and the pods' readiness (kubectl describe endpointslice -n kiada -l kubernetes.io/service-name=<service>), and that the targetPort is where the pods listen."
            }
            FailureKind::Timeout => {
                "No answer in time: the backend is overloaded or hanging, a NetworkPolicy drops the traffic (a targetPort it does not admit, too), or a Local traffic policy finds no endpoint on this node."
            }
            FailureKind::Closed => {
                "The connection closed before an answer: the backend pod may have crashed or be shutting down."
            }
            FailureKind::Connect => {
                "Could not connect: check the backend URL and the network path to it."
            }
            FailureKind::Status(_) => {
                "The backend answered with an error: check its logs (kubectl logs -n kiada -l app=<service>)."
            }
            FailureKind::InvalidResponse => {
                "The backend answered something unexpected: is the URL pointing at the right service?"
            }
        }
    }

    fn invalid(detail: impl std::fmt::Display) -> Self {
        BackendError {
            kind: FailureKind::InvalidResponse,
            message: format!("unexpected response: {detail}"),
        }
    }
}

/// The result of one backend call and who served it.
#[derive(Clone, Debug)]
pub struct Reply<T> {
    pub result: Result<T, BackendError>,
    /// From the backend's `X-Pod-Name`, when it answered.
    pub pod: Option<String>,
    /// From the backend's `X-Pod-IP`.
    pub pod_ip: Option<String>,
    /// From the backend's `X-Node-Name`.
    pub node: Option<String>,
    /// The address the call connected to.
    pub remote: Option<std::net::SocketAddr>,
    /// From the backend's `X-Connection-Requests`: 1 on a new connection.
    pub connection_requests: Option<u64>,
    /// From the backend's `X-Pod-State` (ready, draining, disabled, fault).
    pub state: Option<String>,
    pub elapsed: Duration,
}

impl<T> Reply<T> {
    /// The same call with its result turned into another.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Result<U, BackendError>) -> Reply<U> {
        Reply {
            result: self.result.and_then(f),
            pod: self.pod,
            pod_ip: self.pod_ip,
            node: self.node,
            remote: self.remote,
            connection_requests: self.connection_requests,
            state: self.state,
            elapsed: self.elapsed,
        }
    }
}

/// Who answered a call, from the headers every service of the suite sets, and over what.
#[derive(Clone, Debug, Default)]
pub struct Answerer {
    pub pod: Option<String>,
    pub pod_ip: Option<String>,
    pub node: Option<String>,
    pub remote: Option<std::net::SocketAddr>,
    pub connection_requests: Option<u64>,
    pub state: Option<String>,
}

impl Answerer {
    pub fn of(res: &reqwest::Response) -> Self {
        let headers = res.headers();
        let get = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Answerer {
            pod: get("x-pod-name"),
            pod_ip: get("x-pod-ip"),
            node: get("x-node-name"),
            state: get("x-pod-state"),
            remote: res.remote_addr(),
            connection_requests: headers
                .get(kit::CONNECTION_REQUESTS)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        }
    }

    fn reply<T>(self, result: Result<T, BackendError>, elapsed: Duration) -> Reply<T> {
        Reply {
            result,
            pod: self.pod,
            pod_ip: self.pod_ip,
            node: self.node,
            remote: self.remote,
            connection_requests: self.connection_requests,
            state: self.state,
            elapsed,
        }
    }
}

/// A backend's answer, whatever its status: relayed as it came by the proxy routes, parsed by
/// the page calls.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: axum::body::Bytes,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Question {
    pub id: u32,
    pub text: String,
    pub answers: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerResult {
    pub question_id: u32,
    pub answer_index: usize,
    pub correct_answer_index: usize,
    pub correct: bool,
    /// Why the correct answer is right, when the question set gives a reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
    pub timestamp: String,
}

/// Which backend; also the label in pages and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Quote,
    Quiz,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Quote => "quote",
            Backend::Quiz => "quiz",
        }
    }
}

/// Backend calls by upstream service, outcome and the pod that answered, so that the spread
/// across replicas shows on a dashboard; and their duration by service.
#[derive(Clone)]
pub struct BackendMetrics {
    calls: Family<CallLabels, Counter>,
    /// Series of `calls` made so far (an upper bound: two threads may make the same one).
    series: Arc<AtomicUsize>,
    seconds: kit::metrics::HistogramFamily<ServiceLabel>,
}

/// Distinct (service, outcome, pod) series at most; see [`BackendMetrics::count`].
const MAX_CALL_SERIES: usize = 500;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: &'static str,
    /// ok, dns, refused, timeout, closed, connect, invalid, or the HTTP status.
    outcome: String,
    pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    service: &'static str,
}

impl BackendMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = BackendMetrics {
            calls: Family::default(),
            series: Arc::new(AtomicUsize::new(0)),
            seconds: kit::metrics::HistogramFamily::new_with_constructor(
                kit::metrics::latency_histogram,
            ),
        };
        registry.register(
            "kiada_backend_calls",
            "Calls to the quote and quiz services by outcome and answering pod",
            metrics.calls.clone(),
        );
        registry.register(
            "kiada_backend_call_duration_seconds",
            "Time a backend call took",
            metrics.seconds.clone(),
        );
        metrics
    }

    fn count(
        &self,
        service: Backend,
        outcome: Result<(), FailureKind>,
        pod: Option<&str>,
        elapsed: Duration,
    ) {
        let mut labels = CallLabels {
            service: service.name(),
            outcome: outcome.map_or_else(FailureKind::label, |()| "ok".into()),
            pod: pod.unwrap_or("none").to_owned(),
        };
        // The pod name comes from the backend's header: past a number of series no real set
        // of replicas reaches, further names are counted as `other`, so a misbehaving backend
        // cannot grow /metrics without bound.
        let known = self.calls.get(&labels).map(|calls| calls.inc()).is_some();
        if !known {
            if self.series.fetch_add(1, Ordering::Relaxed) >= MAX_CALL_SERIES {
                labels.pod = "other".to_owned();
            }
            self.calls.get_or_create(&labels).inc();
        }
        let service = ServiceLabel {
            service: service.name(),
        };
        self.seconds
            .get_or_create(&service)
            .observe(elapsed.as_secs_f64());
    }
}

impl FailureKind {
    /// The outcome label of the metrics.
    fn label(self) -> String {
        match self {
            FailureKind::Dns => "dns".into(),
            FailureKind::Refused => "refused".into(),
            FailureKind::Timeout => "timeout".into(),
            FailureKind::Closed => "closed".into(),
            FailureKind::Connect => "connect".into(),
            FailureKind::Status(code) => code.to_string(),
            FailureKind::InvalidResponse => "invalid".into(),
        }
    }
}

#[derive(Clone)]
pub struct Backends {
    client: reqwest::Client,
    metrics: BackendMetrics,
    /// Parsed once: the hot path must not parse URLs on every call.
    quote_url: reqwest::Url,
    random_question_url: reqwest::Url,
    quiz_url: Arc<str>,
    timeout: Duration,
    /// The resolver every client of ours uses: it records what each name resolved to.
    resolver: Arc<dyn reqwest::dns::Resolve>,
    resolutions: Resolutions,
    routes: Arc<[Route; 2]>,
}

pub struct BackendsConfig {
    pub quote: Discovered,
    pub quiz: Discovered,
    pub timeout: Duration,
    /// How long an idle backend connection is kept; zero: a new connection per call.
    pub pool_idle: Duration,
    /// Replaces the system resolver (tests).
    pub resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    pub metrics: BackendMetrics,
}

/// A backend URL that does not parse; kiada refuses to start with it.
#[derive(Debug, thiserror::Error)]
#[error("{name} '{url}' is not a valid URL: {reason}")]
pub struct BadUrl {
    name: &'static str,
    url: String,
    reason: String,
}

fn parse_url(name: &'static str, url: &str) -> Result<reqwest::Url, BadUrl> {
    let bad = |reason: String| BadUrl {
        name,
        url: url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(bad(format!("the scheme must be http, not {other}"))),
    }
}

impl Backends {
    pub fn new(config: BackendsConfig) -> Result<Backends, BadUrl> {
        let resolutions = Resolutions::default();
        let resolver = resolutions.resolver(config.resolver);
        let client = client(config.timeout, config.pool_idle, resolver.clone());
        let quiz_url = config.quiz.url.trim_end_matches('/');
        Ok(Backends {
            client,
            metrics: config.metrics,
            quote_url: parse_url("QUOTE_URL", &config.quote.url)?,
            random_question_url: parse_url("QUIZ_URL", &format!("{quiz_url}/questions/random"))?,
            quiz_url: quiz_url.into(),
            timeout: config.timeout,
            resolver,
            resolutions,
            routes: Arc::new([
                Route::new(&config.quote.url, config.quote.source),
                Route::new(quiz_url, config.quiz.source),
            ]),
        })
    }

    /// How `service`'s call of `reply` travelled.
    pub fn hop<T>(&self, service: Backend, reply: &Reply<T>, this_node: &str) -> Hop {
        let route = match service {
            Backend::Quote => &self.routes[0],
            Backend::Quiz => &self.routes[1],
        };
        Hop::of(service.name(), route, reply, &self.resolutions, this_node)
    }

    pub fn quote_url(&self) -> &str {
        self.quote_url.as_str()
    }

    pub fn quiz_url(&self) -> &str {
        &self.quiz_url
    }

    /// A client for a lab run: `reuse` keeps one connection for all calls, otherwise each call
    /// opens its own.
    pub fn lab_client(&self, reuse: bool) -> reqwest::Client {
        let idle = if reuse {
            Duration::from_secs(60)
        } else {
            Duration::ZERO
        };
        client(self.timeout, idle, self.resolver.clone())
    }

    pub async fn quote(&self) -> Reply<String> {
        let request = self
            .client
            .get(self.quote_url.clone())
            .header("accept", "text/plain");
        self.call(Backend::Quote, request, |body| {
            let text = String::from_utf8_lossy(&body).trim().to_owned();
            if text.is_empty() {
                return Err(BackendError::invalid("an empty tip"));
            }
            Ok(text)
        })
        .await
    }

    pub async fn random_question(&self) -> Reply<Question> {
        let url = self.random_question_url.clone();
        self.call(Backend::Quiz, self.client.get(url), json_body)
            .await
    }

    pub async fn question(&self, id: u32) -> Reply<Question> {
        let url = format!("{}/questions/{id}", self.quiz_url);
        self.call(Backend::Quiz, self.client.get(url), json_body)
            .await
    }

    pub async fn answer(&self, id: u32, answer_index: usize) -> Reply<AnswerResult> {
        let url = format!("{}/questions/{id}/answers", self.quiz_url);
        let body = serde_json::json!({"questionId": id, "answerIndex": answer_index});
        self.call(Backend::Quiz, self.client.post(url).json(&body), json_body)
            .await
    }

    /// A page call: a 2xx answer parsed; any other status is the backend's error, in its words.
    async fn call<T>(
        &self,
        service: Backend,
        request: reqwest::RequestBuilder,
        parse: impl FnOnce(axum::body::Bytes) -> Result<T, BackendError>,
    ) -> Reply<T> {
        self.send(service, request).await.and_then(|answer| {
            if answer.status.is_success() {
                parse(answer.body)
            } else {
                Err(BackendError {
                    kind: FailureKind::Status(answer.status.as_u16()),
                    message: error_message(answer.status, &answer.body),
                })
            }
        })
    }

    /// The one way kiada calls a backend — the pages, the proxy and the labs alike — so that no
    /// path forgets a part: the current request id is forwarded, who answered is read from the
    /// suite's headers, the body is read within [`BODY_LIMIT`], and the call is counted (a
    /// status other than 2xx by its code, a transport failure by its kind).
    pub async fn send(&self, service: Backend, request: reqwest::RequestBuilder) -> Reply<Answer> {
        let started = Instant::now();
        let (answerer, result) = match with_request_id(request).send().await {
            Ok(res) => {
                let answerer = Answerer::of(&res);
                let status = res.status();
                let content_type = res.headers().get("content-type").cloned();
                let result = read_body(res).await.map(|body| Answer {
                    status,
                    content_type,
                    body,
                });
                (answerer, result)
            }
            Err(e) => (Answerer::default(), Err(classify(&e))),
        };
        let outcome = match &result {
            Ok(a) if !a.status.is_success() => Err(FailureKind::Status(a.status.as_u16())),
            Ok(_) => Ok(()),
            Err(e) => Err(e.kind),
        };
        let elapsed = started.elapsed();
        self.metrics
            .count(service, outcome, answerer.pod.as_deref(), elapsed);
        answerer.reply(result, elapsed)
    }

    /// Forwards a request and returns the backend's answer whatever its status, so that the
    /// caller can relay a 4xx unchanged.
    pub async fn relay(
        &self,
        service: Backend,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: axum::body::Bytes,
    ) -> Reply<Answer> {
        // The quote URL is parsed already; do not turn it back into a string to parse again.
        let request = match service {
            Backend::Quote => self.client.request(method, self.quote_url.clone()),
            Backend::Quiz => self
                .client
                .request(method, format!("{}{path}", self.quiz_url)),
        };
        let mut request = request.body(body);
        for name in ["accept", "content-type"] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        self.send(service, request).await
    }
}

/// Forwards the id of the request being answered, so one id follows it through every log.
pub fn with_request_id(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match kit::request_id::current() {
        Some(id) => request.header(kit::request_id::HEADER, id.as_str()),
        None => request,
    }
}

fn client(
    timeout: Duration,
    pool_idle: Duration,
    resolver: Arc<dyn reqwest::dns::Resolve>,
) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(pool_idle)
        .pool_max_idle_per_host(if pool_idle.is_zero() { 0 } else { usize::MAX })
        .dns_resolver(resolver);
    builder
        .build()
        .expect("an HTTP client without TLS always builds")
}

fn json_body<T: serde::de::DeserializeOwned>(body: axum::body::Bytes) -> Result<T, BackendError> {
    serde_json::from_slice(&body).map_err(BackendError::invalid)
}

/// Most kiada reads of a backend's answer; a tip or a question is a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The body of a backend's answer, refused as an invalid response past [`BODY_LIMIT`] (declared
/// or counted as it arrives), so that a wrong or hostile backend cannot fill kiada's memory.
pub async fn read_body(mut res: reqwest::Response) -> Result<axum::body::Bytes, BackendError> {
    let too_large = || BackendError::invalid(format!("a body over {BODY_LIMIT} bytes"));
    if res.content_length().is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    async fn chunk(res: &mut reqwest::Response) -> Result<Option<axum::body::Bytes>, BackendError> {
        res.chunk().await.map_err(|e| classify(&e))
    }
    // Most answers arrive in one chunk, kept as it is; more are gathered.
    let Some(first) = chunk(&mut res).await? else {
        return Ok(axum::body::Bytes::new());
    };
    if first.len() > BODY_LIMIT {
        return Err(too_large());
    }
    let Some(second) = chunk(&mut res).await? else {
        return Ok(first);
    };
    let mut body = Vec::with_capacity(first.len() + second.len());
    body.extend_from_slice(&first);
    body.extend_from_slice(&second);
    while body.len() <= BODY_LIMIT {
        match chunk(&mut res).await? {
            Some(more) => body.extend_from_slice(&more),
            None => return Ok(body.into()),
        }
    }
    Err(too_large())
}

/// The backend's own explanation: the `error` field of a JSON body (as quiz sends), else the
/// first line of the body, after the status.
fn error_message(status: reqwest::StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    if let Ok(ErrorBody { error }) = serde_json::from_slice(body) {
        return error;
    }
    let text = String::from_utf8_lossy(body);
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .take(200)
        .collect();
    if line.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {line}")
    }
}

/// Sorts a transport error into the kinds the pages explain. The cause sits several sources
/// down reqwest's error chain (reqwest → hyper-util → io or the resolver).
pub fn classify(err: &reqwest::Error) -> BackendError {
    let mut chain = Vec::new();
    let mut source = err.source();
    while let Some(s) = source {
        chain.push(s);
        source = s.source();
    }
    let io_kind = chain
        .iter()
        .find_map(|s| s.downcast_ref::<std::io::Error>())
        .map(|e| e.kind());
    let said = |text: &str| chain.iter().any(|s| s.to_string().contains(text));
    let kind = if err.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
        FailureKind::Timeout
    } else if said("dns error") || said("failed to lookup address") {
        FailureKind::Dns
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        FailureKind::Refused
    } else if said("connection closed")
        || matches!(
            io_kind,
            Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof)
        )
    {
        FailureKind::Closed
    } else {
        FailureKind::Connect
    };
    let detail = chain
        .last()
        .map(|s| s.to_string())
        .unwrap_or_else(|| err.to_string());
    let message = match kind {
        FailureKind::Timeout => "timed out".to_owned(),
        FailureKind::Dns => format!("DNS lookup failed: {detail}"),
        FailureKind::Refused => "connection refused".to_owned(),
        FailureKind::Closed => format!("connection closed: {detail}"),
        _ => format!("cannot connect: {detail}"),
    };
    BackendError { kind, message }
}
