//! The page's static files, compiled into the binary so the image needs nothing beside it.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/style.css"),
    ),
    (
        "kiada.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/kiada.js"),
    ),
    (
        "lab.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/lab.js"),
    ),
    (
        "pods.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/pods.js"),
    ),
    (
        "lab.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/lab.css"),
    ),
    (
        "logo.svg",
        "image/svg+xml",
        include_bytes!("../../static/logo.svg"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../static/favicon.svg"),
    ),
];

pub async fn file(Path(name): Path<String>) -> Response {
    serve(&name)
}

/// Browsers ask for `/favicon.ico` whatever the page says; answer with the SVG icon.
pub async fn favicon() -> Response {
    serve("favicon.svg")
}

fn serve(name: &str) -> Response {
    match FILES.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, body)) => (
            [
                (CONTENT_TYPE, *content_type),
                (CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("Not found: static/{name}\n")).into_response(),
    }
}
