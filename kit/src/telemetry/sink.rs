//! Where log lines go: stdout, in batches.
//!
//! Each thread that logs formats its lines straight into a buffer of its own, behind a lock
//! only the writer thread ever contends for. A writer thread empties every thread's buffer to
//! stdout soon after a line arrives (at once when the service is quiet, then at most every
//! [`BATCH_WINDOW`]), so under load thousands of lines leave in one write. A thread whose
//! buffer passes [`THREAD_BATCH`] writes it out itself and waits for the write, which is how a
//! stdout that cannot keep up slows the loggers down: lines are never dropped. Each thread's
//! lines keep their order, and the threads' batches leave in the order their first lines were
//! logged; lines of different threads logged within one batch window may leave grouped by
//! thread rather than interleaved by time.
//!
//! A queue per line to a writer thread (tracing-appender) costs an allocation, a channel send and
//! often a futex wake-up per line; on a busy two-core node that was a fifth of quote's CPU time.
//! One buffer shared by all threads moved its lock and its lines between the cores on every line
//! (bench scenario "quote GET /quote").

use std::cell::OnceCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Duration;

/// How long the writer thread waits after a write for more lines to batch.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Beyond this many bytes waiting in its buffer, a thread writes them out itself.
const THREAD_BATCH: usize = 64 * 1024;

/// One thread's lines not yet written.
type Buffer = Arc<Mutex<Batch>>;

#[derive(Default)]
struct Batch {
    lines: Vec<u8>,
    /// When its first line was logged, in the sink's own count: batches leave in this order.
    first: u64,
}

struct Sink {
    /// The buffer of every thread that has logged, in the order they first did.
    buffers: Mutex<Vec<Buffer>>,
    /// Set by the first line after a flush, so the writer thread is woken once per batch.
    pending: AtomicBool,
    /// Counts the batches begun, to order them.
    begun: AtomicU64,
    /// The writer thread, once started.
    writer: OnceLock<Thread>,
    /// The batch being written (empty in between, its capacity kept) and where it goes. Lines
    /// are taken from the buffers only under this lock, so one thread's batches leave in order.
    out: Mutex<(Vec<u8>, Box<dyn Write + Send>)>,
}

static SINK: OnceLock<&'static Sink> = OnceLock::new();

thread_local! {
    /// This thread's buffer in the service's sink, once it has logged.
    static MINE: OnceCell<Buffer> = const { OnceCell::new() };
}

/// Starts the writer thread; lines written before this are printed directly.
pub(crate) fn start() {
    SINK.get_or_init(|| Sink::start(Box::new(std::io::stdout())));
}

