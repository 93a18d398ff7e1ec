//! Stand-in backends for kiada's tests: real HTTP servers on loopback, port 0, whose answers the
//! test decides.
#![allow(dead_code)]

use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use kiada::Config;
use kit::Running;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct StandIn {
    pub url: String,
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(router: Router) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    StandIn {
        url: format!("http://127.0.0.1:{port}"),
        port,
        task,
    }
}

/// A server that accepts connections and never answers.
pub async fn hanging() -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    StandIn {
        url: format!("http://127.0.0.1:{port}"),
        port,
        task,
    }
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn pod_headers(pod: &'static str) -> [(&'static str, &'static str); 2] {
    [("x-pod-name", pod), ("x-pod-ip", "10.244.1.7")]
}

/// A quote service that always answers `tip`, naming itself `pod`.
pub fn quote(pod: &'static str, tip: &'static str) -> Router {
    Router::new()
        .route(
            "/quote",
            get(move || async move { (pod_headers(pod), format!("{tip}\n")) }),
        )
        .route(
            "/",
            get(move || async move { (pod_headers(pod), format!("quote pod {pod}\n")) }),
        )
}

/// A quote service that fails with `status`.
pub fn failing(status: StatusCode) -> Router {
    let handler = move || async move { (status, pod_headers("sick-pod"), "something broke\n") };
    Router::new()
        .route("/quote", get(handler))
        .route("/questions/random", get(handler))
}

pub const QUESTION_ID: u32 = 7;
pub const CORRECT: usize = 1;

/// A quiz service with one question, 7, whose correct answer is 1.
pub fn quiz(pod: &'static str, text: &'static str) -> Router {
    let question = move || json!({"id": QUESTION_ID, "text": text, "answers": ["Alpha", "Beta", "<b>Gamma</b>"]});
    Router::new()
        .route(
            "/questions/random",
            get(move || async move { (pod_headers(pod), Json(question())) }),
        )
        .route(
            "/questions/{id}",
            get(move |Path(id): Path<u32>| async move {
                if id == QUESTION_ID {
                    (pod_headers(pod), Json(question())).into_response()
                } else {
                    (
                        StatusCode::NOT_FOUND,
                        Json(json!({"error": format!("no question with id {id}")})),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/questions/{id}/answers",
            post(
                move |Path(id): Path<u32>, Json(body): Json<Value>| async move {
                    let index = body["answerIndex"].as_u64().unwrap_or(99) as usize;
                    if id != QUESTION_ID {
                        return (
                            StatusCode::NOT_FOUND,
                            pod_headers(pod),
                            Json(json!({"error": format!("no question with id {id}")})),
                        );
                    }
                    if index > 2 {
                        return (
                            StatusCode::BAD_REQUEST,
                            pod_headers(pod),
                            Json(json!({"error": format!("answerIndex {index} is out of range")})),
                        );
                    }
                    (
                        StatusCode::OK,
                        pod_headers(pod),
                        Json(json!({
                            "questionId": id, "answerIndex": index, "correctAnswerIndex": CORRECT,
                            "correct": index == CORRECT, "timestamp": "2026-11-22T10:00:00.000Z"
                        })),
                    )
                },
            ),
        )
        .route(
            "/",
            get(move || async move { (pod_headers(pod), format!("quiz pod {pod}\n")) }),
        )
}

pub fn config(quote_url: &str, quiz_url: &str) -> Config {
    let mut config = Config::local("kiada-test", quote_url, quiz_url);
    config.identity.node_name = "node-7".into();
    config.identity.pod_ip = "10.244.2.2".into();
    config.backend_timeout = Duration::from_millis(500);
    config
}

pub async fn start(config: Config) -> Running {
    kiada::build(config).await.expect("kiada starts").spawn()
}

/// kiada over a healthy quote (`quote-a`) and quiz (`quiz-a`).
pub struct Suite {
    pub kiada: Running,
    pub quote: StandIn,
    pub quiz: StandIn,
}

pub async fn healthy() -> Suite {
    let quote = serve(quote("quote-a", "Services balance connections.")).await;
    let quiz = serve(quiz("quiz-a", "Which is right?")).await;
    let kiada = start(config(&format!("{}/quote", quote.url), &quiz.url)).await;
    Suite { kiada, quote, quiz }
}

pub async fn fetch(url: String, accept: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

pub async fn text(url: String) -> String {
    let res = fetch(url, "*/*").await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}
