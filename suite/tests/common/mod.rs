//! The real suite binary as a process: free ports unless a test chooses, HTTP only, a data
//! directory of its own; its banner read for kiada's port, every line kept.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Suite {
    child: Child,
    /// kiada's Service, `http://127.0.0.1:PORT`.
    pub kiada: String,
    pub data: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Suite {
    /// Starts the suite in `data` with `args`, and waits (up to 20 s) for its banner.
    pub fn start(data: &Path, args: &[&str]) -> Suite {
        let mut command = Command::new(env!("CARGO_BIN_EXE_suite"));
        for (flag, value) in [
            ("--kiada-port", "0"),
            ("--quote-port", "0"),
            ("--quiz-port", "0"),
            ("--admin-ports-from", "0"),
        ] {
            if !args.contains(&flag) {
                command.args([flag, value]);
            }
        }
        command
            .args(["--no-tls", "--data-dir"])
            .arg(data)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the suite binary runs");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        for (stream, tx) in [
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
                Some(tx),
            ),
            (Box::new(child.stderr.take().unwrap()), None),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(tx) = &tx
                        && let Some(rest) =
                            line.trim_start().strip_prefix("kiada  http://localhost:")
                    {
                        let port = rest
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned();
                        let _ = tx.send(port);
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = loop {
            if let Ok(port) = rx.recv_timeout(Duration::from_millis(50)) {
                break port;
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "the suite exited with {status} before its banner:\n{}",
                    lines.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "no banner within 20 s:\n{}",
                lines.lock().unwrap().join("\n")
            );
        };
        Suite {
            child,
            kiada: format!("http://127.0.0.1:{port}"),
            data: data.to_owned(),
            lines,
        }
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// `GET /lab/pods` as JSON.
    pub async fn pods(&self) -> Value {
        json(&format!("{}/lab/pods", self.kiada)).await
    }

    /// One pod of `/lab/pods`, by name.
    pub async fn pod(&self, name: &str) -> Option<Value> {
        let pods = self.pods().await;
        pods["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    }

    /// A Service's port, from `/lab/pods`.
    pub async fn port(&self, service: &str) -> u16 {
        let pods = self.pods().await;
        let s = pods["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == service)
            .unwrap_or_else(|| panic!("no Service {service}: {pods}"));
        s["port"].as_u64().unwrap() as u16
    }

    /// Stops it with SIGINT, as Ctrl-C does, and waits for its exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the suite did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub async fn json(url: impl Into<String>) -> Value {
    let url: String = url.into();
    let res = client()
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(res.status().is_success(), "{url}: {}", res.status());
    res.json().await.unwrap()
}

pub async fn post(url: impl Into<String>) -> reqwest::Response {
    client().post(url.into()).send().await.unwrap()
}

/// Polls until `condition` holds, for at most `within`.
pub async fn until<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    condition: impl FnMut() -> F,
) {
    assert!(
        testkit::eventually(within, condition).await,
        "never within {within:?}: {what}"
    );
}

/// A Server-Sent Events body as (event, JSON data) pairs.
pub fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

pub fn of_kind<'a>(events: &'a [(String, Value)], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, d)| d)
        .collect()
}

/// Starts a watch through kiada as the lab page does (Server-Sent Events); the body is read
/// to its end in the background.
pub async fn watch(kiada: &str, query: &str) -> tokio::task::JoinHandle<Vec<(String, Value)>> {
    let res = client()
        .get(format!("{kiada}/lab/watch?{query}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    tokio::spawn(async move { events(&res.text().await.unwrap()) })
}
