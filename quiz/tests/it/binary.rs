//! The real `quiz` binary as a process: acknowledged answers survive `kill -9`, on SQLite and on
//! PostgreSQL; several processes share one PostgreSQL database.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::{Postgres, PostgresUnavailable, Process};

const QUIZ: &str = env!("CARGO_BIN_EXE_quiz");

#[tokio::test]
async fn acknowledged_answers_survive_kill_9_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quiz.db");
    let db = db.to_str().unwrap();
    let mut quiz = Process::start(QUIZ, &["--db", db]);
    let client = reqwest::Client::new();

    let posts = (0..120u64).map(|i| {
        let id = i % 30 + 1;
        let request = client
            .post(format!("{}/questions/{id}/answers", quiz.url()))
            .json(&json!({"questionId": id, "answerIndex": i % 3}));
        tokio::spawn(async move { request.send().await.unwrap().status() })
    });
    let tasks: Vec<_> = posts.collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }

    quiz.signal("KILL");
    let status = quiz.wait(Duration::from_secs(5));
    assert_eq!(status.code(), None, "killed by a signal");

    let quiz = Process::start(QUIZ, &["--db", db]);
    let stats: Value = client
        .get(format!("{}/stats", quiz.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["answerCount"], 120, "{stats}");
}

#[test]
fn an_unusable_database_path_stops_the_start_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let db = not_a_dir.join("quiz.db");
    let (status, logs) = Process::try_start(QUIZ, &["--db", db.to_str().unwrap()])
        .err()
        .expect("quiz refuses to start");
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    let logs = logs.join("\n");
    assert!(logs.contains(db.to_str().unwrap()), "{logs}");
}

/// Starts quiz on `file` under a 300 MB address-space limit, expecting a refusal that names
/// `says` within two seconds: bounded time and memory, and a message instead of an abort.
fn refuses_questions_file(file: &std::path::Path, says: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quiz.db");
    let mut command = std::process::Command::new("sh");
    command.args([
        "-c",
        r#"ulimit -v 300000 && exec "$@""#,
        "sh",
        QUIZ,
        "--questions-file",
        file.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ]);
    let started = std::time::Instant::now();
    let (status, logs) = Process::spawn(command)
        .err()
        .expect("quiz refuses to start");
    let took = started.elapsed();
    let logs = logs.join("\n");
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{file:?}: {logs}");
    assert!(logs.contains(says), "{file:?}: {logs}");
    assert!(
        took < std::time::Duration::from_secs(2),
        "{file:?} took {took:?}"
    );
}

#[test]
fn hostile_questions_files_are_refused_quickly_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();

    // One 1 MB anchored scalar referenced 300 times would expand to 300 MB.
    let bomb = dir.path().join("aliases.yaml");
    let big = "x".repeat(1_000_000);
    let refs = ["*t"; 300].join(", ");
    std::fs::write(
        &bomb,
        format!("- id: 1\n  text: &t {big}\n  answers: [{refs}]\n  correctAnswerIndex: 0\n"),
    )
    .unwrap();
    refuses_questions_file(&bomb, "aliases (*name) are not allowed");

    // Many small aliases nested: a billion laughs.
    let laughs = dir.path().join("laughs.yaml");
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..9 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            [prev.as_str(); 9].join(", ")
        ));
    }
    std::fs::write(&laughs, text).unwrap();
    refuses_questions_file(&laughs, "aliases (*name) are not allowed");

    let deep = dir.path().join("deep.yaml");
    std::fs::write(
        &deep,
        format!("{}1{}", "{a: ".repeat(50_000), "}".repeat(50_000)),
    )
    .unwrap();
    refuses_questions_file(&deep, "nested more than 16 levels deep");

    let huge = dir.path().join("huge.yaml");
    std::fs::write(&huge, "# filler\n".repeat(130_000)).unwrap();
    refuses_questions_file(&huge, "larger than 1048576 bytes");

    let fifo = dir.path().join("fifo.yaml");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    refuses_questions_file(&fifo, "a FIFO");
    refuses_questions_file(std::path::Path::new("/dev/zero"), "a device");
}

/// One PostgreSQL server for the process tests of this file, each in its own database; where
/// it cannot run, each test says it is skipped.
fn postgres(test: &str) -> Option<&'static Postgres> {
    static SERVER: OnceLock<Result<Postgres, PostgresUnavailable>> = OnceLock::new();
    match SERVER.get_or_init(|| Postgres::try_start(&["fsync=off"])) {
        Ok(server) => Some(server),
        Err(why) => {
            testkit::skip(test, &why.to_string());
            None
        }
    }
}

