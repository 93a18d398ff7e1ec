//! kiada, the front end: a text page for curl and an HTML page for browsers, showing a tip from
//! the quote service, a question from the quiz service, which pod answered each, and who served
//! the page.

mod assets;
pub mod backend;
pub mod client_ip;
pub mod colour;
pub mod discovery;
pub mod dns_lab;
mod error;
pub mod hop;
pub mod lab;
mod lab_page;
pub mod render;
pub mod routes;
pub mod status;
pub mod tls;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

pub use backend::Backends;
pub use discovery::{Discovered, ServiceEnv, Source};
pub use error::Error;
pub use status::Status;
pub use tls::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Url(#[from] backend::BadUrl),
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
    /// How long idle backend connections are kept (see `backend.rs`); zero: none are.
    pub backend_pool_idle: Duration,
    pub status: Status,
    /// The HTTPS listener; `None` serves HTTP only.
    pub tls: Option<TlsConfig>,
    /// Replaces the system resolver for backend calls (tests).
    pub resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    /// Pod and node address ranges, to classify client IPs.
    pub networks: client_ip::Networks,
    /// The resolver configuration the DNS lab reads.
    pub resolv_conf: std::path::PathBuf,
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
            status: Status::new(status::DEFAULT),
            tls: None,
            resolver: None,
            networks: client_ip::Networks::default(),
            resolv_conf: dns_lab::RESOLV_CONF.into(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub backends: Backends,
    pub identity: Arc<kit::Identity>,
    pub status: Status,
    /// What bounds the labs: one run at a time, a budget of new backend connections.
    pub labs: Arc<lab::Limits>,
    pub networks: Arc<client_ip::Networks>,
    pub resolv_conf: Arc<std::path::PathBuf>,
}

/// Binds the listeners (HTTPS too, unless disabled). Readiness does not depend on the
/// backends: a failing quote service must not take every kiada pod out of its Service too.
pub async fn build(config: Config) -> Result<kit::App, StartError> {
    for (service, found) in [("quote", &config.quote), ("quiz", &config.quiz)] {
        tracing::info!(service, url = %found.url, source = %found.source, "backend");
    }
    let mut metrics = prometheus_client::registry::Registry::default();
    let backends = Backends::new(backend::BackendsConfig {
        quote: config.quote.clone(),
        quiz: config.quiz.clone(),
        timeout: config.backend_timeout,
        pool_idle: config.backend_pool_idle,
        resolver: config.resolver.clone(),
        metrics: backend::BackendMetrics::register(&mut metrics),
    })?;
    let state = AppState {
        backends,
        identity: Arc::new(config.identity.clone()),
        status: config.status.clone(),
        labs: Arc::new(lab::Limits::new()),
        networks: Arc::new(config.networks.clone()),
        resolv_conf: Arc::new(config.resolv_conf.clone()),
    };
    let service = kit::AppSpec {
        metrics,
        errors: kit::ErrorFormat::JsonUnder("/proxy/"),
        ..kit::AppSpec::new("kiada", routes::router(state))
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
