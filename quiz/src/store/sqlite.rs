//! The SQLite store: WAL mode with `synchronous=FULL`, so an answer acknowledged
//! with 200 survives a crash of the process and of the machine.
//!
//! All writes go through one writer thread that owns the write connection: concurrent requests
//! never race for SQLite's write lock ("database is locked"), and answers that arrive while a
//! commit is being flushed wait together and are committed in the next transaction (group
//! commit), so throughput does not collapse to one fsync per answer. Reads use their own
//! connection, which WAL lets proceed alongside the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use rusqlite::Connection;
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};
use tokio::sync::{mpsc, oneshot};

use super::{BoxError, NewAnswer, QuestionStats, SharedError, StoreError, StoreMetrics};
use crate::questions::Question;

/// Most answers committed in one transaction.
const MAX_BATCH: usize = 512;
/// Requests waiting for the writer before new ones wait to enqueue.
const QUEUE: usize = 4096;

/// Schema versions, applied in order and recorded in `PRAGMA user_version`. Append; never edit.
const MIGRATIONS: &[M] = &[M::up(
    "CREATE TABLE questions (
        id INTEGER PRIMARY KEY,
        text TEXT NOT NULL,
        answers TEXT NOT NULL,            -- JSON array of strings
        correct_index INTEGER NOT NULL,
        active INTEGER NOT NULL DEFAULT 1 -- 0: no longer in the question set, kept for history
    );
    CREATE TABLE answers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        question_id INTEGER NOT NULL REFERENCES questions(id),
        answer_index INTEGER NOT NULL,
        correct INTEGER NOT NULL,         -- as judged when answered; never rewritten
        answered_at TEXT NOT NULL         -- RFC 3339
    );
    CREATE INDEX answers_by_question ON answers(question_id);",
)];

type Ack<T> = oneshot::Sender<Result<T, SharedError>>;

enum Job {
    Record(NewAnswer, Ack<SystemTime>),
    /// Runs on the writer connection: checks that must see what the writer sees.
    Inspect(Box<dyn FnOnce(&Connection) + Send>),
}

#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Job>,
    reader: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) and migrates the database, upserts the
    /// active question set by id, and starts the writer thread.
    pub fn open(
        path: &Path,
        questions: &[Question],
        metrics: StoreMetrics,
    ) -> Result<SqliteStore, StoreError> {
        let open_error = |source: BoxError| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(e.into()))?;
        }
        let mut writer = connect(path).map_err(open_error)?;
        // The migrations and the question set are written again at every start, so they need
        // not reach the disk before the service is ready; answers do. So start-up writes go to
        // the WAL unsynced (OFF) with checkpoints held back: the database file is not touched,
        // and after a power loss the WAL's checksums drop any torn tail. FULL is back on before
        // the first answer, whose commit syncs the WAL, start-up frames included, before any
        // checkpoint copies them. This saves the WAL's creation syncs on a new database.
        let pragma = |conn: &Connection, name: &str, value: &str| {
            conn.pragma_update(None, name, value)
                .map_err(|e| open_error(e.into()))
        };
        pragma(&writer, "wal_autocheckpoint", "0")?;
        pragma(&writer, "synchronous", "OFF")?;
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut writer)
            .map_err(|e| open_error(e.into()))?;
        upsert_questions(&mut writer, questions).map_err(|e| open_error(e.into()))?;
        pragma(&writer, "synchronous", "FULL")?;
        pragma(&writer, "wal_autocheckpoint", "1000")?;
        let reader = connect(path).map_err(open_error)?;

        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("quiz-db-writer".into())
            .spawn(move || run_writer(writer, rx, metrics))
            .map_err(|e| open_error(e.into()))?;
        Ok(SqliteStore {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Stores an answer durably; returns when it is committed, with the time it was recorded.
    pub async fn record(&self, answer: NewAnswer) -> Result<SystemTime, StoreError> {
        let (reply, result) = oneshot::channel();
        self.writer
            .send(Job::Record(answer, reply))
            .await
            .map_err(|_| StoreError::WriterGone)?;
        let committed = result.await.map_err(|_| StoreError::WriterGone)?;
        committed.map_err(StoreError::Commit)
    }

    /// Runs `f` on the writer's connection, in turn with the writes.
    pub async fn inspect<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, result) = oneshot::channel();
        let job = Job::Inspect(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        }));
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        result.await.map_err(|_| StoreError::WriterGone)
    }

    /// Answer counts of every active question, and of retired ones that have answers.
    pub async fn stats(&self) -> Result<Vec<QuestionStats>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT q.id, COUNT(a.id), COALESCE(SUM(a.correct), 0)
                 FROM questions q LEFT JOIN answers a ON a.question_id = q.id
                 WHERE q.active = 1 OR a.id IS NOT NULL
                 GROUP BY q.id ORDER BY q.id",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(QuestionStats::new(row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
            rows.collect()
        })
        .await
    }

    /// Answer counts of one question; `None` when the database has never known it.
    pub async fn question_stats(&self, id: u32) -> Result<Option<QuestionStats>, StoreError> {
        self.read(move |conn| {
            let known: Option<u32> = conn
                .query_row("SELECT id FROM questions WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            if known.is_none() {
                return Ok(None);
            }
            conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(correct), 0) FROM answers WHERE question_id = ?1",
                [id],
                |row| Ok(Some(QuestionStats::new(id, row.get(0)?, row.get(1)?))),
            )
        })
        .await
    }

    /// A cheap query through both connections: readiness fails while it does.
    pub async fn check(&self) -> Result<(), StoreError> {
        let probe = |conn: &Connection| -> rusqlite::Result<()> {
            conn.query_row("SELECT COUNT(*) FROM questions WHERE active = 1", [], |r| {
                r.get::<_, i64>(0)
            })?;
            conn.query_row("SELECT id FROM answers LIMIT 1", [], |_| Ok(()))
                .optional()?;
            Ok(())
        };
        self.read(probe).await?;
        let written = tokio::time::timeout(Duration::from_secs(5), self.inspect(move |c| probe(c)))
            .await
            .map_err(|_| StoreError::Unresponsive)?;
        Ok(written??)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::WriterGone)?
        .map_err(StoreError::from)
    }
}

