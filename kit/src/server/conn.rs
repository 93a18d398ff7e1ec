//! The accept loop and the life of one connection.
//!
//! Every connection, on every port, has the same deadline for its first request: the TLS
//! handshake, the first bytes (HTTP/1 or the HTTP/2 preface) and the request head must all
//! arrive within the header-read timeout of the accept. After that a connection with no
//! request in flight for that long is closed too: hyper's own header-read timer covers an
//! HTTP/1 connection waiting for its next head, and the watchdog here covers what it cannot
//! see (a connection still in protocol detection, an idle HTTP/2 connection). A response
//! counts as in flight until its body has been sent, so a long stream is never cut; one the
//! client stops taking is, after the same time (see [`super::stall`]).

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
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::Service as _;

use super::gate::{Gate, Ticket};
use super::stall::{StreamProgress, Watched, WriteStall};

/// The connection a request came on; in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Connection {
    /// The client's address as this socket saw it.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// How many requests this connection has carried, this one included (1 on a new one).
    pub request: u64,
    /// Taken past the listener's connection cap: only the probes and `/metrics` are answered.
    pub(crate) probes_only: bool,
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

/// The deadlines of a connection past the cap (first request, idle, stalled writes): the
/// kubelet sends its probe at once, and a client holding one of these few places without
/// asking must not keep the probes out for long.
const PROBES_DEADLINE: Duration = Duration::from_secs(2);

/// What every connection of one app shares.
pub(super) struct Shared {
    pub builder: auto::Builder<Exec>,
    /// For connections past the cap: HTTP/1 closes after each response.
    pub probes_builder: auto::Builder<Exec>,
    /// The header-read timeout, applied to whole connections as described above.
    pub idle_timeout: Duration,
    /// How long a connection lives before it is asked to close gracefully; `None`: forever.
    pub max_age: Option<Duration>,
    phase: watch::Sender<Phase>,
    open: AtomicUsize,
    all_closed: Notify,
}

