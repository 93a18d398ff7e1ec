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
