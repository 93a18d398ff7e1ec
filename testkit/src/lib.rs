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

    /// The memory the process holds now (its resident set), in kilobytes.
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the process is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// How many file descriptors the process holds open now: its listeners, its log pipes and
    /// files, and one per connection.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the process is running")
            .count()
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

/// A throw-away PostgreSQL server for tests and the benchmark: a new cluster in a temporary
/// directory, on a free loopback port, trusting local connections, with its socket in that
/// directory. It uses the server binaries of Debian's `postgresql` package
/// (`/usr/lib/postgresql/<version>/bin`) and runs them as the `postgres` user when started by
/// root, since the server refuses to run as root.
///
/// The cluster is stopped and its directory removed on drop, and also when the test process
/// dies without unwinding (a panic that aborts, `kill -9`): a watchdog shell waits on a pipe
/// from this process and cleans up when it closes.
pub struct Postgres {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    pub port: u16,
    run_as_postgres: bool,
    watchdog: Child,
    watchdog_pipe: Option<ChildStdin>,
}

impl Postgres {
    /// Starts a cluster, or says why it cannot ([`skip`]) and returns `None`. `settings` are
    /// server settings (`-c name=value`) beside the test defaults.
    pub fn start(test: &str, settings: &[&str]) -> Option<Postgres> {
        Self::try_start(settings)
            .inspect_err(|why| skip(test, &why.to_string()))
            .ok()
    }

    /// Starts a cluster, or says why this machine cannot run one: for a server shared by
    /// several tests, each of which then reports its own skip.
    pub fn try_start(settings: &[&str]) -> Result<Postgres, PostgresUnavailable> {
        let bin = Self::bin_dir().ok_or(PostgresUnavailable::NotInstalled)?;
        let run_as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if run_as_postgres
            && !Command::new("id")
                .arg("postgres")
                .output()
                .is_ok_and(|o| o.status.success())
        {
            return Err(PostgresUnavailable::NoPostgresUser);
        }
        static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kiada-pg-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a directory for the cluster");
        if run_as_postgres {
            run(Command::new("chown").arg("postgres:postgres").arg(&dir));
        }
        // The watchdog first, so that even a failing start leaves nothing behind.
        let mut watchdog = Command::new("sh")
            .args([
                "-c",
                // Ctrl-C reaches the whole process group: the watchdog outlives it to clean up.
                r#"trap '' INT TERM; read _; $2 "$3/pg_ctl" -D "$1/data" stop -m immediate -w >/dev/null 2>&1; rm -rf "$1""#,
                "sh",
            ])
            .arg(&dir)
            .arg(if run_as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            })
            .arg(&bin)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        let watchdog_pipe = watchdog.stdin.take();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let pg = Postgres {
            bin,
            dir,
            port,
            run_as_postgres,
            watchdog,
            watchdog_pipe,
        };
        let data = pg.dir.join("data");
        // -N: the cluster is thrown away, its creation need not be flushed.
        let mut initdb = pg.command("initdb");
        initdb
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-N",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data);
        run(&mut initdb);
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            pg.dir.display()
        );
        for setting in settings {
            options.push_str(" -c ");
            options.push_str(setting);
        }
        std::fs::write(pg.dir.join("options"), &options).expect("write the server options");
        pg.start_server();
        Ok(pg)
    }

    /// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
    fn bin_dir() -> Option<std::path::PathBuf> {
        let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let version = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Command {
        let mut command = self.command("pg_ctl");
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(args)
            .stdout(Stdio::null());
        command
    }

    fn start_server(&self) {
        let options = std::fs::read_to_string(self.dir.join("options")).expect("the options");
        let mut pg_ctl = self.pg_ctl(&["start", "-w", "-t", "30", "-o", &options, "-l"]);
        run(pg_ctl.arg(self.dir.join("server.log")));
    }

    /// Stops the server (fast: connections are closed at once), keeping its data.
    pub fn stop(&self) {
        run(&mut self.pg_ctl(&["stop", "-m", "fast", "-w"]));
    }

    /// Starts the server again after [`Postgres::stop`], on the same port.
    pub fn restart(&self) {
        self.start_server();
    }

    /// A URL for `database` as the superuser `postgres` (no password: the cluster trusts local
    /// connections).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database with a unique name; returns the name.
    pub fn create_database(&self) -> String {
        static DATABASES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "test_{}",
            DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// Runs `sql` in `database` with psql and returns what it printed, unaligned, without
    /// headers (`-At`); panics when it fails.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-d", database, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// Why [`Postgres::try_start`] cannot run a server on this machine.
#[derive(Debug, thiserror::Error)]
pub enum PostgresUnavailable {
    #[error("PostgreSQL is not installed (apt-get install postgresql)")]
    NotInstalled,
    #[error("running as root and there is no postgres user to run the server as")]
    NoPostgresUser,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Closing the pipe lets the watchdog stop the server and remove the directory.
        self.watchdog_pipe = None;
        let _ = self.watchdog.wait();
    }
}

/// Runs a command, panicking with its output when it fails.
fn run(command: &mut Command) {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Polls `condition` every 20 ms until it holds or `within` has passed, and says whether it
/// held: what a test waits on instead of a fixed sleep.
#[must_use]
pub async fn eventually<F: Future<Output = bool>>(
    within: Duration,
    mut condition: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
