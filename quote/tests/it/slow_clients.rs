//! The real `quote` binary against clients that ask and never take the answers: each is given
//! the stalled-response limit (10 s), and the memory they can hold meanwhile stays bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use testkit::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const QUOTE: &str = env!("CARGO_BIN_EXE_quote");
/// The stalled-response limit, the header-read timeout.
const LIMIT: Duration = Duration::from_secs(10);

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

/// An h2c connection whose streams get no flow-control window: response heads arrive, bodies
/// cannot. Returns it once the server's SETTINGS are in, with the first response.
async fn zero_window(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    axum::http::Response<h2::RecvStream>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let (first, _) = send.send_request(quote_request(addr), true).unwrap();
    let first = first.await.unwrap();
    (send, first, conn)
}

fn quote_request(addr: SocketAddr) -> axum::http::Request<()> {
    axum::http::Request::get(format!("http://{addr}/quote"))
        .body(())
        .unwrap()
}

/// `h2load -c 40 -m 200 -w 0` in small: 20 connections, each with as many streams as the server
/// allows, each answered with a head and never a body. Every stream is reset within the limit,
/// the idle connections are then closed, and what they held meanwhile stays small.
#[tokio::test]
async fn http2_responses_nobody_takes_are_reset_and_their_connections_closed() {
    let quote = Process::start(QUOTE, &["--shutdown-delay", "0"]);
    let addr = loopback(quote.addr);
    let idle_kb = quote.rss_kb();
    let started = Instant::now();

    let mut held = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..20 {
        let (mut send, first, conn) = zero_window(addr).await;
        assert_eq!(
            send.current_max_send_streams(),
            32,
            "the streams a client may open at once"
        );
        held.push(first);
        for _ in 1..32 {
            send = send.ready().await.unwrap();
            let (response, _) = send.send_request(quote_request(addr), true).unwrap();
            held.push(response.await.unwrap());
        }
        connections.push((send, conn));
    }
    assert_eq!(held.len(), 20 * 32);
    let holding_kb = quote.rss_kb();
    eprintln!("quote RSS: {idle_kb} kB idle, {holding_kb} kB holding 640 unsent responses");
    assert!(
        holding_kb < idle_kb + 8 * 1024,
        "{idle_kb} kB idle, {holding_kb} kB holding the responses"
    );

    for response in held {
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let data = tokio::time::timeout(LIMIT + Duration::from_secs(10), body.data())
            .await
            .expect("the stream is reset, not left waiting");
        let err = data.expect("a reset, not an end").unwrap_err();
        assert_eq!(err.reason(), Some(h2::Reason::CANCEL), "{err}");
    }
    let reset_after = started.elapsed();
    assert!(reset_after >= LIMIT, "reset after {reset_after:?}");

    // Nothing in flight any more: each connection is idle, and goes (GOAWAY) within the limit.
    for (send, conn) in connections {
        tokio::time::timeout(LIMIT + Duration::from_secs(10), conn)
            .await
            .expect("the idle connection is closed")
            .unwrap();
        drop(send);
    }
    eprintln!(
        "quote: streams reset after {reset_after:?}, connections closed after {:?}; RSS {} kB",
        started.elapsed(),
        quote.rss_kb()
    );
}

/// HTTP/1 clients with a small receive buffer that pipeline requests and never read: once
/// quote's writes to one have been blocked for the limit, it is closed.
#[tokio::test]
async fn http1_clients_that_never_read_are_disconnected() {
    let quote = Process::start(QUOTE, &["--shutdown-delay", "0"]);
    let addr = loopback(quote.addr);
    let idle_fds = quote.open_fds();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..10 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let (read, mut write) = socket.connect(addr).await.unwrap().into_split();
        readers.push(read);
        // Asks for ever: left alone, the connection would never end.
        writers.push(tokio::spawn(async move {
            let requests = b"GET /quote HTTP/1.1\r\nHost: x\r\n\r\n".repeat(64);
            while write.write_all(&requests).await.is_ok() {}
        }));
    }
    let started = Instant::now();
    assert!(
        testkit::eventually(Duration::from_secs(5), || async {
            quote.open_fds() >= idle_fds + 10
        })
        .await,
        "the connections never reached quote"
    );
    // Not reading: quote's writes block, and after the limit it lets go.
    let closed = testkit::eventually(LIMIT + Duration::from_secs(10), || async {
        quote.open_fds() <= idle_fds
    })
    .await;
    let after = started.elapsed();
    assert!(
        closed,
        "quote still holds {} descriptors, {idle_fds} when idle, after {after:?}",
        quote.open_fds()
    );
    assert!(
        after >= LIMIT - Duration::from_secs(1),
        "closed after {after:?}"
    );
    // And the clients see the end: what was sent, then the close.
    for mut read in readers {
        let mut sink = vec![0; 1 << 16];
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match read.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(end.is_ok(), "a client's connection is still open");
    }
    for writer in writers {
        writer.abort();
    }
    eprintln!("quote: the never-reading HTTP/1 clients were closed after {after:?}");
}
