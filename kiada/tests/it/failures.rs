//! When a backend fails: the page still answers, each failure is classified with a hint, and
//! nothing waits longer than the backend timeout. Also the proxy's whitelist and status mapping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use axum::http::StatusCode;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;

async fn page_with_quote_at(quote_url: String) -> (String, Duration) {
    let quiz = serve(quiz("quiz-a", "Still here?")).await;
    let kiada = start(config(&quote_url, &quiz.url)).await;
    let started = Instant::now();
    let page = text(format!("{}/text", kiada.url())).await;
    (page, started.elapsed())
}

fn assert_quiz_unaffected(page: &str) {
    assert!(
        page.contains("Question 7: Still here?"),
        "the quiz section suffered:\n{page}"
    );
}

#[tokio::test]
async fn connection_refused_says_to_check_endpoints() {
    let (page, _) = page_with_quote_at(format!("http://127.0.0.1:{}/quote", closed_port())).await;
    assert!(
        page.contains("ERROR: cannot reach the quote service: connection refused"),
        "{page}"
    );
    assert!(
        page.contains("HINT: Connection refused: no ready endpoints?"),
        "{page}"
    );
    assert!(page.contains("(quote served by no pod in "), "{page}");
    assert_quiz_unaffected(&page);
}

#[tokio::test]
async fn a_backend_that_never_answers_costs_at_most_the_timeout() {
    let hang = hanging().await;
    let (page, took) = page_with_quote_at(format!("{}/quote", hang.url)).await;
    assert!(
        page.contains("ERROR: cannot reach the quote service: timed out"),
        "{page}"
    );
    assert!(page.contains("HINT: No answer in time"), "{page}");
    assert_quiz_unaffected(&page);
    // The backend timeout is 500 ms; the page must not wait for the hanging server.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}

#[tokio::test]
async fn an_error_status_names_the_status_and_the_pod() {
    let sick = serve(failing(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let (page, _) = page_with_quote_at(format!("{}/quote", sick.url)).await;
    assert!(
        page.contains("HTTP 500 Internal Server Error: something broke"),
        "{page}"
    );
    assert!(
        page.contains("HINT: The backend answered with an error"),
        "{page}"
    );
    assert!(page.contains("(quote served by sick-pod in "), "{page}");
    assert_quiz_unaffected(&page);
}

/// Resolves `quiz` and `quote` to loopback stand-ins and nothing else, as a cluster DNS would
/// answer for Services that exist.
struct TestDns {
    known: Vec<(&'static str, SocketAddr)>,
}

impl Resolve for TestDns {
    fn resolve(&self, name: Name) -> Resolving {
        let found = self
            .known
            .iter()
            .find(|(n, _)| *n == name.as_str())
            .map(|(_, a)| *a);
        Box::pin(async move {
            match found {
                Some(addr) => Ok(Box::new(std::iter::once(addr)) as Addrs),
                None => Err(format!(
                    "failed to lookup address information: {} not found",
                    name.as_str()
                )
                .into()),
            }
        })
    }
}

#[tokio::test]
async fn an_unknown_name_says_to_check_the_service_name() {
    let quiz = serve(quiz("quiz-a", "Resolved by name?")).await;
    let mut config = config("http://qoute/quote", &format!("http://quiz:{}", quiz.port));
    config.resolver = Some(Arc::new(TestDns {
        known: vec![("quiz", SocketAddr::from(([127, 0, 0, 1], quiz.port)))],
    }));
    let kiada = start(config).await;
    let page = text(format!("{}/text", kiada.url())).await;
    assert!(
        page.contains("ERROR: cannot reach the quote service: DNS lookup failed"),
        "{page}"
    );
    assert!(
        page.contains("HINT: The name did not resolve: check the Service name and namespace"),
        "{page}"
    );
    assert!(page.contains("Question 7: Resolved by name?"), "{page}");
}

#[tokio::test]
async fn kiada_stays_ready_when_its_backends_are_down() {
    let kiada = start(config(
        &format!("http://127.0.0.1:{}/quote", closed_port()),
        &format!("http://127.0.0.1:{}", closed_port()),
    ))
    .await;
    let res = fetch(format!("{}/healthz/ready", kiada.url()), "*/*").await;
    assert_eq!(res.status(), 200);
    let page = text(format!("{}/text", kiada.url())).await;
    assert!(page.contains("cannot reach the quiz service"), "{page}");
}

async fn post_json(url: String, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_proxy_relays_only_its_routes_and_names_the_backend_pod() {
    let s = healthy().await;
    let url = s.kiada.url();

    let res = fetch(format!("{url}/proxy/quote"), "text/plain").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["x-pod-name"],
        "kiada-test",
        "kiada's own identity stays"
    );
    assert_eq!(res.headers()["x-backend-pod-name"], "quote-a");
    assert_eq!(res.headers()["x-backend-pod-ip"], "10.244.1.7");
    assert_eq!(res.text().await.unwrap(), "Services balance connections.\n");

    let res = fetch(
        format!("{url}/proxy/quiz/questions/random"),
        "application/json",
    )
    .await;
    assert_eq!(res.headers()["x-backend-pod-name"], "quiz-a");
    let q: Value = res.json().await.unwrap();
    assert_eq!(q["id"], 7);

    let res = post_json(
        format!("{url}/proxy/quiz/questions/7/answers"),
        r#"{"questionId":7,"answerIndex":1}"#,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-backend-pod-name"], "quiz-a");
    let verdict = res.json::<Value>().await.unwrap();
    assert_eq!(verdict["correct"], true);
    assert_eq!(
        verdict["explanation"], EXPLANATION,
        "relayed as JSON: {verdict}"
    );

    // A backend 4xx passes through unchanged.
    let res = post_json(
        format!("{url}/proxy/quiz/questions/7/answers"),
        r#"{"questionId":7,"answerIndex":5}"#,
    )
    .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["error"],
        "answerIndex 5 is out of range"
    );

    // Nothing else is forwarded: kiada is not an open proxy.
    for path in [
        "/proxy/quiz/stats",
        "/proxy/quiz/questions/7",
        "/proxy/quiz/",
        "/proxy/elsewhere/quote",
    ] {
        assert_eq!(
            fetch(format!("{url}{path}"), "*/*").await.status(),
            404,
            "{path}"
        );
    }
    let res = post_json(
        format!("{url}/proxy/quiz/questions/..%2Fstats/answers"),
        "{}",
    )
    .await;
    assert_eq!(res.status(), 400);
    let res = reqwest::Client::new()
        .delete(format!("{url}/proxy/quote"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn the_proxy_maps_backend_failures_to_502_and_504_with_json() {
    let sick = serve(failing(StatusCode::SERVICE_UNAVAILABLE)).await;
    let hang = hanging().await;
    let kiada = start(config(&format!("{}/quote", sick.url), &hang.url)).await;
    let url = kiada.url();

    let res = fetch(format!("{url}/proxy/quote"), "*/*").await;
    assert_eq!(res.status(), 502);
    assert_eq!(res.headers()["x-backend-pod-name"], "sick-pod");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["service"], "quote");
    assert!(body["error"].as_str().unwrap().contains("503"), "{body}");

    let started = Instant::now();
    let res = fetch(format!("{url}/proxy/quiz/questions/random"), "*/*").await;
    assert_eq!(res.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(1500));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["kind"], "timeout");
    assert!(body["hint"].as_str().unwrap().contains("No answer in time"));

    let down = start(config(
        &format!("http://127.0.0.1:{}/quote", closed_port()),
        "http://127.0.0.1:1",
    ))
    .await;
    let res = fetch(format!("{}/proxy/quote", down.url()), "*/*").await;
    assert_eq!(res.status(), 502);
    assert_eq!(res.json::<Value>().await.unwrap()["kind"], "refused");
}

#[tokio::test]
async fn a_backend_url_that_does_not_parse_stops_the_start() {
    let err = kiada::build(config("quote/quote", "http://127.0.0.1:1"))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("QUOTE_URL 'quote/quote' is not a valid URL"),
        "{err}"
    );
    let err = kiada::build(config("http://quote/quote", "ftp://quiz"))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("the scheme must be http"), "{err}");
}
