//! What every HTML page of kiada shares: the headers that lock a page down, the version in its
//! footer and the release badge.

use axum::http::{HeaderName, StatusCode};
use axum::response::{Html, IntoResponse, Response};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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

/// The release badge of the HTML pages: canary pods stand out in orange when reloading.
pub struct Badge<'a> {
    pub text: &'a str,
    /// A CSS class from a fixed set, whatever `RELEASE` holds.
    pub class: &'static str,
}

impl<'a> Badge<'a> {
    pub fn of(release: Option<&'a str>) -> Option<Self> {
        release.map(|text| Badge {
            text,
            class: match text {
                "canary" => "badge canary",
                "stable" => "badge stable",
                _ => "badge",
            },
        })
    }
}
