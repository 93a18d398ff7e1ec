//! The suite's log: state changes (instances starting and stopping, readiness, rollouts) on the
//! terminal, and the request lines, hundreds a minute under a watch, in a file of their own
//! unless asked for on the terminal (`--access-log -`). `RUST_LOG` is honoured as by every
//! service.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kit::telemetry::ACCESS_LOG;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, thiserror::Error)]
#[error("access log {}: {source}", path.display())]
pub struct LogError {
    path: PathBuf,
    source: std::io::Error,
}

/// Installs the global subscriber: everything but the request lines on stdout, and the
/// request lines appended to `access_log` (`None`: on stdout too).
pub fn init(access_log: Option<&Path>) -> Result<(), LogError> {
    let file = match access_log {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| LogError {
                    path: path.to_owned(),
                    source,
                })?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LogError {
                    path: path.to_owned(),
                    source,
                })?;
            Some(Arc::new(file))
        }
        None => None,
    };
    let to_file = file.is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .with_filter(filter_fn(move |m| !to_file || m.target() != ACCESS_LOG));
    let requests = file.map(|file| {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(false)
            .with_writer(file)
            .with_filter(filter_fn(|m| m.target() == ACCESS_LOG))
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(terminal)
        .with(requests)
        .try_init();
    Ok(())
}
