//! Metrics, request ids, the version header and the fault drills, through real HTTP.

use std::time::{Duration, Instant};

use crate::common::*;
use kit::ServerConfig;
use reqwest::StatusCode;

async fn metrics(app: &kit::Running) -> String {
    let res = client()
        .get(format!("{}/metrics", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    res.text().await.unwrap()
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn abandoned_requests_leave_the_in_flight_gauge() {
    let app = start();
    let gave_up = client()
        .get(format!("{}/slow", app.url()))
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(gave_up.unwrap_err().is_timeout());
    // The server notices the closed connection and drops the request.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics(&app).await;
        // The scrape itself is in flight.
        if value(&m, "http_requests_in_flight") == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        // The poll interval.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn requests_are_counted_by_route_template_per_app() {
    let a = start();
    let b = start();
    for _ in 0..3 {
        client()
            .get(format!("{}/client", a.url()))
            .send()
            .await
            .unwrap();
    }
    client()
        .get(format!("{}/no/such/path", a.url()))
        .send()
        .await
        .unwrap();
    client()
        .get(format!("{}/client", b.url()))
        .send()
        .await
        .unwrap();

    let m = metrics(&a).await;
    assert_eq!(
        value(
            &m,
            r#"http_requests_total{method="GET",route="/client",status="200"}"#
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        value(
            &m,
            r#"http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        !m.contains("/no/such/path"),
        "raw paths never become labels"
    );
    assert_eq!(
        value(
            &m,
            r#"http_request_duration_seconds_count{method="GET",route="/client",status="200"}"#
        ),
        Some(3.0),
        "{m}"
    );
    assert!(m.contains("# TYPE http_requests_in_flight gauge"), "{m}");
    assert_eq!(value(&m, "ready"), Some(1.0), "{m}");
    // The second app in the same process counted only its own request.
    let m = metrics(&b).await;
    assert_eq!(
        value(
            &m,
            r#"http_requests_total{method="GET",route="/client",status="200"}"#
        ),
        Some(1.0),
        "{m}"
    );

    client()
        .post(format!("{}/healthz/ready/disable", a.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(value(&metrics(&a).await, "ready"), Some(0.0));
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_returned() {
    let app = start();
    let res = client()
        .get(format!("{}/client", app.url()))
        .header("x-request-id", "lab-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "lab-42");
    let res = client()
        .get(format!("{}/client", app.url()))
        .send()
        .await
        .unwrap();
    let made = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 32, "{made}");
    assert!(made.chars().all(|c| c.is_ascii_hexdigit()), "{made}");
    let again = client()
        .get(format!("{}/client", app.url()))
        .send()
        .await
        .unwrap();
    assert_ne!(
        again.headers()["x-request-id"].to_str().unwrap(),
        made,
        "a new id per request"
    );
}

#[tokio::test]
async fn every_response_carries_the_version() {
    let app = start();
    for path in ["/client", "/healthz/ready", "/missing", "/metrics"] {
        let res = client()
            .get(format!("{}{path}", app.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-version"], kit::VERSION, "{path}");
    }
}

#[tokio::test]
async fn the_fault_drill_breaks_application_routes_only_and_only_on_the_admin_port() {
    let app = start();
    let get = |path: &'static str| {
        let url = format!("{}{path}", app.url());
        async move { client().get(url).send().await.unwrap().status() }
    };
    assert_eq!(
        client()
            .post(format!("{}/fault/enable", app.url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(get("/client").await, StatusCode::OK);

    let res = client()
        .post(format!("{}/fault/enable", app.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(get("/client").await, StatusCode::INTERNAL_SERVER_ERROR);
    let body = client()
        .get(format!("{}/client", app.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("fault drill"), "{body}");
    // A sick pod that stays in the Service: probes and metrics keep working.
    assert_eq!(get("/healthz/ready").await, StatusCode::OK);
    assert_eq!(get("/healthz/live").await, StatusCode::OK);
    assert_eq!(get("/metrics").await, StatusCode::OK);

    client()
        .post(format!("{}/fault/disable", app.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(get("/client").await, StatusCode::OK);
}

#[tokio::test]
async fn fail_after_fails_routes_and_readiness_but_not_liveness() {
    let app = start_with(ServerConfig {
        fail_after: Some(Duration::from_millis(300)),
        ..ServerConfig::ephemeral()
    });
    let get = |path: &'static str| {
        let url = format!("{}{path}", app.url());
        async move { client().get(url).send().await.unwrap().status() }
    };
    assert_eq!(get("/client").await, StatusCode::OK);
    assert_eq!(get("/healthz/ready").await, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(5), || async {
            get("/client").await == StatusCode::INTERNAL_SERVER_ERROR
        })
        .await,
        "application routes still answer after --fail-after expired"
    );
    let ready = client()
        .get(format!("{}/healthz/ready", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(ready.text().await.unwrap().contains("--fail-after"));
    assert_eq!(get("/healthz/live").await, StatusCode::OK);
}

#[tokio::test]
async fn jitter_adds_a_random_part_to_the_delay() {
    let app = start_with(ServerConfig {
        response_delay_ms: 50,
        response_delay_jitter_ms: 200,
        ..ServerConfig::ephemeral()
    });
    let mut took = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        client()
            .get(format!("{}/client", app.url()))
            .send()
            .await
            .unwrap();
        took.push(started.elapsed());
    }
    let (min, max) = (took.iter().min().unwrap(), took.iter().max().unwrap());
    assert!(*min >= Duration::from_millis(50), "{took:?}");
    // Ten draws from 0..=200 ms spread by more than 20 ms but for a 1-in-10^8 chance.
    assert!(*max - *min > Duration::from_millis(20), "{took:?}");
}

#[tokio::test]
async fn every_response_says_the_pods_state() {
    let app = start_with(ServerConfig {
        shutdown_delay: Duration::from_millis(600),
        ..ServerConfig::ephemeral()
    });
    let state = |base: String, path: &'static str| async move {
        let res = client().get(format!("{base}{path}")).send().await.unwrap();
        res.headers()["x-pod-state"].to_str().unwrap().to_owned()
    };
    let admin = |path: &'static str| client().post(format!("{}{path}", app.admin_url())).send();
    for path in ["/client", "/healthz/ready", "/metrics", "/no-such-path"] {
        assert_eq!(state(app.url(), path).await, "ready", "{path}");
    }
    admin("/fault/enable").await.unwrap();
    assert_eq!(state(app.url(), "/client").await, "fault");
    admin("/healthz/ready/disable").await.unwrap();
    // Taken out by hand says more than a drill does.
    assert_eq!(state(app.url(), "/client").await, "disabled");
    assert_eq!(state(app.admin_url(), "/healthz/ready").await, "disabled");
    admin("/fault/disable").await.unwrap();
    admin("/healthz/ready/enable").await.unwrap();
    assert_eq!(state(app.url(), "/client").await, "ready");

    // Between SIGTERM and the listener closing, answers still come, saying so.
    let url = app.url();
    let health = app.health.clone();
    let stopping = tokio::spawn(app.stop());
    assert!(
        eventually(Duration::from_secs(5), || async {
            health.is_shutting_down()
        })
        .await,
        "the app never began to shut down"
    );
    assert_eq!(state(url, "/client").await, "draining");
    stopping.await.unwrap().unwrap();
}
