//! HTTP routes of kiada: the pages, answering, the proxy for the page's script, the lab.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FormRejection};
use axum::extract::{Form, FromRequestParts, Path, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::backend::{Backend, FailureKind};
use crate::client_ip::ClientClass;
use crate::render::{AnswerHtml, Answered, Badge, Page, RequestInfo, VERSION, answer_text};
use crate::{AppState, Error, assets, dns_lab, lab, lab_page, watch};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/text", get(text_page))
        .route("/html", get(html_page))
        .route("/api", get(api_page))
        .route("/html/answer", post(form_answer))
        .route("/question/{id}/answers/{index}", post(curl_answer))
        .route("/proxy/quote", get(proxy_quote))
        .route("/proxy/quiz/questions/random", get(proxy_random_question))
        .route("/proxy/quiz/questions/{id}/answers", post(proxy_answer))
        .route("/lab", get(lab_page::page))
        .route("/lab/spread", get(lab::spread))
        .route("/lab/dns", get(dns_lab::lab))
        .route("/lab/watch", get(watch::watch))
        .route("/static/{file}", get(assets::file))
        .route("/favicon.ico", get(assets::favicon))
        .fallback(kit::not_found)
        .with_state(state)
}

/// Browsers go to the HTML page; curl gets the text page; API clients get JSON.
async fn index(state: State<AppState>, headers: HeaderMap, visit: Visit) -> Response {
    let offered = ["text/plain", "text/html", "application/json"];
    match kit::negotiate::best(&headers, &offered) {
        // Relative, so that the redirect works behind a path prefix.
        Some("text/html") => (StatusCode::FOUND, [(LOCATION, "html")]).into_response(),
        Some("application/json") => api_page(state, visit).await,
        _ => text_page(state, visit).await,
    }
}

async fn text_page(State(state): State<AppState>, visit: Visit) -> Response {
    let page = gather(&state, visit).await;
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], page.text()).into_response()
}

async fn html_page(State(state): State<AppState>, visit: Visit) -> Result<Response, Error> {
    Ok(html(StatusCode::OK, gather(&state, visit).await.html()?))
}

/// An HTML page with the headers that keep it from being framed or made to run anything but
/// our own script and stylesheet.
pub fn html(status: StatusCode, body: String) -> Response {
    const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
        img-src 'self' data:; connect-src 'self'; form-action 'self'; \
        frame-ancestors 'none'; base-uri 'none'";
    (
        status,
        [
            (HeaderName::from_static("content-security-policy"), CSP),
            (HeaderName::from_static("x-frame-options"), "DENY"),
            (HeaderName::from_static("referrer-policy"), "no-referrer"),
        ],
        Html(body),
    )
        .into_response()
}

async fn api_page(State(state): State<AppState>, visit: Visit) -> Response {
    Json(gather(&state, visit).await.json()).into_response()
}

/// What the page says about the request itself.
struct Visit {
    client: kit::ClientIp,
    /// Requests the client's connection has carried, this one included.
    connection_requests: Option<u64>,
    forwarded_for: Option<String>,
    /// `scheme://host` as the client addressed this pod, for the curl commands on the text page.
    origin: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let client = kit::ClientIp::from_request_parts(parts, state).await?;
        let text = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        // The client's words go into commands the page prints: only a well-formed host is
        // taken, anything else is replaced.
        let host = text("host")
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .filter(|h| is_host(h))
            .unwrap_or_else(|| "localhost".into());
        let scheme = if parts
            .extensions
            .get::<kit::Connection>()
            .is_some_and(|c| c.tls)
        {
            "https"
        } else {
            "http"
        };
        Ok(Visit {
            client,
            connection_requests: parts.extensions.get::<kit::Connection>().map(|c| c.request),
            forwarded_for: text("x-forwarded-for"),
            origin: format!("{scheme}://{host}"),
        })
    }
}

/// A host name or IP address, with an optional port: `[A-Za-z0-9.-]` labels, or an IPv6
/// address in brackets.
fn is_host(authority: &str) -> bool {
    // (host, port digits); an IPv6 address is checked by parsing it.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, rest)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => {
                match rest.strip_prefix(':') {
                    Some(port) => ("v6", port),
                    None if rest.is_empty() => ("v6", "80"),
                    None => return false,
                }
            }
            _ => return false,
        },
        None => authority.split_once(':').unwrap_or((authority, "80")),
    };
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && (1..=253).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Calls both backends at once; each has its own timeout, so one slow backend costs the page
/// at most that timeout and never hides the other's answer.
async fn gather(state: &AppState, visit: Visit) -> Page {
    let (tip, question) = tokio::join!(state.backends.quote(), state.backends.random_question());
    let node = &state.identity.node_name;
    let client_class = ClientClass::of(visit.client.0, &state.identity.node_ip, &state.networks);
    Page {
        release: state.identity.release.clone(),
        tip_hop: state.backends.hop(Backend::Quote, &tip, node),
        question_hop: state.backends.hop(Backend::Quiz, &question, node),
        tip,
        question,
        request: RequestInfo {
            identity: state.identity.clone(),
            client_ip: visit.client.0.to_string(),
            client_class,
            forwarded_for: visit.forwarded_for,
            connection_requests: visit.connection_requests,
        },
        status: state.status.get().to_string(),
        origin: visit.origin,
    }
}

fn parse_number<T: std::str::FromStr>(what: &str, raw: &str) -> Result<T, Error> {
    raw.trim().parse().map_err(|_| {
        Error::BadRequest(format!(
            "{what} must be a non-negative whole number, got '{raw}'"
        ))
    })
}

