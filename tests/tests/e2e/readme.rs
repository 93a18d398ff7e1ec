//! The README and the pages of `docs/` checked against what they describe: the flag tables
//! against each binary's `--help`, so the two cannot drift apart; every command against the
//! objects the manifests define; every link between the pages against the file and the section
//! it names.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// flag → (env, default) as a table or `--help` states them.
type Flags = BTreeMap<String, (Option<String>, Option<String>)>;

pub(crate) const README: &str = include_str!("../../../README.md");
pub(crate) const GUIDE: &str = include_str!("../../../docs/services-lab.md");
const TEACHING: &str = include_str!("../../../docs/teaching.md");
pub(crate) const LOCAL_SUITE: &str = include_str!("../../../docs/local-suite.md");
pub(crate) const REFERENCE: &str = include_str!("../../../docs/reference.md");
pub(crate) const OPERATIONS: &str = include_str!("../../../docs/operations.md");
pub(crate) const DEVELOPMENT: &str = include_str!("../../../docs/development.md");

/// The README and every page of `docs/`, by their path in the repository.
pub(crate) const DOCS: [(&str, &str); 7] = [
    ("README.md", README),
    ("docs/services-lab.md", GUIDE),
    ("docs/teaching.md", TEACHING),
    ("docs/local-suite.md", LOCAL_SUITE),
    ("docs/reference.md", REFERENCE),
    ("docs/operations.md", OPERATIONS),
    ("docs/development.md", DEVELOPMENT),
];

/// A Markdown heading line outside code blocks: its level (the number of `#`) and its text.
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.len() - line.trim_start_matches('#').len();
    let text = line[level..].strip_prefix(' ')?;
    (1..=6).contains(&level).then_some((level, text.trim()))
}

/// The lines of a Markdown text, each with its heading when it is one outside a code block.
fn lines_and_headings(markdown: &str) -> Vec<(&str, Option<(usize, &str)>)> {
    let mut fenced = false;
    markdown
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return (line, None);
            }
            (line, if fenced { None } else { heading(line) })
        })
        .collect()
}

/// The section of a Markdown text under the heading `title` (any level), up to the next heading
/// of the same level or above; its subsections included.
fn section(markdown: &str, title: &str) -> Option<String> {
    let lines = lines_and_headings(markdown);
    let start = lines
        .iter()
        .position(|(_, h)| h.is_some_and(|(_, text)| text == title))?;
    let level = lines[start].1.unwrap().0;
    let body: Vec<&str> = lines[start..]
        .iter()
        .enumerate()
        .take_while(|(i, (_, h))| *i == 0 || !h.is_some_and(|(l, _)| l <= level))
        .map(|(_, (line, _))| *line)
        .collect();
    Some(body.join("\n"))
}

/// The flag rows (`| --flag | ENV | default | meaning |`) of the sections titled `title`, in
/// the README or whichever page of `docs/` holds them.
fn readme_flags(title: &str) -> Flags {
    let sections: Vec<String> = DOCS
        .iter()
        .filter_map(|(_, text)| section(text, title))
        .collect();
    assert!(
        !sections.is_empty(),
        "neither the README nor docs/ has a section '{title}'"
    );
    let cell = |c: &str| c.trim().trim_matches('`').to_owned();
    sections
        .iter()
        .flat_map(|s| s.lines())
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

// ---------------------------------------------------------------------------------------------
// Commands in the README and the pages of docs/ name objects that exist.

/// What the manifests (suite and experiments) and the kind configurations define, as far as a
/// command can name it.
#[derive(Default)]
struct Lab {
    /// Service name → (type, headless, ports, ExternalName target).
    services: BTreeMap<String, ServiceFacts>,
    deployments: BTreeSet<String>,
    statefulsets: BTreeSet<String>,
    pods: BTreeSet<String>,
    slices: BTreeSet<String>,
    /// (hostname, subdomain) of pods that have their own DNS name.
    pod_names: BTreeSet<(String, String)>,
    /// Every `key=value` label on an object or a pod template.
    labels: BTreeSet<(String, String)>,
    /// Container ports of pods, by app label.
    container_ports: BTreeMap<String, BTreeSet<i64>>,
    /// kind host port → node port it reaches.
    host_ports: BTreeMap<i64, i64>,
}

#[derive(Default)]
struct ServiceFacts {
    headless: bool,
    app: Option<String>,
    ports: BTreeSet<i64>,
    node_ports: BTreeSet<i64>,
    external_name: Option<String>,
}

/// Names that live outside the suite but exist in every cluster.
const CLUSTER_SERVICES: [&str; 2] = ["kubernetes", "kubernetes.default"];

pub(crate) fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    std::fs::read_to_string(root.join(path)).unwrap()
}

