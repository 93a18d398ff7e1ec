//! The answers database behind one interface, [`Store`], with two implementations:
//!
//! - [`sqlite`]: an embedded file, the zero-setup default; one replica only, since the file
//!   lives on one volume;
//! - [`postgres`]: a PostgreSQL server that several replicas share.
//!
//! Both keep the same promise: an answer acknowledged with 200 is committed durably, and answers
//! arriving together are committed together (group commit), so that durability does not cost
//! one flush per answer.

pub mod postgres;
pub mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

pub use postgres::{PostgresStore, PostgresUrl};
pub use sqlite::{Connection, SqliteStore};

use crate::questions::Question;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Open { path: PathBuf, source: BoxError },
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", with_cause(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool in time (the server is down or saturated).
    #[error("{0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The URL, shown with its password replaced, and why it cannot be used.
    #[error("--database-url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("PostgreSQL at {url}: {source}")]
    Connect { url: PostgresUrl, source: BoxError },
    /// One failed commit fails every answer of its batch: each gets the shared cause.
    #[error("commit failed: {0}")]
    Commit(SharedError),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the database writer is not responding")]
    Unresponsive,
    #[error("the database writer has stopped")]
    WriterGone,
}

/// tokio-postgres says "db error" and keeps the server's words in the error's source: both,
/// so that a 503 and readiness name the cause ("relation \"answers\" does not exist").
fn with_cause(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) if !e.to_string().contains(&cause.to_string()) => format!("{e}: {cause}"),
        _ => e.to_string(),
    }
}

/// Which database quiz keeps its answers in.
#[derive(Clone, Debug)]
pub enum Database {
    /// A SQLite file, created with its directory if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL server; the URL's password is never printed.
    Postgres(PostgresUrl),
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Database::Postgres(url) => url.fmt(f),
        }
    }
}

/// An answer to record.
#[derive(Clone, Copy, Debug)]
pub struct NewAnswer {
    pub question_id: u32,
    pub answer_index: usize,
    pub correct: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuestionStats {
    pub question_id: u32,
    pub answer_count: u64,
    pub correct_count: u64,
    /// `None` (null) until the question has been answered.
    pub correct_ratio: Option<f64>,
}

impl QuestionStats {
    pub(crate) fn new(question_id: u32, answer_count: u64, correct_count: u64) -> Self {
        let correct_ratio = (answer_count > 0).then(|| correct_count as f64 / answer_count as f64);
        QuestionStats {
            question_id,
            answer_count,
            correct_count,
            correct_ratio,
        }
    }
}

/// What the writer reports: answers recorded, how many went into each commit, and how long
/// each commit took (mostly the flush to disk).
#[derive(Clone)]
pub struct StoreMetrics {
    answers: Family<AnswerLabels, Counter>,
    batch_size: Histogram,
    commit_seconds: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnswerLabels {
    correct: bool,
}

impl StoreMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = StoreMetrics {
            answers: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            commit_seconds: kit::metrics::latency_histogram(),
        };
        registry.register(
            "quiz_answers_recorded",
            "Answers stored durably",
            metrics.answers.clone(),
        );
        registry.register(
            "quiz_commit_batch_size",
            "Answers committed together in one transaction",
            metrics.batch_size.clone(),
        );
        registry.register(
            "quiz_commit_duration_seconds",
            "Time to commit one batch of answers, flush to disk included",
            metrics.commit_seconds.clone(),
        );
        metrics
    }

    /// Counts nothing anywhere: for a store opened outside an app (tests, tools).
    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }

    /// One commit attempt of `answers`, that took `took`; `failed` says why it did not commit.
    pub(crate) fn observe_commit<'a>(
        &self,
        answers: impl ExactSizeIterator<Item = &'a NewAnswer>,
        took: Duration,
        failed: Option<&SharedError>,
    ) {
        self.commit_seconds.observe(took.as_secs_f64());
        let count = answers.len();
        match failed {
            None => {
                self.batch_size.observe(count as f64);
                for answer in answers {
                    let labels = AnswerLabels {
                        correct: answer.correct,
                    };
                    self.answers.get_or_create(&labels).inc();
                }
            }
            Some(e) => tracing::error!(answers = count, "commit failed: {e}"),
        }
    }
}

/// A cause that several waiters report at once.
pub type SharedError = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// The store quiz runs on: the same operations, errors and durability on either database.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// Opens (creating, for SQLite) and migrates the database and upserts the active question
    /// set by id, ready to record answers.
    pub async fn open(
        database: &Database,
        questions: &[Question],
        metrics: StoreMetrics,
    ) -> Result<Store, StoreError> {
        match database {
            Database::Sqlite(path) => {
                SqliteStore::open(path, questions, metrics).map(Store::Sqlite)
            }
            Database::Postgres(url) => PostgresStore::open(url, questions, metrics)
                .await
                .map(Store::Postgres),
        }
    }

    /// Stores an answer durably; returns when it is committed, with the time it was recorded.
    pub async fn record(&self, answer: NewAnswer) -> Result<SystemTime, StoreError> {
        match self {
            Store::Sqlite(s) => s.record(answer).await,
            Store::Postgres(s) => s.record(answer).await,
        }
    }

    /// Answer counts of every active question, and of retired ones that have answers.
    pub async fn stats(&self) -> Result<Vec<QuestionStats>, StoreError> {
        match self {
            Store::Sqlite(s) => s.stats().await,
            Store::Postgres(s) => s.stats().await,
        }
    }

    /// Answer counts of one question; `None` when the database has never known it.
    pub async fn question_stats(&self, id: u32) -> Result<Option<QuestionStats>, StoreError> {
        match self {
            Store::Sqlite(s) => s.question_stats(id).await,
            Store::Postgres(s) => s.question_stats(id).await,
        }
    }

    /// A cheap query on the paths answers take: readiness fails while it does.
    pub async fn check(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.check().await,
            Store::Postgres(s) => s.check().await,
        }
    }
}