impl Shared {
    pub(super) fn new(
        builder: auto::Builder<Exec>,
        idle_timeout: Duration,
        max_age: Option<Duration>,
    ) -> Arc<Self> {
        let mut probes_builder = builder.clone();
        probes_builder
            .http1()
            .keep_alive(false)
            .header_read_timeout(idle_timeout.min(PROBES_DEADLINE));
        Arc::new(Shared {
            builder,
            probes_builder,
            idle_timeout,
            max_age,
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

/// hyper's executor: HTTP/2 streams run under the stall guard.
pub(super) type Exec = super::stall::StreamExec;

/// Accepts until the app starts draining; each connection is served on a task of its own, as
/// far as the listener's cap allows (see [`super::gate`]).
pub(super) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    shared: Arc<Shared>,
    gate: Arc<Gate>,
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
        let Some(ticket) = gate.admit() else {
            // Past the cap and its reserve: closed at once.
            drop(stream);
            continue;
        };
        let open = Open::new(&shared);
        tokio::spawn(connection(
            stream,
            peer,
            router.clone(),
            transport.clone(),
            open,
            ticket,
        ));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    transport: Transport,
    open: Open,
    ticket: Ticket,
) {
    let accepted = Instant::now();
    let shared = &open.0;
    // Responses are small and latency matters: no Nagle.
    let _ = stream.set_nodelay(true);
    // Beneath any TLS: what counts is whether the peer takes bytes off the socket.
    let stall = Arc::new(WriteStall::new(accepted));
    let stream = Watched::new(stream, stall.clone());
    let probes_only = ticket.probes_only;
    let deadline = match probes_only {
        true => shared.idle_timeout.min(PROBES_DEADLINE),
        false => shared.idle_timeout,
    };
    let conn = Conn {
        peer,
        router,
        shared,
        accepted,
        deadline,
        stall,
        probes_only,
    };
    match transport {
        Transport::Plain => serve(stream, false, conn).await,
        #[cfg(feature = "tls")]
        Transport::Tls(acceptor) => {
            let mut phase = shared.phase.subscribe();
            let handshake = tokio::time::timeout_at(accepted + deadline, acceptor.accept(stream));
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
            serve(stream, true, conn).await
        }
    }
    // Held until here: the connection's place under the listener's cap.
    drop(ticket);
}

/// What [`serve`] needs besides the byte stream.
struct Conn<'a> {
    peer: SocketAddr,
    router: Router,
    shared: &'a Arc<Shared>,
    accepted: Instant,
    /// The header-read timeout, or the shorter one of a connection past the cap.
    deadline: Duration,
    stall: Arc<WriteStall>,
    probes_only: bool,
}

async fn serve<I>(io: I, tls: bool, c: Conn<'_>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        peer,
        router,
        shared,
        accepted,
        deadline,
        stall,
        probes_only,
    } = c;
    let activity = Arc::new(Activity::new(accepted, stall));
    let service = PerConnection {
        router,
        peer,
        tls,
        probes_only,
        activity: activity.clone(),
    };
    let builder = match probes_only {
        true => &shared.probes_builder,
        false => &shared.builder,
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let orders = Arc::new(Orders::default());
    let control = watchdog(
        activity,
        peer,
        shared.phase.subscribe(),
        Limits {
            idle: deadline,
            max_age: shared.max_age,
        },
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

/// The watchdog's limits for one connection.
struct Limits {
    /// Nothing in flight, or writes blocked, this long: close.
    idle: Duration,
    /// Older than this: close gracefully.
    max_age: Option<Duration>,
}

/// What the watchdog asks of the connection it watches.
#[derive(Default)]
struct Orders {
    /// Close gracefully: HTTP/1 after the current response, HTTP/2 with GOAWAY.
    shutdown: AtomicBool,
}

/// The watchdog of one connection: returns when the connection must be dropped at once, and
/// sets `orders.shutdown` when it should close gracefully.
///
/// Its timer serves two limits of the same length: no request in flight for `idle` (but on
/// HTTP/1 once a request has come, where hyper's header-read timer covers the wait for every
/// next head), and writes blocked for `idle` (the peer takes no bytes: dropped at once, on
/// every protocol). Between deadlines it wakes once per `idle` to look. A connection older than
/// the maximum age is asked to close, as when draining.
async fn watchdog(
    activity: Arc<Activity>,
    peer: SocketAddr,
    mut phase: watch::Receiver<Phase>,
    limits: Limits,
    orders: Arc<Orders>,
) {
    let idle = limits.idle;
    let timer = tokio::time::sleep_until(activity.base + idle);
    tokio::pin!(timer);
    // Far enough never to fire when there is no maximum age.
    let aged = activity.base
        + limits
            .max_age
            .unwrap_or(Duration::from_secs(100 * 365 * 86_400));
    let age = tokio::time::sleep_until(aged);
    tokio::pin!(age);
    let ask = || orders.shutdown.store(true, Ordering::Release);
    // Set once the connection has been asked to close (idle or draining).
    let mut closing = false;
    loop {
        tokio::select! {
            _ = &mut timer => {
                let now = Instant::now();
                let blocked = activity.stall.since();
                if let Some(since) = blocked
                    && since + idle <= now
                {
                    tracing::debug!(
                        %peer,
                        stalled_s = idle.as_secs_f64(),
                        "closing a connection whose peer takes no bytes"
                    );
                    return;
                }
                let idle_check = match activity.idle_since() {
                    _ if activity.http1.load(Ordering::Relaxed) => None,
                    Some(since) if since + idle <= now => {
                        if closing {
                            // Asked before and still here with nothing in flight (an HTTP/2
                            // peer that does not acknowledge GOAWAY): drop it.
                            return;
                        }
                        ask();
                        closing = true;
                        Some(now + idle)
                    }
                    Some(since) => Some(since + idle),
                    None => None,
                };
                let next = [blocked.map(|since| since + idle), idle_check]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(now + idle);
                timer.as_mut().reset(next);
            },
            _ = &mut age, if limits.max_age.is_some() && !closing => {
                tracing::debug!(%peer, "asking a connection past its maximum age to close");
                ask();
                closing = true;
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

/// What the watchdog needs to know about a connection's requests and writes.
struct Activity {
    base: Instant,
    stall: Arc<WriteStall>,
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
    fn new(base: Instant, stall: Arc<WriteStall>) -> Self {
        Activity {
            base,
            stall,
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
    probes_only: bool,
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
            probes_only: self.probes_only,
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
        // The stream's stall guard, which hyper's executor set up for this task (HTTP/2 only).
        let progress = StreamProgress::current();
        if let Some(progress) = &progress {
            progress.owed();
        }
        Poll::Ready(Ok(response.map(|body| {
            Body::new(TrackedBody {
                inner: body,
                _in_flight: Some(in_flight),
                progress,
                rest: None,
            })
        })))
    }
}

/// The largest piece of an HTTP/2 response handed to hyper at once: hyper asks for the next
/// piece once the client has made room for the last, so a stream that gets no room for a piece
/// within the limit is found out, and one that gets it is not ([`super::stall`]); and the
/// response is in flight until its last piece, so a client still reading a large one keeps its
/// connection.
const PIECE: usize = 16 * 1024;

pin_project_lite::pin_project! {
    /// An HTTP/2 response body: holds its request in flight, hands its data to hyper in pieces,
    /// and tells the stream's stall guard whose turn it is.
    struct TrackedBody {
        #[pin]
        inner: Body,
        _in_flight: Option<InFlight>,
        progress: Option<Arc<StreamProgress>>,
        // What is left of the chunk the last piece was cut from.
        rest: Option<axum::body::Bytes>,
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let poll = match this.rest.take() {
            Some(rest) => Poll::Ready(Some(Ok(hyper::body::Frame::data(rest)))),
            None => this.inner.poll_frame(cx),
        };
        let poll = match poll {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match frame.into_data() {
                    Ok(mut data) => {
                        if data.len() > PIECE {
                            *this.rest = Some(data.split_off(PIECE));
                        }
                        hyper::body::Frame::data(data)
                    }
                    Err(frame) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        };
        if let Some(progress) = this.progress {
            match &poll {
                // A piece for hyper to send: until it asks for the next, the client owes room.
                Poll::Ready(Some(Ok(_))) => progress.owed(),
                Poll::Pending | Poll::Ready(_) => progress.settled(),
            }
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(rest) = &self.rest {
            let more = rest.len() as u64;
            hint.set_lower(hint.lower() + more);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + more);
            }
        }
        hint
    }
}
