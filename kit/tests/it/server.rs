//! The shared server behaviour, through real HTTP against an app on port 0.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kit::{App, AppSpec, Identity, ServerConfig};
use reqwest::StatusCode;

use crate::common::*;

#[tokio::test]
async fn listens_on_ipv4_and_ipv6_and_reports_ipv4_clients_plainly() {
    let app = start();
    let port = app.addr.port();
    let v4 = client()
        .get(format!("http://127.0.0.1:{port}/client"))
        .send()
        .await
        .unwrap();
    assert_eq!(v4.text().await.unwrap(), "127.0.0.1");
    let v6 = client()
        .get(format!("http://[::1]:{port}/client"))
        .send()
        .await
        .unwrap();
    assert_eq!(v6.text().await.unwrap(), "::1");
    assert!(
        app.addr.is_ipv6() && app.addr.ip().is_unspecified(),
        "{}",
        app.addr
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn admin_listener_is_on_loopback_only() {
    let app = start();
    assert_eq!(app.admin_addr.ip().to_string(), "127.0.0.1");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn every_response_names_the_pod_even_errors() {
    let app = start();
    for (method, path) in [
        ("GET", "/healthz/ready"),
        ("GET", "/missing"),
        ("PUT", "/client"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = client()
            .request(method, format!("{}{path}", app.url()))
            .send()
            .await
            .unwrap();
        let h = res.headers();
        assert_eq!(h["x-pod-name"], "pod-a", "{path}");
        assert_eq!(h["x-pod-ip"], "10.0.0.7", "{path}");
        assert_eq!(h["x-node-name"], "node-1", "{path}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_paths_and_methods_get_clear_messages() {
    let app = start();
    let res = client()
        .get(format!("{}/missing", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.text().await.unwrap(), "Not found: /missing\n");
    let res = client()
        .delete(format!("{}/client", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "GET,HEAD");
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("DELETE is not allowed on /client")
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_get_413_and_oversized_headers_431() {
    let app = start();
    let ok = client()
        .post(format!("{}/echo", app.url()))
        .body("x".repeat(kit::BODY_LIMIT))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let big = client()
        .post(format!("{}/echo", app.url()))
        .body("x".repeat(kit::BODY_LIMIT + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let res = client()
        .get(format!("{}/client", app.url()))
        .header("x-filler", "y".repeat(kit::HEADER_LIMIT + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    app.stop().await.unwrap();
}

/// Slowloris: a client that never finishes its request head is disconnected once the
/// header-read timeout has passed, while a connection that keeps sending requests stays open.
#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = start_with(ServerConfig {
        header_read_timeout: Duration::from_millis(1500),
        ..ServerConfig::ephemeral()
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], app.addr.port()));

    let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /client HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let closed = tokio::spawn(async move {
        let mut rest = Vec::new();
        let _ = slow.read_to_end(&mut rest).await;
        started.elapsed()
    });
    // Requests every 400 ms: the busy connection is never idle for the whole timeout.
    for _ in 0..8 {
        busy.write_all(b"GET /client HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 1024];
        let n = busy.read(&mut answer).await.unwrap();
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 200"),
            "the busy connection still answers"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let after = tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .expect("the slow connection is closed")
        .unwrap();
    assert!(
        after >= Duration::from_millis(1500),
        "closed early: {after:?}"
    );
    assert!(
        after < Duration::from_millis(4000),
        "closed late: {after:?}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn slow_requests_time_out_with_503() {
    let app = start_with(ServerConfig {
        request_timeout: Duration::from_millis(200),
        ..ServerConfig::ephemeral()
    });
    let res = client()
        .get(format!("{}/slow", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Still a response of this pod, saying what happened.
    assert_eq!(res.headers()["x-pod-name"], "pod-a");
    assert!(res.headers().contains_key("x-request-id"));
    let body = res.text().await.unwrap();
    assert!(body.contains("request timeout (0.2 s)"), "{body}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn response_delay_slows_application_routes_but_not_probes() {
    let app = start_with(ServerConfig {
        response_delay_ms: 400,
        ..ServerConfig::ephemeral()
    });
    let started = Instant::now();
    let probe = client()
        .get(format!("{}/healthz/ready", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::OK);
    let probe_time = started.elapsed();
    let started = Instant::now();
    client()
        .get(format!("{}/client", app.url()))
        .send()
        .await
        .unwrap();
    let app_time = started.elapsed();
    assert!(app_time >= Duration::from_millis(400), "{app_time:?}");
    assert!(probe_time < Duration::from_millis(400), "{probe_time:?}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn readiness_toggles_live_on_the_admin_port_only() {
    let app = start();
    let ready = |url: String| async move { client().get(url).send().await.unwrap().status() };
    assert_eq!(
        ready(format!("{}/healthz/ready", app.url())).await,
        StatusCode::OK
    );

    // The main port does not serve the toggles.
    let res = client()
        .post(format!("{}/healthz/ready/disable", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        ready(format!("{}/healthz/ready", app.url())).await,
        StatusCode::OK
    );

    let res = client()
        .post(format!("{}/healthz/ready/disable", app.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = client()
        .get(format!("{}/healthz/ready", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("disabled on the admin port")
    );
    // Liveness is unaffected: a disabled pod must not be restarted.
    assert_eq!(
        ready(format!("{}/healthz/live", app.url())).await,
        StatusCode::OK
    );

    client()
        .post(format!("{}/healthz/ready/enable", app.admin_url()))
        .send()
        .await
        .unwrap();
    let res = client()
        .get(format!("{}/healthz/ready", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "Ready");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_taken_port_is_named_in_the_error() {
    let first = start();
    let config = ServerConfig {
        listen_port: first.addr.port(),
        ..ServerConfig::ephemeral()
    };
    let err = App::bind(
        &config,
        &Identity::named("b"),
        AppSpec::new("second", routes()),
    )
    .err()
    .expect("the port is taken");
    let message = err.to_string();
    assert!(
        message.contains(&first.addr.port().to_string()),
        "{message}"
    );
    assert!(message.contains("in use"), "{message}");
    first.stop().await.unwrap();
}

#[tokio::test]
async fn stopping_fails_readiness_first_then_finishes_in_flight_requests() {
    let app = start_with(ServerConfig {
        shutdown_delay: Duration::from_millis(400),
        ..ServerConfig::ephemeral()
    });
    let url = app.url();
    let health = app.health.clone();
    let in_flight = tokio::spawn(client().get(format!("{url}/slow")).send());
    // In flight: the slow request and the scrape asking.
    let in_flight_gauge = || async {
        let m = client()
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        m.lines()
            .find_map(|l| {
                l.strip_prefix("http_requests_in_flight ")?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            in_flight_gauge().await >= 2.0
        })
        .await,
        "the slow request never reached the server"
    );
    let stopping = tokio::spawn(app.stop());
    assert!(
        eventually(Duration::from_secs(5), || async { !health.is_ready() }).await,
        "readiness still holds after stop"
    );

    // During the shutdown delay the listener still answers, but readiness fails.
    assert!(!health.is_ready());
    let probe = client()
        .get(format!("{url}/healthz/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), StatusCode::SERVICE_UNAVAILABLE);

    let res = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(res.text().await.unwrap(), "done");
    stopping.await.unwrap().unwrap();
    let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn a_pod_with_a_release_names_it_on_every_response() {
    let identity = kit::Identity {
        release: Some("canary".into()),
        ..kit::Identity::named("pod-c")
    };
    let app = kit::App::bind(
        &kit::ServerConfig::ephemeral(),
        &identity,
        kit::AppSpec::new("test", crate::common::routes()),
    )
    .unwrap()
    .spawn();
    for path in ["/healthz/ready", "/missing"] {
        let res = client()
            .get(format!("{}{path}", app.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-release"], "canary", "{path}");
    }
    app.stop().await.unwrap();
    // None given, none sent.
    let plain = crate::common::start();
    let res = client()
        .get(format!("{}/missing", plain.url()))
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("x-release").is_none());
    plain.stop().await.unwrap();
}
