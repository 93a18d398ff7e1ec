//! The benchmark harness. `cargo run --release -p bench` builds the suite in release mode, starts
//! the services and the baselines as processes, drives each with wrk on loopback, prints a table,
//! writes BENCHMARKS.md, and exits non-zero when a target is missed. `--smoke` runs every
//! scenario for a second with no targets, to keep the harness working (the test command runs it).
//! quiz runs on SQLite and, where Debian's `postgresql` package is installed, on a throw-away
//! PostgreSQL server too.

mod compare;
mod logs;
mod procs;
mod report;
mod wrk;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use procs::{Proc, Setup, binary, free_port};
use report::{NGINX_LOGGED, NGINX_QUIET, Outcome, QUOTE_LOGGED, QUOTE_QUIET, Report, Run, Startup};

/// Where a report's hand-measured notes begin; the harness keeps them when it rewrites it.
const MEASURED_BY_HAND: &str = "\n## Measured by hand";

/// Benchmarks the Kiada suite against baselines measured in the same run.
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    /// A second per scenario and no targets: checks that the harness works
    #[arg(long, env = "BENCH_SMOKE")]
    smoke: bool,
    /// Seconds of load per scenario
    #[arg(long, env = "BENCH_DURATION", default_value_t = 10)]
    duration: u64,
    /// Concurrent connections of the load generator
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 64)]
    connections: u32,
    /// Only the scenarios whose names begin so (`quote,nginx`: quote and its nginx baselines),
    /// their targets, and no start-ups; the report then goes to target/bench-only.md
    #[arg(long, env = "BENCH_ONLY", value_name = "PREFIX", value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write the report [default: BENCHMARKS.md, target/bench-smoke.md with --smoke,
    /// target/bench-only.md with --only]
    #[arg(long, env = "BENCH_OUT")]
    out: Option<PathBuf>,
    /// Instead of the report: this build (A) against the build of a git revision (B), quote
    /// /quote and kiada /text alternating A B B A, and the median ratio B ÷ A
    #[arg(
        long,
        env = "BENCH_COMPARE",
        value_name = "REV",
        conflicts_with = "only"
    )]
    compare: Option<String>,
    /// Rounds of A and B with --compare
    #[arg(long, env = "BENCH_ROUNDS", default_value_t = 5, requires = "compare")]
    rounds: usize,
}

const SERVICES: [&str; 3] = ["quote", "quiz", "kiada"];