pub(crate) fn yaml_docs(dir: &str) -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_yaml_ng::Value::deserialize(doc).unwrap();
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

fn str_map(v: &serde_yaml_ng::Value) -> Vec<(String, String)> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
        .collect()
}

fn lab() -> Lab {
    let mut lab = Lab::default();
    let mut docs = yaml_docs("manifests");
    docs.extend(yaml_docs("manifests/experiments"));
    docs.extend(yaml_docs("manifests/postgres"));
    let null = serde_yaml_ng::Value::Null;
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        lab.labels.extend(str_map(&doc["metadata"]["labels"]));
        let template = &doc["spec"]["template"];
        let (pod_meta, pod_spec) = match kind {
            "Deployment" | "StatefulSet" => (&template["metadata"], &template["spec"]),
            "Pod" => (&doc["metadata"], &doc["spec"]),
            _ => (&null, &null),
        };
        let pod_labels = str_map(&pod_meta["labels"]);
        lab.labels.extend(pod_labels.iter().cloned());
        if let Some(app) = pod_labels.iter().find(|(k, _)| k == "app").map(|(_, v)| v) {
            let ports = lab.container_ports.entry(app.clone()).or_default();
            for c in pod_spec["containers"].as_sequence().into_iter().flatten() {
                for p in c["ports"].as_sequence().into_iter().flatten() {
                    ports.extend(p["containerPort"].as_i64());
                }
            }
        }
        match kind {
            "Deployment" => {
                lab.deployments.insert(name);
            }
            // Its pods are NAME-0, NAME-1, …
            "StatefulSet" => {
                let replicas = doc["spec"]["replicas"].as_i64().unwrap_or(1);
                lab.pods
                    .extend((0..replicas).map(|i| format!("{name}-{i}")));
                lab.statefulsets.insert(name);
            }
            "Pod" => {
                if let (Some(h), Some(s)) = (
                    doc["spec"]["hostname"].as_str(),
                    doc["spec"]["subdomain"].as_str(),
                ) {
                    lab.pod_names.insert((h.to_owned(), s.to_owned()));
                }
                lab.pods.insert(name);
            }
            "EndpointSlice" => {
                lab.slices.insert(name);
            }
            "Service" => {
                let spec = &doc["spec"];
                let ports = spec["ports"].as_sequence().into_iter().flatten();
                let facts = ServiceFacts {
                    headless: spec["clusterIP"].as_str() == Some("None"),
                    app: doc["metadata"]["labels"]["app"].as_str().map(str::to_owned),
                    ports: ports.clone().filter_map(|p| p["port"].as_i64()).collect(),
                    node_ports: ports.filter_map(|p| p["nodePort"].as_i64()).collect(),
                    external_name: spec["externalName"].as_str().map(str::to_owned),
                };
                lab.labels
                    .insert(("kubernetes.io/service-name".into(), name.clone()));
                lab.services.insert(name, facts);
            }
            _ => {}
        }
    }
    let config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&repo_file("kind/cluster.yaml")).unwrap();
    for node in config["nodes"].as_sequence().into_iter().flatten() {
        for m in node["extraPortMappings"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            if let (Some(h), Some(c)) = (m["hostPort"].as_i64(), m["containerPort"].as_i64()) {
                lab.host_ports.insert(h, c);
            }
        }
    }
    lab
}

