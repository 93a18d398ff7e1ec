//! The README's flag tables against each binary's `--help`, so the two cannot drift apart.

use std::collections::BTreeMap;
use std::process::Command;

/// flag → (env, default) as a table or `--help` states them.
type Flags = BTreeMap<String, (Option<String>, Option<String>)>;

const README: &str = include_str!("../../README.md");

/// The flag rows (`| --flag | ENV | default | meaning |`) of the README section titled `title`.
fn readme_flags(title: &str) -> Flags {
    let section = README
        .split("\n## ")
        .find(|s| s.lines().next().is_some_and(|t| t.trim() == title))
        .unwrap_or_else(|| panic!("the README has no section '## {title}'"));
    let cell = |c: &str| c.trim().trim_matches('`').to_owned();
    section
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            assert!(
                cells.len() >= 4,
                "a flag row needs flag, env, default, meaning: {line}"
            );
            let env = Some(cell(cells[1])).filter(|e| !e.is_empty() && e != "-");
            (cell(cells[0]), (env, Some(cell(cells[2]))))
        })
        .collect()
}

/// The options `--help` lists, with their `[env: …]` and `[default: …]`.
fn help_flags(binary: &str) -> Flags {
    let out = Command::new(e2e::binary(binary))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags = Flags::new();
    let mut current: Option<(String, String)> = None;
    let finish = |entry: Option<(String, String)>, flags: &mut Flags| {
        if let Some((flag, text)) = entry {
            let bracket = |key: &str| {
                let start = text.find(&format!("[{key}: "))? + key.len() + 3;
                let end = start + text[start..].find(']')?;
                Some(text[start..end].trim_matches('"').to_owned())
            };
            let env = bracket("env").map(|e| e.split('=').next().unwrap().to_owned());
            flags.insert(flag, (env, bracket("default")));
        }
    };
    for line in help.lines() {
        let trimmed = line.trim_start();
        let option = trimmed
            .strip_prefix("-h, ")
            .or(trimmed.strip_prefix("-V, "))
            .unwrap_or(trimmed);
        if line.starts_with("  ") && option.starts_with("--") {
            finish(current.take(), &mut flags);
            let flag = option.split_whitespace().next().unwrap().to_owned();
            current = Some((flag, line.to_owned()));
        } else if let Some((_, text)) = &mut current {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    finish(current, &mut flags);
    flags.remove("--help");
    flags.remove("--version");
    flags
}

fn check(binary: &str, sections: &[&str]) {
    let mut documented = Flags::new();
    for section in sections {
        documented.extend(readme_flags(section));
    }
    let actual = help_flags(binary);
    let (doc_names, help_names): (Vec<_>, Vec<_>) =
        (documented.keys().collect(), actual.keys().collect());
    assert_eq!(
        doc_names, help_names,
        "{binary}: the README's flags differ from --help"
    );
    for (flag, (env, default)) in &actual {
        let (doc_env, doc_default) = &documented[flag];
        assert_eq!(doc_env, env, "{binary} {flag}: env in README vs --help");
        if let Some(default) = default {
            assert_eq!(
                doc_default.as_ref(),
                Some(default),
                "{binary} {flag}: default in README vs --help"
            );
        }
    }
}

#[test]
fn quote_flags_are_documented() {
    check("quote", &["What every service shares", "quote"]);
}

#[test]
fn quiz_flags_are_documented() {
    check("quiz", &["What every service shares", "quiz"]);
}

#[test]
fn kiada_flags_are_documented() {
    check("kiada", &["What every service shares", "kiada"]);
}

#[test]
fn suite_flags_are_documented() {
    check("suite", &["The local suite"]);
}