/// `curl -X POST …/question/3/answers/1`, as the text page suggests.
async fn curl_answer(
    State(state): State<AppState>,
    Path((id, index)): Path<(String, String)>,
) -> Result<Response, Error> {
    let id: u32 = parse_number("the question id", &id)?;
    let index: usize = parse_number("the answer number", &index)?;
    let (answer, question) = tokio::join!(
        state.backends.answer(id, index),
        state.backends.question(id)
    );
    match answer.result {
        Ok(result) => {
            let pod = answer.pod.as_deref().unwrap_or("unknown");
            let text = answer_text(question.result.as_ref().ok(), &result, pod);
            Ok(([(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        // The quiz service's own verdict on bad input (unknown question, index out of range).
        Err(e) if matches!(e.kind, FailureKind::Status(400..=499)) => {
            let FailureKind::Status(code) = e.kind else {
                unreachable!()
            };
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
            Ok((status, format!("{}\n", e.message)).into_response())
        }
        Err(error) => Err(Error::Backend {
            service: Backend::Quiz,
            error,
        }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerForm {
    question_id: String,
    answer_index: String,
}

/// The form's answer when the page runs without JavaScript.
async fn form_answer(
    State(state): State<AppState>,
    form: Result<Form<AnswerForm>, FormRejection>,
) -> Response {
    let page = |status: StatusCode, question, result: Answered<'_>, pod: &str| {
        let html = AnswerHtml {
            base: "../",
            version: VERSION,
            release: Badge::of(state.identity.release.as_deref()),
            question,
            result,
            pod,
        };
        match askama::Template::render(&html) {
            Ok(body) => self::html(status, body),
            Err(e) => Error::from(e).into_response(),
        }
    };
    let form = match form {
        // A body of unknown length over the limit; a declared one never reaches the handler.
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("The request body is larger than {} bytes", kit::BODY_LIMIT);
            return page(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                Answered::Failed(message),
                "no pod",
            );
        }
        form => form,
    };
    let parsed = form
        .map_err(|e| Error::BadRequest(e.body_text()))
        .and_then(|Form(f)| {
            let id: u32 = parse_number("questionId", &f.question_id)?;
            let index: usize = parse_number("answerIndex", &f.answer_index)?;
            Ok((id, index))
        });
    let (id, index) = match parsed {
        Ok(v) => v,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                None,
                Answered::Failed(e.to_string()),
                "no pod",
            );
        }
    };
    let (answer, question) = tokio::join!(
        state.backends.answer(id, index),
        state.backends.question(id)
    );
    let pod = answer.pod.as_deref().unwrap_or("no pod");
    match &answer.result {
        Ok(result) => page(
            StatusCode::OK,
            question.result.as_ref().ok(),
            Answered::Recorded(result),
            pod,
        ),
        Err(e) => {
            let status = match e.kind {
                FailureKind::Status(code @ 400..=499) => {
                    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
                }
                _ => crate::error::gateway_status(e),
            };
            let message = format!("{} ({})", e.message, e.hint());
            page(status, None, Answered::Failed(message), pod)
        }
    }
}

async fn proxy_quote(State(state): State<AppState>, headers: HeaderMap) -> Response {
    relay(
        &state,
        Backend::Quote,
        Method::GET,
        "",
        &headers,
        Bytes::new(),
    )
    .await
}

async fn proxy_random_question(State(state): State<AppState>, headers: HeaderMap) -> Response {
    relay(
        &state,
        Backend::Quiz,
        Method::GET,
        "/questions/random",
        &headers,
        Bytes::new(),
    )
    .await
}

async fn proxy_answer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            let error = serde_json::json!({ "error": e.body_text() });
            return (e.status(), Json(error)).into_response();
        }
    };
    // Only digits go into the forwarded path: a decoded `..%2F` must not reach other routes.
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        let error = serde_json::json!({"error": format!("question id must be a positive integer, got '{id}'")});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let path = format!("/questions/{id}/answers");
    relay(&state, Backend::Quiz, Method::POST, &path, &headers, body).await
}

/// Relays a backend's answer: 2xx and 4xx unchanged, a backend 5xx or transport failure as 502
/// (504 on timeout) with a JSON error. Either way the response names the backend pod.
async fn relay(
    state: &AppState,
    service: Backend,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let reply = state
        .backends
        .relay(service, method, path, headers, body)
        .await;
    let mut response = match reply.result {
        Ok(r) if r.status.is_server_error() => Error::Proxy {
            service,
            error: crate::backend::BackendError {
                kind: FailureKind::Status(r.status.as_u16()),
                message: format!("it answered {}", r.status),
            },
        }
        .into_response(),
        Ok(r) => {
            let mut response = (r.status, r.body).into_response();
            if let Some(ct) = r.content_type {
                response.headers_mut().insert(CONTENT_TYPE, ct);
            }
            response
        }
        Err(error) => Error::Proxy { service, error }.into_response(),
    };
    name_backend_pod(
        response.headers_mut(),
        &reply_pod(&reply.pod, &reply.pod_ip),
    );
    response
}

fn reply_pod(pod: &Option<String>, ip: &Option<String>) -> [(HeaderName, Option<String>); 2] {
    [
        (HeaderName::from_static("x-backend-pod-name"), pod.clone()),
        (HeaderName::from_static("x-backend-pod-ip"), ip.clone()),
    ]
}

fn name_backend_pod(headers: &mut HeaderMap, values: &[(HeaderName, Option<String>); 2]) {
    for (name, value) in values {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name.clone(), value);
        }
    }
}