/// Command lines in a Markdown text: the lines of `sh` code blocks (comments cut off; a line
/// commented `# fails on purpose` is left out) and the inline code spans that run kubectl,
/// curl, wget, nslookup or ping.
fn commands(markdown: &str) -> Vec<String> {
    snippets(markdown)
        .commands
        .into_iter()
        .filter(|s| !s.on_purpose)
        .map(|s| s.command)
        .collect()
}

/// One command line of a Markdown text, where it stands.
pub(crate) struct Snippet {
    pub command: String,
    /// Commented `# fails on purpose`: its failure is the lesson.
    pub on_purpose: bool,
    /// The `sh` block it is in (an index into [`Snippets::outputs`]); `None` for an inline span.
    pub block: Option<usize>,
}

pub(crate) struct Snippets {
    pub commands: Vec<Snippet>,
    /// For each `sh` block, the lines of the `text` block that follows it with nothing but blank
    /// lines between: what those commands print, as the text shows it.
    pub outputs: Vec<Option<Vec<String>>>,
}

/// Every command line of a Markdown text (see [`commands`]), with the output shown after its
/// block.
pub(crate) fn snippets(markdown: &str) -> Snippets {
    let mut commands = Vec::new();
    let mut outputs: Vec<Option<Vec<String>>> = Vec::new();
    let mut block: Option<bool> = None; // Some(is_shell) inside a fenced block
    // Inside a text block that belongs to the last sh block.
    let mut output: Option<Vec<String>> = None;
    // The last sh block closed, and only blank lines since.
    let mut after_shell = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            block = match block {
                Some(is_shell) => {
                    if let Some(lines) = output.take() {
                        *outputs.last_mut().unwrap() = Some(lines);
                    }
                    after_shell = is_shell;
                    None
                }
                None => {
                    let lang = lang.trim();
                    if lang == "sh" {
                        outputs.push(None);
                    } else if lang == "text" && after_shell {
                        output = Some(Vec::new());
                    }
                    after_shell = false;
                    Some(lang == "sh")
                }
            };
            continue;
        }
        match block {
            Some(true) => {
                let on_purpose = line.contains("# fails on purpose");
                let command = match line.find(" # ") {
                    Some(i) => &line[..i],
                    None => line,
                };
                if !command.trim_start().starts_with('#') && !command.trim().is_empty() {
                    commands.push(Snippet {
                        command: command.to_owned(),
                        on_purpose,
                        block: Some(outputs.len() - 1),
                    });
                }
            }
            Some(false) => {
                if let Some(lines) = &mut output {
                    lines.push(line.to_owned());
                }
            }
            None => {
                if !line.trim().is_empty() {
                    after_shell = false;
                }
                for (i, span) in line.split('`').enumerate() {
                    let tools = ["kubectl ", "curl ", "wget ", "nslookup ", "ping "];
                    if i % 2 == 1 && tools.iter().any(|t| span.contains(t)) {
                        commands.push(Snippet {
                            command: span.replace("\\|", "|"),
                            on_purpose: false,
                            block: None,
                        });
                    }
                }
            }
        }
    }
    Snippets { commands, outputs }
}

/// The words of a command line as a shell would split them ([`words`]), with `$(`, `)`, `;`
/// and `|` as separators.
fn tokens(command: &str) -> Vec<String> {
    words(&command.replace("$(", " ").replace([')', ';', '|'], " "))
}

/// The words of one command as the shell splits them (quotes group, `\` escapes).
pub(crate) fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// The flags of `tool` that take a separate argument.
fn flags_with_argument(tool: &str) -> &'static [&'static str] {
    match tool {
        "curl" => &[
            "-m",
            "-X",
            "-H",
            "-d",
            "-o",
            "-w",
            "-u",
            "-A",
            "--resolve",
            "--cacert",
            "--max-time",
            "--connect-timeout",
        ],
        "wget" => &["-O", "-T", "-U"],
        "ping" => &["-c", "-W", "-w", "-s", "-i"],
        _ => &[],
    }
}