/// Posts `count` answers, `parallel` at a time, and returns how many were acknowledged (200),
/// counting them in `acknowledged` as they come. Stops early, without failing, when the
/// process is gone; any other answer than 200 fails the test.
async fn answer_load(url: String, count: u64, parallel: u64, acknowledged: Arc<AtomicU64>) -> u64 {
    let client = reqwest::Client::new();
    let workers = (0..parallel).map(|w| {
        let client = client.clone();
        let url = url.clone();
        let acknowledged = acknowledged.clone();
        tokio::spawn(async move {
            for i in (w..count).step_by(parallel as usize) {
                let id = i % 30 + 1;
                let sent = client
                    .post(format!("{url}/questions/{id}/answers"))
                    .json(&json!({"questionId": id, "answerIndex": i % 3}))
                    .send()
                    .await;
                match sent {
                    Ok(res) if res.status() == 200 => {
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(res) => panic!("answer refused: {}", res.status()),
                    Err(_) => break,
                }
            }
        })
    });
    for worker in workers.collect::<Vec<_>>() {
        worker.await.unwrap();
    }
    acknowledged.load(Ordering::SeqCst)
}

async fn stats(quiz: &Process) -> Value {
    reqwest::get(format!("{}/stats", quiz.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_processes_on_one_postgres_database_agree_and_lose_nothing() {
    let test = "two quiz processes on one PostgreSQL database";
    let Some(server) = postgres(test) else {
        return;
    };
    let url = server.url(&server.create_database());
    let one = Process::start(QUIZ, &["--database-url", &url, "--pod-name", "quiz-1"]);
    // The second starts, and writes the question set, while answers flow through the first.
    let first = tokio::spawn(answer_load(one.url(), 300, 16, Arc::default()));
    let two = Process::start(QUIZ, &["--database-url", &url, "--pod-name", "quiz-2"]);
    let b = answer_load(two.url(), 150, 16, Arc::default()).await;
    let a = first.await.unwrap();
    assert_eq!(
        (a, b),
        (300, 150),
        "every answer acknowledged, none refused"
    );
    let (s1, s2) = (stats(&one).await, stats(&two).await);
    assert_eq!(s1, s2, "both replicas report the same totals");
    assert_eq!(s1["answerCount"], 450, "{s1}");
}

#[tokio::test]
async fn acknowledged_answers_survive_kill_9_during_a_load_on_postgres() {
    let test = "kill -9 of quiz on PostgreSQL";
    let Some(server) = postgres(test) else {
        return;
    };
    let name = server.create_database();
    let quiz = Process::start(QUIZ, &["--database-url", &server.url(&name)]);
    let progress = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(answer_load(quiz.url(), 100_000, 32, progress.clone()));
    // Killed mid-load, once answers are being acknowledged: others are in flight, waiting for
    // their commit.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while progress.load(Ordering::SeqCst) < 200 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    quiz.signal("KILL");
    let acknowledged = load.await.unwrap();
    let stored: u64 = server
        .sql(&name, "SELECT COUNT(*) FROM answers")
        .parse()
        .unwrap();
    assert!(acknowledged >= 200, "the load ran before the kill");
    assert!(
        stored >= acknowledged,
        "{acknowledged} acknowledged, only {stored} stored"
    );
}

#[tokio::test]
async fn replicas_starting_at_once_migrate_once() {
    let test = "migrations raced by two quiz processes";
    let Some(server) = postgres(test) else {
        return;
    };
    let name = server.create_database();
    let url = server.url(&name);
    let starts: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || Process::start(QUIZ, &["--database-url", &url]))
        })
        .collect();
    let quizzes: Vec<Process> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        server.sql(&name, "SELECT COUNT(*) FROM quiz_migrations"),
        "1"
    );
    let bundled = quiz::questions::bundled().len();
    assert_eq!(
        server.sql(&name, "SELECT COUNT(*) FROM questions WHERE active"),
        bundled.to_string()
    );
    for quiz in &quizzes {
        assert_eq!(
            stats(quiz).await["questions"].as_array().unwrap().len(),
            bundled
        );
    }
}

#[test]
fn the_database_url_is_checked_and_its_password_never_shown() {
    // Not PostgreSQL: refused, naming the problem, without the password.
    let (status, logs) =
        Process::try_start(QUIZ, &["--database-url", "mysql://quiz:hunter2@db/quiz"])
            .err()
            .expect("quiz refuses to start");
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    let logs = logs.join("\n");
    assert!(logs.contains("not a PostgreSQL URL"), "{logs}");
    assert!(logs.contains("mysql://quiz:***@db/quiz"), "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");

    // Both databases: refused.
    let mut command = std::process::Command::new(QUIZ);
    command
        .args(["--database-url", "postgres://quiz:hunter2@db/quiz"])
        .env("DB_PATH", "/tmp/quiz.db");
    let (status, logs) = Process::spawn(command)
        .err()
        .expect("quiz refuses to start");
    assert_eq!(status.and_then(|s| s.code()), Some(2));
    let logs = logs.join("\n");
    assert!(
        logs.contains("--db") && logs.contains("--database-url"),
        "{logs}"
    );
    assert!(!logs.contains("hunter2"), "{logs}");

    // Running: the URL is logged with the password hidden (the test server trusts any).
    let Some(server) = postgres("quiz logs its PostgreSQL URL") else {
        return;
    };
    let name = server.create_database();
    let url = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/{name}",
        server.port
    );
    let quiz = Process::start(QUIZ, &["--database-url", &url]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !quiz.logs().iter().any(|l| l.contains("postgres:***@")) {
        if std::time::Instant::now() > deadline {
            break; // The assertions below say what is missing.
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = quiz.logs().join("\n");
    assert!(logs.contains("postgres:***@127.0.0.1"), "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");
}
