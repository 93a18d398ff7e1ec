//! The real `kiada` binary: the status message from stdin, and backend discovery from the
//! environment Kubernetes sets.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use testkit::Process;

const KIADA: &str = env!("CARGO_BIN_EXE_kiada");

async fn page(kiada: &Process) -> String {
    text(format!("{}/text", kiada.url())).await
}

async fn wait_for_status(kiada: &Process, status: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page = page(kiada).await;
        if page.contains(&format!("==== STATUS\n{status}\n")) || Instant::now() > deadline {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU time (user + system, in clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Whether the process has a thread named `name` now.
fn has_thread(pid: u32, name: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .any(|comm| comm.trim_end() == name)
}

#[tokio::test]
async fn lines_on_stdin_replace_the_status_message() {
    let s = healthy().await;
    let mut command = Command::new(KIADA);
    command
        .args(["--no-tls", "--quote-url", &format!("{}/quote", s.quote.url)])
        .args(["--quiz-url", &s.quiz.url])
        .env("INITIAL_STATUS_MESSAGE", "Starting the lab");
    let mut kiada = Process::spawn(command).expect("kiada starts");
    assert!(kiada.tls_addr.is_none());
    assert!(
        page(&kiada)
            .await
            .contains("==== STATUS\nStarting the lab\n")
    );

    writeln!(kiada.stdin(), "Canary rollout in progress").unwrap();
    let now = wait_for_status(&kiada, "Canary rollout in progress").await;
    assert!(
        now.contains("==== STATUS\nCanary rollout in progress\n"),
        "{now}"
    );

    // An empty line changes nothing and prints a hint.
    writeln!(kiada.stdin()).unwrap();
    // The hint says the line has been read.
    assert!(
        eventually(Duration::from_secs(5), || async {
            kiada
                .logs()
                .iter()
                .any(|l| l.contains("Type a line of text"))
        })
        .await,
        "{:?}",
        kiada.logs()
    );
    assert!(page(&kiada).await.contains("Canary rollout in progress"));

    // End of input: the status stays, the process keeps serving and does not spin.
    let pid = kiada.pid();
    assert!(has_thread(pid, "status-stdin"));
    kiada.close_stdin();
    assert!(
        eventually(Duration::from_secs(5), || async {
            !has_thread(pid, "status-stdin")
        })
        .await,
        "the stdin thread is still running after the end of input"
    );
    let before = cpu_ticks(pid);
    // A fixed second on purpose: the CPU the idle process spends in it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let spent = cpu_ticks(kiada.pid()) - before;
    assert!(spent < 20, "{spent} ticks of CPU in a second of idling");
    assert!(page(&kiada).await.contains("Canary rollout in progress"));
}

#[tokio::test]
async fn backends_are_found_from_service_env_vars_when_no_url_is_given() {
    let s = healthy().await;
    let mut command = Command::new(KIADA);
    command
        .arg("--no-tls")
        .env_remove("QUOTE_URL")
        .env_remove("QUIZ_URL")
        .env("QUOTE_SERVICE_HOST", "127.0.0.1")
        .env("QUOTE_SERVICE_PORT", s.quote.port.to_string())
        .env("QUIZ_SERVICE_HOST", "127.0.0.1")
        .env("QUIZ_SERVICE_PORT", s.quiz.port.to_string())
        // Injected for the Services too; must not disturb anything.
        .env("QUOTE_PORT", format!("tcp://127.0.0.1:{}", s.quote.port));
    let kiada = Process::spawn(command).expect("kiada starts");
    let page = page(&kiada).await;
    assert!(page.contains("Services balance connections."), "{page}");
    assert!(page.contains("Question 7"), "{page}");
    let logs = kiada.logs().join("\n");
    assert!(logs.contains("Kubernetes service env vars"), "{logs}");
}

#[tokio::test]
async fn without_any_setting_the_service_dns_names_are_used() {
    let mut command = Command::new(KIADA);
    command
        .arg("--no-tls")
        .env_remove("QUOTE_URL")
        .env_remove("QUIZ_URL");
    for var in [
        "QUOTE_SERVICE_HOST",
        "QUOTE_SERVICE_PORT",
        "QUIZ_SERVICE_HOST",
        "QUIZ_SERVICE_PORT",
    ] {
        command.env_remove(var);
    }
    let kiada = Process::spawn(command).expect("kiada starts");
    let logs = kiada.logs().join("\n");
    assert!(
        logs.contains("http://quote/quote") && logs.contains("http://quiz"),
        "{logs}"
    );
    assert!(logs.contains("default Service DNS name"), "{logs}");
}

#[tokio::test]
async fn https_is_on_by_default_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(KIADA);
    command
        .args([
            "--tls-port",
            "0",
            "--quote-url",
            "http://127.0.0.1:1/quote",
            "--quiz-url",
            "http://127.0.0.1:1",
        ])
        .env("TLS_CERT_FILE", dir.path().join("tls.crt"))
        .env("TLS_KEY_FILE", dir.path().join("tls.key"));
    let kiada = Process::spawn(command).expect("kiada starts");
    let port = kiada.tls_addr.expect("an HTTPS listener").port();
    let (response, _) = https_get(port, "/healthz/ready", None).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(kiada.logs().join("\n").contains("self-signed"));
}
