//! Running a service binary as a real process in tests: free ports, JSON logs, signals.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A service process started with `--log-format json` and, unless the test gives them,
/// `--listen-port 0 --admin-port 0`; its addresses are read from its `listening` log line.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The HTTPS listener, for a service that has one (kiada).
    pub tls_addr: Option<SocketAddr>,
    stdin: Option<ChildStdin>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `binary` with `args` and waits (up to 10 s) until it listens.
    pub fn start(binary: &str, args: &[&str]) -> Process {
        Self::try_start(binary, args).unwrap_or_else(|(status, logs)| {
            panic!(
                "{binary} exited with {status:?} before listening:\n{}",
                logs.join("\n")
            )
        })
    }

    /// Like [`Process::start`], but an early exit returns its status and output.
    pub fn try_start(
        binary: &str,
        args: &[&str],
    ) -> Result<Process, (Option<ExitStatus>, Vec<String>)> {
        let mut command = Command::new(binary);
        command.args(args);
        Self::spawn(command)
    }

    /// Runs a prepared command (extra env, say) the way [`Process::try_start`] does.
    pub fn spawn(mut command: Command) -> Result<Process, (Option<ExitStatus>, Vec<String>)> {
        let binary = command.get_program().to_string_lossy().into_owned();
        // Free ports unless the test chose them.
        for flag in ["--listen-port", "--admin-port"] {
            if !command.get_args().any(|a| a == flag) {
                command.args([flag, "0"]);
            }
        }
        let mut child = command
            .args(["--log-format", "json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {binary}: {e}"));
        let stdin = child.stdin.take();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        collect_lines(child.stdout.take().unwrap(), logs.clone(), Some(tx));
        collect_lines(child.stderr.take().unwrap(), logs.clone(), None);

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok((addr, admin_addr, tls_addr)) => {
                    return Ok(Process {
                        child,
                        addr,
                        admin_addr,
                        tls_addr,
                        stdin,
                        logs,
                    });
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // Let the readers catch the last lines.
                        std::thread::sleep(Duration::from_millis(100));
                        return Err((Some(status), logs.lock().unwrap().clone()));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        return Err((None, logs.lock().unwrap().clone()));
                    }
                }
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_addr.port())
    }

    /// The process's standard input; dropping it (see [`Process::close_stdin`]) ends the input.
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin is still open")
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, killing it after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "process did not exit within {timeout:?}:\n{}",
                    self.logs().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The most memory the process has held so far (its peak resident set), in kilobytes.
    pub fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the process is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    /// Every line the process printed so far, stdout and stderr.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_lines(
    stream: impl std::io::Read + Send + 'static,
    logs: Arc<Mutex<Vec<String>>>,
    listening: Option<mpsc::Sender<Addrs>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(tx) = &listening
                && let Some(addrs) = listening_addrs(&line)
            {
                let _ = tx.send(addrs);
            }
            logs.lock().unwrap().push(line);
        }
    });
}

type Addrs = (SocketAddr, SocketAddr, Option<SocketAddr>);

fn listening_addrs(line: &str) -> Option<Addrs> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    if event["message"] != "listening" {
        return None;
    }
    let addr = event["addr"].as_str()?.parse().ok()?;
    let admin = event["admin_addr"].as_str()?.parse().ok()?;
    let tls = event["tls_addr"].as_str().and_then(|a| a.parse().ok());
    Some((addr, admin, tls))
}

/// Marks a test that cannot run on this machine (a tool is missing). It says so loudly and
/// records the reason in `$KIADA_SKIP_LOG`, which the test command lists at the end; under CI
/// (`CI=true`) it fails the test instead, so nothing is skipped silently there.
pub fn skip(test: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run: {reason} (CI=true: skips are failures)");
    }
    eprintln!("SKIPPED: {test}: {reason}");
    if let Ok(path) = std::env::var("KIADA_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{test}: {reason}");
        }
    }
}
