//! Every error the quiz API answers with: a status and a JSON body `{"error": "…"}` saying what
//! was wrong. Client mistakes are 4xx; only a failing database is 5xx.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("no question with id {0}")]
    QuestionNotFound(u32),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("the request body must be JSON: send Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than {} bytes", kit::BODY_LIMIT)]
    PayloadTooLarge,
    #[error("the database is unavailable: {0}")]
    Database(#[from] crate::store::StoreError),
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::QuestionNotFound(_) | Error::RouteNotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Database(reason) = &self {
            tracing::error!("database error: {reason}");
        }
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Error::UnsupportedMediaType,
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Error::PayloadTooLarge
            }
            // serde's own words name the field and what was expected of it.
            JsonRejection::JsonDataError(e) => Error::BadRequest(format!(
                "invalid answer: {}",
                std::error::Error::source(&e).map_or(e.body_text(), |s| s.to_string())
            )),
            JsonRejection::JsonSyntaxError(e) => Error::BadRequest(format!(
                "malformed JSON: {}",
                std::error::Error::source(&e).map_or(e.body_text(), |s| s.to_string())
            )),
            other => Error::BadRequest(other.body_text()),
        }
    }
}
