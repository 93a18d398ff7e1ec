//! kiada's backend metrics, request-id forwarding and release badge.

use std::sync::{Arc, Mutex};

use crate::support::*;
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;

#[tokio::test]
async fn backend_calls_are_counted_by_service_outcome_and_pod() {
    let s = healthy().await;
    for _ in 0..2 {
        text(format!("{}/text", s.kiada.url())).await;
    }
    let down = start(config(
        &format!("http://127.0.0.1:{}/quote", closed_port()),
        &s.quiz.url,
    ))
    .await;
    text(format!("{}/text", down.url())).await;

    let m = text(format!("{}/metrics", s.kiada.url())).await;
    assert!(
        m.contains(r#"kiada_backend_calls_total{service="quote",outcome="ok",pod="quote-a"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"kiada_backend_calls_total{service="quiz",outcome="ok",pod="quiz-a"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"kiada_backend_call_duration_seconds_count{service="quote"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"http_requests_total{method="GET",route="/text",status="200"} 2"#),
        "{m}"
    );
    let m = text(format!("{}/metrics", down.url())).await;
    assert!(
        m.contains(r#"kiada_backend_calls_total{service="quote",outcome="refused",pod="none"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn the_request_id_is_forwarded_on_every_backend_call() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let record = |name: &'static str, seen: Arc<Mutex<Vec<String>>>| {
        move |headers: HeaderMap| async move {
            let id = headers
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock()
                .unwrap()
                .push(format!("{name}:{}", id.unwrap_or_default()));
            ([("x-pod-name", name)], "A tip.\n")
        }
    };
    let quote = serve(Router::new().route("/quote", get(record("quote", seen.clone())))).await;
    // Its answer is no question, which does not matter here: only the header is looked at.
    let quiz = Router::new().route("/questions/random", get(record("quiz", seen.clone())));
    let quiz = serve(quiz).await;
    let kiada = start(config(&format!("{}/quote", quote.url), &quiz.url)).await;

    let res = reqwest::Client::new()
        .get(format!("{}/text", kiada.url()))
        .header("x-request-id", "trace-me-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-7");
    let mut calls = seen.lock().unwrap().clone();
    calls.sort();
    assert_eq!(calls, ["quiz:trace-me-7", "quote:trace-me-7"]);

    // Without one, kiada makes one up and still passes it on.
    seen.lock().unwrap().clear();
    let res = fetch(format!("{}/proxy/quote", kiada.url()), "*/*").await;
    let made = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(seen.lock().unwrap().clone(), [format!("quote:{made}")]);
}

#[tokio::test]
async fn the_release_shows_on_the_pages() {
    let quote = serve(quote("q", "tip")).await;
    let quiz = serve(quiz("z", "Q?")).await;
    let mut canary = config(&format!("{}/quote", quote.url), &quiz.url);
    canary.identity.release = Some("canary".into());
    let kiada = start(canary).await;
    let page = text(format!("{}/text", kiada.url())).await;
    assert!(
        page.starts_with(&format!(
            "==== KIADA {} (canary release)",
            kiada::view::VERSION
        )),
        "{page}"
    );
    let html = text(format!("{}/html", kiada.url())).await;
    assert!(
        html.contains(r#"<span class="badge canary" id="release">canary</span>"#),
        "{html}"
    );
    let api: serde_json::Value = fetch(format!("{}/api", kiada.url()), "*/*")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(api["release"], "canary");

    // Without RELEASE there is no badge.
    let plain = start(config(&format!("{}/quote", quote.url), &quiz.url)).await;
    assert!(
        !text(format!("{}/html", plain.url()))
            .await
            .contains("badge")
    );
}
