//! The page: what a visitor sees at `/`, `/text`, `/html` and `/api`, answering a question, and
//! the proxy the page's script calls.
//!
//! - `home`: the page's routes and the gathering of both backends' answers;
//! - `render`: the page as text, HTML and JSON; `visit`: what it says about the request;
//! - `path`: the path of a page view, drawn for the HTML page;
//! - `client_ip`: what the client address means; `status`: the status message;
//! - `answer`: answering, for curl and for the form; `proxy`: `/proxy/…` for the script.
//!
//! It uses the backends and the shared view; nothing of the labs.

pub mod answer;
pub mod client_ip;
mod home;
mod path;
mod proxy;
pub mod render;
mod state;
pub mod status;
mod visit;

use axum::Router;
use axum::routing::{get, post};

pub use state::PageState;
pub use status::Status;

pub fn router(state: PageState) -> Router {
    Router::new()
        .route("/", get(home::index))
        .route("/text", get(home::text_page))
        .route("/html", get(home::html_page))
        .route("/api", get(home::api_page))
        .route("/html/answer", post(answer::form_answer))
        .route("/question/{id}/answers/{index}", post(answer::curl_answer))
        .route("/proxy/quote", get(proxy::proxy_quote))
        .route(
            "/proxy/quiz/questions/random",
            get(proxy::proxy_random_question),
        )
        .route(
            "/proxy/quiz/questions/{id}/answers",
            post(proxy::proxy_answer),
        )
        .with_state(state)
}
