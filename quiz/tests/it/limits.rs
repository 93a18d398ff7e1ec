//! The real `quiz` binary against clients that hold what they can: half-sent bodies, HTTP/2
//! streams that never send theirs, more connections than it takes. Each is bounded in time or
//! number, the memory they hold stays small, and readiness says when quiz is full.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testkit::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const QUIZ: &str = env!("CARGO_BIN_EXE_quiz");
/// The defaults of `--body-read-timeout` and `--max-connections`.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 512;
/// Connections taken past the cap, for the probes only.
const PROBE_RESERVE: usize = 16;

const TIMED_OUT: &str = "The request body did not arrive within the body-read timeout (10 s)";

fn start() -> (Process, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quiz.db");
    let quiz = Process::start(
        QUIZ,
        &["--db", db.to_str().unwrap(), "--shutdown-delay", "0"],
    );
    (quiz, dir)
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

/// Half of a 10 000-byte answer, then nothing: each gets 408 once the body-read timeout has
/// passed, in quiz's JSON, and the connection is closed.
#[tokio::test]
async fn half_sent_bodies_are_answered_408_at_the_body_read_timeout() {
    let (quiz, _dir) = start();
    let addr = loopback(quiz.addr);
    let idle_kb = quiz.rss_kb();
    let head = "POST /questions/1/answers HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n";
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b' '; 5000]).await.unwrap();
        clients.push(stream);
    }
    assert!(testkit::eventually(Duration::from_secs(5), || async { quiz.open_fds() >= 300 }).await);
    let holding_kb = quiz.rss_kb();
    let answers = clients.into_iter().map(|mut stream| {
        tokio::spawn(async move {
            let mut answer = Vec::new();
            let read = tokio::time::timeout(
                BODY_READ_TIMEOUT + Duration::from_secs(10),
                stream.read_to_end(&mut answer),
            )
            .await;
            (read.is_ok(), String::from_utf8_lossy(&answer).into_owned())
        })
    });
    let answers: Vec<_> = answers.collect();
    for answer in answers {
        let (closed, answer) = answer.await.unwrap();
        assert!(closed, "answered and closed: {answer}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(body).expect(&answer);
        assert_eq!(body["error"], TIMED_OUT);
    }
    let after = started.elapsed();
    eprintln!(
        "quiz RSS: {idle_kb} kB idle, {holding_kb} kB holding 300 half-sent bodies; \
         all answered 408 after {after:?}"
    );
    assert!(after >= BODY_READ_TIMEOUT, "answered after {after:?}");
}

/// 30 h2c connections, each with as many POST streams as quiz allows, each sending its head
/// and no body: 32 streams per connection, each answered 408 at the body-read timeout.
#[tokio::test]
async fn http2_streams_that_send_no_body_are_few_and_answered_408() {
    let (quiz, _dir) = start();
    let addr = loopback(quiz.addr);
    let idle_kb = quiz.rss_kb();
    let started = Instant::now();
    let mut pending = Vec::new();
    let mut held = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..30 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        // An answer to read first, so that quiz's SETTINGS are in.
        let (stats, _) = send.send_request(get(addr, "/stats"), true).unwrap();
        assert_eq!(stats.await.unwrap().status(), 200);
        assert_eq!(send.current_max_send_streams(), 32);
        for _ in 0..32 {
            send = send.ready().await.unwrap();
            let request = axum::http::Request::post(format!("http://{addr}/questions/1/answers"))
                .header("content-type", "application/json")
                .body(())
                .unwrap();
            let (response, body) = send.send_request(request, false).unwrap();
            pending.push(response);
            // Kept open: the body never comes.
            held.push(body);
        }
        connections.push(send);
    }
    assert!(
        testkit::eventually(Duration::from_secs(5), || async { quiz.rss_kb() > idle_kb }).await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let holding_kb = quiz.rss_kb();
    for response in pending {
        let response = tokio::time::timeout(BODY_READ_TIMEOUT + Duration::from_secs(10), response)
            .await
            .expect("answered")
            .unwrap();
        assert_eq!(response.status(), 408);
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        let body: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(body["error"], TIMED_OUT);
    }
    let after = started.elapsed();
    eprintln!(
        "quiz RSS: {idle_kb} kB idle, {holding_kb} kB holding 30 x 32 streams without bodies; \
         all answered 408 after {after:?}"
    );
    assert!(after >= BODY_READ_TIMEOUT, "answered after {after:?}");
    assert!(
        holding_kb < idle_kb + 16 * 1024,
        "{idle_kb} kB idle, {holding_kb} kB holding the streams"
    );
    drop((held, connections));
}

