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

/// `f`, polled with `id` as the current request id.
pub(crate) fn scope_future<F: Future>(
    id: HeaderValue,
    f: F,
) -> tokio::task::futures::TaskLocalFuture<HeaderValue, F> {
    CURRENT.scope(id, f)
}

/// Calls `f` with `id` as the current request id.
pub(crate) fn scope_sync<R>(id: HeaderValue, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}

/// A new id: 128 random bits as 32 hex digits.
pub(crate) fn make() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    let mut id = [0u8; 32];
    for digit in id.iter_mut().rev() {
        *digit = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
}
