//! The PostgreSQL store, for quiz running as several replicas on one database.
//!
//! Every connection runs with `synchronous_commit=on`, whatever the server's or role's default:
//! a commit returns once its WAL record is flushed, so an acknowledged answer survives a crash
//! of quiz and of the server. As on SQLite, answers go through one writer task per replica that
//! takes everything queued while the previous commit was flushing and inserts it as one
//! statement (one transaction, one flush). Answers from several replicas never conflict: they
//! only insert, with ids from an identity column.
//!
//! Everything that waits on the server is bounded: taking a connection from the pool, opening
//! one, each statement (`statement_timeout`, and a client-side deadline above it), so that a
//! server that is down or stuck costs a request a 503 within seconds, never a hang.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tokio_postgres::NoTls;

use super::{NewAnswer, QuestionStats, SharedError, StoreError, StoreMetrics};
use crate::questions::Question;

/// Most answers inserted in one statement.
const MAX_BATCH: usize = 512;
/// Requests waiting for the writer before new ones wait to enqueue.
const QUEUE: usize = 4096;
/// Connections per replica: the writer's, plus reads and the readiness check beside it. Three
/// replicas stay far below PostgreSQL's default of 100.
const POOL_SIZE: usize = 8;
/// Opening a connection (TCP, authentication).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Waiting for a free connection of the pool.
const POOL_WAIT: Duration = Duration::from_secs(3);
/// The server cancels a statement running longer than this.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole read or commit, connection included; above the statement timeout so that the
/// server's own cancellation usually comes first and leaves the connection reusable.
const CALL_TIMEOUT: Duration = Duration::from_secs(8);
/// An answer waits at most one batch ahead of it plus its own, and stays well below the
/// default request timeout (30 s).
const RECORD_TIMEOUT: Duration = Duration::from_secs(2 * CALL_TIMEOUT.as_secs() + 1);
/// How long a start waits for the server (a pod starting beside its database).
const START_WAIT: Duration = Duration::from_secs(30);
/// Held by the replica that migrates; the others wait for it. Any constant unique to quiz:
/// the bytes of "quizmigr".
const MIGRATION_LOCK: i64 = 0x7175_697a_6d69_6772;

/// Schema versions, applied in order inside the migration lock and recorded in
/// `quiz_migrations`. Append; never edit.
const MIGRATIONS: &[&str] = &["CREATE TABLE questions (
        id BIGINT PRIMARY KEY,
        text TEXT NOT NULL,
        answers TEXT NOT NULL,             -- JSON array of strings
        correct_index BIGINT NOT NULL,
        active BOOLEAN NOT NULL DEFAULT TRUE -- false: no longer in the question set, kept for history
    );
    CREATE TABLE answers (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        question_id BIGINT NOT NULL REFERENCES questions(id),
        answer_index BIGINT NOT NULL,
        correct BOOLEAN NOT NULL,          -- as judged when answered; never rewritten
        answered_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX answers_by_question ON answers(question_id);"];

/// A `postgres://` URL, and maybe a password read from a file. It is shown (logs, errors,
/// `Debug`) with its password replaced by `***`; only the connection itself sees the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    url: String,
    password: Option<String>,
}

