//! Where log lines go: stdout, in batches.
//!
//! A line is formatted into a scratch buffer of its thread, then appended to one shared buffer
//! under a lock held for a copy. A writer thread empties that buffer to stdout soon after a
//! line arrives (at once when the service is quiet, then at most every [`BATCH_WINDOW`]), so
//! under load thousands of lines leave in one write, and lines keep the order they were logged
//! in. When stdout cannot keep up and the buffer passes [`BACKPRESSURE`], the thread that
//! logs writes the batch out itself and waits for the write: lines are never dropped.
//!
//! A queue per line to a writer thread (tracing-appender) costs an allocation, a channel send and
//! often a futex wake-up per line; on a busy two-core node that was a fifth of quote's CPU time.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Duration;

/// How long the writer thread waits after a write for more lines to batch.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Beyond this many bytes waiting, the thread that logs writes them out itself.
const BACKPRESSURE: usize = 256 * 1024;

struct Sink {
    waiting: Mutex<Vec<u8>>,
    /// Set by the first line after a flush, so the writer thread is woken once per batch.
    pending: AtomicBool,
    writer: Thread,
    /// The batch being written (empty in between, its capacity kept); held while writing, so
    /// batches leave in the order they were taken.
    out: Mutex<Vec<u8>>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Starts the writer thread; lines written before this are printed directly.
pub(crate) fn start() {
    SINK.get_or_init(|| {
        let writer = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(write_batches)
            .expect("cannot start the log writer thread");
        Sink {
            waiting: Mutex::new(Vec::with_capacity(16 * 1024)),
            pending: AtomicBool::new(false),
            writer: writer.thread().clone(),
            out: Mutex::new(Vec::with_capacity(16 * 1024)),
        }
    });
}

/// Appends one line (or a few), formatted by `fill`.
pub(crate) fn write_line(fill: impl FnOnce(&mut Vec<u8>)) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        fill(&mut scratch);
        match SINK.get() {
            Some(sink) => sink.append(&scratch),
            None => {
                let _ = std::io::stdout().lock().write_all(&scratch);
            }
        }
    });
}

/// For `tracing`: every event is one line, appended like the request lines.
pub(crate) struct MakeSinkWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeSinkWriter {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter
    }
}

pub(crate) struct SinkWriter;

impl Write for SinkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        write_line(|buffer| buffer.extend_from_slice(bytes));
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes out every buffer now; call before the process exits.
pub(crate) fn flush() {
    if let Some(sink) = SINK.get() {
        sink.flush();
    }
}

impl Sink {
    fn append(&self, line: &[u8]) {
        let mut waiting = lock(&self.waiting);
        waiting.extend_from_slice(line);
        let full = waiting.len() >= BACKPRESSURE;
        drop(waiting);
        if full {
            self.flush();
        } else if !self.pending.load(Ordering::Relaxed)
            && !self.pending.swap(true, Ordering::AcqRel)
        {
            // Read first: under load the flag is nearly always set already, and a swap would
            // pull its cache line from the other cores on every line.
            self.writer.unpark();
        }
    }

    fn flush(&self) {
        let mut batch = lock(&self.out);
        self.pending.store(false, Ordering::Release);
        std::mem::swap(&mut *lock(&self.waiting), &mut *batch);
        if !batch.is_empty() {
            let mut stdout = std::io::stdout().lock();
            // Nowhere left to report a failed write to; the lines are lost either way.
            let _ = stdout.write_all(&batch).and_then(|()| stdout.flush());
            batch.clear();
        }
    }
}

fn write_batches() {
    loop {
        std::thread::park();
        let Some(sink) = SINK.get() else { continue };
        if sink.pending.load(Ordering::Acquire) {
            sink.flush();
            std::thread::sleep(BATCH_WINDOW);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a log buffer leaves bytes, not broken invariants.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