/// The mistakes in one command line, as messages.
fn check_command(lab: &Lab, command: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let t = tokens(command);
    let mut nested = Vec::new();
    let mut err = |what: String| errors.push(format!("{what} in: {}", command.trim()));
    for (i, tok) in t.iter().enumerate() {
        // A quoted script (sh -c '…') holds commands of its own.
        if tok.contains(' ') {
            nested.extend(check_command(lab, tok));
            continue;
        }
        if tok.contains('…') {
            continue;
        }
        let next = t.get(i + 1).map(String::as_str);
        // kind/name references.
        if let Some((kind, n)) = tok.split_once('/') {
            let n = n.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            match kind {
                "svc" | "service" => match lab.services.get(n) {
                    None => err(format!("no Service {n}")),
                    Some(s) => {
                        // port-forward svc/NAME LOCAL:REMOTE: REMOTE is a Service port.
                        if let Some(remote) = next
                            .filter(|_| t.iter().any(|x| x == "port-forward"))
                            .and_then(|p| p.rsplit(':').next())
                            .and_then(|p| p.parse::<i64>().ok())
                            && !s.ports.contains(&remote)
                        {
                            err(format!("Service {n} has no port {remote}"));
                        }
                    }
                },
                "deploy" | "deployment" | "deployments" if !lab.deployments.contains(n) => {
                    err(format!("no Deployment {n}"))
                }
                "sts" | "statefulset" if !lab.statefulsets.contains(n) => {
                    err(format!("no StatefulSet {n}"))
                }
                "pod" if !lab.pods.contains(n) && !n.starts_with('<') => err(format!("no Pod {n}")),
                _ => {}
            }
        }
        // kubectl VERB KIND NAME
        if i >= 1 && t.iter().take(i).any(|x| x == "kubectl") {
            let verbs = [
                "get", "describe", "patch", "delete", "edit", "label", "annotate",
            ];
            if verbs.contains(&t[i - 1].as_str())
                && let Some(n) =
                    next.filter(|n| !n.starts_with('-') && !n.contains(',') && !n.starts_with('<'))
            {
                match tok.as_str() {
                    "svc" | "service" if !lab.services.contains_key(n) => {
                        err(format!("no Service {n}"))
                    }
                    "deploy" | "deployment" if !lab.deployments.contains(n) => {
                        err(format!("no Deployment {n}"))
                    }
                    "sts" | "statefulset" if !lab.statefulsets.contains(n) => {
                        err(format!("no StatefulSet {n}"))
                    }
                    "endpointslice" | "endpointslices"
                        if !lab.slices.contains(n) && !n.starts_with('-') =>
                    {
                        err(format!("no EndpointSlice {n}"))
                    }
                    "pod" if !lab.pods.contains(n) => err(format!("no Pod {n}")),
                    _ => {}
                }
            }
        }
        // kubectl exec [flags] POD --
        if tok == "exec" && i >= 1 && t[i - 1] == "kubectl" {
            let mut j = i + 1;
            while j < t.len() && t[j].starts_with('-') && t[j] != "--" {
                j += if ["-n", "-c", "--namespace", "--container"].contains(&t[j].as_str()) {
                    2
                } else {
                    1
                };
            }
            if let Some(target) = t.get(j)
                && !target.contains('/')
                && !target.starts_with('<')
                && !target.contains('…')
                && target != "--"
                && !lab.pods.contains(target)
            {
                err(format!("no Pod {target}"));
            }
        }
        // Label selectors.
        let selector = match tok.as_str() {
            "-l" | "--selector" => next,
            _ => tok
                .strip_prefix("--selector=")
                .or(tok.strip_prefix("-l").filter(|s| s.contains('='))),
        };
        if let Some(selector) = selector {
            for term in selector.split(',') {
                if let Some((k, v)) = term.split_once('=')
                    && !lab.labels.contains(&(k.to_owned(), v.to_owned()))
                {
                    err(format!("no object carries label {k}={v}"));
                }
            }
        }
        // Hosts and ports that curl, wget, nslookup and ping are pointed at.
        if ["curl", "wget", "nslookup", "ping"].contains(&tok.as_str()) {
            let mut j = i + 1;
            while j < t.len() && t[j].starts_with('-') {
                j += if flags_with_argument(tok).contains(&t[j].as_str()) {
                    2
                } else {
                    1
                };
            }
            if let Some(target) = t.get(j) {
                check_target(lab, tok, target, &mut err);
            }
        }
    }
    errors.extend(nested);
    errors
}

