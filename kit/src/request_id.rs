//! `X-Request-Id`: taken from the request or made up, returned on the response, logged, and
//! available to handlers so that kiada forwards it on every backend call. One id then follows
//! a request through the logs of kiada, quote and quiz.

use axum::http::{HeaderName, HeaderValue};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: HeaderValue;
}

/// The id of the request the current task is answering, if any.
pub fn current() -> Option<HeaderValue> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` with `id` as the current request id.
pub(crate) async fn scope<F: Future>(id: Option<HeaderValue>, f: F) -> F::Output {
    match id {
        Some(id) => CURRENT.scope(id, f).await,
        None => f.await,
    }
}

/// Makes ids for requests that come without one: 128 random bits in hex.
#[derive(Clone, Copy, Default)]
pub(crate) struct MakeId;

impl tower_http::request_id::MakeRequestId for MakeId {
    fn make_request_id<B>(
        &mut self,
        _: &axum::http::Request<B>,
    ) -> Option<tower_http::request_id::RequestId> {
        let id = format!("{:032x}", fastrand::u128(..));
        HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}