/// Appends one line (or a few), formatted by `fill`.
pub(crate) fn write_line(fill: impl FnOnce(&mut Vec<u8>)) {
    match SINK.get() {
        Some(sink) => MINE.with(|mine| {
            let buffer = mine.get_or_init(|| sink.register());
            sink.append(buffer, fill);
        }),
        None => {
            let mut line = Vec::new();
            fill(&mut line);
            let _ = std::io::stdout().lock().write_all(&line);
        }
    }
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
            buffers: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            begun: AtomicU64::new(0),
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

    /// A buffer for a thread that logs for the first time.
    fn register(&self) -> Buffer {
        let buffer = Buffer::default();
        lock(&self.buffers).push(buffer.clone());
        buffer
    }

    fn append(&self, buffer: &Buffer, fill: impl FnOnce(&mut Vec<u8>)) {
        let mut batch = lock(buffer);
        if batch.lines.is_empty() {
            batch.first = self.begun.fetch_add(1, Ordering::Relaxed);
        }
        fill(&mut batch.lines);
        let full = batch.lines.len() >= THREAD_BATCH;
        drop(batch);
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

    /// Takes every thread's lines, the batch begun first leaving first, and writes them.
    fn flush(&self) {
        let mut out = lock(&self.out);
        let (batch, output) = &mut *out;
        self.pending.store(false, Ordering::Release);
        let mut buffers = lock(&self.buffers);
        let mut taken: Vec<(u64, Vec<u8>)> = buffers
            .iter()
            .filter_map(|buffer| {
                let mut waiting = lock(buffer);
                let lines = std::mem::take(&mut waiting.lines);
                (!lines.is_empty()).then_some((waiting.first, lines))
            })
            .collect();
        // A thread that has ended holds its buffer no more; emptied, it goes. Its last lines
        // may have come after they were taken above, just before it ended: with no other
        // handle left nothing can add to them, so a buffer that still holds lines stays for
        // the next flush (which their line's wake-up brings).
        buffers.retain(|buffer| Arc::strong_count(buffer) > 1 || !lock(buffer).lines.is_empty());
        drop(buffers);
        taken.sort_unstable_by_key(|(first, _)| *first);
        for (_, lines) in &taken {
            batch.extend_from_slice(lines);
        }
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
                    let mine = sink.register();
                    for i in 0..2000 {
                        sink.append(&mine, |b| {
                            b.extend_from_slice(format!("thread {t} line {i}\n").as_bytes())
                        });
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
        let mine = sink.register();
        let line = [b'x'; 1023];
        let mut line = line.to_vec();
        line.push(b'\n');
        // Four times a thread's batch, faster than the output takes it.
        let lines = 4 * THREAD_BATCH / line.len();
        for _ in 0..lines {
            sink.append(&mine, |b| b.extend_from_slice(&line));
            assert!(
                lock(&mine).lines.len() < THREAD_BATCH + line.len(),
                "the buffer grew past a thread's batch"
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
        lock(&sink.register())
            .lines
            .extend_from_slice(b"last words\n");
        sink.flush();
        assert_eq!(out.text(), "last words\n");
    }

    /// The line a service logs last (`stopped`, from its main thread) leaves last, although
    /// that thread logged before the others did.
    #[test]
    fn batches_leave_in_the_order_they_began() {
        let out = Recorder::default();
        let sink = Sink::start(Box::new(out.clone()));
        let main = sink.register();
        let workers: Vec<Buffer> = (0..3).map(|_| sink.register()).collect();
        for (i, worker) in workers.iter().enumerate().rev() {
            sink.append(worker, |b| {
                b.extend_from_slice(format!("request {i}\n").as_bytes())
            });
        }
        sink.append(&main, |b| b.extend_from_slice(b"stopped\n"));
        sink.flush();
        assert_eq!(out.text(), "request 2\nrequest 1\nrequest 0\nstopped\n");
    }

    /// Threads that log and end at once, while the writer flushes all the time: a line appended
    /// after a flush took its thread's buffer, by a thread that ends before the flush drops the
    /// ended threads' buffers, must not go with the buffer.
    #[test]
    fn threads_that_log_and_end_at_once_lose_no_line() {
        let out = Recorder::default();
        let sink = Sink::start(Box::new(out.clone()));
        let flushing = Arc::new(AtomicBool::new(true));
        let flusher = std::thread::spawn({
            let flushing = flushing.clone();
            move || {
                while flushing.load(Ordering::Relaxed) {
                    sink.flush();
                }
            }
        });
        let mut expected = 0;
        for round in 0..400 {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    std::thread::spawn(move || {
                        let mine = sink.register();
                        for i in 0..3 {
                            sink.append(&mine, |b| {
                                b.extend_from_slice(format!("{round} {t} {i}\n").as_bytes())
                            });
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            expected += 12;
        }
        flushing.store(false, Ordering::Relaxed);
        flusher.join().unwrap();
        sink.flush();
        out.wait_for(expected);
        assert_eq!(out.text().lines().count(), expected);
        assert!(lock(&sink.buffers).is_empty(), "ended threads' buffers go");
    }

    #[test]
    fn the_lines_of_a_thread_that_ended_are_written_and_its_buffer_goes() {
        let out = Recorder::default();
        let sink = Sink::start(Box::new(out.clone()));
        let kept = sink.register();
        std::thread::spawn(move || {
            let mine = sink.register();
            // Not woken: only the flush below writes it.
            lock(&mine)
                .lines
                .extend_from_slice(b"from a short-lived thread\n");
        })
        .join()
        .unwrap();
        assert_eq!(lock(&sink.buffers).len(), 2);
        sink.flush();
        assert_eq!(out.text(), "from a short-lived thread\n");
        assert_eq!(lock(&sink.buffers).len(), 1);
        assert!(Arc::ptr_eq(&lock(&sink.buffers)[0], &kept));
    }
}
