//! The real `quote` binary as a process: shutdown on SIGTERM and start-up failures.

use std::time::Duration;

use testkit::Process;

use crate::eventually;

const QUOTE: &str = env!("CARGO_BIN_EXE_quote");

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut quote = Process::start(
        QUOTE,
        &["--shutdown-delay", "1", "--response-delay-ms", "1500"],
    );
    let url = quote.url();
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("{url}/healthz/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // Delayed 1.5 s: still running when the listener closes, 1 s after SIGTERM.
    let in_flight = tokio::spawn(client.get(format!("{url}/quote")).send());
    // In flight: the delayed request and the scrape asking (/metrics is not delayed).
    let in_flight_gauge = || async {
        let m = client
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
        eventually(Duration::from_secs(10), || async {
            in_flight_gauge().await >= 2.0
        })
        .await,
        "the delayed request never reached quote"
    );
    quote.signal("TERM");
    assert!(
        eventually(Duration::from_secs(10), || async {
            quote.logs().iter().any(|l| l.contains("shutting down"))
        })
        .await,
        "quote never began to shut down: {:?}",
        quote.logs()
    );

    let probe = client
        .get(format!("{url}/healthz/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 503, "readiness fails during the drain");
    assert_eq!(probe.text().await.unwrap(), "Not ready: shutting down\n");
    let live = client
        .get(format!("{url}/healthz/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200, "liveness holds during the drain");

    let res = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(res.status(), 200);
    assert!(!res.text().await.unwrap().trim().is_empty());

    let status = quote.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{:?}", quote.logs());
    let logs = quote.logs().join("\n");
    for phase in [
        "signal received",
        "shutting down",
        "closing listeners",
        "stopped",
    ] {
        assert!(logs.contains(phase), "no '{phase}' in the logs:\n{logs}");
    }
}

/// Request lines are batched on their way to stdout: under concurrent load none may be lost,
/// each must be a whole JSON object, and whatever is buffered must be out before the exit.
#[tokio::test]
async fn every_request_is_logged_as_one_json_line_before_exit() {
    let mut quote = Process::start(QUOTE, &["--shutdown-delay", "0"]);
    let url = quote.url();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for task in 0..16 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let res = client
                    .get(format!("{url}/quote"))
                    .header("x-request-id", format!("t{task}-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    quote.signal("TERM");
    assert_eq!(quote.wait(Duration::from_secs(10)).code(), Some(0));

    let logs = quote.logs();
    let events: Vec<serde_json::Value> = logs
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let mut ids: Vec<&str> = events
        .iter()
        .filter(|e| e["message"] == "request" && e["path"] == "/quote")
        .inspect(|e| {
            assert_eq!(e["method"], "GET");
            assert_eq!(e["status"], 200);
            assert_eq!(e["level"], "INFO");
            assert!(e["latency_ms"].as_f64().is_some(), "{e}");
            assert!(e["timestamp"].as_str().unwrap().ends_with('Z'), "{e}");
        })
        .map(|e| e["request_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 16 * 50, "one line per request");
    assert_eq!(events.last().unwrap()["message"], "stopped", "{logs:?}");
}

#[test]
fn a_missing_tips_file_stops_the_start_with_a_message() {
    let err = Process::try_start(QUOTE, &["--quotes-file", "/nonexistent/tips.txt"])
        .err()
        .expect("quote refuses to start");
    let (status, logs) = err;
    assert_eq!(status.and_then(|s| s.code()), Some(1));
    let logs = logs.join("\n");
    assert!(logs.contains("/nonexistent/tips.txt"), "{logs}");
}

#[tokio::test]
async fn environment_variables_configure_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tips");
    std::fs::write(&file, "From the environment\n").unwrap();
    let mut command = std::process::Command::new(QUOTE);
    command
        .env("QUOTES_FILE", &file)
        .env("POD_NAME", "quote-env")
        .env("NODE_NAME", "node-env")
        // What Kubernetes injects for a Service named quote must not disturb anything.
        .env("QUOTE_PORT", "tcp://10.96.0.1:80")
        .env("QUOTE_SERVICE_PORT", "80");
    let quote = Process::spawn(command).expect("quote starts");
    let res = reqwest::get(format!("{}/quote", quote.url()))
        .await
        .unwrap();
    assert_eq!(res.headers()["x-pod-name"], "quote-env");
    assert_eq!(res.headers()["x-node-name"], "node-env");
    assert_eq!(res.text().await.unwrap(), "From the environment\n");
}

#[test]
fn a_bad_flag_value_is_a_usage_error() {
    let out = std::process::Command::new(QUOTE)
        .env("LISTEN_PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--listen-port") && stderr.contains("not-a-port"),
        "{stderr}"
    );
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

/// A FIFO, a device, a directory or a file over 1 MiB is refused at once with a message, not
/// waited on or read until memory runs out.
#[test]
fn tips_files_that_are_not_small_regular_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let huge = dir.path().join("huge.txt");
    std::fs::write(&huge, "A tip.\n%\n".repeat(200_000)).unwrap();
    for (path, says) in [
        (fifo.as_path(), "a FIFO"),
        (std::path::Path::new("/dev/zero"), "a device"),
        (dir.path(), "a directory"),
        (huge.as_path(), "larger than 1048576 bytes"),
    ] {
        let started = std::time::Instant::now();
        let (status, logs) = Process::try_start(QUOTE, &["--quotes-file", path.to_str().unwrap()])
            .err()
            .expect("quote refuses to start");
        assert!(started.elapsed() < Duration::from_secs(5), "{path:?}");
        assert_eq!(status.and_then(|s| s.code()), Some(1));
        let logs = logs.join("\n");
        assert!(logs.contains(says), "{path:?}: {logs}");
    }
}

/// A tips file swapped for a FIFO while quote runs: the reload refuses it, the old tips stay,
/// readiness holds, and SIGTERM still ends the process.
#[tokio::test]
async fn a_tips_file_swapped_for_a_fifo_neither_stalls_nor_holds_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tips.txt");
    std::fs::write(&file, "The first tip\n").unwrap();
    let mut quote = Process::start(
        QUOTE,
        &[
            "--quotes-file",
            file.to_str().unwrap(),
            "--shutdown-delay",
            "0",
        ],
    );
    std::fs::remove_file(&file).unwrap();
    mkfifo(&file);
    // The file is checked every 2 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while !quote.logs().join("\n").contains("a FIFO") {
        assert!(std::time::Instant::now() < deadline, "{:?}", quote.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tip = reqwest::get(format!("{}/quote", quote.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(tip, "The first tip\n");
    let ready = reqwest::get(format!("{}/healthz/ready", quote.url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    quote.signal("TERM");
    assert_eq!(quote.wait(Duration::from_secs(10)).code(), Some(0));
}

/// Thousands of made-up methods: one `other` series, a small /metrics, bounded memory.
#[tokio::test]
async fn a_flood_of_made_up_methods_leaves_metrics_small() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let quote = Process::start(QUOTE, &[]);
    let mut stream = tokio::net::TcpStream::connect(quote.addr).await.unwrap();
    let (mut read, mut write) = stream.split();
    let sender = async {
        for i in 0..2000 {
            let method = format!("M{i:05}X{}", "Y".repeat(200));
            let request = format!("{method} /quote HTTP/1.1\r\nHost: x\r\n\r\n");
            write.write_all(request.as_bytes()).await.unwrap();
        }
        write
            .write_all(b"GET /quote HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
    };
    let mut answers = Vec::new();
    let (_, read_result) = tokio::join!(sender, read.read_to_end(&mut answers));
    read_result.unwrap();
    let answers = String::from_utf8_lossy(&answers);
    assert_eq!(answers.matches("HTTP/1.1 405").count(), 2000);

    let metrics = reqwest::get(format!("{}/metrics", quote.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"method="other""#), "{metrics}");
    assert!(
        metrics.len() < 16 * 1024,
        "/metrics is {} bytes",
        metrics.len()
    );
    let peak = quote.peak_rss_kb();
    assert!(peak < 40 * 1024, "peak RSS {peak} kB");
    // Nor does the log carry them: each line says `other`.
    let others = || {
        let logs = quote.logs();
        logs.iter()
            .filter(|l| l.contains(r#""method":"other""#))
            .count()
    };
    let all_logged = eventually(Duration::from_secs(5), || async { others() == 2000 }).await;
    assert!(all_logged, "{} lines say method other", others());
    assert!(
        quote.logs().iter().all(|l| !l.contains("YYYY")),
        "a made-up method in the log"
    );
}

#[tokio::test]
async fn connections_past_their_maximum_age_are_closed_gracefully() {
    use std::io::{Read, Write};
    let quote = Process::start(QUOTE, &["--max-connection-age", "1"]);
    let addr = quote.addr;
    // HTTP/1 kept alive: answered, then closed once a second old, long before the 10 s idle
    // limit would.
    let http1 = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(b"GET /quote HTTP/1.1\r\nHost: q\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 4096];
        let n = tcp.read(&mut first).unwrap();
        assert!(
            first[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&first[..n])
        );
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).expect("closed, not timed out");
        started.elapsed()
    });
    // HTTP/2: a request answered, then GOAWAY, and the connection ends.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let ended = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let _ = connection.await;
        started.elapsed()
    });
    let mut client = client.ready().await.unwrap();
    let request = axum::http::Request::get(format!("http://{addr}/quote"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    let h2_ended = tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .expect("the HTTP/2 connection ends after GOAWAY")
        .unwrap();
    assert!(h2_ended < Duration::from_secs(3), "{h2_ended:?}");
    let h1_closed = http1.await.unwrap();
    assert!(h1_closed < Duration::from_secs(3), "{h1_closed:?}");
    // Without the flag, a kept-alive connection stays until the idle limit.
    let plain = Process::start(QUOTE, &[]);
    let addr = plain.addr;
    let stays = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        tcp.write_all(b"GET /quote HTTP/1.1\r\nHost: q\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 4096];
        let _ = tcp.read(&mut first).unwrap();
        let mut more = [0u8; 16];
        // Still open after 3 s: the read times out instead of seeing the end.
        matches!(tcp.read(&mut more), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
    });
    assert!(
        stays.await.unwrap(),
        "a connection without a maximum age stays open"
    );
}
