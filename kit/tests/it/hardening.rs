//! What a hostile client can try against any service: connections that never send a request,
//! made-up methods, odd request ids, bodies on any route, the admin port from a web page.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kit::ServerConfig;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty HTTP/2 SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn short_deadline() -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_millis(1000),
        ..ServerConfig::ephemeral()
    }
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

/// Connects, sends `first`, then stays silent; returns how long until the server closed.
async fn closed_after(addr: SocketAddr, first: &'static [u8]) -> Duration {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    stream.write_all(first).await.unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink)).await;
    assert!(
        read.is_ok(),
        "{addr}: still open after 10 s having sent {first:?}"
    );
    started.elapsed()
}

#[tokio::test]
async fn connections_that_send_no_request_are_closed_on_every_port() {
    let app = start_with(short_deadline());
    let mut checks = Vec::new();
    for addr in [loopback(app.addr), app.admin_addr] {
        for first in [
            &b""[..],
            b"G",
            b"PRI * HTTP/2.0\r\n",
            PREFACE,
            &[PREFACE, SETTINGS].concat().leak()[..],
        ] {
            checks.push(tokio::spawn(async move {
                (addr, first, closed_after(addr, first).await)
            }));
        }
    }
    for check in checks {
        let (addr, first, after) = check.await.unwrap();
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_millis(3000),
            "{addr} having sent {first:?}: closed after {after:?}"
        );
    }
    // The service still answers afterwards.
    let res = client()
        .get(format!("{}/client", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await.unwrap();
}

/// An HTTP/2 connection over h2c that has made one request.
async fn h2_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<axum::body::Bytes>>,
    tokio::task::JoinHandle<Instant>,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let ended = tokio::spawn(async move {
        let _ = conn.await;
        Instant::now()
    });
    let request = hyper::Request::get(format!("http://{addr}/client"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    (send, ended)
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let app = start_with(short_deadline());
    let started = Instant::now();
    let (_send, ended) = h2_connection(loopback(app.addr)).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .unwrap();
    let after = ended - started;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(3000),
        "closed after {after:?}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_http2_connection_does_not_hold_shutdown() {
    let app = start_with(ServerConfig {
        shutdown_delay: Duration::from_millis(100),
        drain_timeout: Duration::from_secs(8),
        ..ServerConfig::ephemeral()
    });
    let (_send, ended) = h2_connection(loopback(app.addr)).await;
    let started = Instant::now();
    app.stop().await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    tokio::time::timeout(Duration::from_secs(2), ended)
        .await
        .expect("the connection is closed by the shutdown")
        .unwrap();
}

#[tokio::test]
async fn made_up_methods_share_one_metric_series() {
    let app = start();
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("M{i:05}X").as_bytes()).unwrap();
        let res = client()
            .request(method, format!("{}/client", app.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let metrics = client()
        .get(format!("{}/metrics", app.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("M00001X"), "a made-up method is a label");
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
    assert!(
        metrics.len() < 16 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn request_ids_are_kept_only_when_short_and_plain() {
    let app = start();
    let id_for = |sent: String| {
        let url = format!("{}/client", app.url());
        async move {
            let res = client()
                .get(url)
                .header("x-request-id", sent)
                .send()
                .await
                .unwrap();
            res.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    assert_eq!(id_for("trace-42.a_b".into()).await, "trace-42.a_b");
    for bad in ["x".repeat(129), "a b".into(), "<script>".into()] {
        let got = id_for(bad.clone()).await;
        assert_ne!(got, bad);
        assert_eq!(got.len(), 32, "a new id replaces {bad:?}: {got}");
        assert!(got.bytes().all(|b| b.is_ascii_hexdigit()), "{got}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_on_every_route() {
    let app = start();
    for (method, path) in [
        (reqwest::Method::GET, "/client"),
        (reqwest::Method::POST, "/echo"),
        (reqwest::Method::GET, "/healthz/ready"),
        (reqwest::Method::GET, "/missing"),
    ] {
        let res = client()
            .request(method.clone(), format!("{}{path}", app.url()))
            .body(vec![b'x'; 1024 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}"
        );
        assert_eq!(res.headers()["x-pod-name"], "pod-a");
        let body = res.text().await.unwrap();
        assert!(body.contains("larger than 16384 bytes"), "{body}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn every_response_says_nosniff() {
    let app = start();
    for path in ["/client", "/missing/%3Cb%3E", "/healthz/ready"] {
        let res = client()
            .get(format!("{}{path}", app.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_admin_port_refuses_other_hosts_and_pages_but_its_own() {
    let app = start();
    let admin = app.admin_url();
    let post = |path: &str, headers: &[(&'static str, &'static str)]| {
        let mut request = client().post(format!("{admin}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { request.send().await.unwrap() }
    };
    // DNS rebinding: a name of the attacker's pointing at 127.0.0.1.
    let res = post("/healthz/ready/disable", &[("host", "evil.example:9901")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("evil.example"));
    // A cross-site form post.
    let res = post(
        "/healthz/ready/disable",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post(
        "/healthz/ready/disable",
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A page on another local port: the main port's own, or another local server's.
    let main_origin = format!("http://127.0.0.1:{}", app.addr.port());
    for headers in [
        vec![("origin", main_origin.as_str())],
        vec![("origin", "http://localhost:3000")],
        vec![("sec-fetch-site", "same-site")],
    ] {
        let mut request = client().post(format!("{admin}/healthz/ready/disable"));
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let res = request.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{headers:?}");
    }
    assert!(app.health.is_ready(), "nothing refused took effect");
    // curl on the pod, and the admin port's own page (its origin as the request addressed it),
    // are fine.
    let own_origin = admin.clone();
    let res = client()
        .post(format!("{admin}/healthz/ready/disable"))
        .header("origin", &own_origin)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!app.health.is_ready());
    let res = post("/healthz/ready/enable", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    // An unknown admin path says so.
    let res = client()
        .get(format!("{admin}/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.text().await.unwrap(), "Not found: /nothing\n");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_http1_keep_alive_connection_is_closed() {
    let app = start_with(short_deadline());
    let mut stream = tokio::net::TcpStream::connect(loopback(app.addr))
        .await
        .unwrap();
    stream
        .write_all(b"GET /client HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = [0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    assert!(
        String::from_utf8_lossy(&answer[..n]).contains("x-connection-requests: 1"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the idle keep-alive connection is closed")
        .unwrap();
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(3000),
        "closed after {after:?}"
    );
    app.stop().await.unwrap();
}
