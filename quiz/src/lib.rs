//! The quiz service: multiple-choice questions about Kubernetes Services as a JSON API, with
//! every answer recorded durably: in an embedded SQLite database by default, or in PostgreSQL
//! when several replicas share the answers.

mod error;
pub mod questions;
pub mod routes;
pub mod store;
mod yaml;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use error::Error;
pub use questions::{Question, QuestionsError};
pub use store::{Database, PostgresUrl, Store, StoreError, StoreMetrics};

/// How often readiness re-checks the database.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Questions(#[from] QuestionsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(#[from] kit::Error),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub server: kit::ServerConfig,
    pub identity: kit::Identity,
    /// Where answers are kept: a SQLite file (created, with its directory, if missing) or a
    /// PostgreSQL server.
    pub database: Database,
    /// Questions replacing the bundled set (JSON or YAML).
    pub questions_file: Option<PathBuf>,
}

impl Config {
    /// Free ports, bundled questions, the SQLite database at `db_path`.
    pub fn local(pod_name: &str, db_path: PathBuf) -> Self {
        Self::local_on(pod_name, Database::Sqlite(db_path))
    }

    /// Free ports, bundled questions, answers in `database`.
    pub fn local_on(pod_name: &str, database: Database) -> Self {
        Config {
            server: kit::ServerConfig::ephemeral(),
            identity: kit::Identity::named(pod_name),
            database,
            questions_file: None,
        }
    }
}

/// The active questions, looked up by id without touching the database.
pub struct QuestionSet {
    list: Vec<Question>,
    by_id: HashMap<u32, usize>,
}

impl QuestionSet {
    pub fn new(list: Vec<Question>) -> Self {
        let by_id = list.iter().enumerate().map(|(i, q)| (q.id, i)).collect();
        QuestionSet { list, by_id }
    }

    pub fn get(&self, id: u32) -> Option<&Question> {
        self.by_id.get(&id).map(|&i| &self.list[i])
    }

    pub fn random(&self) -> &Question {
        &self.list[fastrand::usize(..self.list.len())]
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[derive(Clone)]
pub struct AppState {
    pub questions: Arc<QuestionSet>,
    pub store: Store,
    pub identity: Arc<kit::Identity>,
}

/// Loads and validates the questions, opens the database, and binds the listeners.
pub async fn build(config: Config) -> Result<kit::App, StartError> {
    let questions = match &config.questions_file {
        Some(path) => questions::from_file(path)?,
        None => questions::bundled(),
    };
    let mut metrics = prometheus_client::registry::Registry::default();
    let store = Store::open(
        &config.database,
        &questions,
        StoreMetrics::register(&mut metrics),
    )
    .await?;
    tracing::info!(
        db = %config.database,
        questions = questions.len(),
        source = config.questions_file.as_ref().map_or("bundled".into(), |p| p.display().to_string()),
        "question set stored"
    );

    let database = Arc::new(RwLock::new(readiness(store.check().await)));
    watch_database(store.clone(), database.clone());
    let state = AppState {
        questions: Arc::new(QuestionSet::new(questions)),
        store,
        identity: Arc::new(config.identity.clone()),
    };
    let service = kit::AppSpec {
        metrics,
        errors: kit::ErrorFormat::Json,
        ..kit::AppSpec::new("quiz", routes::router(state))
    };
    service.health.add_check("database", move || {
        let verdict = database.read().unwrap_or_else(|e| e.into_inner()).clone();
        verdict.map_err(Into::into)
    });
    Ok(kit::App::bind(&config.server, &config.identity, service)?)
}

/// The database check's failure as readiness reports it: the store's error in its words, kept
/// so that the verdict can be shared with the probe and compared with the last one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
struct Unusable(String);

fn readiness(check: Result<(), StoreError>) -> Result<(), Unusable> {
    check.map_err(|e| Unusable(e.to_string()))
}

/// Keeps the readiness verdict on the database fresh, so that the probe itself only reads it.
fn watch_database(store: Store, verdict: Arc<RwLock<Result<(), Unusable>>>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(CHECK_INTERVAL).await;
            let now = readiness(store.check().await);
            let mut current = verdict.write().unwrap_or_else(|e| e.into_inner());
            if *current != now {
                match &now {
                    Ok(()) => tracing::info!("database usable again"),
                    Err(e) => tracing::warn!("database unusable, readiness fails: {e}"),
                }
                *current = now;
            }
        }
    });
}
