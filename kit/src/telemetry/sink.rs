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
    /// The writer thread, once started.
    writer: OnceLock<Thread>,
    /// The batch being written (empty in between, its capacity kept) and where it goes; held
    /// while writing, so batches leave in the order they were taken.
    out: Mutex<(Vec<u8>, Box<dyn Write + Send>)>,
}

static SINK: OnceLock<&'static Sink> = OnceLock::new();

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Starts the writer thread; lines written before this are printed directly.
pub(crate) fn start() {
    SINK.get_or_init(|| Sink::start(Box::new(std::io::stdout())));
}

/// Appends one line (or a few), formatted by `fill`.
pub(crate) fn write_line(fill: impl FnOnce(&mut Vec<u8>)) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        fill(&mut scratch);
        match SINK.get() {
            Some(sink) => sink.append(scratch.as_slice()),
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
    /// A sink writing to `output`, with its writer thread running. Lives as long as the process
    /// (the service's sink is made once).
    fn start(output: Box<dyn Write + Send>) -> &'static Sink {
        let sink: &'static Sink = Box::leak(Box::new(Sink {
            waiting: Mutex::new(Vec::with_capacity(16 * 1024)),
            pending: AtomicBool::new(false),
            writer: OnceLock::new(),
            out: Mutex::new((Vec::with_capacity(16 * 1024), output)),
        }));
        let writer = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_batches(sink))
            .expect("cannot start the log writer thread");
        let _ = sink.writer.set(writer.thread().clone());
        sink
    }

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
            if let Some(writer) = self.writer.get() {
                writer.unpark();
            }
        }
    }

    fn flush(&self) {
        let mut out = lock(&self.out);
        let (batch, output) = &mut *out;
        self.pending.store(false, Ordering::Release);
        std::mem::swap(&mut *lock(&self.waiting), batch);
        if !batch.is_empty() {
            // Nowhere left to report a failed write to; the lines are lost either way.
            let _ = output.write_all(batch).and_then(|()| output.flush());
            batch.clear();
        }
    }
}

fn write_batches(sink: &'static Sink) {
    loop {
        std::thread::park();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    /// An output that records what reaches it and how many writes it took, and can be slow.
    #[derive(Clone, Default)]
    struct Recorder {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<std::sync::atomic::AtomicUsize>,
        delay: Duration,
    }

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.delay);
            self.writes.fetch_add(1, Ordering::SeqCst);
            lock(&self.bytes).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Recorder {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.bytes).clone()).unwrap()
        }

        fn wait_for(&self, lines: usize) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.text().lines().count() < lines {
                assert!(
                    Instant::now() < deadline,
                    "only {} lines",
                    self.text().lines().count()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_in_order_and_in_few_writes() {
        let out = Recorder::default();
        let sink = Sink::start(Box::new(out.clone()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        sink.append(format!("thread {t} line {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        out.wait_for(8000);
        let text = out.text();
        for t in 0..4 {
            let seen: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(seen, (0..2000).collect::<Vec<_>>(), "thread {t}");
        }
        let writes = out.writes.load(Ordering::SeqCst);
        assert!(writes < 8000 / 10, "{writes} writes for 8000 lines");
    }

    #[test]
    fn a_slow_output_makes_the_logging_thread_write_and_nothing_is_dropped() {
        let out = Recorder {
            delay: Duration::from_millis(30),
            ..Recorder::default()
        };
        let sink = Sink::start(Box::new(out.clone()));
        let line = [b'x'; 1023];
        let mut line = line.to_vec();
        line.push(b'\n');
        // Four times the back-pressure mark, faster than the output takes it.
        let lines = 4 * BACKPRESSURE / line.len();
        for _ in 0..lines {
            sink.append(&line);
            assert!(
                lock(&sink.waiting).len() < BACKPRESSURE + line.len(),
                "the buffer grew past the back-pressure mark"
            );
        }
        sink.flush();
        assert_eq!(out.text().lines().count(), lines);
    }

    #[test]
    fn flush_writes_out_what_waits_before_the_writer_wakes() {
        let out = Recorder::default();
        let sink = Sink::start(Box::new(out.clone()));
        // Not started through `append`, so the writer thread is not woken.
        lock(&sink.waiting).extend_from_slice(b"last words\n");
        sink.flush();
        assert_eq!(out.text(), "last words\n");
    }
}
