//! The body-read deadline (`--body-read-timeout`): a request body must have arrived that long
//! after its head was read. A client that declares a body and sends it slowly, or not at all,
//! otherwise holds its connection and the buffered part until the request timeout — and the
//! request timeout is for handlers, which may wait on a database or a backend that long.
//!
//! The body is wrapped only when the request has one; its timer is armed only once reading it
//! has to wait. When the deadline passes, the next read fails (so the handler stops waiting),
//! and [`super::Observe`] answers 408 whatever the handler made of the failure.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use hyper::body::Frame;
use tokio::time::{Instant, Sleep};

/// What reading a body past its deadline fails with, and what the 408 says.
#[derive(Debug, thiserror::Error)]
#[error("The request body did not arrive within the body-read timeout ({} s)", .0.as_secs_f64())]
pub(crate) struct BodyReadTimeout(pub Duration);

pin_project_lite::pin_project! {
    pub(crate) struct DeadlineBody {
        #[pin]
        inner: Body,
        deadline: Instant,
        limit: Duration,
        timer: Option<Pin<Box<Sleep>>>,
        // Set when the deadline passed before the body was read; shared with the request's
        // record.
        expired: Arc<AtomicBool>,
    }
}

impl DeadlineBody {
    pub(crate) fn new(
        inner: Body,
        started: std::time::Instant,
        limit: Duration,
        expired: Arc<AtomicBool>,
    ) -> Self {
        DeadlineBody {
            inner,
            deadline: Instant::from_std(started) + limit,
            limit,
            timer: None,
            expired,
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        if this.expired.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout(*this.limit)))));
        }
        match this.inner.poll_frame(cx) {
            Poll::Pending => {}
            ready => return ready,
        }
        let deadline = *this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.expired.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout(*this.limit)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