impl PostgresUrl {
    /// Accepts `postgres://` and `postgresql://` URLs that libpq's syntax allows.
    pub fn parse(raw: &str) -> Result<PostgresUrl, StoreError> {
        let refuse = |reason: String| StoreError::Url {
            url: redact(raw),
            reason,
        };
        if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
            return Err(refuse(
                "not a PostgreSQL URL: it must start with postgres:// or postgresql://".into(),
            ));
        }
        raw.parse::<tokio_postgres::Config>()
            .map_err(|e| refuse(e.to_string()))?;
        Ok(PostgresUrl {
            url: raw.to_owned(),
            password: None,
        })
    }

    /// The password from a file, such as a mounted Secret, in place of one in the URL: it stays
    /// out of the environment and needs no URL encoding. A final line break is not part of it.
    pub fn with_password_file(self, path: &Path) -> Result<PostgresUrl, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|source| StoreError::PasswordFile {
            path: path.to_owned(),
            source,
        })?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        Ok(PostgresUrl {
            password: Some(password.to_owned()),
            ..self
        })
    }

    /// The connection settings, with what quiz insists on whatever the URL or server says.
    fn config(&self) -> tokio_postgres::Config {
        let mut config: tokio_postgres::Config = self.url.parse().expect("checked by parse");
        if let Some(password) = &self.password {
            config.password(password);
        }
        let options = format!(
            "{} -c synchronous_commit=on -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            STATEMENT_TIMEOUT.as_millis()
        );
        config
            .options(options.trim_start())
            .connect_timeout(CONNECT_TIMEOUT)
            // A server that vanished without closing (a node lost) is noticed in seconds.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("quiz");
        }
        config
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.url))
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// `scheme://user:secret@host/db?password=secret` → `scheme://user:***@host/db?password=***`.
/// Errs on the side of hiding: everything between the user's colon and the last `@` goes.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (path_part, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let mut out = String::new();
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    match path_part.rfind('@') {
        Some(at) => {
            let userinfo = &path_part[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&path_part[at..]);
        }
        None => out.push_str(path_part),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

struct Job {
    answer: NewAnswer,
    reply: oneshot::Sender<Result<SystemTime, StoreError>>,
}

#[derive(Clone)]
pub struct PostgresStore {
    writer: mpsc::Sender<Job>,
    pool: Pool,
}

impl PostgresStore {
    /// Connects (waiting up to 30 s for the server), migrates under an advisory lock, upserts
    /// the question set in the same transaction, and starts the writer.
    pub async fn open(
        url: &PostgresUrl,
        questions: &[Question],
        metrics: StoreMetrics,
    ) -> Result<PostgresStore, StoreError> {
        let connect_error = |source: crate::store::BoxError| StoreError::Connect {
            url: url.clone(),
            source,
        };
        let manager = Manager::from_config(
            url.config(),
            NoTls,
            ManagerConfig {
                // A connection the server closed (a restart) is noticed by the client and
                // dropped without a round trip.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| connect_error(e.into()))?;

        let deadline = Instant::now() + START_WAIT;
        loop {
            match migrate(&pool, questions).await {
                Ok(()) => break,
                Err(e) if retriable(&e) && Instant::now() < deadline => {
                    tracing::warn!(db = %url, "PostgreSQL is not reachable yet, retrying: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(connect_error(e.into())),
            }
        }

        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run_writer(pool.clone(), rx, metrics));
        Ok(PostgresStore { writer: tx, pool })
    }

    /// Stores an answer durably; returns when it is committed, with the time it was recorded.
    pub async fn record(&self, answer: NewAnswer) -> Result<SystemTime, StoreError> {
        let (reply, result) = oneshot::channel();
        let committed = async {
            self.writer
                .send(Job { answer, reply })
                .await
                .map_err(|_| StoreError::WriterGone)?;
            result.await.map_err(|_| StoreError::WriterGone)?
        };
        timeout(RECORD_TIMEOUT, committed)
            .await
            .map_err(|_| StoreError::Timeout(RECORD_TIMEOUT))?
    }

    pub async fn stats(&self) -> Result<Vec<QuestionStats>, StoreError> {
        bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let stmt = client
                .prepare_cached(
                    "SELECT q.id, COUNT(a.id), COUNT(a.id) FILTER (WHERE a.correct)
                     FROM questions q LEFT JOIN answers a ON a.question_id = q.id
                     WHERE q.active OR a.id IS NOT NULL
                     GROUP BY q.id ORDER BY q.id",
                )
                .await?;
            let rows = client.query(&stmt, &[]).await?;
            Ok(rows.iter().map(row_stats).collect())
        })
        .await
    }

    pub async fn question_stats(&self, id: u32) -> Result<Option<QuestionStats>, StoreError> {
        bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let stmt = client
                .prepare_cached(
                    "SELECT q.id, COUNT(a.id), COUNT(a.id) FILTER (WHERE a.correct)
                     FROM questions q LEFT JOIN answers a ON a.question_id = q.id
                     WHERE q.id = $1 GROUP BY q.id",
                )
                .await?;
            let row = client.query_opt(&stmt, &[&i64::from(id)]).await?;
            Ok(row.as_ref().map(row_stats))
        })
        .await
    }

    /// A server setting as quiz's own connections see it.
    pub async fn setting(&self, name: &str) -> Result<String, StoreError> {
        bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            let row = client
                .query_one("SELECT current_setting($1)", &[&name])
                .await?;
            Ok(row.get(0))
        })
        .await
    }

    /// The tables answers and stats use, through a connection of the pool, and a live writer.
    pub async fn check(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::WriterGone);
        }
        bounded(async {
            let client = self.pool.get().await.map_err(pool_error)?;
            // Not prepared: a renamed or dropped table must show here, not in a cached plan.
            client
                .simple_query(
                    "SELECT COUNT(*) FROM questions WHERE active; SELECT id FROM answers LIMIT 1",
                )
                .await?;
            Ok(())
        })
        .await
    }
}

/// Worth waiting for at start: the server is not there yet, still starting up, or busy (SQLSTATE
/// class 57: 57P03 "the database system is starting up"; 57014, the statement timeout, while
/// another replica holds the migration lock). Refusals such as a wrong password are not.
fn retriable(e: &StoreError) -> bool {
    match e {
        StoreError::Postgres(e) => e
            .as_db_error()
            .is_none_or(|db| db.code().code().starts_with("57")),
        StoreError::Timeout(_) => true,
        _ => false,
    }
}

