//! What the harness measured, the targets it checks, and the report: a table for the terminal
//! and BENCHMARKS.md.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::procs::{free_port, http_ok};
use crate::wrk::Summary;

/// The quote service against nginx, like with like: each pair either writes a line per request
/// to a file or writes none. The quote scenario keeps the name the rest of the workspace cites.
pub const NGINX_LOGGED: &str = "nginx static file, access log to a file (baseline)";
pub const QUOTE_LOGGED: &str = "quote GET /quote";
pub const NGINX_QUIET: &str = "nginx static file, access_log off (baseline)";
pub const QUOTE_QUIET: &str = "quote GET /quote, RUST_LOG=warn (no request lines)";

pub struct Run {
    pub name: String,
    pub summary: Summary,
    /// Each watched process: name, peak RSS (MB), CPU seconds used during the run.
    pub processes: Vec<(String, f64, f64)>,
}

pub struct Startup {
    pub name: String,
    pub start: Duration,
    pub idle_rss_mb: f64,
}

pub struct Outcome {
    pub name: String,
    pub measured: f64,
    pub target: f64,
    /// `measured ≥ target` when true, `measured ≤ target` otherwise.
    pub at_least: bool,
    pub met: bool,
}

pub struct Report {
    pub smoke: bool,
    /// `--only`: the prefixes of the scenarios run, or empty for all of them.
    pub only: Vec<String>,
    pub duration: Duration,
    pub connections: u32,
    pub startups: Vec<Startup>,
    pub runs: Vec<Run>,
    pub naive_inserts_per_s: f64,
    pub acknowledged: u64,
    pub stored: u64,
    /// quiz on PostgreSQL, where the server could be started.
    pub postgres: Option<PostgresRun>,
}

/// The durable writes on PostgreSQL, beside the naive loop on the same server.
pub struct PostgresRun {
    pub naive_inserts_per_s: f64,
    pub acknowledged: u64,
    pub stored: u64,
}

impl Report {
    pub fn new(smoke: bool, only: Vec<String>, duration: Duration, connections: u32) -> Self {
        Report {
            smoke,
            only,
            duration,
            connections,
            startups: Vec::new(),
            runs: Vec::new(),
            naive_inserts_per_s: 0.0,
            acknowledged: 0,
            stored: 0,
            postgres: None,
        }
    }

