//! `cargo run --release -p suite` after a workspace build (`./scripts/test`, the bench) must not
//! compile the dependencies again: cargo resolves features for the packages a command selects,
//! so every dependency of the suite alone must have the features the workspace gives it.

use std::collections::BTreeSet;
use std::process::Command;

/// Every package of the dependency tree with its features, as `cargo tree` resolves them.
fn tree(select: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--locked", "--manifest-path", root])
        .args(["-e", "normal,build", "--prefix", "none", "-f", "{p} [{f}]"])
        .args(select)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree {select:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.replace(" (*)", "").replace(" (proc-macro)", ""))
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_suite_alone_has_the_features_of_a_workspace_build() {
    let workspace = tree(&["--workspace"]);
    let alone = tree(&["-p", "suite"]);
    assert!(alone.len() > 100, "{} packages", alone.len());
    let differ: Vec<&String> = alone.difference(&workspace).collect();
    assert!(
        differ.is_empty(),
        "built alone, these get other features than in a workspace build (give the suite's \
         Cargo.toml the missing ones): {differ:#?}"
    );
}
