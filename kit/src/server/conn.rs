//! The accept loop and the life of one connection.
//!
//! Every connection, on every port, has the same deadline for its first request: the TLS
//! handshake, the first bytes (HTTP/1 or the HTTP/2 preface) and the request head must all
//! arrive within the header-read timeout of the accept. After that a connection with no
//! request in flight for that long is closed too: hyper's own header-read timer covers an
//! HTTP/1 connection waiting for its next head, and the watchdog here covers what it cannot
//! see (a connection still in protocol detection, an idle HTTP/2 connection). A response
//! counts as in flight until its body has been sent, so a long stream is never cut.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::Service as _;

/// The connection a request came on; in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    /// The client's address as this socket saw it.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// How many requests this connection has carried, this one included (1 on a new one).
    pub request: u64,
}

/// Where the connections of one app stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Serving,
    /// Finish what is in flight, take nothing new: HTTP/1 closes after the current response,
    /// HTTP/2 sends GOAWAY.
    Draining,
    /// The drain timeout has passed: close now.
    Closed,
}

/// What every connection of one app shares.
pub(super) struct Shared {
    pub builder: auto::Builder<TokioExecutor>,
    /// The header-read timeout, applied to whole connections as described above.
    pub idle_timeout: Duration,
    phase: watch::Sender<Phase>,
    open: AtomicUsize,
    all_closed: Notify,
}

impl Shared {
    pub(super) fn new(builder: auto::Builder<TokioExecutor>, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Shared {
            builder,
            idle_timeout,
            phase: watch::Sender::new(Phase::Serving),
            open: AtomicUsize::new(0),
            all_closed: Notify::new(),
        })
    }

    pub(super) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Stops accepting, lets in-flight requests finish for up to `drain`, then closes whatever
    /// is left.
    pub(super) async fn drain(&self, drain: Duration) {
        self.phase.send_replace(Phase::Draining);
        let all_closed = async {
            loop {
                let notified = self.all_closed.notified();
                if self.open_connections() == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(drain, all_closed).await.is_err() {
            tracing::warn!(
                open_connections = self.open_connections(),
                "drain timeout reached; closing the remaining connections"
            );
        }
        self.phase.send_replace(Phase::Closed);
    }
}

/// Counts a connection open until dropped.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::AcqRel);
        Open(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// How one listener turns a TCP connection into a byte stream.
#[derive(Clone)]
pub(super) enum Transport {
    Plain,
    #[cfg(feature = "tls")]
    Tls(tokio_rustls::TlsAcceptor),
}

/// Accepts until the app starts draining; each connection is served on a task of its own.
pub(super) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    shared: Arc<Shared>,
) {
    let mut phase = shared.phase.subscribe();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p != Phase::Serving) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors or memory: wait a little rather than spin; a connection
                // aborted before accept just goes away.
                if err.kind() != std::io::ErrorKind::ConnectionAborted {
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let open = Open::new(&shared);
        tokio::spawn(connection(
            stream,
            peer,
            router.clone(),
            transport.clone(),
            open,
        ));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    transport: Transport,
    open: Open,
) {
    let accepted = Instant::now();
    let shared = &open.0;
    // Responses are small and latency matters: no Nagle.
    let _ = stream.set_nodelay(true);
    match transport {
        Transport::Plain => serve(stream, peer, false, router, shared, accepted).await,
        #[cfg(feature = "tls")]
        Transport::Tls(acceptor) => {
            let mut phase = shared.phase.subscribe();
            let handshake =
                tokio::time::timeout_at(accepted + shared.idle_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {err}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                _ = phase.wait_for(|p| *p != Phase::Serving) => return,
            };
            serve(stream, peer, true, router, shared, accepted).await
        }
    }
}

async fn serve<I>(
    io: I,
    peer: SocketAddr,
    tls: bool,
    router: Router,
    shared: &Arc<Shared>,
    accepted: Instant,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new(accepted));
    let service = PerConnection {
        router,
        peer,
        tls,
        activity: activity.clone(),
    };
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let orders = Arc::new(Orders::default());
    let control = watchdog(
        activity,
        shared.phase.subscribe(),
        shared.idle_timeout,
        orders.clone(),
    );
    tokio::pin!(control);
    // The watchdog's timer and the drain signal wake it through a waker of its own, so it is
    // polled only when one of them fired, not on every read and write of the connection: the
    // connection future alone runs per request (bench scenario "quote GET /quote").
    let wake = Arc::new(ControlWake::default());
    let control_waker = Waker::from(wake.clone());
    let mut task_waker: Option<Waker> = None;
    let mut shutdown_sent = false;
    let result = std::future::poll_fn(|cx| {
        if !task_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            wake.set_task(cx.waker());
            task_waker = Some(cx.waker().clone());
        }
        if wake.take() {
            if control
                .as_mut()
                .poll(&mut Context::from_waker(&control_waker))
                .is_ready()
            {
                return Poll::Ready(None);
            }
            if orders.shutdown.load(Ordering::Acquire) && !shutdown_sent {
                conn.as_mut().graceful_shutdown();
                shutdown_sent = true;
            }
        }
        conn.as_mut().poll(cx).map(Some)
    })
    .await;
    if let Some(Err(err)) = result {
        tracing::debug!(%peer, "connection ended: {err}");
    }
}

