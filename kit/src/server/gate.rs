//! The connection cap of each listener (`--max-connections`).
//!
//! Up to the cap, connections are served as usual. Past it, a few more — [`PROBE_RESERVE`] —
//! are still taken, but answered only on the probes and `/metrics` (everything else gets 503,
//! HTTP/1 closes after each response, and each has 2 s to ask, not 10): the kubelet's probes
//! must reach a saturated pod, liveness to keep it from being restarted for being busy,
//! readiness to hear why it should get no more traffic. Past that, a connection is accepted
//! and closed at once, which a client sees at once, where one left in the listen backlog would
//! wait for its own timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Connections a listener takes past its cap, for probes and scrapes only.
pub(crate) const PROBE_RESERVE: usize = 16;

/// How often at most a listener logs that it is at its cap.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The cap of one listener and the connections it holds.
pub(super) struct Gate {
    listener: &'static str,
    cap: usize,
    served: AtomicUsize,
    reserve: AtomicUsize,
    /// Connections closed at once since the last warning.
    refused: AtomicU64,
    /// When the last warning was logged, in milliseconds after `base` (0: never).
    warned_ms: AtomicU64,
    base: Instant,
}

/// A connection let in; gives its place back when dropped.
pub(super) struct Ticket {
    gate: Arc<Gate>,
    /// Taken from the reserve: answered only on the probes and `/metrics`.
    pub(super) probes_only: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let count = match self.probes_only {
            true => &self.gate.reserve,
            false => &self.gate.served,
        };
        count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why readiness fails while a listener is at its cap.
#[derive(Debug, thiserror::Error)]
#[error(
    "the {listener} listener holds {open} connections, its cap (--max-connections); new \
     connections are answered only on the probes and /metrics until some close"
)]
pub(super) struct Saturated {
    listener: &'static str,
    open: usize,
}

impl Gate {
    /// `listener` names it in the log and in readiness: `main`, `TLS`, `admin`.
    pub(super) fn new(listener: &'static str, cap: usize) -> Arc<Self> {
        Arc::new(Gate {
            listener,
            cap: cap.max(1),
            served: AtomicUsize::new(0),
            reserve: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            warned_ms: AtomicU64::new(0),
            base: Instant::now(),
        })
    }

    /// A place for a new connection: a served one, one from the reserve, or none (close it).
    pub(super) fn admit(self: &Arc<Self>) -> Option<Ticket> {
        if take(&self.served, self.cap) {
            return Some(Ticket {
                gate: self.clone(),
                probes_only: false,
            });
        }
        let ticket = take(&self.reserve, PROBE_RESERVE).then(|| Ticket {
            gate: self.clone(),
            probes_only: true,
        });
        if ticket.is_none() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        self.warn_at_cap();
        ticket
    }

    /// `Err` while the listener holds as many served connections as its cap allows.
    pub(super) fn saturated(&self) -> Result<(), Saturated> {
        let open = self.served.load(Ordering::Acquire);
        if open < self.cap {
            return Ok(());
        }
        Err(Saturated {
            listener: self.listener,
            open,
        })
    }

    /// Logs, at most every [`WARN_EVERY`], that the cap was reached.
    fn warn_at_cap(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.warned_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if !due
            || self
                .warned_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        tracing::warn!(
            listener = self.listener,
            max_connections = self.cap,
            closed_at_once = self.refused.swap(0, Ordering::Relaxed),
            "connection cap reached: readiness fails, and new connections are answered only on \
             the probes and /metrics (or closed at once) until some close"
        );
    }
}

/// Takes one of `max` places, if one is free.
fn take(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_come_the_reserve_then_nothing_and_places_come_back() {
        let gate = Gate::new("main", 2);
        let served: Vec<_> = (0..2).map(|_| gate.admit().unwrap()).collect();
        assert!(served.iter().all(|t| !t.probes_only));
        let err = gate.saturated().unwrap_err().to_string();
        assert!(
            err.starts_with("the main listener holds 2 connections"),
            "{err}"
        );
        let reserve: Vec<_> = (0..PROBE_RESERVE).map(|_| gate.admit().unwrap()).collect();
        assert!(reserve.iter().all(|t| t.probes_only));
        assert!(gate.admit().is_none(), "past the reserve: closed at once");
        drop(served);
        assert!(gate.saturated().is_ok(), "below the cap again");
        assert!(!gate.admit().unwrap().probes_only);
    }
}
