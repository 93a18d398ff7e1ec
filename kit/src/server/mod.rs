//! Listening, serving and shutting down, the same way in every service.
//!
//! Shutdown follows what a Service needs from a terminating pod: on SIGTERM readiness fails at
//! once, the listener stays open for the shutdown delay (endpoints and kube-proxy rules take a
//! moment to forget the pod, and traffic sent meanwhile must still be answered), then it closes
//! and in-flight requests get the drain timeout to finish.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};

use axum::routing::get;
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;

use crate::health::drills::Faults;
use crate::metrics::{self, Exposition, HttpMetrics};
use crate::observe::{ObserveLayer, PodState};
use crate::{BODY_LIMIT, HEADER_LIMIT, Health, Identity, ServerConfig};

mod admin;
mod conn;
mod gate;
mod stall;

pub use conn::Connection;
use conn::{Exec, Shared, Transport, accept_loop};
use gate::Gate;

/// Streams an HTTP/2 client may have open on one connection. A page of kiada's needs about a
/// dozen at once (the document, seven static files, the icon, up to four watches); hyper's
/// default, 200, let a client that takes no responses hold 200 of them per connection.
pub(crate) const MAX_CONCURRENT_STREAMS: u32 = 32;

/// The default of `--max-connections`: connections each listener serves at once. Eight times
/// the benchmark's 64 connections, and more than the labs open; and what a hostile client can
/// make them hold fits the manifests' 64 MiB: a connection with a half-sent 16 KiB head or body
/// costs about 20 KB, and 3,000 of them left a debug build of quote at 17 MB, of quiz at 24 MB.
pub(crate) const MAX_CONNECTIONS: u32 = 512;

/// The default of `--body-read-timeout`: how long a request body may take to arrive after its
/// head; the request timeout (30 s) is for handlers, which may wait that long on a backend.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The limits of [`crate::ServerConfig`] that the listeners and the request layers apply.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Connections each listener serves at once (past it, see [`gate`]).
    pub max_connections: usize,
    /// A request body not received this long after its head is answered 408.
    pub body_read_timeout: Duration,
}

