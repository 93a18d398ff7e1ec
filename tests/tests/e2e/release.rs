//! The images and the release, as far as this machine (no container engine, no GitHub) can check
//! them: the Dockerfile cross-compiles (every stage that runs a command runs on the build
//! machine's platform and builds for the target's musl triple with the xx helpers; the target's
//! stages only copy), `make images` and `make multiarch` use it, nothing asks for QEMU, and
//! the workflows in `.github/workflows/` use only names, tags and paths that the Makefile, the
//! Dockerfile, the manifests and the docs use. actionlint checks the workflows' syntax
//! (scripts/check-manifests).

use std::collections::BTreeSet;
use std::path::Path;

use serde_yaml_ng::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A line's code without its comment (a `#` at the start of a line or after a space).
fn code(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('#') {
        return "";
    }
    line.find(" #").map_or(line, |i| &line[..i])
}

/// The GitHub repository `owner/name` of Cargo.toml's `repository`.
fn repository() -> String {
    let cargo = read("Cargo.toml");
    let url = cargo
        .lines()
        .find_map(|l| l.strip_prefix("repository = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("repository in Cargo.toml");
    url.strip_prefix("https://github.com/")
        .expect("a GitHub repository")
        .to_owned()
}

/// Where the release workflow pushes the images: ghcr.io/<owner>/<repository>, lower case.
pub(crate) fn published_registry() -> String {
    format!("ghcr.io/{}", repository().to_lowercase())
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile.

#[derive(Debug)]
struct Stage {
    name: String,
    base: String,
    platform: Option<String>,
    /// (instruction, arguments), continuation lines joined.
    instructions: Vec<(String, String)>,
}

fn stages(dockerfile: &str) -> Vec<Stage> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut out: Vec<Stage> = Vec::new();
    for line in joined.iter().filter(|l| !l.is_empty()) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let word = word.to_ascii_uppercase();
        if word == "FROM" {
            let mut parts: Vec<&str> = rest.split_whitespace().collect();
            let platform = parts
                .first()
                .and_then(|p| p.strip_prefix("--platform="))
                .map(str::to_owned);
            if platform.is_some() {
                parts.remove(0);
            }
            let name = match parts.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
            out.push(Stage {
                name,
                base: parts[0].to_owned(),
                platform,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = out.last_mut() {
            stage.instructions.push((word, rest.to_owned()));
        }
    }
    out
}

fn stage<'a>(all: &'a [Stage], name: &str) -> Option<&'a Stage> {
    all.iter().find(|s| s.name == name)
}

/// Whether a stage runs on the build machine's platform: its own `--platform=$BUILDPLATFORM`, or
/// that of the stage it starts from.
fn on_build_platform(all: &[Stage], s: &Stage) -> bool {
    s.platform.as_deref() == Some("$BUILDPLATFORM")
        || stage(all, &s.base).is_some_and(|b| on_build_platform(all, b))
}

/// What is wrong with a Dockerfile for building `targets` for other platforms without emulation.
fn cross_compile_problems(dockerfile: &str, targets: &[&str]) -> Vec<String> {
    let all = stages(dockerfile);
    let mut problems = Vec::new();
    for s in &all {
        if s.instructions.iter().any(|(w, _)| w == "RUN") && !on_build_platform(&all, s) {
            problems.push(format!(
                "stage {:?} (FROM {}) runs a command on the target's platform: that needs QEMU",
                s.name, s.base
            ));
        }
    }
    for t in targets {
        let Some(mut s) = stage(&all, t) else {
            problems.push(format!("no target {t}"));
            continue;
        };
        loop {
            if s.platform.is_some() {
                problems.push(format!(
                    "target {t}: stage {:?} is pinned to --platform={}, not the target's",
                    s.name,
                    s.platform.as_deref().unwrap()
                ));
            }
            match stage(&all, &s.base) {
                Some(base) => s = base,
                None => break,
            }
        }
    }
    match stage(&all, "builder") {
        None => problems.push("no builder stage".into()),
        Some(b) => {
            let runs: Vec<&str> = b
                .instructions
                .iter()
                .filter(|(w, _)| w == "RUN")
                .map(|(_, r)| r.as_str())
                .collect();
            for (what, want) in [
                (
                    "the dependency layer, cooked for the target",
                    "xx-cargo chef cook",
                ),
                ("the build for the target's triple", "xx-cargo build"),
                (
                    "each binary checked static and of the target's architecture",
                    "xx-verify --static",
                ),
                ("the target's C library", "xx-apk add"),
            ] {
                if !runs.iter().any(|r| r.contains(want)) {
                    problems.push(format!("builder: no `{want}` ({what})"));
                }
            }
        }
    }
    for line in dockerfile.lines().map(code) {
        let lower = line.to_lowercase();
        if lower.contains("qemu") || lower.contains("binfmt") {
            problems.push(format!("emulation: {line}"));
        }
    }
    problems
}

const TARGETS: [&str; 4] = ["quote", "quiz", "kiada", "binaries"];

#[test]
fn the_dockerfile_cross_compiles_and_runs_nothing_on_the_target_platform() {
    let dockerfile = read("Dockerfiles/Dockerfile");
    let problems = cross_compile_problems(&dockerfile, &TARGETS);
    assert!(problems.is_empty(), "{problems:#?}");
    let all = stages(&dockerfile);
    // The three binaries come out of the builder for every service and the binaries target.
    let builder = stage(&all, "builder").unwrap();
    let build = builder
        .instructions
        .iter()
        .find(|(w, r)| w == "RUN" && r.contains("xx-cargo build"))
        .map(|(_, r)| r.as_str())
        .unwrap();
    for service in ["quote", "quiz", "kiada"] {
        assert!(build.contains(service), "the builder builds {service}");
        let s = stage(&all, service).unwrap();
        assert!(
            s.instructions.contains(&(
                "COPY".into(),
                format!("--from=builder /out/{service} /usr/local/bin/{service}")
            )),
            "{service}: its binary from the builder"
        );
    }
}

#[test]
fn the_cross_compile_check_finds_a_command_on_the_target_platform_and_a_pinned_target() {
    let dockerfile = read("Dockerfiles/Dockerfile");
    let emulated = dockerfile.replace(
        "FROM runtime AS quote\n",
        "FROM runtime AS quote\nRUN apk add --no-cache tzdata\n",
    );
    assert_ne!(emulated, dockerfile);
    assert_eq!(cross_compile_problems(&emulated, &TARGETS).len(), 1);
    let pinned = dockerfile.replace(
        "FROM scratch AS runtime",
        "FROM --platform=$BUILDPLATFORM scratch AS runtime",
    );
    assert_ne!(pinned, dockerfile);
    // Every service built on it is now of the build machine's architecture.
    assert_eq!(cross_compile_problems(&pinned, &TARGETS).len(), 3);
    let native = dockerfile.replace("xx-cargo build", "cargo build");
    assert_eq!(cross_compile_problems(&native, &TARGETS).len(), 1);
}

/// A Makefile variable's value (`NAME ?= value`, `NAME := value`).
fn make_var(makefile: &str, name: &str) -> String {
    makefile
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(name)?.trim_start();
            let value = rest
                .strip_prefix("?=")
                .or(rest.strip_prefix(":="))
                .or(rest.strip_prefix('='))?;
            Some(value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {name} in the Makefile"))
}

/// The recipe of a Makefile target, its lines joined.
fn make_recipe(makefile: &str, target: &str) -> String {
    let start = makefile
        .find(&format!("\n{target}:"))
        .unwrap_or_else(|| panic!("no target {target}"));
    makefile[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn make_images_and_multiarch_build_the_same_dockerfile_for_both_architectures() {
    let makefile = read("Makefile");
    assert_eq!(make_var(&makefile, "PLATFORMS"), "linux/amd64,linux/arm64");
    assert_eq!(make_var(&makefile, "SERVICES"), "quote quiz kiada");
    for target in ["images", "multiarch", "binaries"] {
        let recipe = make_recipe(&makefile, target);
        assert!(
            recipe.contains("-f Dockerfiles/Dockerfile"),
            "{target}: {recipe}"
        );
        for line in recipe.lines().chain(makefile.lines()).map(code) {
            let lower = line.to_lowercase();
            assert!(
                !lower.contains("qemu") && !lower.contains("binfmt"),
                "no emulation: {line}"
            );
        }
    }
    let multiarch = make_recipe(&makefile, "multiarch");
    for want in [
        "docker buildx build --platform $(PLATFORMS)",
        "--target $(s)",
        "$(ATTESTATIONS)",
        "--metadata-file target/images/$(s).json",
        "-t $(REGISTRY)/$(s):$(VERSION)",
        "--push",
    ] {
        assert!(multiarch.contains(want), "multiarch: {want}");
    }
    let attestations = make_var(&makefile, "ATTESTATIONS");
    assert!(
        attestations.contains("--sbom=true") && attestations.contains("--provenance=mode=max"),
        "{attestations}"
    );
    let binaries = make_recipe(&makefile, "binaries");
    assert!(binaries.contains("--platform $(PLATFORMS)") && binaries.contains("--target binaries"));
    assert!(binaries.contains("--output type=local,dest=target/dist"));
}

// ---------------------------------------------------------------------------------------------
// The workflows.

fn workflow(name: &str) -> Value {
    serde_yaml_ng::from_str(&read(&format!(".github/workflows/{name}"))).unwrap()
}

fn steps(workflow: &Value) -> Vec<&Value> {
    workflow["jobs"]
        .as_mapping()
        .unwrap()
        .values()
        .flat_map(|j| j["steps"].as_sequence().unwrap())
        .collect()
}

fn runs(workflow: &Value) -> Vec<String> {
    steps(workflow)
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect()
}

fn uses(workflow: &Value) -> Vec<String> {
    steps(workflow)
        .iter()
        .filter_map(|s| s["uses"].as_str().map(str::to_owned))
        .collect()
}

/// The README's test command: the `scripts/test` line of the first code block that has one.
fn readme_test_command() -> String {
    let readme = read("README.md");
    readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .flat_map(str::lines)
        .find(|l| l.contains("scripts/test"))
        .map(|l| code(l).trim().to_owned())
        .expect("the test command in a code block of the README")
}

fn dockerfile_arg(name: &str) -> String {
    read("Dockerfiles/Dockerfile")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
        .unwrap_or_else(|| panic!("ARG {name}"))
        .to_owned()
}

fn check_uses(workflow: &Value, file: &str) {
    for action in uses(workflow) {
        let (name, version) = action
            .split_once('@')
            .unwrap_or_else(|| panic!("{file}: {action} without a version"));
        assert!(
            !["main", "master", "latest"].contains(&version),
            "{file}: {action} follows a branch"
        );
        assert_ne!(
            name, "docker/setup-qemu-action",
            "{file}: images are cross-compiled, not emulated"
        );
        // sigstore/cosign-installer publishes no major tag (v4): only full versions resolve.
        if name == "sigstore/cosign-installer" {
            assert_eq!(version.matches('.').count(), 2, "{file}: {action}");
        }
    }
}

#[test]
fn the_test_workflow_runs_the_readme_test_command_on_pushes_and_pull_requests() {
    let w = workflow("test.yml");
    let on = &w["on"];
    assert!(
        on.get("push").is_some() && on.get("pull_request").is_some(),
        "test.yml: on push and pull_request"
    );
    let command = readme_test_command();
    assert_eq!(command, "./scripts/test");
    assert!(
        runs(&w).iter().any(|r| r.trim() == command),
        "test.yml runs `{command}`: {:?}",
        runs(&w)
    );
    let job = &w["jobs"]["test"];
    // Debian, which scripts/test installs its tools from, with the Dockerfile's Rust; root and
    // privileged for the restricted-run test's namespaces; skips fail.
    assert_eq!(
        job["container"]["image"].as_str(),
        Some(format!("rust:{}-bookworm", dockerfile_arg("RUST_VERSION")).as_str())
    );
    assert!(
        job["container"]["options"]
            .as_str()
            .is_some_and(|o| o.contains("--privileged"))
    );
    assert_eq!(job["env"]["CI"].as_str(), Some("true"));
    assert!(
        runs(&w)
            .iter()
            .any(|r| r.contains("rustup component add clippy rustfmt")),
        "scripts/test runs cargo fmt and clippy"
    );
    check_uses(&w, "test.yml");
}

#[test]
fn the_release_workflow_uses_the_makefile_dockerfile_and_manifest_names() {
    let w = workflow("release.yml");
    let file = "release.yml";
    assert_eq!(
        w["on"]["push"]["tags"].as_sequence().map(|t| t.to_vec()),
        Some(vec![Value::String("v*".into())]),
        "{file}: on version tags"
    );
    let job = &w["jobs"]["release"];
    for (permission, level) in [
        ("contents", "write"),
        ("packages", "write"),
        ("id-token", "write"),
    ] {
        assert_eq!(
            job["permissions"][permission].as_str(),
            Some(level),
            "{file}: {permission}"
        );
    }
    // The registry: ghcr.io under the repository's name, the one overlays/published and the
    // README name.
    let registry = job["env"]["REGISTRY"].as_str().expect("env REGISTRY");
    assert_eq!(registry, "ghcr.io/${{ github.repository }}");
    let resolved = registry
        .replace("${{ github.repository }}", &repository())
        .to_lowercase();
    assert_eq!(resolved, published_registry());
    let published = crate::kustomize::images(&root().join("overlays/published"));
    for (local, (name, tag)) in &published {
        let service = local.strip_prefix("localhost/kiada/").unwrap();
        assert_eq!(name, &format!("{resolved}/{service}"));
        assert_eq!(tag, VERSION);
    }

    let makefile = read("Makefile");
    let services: Vec<String> = make_var(&makefile, "SERVICES")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let all = runs(&w).join("\n");
    // The tag is checked against the version the Makefile tags images with, read the same way.
    let version_read = make_var(&makefile, "VERSION");
    let sed = version_read
        .strip_prefix("$(shell ")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap();
    assert!(
        all.contains(sed),
        "{file}: the version read as the Makefile does: {sed}"
    );
    assert!(all.contains("\"$GITHUB_REF_NAME\" != \"v$version\""));
    // The images: make multiarch (the Dockerfile, both platforms, SBOM and provenance), then
    // each signed by the digest make wrote.
    assert!(all.contains("make multiarch REGISTRY=\"${REGISTRY,,}\""));
    assert!(all.contains(&format!("for service in {}; do", services.join(" "))));
    assert!(all.contains("jq -er '.\"containerimage.digest\"' \"target/images/$service.json\""));
    assert!(
        make_recipe(&makefile, "multiarch").contains("--metadata-file target/images/$(s).json")
    );
    assert!(all.contains("cosign sign --yes \"${REGISTRY,,}/$service@$digest\""));
    // The binaries: make binaries' folders, one per platform of PLATFORMS.
    assert!(all.contains("make binaries"));
    let archive = steps(&w)
        .into_iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("tar -czf")))
        .expect("an archive step");
    assert_eq!(archive["working-directory"].as_str(), Some("target/dist"));
    let run = archive["run"].as_str().unwrap();
    for platform in make_var(&makefile, "PLATFORMS").split(',') {
        let (os, arch) = platform.split_once('/').unwrap();
        let triple_arch = match arch {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            other => panic!("{other}"),
        };
        assert!(
            run.contains(&format!("{os}_{arch}:{triple_arch}")),
            "{file}: {platform}'s folder from make binaries"
        );
    }
    assert!(run.contains(&format!("\"${{platform%:*}}\" {}", {
        let mut s = services.clone();
        s.sort();
        s.join(" ")
    })));
    assert!(run.contains("cosign sign-blob --yes --bundle SHA256SUMS.sigstore.json SHA256SUMS"));
    assert!(
        all.contains("gh release create \"$GITHUB_REF_NAME\" --verify-tag")
            && all.contains("kiada-rs-*.tar.gz SHA256SUMS SHA256SUMS.sigstore.json")
    );
    // The manifests' containers are the services signed and released.
    let mut containers = BTreeSet::new();
    for doc in crate::kustomize::documents(&read("manifests/10-quote.yaml"))
        .into_iter()
        .chain(crate::kustomize::documents(&read("manifests/20-quiz.yaml")))
        .chain(crate::kustomize::documents(&read(
            "manifests/30-kiada.yaml",
        )))
    {
        for c in doc["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            containers.insert(c["name"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        containers,
        services.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert!(
        uses(&w)
            .iter()
            .any(|u| u.starts_with("docker/setup-buildx-action@"))
    );
    assert!(
        uses(&w)
            .iter()
            .any(|u| u.starts_with("docker/login-action@"))
    );
    check_uses(&w, file);
}

#[test]
fn the_docs_say_where_the_release_is_and_how_to_verify_it() {
    let operations = read("docs/operations.md");
    assert!(
        read("README.md").contains("](docs/operations.md)"),
        "the README links to docs/operations.md"
    );
    let section = operations
        .split("\n## ")
        .find(|s| s.starts_with("Releases\n"))
        .expect("a section '## Releases' in docs/operations.md");
    let registry = published_registry();
    for service in ["quote", "quiz", "kiada"] {
        assert!(
            section.contains(&format!("{registry}/{service}:{VERSION}")),
            "docs/operations.md names {registry}/{service}:{VERSION}"
        );
    }
    let identity = format!(
        "https://github.com/{}/.github/workflows/release.yml@refs/tags/v{VERSION}",
        repository()
    );
    assert!(
        root().join(".github/workflows/release.yml").exists(),
        "the identity names the workflow file"
    );
    for want in [
        format!("cosign verify {registry}/quote:{VERSION}"),
        format!("--certificate-identity {identity}"),
        "--certificate-oidc-issuer https://token.actions.githubusercontent.com".to_owned(),
        "cosign verify-blob".to_owned(),
        "--bundle SHA256SUMS.sigstore.json".to_owned(),
        format!("kiada-rs-{VERSION}-x86_64-unknown-linux-musl.tar.gz"),
        format!("kiada-rs-{VERSION}-aarch64-unknown-linux-musl.tar.gz"),
        "overlays/published".to_owned(),
        format!("git tag v{VERSION}"),
    ] {
        assert!(
            section.contains(&want),
            "the release section of docs/operations.md: {want}"
        );
    }
}

/// What an image built from `Dockerfiles/Dockerfile --target <target>` runs: its environment
/// (every `ENV` of the target and the stages it starts from, in order) and its `ENTRYPOINT`.
pub(crate) fn image_config(target: &str) -> (Vec<(String, String)>, Vec<String>) {
    let dockerfile = read("Dockerfiles/Dockerfile");
    let all = stages(&dockerfile);
    let mut chain = Vec::new();
    let mut s = stage(&all, target).unwrap_or_else(|| panic!("no target {target}"));
    loop {
        chain.push(s);
        match stage(&all, &s.base) {
            Some(base) => s = base,
            None => break,
        }
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let mut entrypoint = Vec::new();
    for s in chain.iter().rev() {
        for (word, rest) in &s.instructions {
            match word.as_str() {
                "ENV" => {
                    for pair in rest.split_whitespace() {
                        let (k, v) = pair.split_once('=').expect("ENV key=value");
                        env.retain(|(old, _)| old != k);
                        env.push((k.to_owned(), v.to_owned()));
                    }
                }
                "ENTRYPOINT" => {
                    entrypoint = serde_json::from_str(rest).expect("ENTRYPOINT as JSON");
                }
                _ => {}
            }
        }
    }
    (env, entrypoint)
}

// ---------------------------------------------------------------------------------------------
// The release build.

/// The profile a release build uses unwinds on panic: a panic in one request's task then ends
/// that connection only, where `panic = "abort"` ends the process and every request with it
/// (a backend's 65,536-byte pod name once did that to kiada). The tests run debug builds, which
/// unwind anyway, so this is where going back to abort is caught: in the workspace's release
/// profile, or in any build flag the Dockerfile, the Makefile or the workflows pass.
#[test]
fn release_builds_unwind_on_panic() {
    let cargo = read("Cargo.toml");
    let mut section = String::new();
    let mut release_panic = None;
    for line in cargo.lines().map(code) {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.to_owned();
        } else if let Some((key, value)) = t.split_once('=') {
            let (key, value) = (key.trim(), value.trim().trim_matches(['"', '\'']));
            if key == "panic" {
                assert_ne!(value, "abort", "{section} sets panic = \"abort\"");
                if section == "[profile.release]" {
                    release_panic = Some(value.to_owned());
                }
            }
        }
    }
    assert_eq!(
        release_panic.as_deref(),
        Some("unwind"),
        "[profile.release] says panic = \"unwind\", so that no one turns abort back on unseen"
    );
    let mut files = vec![
        "Dockerfiles/Dockerfile".to_owned(),
        "Makefile".to_owned(),
        "scripts/test".to_owned(),
    ];
    for entry in std::fs::read_dir(root().join(".github/workflows")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        files.push(format!(".github/workflows/{name}"));
    }
    for file in &files {
        // Spaces and quotes taken out: `panic = "abort"`, `panic='abort'` and `-C panic=abort`
        // all read `panic=abort`.
        let text: String = read(file)
            .chars()
            .filter(|c| !matches!(c, ' ' | '"' | '\''))
            .collect();
        for bad in ["panic=abort", "CARGO_PROFILE_RELEASE_PANIC"] {
            assert!(!text.contains(bad), "{file} asks for {bad}");
        }
    }
    assert!(
        !root().join(".cargo/config.toml").exists() && !root().join(".cargo/config").exists(),
        "a .cargo/config could set rustflags behind the profile's back: check it here"
    );
}
