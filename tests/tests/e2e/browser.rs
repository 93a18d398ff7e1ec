//! The HTML page in a real headless Chromium (Debian's), driven by `browser/browser.mjs` with
//! playwright-core: answering in place with JavaScript, and through the form without it; the
//! lab page's spread bars and live watch timeline over three quote pods behind a balancer; the
//! local suite's pods section, deleting a pod and rolling out quote from the page.

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
    // The local suite, for the pods section its /lab has (a short shutdown delay: a deleted
    // pod leaves soon).
    let suite_data = tempfile::tempdir().unwrap();
    let (_suite, suite_url) = suite(suite_data.path());
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&shots).unwrap();

    let (kiada_url, broken_url) = (kiada.url(), broken.url());
    let suite_arg = suite_url.clone();
    let (script, shots_arg) = (script_dir.join("browser.mjs"), shots.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(kiada_url)
            .arg(shots_arg)
            .arg(broken_url)
            .arg(suite_arg)
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
        "lab-pods.png",
    ] {
        assert!(shots.join(shot).exists(), "no screenshot {shot}");
    }
}

/// The suite binary on free ports, HTTP only, in `data`; killed when the guard drops. Returns
/// kiada's URL, read from the banner.
fn suite(data: &Path) -> (Killed, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(e2e::binary("suite"))
        .args(["--kiada-port", "0", "--quote-port", "0", "--quiz-port", "0"])
        .args([
            "--admin-ports-from",
            "0",
            "--no-tls",
            "--shutdown-delay",
            "0.5",
        ])
        .arg("--data-dir")
        .arg(data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the suite binary runs");
    // The banner read on a thread of its own, which then keeps reading so that the suite never
    // blocks on a full pipe; the test waits for kiada's port 20 s at most.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.trim_start().strip_prefix("kiada  http://localhost:") {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let suite = Killed(child);
    let port = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the suite printed kiada's address within 20 s");
    (suite, format!("http://127.0.0.1:{port}"))
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}