impl Limits {
    /// `--max-connections` and `--body-read-timeout`.
    pub(crate) fn of(config: &ServerConfig) -> Self {
        Limits {
            max_connections: config.max_connections as usize,
            body_read_timeout: config.body_read_timeout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// What a service hands to [`App::bind`]: its application routes and the state the shared
/// parts need.
pub struct AppSpec {
    pub name: &'static str,
    /// Application routes: they get the drills (delay, faults); probes and metrics do not.
    pub routes: Router,
    pub health: Health,
    /// The service's own metrics; the shared HTTP metrics are added to it.
    pub metrics: Registry,
    /// How the shared layers word the errors they answer on this service's behalf.
    pub errors: crate::ErrorFormat,
}

impl AppSpec {
    pub fn new(name: &'static str, routes: Router) -> Self {
        AppSpec {
            name,
            routes,
            health: Health::new(),
            metrics: Registry::default(),
            errors: crate::ErrorFormat::Text,
        }
    }
}

/// A service with its listeners bound, not yet serving.
pub struct App {
    main: std::net::TcpListener,
    admin: std::net::TcpListener,
    router: Router,
    admin_router: Router,
    health: Health,
    config: ServerConfig,
    name: String,
    #[cfg(feature = "tls")]
    tls: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
}

impl App {
    /// Binds the main listener (all addresses, IPv6 and IPv4) and the admin listener
    /// (127.0.0.1), and wraps the service's routes with the probes, metrics, drills, identity
    /// headers, request ids, logging and limits.
    pub fn bind(config: &ServerConfig, identity: &Identity, spec: AppSpec) -> Result<App, Error> {
        let main = bind_dual_stack(config.listen_port)?;
        let admin_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.admin_port));
        let admin = bind_listener(admin_addr, Domain::IPV4).map_err(|source| Error::Bind {
            addr: admin_addr,
            source,
        })?;

        let AppSpec {
            name,
            routes,
            health,
            mut metrics,
            errors,
        } = spec;
        let faults = Faults::new(config);
        if faults.has_fail_after() {
            let drill = faults.clone();
            health.add_check("fault drill", move || drill.readiness());
        }
        let http = HttpMetrics::register(&mut metrics);
        let exposition = Exposition {
            registry: Arc::new(metrics),
            health: health.clone(),
            http: http.clone(),
        };
        let state = PodState::new(health.clone(), faults.clone());
        let routes = routes.layer(faults.clone());
        let router = routes
            .merge(health.probe_routes())
            .route("/metrics", get(metrics::expose).with_state(exposition));
        let router =
            with_common_layers(router, config, identity, Some(http), errors, state.clone());
        let admin_router = health
            .admin_routes()
            .merge(faults.admin_routes())
            .fallback(crate::not_found)
            .layer(axum::middleware::from_fn(admin::guard));
        let admin_router = with_common_layers(
            admin_router,
            config,
            identity,
            None,
            crate::ErrorFormat::Text,
            state,
        );
        Ok(App {
            main,
            admin,
            router,
            admin_router,
            health,
            config: config.clone(),
            name: name.to_owned(),
            #[cfg(feature = "tls")]
            tls: None,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.main
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Serves the same routes over HTTPS on `port` (all addresses; 0 picks a free port).
    #[cfg(feature = "tls")]
    pub fn add_tls(&mut self, port: u16, tls: Arc<rustls::ServerConfig>) -> Result<(), Error> {
        self.tls = Some((bind_dual_stack(port)?, tls));
        Ok(())
    }

    /// The HTTPS listener's address, when there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "tls")]
        if let Some((listener, _)) = &self.tls {
            return listener.local_addr().ok();
        }
        None
    }

    /// Serves until `shutdown` resolves, then drains as described at the top of this module.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let (addr, admin_addr) = (self.addr(), self.admin_addr());
        match self.tls_addr() {
            Some(tls_addr) => {
                tracing::info!(service = %self.name, %addr, %tls_addr, %admin_addr, "listening")
            }
            None => tracing::info!(service = %self.name, %addr, %admin_addr, "listening"),
        }
        // The main and TLS listeners share one set of connections; the admin port has its own,
        // so that draining the application's connections never waits on an operator's.
        let builder = http_builder(self.config.header_read_timeout);
        let age = self.config.max_connection_age;
        let main = Shared::new(builder.clone(), self.config.header_read_timeout, age);
        // The admin port's few local connections need no rotation.
        let admin = Shared::new(builder, self.config.header_read_timeout, None);
        // Each listener has its own cap; readiness fails while an application listener (not
        // the admin one) is at its cap.
        let cap = Limits::of(&self.config).max_connections;
        let main_gate = Gate::new("main", cap);
        #[cfg_attr(not(feature = "tls"), allow(unused_mut, clippy::useless_vec))]
        let mut gates = vec![main_gate.clone()];
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut servers = vec![
            spawn_accept(
                self.main,
                self.router.clone(),
                Transport::Plain,
                &main,
                main_gate,
            )?,
            spawn_accept(
                self.admin,
                self.admin_router,
                Transport::Plain,
                &admin,
                Gate::new("admin", cap),
            )?,
        ];
        #[cfg(feature = "tls")]
        if let Some((listener, tls)) = self.tls {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let gate = Gate::new("TLS", cap);
            gates.push(gate.clone());
            servers.push(spawn_accept(
                listener,
                self.router,
                Transport::Tls(acceptor),
                &main,
                gate,
            )?);
        }
        self.health.add_check("connections", move || {
            gates
                .iter()
                .try_for_each(|gate| gate.saturated())
                .map_err(Into::into)
        });

        shutdown.await;
        self.health.begin_shutdown();
        let delay = self.config.shutdown_delay;
        tracing::info!(
            service = %self.name,
            delay_s = delay.as_secs_f64(),
            "shutting down: readiness now fails; still serving during the shutdown delay"
        );
        tokio::time::sleep(delay).await;

        let drain = self.config.drain_timeout;
        tracing::info!(
            service = %self.name,
            open_connections = main.open_connections(),
            drain_timeout_s = drain.as_secs_f64(),
            "closing listeners; waiting for in-flight requests"
        );
        tokio::join!(main.drain(drain), admin.drain(drain));
        for server in servers {
            server.await.map_err(io::Error::other)?;
        }
        tracing::info!(service = %self.name, "stopped");
        Ok(())
    }

    /// Runs the app on the current runtime until [`Running::stop`].
    pub fn spawn(self) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr, admin_addr, health) = (self.addr(), self.admin_addr(), self.health.clone());
        let tls_addr = self.tls_addr();
        let task = tokio::spawn(self.run(async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            admin_addr,
            tls_addr,
            health,
            stop,
            task,
        }
    }
}

/// An app serving in the background.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub health: Health,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl Running {
    /// `http://127.0.0.1:PORT` of the main listener.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_addr.port())
    }

    /// Shuts down as on SIGTERM and waits until the app has stopped.
    pub async fn stop(self) -> io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(io::Error::other)?
    }
}

