//! What every HTML page of kiada shares: the headers that lock a page down, the version in its
//! footer and the release badge.

use axum::http::{HeaderName, HeaderValue, StatusCode};
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

/// The policy of every response that is not an HTML page: nothing may load or run, and a
/// browser that renders it anyway does so in a sandbox of its own origin.
pub const NOT_A_PAGE_CSP: &str = "default-src 'none'; sandbox";

/// Adds [`NOT_A_PAGE_CSP`] to a response that has no policy of its own (every one but
/// [`html`]'s).
pub async fn not_a_page(mut response: Response) -> Response {
    let csp = HeaderName::from_static("content-security-policy");
    if !response.headers().contains_key(&csp) {
        response
            .headers_mut()
            .insert(csp, HeaderValue::from_static(NOT_A_PAGE_CSP));
    }
    response
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