fn check_target(lab: &Lab, tool: &str, target: &str, err: &mut impl FnMut(String)) {
    let rest = target
        .strip_prefix("http://")
        .or(target.strip_prefix("https://"))
        .unwrap_or(target);
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<i64>().ok()),
        None => (authority, None),
    };
    if host.is_empty() || host.contains('=') || host.contains('{') {
        return;
    }
    let node_port = port.filter(|p| (30000..=32767).contains(p));
    // On the host (kind's port mappings) or a node: a node port of some Service.
    if host == "localhost"
        || host == "127.0.0.1"
        || host.starts_with('<')
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        if let Some(p) = node_port {
            let reaches = if host == "localhost" || host == "127.0.0.1" {
                lab.host_ports.get(&p).copied()
            } else {
                Some(p)
            };
            let known =
                reaches.is_some_and(|np| lab.services.values().any(|s| s.node_ports.contains(&np)));
            if !known {
                err(format!("port {p} reaches no NodePort of the lab"));
            }
        }
        return;
    }
    if host
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
    {
        return;
    }
    // A name the cluster DNS answers for namespace kiada: SERVICE[.kiada[.svc[.cluster.local]]],
    // or HOSTNAME.SUBDOMAIN[…] of a pod with its own name.
    let labels: Vec<&str> = host.split('.').collect();
    let suffix = labels[1..].join(".");
    let in_namespace = |from: usize| {
        let tail = labels[from..].join(".");
        ["", "kiada", "kiada.svc", "kiada.svc.cluster.local"].contains(&tail.as_str())
    };
    if CLUSTER_SERVICES.contains(&host)
        || (labels[0] == "kubernetes" && suffix.starts_with("default"))
    {
        return;
    }
    let pod_name = labels.len() >= 2
        && lab
            .pod_names
            .contains(&(labels[0].to_owned(), labels[1].to_owned()))
        && in_namespace(2);
    // A bare hostname, found through the extra search domain of the dnsConfig client.
    let searched_pod_name = labels.len() == 1 && lab.pod_names.iter().any(|(h, _)| h == host);
    if pod_name || searched_pod_name {
        let ok = port.is_none_or(|p| lab.container_ports.values().any(|ports| ports.contains(&p)));
        if !ok || (port.is_none() && tool != "nslookup" && tool != "ping") {
            err(format!("{host} is a pod: use its container port"));
        }
        return;
    }
    if !in_namespace(1) {
        // Outside the namespace's names: an external host (kiada.example.com and the like).
        if labels.len() > 1 {
            return;
        }
        err(format!("no Service {host}"));
        return;
    }
    let Some(svc) = lab.services.get(labels[0]) else {
        err(format!("no Service {}", labels[0]));
        return;
    };
    if tool == "nslookup" || tool == "ping" {
        return;
    }
    let port = port.unwrap_or(if target.starts_with("https://") {
        443
    } else {
        80
    });
    let ports: BTreeSet<i64> = if let Some(target) = &svc.external_name {
        let to = target.split('.').next().unwrap_or_default();
        lab.services
            .get(to)
            .map(|s| s.ports.clone())
            .unwrap_or_default()
    } else if svc.headless {
        // The name leads to the pods themselves.
        svc.app
            .as_ref()
            .and_then(|a| lab.container_ports.get(a))
            .cloned()
            .unwrap_or_default()
    } else {
        svc.ports.clone()
    };
    if !ports.contains(&port) {
        err(format!("Service {} has no port {port}", labels[0]));
    }
}