/// Deletes every recorded answer of the database at `path` (the local suite's `--reset`),
/// keeping the questions; says how many went. A database not made yet has none.
pub fn clear_answers(path: &Path) -> Result<usize, StoreError> {
    if !path.exists() {
        return Ok(0);
    }
    let conn = connect(path).map_err(|source| StoreError::Open {
        path: path.to_owned(),
        source,
    })?;
    let has_answers: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'answers')",
        [],
        |row| row.get(0),
    )?;
    if !has_answers {
        return Ok(0);
    }
    Ok(conn.execute("DELETE FROM answers", [])?)
}

fn connect(path: &Path) -> Result<Connection, BoxError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // A new file becomes a WAL database through one rollback-journal write of its header;
    // NORMAL syncs it once less than FULL. An existing database is WAL already, untouched here.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("cannot switch to WAL journal mode (got {mode})").into());
    }
    // FULL: the WAL is fsynced at every commit, so a committed answer survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Writes the active set by id and retires questions that left it. Their answers stay.
fn upsert_questions(conn: &mut Connection, questions: &[Question]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute("UPDATE questions SET active = 0", [])?;
    {
        let mut upsert = tx.prepare(
            "INSERT INTO questions (id, text, answers, correct_index, active)
             VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT(id) DO UPDATE SET text = excluded.text, answers = excluded.answers,
                 correct_index = excluded.correct_index, active = 1",
        )?;
        for q in questions {
            let answers = serde_json::to_string(&q.answers).expect("strings serialize");
            upsert.execute(params![q.id, q.text, answers, q.correct_answer_index])?;
        }
    }
    tx.commit()
}

fn run_writer(mut conn: Connection, mut jobs: mpsc::Receiver<Job>, metrics: StoreMetrics) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = jobs.blocking_recv() {
        match job {
            Job::Inspect(f) => f(&conn),
            Job::Record(answer, reply) => {
                batch.push((answer, reply));
                // Everything that queued up while the last commit was flushing goes together.
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(Job::Record(answer, reply)) => batch.push((answer, reply)),
                        Ok(Job::Inspect(f)) => f(&conn),
                        Err(_) => break,
                    }
                }
                let now = SystemTime::now();
                let started = Instant::now();
                let outcome =
                    commit(&mut conn, &batch, now).map_err(|e| Arc::new(e) as SharedError);
                metrics.observe_commit(
                    batch.iter().map(|(answer, _)| answer),
                    started.elapsed(),
                    outcome.as_ref().err(),
                );
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(outcome.clone().map(|()| now));
                }
            }
        }
    }
}

fn commit(
    conn: &mut Connection,
    batch: &[(NewAnswer, Ack<SystemTime>)],
    now: SystemTime,
) -> rusqlite::Result<()> {
    let answered_at = humantime::format_rfc3339_millis(now).to_string();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO answers (question_id, answer_index, correct, answered_at)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (a, _) in batch {
            insert.execute(params![
                a.question_id,
                a.answer_index,
                a.correct,
                answered_at
            ])?;
        }
    }
    tx.commit()
}
