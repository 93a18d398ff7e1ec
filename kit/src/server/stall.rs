//! Responses a client does not take. A client that stops reading would otherwise keep its
//! connection, and every response queued on it, for as long as it likes: an HTTP/1 client with a
//! full receive buffer blocks the connection's writes; an HTTP/2 client that grants a stream no
//! flow-control window leaves its response waiting in the server.
//!
//! Both are given the same limit as an idle connection, the header-read timeout (10 s):
//!
//! - a connection whose writes have been blocked that long (the peer took no byte) is closed,
//!   HTTP/1 and HTTP/2 alike: [`Watched`] marks when a write first blocks and the connection's
//!   watchdog closes it;
//! - an HTTP/2 stream whose response has a chunk ready that hyper has been unable to send for
//!   that long (no window) is reset: [`StreamExec`] runs each stream under a [`Guarded`] that
//!   drops it, and dropping an unfinished stream makes h2 send `RST_STREAM(CANCEL)`.
//!
//! A response that keeps streaming (kiada's watch) is never cut: while its body waits for its
//! next chunk it is the server's turn, not the client's, and no clock runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Not blocked, not owed: the clock is stopped.
const NONE: u64 = u64::MAX;

/// Milliseconds after `base`, saturating below [`NONE`].
fn millis_since(base: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(base).as_millis()).unwrap_or(NONE - 1)
}

/// Since when a connection's writes have been blocked, shared by [`Watched`] and the watchdog.
pub(super) struct WriteStall {
    base: Instant,
    since_ms: AtomicU64,
}

impl WriteStall {
    pub(super) fn new(base: Instant) -> Self {
        WriteStall {
            base,
            since_ms: AtomicU64::new(NONE),
        }
    }

    /// When the peer last stopped taking bytes, while it still takes none.
    pub(super) fn since(&self) -> Option<Instant> {
        match self.since_ms.load(Ordering::Acquire) {
            NONE => None,
            ms => Some(self.base + Duration::from_millis(ms)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A connection's byte stream, noting when writes block and when they move again. Only the
    /// changes touch the shared state: a write that goes through, as almost all do, costs a
    /// branch.
    pub(super) struct Watched<T> {
        #[pin]
        inner: T,
        stall: Arc<WriteStall>,
        blocked: bool,
    }
}

impl<T> Watched<T> {
    pub(super) fn new(inner: T, stall: Arc<WriteStall>) -> Self {
        Watched {
            inner,
            stall,
            blocked: false,
        }
    }
}

/// Notes what a write or flush came to.
fn note<R>(stall: &WriteStall, blocked: &mut bool, poll: &Poll<std::io::Result<R>>) {
    match poll {
        Poll::Pending if !*blocked => {
            *blocked = true;
            let ms = millis_since(stall.base, Instant::now());
            stall.since_ms.store(ms, Ordering::Release);
        }
        Poll::Ready(_) if *blocked => {
            *blocked = false;
            stall.since_ms.store(NONE, Ordering::Release);
        }
        _ => {}
    }
}

impl<T: AsyncRead> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write(cx, buf);
        note(this.stall, this.blocked, &poll);
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let poll = this.inner.poll_write_vectored(cx, bufs);
        note(this.stall, this.blocked, &poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    // Wrapping the socket itself, beneath any TLS: its flush does nothing and never blocks.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Whether hyper owes an HTTP/2 response body its next poll, and since when: set when the body
/// is handed over and whenever it yields a chunk, cleared while the body itself has nothing
/// ready and once it has ended.
pub(super) struct StreamProgress {
    base: Instant,
    owed_since_ms: AtomicU64,
}

impl StreamProgress {
    fn new() -> Self {
        StreamProgress {
            base: Instant::now(),
            owed_since_ms: AtomicU64::new(NONE),
        }
    }

    /// The stream this task serves, when it is an HTTP/2 stream run by [`StreamExec`].
    pub(super) fn current() -> Option<Arc<StreamProgress>> {
        STREAM.try_with(Arc::clone).ok()
    }

    /// The client's turn: the body has a chunk for hyper to send.
    pub(super) fn owed(&self) {
        let ms = millis_since(self.base, Instant::now());
        self.owed_since_ms.store(ms, Ordering::Relaxed);
    }

    /// The server's turn, or the end: the body has nothing for hyper now.
    pub(super) fn settled(&self) {
        self.owed_since_ms.store(NONE, Ordering::Relaxed);
    }

    fn owed_since(&self) -> Option<Instant> {
        match self.owed_since_ms.load(Ordering::Relaxed) {
            NONE => None,
            ms => Some(self.base + Duration::from_millis(ms)),
        }
    }
}

tokio::task_local! {
    static STREAM: Arc<StreamProgress>;
}

/// hyper's executor for HTTP/2 streams: Tokio's, with each stream under a [`Guarded`].
#[derive(Clone)]
pub(super) struct StreamExec {
    pub(super) limit: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let progress = Arc::new(StreamProgress::new());
        let guarded = Guarded {
            inner: fut,
            progress: progress.clone(),
            limit: self.limit,
            timer: None,
        };
        tokio::spawn(STREAM.scope(progress, guarded));
    }
}

pin_project_lite::pin_project! {
    /// One HTTP/2 stream, dropped (and so reset) once its response has waited `limit` for the
    /// client to make room. The timer is armed only while the client owes it.
    pub(super) struct Guarded<F> {
        #[pin]
        inner: F,
        progress: Arc<StreamProgress>,
        limit: Duration,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future> Future for Guarded<F> {
    /// `None` when the stream was reset for making no progress.
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Some(out));
        }
        let Some(since) = this.progress.owed_since() else {
            *this.timer = None;
            return Poll::Pending;
        };
        let at = since + *this.limit;
        let timer = match this.timer {
            Some(timer) => {
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
                timer
            }
            None => this.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(
                    limit_s = this.limit.as_secs_f64(),
                    "HTTP/2 stream reset: its client made no room for the response"
                );
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
