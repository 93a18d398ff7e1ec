//! The HTML page in a real headless Chromium (Debian's), driven by `browser/browser.mjs` with
//! playwright-core: answering in place with JavaScript, and through the form without it; the
//! lab page's spread bars and live watch timeline over three quote pods behind a balancer.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{skip, start};

const TEST: &str = "browser: the HTML page in headless Chromium";

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What is missing to run the browser test here, if anything.
fn missing(script_dir: &Path) -> Option<String> {
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !chromium().exists() {
        return Some(format!(
            "{} is missing (apt-get install chromium)",
            chromium().display()
        ));
    }
    if !script_dir.join("node_modules/playwright-core").exists() {
        return Some("playwright-core is not installed (npm ci --prefix tests/browser)".into());
    }
    None
}

#[tokio::test]
async fn a_person_answers_questions_in_the_browser() {
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    if let Some(why) = missing(&script_dir) {
        return skip(TEST, &why);
    }
    let data = tempfile::tempdir().unwrap();
    let quotes: Vec<_> = ["quote-1", "quote-2", "quote-3"]
        .into_iter()
        .map(|pod| start("quote", &["--pod-name", pod]))
        .collect();
    let balancer = balancer::Balancer::start(
        0,
        quotes
            .iter()
            .map(|q| ([127, 0, 0, 1], q.addr.port()).into())
            .collect(),
    )
    .unwrap();
    let quiz = start(
        "quiz",
        &[
            "--pod-name",
            "quiz-a",
            "--db",
            data.path().join("quiz.db").to_str().unwrap(),
        ],
    );
    let kiada = start(
        "kiada",
        &[
            "--no-tls",
            "--quote-url",
            &format!("{}/quote", balancer.url()),
            "--quiz-url",
            &quiz.url(),
        ],
    );
    // The same kiada, but its quiz is a port nobody listens on: a page with a failed backend.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broken = start(
        "kiada",
        &[
            "--no-tls",
            "--quote-url",
            &format!("{}/quote", balancer.url()),
            "--quiz-url",
            &format!("http://127.0.0.1:{closed}"),
        ],
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();

    let (kiada_url, broken_url) = (kiada.url(), broken.url());
    let (script, shots_arg) = (script_dir.join("browser.mjs"), shots.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(kiada_url)
            .arg(shots_arg)
            .arg(broken_url)
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser walk failed:\n{said}");
    assert!(said.contains("browser test passed"), "{said}");
    for shot in [
        "answered.png",
        "next-question.png",
        "answered-without-js.png",
        "lab-spread.png",
        "lab-watch.png",
        "path.png",
        "path-failed.png",
    ] {
        assert!(shots.join(shot).exists(), "no screenshot {shot}");
    }
}