/// The pool's error, with the server's own reason when there is one.
fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => StoreError::Postgres(e),
        PoolError::Timeout(_) => StoreError::Timeout(POOL_WAIT),
        other => StoreError::Pool(other),
    }
}

async fn bounded<T>(call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| StoreError::Timeout(CALL_TIMEOUT))?
}

fn row_stats(row: &tokio_postgres::Row) -> QuestionStats {
    // Ids were written from u32, counts are never negative.
    let id: i64 = row.get(0);
    let count: i64 = row.get(1);
    let correct: i64 = row.get(2);
    QuestionStats::new(id as u32, count as u64, correct as u64)
}

/// Runs the missing migrations and writes the active question set, in one transaction under
/// an advisory lock: replicas starting together take turns, and each sees the schema complete.
async fn migrate(pool: &Pool, questions: &[Question]) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS quiz_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let applied: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM quiz_migrations", &[])
        .await?
        .get(0);
    for (version, sql) in (1..).zip(MIGRATIONS).skip(applied as usize) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO quiz_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "schema migrated");
    }

    // The set by id, as on SQLite: questions that left it are retired, their answers kept.
    let ids: Vec<i64> = questions.iter().map(|q| i64::from(q.id)).collect();
    let texts: Vec<&str> = questions.iter().map(|q| q.text.as_str()).collect();
    let answers: Vec<String> = questions
        .iter()
        .map(|q| serde_json::to_string(&q.answers).expect("strings serialize"))
        .collect();
    let correct: Vec<i64> = questions
        .iter()
        .map(|q| q.correct_answer_index as i64)
        .collect();
    tx.execute(
        "UPDATE questions SET active = false WHERE active AND id <> ALL($1)",
        &[&ids],
    )
    .await?;
    tx.execute(
        "INSERT INTO questions (id, text, answers, correct_index, active)
         SELECT id, text, answers, correct_index, true
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[])
             AS s(id, text, answers, correct_index)
         ON CONFLICT (id) DO UPDATE SET text = excluded.text, answers = excluded.answers,
             correct_index = excluded.correct_index, active = true",
        &[&ids, &texts, &answers, &correct],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

async fn run_writer(pool: Pool, mut jobs: mpsc::Receiver<Job>, metrics: StoreMetrics) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = jobs.recv().await {
        batch.push(job);
        // Everything that queued up while the last commit was flushing goes together.
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let now = SystemTime::now();
        let started = Instant::now();
        let outcome = bounded(insert(&pool, &batch, now))
            .await
            .map_err(|e| Arc::new(e) as SharedError);
        metrics.observe_commit(
            batch.iter().map(|job| &job.answer),
            started.elapsed(),
            outcome.as_ref().err(),
        );
        for job in batch.drain(..) {
            let reply = outcome.clone().map(|()| now).map_err(StoreError::Commit);
            let _ = job.reply.send(reply);
        }
    }
}

/// One statement for the whole batch: in autocommit it is one transaction, committed (and
/// flushed, with `synchronous_commit=on`) before the server answers.
async fn insert(pool: &Pool, batch: &[Job], now: SystemTime) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let stmt = client
        .prepare_cached(
            "INSERT INTO answers (question_id, answer_index, correct, answered_at)
             SELECT q, i, c, $4 FROM UNNEST($1::bigint[], $2::bigint[], $3::boolean[]) AS s(q, i, c)",
        )
        .await?;
    let ids: Vec<i64> = batch
        .iter()
        .map(|j| i64::from(j.answer.question_id))
        .collect();
    let indexes: Vec<i64> = batch.iter().map(|j| j.answer.answer_index as i64).collect();
    let correct: Vec<bool> = batch.iter().map(|j| j.answer.correct).collect();
    client
        .execute(&stmt, &[&ids, &indexes, &correct, &now])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let cases = [
            (
                "postgres://quiz:s3cr:et@db:5432/quiz",
                "postgres://quiz:***@db:5432/quiz",
            ),
            ("postgres://quiz@db/quiz", "postgres://quiz@db/quiz"),
            (
                "postgresql://u:p@h/d?sslmode=disable&password=x",
                "postgresql://u:***@h/d?sslmode=disable&password=***",
            ),
            ("postgres://h/d?PASSWORD=x", "postgres://h/d?PASSWORD=***"),
            ("postgres://u:p@ss@h/d", "postgres://u:***@h/d"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown);
        }
        let url = PostgresUrl::parse("postgres://quiz:hunter2@db/quiz").unwrap();
        assert!(!format!("{url} {url:?}").contains("hunter2"));
        let err = PostgresUrl::parse("mysql://quiz:hunter2@db/quiz")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
