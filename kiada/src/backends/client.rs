//! Calls to the quote and quiz Services: timeouts, which pod answered, and failures classified
//! with a hint of what to check.
//!
//! Connection strategy. A ClusterIP Service balances connections, not requests: a pooled
//! connection keeps reaching the same pod. kiada keeps idle connections only for a short while
//! (`--backend-pool-idle-ms`, 1 s by default), so a person reloading the page every few seconds
//! gets a fresh connection, and so a freshly chosen pod, each time, while a load of many requests
//! a second reuses its connections and stays fast (a new connection per call costs about three
//! times as much and can exhaust ephemeral ports). 0 opens a new connection for every call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method};
use serde::Deserialize;

use super::api::{AnswerResult, Backend, Question};
use super::discovery::Discovered;
use super::failure::{BackendError, FailureKind, classify};
use super::hop::{Hop, Route};
use super::metrics::BackendMetrics;
use super::reply::{Answer, Answerer, Reply, read_body};
use super::resolve::Resolutions;
use crate::terminal::one_line;

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

    /// A client that speaks HTTP/2 from the first byte (prior knowledge, cleartext) and keeps
    /// its one connection: every call is a stream on it, as a gRPC client's are.
    pub fn h2_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .tcp_nodelay(true)
            .http2_prior_knowledge()
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(self.resolver.clone())
            .build()
            .expect("an HTTP client without TLS always builds")
    }

    /// Every address `host` resolves to through kiada's resolver, as a client that balances
    /// for itself asks for a headless Service's pods; a port of 0 (the system resolver's) is
    /// left for the caller to fill in.
    pub async fn resolve_all(&self, host: &str) -> Result<Vec<std::net::SocketAddr>, BackendError> {
        let name = host
            .parse::<reqwest::dns::Name>()
            .map_err(|_| BackendError {
                kind: FailureKind::Dns,
                message: format!("{host} is not a DNS name"),
            })?;
        let lookup = tokio::time::timeout(self.timeout, self.resolver.resolve(name)).await;
        match lookup {
            Ok(Ok(addrs)) => Ok(addrs.collect()),
            Ok(Err(e)) => Err(BackendError {
                kind: FailureKind::Dns,
                message: format!("{host} did not resolve: {e}"),
            }),
            Err(_) => Err(BackendError {
                kind: FailureKind::Timeout,
                message: format!("{host} did not resolve in time"),
            }),
        }
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

/// The backend's own explanation: the `error` field of a JSON body (as quiz sends), else the
/// first line of the body, after the status.
fn error_message(status: reqwest::StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    // Backend text: one line, no control characters, and a bound on its length.
    if let Ok(ErrorBody { error }) = serde_json::from_slice(body) {
        return one_line(&error).chars().take(500).collect();
    }
    let text = String::from_utf8_lossy(body);
    let first = text.lines().next().unwrap_or("").trim();
    let line: String = one_line(first).chars().take(200).collect();
    if line.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {line}")
    }
}
