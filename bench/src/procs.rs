//! Service processes for the benchmark: start, wait until ready, and read their memory and CPU
//! from /proc.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Proc {
    pub name: String,
    child: Child,
    pub port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// Where `cargo build` put this profile's binaries: next to the harness itself.
pub fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned()
}

pub fn binary(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// How a process is started besides its arguments.
#[derive(Default)]
pub struct Setup<'a> {
    /// Set in its environment. `RUST_LOG` is never inherited from the harness: a process logs as
    /// shipped (request lines at info) unless this sets it.
    pub env: &'a [(&'a str, &'a str)],
    /// Where its standard output, the log, goes: this file (created or truncated), or nowhere.
    pub stdout: Option<&'a Path>,
}

impl Proc {
    /// Starts `program` and waits for 200 on `ready_path`; returns it and the time that took.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        port: u16,
        ready_path: &str,
    ) -> (Proc, Duration) {
        Proc::start_with(name, program, args, port, ready_path, &Setup::default())
    }

    /// [`Proc::start`] with an environment and a log file of its own.
    pub fn start_with(
        name: &str,
        program: &Path,
        args: &[String],
        port: u16,
        ready_path: &str,
        setup: &Setup,
    ) -> (Proc, Duration) {
        let stdout = match setup.stdout {
            // As shipped: request logging at info, to a sink (the pod's log file in a cluster).
            None => Stdio::null(),
            Some(path) => File::create(path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
                .into(),
        };
        let started = Instant::now();
        let child = Command::new(program)
            .args(args)
            .env_remove("RUST_LOG")
            .envs(setup.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let proc = Proc {
            name: name.to_owned(),
            child,
            port,
        };
        let deadline = started + Duration::from_secs(20);
        while !http_ok(port, ready_path) {
            assert!(Instant::now() < deadline, "{name} did not become ready");
            std::thread::sleep(Duration::from_millis(1));
        }
        (proc, started.elapsed())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn rss_mb(&self) -> f64 {
        status_kb(self.pid(), "VmRSS:") / 1024.0
    }

    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0)
            + fields
                .get(12)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        ticks as f64 / clock_ticks()
    }
}

fn status_kb(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0.0)
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A plain blocking GET: true on 200.
pub fn http_ok(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if conn.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Samples the resident memory of `procs` until `stop` is set; returns each one's peak in MB.
pub fn sample_peak_rss(procs: &[&Proc], stop: &std::sync::atomic::AtomicBool) -> Vec<f64> {
    let mut peak = vec![0.0f64; procs.len()];
    loop {
        for (p, proc) in peak.iter_mut().zip(procs) {
            *p = p.max(proc.rss_mb());
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
