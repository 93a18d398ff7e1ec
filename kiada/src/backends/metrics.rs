//! Backend calls counted for `/metrics`: by service, outcome and answering pod, and their
//! duration by service.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::api::Backend;
use super::failure::FailureKind;

/// Backend calls by upstream service, outcome and the pod that answered, so that the spread
/// across replicas shows on a dashboard; and their duration by service.
#[derive(Clone)]
pub struct BackendMetrics {
    calls: Family<CallLabels, Counter>,
    /// Series of `calls` made so far (an upper bound: two threads may make the same one).
    series: Arc<AtomicUsize>,
    seconds: kit::metrics::HistogramFamily<ServiceLabel>,
}

/// Distinct (service, outcome, pod) series at most; see [`BackendMetrics::count`].
const MAX_CALL_SERIES: usize = 500;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: &'static str,
    /// ok, dns, refused, timeout, closed, connect, invalid, or the HTTP status.
    outcome: String,
    pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    service: &'static str,
}

impl BackendMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = BackendMetrics {
            calls: Family::default(),
            series: Arc::new(AtomicUsize::new(0)),
            seconds: kit::metrics::HistogramFamily::new_with_constructor(
                kit::metrics::latency_histogram,
            ),
        };
        registry.register(
            "kiada_backend_calls",
            "Calls to the quote and quiz services by outcome and answering pod",
            metrics.calls.clone(),
        );
        registry.register(
            "kiada_backend_call_duration_seconds",
            "Time a backend call took",
            metrics.seconds.clone(),
        );
        metrics
    }

    pub(super) fn count(
        &self,
        service: Backend,
        outcome: Result<(), FailureKind>,
        pod: Option<&str>,
        elapsed: Duration,
    ) {
        let mut labels = CallLabels {
            service: service.name(),
            outcome: outcome.map_or_else(FailureKind::label, |()| "ok".into()),
            pod: pod.unwrap_or("none").to_owned(),
        };
        // The pod name comes from the backend's header: past a number of series no real set
        // of replicas reaches, further names are counted as `other`, so a misbehaving backend
        // cannot grow /metrics without bound.
        let known = self.calls.get(&labels).map(|calls| calls.inc()).is_some();
        if !known {
            if self.series.fetch_add(1, Ordering::Relaxed) >= MAX_CALL_SERIES {
                labels.pod = "other".to_owned();
            }
            self.calls.get_or_create(&labels).inc();
        }
        let service = ServiceLabel {
            service: service.name(),
        };
        self.seconds
            .get_or_create(&service)
            .observe(elapsed.as_secs_f64());
    }
}
