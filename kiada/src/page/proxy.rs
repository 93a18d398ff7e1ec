//! The proxy the page's script calls (`/proxy/…`): the backend's answer relayed, naming the
//! backend pod that gave it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::state::PageState;
use crate::backends::{Backend, BackendError, FailureKind};
use crate::error::Error;

pub(super) async fn proxy_quote(State(state): State<PageState>, headers: HeaderMap) -> Response {
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

pub(super) async fn proxy_random_question(
    State(state): State<PageState>,
    headers: HeaderMap,
) -> Response {
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

pub(super) async fn proxy_answer(
    State(state): State<PageState>,
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
    state: &PageState,
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
            error: BackendError {
                kind: FailureKind::Status(r.status.as_u16()),
                message: format!("it answered {}", r.status),
            },
        }
        .into_response(),
        Ok(r) => match promised(service, r.content_type.as_ref()) {
            Some(ct) => {
                let mut response = (r.status, r.body).into_response();
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
                response
            }
            None => Error::Proxy {
                service,
                error: BackendError {
                    kind: FailureKind::InvalidResponse,
                    message: format!(
                        "it answered {}, not what /proxy/{} relays ({})",
                        said(r.content_type.as_ref()),
                        service.name(),
                        allowed(service).join(" or ")
                    ),
                },
            }
            .into_response(),
        },
        Err(error) => Error::Proxy { service, error }.into_response(),
    };
    name_backend_pod(
        response.headers_mut(),
        &reply_pod(&reply.by.pod, &reply.by.pod_ip),
    );
    response
}

/// The types a route relays: quote's tip as text or JSON, quiz's answers as JSON. Anything
/// else — `text/html` above all, which would run on kiada's origin — is refused.
fn allowed(service: Backend) -> &'static [&'static str] {
    match service {
        Backend::Quote => &["text/plain; charset=utf-8", "application/json"],
        Backend::Quiz => &["application/json"],
    }
}

/// The content type the relayed answer carries (the route's own, never the backend's words),
/// if the backend's is one the route promises.
fn promised(service: Backend, said: Option<&HeaderValue>) -> Option<&'static str> {
    let said = said.and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = said.split(';').next().unwrap_or("").trim();
    allowed(service)
        .iter()
        .find(|ct| {
            let own = ct.split(';').next().unwrap_or("");
            essence.eq_ignore_ascii_case(own)
        })
        .copied()
}

/// What the backend said its answer was, on one line.
fn said(content_type: Option<&HeaderValue>) -> String {
    match content_type.and_then(|v| v.to_str().ok()).unwrap_or("") {
        "" => "no Content-Type".to_owned(),
        said => format!("Content-Type {}", crate::terminal::one_line(said)),
    }
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
