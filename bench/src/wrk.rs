//! The load generator: wrk (Debian's package), with a Lua script that prints a JSON summary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub duration_us: u64,
    pub errors_connect: u64,
    pub errors_read: u64,
    pub errors_write: u64,
    pub errors_status: u64,
    pub errors_timeout: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Summary {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }

    pub fn errors(&self) -> u64 {
        self.errors_connect
            + self.errors_read
            + self.errors_write
            + self.errors_status
            + self.errors_timeout
    }
}

const REPORT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\n{"requests":%d,"duration_us":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"#;

/// A request other than a plain GET.
#[derive(Clone, Copy)]
pub struct Post<'a> {
    pub body: &'a str,
}

pub fn run(
    url: &str,
    connections: u32,
    duration: Duration,
    post: Option<Post>,
    scratch: &Path,
) -> Summary {
    let mut script = String::new();
    if let Some(post) = post {
        script.push_str(&format!(
            "wrk.method = \"POST\"\nwrk.body = '{}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            post.body
        ));
    }
    script.push_str(REPORT);
    let path = scratch.join("report.lua");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{}s", duration.as_secs().max(1)),
            "--timeout",
            "5s",
            "-s",
        ])
        .arg(&path)
        .arg(url)
        .output()
        .expect("wrk runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no summary from wrk:\n{stdout}"));
    serde_json::from_str(json).expect("wrk summary")
}
