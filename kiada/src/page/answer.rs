//! Answering a question: `POST /question/{id}/answers/{index}` for curl, the form's
//! `POST /html/answer` for a browser without JavaScript.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::state::PageState;
use crate::backends::{AnswerResult, Backend, FailureKind, Question};
use crate::error::Error;
use crate::terminal::{one_line, plain};
use crate::view::{Badge, VERSION, html};

/// The result of answering through the form (no JavaScript).
#[derive(Template)]
#[template(path = "answer.html")]
pub struct AnswerHtml<'a> {
    pub base: &'a str,
    pub version: &'a str,
    pub release: Option<Badge<'a>>,
    pub question: Option<&'a Question>,
    pub result: Answered<'a>,
    pub pod: &'a str,
}

/// What became of an answer sent through the form.
pub enum Answered<'a> {
    /// quiz recorded it and said whether it was right.
    Recorded(&'a AnswerResult),
    /// It was refused or never reached quiz; the sentence says why.
    Failed(String),
}

/// The text reply to `POST /question/{id}/answers/{index}`: the verdict, then the question's
/// explanation when it has one.
pub fn answer_text(question: Option<&Question>, result: &AnswerResult, pod: &str) -> String {
    let label = |i: usize| match question.and_then(|q| q.answers.get(i)) {
        Some(text) => format!("{i}) {}", one_line(text)),
        None => format!("answer {i}"),
    };
    let verdict = if result.correct {
        format!(
            "Correct! {} is the right answer.",
            label(result.answer_index)
        )
    } else {
        format!(
            "Wrong: you chose {}. The right answer is {}.",
            label(result.answer_index),
            label(result.correct_answer_index)
        )
    };
    let explanation = match result.explanation.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => format!("{}\n", plain(text)),
        _ => String::new(),
    };
    format!("{verdict}\n{explanation}(recorded by quiz pod {pod})\n")
}

fn parse_number<T: std::str::FromStr>(what: &str, raw: &str) -> Result<T, Error> {
    raw.trim().parse().map_err(|_| {
        Error::BadRequest(format!(
            "{what} must be a non-negative whole number, got '{raw}'"
        ))
    })
}

/// `curl -X POST …/question/3/answers/1`, as the text page suggests.
pub(super) async fn curl_answer(
    State(state): State<PageState>,
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
            let pod = answer.by.pod.as_deref().unwrap_or("unknown");
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
pub(super) struct AnswerForm {
    question_id: String,
    answer_index: String,
}

/// The form's answer when the page runs without JavaScript.
pub(super) async fn form_answer(
    State(state): State<PageState>,
    form: Result<Form<AnswerForm>, FormRejection>,
) -> Response {
    let page = |status: StatusCode, question, result: Answered<'_>, pod: &str| {
        let page = AnswerHtml {
            base: "../",
            version: VERSION,
            release: Badge::of(state.identity.release.as_deref()),
            question,
            result,
            pod,
        };
        match page.render() {
            Ok(body) => html(status, body),
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
    let pod = answer.by.pod.as_deref().unwrap_or("no pod");
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
