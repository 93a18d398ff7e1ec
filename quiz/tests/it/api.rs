//! The quiz API through real HTTP against the app on port 0, on both stores: every test of
//! the API runs once on a SQLite file and once on a database of a throw-away PostgreSQL server
//! (see `both_stores!` at the end).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kit::Running;
use quiz::{Config, Database, PostgresUrl};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use testkit::{Postgres, PostgresUnavailable};

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

/// One server for the tests of this file, each in its own database. Its flushes are off
/// (`fsync=off`): these tests crash quiz, never the server, and `synchronous_commit` stays on.
/// Where it cannot run, each test says it is skipped, under the name the harness gave it.
fn shared_postgres() -> Option<&'static Postgres> {
    static SERVER: OnceLock<Result<Postgres, PostgresUnavailable>> = OnceLock::new();
    match SERVER.get_or_init(|| Postgres::try_start(&["fsync=off"])) {
        Ok(server) => Some(server),
        Err(why) => {
            let thread = std::thread::current();
            testkit::skip(thread.name().unwrap_or("a quiz test"), &why.to_string());
            None
        }
    }
}

/// A test's own database: a SQLite file in a temporary directory, or a new database on the
/// shared PostgreSQL server. `None` where PostgreSQL is missing (the test is skipped).
struct TestDb {
    dir: tempfile::TempDir,
    database: Database,
    postgres: Option<(&'static Postgres, String)>,
}

impl TestDb {
    fn new(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().unwrap();
        Some(match backend {
            Backend::Sqlite => TestDb {
                database: Database::Sqlite(db_in(&dir)),
                dir,
                postgres: None,
            },
            Backend::Postgres => {
                let server = shared_postgres()?;
                let name = server.create_database();
                TestDb {
                    database: Database::Postgres(PostgresUrl::parse(&server.url(&name)).unwrap()),
                    dir,
                    postgres: Some((server, name)),
                }
            }
        })
    }

    fn config(&self, pod_name: &str) -> Config {
        Config::local_on(pod_name, self.database.clone())
    }

    /// Runs SQL on the database behind quiz's back.
    fn execute(&self, sql: &str) {
        match (&self.postgres, &self.database) {
            (Some((server, name)), _) => {
                server.sql(name, sql);
            }
            (None, Database::Sqlite(path)) => rusqlite_connection(path).execute_batch(sql).unwrap(),
            (None, Database::Postgres(_)) => unreachable!("a PostgreSQL test has its server"),
        }
    }
}

struct Quiz {
    app: Running,
    client: Client,
}

impl Quiz {
    async fn start(db: &TestDb) -> Quiz {
        Self::start_with(db.config("quiz-abc")).await
    }

    async fn start_with(config: Config) -> Quiz {
        let app = quiz::build(config).await.expect("quiz starts").spawn();
        Quiz {
            app,
            client: Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.app.url()))
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    async fn answer(&self, id: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .client
            .post(format!("{}/questions/{id}/answers", self.app.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap())
    }

    async fn total_answers(&self) -> u64 {
        self.get("/stats").await.1["answerCount"].as_u64().unwrap()
    }

    async fn stop(self) {
        self.app.stop().await.unwrap();
    }
}

fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("quiz.db")
}

async fn root_names_the_pod(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let quiz = Quiz::start(&db).await;
    let res = reqwest::get(format!("{}/", quiz.app.url())).await.unwrap();
    assert_eq!(res.headers()["x-pod-name"], "quiz-abc");
    assert_eq!(
        res.text().await.unwrap(),
        "This is the quiz service running in pod quiz-abc\n"
    );
    quiz.stop().await;
}

async fn questions_come_without_their_correct_answer(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let quiz = Quiz::start(&db).await;
    let (status, q) = quiz.get("/questions/1").await;
    assert_eq!(status, StatusCode::OK);
    let keys: HashSet<&str> = q.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, HashSet::from(["id", "text", "answers"]));
    assert_eq!(q["id"], 1);
    assert!(q["answers"].as_array().unwrap().len() >= 3);

    // Random questions cover the set: 30 draws per bundled question miss one with p < 1e-11.
    let count = quiz::questions::bundled().len();
    let mut seen = HashSet::new();
    for _ in 0..30 * count {
        let (status, q) = quiz.get("/questions/random").await;
        assert_eq!(status, StatusCode::OK);
        let keys: HashSet<&str> = q.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, HashSet::from(["id", "text", "answers"]), "{q}");
        seen.insert(q["id"].as_u64().unwrap());
    }
    assert_eq!(seen.len(), count);
    quiz.stop().await;
}