fn get(addr: SocketAddr, path: &str) -> axum::http::Request<()> {
    axum::http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap()
}

/// What a new connection gets, asked once (or `None` when it is closed at once
/// without an answer).
async fn ask(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    // A write to a connection closed at once may already fail.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await {
        Ok(_) if !answer.is_empty() => Some(String::from_utf8_lossy(&answer).into_owned()),
        Ok(_) => None,
        Err(_) => panic!("{path}: neither answered nor closed within 5 s"),
    }
}

/// More connections than quiz takes, each holding half a request head. Past the cap, readiness
/// fails saying why while liveness holds, other requests get 503, and past the probes' reserve
/// a connection is closed at once; a place in the reserve held without a request is soon
/// freed; the memory held stays bounded; once they go, quiz is ready again.
#[tokio::test]
async fn connections_past_the_cap_are_refused_and_readiness_says_why() {
    let (quiz, _dir) = start();
    let addr = loopback(quiz.addr);
    let idle_kb = quiz.rss_kb();
    let idle_fds = quiz.open_fds();
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!(
                    "GET /stats HTTP/1.1\r\nHost: x\r\nX-Pad: {}",
                    "a".repeat(8000)
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        held.push(stream);
    }
    assert!(
        testkit::eventually(Duration::from_secs(5), || async {
            quiz.open_fds() >= idle_fds + MAX_CONNECTIONS
        })
        .await,
        "quiz took the connections"
    );

    let ready = ask(addr, "/healthz/ready")
        .await
        .expect("the probe is answered");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.contains(
            "Not ready: connections: the main listener holds 512 connections, its cap \
             (--max-connections)"
        ),
        "{ready}"
    );
    let live = ask(addr, "/healthz/live")
        .await
        .expect("the probe is answered");
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let other = ask(addr, "/stats").await.expect("answered");
    assert!(other.starts_with("HTTP/1.1 503"), "{other}");
    assert!(other.contains("as many connections as it takes"), "{other}");

    // The reserve, filled by connections that send nothing; the next is closed at once.
    let mut reserve = Vec::new();
    for _ in 0..PROBE_RESERVE {
        reserve.push(TcpStream::connect(addr).await.unwrap());
    }
    assert!(
        testkit::eventually(Duration::from_secs(5), || async {
            quiz.open_fds() >= idle_fds + MAX_CONNECTIONS + PROBE_RESERVE
        })
        .await
    );
    let mut refused = 0;
    for _ in 0..500 {
        if ask(addr, "/healthz/live").await.is_none() {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 500,
        "past the reserve, every connection is closed at once"
    );
    let full_kb = quiz.rss_kb();
    let full_fds = quiz.open_fds();
    eprintln!(
        "quiz RSS: {idle_kb} kB idle, {full_kb} kB with {} connections open ({} attempted)",
        MAX_CONNECTIONS + PROBE_RESERVE,
        MAX_CONNECTIONS + PROBE_RESERVE + 500
    );
    assert!(
        full_fds <= idle_fds + MAX_CONNECTIONS + PROBE_RESERVE,
        "{full_fds} descriptors"
    );
    assert!(
        full_kb < idle_kb + 24 * 1024,
        "{idle_kb} kB idle, {full_kb} kB full"
    );
    // The reserve's places are for clients that ask at once: one that holds a place without
    // asking loses it after 2 s, and the probes get in again while the cap still holds.
    let probes_back = testkit::eventually(Duration::from_secs(5), || async {
        ask(addr, "/healthz/ready")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 503"))
    })
    .await;
    assert!(probes_back, "the reserve is still held by idle connections");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the held heads would soon be timed out; the checks took {:?}",
        started.elapsed()
    );

    drop(held);
    drop(reserve);
    let recovered = testkit::eventually(Duration::from_secs(5), || async {
        ask(addr, "/healthz/ready")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    })
    .await;
    assert!(recovered, "ready again once below the cap");
}