fn check_markdown(lab: &Lab, markdown: &str) -> Vec<String> {
    commands(markdown)
        .iter()
        .flat_map(|c| check_command(lab, c))
        .collect()
}

#[test]
fn commands_in_the_readme_and_the_docs_name_what_exists() {
    let lab = lab();
    for (file, text) in DOCS {
        let found = commands(text);
        assert!(found.len() > 2, "{file}: {} commands found", found.len());
        let errors = check_markdown(&lab, text);
        assert!(errors.is_empty(), "{file}:\n{}", errors.join("\n"));
    }
}

#[test]
fn the_command_check_finds_wrong_names_ports_and_labels() {
    let lab = lab();
    let wrong = [
        "kubectl exec deploy/kiada -- curl -s quotes/",
        "kubectl exec deploy/kiadaa -- curl -s quote/",
        "kubectl exec deploy/kiada -- curl -s quote:8080/",
        "kubectl exec deploy/kiada -- curl -s quiz.kiada.svc.cluster.local:81/",
        "kubectl exec deploy/kiada -- nslookup quote-headles",
        "kubectl exec deploy/kiada -- curl -s tips.quote-headless/",
        "kubectl get pods -n kiada -l app=quotes",
        "kubectl get endpointslices -l kubernetes.io/service-name=qoute",
        "kubectl port-forward -n kiada svc/kiada 8080:8080",
        "kubectl get svc kiada-nodeport -n kiada",
        "kubectl exec -n kiada dns-clients -- cat /etc/resolv.conf",
        "kubectl patch endpointslice quote-manual-2 -n kiada --type=merge -p {}",
        "curl localhost:30083",
        "curl http://<node-ip>:30099",
    ];
    for command in wrong {
        let md = format!("```sh\n{command}\n```\n");
        assert!(
            !check_markdown(&lab, &md).is_empty(),
            "the check let this pass: {command}"
        );
    }
    let right = [
        "kubectl exec deploy/kiada -- curl -s quote/",
        "kubectl exec -n kiada deploy/kiada -- curl -s quiz.kiada.svc.cluster.local/",
        "kubectl exec -n kiada deploy/kiada -- curl -s tips.quote-headless:8080/",
        "kubectl exec -n kiada deploy/kiada -- curl -s quiz-alias/",
        "kubectl get svc,endpointslices,pods -n kiada -l app=quote",
        "kubectl port-forward -n kiada svc/kiada 8080:80",
        "curl localhost:30082",
    ];
    for command in right {
        let md = format!("```sh\n{command}\n```\n");
        let errors = check_markdown(&lab, &md);
        assert!(errors.is_empty(), "{command}: {errors:?}");
    }
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings, as GitHub makes them (a repeated one gets `-1`,
/// `-2`, …).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, h) in lines_and_headings(markdown) {
        if let Some((_, text)) = h {
            let base = slug(text);
            let n = seen.entry(base.clone()).or_default();
            anchors.insert(if *n == 0 { base } else { format!("{base}-{n}") });
            *n += 1;
        }
    }
    anchors
}

/// The targets of the Markdown links (`[text](target)`, `![alt](target)`) outside code blocks.
fn link_targets(markdown: &str) -> Vec<&str> {
    lines_and_headings(markdown)
        .into_iter()
        .scan(false, |fenced, (line, _)| {
            if line.trim_start().starts_with("```") {
                *fenced = !*fenced;
                return Some(None);
            }
            Some((!*fenced).then_some(line))
        })
        .flatten()
        .flat_map(|line| line.split("](").skip(1))
        .filter_map(|rest| rest.split(')').next())
        .collect()
}