async fn answers_are_judged_recorded_and_counted(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let quiz = Quiz::start(&db).await;
    let bundled = quiz::questions::bundled();
    let (q1, q5) = (&bundled[0], &bundled[4]);
    assert_eq!((q1.id, q5.id), (1, 5));
    let right_index = q1.correct_answer_index;
    let wrong_index = (right_index + 1) % q1.answers.len();
    let explanation = q1
        .explanation
        .as_deref()
        .expect("bundled questions explain");
    let (status, right) = quiz
        .answer("1", json!({"questionId": 1, "answerIndex": right_index}))
        .await;
    assert_eq!(status, StatusCode::OK, "{right}");
    assert_eq!(right["questionId"], 1);
    assert_eq!(right["answerIndex"], right_index);
    assert_eq!(right["correctAnswerIndex"], right_index);
    assert_eq!(right["correct"], true);
    assert_eq!(right["explanation"], explanation);
    let stamp = right["timestamp"].as_str().unwrap();
    humantime::parse_rfc3339(stamp).unwrap_or_else(|e| panic!("{stamp}: {e}"));

    let (_, wrong) = quiz
        .answer("1", json!({"questionId": 1, "answerIndex": wrong_index}))
        .await;
    assert_eq!(wrong["correct"], false);
    assert_eq!(wrong["correctAnswerIndex"], right_index);
    assert_eq!(
        wrong["explanation"], explanation,
        "explained when wrong too"
    );
    quiz.answer(
        "5",
        json!({"questionId": 5, "answerIndex": q5.correct_answer_index}),
    )
    .await;

    let (status, one) = quiz.get("/questions/1/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        one,
        json!({"questionId": 1, "answerCount": 2, "correctCount": 1, "correctRatio": 0.5})
    );
    let (_, unanswered) = quiz.get("/questions/2/stats").await;
    assert_eq!(unanswered["answerCount"], 0);
    assert_eq!(unanswered["correctRatio"], Value::Null);

    let (_, all) = quiz.get("/stats").await;
    assert_eq!(all["answerCount"], 3);
    assert_eq!(all["correctCount"], 2);
    assert_eq!(
        all["questions"].as_array().unwrap().len(),
        quiz::questions::bundled().len()
    );
    quiz.stop().await;
}

