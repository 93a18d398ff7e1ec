//! The chapter's walk through, as a reader does it with curl, against the real binaries.

use std::time::{Duration, Instant};

use e2e::{Process, binary, start, text, wait_for_text};
use serde_json::Value;

use crate::eventually;

struct Lab {
    quote: Process,
    quiz: Process,
    kiada: Process,
    _data: tempfile::TempDir,
}

fn lab() -> Lab {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("quiz.db");
    let quote = start(
        "quote",
        &["--pod-name", "quote-a", "--shutdown-delay", "0.2"],
    );
    let quiz = start(
        "quiz",
        &["--pod-name", "quiz-a", "--db", db.to_str().unwrap()],
    );
    let kiada = kiada_over(&quote, &quiz);
    Lab {
        quote,
        quiz,
        kiada,
        _data: data,
    }
}

fn kiada_over(quote: &Process, quiz: &Process) -> Process {
    start(
        "kiada",
        &[
            "--pod-name",
            "kiada-a",
            "--no-tls",
            "--backend-timeout",
            "1",
            "--quote-url",
            &format!("{}/quote", quote.url()),
            "--quiz-url",
            &quiz.url(),
        ],
    )
}

#[tokio::test]
async fn curl_through_the_chapter() {
    let lab = lab();
    let kiada = lab.kiada.url();

    // The text page: tip, question and request info, each backend naming its pod.
    let page = text(format!("{kiada}/")).await;
    for want in [
        "==== TIP OF THE MINUTE",
        "(quote served by quote-a in ",
        "==== POP QUIZ\nQuestion ",
        "(quiz served by quiz-a in ",
        "==== REQUEST INFO",
        "in pod \"kiada-a\"",
        "Client IP: 127.0.0.1",
    ] {
        assert!(page.contains(want), "missing {want:?} in\n{page}");
    }

    // Each backend says who it is.
    let quote_id = text(format!("{}/", lab.quote.url())).await;
    assert!(
        quote_id.starts_with("This is the quote service running in pod quote-a on node "),
        "{quote_id}"
    );
    assert_eq!(
        text(format!("{}/", lab.quiz.url())).await,
        "This is the quiz service running in pod quiz-a\n"
    );

    // Answering from curl, as the page says; the quiz service counts it.
    let reply = reqwest::Client::new()
        .post(format!("{kiada}/question/1/answers/0"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(reply.starts_with("Correct!"), "{reply}");
    let stats: Value = reqwest::get(format!("{}/questions/1/stats", lab.quiz.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["answerCount"], 1);

    // A browser is sent to the HTML page.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{kiada}/"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()["location"], "html");

    // The proxy routes the page's script uses.
    let res = reqwest::get(format!("{kiada}/proxy/quote")).await.unwrap();
    assert_eq!(res.headers()["x-pod-name"], "kiada-a");
    assert_eq!(res.headers()["x-backend-pod-name"], "quote-a");
    let q: Value = reqwest::get(format!("{kiada}/proxy/quiz/questions/random"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        q["id"].as_u64().is_some() && q.get("correctAnswerIndex").is_none(),
        "{q}"
    );
    let res = reqwest::Client::new()
        .post(format!("{kiada}/proxy/quiz/questions/2/answers"))
        .json(&serde_json::json!({"questionId": 2, "answerIndex": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["correct"], true);
}

#[tokio::test]
async fn stopping_quote_degrades_the_tip_section_and_restarting_it_recovers() {
    let mut lab = lab();
    let kiada = lab.kiada.url();
    let port = lab.quote.addr.port();

    lab.quote.signal("TERM");
    assert_eq!(lab.quote.wait(Duration::from_secs(10)).code(), Some(0));

    let started = Instant::now();
    let page = text(format!("{kiada}/text")).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the page waited {:?}",
        started.elapsed()
    );
    assert!(
        page.contains("ERROR: cannot reach the quote service: connection refused"),
        "{page}"
    );
    assert!(
        page.contains("HINT: Connection refused: no ready endpoints?"),
        "{page}"
    );
    assert!(
        page.contains("(quiz served by quiz-a in "),
        "the quiz section is unaffected:\n{page}"
    );

    // The same port again, as a replacement pod behind the same Service.
    let port = port.to_string();
    let _quote = Process::start(
        binary("quote").to_str().unwrap(),
        &["--pod-name", "quote-b", "--listen-port", &port],
    );
    let page = wait_for_text(&format!("{kiada}/text"), "(quote served by quote-b").await;
    assert!(page.contains("(quote served by quote-b in "), "{page}");
}

#[tokio::test]
async fn the_spread_lab_shows_every_replica_behind_a_balancer() {
    let quotes: Vec<Process> = (1..=3)
        .map(|i| start("quote", &["--pod-name", &format!("quote-{i}")]))
        .collect();
    let balancer = balancer::Balancer::start(
        0,
        quotes
            .iter()
            .map(|q| q.addr)
            .map(|a| ([127, 0, 0, 1], a.port()).into())
            .collect(),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let quiz = start(
        "quiz",
        &["--db", data.path().join("q.db").to_str().unwrap()],
    );
    let kiada = start(
        "kiada",
        &[
            "--no-tls",
            "--quote-url",
            &format!("{}/quote", balancer.url()),
            "--quiz-url",
            &quiz.url(),
        ],
    );
    let spread = text(format!(
        "{}/lab/spread?service=quote&n=30&connection=new",
        kiada.url()
    ))
    .await;
    for pod in ["quote-1", "quote-2", "quote-3"] {
        assert!(spread.contains(&format!("{pod}   10 ")), "{spread}");
    }
    let reused = text(format!(
        "{}/lab/spread?service=quote&n=30&connection=reuse",
        kiada.url()
    ))
    .await;
    assert!(reused.contains("1 pod(s) answered"), "{reused}");
}

#[tokio::test]
async fn answers_given_through_kiada_survive_kill_9_of_quiz() {
    let mut lab = lab();
    let kiada = lab.kiada.url();
    let client = reqwest::Client::new();
    for index in 0..4 {
        let res = client
            .post(format!("{kiada}/question/5/answers/{index}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let db = lab.quiz_db();
    lab.quiz.signal("KILL");
    lab.quiz.wait(Duration::from_secs(5));
    let quiz = start("quiz", &["--db", &db]);
    let stats: Value = reqwest::get(format!("{}/questions/5/stats", quiz.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["answerCount"], 4, "{stats}");
    assert_eq!(stats["correctCount"], 1, "{stats}");
}

impl Lab {
    fn quiz_db(&self) -> String {
        self._data
            .path()
            .join("quiz.db")
            .to_str()
            .unwrap()
            .to_owned()
    }
}

#[tokio::test]
async fn one_request_id_follows_a_request_through_every_log() {
    let lab = lab();
    let res = reqwest::Client::new()
        .get(format!("{}/text", lab.kiada.url()))
        .header("x-request-id", "follow-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "follow-me-123");
    for (name, process) in [
        ("kiada", &lab.kiada),
        ("quote", &lab.quote),
        ("quiz", &lab.quiz),
    ] {
        let logged = || {
            process.logs().iter().any(|line| {
                let event: Value = serde_json::from_str(line).unwrap_or_default();
                event["message"] == "request" && event["request_id"] == "follow-me-123"
            })
        };
        // The line may still be on its way through the pipe.
        assert!(
            eventually(Duration::from_secs(5), || async { logged() }).await,
            "{name} did not log the id:\n{}",
            process.logs().join("\n")
        );
    }
}
