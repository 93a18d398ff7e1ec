//! `--compare REV`: the same scenarios against this build (A) and the build of another commit
//! (B), alternating A B B A … in one run, so that a change is judged by a ratio measured under
//! the same conditions rather than by two reports taken at different times.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::procs::{Proc, binary, free_port};
use crate::{service_args, workspace, wrk};

/// Which build a process comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    /// This checkout, built by the harness.
    This,
    /// The commit given to `--compare`.
    Other,
}

/// Builds `rev` in a worktree of its own under `target/compare/` and returns its binaries'
/// directory. The worktree and the build are kept, so a second comparison starts at once.
pub fn build(rev: &str) -> PathBuf {
    let root = workspace();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(&root)
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let commit = git(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")]);
    let short = &commit[..7];
    let compare = root.join("target/compare");
    let source = compare.join(format!("src-{short}"));
    if !source.join("Cargo.toml").exists() {
        let _ = git(&["worktree", "prune"]);
        git(&[
            "worktree",
            "add",
            "--detach",
            source.to_str().expect("a UTF-8 path"),
            &commit,
        ]);
    }
    // One target directory for every compared commit: what they share is not built again.
    let target = compare.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&source)
        .args(["build", "--release", "--locked", "--workspace", "--bins"])
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {rev} failed");
    println!("B = {rev} ({short}), built in {}", target.display());
    target.join("release")
}

/// One scenario as both builds serve it.
struct Pair {
    name: &'static str,
    a: Vec<f64>,
    b: Vec<f64>,
}

/// Runs quote `/quote` and kiada `/text` (over its own quote and quiz) from both builds,
/// `rounds` times each, and prints every measurement and the median ratio B ÷ A.
pub fn run(
    other: &Path,
    rounds: usize,
    scratch: &Path,
    duration: Duration,
    connections: u32,
    warm_up: Duration,
) {
    let program = |side: Side, name: &str| match side {
        Side::This => binary(name),
        Side::Other => other.join(name),
    };
    let start = |side: Side, name: &str, extra: &[&str]| {
        let port = free_port();
        let label = match side {
            Side::This => format!("{name} (A)"),
            Side::Other => format!("{name} (B)"),
        };
        let args = service_args(port, extra);
        Proc::start(&label, &program(side, name), &args, port, "/healthz/ready").0
    };
    let measure = |url: &str| {
        if !warm_up.is_zero() {
            wrk::run(url, connections, warm_up, None, scratch);
        }
        wrk::run(url, connections, duration, None, scratch).rps()
    };
    let mut quote = Pair {
        name: "quote GET /quote",
        a: Vec::new(),
        b: Vec::new(),
    };
    let mut kiada = Pair {
        name: "kiada GET /text, 1 quote",
        a: Vec::new(),
        b: Vec::new(),
    };
    for round in 0..rounds {
        // A B, then B A: neither side always goes first on a warmer machine.
        let order = match round % 2 {
            0 => [Side::This, Side::Other],
            _ => [Side::Other, Side::This],
        };
        for side in order {
            let q = start(side, "quote", &[]);
            let rps = measure(&format!("{}/quote", q.url()));
            push(&mut quote, side, rps);
            let db = scratch.join(format!("compare-{round}.db"));
            let quiz = start(side, "quiz", &["--db", db.to_str().expect("a UTF-8 path")]);
            let quote_url = format!("{}/quote", q.url());
            let k = start(
                side,
                "kiada",
                &[
                    "--no-tls",
                    "--quote-url",
                    &quote_url,
                    "--quiz-url",
                    &quiz.url(),
                ],
            );
            let rps = measure(&format!("{}/text", k.url()));
            push(&mut kiada, side, rps);
        }
        println!(
            "round {}: quote A {:.0} B {:.0}; kiada A {:.0} B {:.0}",
            round + 1,
            quote.a[round],
            quote.b[round],
            kiada.a[round],
            kiada.b[round]
        );
    }
    println!("\n| scenario | A req/s (median) | B req/s (median) | B ÷ A |");
    println!("|---|---:|---:|---:|");
    for pair in [&quote, &kiada] {
        let (a, b) = (median(&pair.a), median(&pair.b));
        println!("| {} | {a:.0} | {b:.0} | {:.3} |", pair.name, b / a);
    }
}

fn push(pair: &mut Pair, side: Side, rps: f64) {
    match side {
        Side::This => pair.a.push(rps),
        Side::Other => pair.b.push(rps),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}
