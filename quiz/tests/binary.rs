//! The real `quiz` binary as a process: acknowledged answers survive `kill -9`.

use std::time::Duration;

use kit::testing::Process;
use serde_json::{Value, json};

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