    /// Whether `--only` selects the scenario `name` (every one without `--only`).
    pub fn selects(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// The first run whose name starts with `prefix`. Only a run `--only` left out may be
    /// missing; in a full run a missing one is the harness's bug.
    fn run(&self, prefix: &str) -> Option<&Summary> {
        let found = self.runs.iter().find(|r| r.name.starts_with(prefix));
        assert!(found.is_some() || !self.only.is_empty(), "no run {prefix}");
        found.map(|r| &r.summary)
    }

    /// The run named `name` exactly (some names begin others').
    fn named(&self, name: &str) -> Option<&Summary> {
        let found = self.runs.iter().find(|r| r.name == name);
        assert!(found.is_some() || !self.only.is_empty(), "no run {name}");
        found.map(|r| &r.summary)
    }

    fn startup(&self, name: &str) -> Option<&Startup> {
        self.startups.iter().find(|s| s.name == name)
    }

    /// Every target whose scenarios ran (all of them without `--only`).
    pub fn targets(&self) -> Vec<Outcome> {
        let mut out = Vec::new();
        if let (Some(text), Some(floor)) = (
            self.run("kiada GET /text, 1 quote"),
            self.run("fan-out floor"),
        ) {
            out.extend([
                Outcome::check(
                    "kiada /text req/s ≥ 0.8 × fan-out floor",
                    text.rps(),
                    0.8 * floor.rps(),
                    true,
                ),
                Outcome::check(
                    "kiada /text p99 (ms) ≤ 1.5 × fan-out floor p99",
                    ms(text.p99_us),
                    1.5 * ms(floor.p99_us),
                    false,
                ),
                Outcome::check("kiada /text errors = 0", text.errors() as f64, 0.0, false),
            ]);
        }
        // Like with like: a line per request written to a file on both sides, or none on both.
        if let (Some(quote), Some(nginx)) = (self.named(QUOTE_LOGGED), self.named(NGINX_LOGGED)) {
            out.push(Outcome::check(
                "quote /quote req/s ≥ 1.0 × nginx, both logging requests",
                quote.rps(),
                nginx.rps(),
                true,
            ));
        }
        if let (Some(quote), Some(nginx)) = (self.named(QUOTE_QUIET), self.named(NGINX_QUIET)) {
            out.push(Outcome::check(
                "quote /quote req/s ≥ 0.85 × nginx, neither logging requests",
                quote.rps(),
                0.85 * nginx.rps(),
                true,
            ));
        }
        if let Some(writes) = self.run("quiz POST") {
            out.extend([
                Outcome::check(
                    "quiz answers/s ≥ 5 × naive SQLite loop",
                    writes.rps(),
                    5.0 * self.naive_inserts_per_s,
                    true,
                ),
                Outcome::check("quiz answer errors = 0", writes.errors() as f64, 0.0, false),
                Outcome::check(
                    "quiz answers stored ≥ answers acknowledged",
                    self.stored as f64,
                    self.acknowledged as f64,
                    true,
                ),
            ]);
        }
        // Only where the PostgreSQL server could be started.
        let pg_writes = match &self.postgres {
            Some(pg) => self.run("quiz on PostgreSQL POST").map(|w| (pg, w)),
            None => None,
        };
        if let Some((pg, writes)) = pg_writes {
            out.extend([
                Outcome::check(
                    "quiz on PostgreSQL answers/s ≥ 5 × naive PostgreSQL loop",
                    writes.rps(),
                    5.0 * pg.naive_inserts_per_s,
                    true,
                ),
                Outcome::check(
                    "quiz on PostgreSQL answer errors = 0",
                    writes.errors() as f64,
                    0.0,
                    false,
                ),
                Outcome::check(
                    "quiz on PostgreSQL answers stored ≥ answers acknowledged",
                    pg.stored as f64,
                    pg.acknowledged as f64,
                    true,
                ),
            ]);
        }
        // Start-ups are measured in full runs only.
        let Some(hello) = self.startup("hello") else {
            return out;
        };
        let hello = hello.start.as_secs_f64() * 1000.0;
        for name in crate::SERVICES {
            let s = self.startup(name).expect("every service's start-up");
            out.push(Outcome::check(
                &format!("{name} idle RSS (MB) ≤ 10"),
                s.idle_rss_mb,
                10.0,
                false,
            ));
            let peak = self
                .runs
                .iter()
                .flat_map(|r| &r.processes)
                .filter(|(p, _, _)| p.starts_with(name))
                .map(|(_, rss, _)| *rss)
                .fold(0.0, f64::max);
            out.push(Outcome::check(
                &format!("{name} RSS under load (MB) ≤ 30"),
                peak,
                30.0,
                false,
            ));
            out.push(Outcome::check(
                &format!("{name} start to ready (ms) ≤ 3 × hello"),
                s.start.as_secs_f64() * 1000.0,
                3.0 * hello,
                false,
            ));
        }
        out
    }

    pub fn table(&self, outcomes: &[Outcome]) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<60} {:>10} {:>8} {:>8} {:>8} {:>7}",
            "scenario", "req/s", "p50 ms", "p99 ms", "max ms", "errors"
        );
        for r in &self.runs {
            let s = &r.summary;
            let _ = writeln!(
                t,
                "{:<60} {:>10.0} {:>8.2} {:>8.2} {:>8.1} {:>7}",
                r.name,
                s.rps(),
                ms(s.p50_us),
                ms(s.p99_us),
                ms(s.max_us),
                s.errors()
            );
        }
        if self.run("quiz POST").is_some() {
            let _ = writeln!(
                t,
                "{:<60} {:>10.0}",
                "naive SQLite loop (commits/s, no HTTP)", self.naive_inserts_per_s
            );
        }
        if let Some(pg) = &self.postgres {
            let _ = writeln!(
                t,
                "{:<60} {:>10.0}",
                "naive PostgreSQL loop (commits/s, no HTTP)", pg.naive_inserts_per_s
            );
        }
        let _ = writeln!(
            t,
            "\n{:<60} {:>12} {:>12} {:>8}",
            "target", "measured", "target", "ratio"
        );
        for o in outcomes {
            let _ = writeln!(
                t,
                "{:<60} {:>12.2} {:>12.2} {:>8} {}",
                o.name,
                o.measured,
                o.target,
                ratio(o),
                if o.met { "ok" } else { "MISSED" }
            );
        }
        t
    }

    pub fn markdown(&self, outcomes: &[Outcome]) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# Benchmarks\n");
        let only = match self.only.is_empty() {
            true => String::new(),
            false => format!(" -- --only {}", self.only.join(",")),
        };
        let _ = writeln!(
            m,
            "Measured by `cargo run --release -p bench{only}`{}{}.",
            if self.smoke {
                " --smoke (a smoke run: one second per scenario, targets not enforced)"
            } else {
                ""
            },
            if self.only.is_empty() {
                ""
            } else {
                " (the scenarios named so only, no start-ups: a partial report)"
            }
        );
        let _ = writeln!(
            m,
            "Every figure comes from one run on one machine, baselines included, so compare ratios, not absolute numbers.\n"
        );
        let _ = writeln!(
            m,
            "- Date: {}",
            command_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        );
        let _ = writeln!(m, "- Machine: {}", machine());
        let _ = writeln!(
            m,
            "- Load: wrk, 2 threads, {} connections, {} s per scenario{}, on loopback; the load generator, the services and the baselines share the machine's cores\n",
            self.connections,
            self.duration.as_secs(),
            match self.smoke {
                true => "",
                false => " after 2 s of unmeasured load (all but the durable writes)",
            }
        );

        let _ = writeln!(m, "## Scenarios\n");
        let _ = writeln!(
            m,
            "| scenario | req/s | p50 ms | p99 ms | max ms | errors | peak RSS MB (process) | CPU s (process) |"
        );
        let _ = writeln!(m, "|---|---:|---:|---:|---:|---:|---|---|");
        for r in &self.runs {
            let s = &r.summary;
            let rss: Vec<String> = r
                .processes
                .iter()
                .map(|(p, rss, _)| format!("{rss:.1} ({p})"))
                .collect();
            let cpu: Vec<String> = r
                .processes
                .iter()
                .map(|(p, _, cpu)| format!("{cpu:.2} ({p})"))
                .collect();
            let _ = writeln!(
                m,
                "| {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} |",
                r.name,
                s.rps(),
                ms(s.p50_us),
                ms(s.p99_us),
                ms(s.max_us),
                s.errors(),
                rss.join(", "),
                cpu.join(", ")
            );
        }
        if self.run("quiz POST").is_some() {
            let _ = writeln!(
                m,
                "| naive SQLite loop, one insert per transaction, WAL + synchronous=FULL (no HTTP) | {:.0} | | | | | | |",
                self.naive_inserts_per_s
            );
        }
        if let Some(pg) = &self.postgres {
            let _ = writeln!(
                m,
                "| naive PostgreSQL loop, one insert per transaction, synchronous_commit=on, same server (no HTTP) | {:.0} | | | | | | |",
                pg.naive_inserts_per_s
            );
        }
        let pairs = [QUOTE_LOGGED, NGINX_LOGGED, QUOTE_QUIET, NGINX_QUIET];
        if self.runs.iter().any(|r| pairs.contains(&r.name.as_str())) {
            let _ = writeln!(
                m,
                "\nquote against nginx, like with like: \"{QUOTE_LOGGED}\" writes its request lines (the default, `info`) to a file, \
and \"{NGINX_LOGGED}\" its default `combined` line to a file; \"{QUOTE_QUIET}\" and \"{NGINX_QUIET}\" write none. \
Both files are in the harness's temporary directory."
            );
        }
        if self.run("quiz POST").is_some() {
            let _ = writeln!(
                m,
                "\nquiz durable answers: {} acknowledged with 200, {} stored.",
                self.acknowledged, self.stored
            );
        }
        let _ = writeln!(m);
        if let Some(pg) = &self.postgres {
            let _ = writeln!(
                m,
                "quiz on PostgreSQL durable answers: {} acknowledged with 200, {} stored.\n",
                pg.acknowledged, pg.stored
            );
            let _ = writeln!(m, "### quiz reads on both stores\n");
            let _ = writeln!(m, "| read | SQLite req/s | PostgreSQL req/s |");
            let _ = writeln!(m, "|---|---:|---:|");
            for (read, sqlite, postgres) in [
                (
                    "`GET /questions/random` (the question set is in memory)",
                    "quiz GET /questions/random",
                    "quiz on PostgreSQL GET /questions/random",
                ),
                (
                    "`GET /stats` (a query over all answers)",
                    "quiz GET /stats",
                    "quiz on PostgreSQL GET /stats",
                ),
            ] {
                if let (Some(sqlite), Some(postgres)) = (self.run(sqlite), self.run(postgres)) {
                    let _ = writeln!(
                        m,
                        "| {read} | {:.0} | {:.0} |",
                        sqlite.rps(),
                        postgres.rps()
                    );
                }
            }
            let _ = writeln!(m);
        }

        if !self.startups.is_empty() {
            let _ = writeln!(m, "## Start-up and idle memory\n");
            let _ = writeln!(
                m,
                "| binary | process start to first 200 on readiness (median) | RSS idle after start |"
            );
            let _ = writeln!(m, "|---|---:|---:|");
            for s in &self.startups {
                let _ = writeln!(
                    m,
                    "| {} | {:.1} ms | {:.1} MB |",
                    s.name,
                    s.start.as_secs_f64() * 1000.0,
                    s.idle_rss_mb
                );
            }
            let _ = writeln!(m);
        }

        let _ = writeln!(m, "## Targets\n");
        let _ = writeln!(m, "| target | measured | target | measured ÷ target | |");
        let _ = writeln!(m, "|---|---:|---:|---:|---|");
        for o in outcomes {
            let bound = if o.at_least { "≥" } else { "≤" };
            let _ = writeln!(
                m,
                "| {} | {:.2} | {bound} {:.2} | {} | {} |",
                o.name,
                o.measured,
                o.target,
                ratio(o),
                if o.met { "met" } else { "**missed**" }
            );
        }

        let (Some(new), Some(short), Some(pooled)) = (
            self.run("kiada GET /text, new connection"),
            self.run("kiada GET /text, 1 quote"),
            self.run("kiada GET /text, pooled"),
        ) else {
            return m;
        };
        let _ = writeln!(m, "\n## kiada's backend connections\n");
        let _ = writeln!(m, "| strategy | req/s | p99 ms |");
        let _ = writeln!(m, "|---|---:|---:|");
        for (name, s) in [
            ("new connection per call (`--backend-pool-idle-ms 0`)", new),
            ("pooled, idle connections kept 1 s (the default)", short),
            ("pooled, idle connections kept 10 min", pooled),
        ] {
            let _ = writeln!(m, "| {name} | {:.0} | {:.2} |", s.rps(), ms(s.p99_us));
        }
        let _ = writeln!(
            m,
            "\nkiada ships the middle one. A ClusterIP Service balances connections, not requests, so a pooled connection keeps reaching the same pod. \
Keeping idle connections for one second costs nothing under load, where a connection is never idle that long, and runs at pooled speed; \
a person reloading the page every few seconds gets a new connection, and so possibly another pod, each time, which is what the chapter wants to show. \
A new connection per call shows the spread too, but pays a TCP handshake (and a TIME_WAIT socket) for every backend call."
        );
        m
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn ratio(o: &Outcome) -> String {
    if o.target == 0.0 {
        return "-".into();
    }
    format!("{:.2}", o.measured / o.target)
}

