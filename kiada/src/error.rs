//! kiada's own errors. Backend failures on the proxy routes are JSON (the page's script reads
//! them); everything else is a line of text for curl.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::backends::{Backend, BackendError, FailureKind};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client's mistake, said in a sentence.
    #[error("{0}")]
    BadRequest(String),
    #[error("a lab run is already in progress on this pod; try again when it ends")]
    LabBusy,
    #[error(
        "the labs may open {burst} new backend connections at once and {per_second} more each \
         second; this run needs {needed}: try again in {retry_after_s} s"
    )]
    LabRate {
        needed: u32,
        retry_after_s: u64,
        burst: u32,
        per_second: u32,
    },
    /// A page template failed: kiada's own bug, never the client's.
    #[error("the page could not be rendered: {0}")]
    Template(#[from] askama::Error),
    /// A lab could not run for a reason on this pod's side.
    #[error("{0}")]
    Lab(String),
    #[error("at most {max} watches run at once on one kiada pod; try again when one ends")]
    WatchLimit { max: usize },
    /// A backend failed while relaying for the page's script.
    #[error("the {} service failed: {}", service.name(), error.message)]
    Proxy {
        service: Backend,
        error: BackendError,
    },
    /// A backend failed while answering a curl user.
    #[error("the {} service failed: {}\nHINT: {}", service.name(), error.message, error.hint())]
    Backend {
        service: Backend,
        error: BackendError,
    },
}

/// 504 when the backend did not answer in time; 502 for every other backend failure.
pub fn gateway_status(error: &BackendError) -> StatusCode {
    match error.kind {
        FailureKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, format!("{self}\n")).into_response(),
            Error::LabBusy | Error::WatchLimit { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, format!("{self}\n")).into_response()
            }
            Error::LabRate { retry_after_s, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                [(axum::http::header::RETRY_AFTER, retry_after_s.to_string())],
                format!("{self}\n"),
            )
                .into_response(),
            Error::Lab(_) => (StatusCode::SERVICE_UNAVAILABLE, format!("{self}\n")).into_response(),
            Error::Template(e) => {
                tracing::error!("template failed: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{self}\n")).into_response()
            }
            Error::Backend { error, .. } => {
                (gateway_status(error), format!("ERROR: {self}\n")).into_response()
            }
            Error::Proxy { service, error } => {
                let body = json!({
                    "error": self.to_string(),
                    "kind": error.kind,
                    "hint": error.hint(),
                    "service": service.name(),
                });
                (gateway_status(error), Json(body)).into_response()
            }
        }
    }
}
