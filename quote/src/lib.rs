//! The quote service: `GET /quote` answers a random Kubernetes tip, `GET /` names the pod.
//!
//! Tips are bundled in the binary (`tips.txt`) or read from `--quotes-file`, which is re-read
//! whenever it changes, so a mounted ConfigMap can update them without a restart.

pub mod routes;
pub mod tips;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use tips::{Tips, TipsError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tips(#[from] TipsError),
    #[error(transparent)]
    Server(#[from] kit::Error),
}

/// Everything the service needs to start; `main.rs` fills it from flags and env.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: kit::ServerConfig,
    pub identity: kit::Identity,
    /// Tips file replacing the bundled ones.
    pub quotes_file: Option<PathBuf>,
    /// How often the tips file is checked for changes.
    pub reload_interval: Duration,
}

impl Config {
    /// Free ports and bundled tips: a ready-to-run instance named `pod_name`.
    pub fn local(pod_name: &str) -> Self {
        Config {
            server: kit::ServerConfig::ephemeral(),
            identity: kit::Identity::named(pod_name),
            quotes_file: None,
            reload_interval: tips::RELOAD_INTERVAL,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub tips: Arc<Tips>,
    pub identity: Arc<kit::Identity>,
}

/// Loads the tips and binds the listeners. Fails, naming the file and the problem, when the
/// tips file is missing, unreadable or empty.
pub async fn build(config: Config) -> Result<kit::App, StartError> {
    let tips = match &config.quotes_file {
        Some(path) => {
            let seen = tips::fingerprint(path);
            let tips = Arc::new(Tips::from_file(path)?);
            tracing::info!(path = %path.display(), count = tips.len(), "loaded tips from file");
            tips::watch(tips.clone(), path.clone(), seen, config.reload_interval);
            tips
        }
        None => Arc::new(Tips::bundled()),
    };
    let state = AppState {
        tips: tips.clone(),
        identity: Arc::new(config.identity.clone()),
    };
    let service = kit::AppSpec::new("quote", routes::router(state));
    service.health.add_check("tips", move || match tips.len() {
        0 => Err("no tips loaded".into()),
        _ => Ok(()),
    });
    Ok(kit::App::bind(&config.server, &config.identity, service)?)
}
