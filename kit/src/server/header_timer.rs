//! The clock behind hyper's header-read timeout: a connection that has not sent a complete
//! request head within the timeout (slowloris, or a client idling on a keep-alive connection)
//! is closed.
//!
//! hyper starts that timeout for every request, and a timer of the runtime costs two trips
//! through its timer wheel per request — a twentieth of quote's CPU time. This one keeps one
//! entry per waiting connection (keyed by its task's waker) in small maps that a ticker sweeps
//! once a second: a request costs two map updates (the wait begins, the head arrives), and the
//! timeout fires within a second after the deadline — precise enough for a limit counted in
//! seconds. Each thread registers in a map of its own, so worker threads never wait for each
//! other's lock or pull its memory across cores.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

const TICK: Duration = Duration::from_secs(1);

/// Maps per timer; threads beyond this many share them.
const SHARDS: usize = 8;

#[derive(Clone)]
pub(crate) struct HeaderTimer {
    waiting: Arc<[Shard; SHARDS]>,
}

/// Connections waiting for a deadline, by the address of their task.
type Waiting = HashMap<usize, (Instant, Waker), BuildHasherDefault<AddressHasher>>;

/// On a cache line of its own: the shards of two threads must not share one.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Waiting>);

impl Shard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // Deadlines and wakers only; a panic elsewhere cannot leave the map inconsistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The shard this thread registers in.
fn this_threads_shard() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// Task addresses are distinct and attacker-independent: one multiplication spreads them over
/// the table, where SipHash cost more than the rest of the map update.
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8 | u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, address: usize) {
        self.0 = (address as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl HeaderTimer {
    /// Starts the ticker on the current runtime; it ends when the last clone is dropped.
    pub(crate) fn start() -> Self {
        let waiting: Arc<[Shard; SHARDS]> = Arc::new(Default::default());
        tokio::spawn(tick(Arc::downgrade(&waiting)));
        HeaderTimer { waiting }
    }
}

async fn tick(waiting: Weak<[Shard; SHARDS]>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(waiting) = waiting.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut due = Vec::new();
        for shard in waiting.iter() {
            shard
                .lock()
                .retain(|_, (deadline, waker)| match *deadline <= now {
                    true => {
                        due.push(waker.clone());
                        false
                    }
                    false => true,
                });
        }
        // Woken outside the lock.
        due.into_iter().for_each(Waker::wake);
    }
}

impl Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline {
            deadline,
            waiting: self.waiting.clone(),
            registered: None,
        })
    }
}

struct Deadline {
    deadline: Instant,
    waiting: Arc<[Shard; SHARDS]>,
    /// Where this deadline is registered (shard, task), once polled.
    registered: Option<(usize, usize)>,
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let waker = cx.waker();
        // One entry per task (hyper has one header read pending per connection at a time).
        let key = waker.data() as usize;
        let shard = this_threads_shard();
        if let Some((before, _)) = self.registered.filter(|&(before, _)| before != shard) {
            // The task moved to another thread since it last waited here.
            self.waiting[before].lock().remove(&key);
        }
        let mut waiting = self.waiting[shard].lock();
        match waiting.get_mut(&key) {
            Some((deadline, known)) => {
                *deadline = self.deadline;
                if !known.will_wake(waker) {
                    known.clone_from(waker);
                }
            }
            None => {
                waiting.insert(key, (self.deadline, waker.clone()));
            }
        }
        drop(waiting);
        self.registered = Some((shard, key));
        Poll::Pending
    }
}

/// A head that arrived, or a closed connection, takes its entry out: the map holds only
/// connections still waiting, and no waker keeps a finished connection's task in memory.
impl Drop for Deadline {
    fn drop(&mut self) {
        let Some((shard, key)) = self.registered else {
            return;
        };
        let mut waiting = self.waiting[shard].lock();
        if waiting
            .get(&key)
            .is_some_and(|(deadline, _)| *deadline == self.deadline)
        {
            waiting.remove(&key);
        }
    }
}

impl Sleep for Deadline {}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(timer: &HeaderTimer) -> usize {
        timer.waiting.iter().map(|shard| shard.lock().len()).sum()
    }

    #[tokio::test]
    async fn a_deadline_fires_within_a_tick_and_not_before() {
        let timer = HeaderTimer::start();
        let started = Instant::now();
        timer.sleep(Duration::from_millis(300)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_millis(300) + TICK * 2, "{waited:?}");
        assert_eq!(entries(&timer), 0, "the sweep removed the entry");
    }

    #[tokio::test]
    async fn a_task_keeps_one_entry_until_its_deadline_is_dropped() {
        let timer = HeaderTimer::start();
        let mut first = timer.sleep(Duration::from_secs(30));
        let mut second = timer.sleep(Duration::from_secs(60));
        std::future::poll_fn(|cx| {
            assert!(first.as_mut().poll(cx).is_pending());
            assert!(second.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        assert_eq!(entries(&timer), 1);
        drop(first);
        assert_eq!(entries(&timer), 1, "the entry is the second's");
        drop(second);
        assert_eq!(entries(&timer), 0);
    }
}
