//! The code's shape, as the layout table of docs/development.md promises it: kiada's rooms
//! depend one way (pages and labs use the backends and the view; the backends and the view use
//! neither), no module of kiada imports one that imports it back, every room says what it
//! holds, and kit's top level stays at eight modules or fewer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every module of a crate's `src/` (but `main.rs`), by path (`["labs", "watch", "tally"]`),
/// with its source outside `#[cfg(test)]`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<Vec<String>, String>) {
        for entry in std::fs::read_dir(dir).expect("src/ reads") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, base, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("main.rs") {
                continue;
            }
            let rel = path.strip_prefix(base).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_owned();
            out.insert(parts, code);
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

/// The modules `code` (in module `at`) names through `crate::…` or `super::…` paths, resolved
/// to the longest module prefix that exists.
fn imports(at: &[String], code: &str, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let starts = (rest.starts_with("crate::") || rest.starts_with("super::"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path: Vec<&str> = rest[..end].split("::").filter(|s| !s.is_empty()).collect();
        let mut full: Vec<String> = Vec::new();
        let mut parts = path.as_slice();
        if parts.first() == Some(&"crate") {
            parts = &parts[1..];
        } else {
            full = at.to_vec();
            while parts.first() == Some(&"super") {
                full.pop();
                parts = &parts[1..];
            }
        }
        full.extend(parts.iter().map(|s| s.to_string()));
        // `use super::{a, b}` and `crate::x::{y, z}`: each item may be a module of its own.
        let mut targets = vec![full.clone()];
        if rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
            for item in rest[end + 1..close].split(',') {
                let name = item.trim().split([' ', ':']).next().unwrap_or("");
                if !name.is_empty() && name != "self" {
                    let mut t = full.clone();
                    t.push(name.to_owned());
                    targets.push(t);
                }
            }
        }
        for target in targets {
            let module = (0..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|m| known.contains(m));
            if let Some(m) = module
                && !m.is_empty()
                && m != at
            {
                found.insert(m);
            }
        }
        i += end.max(1);
    }
    found
}

fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mods = modules(src);
    let known: BTreeSet<_> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(m, code)| (m.clone(), imports(m, code, &known)))
        .collect()
}

/// A path of imports that comes back to where it started, if there is one.
fn cycle(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    fn visit(
        node: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            return Some(stack[at..].iter().map(|m| m.join("::")).collect());
        }
        if !done.insert(node.clone()) {
            return None;
        }
        stack.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn kiada_rooms_depend_one_way_without_circles() {
    let g = graph(&root().join("kiada/src"));
    assert!(g.len() > 30, "kiada's modules were found: {}", g.len());
    if let Some(c) = cycle(&g) {
        panic!("an import circle in kiada: {}", c.join(" -> "));
    }
    // What each room may not use.
    let forbidden: &[(&str, &[&str])] = &[
        ("backends", &["page", "labs", "view", "error", "tls"]),
        ("view", &["backends", "page", "labs", "error", "tls"]),
        ("page", &["labs", "tls"]),
        ("labs", &["page", "tls"]),
        (
            "terminal",
            &["backends", "page", "labs", "view", "error", "tls"],
        ),
    ];
    let mut wrong = Vec::new();
    for (module, uses) in &g {
        let Some(room) = module.first() else { continue };
        for (from, not) in forbidden {
            if room != from {
                continue;
            }
            for used in uses {
                if not.contains(&used[0].as_str()) {
                    wrong.push(format!("{} uses {}", module.join("::"), used.join("::")));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Every room folder opens with what it holds.
    for room in ["backends", "page", "labs", "view", "labs/watch", "labs/dns"] {
        let text = std::fs::read_to_string(root().join("kiada/src").join(room).join("mod.rs"))
            .unwrap_or_else(|e| panic!("{room}/mod.rs: {e}"));
        assert!(text.starts_with("//! "), "{room}/mod.rs says what it holds");
    }
}

#[test]
fn the_cycle_check_finds_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::write(dir.path().join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(dir.path().join("a/mod.rs"), "use crate::b::Thing;\n").unwrap();
    std::fs::write(dir.path().join("b.rs"), "use super::a::{Other, self};\n").unwrap();
    let g = graph(dir.path());
    assert_eq!(cycle(&g).map(|c| c.len()), Some(2), "{g:?}");
    std::fs::write(dir.path().join("b.rs"), "pub struct Thing;\n").unwrap();
    assert_eq!(cycle(&graph(dir.path())), None);
}

#[test]
fn kit_has_at_most_eight_top_level_modules() {
    let lib = std::fs::read_to_string(root().join("kit/src/lib.rs")).unwrap();
    let mods: Vec<&str> = lib
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("mod ") || l.starts_with("pub mod ")
        })
        .collect();
    assert!(mods.len() <= 8, "{mods:#?}");
}
