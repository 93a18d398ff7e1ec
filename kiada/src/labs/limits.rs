//! What keeps the labs from turning kiada into a load generator: one run at a time per pod,
//! a few watches, and a budget of new backend connections that every lab draws on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::Error;

/// New backend connections the labs may open in a burst, and how many more each second: one
/// full spread run at once, then one every five seconds, so that repeated runs cannot pile up
/// thousands of sockets in TIME_WAIT on the pod.
pub const CONNECTION_BURST: u32 = 100;
pub const CONNECTIONS_PER_SECOND: u32 = 20;

/// Watches streaming at once on one kiada pod.
pub const MAX_WATCHES: usize = 4;

/// What keeps the labs from turning kiada into a load generator: one spread run at a time per
/// pod, at most [`MAX_WATCHES`] watches, and a budget of new backend connections (a token
/// bucket) that both draw on.
pub struct Limits {
    busy: AtomicBool,
    /// The DNS lab's own slot: it opens no backend connection, and a silent nameserver must not
    /// hold the spread lab's.
    dns: AtomicBool,
    watches: AtomicUsize,
    budget: Mutex<Budget>,
}

struct Budget {
    tokens: f64,
    at: Instant,
}

impl Limits {
    pub fn new() -> Self {
        Limits {
            busy: AtomicBool::new(false),
            dns: AtomicBool::new(false),
            watches: AtomicUsize::new(0),
            budget: Mutex::new(Budget {
                tokens: f64::from(CONNECTION_BURST),
                at: Instant::now(),
            }),
        }
    }

    /// Starts a run that may open up to `connections` new connections, or says why not.
    pub(crate) fn start(&self, connections: u32) -> Result<LabSlot<'_>, Error> {
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(Error::LabBusy);
        }
        let running = LabSlot(&self.busy);
        let mut budget = self.budget();
        let needed = f64::from(connections);
        if budget.tokens < needed {
            let wait = (needed - budget.tokens) / f64::from(CONNECTIONS_PER_SECOND);
            return Err(Error::LabRate {
                needed: connections,
                retry_after_s: wait.ceil() as u64,
                burst: CONNECTION_BURST,
                per_second: CONNECTIONS_PER_SECOND,
            });
        }
        budget.tokens -= needed;
        Ok(running)
    }

    /// Starts a DNS lab run, one at a time per pod, or says that one is running.
    pub(crate) fn start_dns(&self) -> Result<LabSlot<'_>, Error> {
        if self.dns.swap(true, Ordering::Acquire) {
            return Err(Error::LabBusy);
        }
        Ok(LabSlot(&self.dns))
    }

    /// The bucket, refilled for the time since it was last used.
    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill =
            now.duration_since(budget.at).as_secs_f64() * f64::from(CONNECTIONS_PER_SECOND);
        budget.tokens = (budget.tokens + refill).min(f64::from(CONNECTION_BURST));
        budget.at = now;
        budget
    }

    /// Takes one new connection from the budget, if one is left. A watch asks before each call
    /// and skips the call when none is: a long watch must not fail because a spread run spent
    /// the budget, and must not starve spread runs by waiting for tokens either.
    pub fn take_connection(&self) -> bool {
        let mut budget = self.budget();
        if budget.tokens >= 1.0 {
            budget.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Starts a watch, or says that [`MAX_WATCHES`] are running.
    pub fn start_watch(self: &Arc<Self>) -> Result<WatchSlot, Error> {
        let taken = self
            .watches
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WATCHES).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(WatchSlot(self.clone())),
            Err(_) => Err(Error::WatchLimit { max: MAX_WATCHES }),
        }
    }
}

/// One running watch; its place is given back when dropped, which is when its response body
/// is dropped: at its end, or at once when the client goes away.
pub struct WatchSlot(Arc<Limits>);

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.0.watches.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

/// Lets one lab run at a time use the pod; released on drop.
pub(crate) struct LabSlot<'a>(&'a AtomicBool);

impl Drop for LabSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