async fn bad_input_gets_a_clear_error_and_stores_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let quiz = Quiz::start(&db).await;
    let url = quiz.app.url();
    let post = |path: &str, content_type: &str, body: String| {
        quiz.client
            .post(format!("{url}{path}"))
            .header("content-type", content_type)
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            quiz.client.get(format!("{url}/questions/abc")),
            StatusCode::BAD_REQUEST,
            "positive integer",
        ),
        // A body over the limit, even on a route that reads none: 413, in JSON.
        (
            quiz.client
                .get(format!("{url}/questions/random"))
                .body(vec![b'x'; 20_000]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 16384 bytes",
        ),
        // A path that does not decode is answered in JSON too.
        (
            quiz.client.get(format!("{url}/questions/%ff")),
            StatusCode::BAD_REQUEST,
            "invalid path",
        ),
        (
            quiz.client.get(format!("{url}/questions/999")),
            StatusCode::NOT_FOUND,
            "no question with id 999",
        ),
        (
            quiz.client.get(format!("{url}/questions/-1/stats")),
            StatusCode::BAD_REQUEST,
            "positive integer",
        ),
        (
            quiz.client.get(format!("{url}/questions/999/stats")),
            StatusCode::NOT_FOUND,
            "999",
        ),
        (
            post(
                "/questions/x/answers",
                "application/json",
                r#"{"questionId":1,"answerIndex":0}"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "positive integer",
        ),
        (
            post(
                "/questions/999/answers",
                "application/json",
                r#"{"questionId":999,"answerIndex":0}"#.into(),
            ),
            StatusCode::NOT_FOUND,
            "999",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                r#"{"questionId":1,"answerIndex":"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                r#"{"questionId":1}"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "answerIndex",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                r#"{"answerIndex":1}"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "questionId",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                r#"{"questionId":1,"answerIndex":"two"}"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "answerIndex",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                r#"{"questionId":1,"answerIndex":1.5}"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "answerIndex",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                r#"[1, 2]"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "invalid answer",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                r#"{"questionId":1,"answerIndex":4}"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "out of range",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                r#"{"questionId":1,"answerIndex":-1}"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "out of range",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                r#"{"questionId":2,"answerIndex":0}"#.into(),
            ),
            StatusCode::BAD_REQUEST,
            "does not match",
        ),
        (
            post(
                "/questions/1/answers",
                "application/json",
                format!(
                    r#"{{"questionId":1,"answerIndex":0,"pad":"{}"}}"#,
                    "x".repeat(17 * 1024)
                ),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
        (
            post(
                "/questions/1/answers",
                "text/plain",
                r#"{"questionId":1,"answerIndex":0}"#.into(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            quiz.client
                .post(format!("{url}/questions/1/answers"))
                .body(r#"{"questionId":1,"answerIndex":0}"#),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/json",
        ),
        (
            quiz.client.delete(format!("{url}/stats")),
            StatusCode::METHOD_NOT_ALLOWED,
            "DELETE is not allowed",
        ),
        (
            quiz.client.get(format!("{url}/questions/1/answers")),
            StatusCode::METHOD_NOT_ALLOWED,
            "GET is not allowed",
        ),
        (
            quiz.client.get(format!("{url}/no/such/route")),
            StatusCode::NOT_FOUND,
            "no route",
        ),
    ];
    for (request, want_status, want_text) in cases {
        let res = request.send().await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.expect("the error body is JSON");
        let message = body["error"].as_str().unwrap_or_default();
        assert_eq!(status, want_status, "{body}");
        assert!(message.contains(want_text), "want '{want_text}' in {body}");
    }
    assert_eq!(
        quiz.total_answers().await,
        0,
        "a rejected answer was stored"
    );
    quiz.stop().await;
}

#[tokio::test]
async fn the_sqlite_database_is_durable_by_its_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let store = quiz::store::SqliteStore::open(
        &db,
        &quiz::questions::bundled(),
        quiz::StoreMetrics::unregistered(),
    )
    .unwrap();
    let (journal, synchronous, checkpoint) = store
        .inspect(|conn| {
            let journal: String = conn
                .pragma_query_value(None, "journal_mode", |r| r.get(0))
                .unwrap();
            let sync: i64 = conn
                .pragma_query_value(None, "synchronous", |r| r.get(0))
                .unwrap();
            let checkpoint: i64 = conn
                .pragma_query_value(None, "wal_autocheckpoint", |r| r.get(0))
                .unwrap();
            (journal, sync, checkpoint)
        })
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    assert_eq!(synchronous, 2, "synchronous=FULL");
    // Held back while the start-up writes went unsynced, back once answers can arrive.
    assert_eq!(checkpoint, 1000, "automatic checkpoints");
}

#[tokio::test]
async fn postgres_commits_are_synchronous_whatever_the_database_says() {
    let Some(db) = TestDb::new(Backend::Postgres) else {
        return;
    };
    let (server, name) = db.postgres.unwrap();
    server.sql(
        "postgres",
        &format!("ALTER DATABASE {name} SET synchronous_commit = off"),
    );
    let Database::Postgres(url) = &db.database else {
        unreachable!()
    };
    let store = quiz::store::PostgresStore::open(
        url,
        &quiz::questions::bundled(),
        quiz::StoreMetrics::unregistered(),
    )
    .await
    .unwrap();
    assert_eq!(store.setting("synchronous_commit").await.unwrap(), "on");
}

async fn concurrent_answers_all_succeed_and_are_all_stored(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let quiz = Quiz::start(&db).await;
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let client = quiz.client.clone();
        let url = format!("{}/questions/{}/answers", quiz.app.url(), i % 30 + 1);
        let body = json!({"questionId": i % 30 + 1, "answerIndex": i % 3});
        tasks.push(tokio::spawn(async move {
            client.post(url).json(&body).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(quiz.total_answers().await, 200);
    // Group commit: answers arriving together share commits. Asserted on PostgreSQL, where
    // every commit is a round trip to the server; a SQLite file on a RAM disk may commit faster
    // than the answers arrive.
    if matches!(backend, Backend::Postgres) {
        let metrics = quiz
            .client
            .get(format!("{}/metrics", quiz.app.url()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let commits: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("quiz_commit_batch_size_count "))
            .and_then(|n| n.trim().parse().ok())
            .expect("the commit count");
        assert!(commits < 100, "{commits} commits for 200 answers");
    }
    quiz.stop().await;
}

async fn answers_survive_a_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let quiz = Quiz::start(&db).await;
    let right = quiz::questions::bundled()[6].correct_answer_index;
    for _ in 0..3 {
        quiz.answer("7", json!({"questionId": 7, "answerIndex": right}))
            .await;
    }
    quiz.stop().await;
    let quiz = Quiz::start(&db).await;
    let (_, stats) = quiz.get("/questions/7/stats").await;
    assert_eq!(stats["answerCount"], 3);
    assert_eq!(stats["correctCount"], 3);
    quiz.stop().await;
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn a_new_question_set_is_upserted_by_id_and_history_is_kept(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let dir = &db.dir;
    let first = write(
        dir,
        "v1.yaml",
        r#"
- id: 1
  text: "One?"
  answers: ["a", "b", "c"]
  correctAnswerIndex: 0
- id: 2
  text: "Two?"
  answers: ["a", "b"]
  correctAnswerIndex: 1
  explanation: "Because <b>b</b>."
"#,
    );
    let quiz = Quiz::start_with(Config {
        questions_file: Some(first),
        ..db.config("q")
    })
    .await;
    // An explanation is optional in a custom file: without one the answer carries none.
    let (_, one) = quiz
        .answer("1", json!({"questionId": 1, "answerIndex": 0}))
        .await;
    assert_eq!(one["correct"], true);
    assert!(one.get("explanation").is_none(), "{one}");
    let (_, two) = quiz
        .answer("2", json!({"questionId": 2, "answerIndex": 0}))
        .await;
    assert_eq!(two["correct"], false);
    assert_eq!(two["explanation"], "Because <b>b</b>.");
    let (_, q2) = quiz.get("/questions/2").await;
    assert!(q2.get("explanation").is_none(), "{q2}");
    quiz.stop().await;

    // Question 1 changes its correct answer, 2 leaves the set, 3 joins: a JSON file this time.
    let second = write(
        dir,
        "v2.json",
        r#"[
        {"id": 1, "text": "One, reworded?", "answers": ["a", "b", "c"], "correctAnswerIndex": 2},
        {"id": 3, "text": "Three?", "answers": ["x", "y"], "correctAnswerIndex": 0}
    ]"#,
    );
    let quiz = Quiz::start_with(Config {
        questions_file: Some(second),
        ..db.config("q")
    })
    .await;
    let (_, q1) = quiz.get("/questions/1").await;
    assert_eq!(q1["text"], "One, reworded?");
    assert_eq!(quiz.get("/questions/2").await.0, StatusCode::NOT_FOUND);
    assert_eq!(quiz.get("/questions/3").await.0, StatusCode::OK);
    assert_eq!(
        quiz.answer("2", json!({"questionId": 2, "answerIndex": 1}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // The earlier answer to 1 stays correct, and 2's answer is still counted.
    let (_, s1) = quiz.get("/questions/1/stats").await;
    assert_eq!(
        (s1["answerCount"].as_u64(), s1["correctCount"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, s2) = quiz.get("/questions/2/stats").await;
    assert_eq!(s2["answerCount"], 1);
    let (_, all) = quiz.get("/stats").await;
    let ids: Vec<u64> = all["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["questionId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(all["answerCount"], 2);
    quiz.stop().await;
}

async fn an_invalid_question_set_stops_the_start_naming_the_question(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let dir = &db.dir;
    let cases = [
        (
            "dup.yaml",
            "- {id: 4, text: A?, answers: [a, b], correctAnswerIndex: 0}\n- {id: 4, text: B?, answers: [a, b], correctAnswerIndex: 0}\n",
            "question 4: duplicate id",
        ),
        (
            "none.yaml",
            "- {id: 5, text: A?, answers: [], correctAnswerIndex: 0}\n",
            "question 5: needs at least two answers",
        ),
        (
            "range.json",
            r#"[{"id": 6, "text": "A?", "answers": ["a", "b"], "correctAnswerIndex": 2}]"#,
            "question 6: correctAnswerIndex 2 is out of range",
        ),
        (
            "empty.yaml",
            "- {id: 7, text: '', answers: [a, b], correctAnswerIndex: 0}\n",
            "question 7: text is empty",
        ),
        (
            "typo.yaml",
            "- {id: 8, text: A?, answer: [a, b], correctAnswerIndex: 0}\n",
            "unknown field `answer`",
        ),
        (
            "typo2.yaml",
            "- {id: 9, text: A?, answers: [a, b], correctAnswerIndex: 0, explaination: x}\n",
            "unknown field `explaination`",
        ),
        (
            "blank.yaml",
            "- {id: 10, text: A?, answers: [a, b], correctAnswerIndex: 0, explanation: ' '}\n",
            "question 10: explanation is empty",
        ),
        ("broken.json", "[{", "not valid JSON"),
    ];
    for (name, text, want) in cases {
        let path = write(dir, name, text);
        let config = Config {
            questions_file: Some(path),
            ..db.config("q")
        };
        let err = quiz::build(config)
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(want) && err.contains(name), "{name}: {err}");
    }
}

async fn readiness_fails_while_the_database_is_unusable(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let quiz = Quiz::start(&db).await;
    let ready = || async {
        let res = quiz
            .client
            .get(format!("{}/healthz/ready", quiz.app.url()))
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    };
    assert_eq!(ready().await.0, StatusCode::OK);

    // Someone breaks the schema under the running service.
    db.execute("ALTER TABLE answers RENAME TO answers_moved");
    let (status, reason) = wait_for(&ready, |(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reason.contains("database") && reason.contains("answers"),
        "{reason}"
    );

    db.execute("ALTER TABLE answers_moved RENAME TO answers");
    let (status, reason) = wait_for(&ready, |(s, _)| *s == StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "{reason}");
    quiz.stop().await;
}

fn rusqlite_connection(db: &Path) -> quiz::store::Connection {
    quiz::store::Connection::open(db).unwrap()
}

async fn wait_for<T, F: Future<Output = T>>(
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = probe().await;
        if done(&value) || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn answers_and_commits_show_in_the_metrics(backend: Backend) {
    let Some(db) = TestDb::new(backend) else {
        return;
    };
    let quiz = Quiz::start(&db).await;
    quiz.answer("1", json!({"questionId": 1, "answerIndex": 0}))
        .await;
    quiz.answer("1", json!({"questionId": 1, "answerIndex": 1}))
        .await;
    quiz.answer("1", json!({"questionId": 1, "answerIndex": 9}))
        .await; // rejected
    let m = quiz
        .client
        .get(format!("{}/metrics", quiz.app.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains(r#"quiz_answers_recorded_total{correct="true"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"quiz_answers_recorded_total{correct="false"} 1"#),
        "{m}"
    );
    assert!(m.contains("quiz_commit_batch_size_count 2"), "{m}");
    assert!(m.contains("quiz_commit_duration_seconds_count 2"), "{m}");
    assert!(
        m.contains(
            r#"http_requests_total{method="POST",route="/questions/{id}/answers",status="400"} 1"#
        ),
        "{m}"
    );
    quiz.stop().await;
}

#[tokio::test]
async fn postgres_down_fails_readiness_and_writes_fast_and_recovers() {
    // Its own server: this test stops it.
    let Some(server) = Postgres::start("quiz with PostgreSQL stopped", &["fsync=off"]) else {
        return;
    };
    let name = server.create_database();
    let url = PostgresUrl::parse(&server.url(&name)).unwrap();
    let quiz = Quiz::start_with(Config::local_on("q", Database::Postgres(url))).await;
    let ready = || async {
        let res = quiz
            .client
            .get(format!("{}/healthz/ready", quiz.app.url()))
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    };
    let answer = json!({"questionId": 1, "answerIndex": 0});
    assert_eq!(quiz.answer("1", answer.clone()).await.0, StatusCode::OK);
    assert_eq!(ready().await.0, StatusCode::OK);

    server.stop();
    let stopped = Instant::now();
    let (status, reason) = wait_for(&ready, |(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reason}");
    assert!(
        stopped.elapsed() < Duration::from_secs(6),
        "readiness took {:?} to fail",
        stopped.elapsed()
    );
    assert!(
        reason.contains("database") && reason.contains("connect"),
        "the cause is named: {reason}"
    );

    // Writes and reads fail with 503 and a JSON error, quickly.
    let asked = Instant::now();
    let (status, body) = quiz.answer("1", answer.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("database"),
        "{body}"
    );
    let (status, body) = quiz.get("/stats").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "took {:?}",
        asked.elapsed()
    );

    server.restart();
    let (status, reason) = wait_for(&ready, |(s, _)| *s == StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "{reason}");
    assert_eq!(quiz.answer("1", answer).await.0, StatusCode::OK);
    assert_eq!(quiz.total_answers().await, 2);
    quiz.stop().await;
}

/// Each test of the API, once per store.
macro_rules! both_stores {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Backend::Postgres).await
            })*
        }
    };
}

both_stores!(
    root_names_the_pod,
    questions_come_without_their_correct_answer,
    answers_are_judged_recorded_and_counted,
    bad_input_gets_a_clear_error_and_stores_nothing,
    concurrent_answers_all_succeed_and_are_all_stored,
    answers_survive_a_restart,
    a_new_question_set_is_upserted_by_id_and_history_is_kept,
    an_invalid_question_set_stops_the_start_naming_the_question,
    readiness_fails_while_the_database_is_unusable,
    answers_and_commits_show_in_the_metrics,
);
