//! SIGTERM to each service under light load: every request sent during the drain succeeds, and
//! the process exits 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use e2e::{Process, start};

use crate::eventually;

/// Sends a request every 10 ms to `url` until told to stop; counts successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

fn load(url: String) -> Load {
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
    let task = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut errors = Vec::new();
        while !s.load(Ordering::Relaxed) {
            match client.get(&url).send().await {
                Ok(res) if res.status().is_success() => {
                    o.fetch_add(1, Ordering::Relaxed);
                }
                Ok(res) => {
                    f.fetch_add(1, Ordering::Relaxed);
                    errors.push(res.status().to_string());
                }
                Err(e) => {
                    f.fetch_add(1, Ordering::Relaxed);
                    errors.push(e.to_string());
                }
            }
            // Pacing: light load, not a flood.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        errors
    });
    Load {
        stop,
        ok,
        failed,
        task,
    }
}

/// Load before and during the shutdown delay (1 s); the load stops before the listener closes,
/// as a Service stops sending once the endpoint is gone.
async fn drain_under_load(mut process: Process, path: &str) {
    let load = load(format!("{}{path}", process.url()));
    assert!(
        eventually(Duration::from_secs(10), || async {
            load.ok.load(Ordering::Relaxed) >= 10
        })
        .await,
        "no load before SIGTERM: {} failed",
        load.failed.load(Ordering::Relaxed)
    );
    process.signal("TERM");
    // A fixed wait on purpose: load through most of the 1 s shutdown delay, stopping before the
    // listener closes.
    tokio::time::sleep(Duration::from_millis(700)).await;
    load.stop.store(true, Ordering::Relaxed);
    let errors = load.task.await.unwrap();
    let status = process.wait(Duration::from_secs(10));
    assert_eq!(
        load.failed.load(Ordering::Relaxed),
        0,
        "failed during the drain: {errors:?}"
    );
    assert!(
        load.ok.load(Ordering::Relaxed) > 20,
        "too little load to mean anything"
    );
    assert_eq!(status.code(), Some(0), "{:?}", process.logs());
}

#[tokio::test]
async fn quote_drains_cleanly() {
    drain_under_load(start("quote", &["--shutdown-delay", "1"]), "/quote").await;
}

#[tokio::test]
async fn quiz_drains_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("quiz.db");
    drain_under_load(
        start(
            "quiz",
            &["--shutdown-delay", "1", "--db", db.to_str().unwrap()],
        ),
        "/questions/random",
    )
    .await;
}

#[tokio::test]
async fn kiada_drains_cleanly() {
    let quote = start("quote", &[]);
    let data = tempfile::tempdir().unwrap();
    let quiz = start(
        "quiz",
        &["--db", data.path().join("quiz.db").to_str().unwrap()],
    );
    let kiada = start(
        "kiada",
        &[
            "--shutdown-delay",
            "1",
            "--quote-url",
            &format!("{}/quote", quote.url()),
            "--quiz-url",
            &quiz.url(),
            "--tls-port",
            "0",
        ],
    );
    drain_under_load(kiada, "/text").await;
}

#[tokio::test]
async fn the_suite_serves_until_ctrl_c_then_stops_every_part() {
    use std::io::{BufRead, BufReader};
    let data = tempfile::tempdir().unwrap();
    let mut suite = std::process::Command::new(e2e::binary("suite"))
        .args([
            "--kiada-port",
            "0",
            "--quote-port",
            "0",
            "--quiz-port",
            "0",
            "--kiada-tls-port",
            "0",
        ])
        .args(["--quote-replicas", "2", "--shutdown-delay", "0.2"])
        .args(["--admin-ports-from", "0"])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(suite.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let kiada_port = loop {
        let line = lines.next().expect("the suite printed its banner").unwrap();
        banner.push(line.clone());
        if let Some(rest) = line.trim_start().strip_prefix("kiada  http://localhost:") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let page = e2e::text(format!("http://127.0.0.1:{kiada_port}/text")).await;
    assert!(page.contains("(quote served by quote-"), "{page}");
    assert!(page.contains("(quiz served by quiz-1"), "{page}");
    assert!(data.path().join("quiz.db").exists());

    let pid = suite.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || suite.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let stopped = rest.iter().filter(|l| l.contains("stopped")).count();
    assert_eq!(
        stopped,
        4,
        "kiada, quiz and two quotes:\n{}",
        rest.join("\n")
    );
}

#[tokio::test]
async fn the_suite_names_a_taken_port() {
    let data = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = std::process::Command::new(e2e::binary("suite"))
        .args([
            "--kiada-port",
            "0",
            "--quote-port",
            "0",
            "--kiada-tls-port",
            "0",
            "--quiz-port",
            &port,
            "--admin-ports-from",
            "0",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(":{port}")) && said.contains("in use"),
        "{said}"
    );
}

#[tokio::test]
async fn a_sigtermed_pod_says_draining_while_it_still_answers_and_the_watch_shows_it() {
    let mut quote = start("quote", &["--shutdown-delay", "2", "--pod-name", "quote-t"]);
    let kiada = start(
        "kiada",
        &[
            "--no-tls",
            "--quote-url",
            &format!("{}/quote", quote.url()),
            "--quiz-url",
            "http://127.0.0.1:1",
        ],
    );
    let state = |res: &reqwest::Response| res.headers()["x-pod-state"].to_str().unwrap().to_owned();
    assert_eq!(
        state(&e2e::get(format!("{}/quote", quote.url())).await),
        "ready"
    );
    let watch = tokio::spawn(e2e::text(format!(
        "{}/lab/watch?interval_ms=100&duration_s=3",
        kiada.url()
    )));
    // The watch has had answers from the ready pod: two /quote calls beside the one above.
    let metrics = format!("{}/metrics", quote.url());
    let quote_calls = || async {
        let m = e2e::text(metrics.clone()).await;
        m.lines()
            .find_map(|l| {
                l.strip_prefix(r#"http_requests_total{method="GET",route="/quote",status="200"} "#)?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            quote_calls().await >= 3.0
        })
        .await,
        "the watch never reached quote"
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
    let during = e2e::get(format!("{}/quote", quote.url())).await;
    assert_eq!(
        during.status(),
        200,
        "still answering in the shutdown delay"
    );
    assert_eq!(state(&during), "draining");
    let watched = watch.await.unwrap();
    assert!(watched.contains("quote-t (ready)"), "{watched}");
    assert!(watched.contains("quote-t (draining)"), "{watched}");
    assert!(
        watched.contains(">> quote-t now says draining (was ready)"),
        "{watched}"
    );
    assert_eq!(quote.wait(Duration::from_secs(10)).code(), Some(0));
}
