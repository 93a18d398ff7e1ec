//! `X-Request-Id`: taken from the request or made up, returned on the response, logged, and
//! available to handlers so that kiada forwards it on every backend call. One id then follows
//! a request through the logs of kiada, quote and quiz.

use axum::http::{HeaderName, HeaderValue};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static CURRENT: RequestId;
}

/// Longest id taken from a request.
pub const MAX_LEN: usize = 128;

/// A request id, held inline: copying it costs a few bytes, where a shared header value costs
/// an allocation and reference counting on every request.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl RequestId {
    /// A new id: 128 random bits as 32 hex digits.
    pub fn new() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bits = fastrand::u128(..);
        let mut id = RequestId {
            len: 32,
            bytes: [0; MAX_LEN],
        };
        for digit in id.bytes[..32].iter_mut().rev() {
            *digit = HEX[(bits & 0xf) as usize];
            bits >>= 4;
        }
        id
    }

    /// A client's id, when it is kept: 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 . _ -`.
    /// Anything else is replaced by a new id rather than echoed, forwarded and logged.
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        let given = value.as_bytes();
        let acceptable = (1..=MAX_LEN).contains(&given.len())
            && given
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !acceptable {
            return None;
        }
        let mut id = RequestId {
            len: given.len() as u8,
            bytes: [0; MAX_LEN],
        };
        id.bytes[..given.len()].copy_from_slice(given);
        Some(id)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters, digits and `._-` are ever stored.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(self.as_str()).expect("request ids are valid header values")
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of the request the current task is answering, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(|id| *id).ok()
}

/// `f`, polled with `id` as the current request id.
pub(crate) fn scope_future<F: Future>(
    id: RequestId,
    f: F,
) -> tokio::task::futures::TaskLocalFuture<RequestId, F> {
    CURRENT.scope(id, f)
}

/// Calls `f` with `id` as the current request id.
pub(crate) fn scope_sync<R>(id: RequestId, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_ids_are_kept() {
        let kept = |s: &str| RequestId::from_header(&HeaderValue::from_str(s).unwrap());
        assert_eq!(kept("abc-123_X.y").unwrap().as_str(), "abc-123_X.y");
        assert!(kept(&"a".repeat(MAX_LEN)).is_some());
        assert!(kept(&"a".repeat(MAX_LEN + 1)).is_none());
        assert!(kept("").is_none());
        assert!(kept("a b").is_none());
        assert!(kept("<script>").is_none());
        let new = RequestId::new();
        assert_eq!(new.as_str().len(), 32);
        assert!(RequestId::from_header(&new.header_value()).is_some());
    }
}
