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
use axum_server::Handle;
use axum_server::accept::Accept;
use prometheus_client::registry::Registry;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;

use crate::faults::Faults;
use crate::header_timer::HeaderTimer;
use crate::metrics::{self, Exposition, HttpMetrics};
use crate::observe::ObserveLayer;
use crate::{BODY_LIMIT, HEADER_LIMIT, Health, Identity, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// What a service hands to [`App::bind`]: its application routes and the state the shared
/// parts need.
pub struct Service {
    pub name: &'static str,
    /// Application routes: they get the drills (delay, faults); probes and metrics do not.
    pub routes: Router,
    pub health: Health,
    /// The service's own metrics; the shared HTTP metrics are added to it.
    pub metrics: Registry,
}

impl Service {
    pub fn new(name: &'static str, routes: Router) -> Self {
        Service {
            name,
            routes,
            health: Health::new(),
            metrics: Registry::default(),
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
    pub fn bind(
        config: &ServerConfig,
        identity: &Identity,
        service: Service,
    ) -> Result<App, Error> {
        let main = bind_dual_stack(config.listen_port)?;
        let admin_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.admin_port));
        let admin = bind_listener(admin_addr, Domain::IPV4).map_err(|source| Error::Bind {
            addr: admin_addr,
            source,
        })?;

        let Service {
            name,
            routes,
            health,
            mut metrics,
        } = service;
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
        let routes = routes.layer(faults.clone());
        let router = routes
            .merge(health.probe_routes())
            .route("/metrics", get(metrics::expose).with_state(exposition));
        let router = with_common_layers(router, config, identity, Some(http));
        let admin_router = with_common_layers(
            health.admin_routes().merge(faults.admin_routes()),
            config,
            identity,
            None,
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
        let main = Handle::new();
        let admin = Handle::new();
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut servers = vec![
            serve(self.main, self.router.clone(), main.clone(), &self.config)?,
            serve(self.admin, self.admin_router, admin.clone(), &self.config)?,
        ];
        #[cfg(feature = "tls")]
        if let Some((listener, tls)) = self.tls {
            servers.push(serve_tls(
                listener,
                tls,
                self.router,
                main.clone(),
                &self.config,
            )?);
        }

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
            open_connections = main.connection_count(),
            drain_timeout_s = drain.as_secs_f64(),
            "closing listeners; waiting for in-flight requests"
        );
        main.graceful_shutdown(Some(drain));
        admin.graceful_shutdown(Some(drain));
        for server in servers {
            server.await.map_err(io::Error::other)??;
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

fn serve(
    listener: std::net::TcpListener,
    router: Router,
    handle: Handle<SocketAddr>,
    config: &ServerConfig,
) -> io::Result<JoinHandle<io::Result<()>>> {
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(NoDelay)
        .handle(handle);
    configure_http1(server.http_builder(), config.header_read_timeout);
    Ok(tokio::spawn(server.serve(
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )))
}

#[cfg(feature = "tls")]
fn serve_tls(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    handle: Handle<SocketAddr>,
    config: &ServerConfig,
) -> io::Result<JoinHandle<io::Result<()>>> {
    use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
    let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(tls))
        .handshake_timeout(Duration::from_secs(10))
        .acceptor(NoDelay);
    let mut server = axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .handle(handle);
    configure_http1(server.http_builder(), config.header_read_timeout);
    // Handlers that print URLs need to know the request came over TLS.
    let router = router.layer(axum::Extension(crate::Tls));
    Ok(tokio::spawn(server.serve(
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )))
}

/// HTTP/1: 431 for request heads over [`HEADER_LIMIT`]; a client that sends no complete head
/// within the header-read timeout (10 s) is disconnected, so idle and half-open connections
/// cannot pile up.
fn configure_http1(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    header_read_timeout: Duration,
) {
    builder
        .http1()
        .max_buf_size(HEADER_LIMIT)
        // Headers and a small body leave in one write(2): cheaper than a vectored write for
        // the few hundred bytes these services answer with (5 % more requests per second).
        .writev(false)
        .timer(HeaderTimer::start())
        .header_read_timeout(header_read_timeout);
}

fn with_common_layers(
    router: Router,
    config: &ServerConfig,
    identity: &Identity,
    metrics: Option<HttpMetrics>,
) -> Router {
    router
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(ObserveLayer::new(identity, config.request_timeout, metrics))
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
pub(crate) fn bind_dual_stack(port: u16) -> Result<std::net::TcpListener, Error> {
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

/// Disables Nagle's algorithm on accepted connections: responses are small and latency matters.
#[derive(Clone, Copy)]
struct NoDelay;

impl<S: Send + 'static> Accept<TcpStream, S> for NoDelay {
    type Stream = TcpStream;
    type Service = S;
    type Future = std::future::Ready<io::Result<(TcpStream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let _ = stream.set_nodelay(true);
        std::future::ready(Ok((stream, service)))
    }
}