/// The body of every `main.rs`: builds the app, serves it until SIGTERM or SIGINT, and turns a
/// start-up failure into a logged message and a non-zero exit.
pub async fn main_with<E: std::fmt::Display>(
    app: impl Future<Output = Result<App, E>>,
) -> ExitCode {
    let app = match app.await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!("cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    match app.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("server failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "signal received");
}

fn spawn_accept(
    listener: std::net::TcpListener,
    router: Router,
    transport: Transport,
    shared: &Arc<Shared>,
    gate: Arc<Gate>,
) -> io::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    Ok(tokio::spawn(accept_loop(
        listener,
        router,
        transport,
        shared.clone(),
        gate,
    )))
}

/// HTTP/1 and HTTP/2 (h2c, or negotiated by ALPN over TLS) on every port. HTTP/1: 431 for
/// request heads over [`HEADER_LIMIT`], and a connection that sends no complete head within the
/// header-read timeout is closed; HTTP/2 has the same head limit, at most
/// [`MAX_CONCURRENT_STREAMS`] streams, and a stream whose response the client makes no room for
/// within the header-read timeout is reset ([`stall`]). The rest of the connection deadlines
/// are in [`conn`].
fn http_builder(header_read_timeout: Duration) -> auto::Builder<Exec> {
    let mut builder = auto::Builder::new(Exec {
        limit: header_read_timeout,
    });
    builder
        .http1()
        .max_buf_size(HEADER_LIMIT)
        // Headers and a small body leave in one write(2): cheaper than a vectored write for
        // the few hundred bytes these services answer with.
        .writev(false)
        // hyper-util's timer: a hand-written one keyed on hyper's internals measured no
        // faster (quote /quote, 114.6k against 115.1k req/s, three alternating runs).
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder
        .http2()
        .max_header_list_size(HEADER_LIMIT as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder
}

fn with_common_layers(
    router: Router,
    config: &ServerConfig,
    identity: &Identity,
    metrics: Option<HttpMetrics>,
    errors: crate::ErrorFormat,
    state: PodState,
) -> Router {
    router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(ObserveLayer::new(
                    identity,
                    config.request_timeout,
                    Limits::of(config).body_read_timeout,
                    metrics,
                    errors,
                    state,
                ))
                // Enforced by the body extractors, so that a service's own rejection handling can
                // answer 413 in its own format (quiz answers JSON).
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
}

async fn method_not_allowed(method: Method, uri: Uri) -> (StatusCode, String) {
    let message = format!("Method {method} is not allowed on {}\n", uri.path());
    (StatusCode::METHOD_NOT_ALLOWED, message)
}

/// `[::]:port` accepting IPv4 too (IPV6_V6ONLY off); `0.0.0.0:port` where the kernel has no IPv6.
pub fn bind_dual_stack(port: u16) -> Result<std::net::TcpListener, Error> {
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match bind_listener(v6, Domain::IPV6) {
        Ok(listener) => Ok(listener),
        Err(err) if ipv6_unavailable(&err) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            tracing::info!("IPv6 is not available ({err}); listening on IPv4 only");
            bind_listener(v4, Domain::IPV4).map_err(|source| Error::Bind { addr: v4, source })
        }
        Err(source) => Err(Error::Bind { addr: v6, source }),
    }
}

fn ipv6_unavailable(err: &io::Error) -> bool {
    // EAFNOSUPPORT: no IPv6 in the kernel; EADDRNOTAVAIL: IPv6 disabled on every interface.
    matches!(err.raw_os_error(), Some(97) | Some(99))
}

fn bind_listener(addr: SocketAddr, domain: Domain) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if domain == Domain::IPV6 {
        socket.set_only_v6(false)?;
    }
    // A restarted process must be able to bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