/// What the watchdog asks of the connection it watches.
#[derive(Default)]
struct Orders {
    /// Close gracefully: HTTP/1 after the current response, HTTP/2 with GOAWAY.
    shutdown: AtomicBool,
}

/// The watchdog of one connection: returns when the connection must be dropped at once, and
/// sets `orders.shutdown` when it should close gracefully.
async fn watchdog(
    activity: Arc<Activity>,
    mut phase: watch::Receiver<Phase>,
    idle: Duration,
    orders: Arc<Orders>,
) {
    let timer = tokio::time::sleep_until(activity.base + idle);
    tokio::pin!(timer);
    let ask = || orders.shutdown.store(true, Ordering::Release);
    // Set once the connection has been asked to close (idle or draining).
    let mut closing = false;
    let mut watching = true;
    loop {
        tokio::select! {
            _ = &mut timer, if watching => match activity.idle_since() {
                // HTTP/1 once a request has come: hyper's header-read timer covers the wait for
                // every next head, so the watchdog steps aside.
                _ if activity.http1.load(Ordering::Relaxed) => watching = false,
                Some(since) if since + idle <= Instant::now() => {
                    if closing {
                        // Asked before and still here with nothing in flight (an HTTP/2 peer
                        // that does not acknowledge GOAWAY): drop it.
                        return;
                    }
                    ask();
                    closing = true;
                    timer.as_mut().reset(Instant::now() + idle);
                }
                Some(since) => timer.as_mut().reset(since + idle),
                None => timer.as_mut().reset(Instant::now() + idle),
            },
            changed = phase.changed() => {
                let now = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::Closed };
                match now {
                    Phase::Serving => {}
                    Phase::Draining => {
                        if !closing {
                            ask();
                            closing = true;
                        }
                    }
                    Phase::Closed => return,
                }
            }
        }
    }
}

/// The waker the watchdog's timer and drain signal wake: it marks the watchdog as due and wakes
/// the connection's task.
struct ControlWake {
    due: AtomicBool,
    task: std::sync::Mutex<Option<Waker>>,
}

impl Default for ControlWake {
    fn default() -> Self {
        // Due at first, so that the first poll arms the timer and the drain signal.
        ControlWake {
            due: AtomicBool::new(true),
            task: std::sync::Mutex::new(None),
        }
    }
}

impl ControlWake {
    fn set_task(&self, waker: &Waker) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        *task = Some(waker.clone());
    }

    /// Whether the watchdog is due, clearing the mark.
    fn take(&self) -> bool {
        self.due.load(Ordering::Acquire) && self.due.swap(false, Ordering::AcqRel)
    }
}

impl Wake for ControlWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

/// What the watchdog needs to know about a connection's requests.
struct Activity {
    base: Instant,
    /// Requests started on this connection.
    requests: AtomicU64,
    /// Requests whose response has not been sent completely.
    in_flight: AtomicUsize,
    /// When the last response finished, in milliseconds after `base`.
    idle_since_ms: AtomicU64,
    /// Set by the first HTTP/1 request; only HTTP/2 requests are tracked in flight.
    http1: AtomicBool,
}

impl Activity {
    fn new(base: Instant) -> Self {
        Activity {
            base,
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            http1: AtomicBool::new(false),
        }
    }

    /// `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.idle_since_ms.load(Ordering::Acquire);
        Some(self.base + Duration::from_millis(ms))
    }
}

/// Holds a request in flight until dropped with its response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> (Self, u64) {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        let n = activity.requests.fetch_add(1, Ordering::Relaxed) + 1;
        (InFlight(activity.clone()), n)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.store(ms, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router as hyper calls it on one connection.
#[derive(Clone)]
struct PerConnection {
    router: Router,
    peer: SocketAddr,
    tls: bool,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for PerConnection {
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<<Router as tower::Service<Request>>::Future>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        // HTTP/2 responses are tracked until their body is sent (the watchdog must not close a
        // connection that streams); HTTP/1 needs only the count (see `serve`).
        let (in_flight, n) = if request.version() == axum::http::Version::HTTP_2 {
            let (in_flight, n) = InFlight::start(&self.activity);
            (Some(in_flight), n)
        } else {
            let activity = &self.activity;
            activity.http1.store(true, Ordering::Relaxed);
            (None, activity.requests.fetch_add(1, Ordering::Relaxed) + 1)
        };
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(Connection {
            peer: self.peer,
            tls: self.tls,
            request: n,
        });
        Tracked {
            inner: self.router.clone().call(request),
            in_flight,
        }
    }
}

pin_project_lite::pin_project! {
    /// The router's future; its response body carries the in-flight mark.
    struct Tracked<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Future for Tracked<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let Some(in_flight) = this.in_flight.take() else {
            return Poll::Ready(Ok(response));
        };
        Poll::Ready(Ok(response.map(|body| {
            Body::new(TrackedBody {
                inner: body,
                _in_flight: Some(in_flight),
            })
        })))
    }
}

pin_project_lite::pin_project! {
    struct TrackedBody {
        #[pin]
        inner: Body,
        _in_flight: Option<InFlight>,
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