/// `path` relative to the folder of the file `from`, both from the repository's root, with `.`
/// and `..` resolved; `None` when it climbs out of the repository.
fn resolve(from: &str, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for part in path.split('/') {
        match part {
            "." | "" => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// What is wrong with the relative links of the page `file` (a path from the repository's
/// root): a file that does not exist, or an anchor that no heading of the README or a page of
/// `docs/` makes.
fn broken_links(file: &str, markdown: &str) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let mut errors = Vec::new();
    for target in link_targets(markdown) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target, None),
        };
        let Some(resolved) = (if path.is_empty() {
            Some(file.to_owned())
        } else {
            resolve(file, path)
        }) else {
            errors.push(format!("{file}: {target}: outside the repository"));
            continue;
        };
        if !root.join(&resolved).exists() {
            errors.push(format!("{file}: {target}: no file {resolved}"));
            continue;
        }
        if let Some(anchor) = anchor {
            let Some((_, text)) = DOCS.iter().find(|(f, _)| *f == resolved) else {
                errors.push(format!(
                    "{file}: {target}: an anchor into {resolved}, not a page of the docs"
                ));
                continue;
            };
            if !anchors(text).contains(anchor) {
                errors.push(format!(
                    "{file}: {target}: no section #{anchor} in {resolved}"
                ));
            }
        }
    }
    errors
}

#[test]
fn links_between_the_readme_and_the_docs_find_their_file_and_section() {
    let into_the_guide = link_targets(README)
        .into_iter()
        .filter(|t| t.starts_with("docs/services-lab.md#"))
        .count();
    assert!(into_the_guide > 5, "the README links into the guide");
    for (file, text) in DOCS {
        let errors = broken_links(file, text);
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
    // The README reaches every page of docs/, and the layout table in two steps.
    let on_disk: BTreeSet<String> = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("docs"),
    )
    .unwrap()
    .map(|e| e.unwrap().file_name().into_string().unwrap())
    .filter(|name| name.ends_with(".md"))
    .map(|name| format!("docs/{name}"))
    .collect();
    let listed: BTreeSet<String> = DOCS[1..].iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(
        on_disk, listed,
        "every page of docs/ is in DOCS, so it is checked"
    );
    let linked: BTreeSet<String> = link_targets(README)
        .into_iter()
        .filter_map(|t| t.split('#').next())
        .map(str::to_owned)
        .collect();
    for page in &listed {
        assert!(linked.contains(page), "the README links to {page}");
    }
    assert!(
        link_targets(README).contains(&"docs/development.md#layout")
            && section(DEVELOPMENT, "Layout").is_some_and(|s| s.contains("| `kit/` |")),
        "the README links to the layout table"
    );
}

#[test]
fn the_link_check_finds_missing_files_and_sections() {
    let wrong = [
        ("README.md", "[x](docs/services-lab.md#no-such-section)"),
        ("README.md", "[x](docs/no-such-page.md)"),
        ("README.md", "[x](#no-such-section)"),
        ("docs/reference.md", "[x](docs/services-lab.md)"),
        ("docs/reference.md", "[x](../README.md#no-such-section)"),
        ("docs/reference.md", "[x](../../outside.md)"),
    ];
    for (file, link) in wrong {
        assert!(
            !broken_links(file, link).is_empty(),
            "the check let this pass in {file}: {link}"
        );
    }
    let right = [
        ("README.md", "[x](docs/services-lab.md#session-affinity)"),
        ("docs/reference.md", "[x](services-lab.md#session-affinity)"),
        ("docs/services-lab.md", "[x](../README.md#kiada-check)"),
        ("docs/reference.md", "[x](#kiada-check)"),
        ("docs/reference.md", "![x](images/page.png)"),
    ];
    for (file, link) in right {
        let errors = broken_links(file, link);
        assert!(errors.is_empty(), "{file}: {link}: {errors:?}");
    }
}
