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

/// Longest id taken from a request.
pub const MAX_LEN: usize = 128;

/// Whether a client's id is kept: 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 . _ -`. Anything
/// else is replaced by a new id rather than echoed, forwarded and logged.
pub(crate) fn is_acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_ids_are_kept() {
        let ok = |s: &str| is_acceptable(&HeaderValue::from_str(s).unwrap());
        assert!(ok("abc-123_X.y"));
        assert!(ok(&"a".repeat(MAX_LEN)));
        assert!(!ok(&"a".repeat(MAX_LEN + 1)));
        assert!(!ok(""));
        assert!(!ok("a b"));
        assert!(!ok("<script>"));
        assert!(is_acceptable(&make()));
    }
}