fn main() -> ExitCode {
    let args = Args::parse();
    let (duration, connections) = match args.smoke {
        true => (Duration::from_secs(1), 16),
        false => (Duration::from_secs(args.duration), args.connections),
    };
    for (tool, package) in [("wrk", "wrk"), ("nginx", "nginx-light")] {
        if Command::new(tool).arg("-v").output().is_err() {
            return missing_tool(tool, package);
        }
    }
    build_binaries();
    if let Some(rev) = &args.compare {
        let other = compare::build(rev);
        let scratch = tempfile::tempdir().expect("a scratch directory");
        let warm_up = Duration::from_secs(if args.smoke { 0 } else { 2 });
        let rounds = if args.smoke { 1 } else { args.rounds.max(1) };
        compare::run(
            &other,
            rounds,
            scratch.path(),
            duration,
            connections,
            warm_up,
        );
        return ExitCode::SUCCESS;
    }
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the balancer");
    let _guard = runtime.enter();

    let mut report = Report::new(args.smoke, args.only.clone(), duration, connections);
    // The build just wrote hundreds of megabytes; quiz's start-up syncs its new database and
    // would wait for that writeback instead of measuring itself.
    let _ = Command::new("sync").status();
    if args.only.is_empty() {
        report.startups = measure_startups(scratch.path(), if args.smoke { 1 } else { 9 });
    }
    let warm_up = match args.smoke {
        true => Duration::ZERO,
        false => Duration::from_secs(2),
    };
    if let Err(e) = run_load(&mut report, scratch.path(), duration, connections, warm_up) {
        eprintln!("bench: {e}");
        return ExitCode::FAILURE;
    }

    let out = args.out.unwrap_or_else(|| {
        workspace().join(match (args.smoke, args.only.is_empty()) {
            (true, _) => "target/bench-smoke.md",
            (false, false) => "target/bench-only.md",
            (false, true) => "BENCHMARKS.md",
        })
    });
    let outcomes = report.targets();
    println!("{}", report.table(&outcomes));
    // Notes measured by hand, outside the harness, are kept from the report this one replaces.
    let kept = std::fs::read_to_string(&out)
        .ok()
        .and_then(|old| old.find(MEASURED_BY_HAND).map(|at| old[at..].to_owned()))
        .unwrap_or_default();
    std::fs::write(&out, report.markdown(&outcomes) + &kept).expect("write the report");
    println!("report written to {}", out.display());
    if args.smoke {
        println!("smoke run: targets not enforced");
        return ExitCode::SUCCESS;
    }
    match outcomes.iter().filter(|o| !o.met).count() {
        0 => ExitCode::SUCCESS,
        missed => {
            eprintln!("{missed} target(s) missed");
            ExitCode::FAILURE
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn missing_tool(tool: &str, package: &str) -> ExitCode {
    let reason = format!("bench: {tool} is missing (apt-get install {package})");
    eprintln!("SKIPPED: {reason}");
    if let Ok(log) = std::env::var("KIADA_SKIP_LOG") {
        let previous = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::write(&log, format!("{previous}{reason}\n"));
    }
    match std::env::var("CI").as_deref() {
        Ok("true") => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// The service binaries, in the profile this harness was built with. The whole workspace, as
/// the test command builds it: the same selection means the same features, so nothing already
/// built is compiled again.
fn build_binaries() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace())
        .args(["build", "--locked", "--workspace", "--bins"]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let status = command.status().expect("cargo runs");
    assert!(status.success(), "building the binaries failed");
}

fn service_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--listen-port".to_owned(),
        port.to_string(),
        "--admin-port".into(),
        "0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Start to first 200 on readiness, the median of `tries`, and the resident memory idle after.
fn measure_startups(scratch: &Path, tries: usize) -> Vec<Startup> {
    let mut startups = Vec::new();
    for name in ["hello"].into_iter().chain(SERVICES) {
        let mut times = Vec::new();
        let mut idle_rss = 0.0;
        for i in 0..tries {
            let port = free_port();
            let db = scratch.join(format!("startup-{i}.db"));
            let (args, ready) = match name {
                "hello" => (vec![port.to_string()], "/"),
                "quiz" => (
                    service_args(port, &["--db", db.to_str().unwrap()]),
                    "/healthz/ready",
                ),
                "kiada" => (
                    service_args(
                        port,
                        &[
                            "--tls-port",
                            "0",
                            "--tls-cert",
                            "/nonexistent/c",
                            "--tls-key",
                            "/nonexistent/k",
                        ],
                    ),
                    "/healthz/ready",
                ),
                _ => (service_args(port, &[]), "/healthz/ready"),
            };
            let (proc, took) = Proc::start(name, &binary(name), &args, port, ready);
            times.push(took);
            std::thread::sleep(Duration::from_millis(300));
            idle_rss = proc.rss_mb();
        }
        times.sort();
        println!(
            "{name}: process start to ready {:.1?} (fastest) {:.1?} (median) {:.1?} (slowest)",
            times[0],
            times[times.len() / 2],
            times[times.len() - 1]
        );
        startups.push(Startup {
            name: name.to_owned(),
            start: times[times.len() / 2],
            idle_rss_mb: idle_rss,
        });
    }
    startups
}

/// How every scenario drives its target.
struct Load<'a> {
    scratch: &'a Path,
    duration: Duration,
    connections: u32,
    /// Unmeasured load first, so that no side is measured with cold caches, allocator pages
    /// still to fault in or backend connections still to open.
    warm_up: Duration,
}

/// Runs one load scenario, watching the memory and CPU of `watch`.
fn scenario(
    report: &mut Report,
    load: &Load,
    name: &str,
    url: String,
    post: Option<wrk::Post>,
    watch: &[&Proc],
) -> wrk::Summary {
    // Writes are not warmed up: every answer the load generator saw acknowledged is checked
    // against the database.
    if post.is_none() && !load.warm_up.is_zero() {
        wrk::run(&url, load.connections, load.warm_up, None, load.scratch);
    }
    let stop = AtomicBool::new(false);
    let cpu_before: Vec<f64> = watch.iter().map(|p| p.cpu_seconds()).collect();
    let (summary, peaks) = std::thread::scope(|s| {
        let sampler = s.spawn(|| procs::sample_peak_rss(watch, &stop));
        let summary = wrk::run(&url, load.connections, load.duration, post, load.scratch);
        stop.store(true, Ordering::Relaxed);
        (summary, sampler.join().unwrap())
    });
    let cpu: Vec<f64> = watch
        .iter()
        .zip(cpu_before)
        .map(|(p, before)| p.cpu_seconds() - before)
        .collect();
    report.runs.push(Run {
        name: name.to_owned(),
        summary: summary.clone(),
        processes: watch
            .iter()
            .zip(peaks)
            .zip(cpu)
            .map(|((p, rss), cpu)| (p.name.clone(), rss, cpu))
            .collect(),
    });
    println!(
        "{name}: {:.0} req/s, p99 {:.2} ms, {} errors",
        summary.rps(),
        summary.p99_us as f64 / 1000.0,
        summary.errors()
    );
    summary
}

/// The names of the scenarios the harness refers to more than once.
const QUIZ_POST: &str = "quiz POST /questions/1/answers (durable)";
const PG_READ: &str = "quiz on PostgreSQL GET /questions/random";
const PG_POST: &str = "quiz on PostgreSQL POST /questions/1/answers (durable)";
const PG_STATS: &str = "quiz on PostgreSQL GET /stats";

fn run_load(
    report: &mut Report,
    scratch: &Path,
    duration: Duration,
    connections: u32,
    warm_up: Duration,
) -> Result<(), logs::LogCheck> {
    let start = |name: &str, program: &str, args: Vec<String>, port: u16, ready: &str| {
        Proc::start(name, &binary(program), &args, port, ready).0
    };
    let quotes: Vec<Proc> = (1..=3)
        .map(|i| {
            let port = free_port();
            start(
                &format!("quote-{i}"),
                "quote",
                service_args(port, &["--pod-name", &format!("quote-{i}")]),
                port,
                "/healthz/ready",
            )
        })
        .collect();
    let db = scratch.join("quiz.db");
    let quiz_port = free_port();
    let quiz = start(
        "quiz",
        "quiz",
        service_args(quiz_port, &["--db", db.to_str().unwrap()]),
        quiz_port,
        "/healthz/ready",
    );
    // Round robin (IPVS's default), not the suite's random choice (iptables mode's): kiada's
    // pooled connections then land evenly on the three quotes in every run, so runs compare.
    let balancer = balancer::Balancer::start(
        0,
        quotes
            .iter()
            .map(|q| ([127, 0, 0, 1], q.port).into())
            .collect(),
    )
    .expect("balancer");
    let kiada_over = |name: &str, quote_url: String, idle_ms: &str| {
        let port = free_port();
        let extra = [
            "--no-tls",
            "--quote-url",
            &quote_url,
            "--quiz-url",
            &quiz.url(),
            "--backend-pool-idle-ms",
            idle_ms,
        ];
        start(
            name,
            "kiada",
            service_args(port, &extra),
            port,
            "/healthz/ready",
        )
    };
    let quote1 = format!("{}/quote", quotes[0].url());
    let kiada = kiada_over("kiada", quote1.clone(), "1000");
    let kiada3 = kiada_over("kiada", format!("{}/quote", balancer.url()), "1000");
    let kiada_new = kiada_over("kiada", quote1.clone(), "0");
    let kiada_pooled = kiada_over("kiada", quote1.clone(), "600000");
    let fanout_port = free_port();
    let fanout = start(
        "fanout",
        "fanout",
        vec![fanout_port.to_string(), quote1.clone(), quiz.url()],
        fanout_port,
        "/text",
    );
    let hello_port = free_port();
    let hello = start(
        "hello",
        "hello",
        vec![hello_port.to_string()],
        hello_port,
        "/",
    );

    let load = Load {
        scratch,
        duration,
        connections,
        warm_up,
    };
    // A scenario `--only` leaves out is not run and gives no summary.
    let run =
        |report: &mut Report, name: &str, url: String, post: Option<wrk::Post>, watch: &[&Proc]| {
            report
                .selects(name)
                .then(|| scenario(report, &load, name, url, post, watch))
        };
    run(
        report,
        "hello GET / (baseline)",
        format!("{}/", hello.url()),
        None,
        &[&hello],
    );
    quote_against_nginx(report, &load)?;
    run(
        report,
        "fan-out floor GET /text (baseline)",
        format!("{}/text", fanout.url()),
        None,
        &[&fanout, &quotes[0], &quiz],
    );
    run(
        report,
        "kiada GET /text, 1 quote",
        format!("{}/text", kiada.url()),
        None,
        &[&kiada, &quotes[0], &quiz],
    );
    let three: Vec<&Proc> = [&kiada3]
        .into_iter()
        .chain(quotes.iter())
        .chain([&quiz])
        .collect();
    run(
        report,
        "kiada GET /text, 3 quotes behind the balancer (round robin)",
        format!("{}/text", kiada3.url()),
        None,
        &three,
    );
    run(
        report,
        "kiada GET /html",
        format!("{}/html", kiada.url()),
        None,
        &[&kiada, &quotes[0], &quiz],
    );
    run(
        report,
        "kiada GET /text, new connection per call",
        format!("{}/text", kiada_new.url()),
        None,
        &[&kiada_new, &quotes[0], &quiz],
    );
    run(
        report,
        "kiada GET /text, pooled without idle limit",
        format!("{}/text", kiada_pooled.url()),
        None,
        &[&kiada_pooled, &quotes[0], &quiz],
    );
    run(
        report,
        "quiz GET /questions/random",
        format!("{}/questions/random", quiz.url()),
        None,
        &[&quiz],
    );

    let post = wrk::Post {
        body: r#"{"questionId": 1, "answerIndex": 0}"#,
    };
    if report.selects(QUIZ_POST) {
        let answers_before = stored_answers(&quiz);
        let writes = scenario(
            report,
            &load,
            QUIZ_POST,
            format!("{}/questions/1/answers", quiz.url()),
            Some(post),
            &[&quiz],
        );
        let stored = stored_answers(&quiz) - answers_before;
        report.acknowledged = writes.requests - writes.errors_status;
        report.stored = stored;
        report.naive_inserts_per_s = naive_sqlite(&scratch.join("naive.db"), duration);
        println!(
            "naive SQLite loop: {:.0} commits/s",
            report.naive_inserts_per_s
        );
    }
    run(
        report,
        "quiz GET /stats",
        format!("{}/stats", quiz.url()),
        None,
        &[&quiz],
    );
    drop(quiz);

    // The same on PostgreSQL: a server of its own, flushing as in production (fsync on).
    if ![PG_READ, PG_POST, PG_STATS]
        .into_iter()
        .any(|name| report.selects(name))
    {
        return Ok(());
    }
    let Some(server) = testkit::Postgres::start("bench: quiz on PostgreSQL", &[]) else {
        return Ok(());
    };
    let database = server.create_database();
    let quiz_port = free_port();
    let quiz = start(
        "quiz-pg",
        "quiz",
        service_args(quiz_port, &["--database-url", &server.url(&database)]),
        quiz_port,
        "/healthz/ready",
    );
    run(
        report,
        PG_READ,
        format!("{}/questions/random", quiz.url()),
        None,
        &[&quiz],
    );
    if report.selects(PG_POST) {
        let writes = scenario(
            report,
            &load,
            PG_POST,
            format!("{}/questions/1/answers", quiz.url()),
            Some(post),
            &[&quiz],
        );
        // Counted by the server itself, not through quiz.
        let stored = server
            .sql(&database, "SELECT COUNT(*) FROM answers")
            .parse()
            .expect("a count");
        let naive_db = server.create_database();
        let naive_inserts_per_s = naive_postgres(&server.url(&naive_db), duration);
        println!("naive PostgreSQL loop: {naive_inserts_per_s:.0} commits/s");
        report.postgres = Some(report::PostgresRun {
            naive_inserts_per_s,
            acknowledged: writes.requests - writes.errors_status,
            stored,
        });
    }
    run(
        report,
        PG_STATS,
        format!("{}/stats", quiz.url()),
        None,
        &[&quiz],
    );
    Ok(())
}

/// quote against nginx, like with like, in adjacent pairs: without a line per request on either
/// side (quote at `RUST_LOG=warn`, nginx with `access_log off`), then with one on both, each
/// written to a file in the scratch directory (quote's default `info`, nginx's default
/// `combined`). Processes of their own, so that no other scenario's lines land in those files;
/// the logs are checked, then deleted before their pages are due to be written back to disk.
fn quote_against_nginx(report: &mut Report, load: &Load) -> Result<(), logs::LogCheck> {
    if ![NGINX_QUIET, QUOTE_QUIET, NGINX_LOGGED, QUOTE_LOGGED]
        .into_iter()
        .any(|name| report.selects(name))
    {
        return Ok(());
    }
    let nginx = report::Nginx::start(load.scratch);
    let quote_with = |name: &str, log: &Path, env: &[(&str, &str)]| {
        let port = free_port();
        let setup = Setup {
            env,
            stdout: Some(log),
        };
        let args = service_args(port, &["--pod-name", name]);
        Proc::start_with(
            name,
            &binary("quote"),
            &args,
            port,
            "/healthz/ready",
            &setup,
        )
        .0
    };
    let quiet_log = load.scratch.join("quote-warn.log");
    let logged_log = load.scratch.join("quote.log");
    let quiet = quote_with("quote-warn", &quiet_log, &[("RUST_LOG", "warn")]);
    let logged = quote_with("quote", &logged_log, &[]);
    let access_log = nginx.access_log().to_owned();

    if report.selects(NGINX_QUIET) {
        let before = logs::size(&access_log)?;
        scenario(report, load, NGINX_QUIET, nginx.url_quiet(), None, &[]);
        let after = logs::size(&access_log)?;
        if after != before {
            return Err(logs::LogCheck::Grew {
                scenario: NGINX_QUIET,
                path: access_log,
                before,
                after,
            });
        }
    }
    if report.selects(QUOTE_QUIET) {
        let url = format!("{}/quote", quiet.url());
        scenario(report, load, QUOTE_QUIET, url, None, &[&quiet]);
        logs::has_none(QUOTE_QUIET, &quiet_log, logs::QUOTE_LINE)?;
    }
    if report.selects(NGINX_LOGGED) {
        let s = scenario(report, load, NGINX_LOGGED, nginx.url_logged(), None, &[]);
        let line = logs::NGINX_LINE;
        logs::has_lines(NGINX_LOGGED, &access_log, line, s.requests, logs::SETTLE)?;
    }
    if report.selects(QUOTE_LOGGED) {
        let url = format!("{}/quote", logged.url());
        let s = scenario(report, load, QUOTE_LOGGED, url, None, &[&logged]);
        let line = logs::QUOTE_LINE;
        logs::has_lines(QUOTE_LOGGED, &logged_log, line, s.requests, logs::SETTLE)?;
    }
    drop((nginx, quiet, logged));
    for log in [&access_log, &quiet_log, &logged_log] {
        let _ = std::fs::remove_file(log);
    }
    Ok(())
}

/// The baseline for durable writes on PostgreSQL: one connection, one insert per transaction
/// (autocommit: one round trip and one WAL flush each), the table quiz uses.
fn naive_postgres(url: &str, duration: Duration) -> f64 {
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .expect("connect to PostgreSQL");
                tokio::spawn(connection);
                client
                    .batch_execute(
                        "SET synchronous_commit = on;
                         CREATE TABLE answers (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                         question_id BIGINT NOT NULL, answer_index BIGINT NOT NULL,
                         correct BOOLEAN NOT NULL, answered_at TIMESTAMPTZ NOT NULL)",
                    )
                    .await
                    .expect("schema");
                let insert = client
                    .prepare(
                        "INSERT INTO answers (question_id, answer_index, correct, answered_at)
                         VALUES (1, 0, true, now())",
                    )
                    .await
                    .expect("prepare");
                let started = Instant::now();
                let mut n = 0u64;
                while started.elapsed() < duration {
                    client.execute(&insert, &[]).await.expect("insert");
                    n += 1;
                }
                n as f64 / started.elapsed().as_secs_f64()
            })
        })
        .join()
        .unwrap()
    })
}

