//! HTTP routes of the quote service.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kit::negotiate::WantsJson;
use serde::Serialize;

use crate::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(identity))
        .route("/quote", get(quote))
        .fallback(kit::not_found)
        .with_state(state)
}

async fn identity(State(state): State<AppState>) -> String {
    format!(
        "This is the quote service running in pod {} on node {}\n",
        state.identity.pod_name, state.identity.node_name
    )
}

#[derive(Serialize)]
struct QuoteJson<'a> {
    quote: &'a str,
    pod: &'a str,
    node: &'a str,
}

async fn quote(State(state): State<AppState>, WantsJson(json): WantsJson) -> Response {
    state.tips.with_random(|tip| {
        if json {
            return Json(QuoteJson {
                quote: tip,
                pod: &state.identity.pod_name,
                node: &state.identity.node_name,
            })
            .into_response();
        }
        let mut line = String::with_capacity(tip.len() + 1);
        line.push_str(tip);
        line.push('\n');
        ([(CONTENT_TYPE, "text/plain; charset=utf-8")], line).into_response()
    })
}
