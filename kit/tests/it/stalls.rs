//! Clients that stop taking what they asked for, and bodies that never come: each gets a bounded
//! time, while a response that keeps streaming, or a client that reads slowly but reads, is left
//! alone. The deadlines are shortened to 1 s here (the header-read timeout, which they share).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use kit::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

const LIMIT: Duration = Duration::from_millis(1000);

fn short_limit() -> ServerConfig {
    ServerConfig {
        header_read_timeout: LIMIT,
        ..ServerConfig::ephemeral()
    }
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

/// An HTTP/2 connection over h2c whose streams start with `window` bytes of flow-control window.
async fn h2(addr: SocketAddr, window: u32) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

fn get(addr: SocketAddr, path: &str) -> axum::http::Request<()> {
    axum::http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap()
}

/// A zero window: every response head arrives and no body can. Each stream is reset after the
/// limit; and the server allows 32 streams at a time, not hyper's 200.
#[tokio::test]
async fn http2_responses_a_client_makes_no_room_for_are_reset() {
    let app = start_with(short_limit());
    let addr = loopback(app.addr);
    let mut send = h2(addr, 0).await;
    // One exchange first, so that the server's SETTINGS have arrived.
    let (first, _) = send.send_request(get(addr, "/client"), true).unwrap();
    let first = first.await.unwrap();
    assert_eq!(send.current_max_send_streams(), 32);

    let started = Instant::now();
    let mut responses = vec![first];
    for _ in 1..32 {
        send = send.ready().await.unwrap();
        let (response, _) = send.send_request(get(addr, "/big"), true).unwrap();
        responses.push(response.await.unwrap());
    }
    for response in responses {
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let data = tokio::time::timeout(Duration::from_secs(5), body.data())
            .await
            .expect("the stream is reset, not left waiting");
        let err = data.expect("a reset, not an end").unwrap_err();
        assert_eq!(err.reason(), Some(h2::Reason::CANCEL), "{err}");
    }
    let after = started.elapsed();
    assert!(
        after >= LIMIT - Duration::from_millis(100) && after < 3 * LIMIT,
        "reset after {after:?}"
    );
    app.stop().await.unwrap();
}

/// An HTTP/1 client that pipelines requests and never reads: once the server's writes have
/// been blocked for the limit, the connection is closed.
#[tokio::test]
async fn an_http1_client_that_never_reads_is_disconnected() {
    let app = start_with(short_limit());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(loopback(app.addr)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // Asks for ever, so that the connection would never end on its own.
    let writer = tokio::spawn(async move {
        let request = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(16);
        while write.write_all(&request).await.is_ok() {}
    });
    // Not reading for a while: the server's writes block, and it gives up.
    tokio::time::sleep(4 * LIMIT).await;
    let mut sink = vec![0; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match read.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the connection is still open, still answering"
    );
    writer.abort();
    app.stop().await.unwrap();
}

/// A stream that takes longer than the limit but produces all along, to a client that reads,
/// is never cut: over HTTP/1 and over HTTP/2.
#[tokio::test]
async fn a_response_that_keeps_streaming_is_not_cut() {
    let app = start_with(short_limit());
    let expected: String = (1..=STREAM_CHUNKS).map(|i| format!("tick {i}\n")).collect();
    assert!(STREAM_EVERY * STREAM_CHUNKS as u32 > 2 * LIMIT);

    let res = client()
        .get(format!("{}/stream", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), expected, "HTTP/1");

    let addr = loopback(app.addr);
    let mut send = h2(addr, 65_535).await;
    let (response, _) = send.send_request(get(addr, "/stream"), true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the stream is not reset");
        body.flow_control().release_capacity(chunk.len()).unwrap();
        got.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8(got).unwrap(), expected, "HTTP/2");
    app.stop().await.unwrap();
}

/// A client with a small window that reads slowly, but reads: room comes for each chunk well
/// within the limit, so the response is never reset however long it takes in all.
#[tokio::test]
async fn an_http2_client_that_reads_slowly_gets_the_whole_response() {
    let app = start_with(short_limit());
    let addr = loopback(app.addr);
    let window = 128 * 1024;
    let mut send = h2(addr, window).await;
    let (response, _) = send.send_request(get(addr, "/big"), true).unwrap();
    let mut body = response.await.unwrap().into_body();
    let started = Instant::now();
    let (mut got, mut unreleased) = (0, 0);
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the stream is not reset");
        got += chunk.len();
        unreleased += chunk.len();
        // Room for 32 KiB every 80 ms, about 400 KiB/s: the whole body takes longer than the
        // limit.
        if unreleased >= 32 * 1024 {
            tokio::time::sleep(Duration::from_millis(80)).await;
            body.flow_control().release_capacity(unreleased).unwrap();
            unreleased = 0;
        }
    }
    assert_eq!(got, BIG);
    assert!(started.elapsed() > LIMIT, "{:?}", started.elapsed());
    app.stop().await.unwrap();
}

/// A request body that does not arrive within the body-read timeout (10 s by default) is
/// answered 408 saying so, and the connection, whose framing is lost, is closed.
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let app = start();
    let mut stream = tokio::net::TcpStream::connect(loopback(app.addr))
        .await
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let after = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("The request body did not arrive within the body-read timeout (10 s)"),
        "{answer}"
    );
    assert!(answer.contains("x-pod-name: pod-a"), "{answer}");
    assert!(
        after >= Duration::from_millis(9900) && after < Duration::from_secs(15),
        "answered after {after:?}"
    );
    app.stop().await.unwrap();
}
