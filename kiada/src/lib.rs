//! kiada, the front end: a text page for curl and an HTML page for browsers, showing a tip from
//! the quote service, a question from the quiz service, which pod answered each, and who served
//! the page.

//!
//! Its rooms, each a folder whose `mod.rs` says what it holds and what it may use:
//! - [`backends`]: finding quote and quiz, calling them, explaining each call (uses no room);
//! - [`page`]: the page a visitor sees, answering, the script's proxy (uses backends, view);
//! - [`labs`]: the experiments under `/lab` and their limits (uses backends, view);
//! - [`view`]: what the pages and labs show alike: HTML headers, badge, colours, static files.
//!
//! Beside them: `error` (kiada's error, answered as a response), `tls` (the HTTPS certificate),
//! `terminal` (text for curl: wrapped, and made harmless), and here the configuration and the
//! wiring of the rooms' routes.

pub mod backends;
mod error;
pub mod labs;
pub mod page;
mod terminal;
pub mod tls;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

pub use backends::{Backends, Discovered, ServiceEnv, Source};
pub use error::Error;
pub use page::Status;
pub use tls::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Url(#[from] backends::BadUrl),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Server(#[from] kit::Error),
}

#[derive(Clone)]
pub struct Config {
    pub server: kit::ServerConfig,
    pub identity: kit::Identity,
    /// Full URL of the quote endpoint (`http://quote/quote`).
    pub quote: Discovered,
    /// Base URL of the quiz service (`http://quiz`).
    pub quiz: Discovered,
    /// Each backend call's time limit.
    pub backend_timeout: Duration,
    /// How long idle backend connections are kept (see `backends/client.rs`); zero: none are.
    pub backend_pool_idle: Duration,
    pub status: Status,
    /// The HTTPS listener; `None` serves HTTP only.
    pub tls: Option<TlsConfig>,
    /// Replaces the system resolver for backend calls (tests).
    pub resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    /// Pod and node address ranges, to classify client IPs.
    pub networks: page::client_ip::Networks,
    /// The resolver configuration the DNS lab reads.
    pub resolv_conf: std::path::PathBuf,
    /// The names the DNS lab may ask about.
    pub dns_names: labs::dns::Names,
    /// Where the DNS lab asks instead of resolv.conf's first nameserver on port 53 (the local
    /// suite's cluster DNS, on a port of its own); a pod keeps `None`.
    pub dns_nameserver: Option<std::net::SocketAddr>,
    /// Routes beside kiada's own, on the same ports: the local suite's `/lab/pods` and
    /// `/lab/rollout`, which it alone can answer. They get every layer kiada's routes get.
    pub extra_routes: Option<axum::Router>,
    /// Whether the lab page shows a section of the pods (the extra routes serve `/lab/pods`).
    pub pods_section: bool,
    /// What `kiada check` looks at; `None`: derived from the backend URLs and the identity.
    pub check: Option<labs::check::Targets>,
}

impl Config {
    /// Free ports, no TLS, the given backends.
    pub fn local(pod_name: &str, quote_url: &str, quiz_url: &str) -> Self {
        let explicit = |url: &str| Discovered {
            url: url.to_owned(),
            source: Source::Explicit,
        };
        Config {
            server: kit::ServerConfig::ephemeral(),
            identity: kit::Identity::named(pod_name),
            quote: explicit(quote_url),
            quiz: explicit(quiz_url),
            backend_timeout: Duration::from_secs(2),
            backend_pool_idle: Duration::from_secs(1),
            status: Status::new(page::status::DEFAULT),
            tls: None,
            resolver: None,
            networks: page::client_ip::Networks::default(),
            resolv_conf: labs::dns::RESOLV_CONF.into(),
            dns_names: labs::dns::Names::default(),
            dns_nameserver: None,
            extra_routes: None,
            pods_section: false,
            check: None,
        }
    }
}

/// Binds the listeners (HTTPS too, unless disabled). Readiness does not depend on the
/// backends: a failing quote service must not take every kiada pod out of its Service too.
pub async fn build(config: Config) -> Result<kit::App, StartError> {
    for (service, found) in [("quote", &config.quote), ("quiz", &config.quiz)] {
        tracing::info!(service, url = %found.url, source = %found.source, "backend");
    }
    let mut metrics = prometheus_client::registry::Registry::default();
    let backends = Backends::new(backends::BackendsConfig {
        quote: config.quote.clone(),
        quiz: config.quiz.clone(),
        timeout: config.backend_timeout,
        pool_idle: config.backend_pool_idle,
        resolver: config.resolver.clone(),
        metrics: backends::BackendMetrics::register(&mut metrics),
    })?;
    let identity = Arc::new(config.identity.clone());
    let page = page::PageState {
        backends: backends.clone(),
        identity: identity.clone(),
        status: config.status.clone(),
        networks: Arc::new(config.networks.clone()),
    };
    let labs = labs::LabState {
        backends,
        identity,
        limits: Arc::new(labs::Limits::new()),
        resolv_conf: Arc::new(config.resolv_conf.clone()),
        dns_names: Arc::new(config.dns_names.clone()),
        nameserver: config.dns_nameserver,
        pods_section: config.pods_section,
        check: Arc::new(config.check.clone().unwrap_or_else(|| {
            let mut t = labs::check::Targets::new(&config.quote.url, &config.quiz.url);
            t.namespace = config.identity.pod_namespace.clone();
            t.node_name = config.identity.node_name.clone();
            t.node_ip = config.identity.node_ip.parse().ok();
            t.cluster_domain = config.dns_names.cluster_domain.clone();
            t
        })),
    };
    let service = kit::AppSpec {
        metrics,
        errors: kit::ErrorFormat::JsonUnder("/proxy/"),
        ..kit::AppSpec::new("kiada", router(page, labs, config.extra_routes.clone()))
    };
    let mut app = kit::App::bind(&config.server, &config.identity, service)?;
    if let Some(tls) = &config.tls {
        let names = [
            config.identity.pod_name.clone(),
            config.identity.hostname.clone(),
        ];
        app.add_tls(tls.port, tls::server_config(tls, &names)?)?;
    }
    Ok(app)
}

/// Every route of kiada: the page's, the labs', the static files, and the `extra` routes of the
/// local suite; 404 in text for the rest. Whatever is not an HTML page (which sets its own
/// policy) is locked down by [`view::html::not_a_page`]: a backend's answer relayed, a text
/// page, JSON, never a document that runs anything on kiada's origin.
pub fn router(
    page: page::PageState,
    labs: labs::LabState,
    extra: Option<axum::Router>,
) -> axum::Router {
    use axum::routing::get;
    page::router(page)
        .merge(labs::router(labs))
        .merge(extra.unwrap_or_default())
        .route("/static/{file}", get(view::assets::file))
        .route("/favicon.ico", get(view::assets::favicon))
        .fallback(kit::not_found)
        .layer(axum::middleware::map_response(view::html::not_a_page))
}
