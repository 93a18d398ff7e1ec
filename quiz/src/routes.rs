//! HTTP routes of the quiz service. Every error is JSON; see `error.rs`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::store::{NewAnswer, QuestionStats};
use crate::{AppState, Error, Question};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(identity))
        .route("/questions/random", get(random_question))
        .route("/questions/{id}", get(question))
        .route("/questions/{id}/answers", post(answer))
        .route("/questions/{id}/stats", get(question_stats))
        .route("/stats", get(stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn identity(State(state): State<AppState>) -> String {
    format!(
        "This is the quiz service running in pod {}\n",
        state.identity.pod_name
    )
}

/// A question as clients see it: without the correct answer.
#[derive(Serialize)]
struct QuestionView<'a> {
    id: u32,
    text: &'a str,
    answers: &'a [String],
}

impl<'a> From<&'a Question> for QuestionView<'a> {
    fn from(q: &'a Question) -> Self {
        QuestionView {
            id: q.id,
            text: &q.text,
            answers: &q.answers,
        }
    }
}

async fn random_question(State(state): State<AppState>) -> Response {
    Json(QuestionView::from(state.questions.random())).into_response()
}

async fn question(
    State(state): State<AppState>,
    QuestionId(id): QuestionId,
) -> Result<Response, Error> {
    let q = state.questions.get(id).ok_or(Error::QuestionNotFound(id))?;
    Ok(Json(QuestionView::from(q)).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnswerRequest {
    question_id: i64,
    answer_index: i64,
}

impl AnswerRequest {
    /// Only a JSON object is an answer: serde would also build the struct from an array such as
    /// `[1, 2]`, which no client means. The path in the error names the offending field.
    fn from_object(body: serde_json::Map<String, serde_json::Value>) -> Result<Self, Error> {
        serde_path_to_error::deserialize(serde_json::Value::Object(body))
            .map_err(|e| Error::BadRequest(format!("invalid answer: {e}")))
    }
}

/// The verdict on an answer. `explanation` is left out when the question has none (a custom
/// file may omit it).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AnswerResponse<'a> {
    question_id: u32,
    answer_index: usize,
    correct_answer_index: usize,
    correct: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<&'a str>,
    timestamp: String,
}

async fn answer(
    State(state): State<AppState>,
    QuestionId(id): QuestionId,
    body: Result<Json<serde_json::Map<String, serde_json::Value>>, JsonRejection>,
) -> Result<Response, Error> {
    let request = AnswerRequest::from_object(body?.0)?;
    if request.question_id != i64::from(id) {
        return Err(Error::BadRequest(format!(
            "questionId {} in the body does not match question {id} in the URL",
            request.question_id
        )));
    }
    let q = state.questions.get(id).ok_or(Error::QuestionNotFound(id))?;
    let answer_index = usize::try_from(request.answer_index)
        .ok()
        .filter(|&i| i < q.answers.len())
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "answerIndex {} is out of range: question {id} has answers 0 to {}",
                request.answer_index,
                q.answers.len() - 1
            ))
        })?;
    let correct = answer_index == q.correct_answer_index;
    let recorded = state
        .store
        .record(NewAnswer {
            question_id: id,
            answer_index,
            correct,
        })
        .await?;
    Ok(Json(AnswerResponse {
        question_id: id,
        answer_index,
        correct_answer_index: q.correct_answer_index,
        correct,
        explanation: q.explanation.as_deref(),
        timestamp: humantime::format_rfc3339_millis(recorded).to_string(),
    })
    .into_response())
}

async fn question_stats(
    State(state): State<AppState>,
    QuestionId(id): QuestionId,
) -> Result<Json<QuestionStats>, Error> {
    let stats = state.store.question_stats(id).await?;
    stats.map(Json).ok_or(Error::QuestionNotFound(id))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Totals {
    answer_count: u64,
    correct_count: u64,
    correct_ratio: Option<f64>,
    questions: Vec<QuestionStats>,
}

async fn stats(State(state): State<AppState>) -> Result<Json<Totals>, Error> {
    let questions = state.store.stats().await?;
    let answer_count = questions.iter().map(|q| q.answer_count).sum();
    let correct_count = questions.iter().map(|q| q.correct_count).sum();
    Ok(Json(Totals {
        answer_count,
        correct_count,
        correct_ratio: (answer_count > 0).then(|| correct_count as f64 / answer_count as f64),
        questions,
    }))
}

/// The `{id}` of a question's path. A path that does not decode (`%ff`) is the client's
/// mistake too, said in JSON like every other.
struct QuestionId(u32);

impl<S: Send + Sync> FromRequestParts<S> for QuestionId {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::BadRequest(format!("invalid path: {}", e.body_text())))?;
        parse_id(&raw).map(QuestionId)
    }
}

fn parse_id(raw: &str) -> Result<u32, Error> {
    raw.parse().map_err(|_| {
        Error::BadRequest(format!(
            "question id must be a positive integer, got '{raw}'"
        ))
    })
}

async fn not_found(uri: Uri) -> Error {
    Error::RouteNotFound(uri.path().to_owned())
}

async fn method_not_allowed(method: Method, uri: Uri) -> Error {
    Error::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
