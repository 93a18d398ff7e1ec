//! Liveness and readiness. Readiness is what takes a pod out of its Services' endpoints: it fails
//! while the service shuts down, while an operator has disabled it on the admin port, and while
//! any check the service registered fails (quiz: its database).

pub(crate) mod drills;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

/// What a service's own readiness check reports when it fails: any error, said in its words.
pub type CheckError = Box<dyn std::error::Error + Send + Sync>;

type Check = Box<dyn Fn() -> Result<(), CheckError> + Send + Sync>;

/// Why a pod should not receive traffic now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("shutting down")]
    ShuttingDown,
    #[error("disabled on the admin port (POST /healthz/ready/enable to undo)")]
    DisabledByAdmin,
    /// A check the service registered failed.
    #[error("{check}: {reason}")]
    Check { check: String, reason: String },
}

/// Shared readiness state of one service instance. Cheap to clone.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    shutting_down: AtomicBool,
    disabled_by_admin: AtomicBool,
    checks: RwLock<Vec<(String, Check)>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition readiness depends on. It runs on every probe, so it must be cheap:
    /// read a cached state, do not do I/O.
    pub fn add_check(
        &self,
        name: &str,
        check: impl Fn() -> Result<(), CheckError> + Send + Sync + 'static,
    ) {
        self.inner
            .checks
            .write()
            .expect("health checks lock")
            .push((name.to_owned(), Box::new(check)));
    }

    /// `Ok` when the pod should receive traffic, else the reason it should not.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(NotReady::ShuttingDown);
        }
        if self.inner.disabled_by_admin.load(Ordering::Relaxed) {
            return Err(NotReady::DisabledByAdmin);
        }
        let checks = self.inner.checks.read().expect("health checks lock");
        for (name, check) in checks.iter() {
            check().map_err(|reason| NotReady::Check {
                check: name.clone(),
                reason: reason.to_string(),
            })?;
        }
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// SIGTERM (or Ctrl-C) received: the pod is in its shutdown delay or draining.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Relaxed)
    }

    /// Readiness turned off on the admin port.
    pub fn is_disabled_by_admin(&self) -> bool {
        self.inner.disabled_by_admin.load(Ordering::Relaxed)
    }

    /// From now on readiness fails for good.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn set_disabled_by_admin(&self, disabled: bool) {
        self.inner
            .disabled_by_admin
            .store(disabled, Ordering::Relaxed);
    }

    /// `GET /healthz/live` and `GET /healthz/ready`, served on the main port for the kubelet.
    pub fn probe_routes(&self) -> Router {
        Router::new()
            .route("/healthz/live", get(live))
            .route("/healthz/ready", get(ready))
            .with_state(self.clone())
    }

    /// The readiness toggles, served only on the admin listener (loopback) so that no client
    /// reaching the pod through a Service can pull it out of the endpoints.
    pub fn admin_routes(&self) -> Router {
        Router::new()
            .route("/healthz/ready", get(ready))
            .route("/healthz/ready/disable", post(disable))
            .route("/healthz/ready/enable", post(enable))
            .with_state(self.clone())
    }
}

/// Liveness only says the process still answers HTTP: restarting a pod fixes nothing that
/// readiness already reports.
async fn live() -> &'static str {
    "OK"
}

async fn ready(State(health): State<Health>) -> (StatusCode, String) {
    match health.readiness() {
        Ok(()) => (StatusCode::OK, "Ready".into()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Not ready: {reason}\n"),
        ),
    }
}

async fn disable(State(health): State<Health>) -> &'static str {
    health.set_disabled_by_admin(true);
    tracing::warn!("readiness disabled on the admin port: the pod leaves its Services' endpoints");
    "Readiness disabled: /healthz/ready now answers 503 and the pod leaves its Services' endpoints.\n"
}

async fn enable(State(health): State<Health>) -> &'static str {
    health.set_disabled_by_admin(false);
    tracing::info!("readiness enabled on the admin port");
    "Readiness enabled: /healthz/ready answers 200 again once every other check passes.\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reports_the_first_failing_reason() {
        let health = Health::new();
        assert!(health.is_ready());
        health.add_check("database", || Err("locked".into()));
        assert_eq!(
            health.readiness().unwrap_err().to_string(),
            "database: locked"
        );
        health.set_disabled_by_admin(true);
        assert!(
            health
                .readiness()
                .unwrap_err()
                .to_string()
                .contains("admin")
        );
        health.begin_shutdown();
        assert_eq!(health.readiness(), Err(NotReady::ShuttingDown));
    }
}