fn stored_answers(quiz: &Proc) -> u64 {
    let runtime = tokio::runtime::Handle::current();
    let url = format!("{}/stats", quiz.url());
    let stats: serde_json::Value = std::thread::scope(|s| {
        s.spawn(|| runtime.block_on(async { reqwest::get(url).await?.json().await }))
            .join()
            .unwrap()
    })
    .expect("quiz /stats");
    stats["answerCount"].as_u64().unwrap_or(0)
}

/// The baseline for durable writes: one insert per transaction, the pragmas quiz uses.
fn naive_sqlite(path: &Path, duration: Duration) -> f64 {
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .expect("WAL");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("FULL");
    conn.execute_batch(
        "CREATE TABLE answers (id INTEGER PRIMARY KEY AUTOINCREMENT, question_id INTEGER NOT NULL,
         answer_index INTEGER NOT NULL, correct INTEGER NOT NULL, answered_at TEXT NOT NULL)",
    )
    .expect("schema");
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.execute(
            "INSERT INTO answers (question_id, answer_index, correct, answered_at) VALUES (1, 0, 1, '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        conn.execute_batch("COMMIT").unwrap();
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

impl Outcome {
    pub fn check(name: &str, measured: f64, target: f64, at_least: bool) -> Outcome {
        let met = if at_least {
            measured >= target
        } else {
            measured <= target
        };
        Outcome {
            name: name.to_owned(),
            measured,
            target,
            at_least,
            met,
        }
    }
}
