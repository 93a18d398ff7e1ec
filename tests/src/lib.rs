//! Helpers for the end-to-end tests: the workspace's own binaries, run as processes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use testkit::{Process, skip};

/// The debug build of `name` (`kiada`, `quiz`, `quote`, `suite`), as `cargo build` left it next
/// to this test's own executable. The test command builds the binaries before the tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/<test> → target/debug/<name>
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/debug")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests (scripts/test does)",
        path.display()
    );
    path
}

pub fn start(name: &str, args: &[&str]) -> Process {
    Process::start(binary(name).to_str().unwrap(), args)
}

pub async fn get(url: String) -> reqwest::Response {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("request")
}

pub async fn text(url: String) -> String {
    let res = get(url).await;
    assert_eq!(res.status(), 200, "{}", res.url());
    res.text().await.unwrap()
}

/// Polls `url` until its body contains `want` (up to 10 s); returns the last body.
pub async fn wait_for_text(url: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = match reqwest::get(url).await {
            Ok(res) => res.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        };
        if body.contains(want) || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
