//! The page itself: `/` (negotiated), `/text` for curl, `/html` for browsers, `/api` as JSON,
//! all from one gathering of both backends' answers.

use axum::Json;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::client_ip::ClientClass;
use super::render::{Page, RequestInfo};
use super::state::PageState;
use super::visit::Visit;
use crate::backends::Backend;
use crate::error::Error;
use crate::view::html;

/// Browsers go to the HTML page; curl gets the text page; API clients get JSON.
pub(super) async fn index(state: State<PageState>, headers: HeaderMap, visit: Visit) -> Response {
    let offered = ["text/plain", "text/html", "application/json"];
    match kit::negotiate::best(&headers, &offered) {
        // Relative, so that the redirect works behind a path prefix.
        Some("text/html") => (StatusCode::FOUND, [(LOCATION, "html")]).into_response(),
        Some("application/json") => api_page(state, visit).await,
        _ => text_page(state, visit).await,
    }
}

pub(super) async fn text_page(State(state): State<PageState>, visit: Visit) -> Response {
    let page = gather(&state, visit).await;
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], page.text()).into_response()
}

pub(super) async fn html_page(
    State(state): State<PageState>,
    visit: Visit,
) -> Result<Response, Error> {
    let page = gather(&state, visit).await;
    let path = askama::Template::render(&super::path::of(&page))?;
    Ok(html(StatusCode::OK, page.html(&path)?))
}

pub(super) async fn api_page(State(state): State<PageState>, visit: Visit) -> Response {
    Json(gather(&state, visit).await.json()).into_response()
}

/// Calls both backends at once; each has its own timeout, so one slow backend costs the page
/// at most that timeout and never hides the other's answer.
async fn gather(state: &PageState, visit: Visit) -> Page {
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