fn command_out(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    format!(
        "{} cores of {model}, {memory} memory, Linux {}",
        command_out("nproc", &[]),
        command_out("uname", &["-r"])
    )
}

/// nginx (Debian's nginx-light) serving one small static file, one worker per core: the floor for
/// the quote service. Two ports, the same file: one writes nginx's default access log line
/// (`combined`) to a file for every request, the other none (`access_log off`).
pub struct Nginx {
    child: Child,
    logged: u16,
    quiet: u16,
    access_log: PathBuf,
}

impl Nginx {
    pub fn start(scratch: &Path) -> Nginx {
        let dir = scratch.join("nginx");
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/quote"), "A Service gets one stable virtual IP for its whole life; pods behind it come and go.\n").unwrap();
        let (logged, quiet) = (free_port(), free_port());
        let access_log = dir.join("access.log");
        let root = command_out("id", &["-u"]) == "0";
        let conf = format!(
            "{user}worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 4096; }}\n\
             http {{ client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
             server {{ listen 127.0.0.1:{logged}; access_log {log} combined; location / {{ root {d}/www; }} }}\n\
             server {{ listen 127.0.0.1:{quiet}; access_log off; location / {{ root {d}/www; }} }} }}\n",
            user = if root { "user root;\n" } else { "" },
            d = dir.display(),
            log = access_log.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .args([
                "-p",
                dir.to_str().unwrap(),
                "-c",
                dir.join("nginx.conf").to_str().unwrap(),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx {
            child,
            logged,
            quiet,
            access_log,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(http_ok(logged, "/quote") && http_ok(quiet, "/quote")) {
            assert!(std::time::Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        nginx
    }

    /// The file, on the port that writes its access log.
    pub fn url_logged(&self) -> String {
        format!("http://127.0.0.1:{}/quote", self.logged)
    }

    /// The file, on the port with `access_log off`.
    pub fn url_quiet(&self) -> String {
        format!("http://127.0.0.1:{}/quote", self.quiet)
    }

    pub fn access_log(&self) -> &Path {
        &self.access_log
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
