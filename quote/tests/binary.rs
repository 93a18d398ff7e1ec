//! The real `quote` binary as a process: shutdown on SIGTERM and start-up failures.

use std::time::Duration;

use kit::testing::Process;

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
    tokio::time::sleep(Duration::from_millis(200)).await;
    quote.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;

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
