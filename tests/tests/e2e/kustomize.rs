//! The kustomizations, rendered by a real kubectl (`kubectl kustomize`, kustomize 5.6 in kubectl
//! 1.33, as `kubectl apply -k` renders them): each renders, from the working tree and from a git
//! URL and tag; each renders to exactly the objects of the files it reuses (the suite the same
//! as `kubectl apply -f manifests/`, the PostgreSQL variant as applying `manifests/postgres/`
//! after it, the published images and `make deploy REGISTRY=…` as the suite with other image
//! names, the custom tips and questions as the suite with the patch files of `examples/`
//! applied); and every semantic check of `manifests.rs` runs on the renderings too (the
//! `kustomized`, `published`, `custom` and `registry` modules there). `kubectl apply -f
//! manifests/` stays as it was: no file it reads is a kustomization, and each directory's
//! `Kustomization` lists exactly the directory's YAML files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml_ng::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The pinned kubectl that `scripts/check-manifests` unpacks (`scripts/requirements-kubectl.txt`),
/// or `$KUBECTL`.
fn kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/kubectl"));
    path.exists().then_some(path)
}

/// The kubectl to render with, or `None` after recording a skip for `test`.
pub(crate) fn kubectl_or_skip(test: &str) -> Option<PathBuf> {
    let found = kubectl();
    if found.is_none() {
        e2e::skip(
            test,
            "the pinned kubectl is not installed (scripts/check-manifests puts it in .venv/bin/kubectl)",
        );
    }
    found
}

/// `kubectl kustomize <dir or URL>`'s output; `dir` relative to the repository. Renders once per
/// test process.
pub(crate) fn render(kubectl: &Path, dir: &str) -> String {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(text) = cache.lock().unwrap().get(dir) {
        return text.clone();
    }
    let output = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .current_dir(root())
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    cache.lock().unwrap().insert(dir.to_owned(), text.clone());
    text
}

/// The YAML documents of a stream, without empty ones.
pub(crate) fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// What `kubectl apply -f` reads from `dir`: its `.yaml`, `.yml` and `.json` files, in name
/// order, not descending into subdirectories.
fn apply_f_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        })
        .collect();
    files.sort();
    files
}

fn flat(dir: &str) -> Vec<Value> {
    apply_f_files(&root().join(dir))
        .iter()
        .flat_map(|f| documents(&std::fs::read_to_string(f).unwrap()))
        .collect()
}

type Key = (String, String, String);

fn key(v: &Value) -> Key {
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    (
        s(&v["kind"]),
        s(&v["metadata"]["namespace"]),
        s(&v["metadata"]["name"]),
    )
}

/// Objects by kind, namespace and name, as JSON (so `1` and `1.0`, flow and block style compare
/// by value); a name twice is an error, as it is for kustomize.
fn by_key(docs: &[Value]) -> BTreeMap<Key, Json> {
    let mut out = BTreeMap::new();
    for doc in docs {
        let json = serde_json::to_value(doc).unwrap();
        assert!(out.insert(key(doc), json).is_none(), "{:?} twice", key(doc));
    }
    out
}

/// What `kubectl apply` leaves after applying `later` on top of `earlier`: an object of the same
/// kind, namespace and name replaces the earlier one.
fn applied(earlier: Vec<Value>, later: Vec<Value>) -> Vec<Value> {
    let keys: BTreeSet<Key> = later.iter().map(key).collect();
    let mut out: Vec<Value> = earlier
        .into_iter()
        .filter(|d| !keys.contains(&key(d)))
        .collect();
    out.extend(later);
    out
}

/// The differences between two sets of objects, as lines; empty when they are the same.
fn differences(want: &[Value], got: &[Value]) -> Vec<String> {
    let (want, got) = (by_key(want), by_key(got));
    let mut out = Vec::new();
    for (k, w) in &want {
        match got.get(k) {
            None => out.push(format!("missing {k:?}")),
            Some(g) if g != w => out.push(format!(
                "{k:?} differs:\n  want {}\n  got  {}",
                serde_json::to_string(w).unwrap(),
                serde_json::to_string(g).unwrap()
            )),
            Some(_) => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        out.push(format!("unexpected {k:?}"));
    }
    out
}

fn assert_same(what: &str, want: &[Value], got: &[Value]) {
    let diff = differences(want, got);
    assert!(diff.is_empty(), "{what}:\n{}", diff.join("\n"));
}

/// Every kustomization in the repository, by directory.
fn kustomizations() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if ![".git", "target", ".venv", "node_modules"].contains(&name.as_str()) {
                    walk(&path, out);
                }
            } else if ["kustomization.yaml", "kustomization.yml", "Kustomization"]
                .contains(&name.as_str())
            {
                let rel = dir.strip_prefix(root()).unwrap();
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root(), &mut out);
    out
}

#[test]
fn every_kustomization_is_one_the_tests_know() {
    assert_eq!(
        kustomizations(),
        BTreeSet::from(
            [
                "overlays/postgres",
                "overlays/postgres/suite",
                "overlays/published",
                "examples",
                "manifests",
                "manifests/experiments",
                "manifests/postgres",
            ]
            .map(String::from)
        ),
        "a new kustomization needs its equivalence check here and its variant in manifests.rs"
    );
}

/// `kubectl apply -f <dir>` reads every YAML and JSON file of the directory: none may be a
/// kustomization, and the directory's `Kustomization` (named without an extension, which kubectl
/// apply -f skips) lists exactly those files, so `-k` and `-f` apply the same.
fn kustomization_mirrors_apply_f(dir: &Path) -> Result<(), String> {
    let files: BTreeSet<String> = apply_f_files(dir)
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for file in &files {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        if documents(&text).iter().any(|d| {
            d["kind"].as_str() == Some("Kustomization") || d["kind"].as_str() == Some("Component")
        }) {
            return Err(format!(
                "{file}: a kustomization that kubectl apply -f would send to the cluster"
            ));
        }
    }
    let text = std::fs::read_to_string(dir.join("Kustomization"))
        .map_err(|e| format!("{}/Kustomization: {e}", dir.display()))?;
    let kustomization: Value = serde_yaml_ng::from_str(&text).unwrap();
    let resources: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    if resources != files {
        return Err(format!(
            "{}/Kustomization lists {resources:?}, kubectl apply -f reads {files:?}",
            dir.display()
        ));
    }
    Ok(())
}

#[test]
fn kubectl_apply_f_and_k_read_the_same_files_of_manifests() {
    for dir in ["manifests", "manifests/experiments", "manifests/postgres"] {
        kustomization_mirrors_apply_f(&root().join(dir)).unwrap();
    }
}

#[test]
fn the_mirror_check_finds_a_forgotten_file_and_a_kustomization_apply_f_would_read() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "10-a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    );
    write("Kustomization", "resources:\n  - 10-a.yaml\n");
    kustomization_mirrors_apply_f(dir.path()).unwrap();
    write(
        "20-b.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
    );
    assert!(kustomization_mirrors_apply_f(dir.path()).is_err());
    std::fs::remove_file(dir.path().join("20-b.yaml")).unwrap();
    write(
        "kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
    );
    assert!(kustomization_mirrors_apply_f(dir.path()).is_err());
}

#[test]
fn the_suite_and_its_parts_render_to_the_objects_of_their_files() {
    let Some(kubectl) = kubectl_or_skip("kustomize::parts") else {
        return;
    };
    for dir in ["manifests", "manifests/experiments", "manifests/postgres"] {
        assert_same(
            &format!("kubectl kustomize {dir} vs kubectl apply -f {dir}"),
            &flat(dir),
            &documents(&render(&kubectl, dir)),
        );
    }
}

fn without(docs: Vec<Value>, kind: &str, name: &str) -> Vec<Value> {
    let before = docs.len();
    let out: Vec<Value> = docs
        .into_iter()
        .filter(|d| !(d["kind"].as_str() == Some(kind) && d["metadata"]["name"] == name))
        .collect();
    assert_eq!(out.len() + 1, before, "{kind} {name} was there once");
    out
}

#[test]
fn the_postgres_variant_renders_as_the_suite_with_manifests_postgres_applied_after_it() {
    let Some(kubectl) = kubectl_or_skip("kustomize::postgres") else {
        return;
    };
    // Without the SQLite quiz's Deployment, which manifests/postgres/ replaces, and its unused
    // volume claim.
    let suite = without(
        without(flat("manifests"), "Deployment", "quiz"),
        "PersistentVolumeClaim",
        "quiz-data",
    );
    assert_same(
        "overlays/postgres/suite",
        &suite,
        &documents(&render(&kubectl, "overlays/postgres/suite")),
    );
    assert_same(
        "overlays/postgres vs manifests/ then manifests/postgres/",
        &applied(suite, flat("manifests/postgres")),
        &documents(&render(&kubectl, "overlays/postgres")),
    );
}

/// The `images:` of a kustomization: old name → (new name, new tag).
pub(crate) fn images(kustomization_dir: &Path) -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(kustomization_dir.join("kustomization.yaml")).unwrap();
    let k: Value = serde_yaml_ng::from_str(&text).unwrap();
    k["images"]
        .as_sequence()
        .expect("images:")
        .iter()
        .map(|i| {
            let s = |f: &str| i[f].as_str().unwrap_or_else(|| panic!("{f}")).to_owned();
            (s("name"), (s("newName"), s("newTag")))
        })
        .collect()
}

/// The documents with every container image renamed as `images` says, as kustomize does.
fn renamed(mut docs: Vec<Value>, images: &BTreeMap<String, (String, String)>) -> Vec<Value> {
    fn walk(v: &mut Value, images: &BTreeMap<String, (String, String)>) {
        match v {
            Value::Mapping(m) => {
                for (k, val) in m.iter_mut() {
                    if k.as_str() == Some("image")
                        && let Some(image) = val.as_str()
                    {
                        let name = image.split(':').next().unwrap();
                        if let Some((new, tag)) = images.get(name) {
                            *val = Value::String(format!("{new}:{tag}"));
                        }
                    } else {
                        walk(val, images);
                    }
                }
            }
            Value::Sequence(s) => s.iter_mut().for_each(|v| walk(v, images)),
            _ => {}
        }
    }
    docs.iter_mut().for_each(|d| walk(d, images));
    docs
}

/// The image names and tag every rename in `images` must use.
fn assert_renames_every_service(
    images: &BTreeMap<String, (String, String)>,
    registry: &str,
    what: &str,
) {
    let want: BTreeMap<String, (String, String)> = ["quote", "quiz", "kiada"]
        .iter()
        .map(|s| {
            (
                format!("localhost/kiada/{s}"),
                (format!("{registry}/{s}"), VERSION.to_owned()),
            )
        })
        .collect();
    assert_eq!(images, &want, "{what}");
}

#[test]
fn the_published_images_kustomization_is_the_suite_with_the_release_images() {
    let Some(kubectl) = kubectl_or_skip("kustomize::published") else {
        return;
    };
    let images = images(&root().join("overlays/published"));
    assert_renames_every_service(
        &images,
        &crate::release::published_registry(),
        "overlays/published",
    );
    let mut want = renamed(flat("manifests"), &images);
    // Only the reasons of the two policy skips change.
    let got = documents(&render(&kubectl, "overlays/published"));
    for doc in want.iter_mut().filter(|d| d["kind"] == "Deployment") {
        let theirs = got
            .iter()
            .find(|g| key(g) == key(doc))
            .expect("the Deployment is rendered");
        for skip in ["checkov.io/skip1", "checkov.io/skip2"] {
            let (mine, their) = (
                doc["metadata"]["annotations"][skip].as_str().unwrap(),
                theirs["metadata"]["annotations"][skip].as_str().unwrap(),
            );
            assert_eq!(
                mine.split('=').next(),
                their.split('=').next(),
                "{skip}: the same check, another reason"
            );
            assert!(
                !their.contains("locally"),
                "{skip}: the reason is about published images: {their}"
            );
            doc["metadata"]["annotations"][skip] = theirs["metadata"]["annotations"][skip].clone();
        }
    }
    assert_same("overlays/published", &want, &got);
}

/// `make deploy-kustomization` (what `make deploy` applies) for `registry` and `kustomization`,
/// written into a directory of its own two levels below the repository, as the Makefile expects.
pub(crate) fn make_deploy_kustomization(registry: &str, kustomization: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = format!("target/make-deploy-{}-{n}", std::process::id());
    let output = Command::new("make")
        .args(["-s", "deploy-kustomization"])
        .arg(format!("REGISTRY={registry}"))
        .arg(format!("KUSTOMIZATION={kustomization}"))
        .arg(format!("DEPLOY_DIR={dir}"))
        .current_dir(root())
        .output()
        .expect("make runs");
    assert!(
        output.status.success(),
        "make deploy-kustomization: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    root().join(dir)
}

/// A directory removed when dropped, a failing assertion included.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn make_deploy_gives_kustomize_the_registry_and_applies_the_rendering() {
    let Some(kubectl) = kubectl_or_skip("kustomize::make_deploy") else {
        return;
    };
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    let deploy = makefile
        .split("\ndeploy:")
        .nth(1)
        .expect("a deploy target")
        .lines()
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        deploy.contains("deploy-kustomization") && deploy.contains("apply -k $(DEPLOY_DIR)"),
        "make deploy applies the kustomization it writes: {deploy}"
    );
    assert!(
        !makefile.contains("sed 's#"),
        "no image names rewritten with sed"
    );
    for (registry, variant) in [
        ("registry.example.com/kiada", "manifests"),
        ("registry.example.com/kiada", "overlays/postgres"),
        ("localhost/kiada", "manifests"),
    ] {
        let dir = Removed(make_deploy_kustomization(registry, variant));
        let images = images(&dir.0);
        let got = documents(&render(&kubectl, dir.0.to_str().unwrap()));
        assert_renames_every_service(&images, registry, "make deploy");
        assert_same(
            &format!("make deploy REGISTRY={registry} KUSTOMIZATION={variant}"),
            &renamed(documents(&render(&kubectl, variant)), &images),
            &got,
        );
    }
}

/// A strategic-merge patch file of `examples/`, as `kubectl patch` applies it to a Deployment:
/// containers, env, volumeMounts and volumes merge by name.
fn patched(mut deployment: Value, patch: &Value) -> Value {
    fn merge_by_name(into: &mut Value, from: &Value, key: &str) {
        let Some(from) = from[key].as_sequence() else {
            return;
        };
        if into.get(key).is_none() {
            into[key] = Value::Sequence(vec![]);
        }
        let list = into[key].as_sequence_mut().unwrap();
        for item in from {
            match list.iter_mut().find(|i| i["name"] == item["name"]) {
                Some(existing) if key == "containers" => {
                    for k in ["env", "volumeMounts"] {
                        merge_by_name(existing, item, k);
                    }
                }
                Some(existing) => *existing = item.clone(),
                None => list.push(item.clone()),
            }
        }
    }
    let (spec, from) = (
        &mut deployment["spec"]["template"]["spec"],
        &patch["spec"]["template"]["spec"],
    );
    for key in ["containers", "volumes"] {
        merge_by_name(spec, from, key);
    }
    deployment
}

fn sort_by_name(list: &mut Value) {
    if let Some(items) = list.as_sequence_mut() {
        items.sort_by(|a, b| {
            let key = |v: &Value| v["name"].as_str().unwrap_or("").to_owned();
            key(a).cmp(&key(b))
        });
    }
}

fn patch_file(name: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(root().join("examples").join(name)).unwrap())
        .unwrap()
}

#[test]
fn the_custom_kustomization_is_the_suite_with_the_examples_applied() {
    let Some(kubectl) = kubectl_or_skip("kustomize::custom") else {
        return;
    };
    let tips = patch_file("quote-tips-patch.yaml");
    let questions = patch_file("quiz-questions-patch.yaml");
    // The README's commands: apply the ConfigMaps, patch quote and quote-canary with the tips
    // patch and quiz with the questions patch.
    let mut want: Vec<Value> = flat("manifests")
        .into_iter()
        .map(
            |d| match (d["kind"].as_str(), d["metadata"]["name"].as_str()) {
                (Some("Deployment"), Some("quote" | "quote-canary")) => patched(d, &tips),
                (Some("Deployment"), Some("quiz")) => patched(d, &questions),
                _ => d,
            },
        )
        .collect();
    for file in ["custom-tips.yaml", "custom-questions.yaml"] {
        want.extend(documents(
            &std::fs::read_to_string(root().join("examples").join(file)).unwrap(),
        ));
    }
    // Where a merge puts a new item in a list merged by name is the merging tool's choice
    // (kustomize first, the API server last); no list here depends on its order.
    let by_name = |docs: Vec<Value>| -> Vec<Value> {
        docs.into_iter()
            .map(|mut d| {
                let spec = &mut d["spec"]["template"]["spec"];
                sort_by_name(&mut spec["volumes"]);
                for c in spec["containers"].as_sequence_mut().into_iter().flatten() {
                    sort_by_name(&mut c["env"]);
                    sort_by_name(&mut c["volumeMounts"]);
                }
                d
            })
            .collect()
    };
    assert_same(
        "examples/ vs manifests/, examples/custom-*.yaml and kubectl patch with the patch files",
        &by_name(want),
        &by_name(documents(&render(&kubectl, "examples"))),
    );
}

#[test]
fn the_equivalence_check_sees_a_changed_field_a_missing_and_an_extra_object() {
    let suite = flat("manifests");
    assert!(differences(&suite, &suite).is_empty());
    let mut changed = suite.clone();
    changed[1]["metadata"]["labels"]["extra"] = Value::String("x".into());
    assert_eq!(differences(&suite, &changed).len(), 1);
    assert_eq!(differences(&suite, &suite[1..]).len(), 1);
    assert_eq!(differences(&suite[1..], &suite).len(), 1);
    // The patch model adds what the tips patch adds.
    let quote = suite
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "quote")
        .unwrap();
    let after = patched(quote.clone(), &patch_file("quote-tips-patch.yaml"));
    assert_ne!(&after, quote);
    assert!(
        serde_yaml_ng::to_string(&after)
            .unwrap()
            .contains("QUOTES_FILE")
    );
}

#[test]
fn every_kustomization_renders_the_same_from_a_git_url_and_tag() {
    let Some(kubectl) = kubectl_or_skip("kustomize::git_url") else {
        return;
    };
    // A repository of its own, holding what the kustomizations read, tagged as a release is.
    let repo = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        let status = Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    };
    for dir in ["manifests", "overlays", "examples"] {
        copy(&root().join(dir), repo.path());
    }
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args)
            .current_dir(repo.path())
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git {args:?}: {output:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "release"]);
    git(&["tag", &format!("v{VERSION}")]);
    for dir in kustomizations() {
        let url = format!("file://{}//{dir}?ref=v{VERSION}", repo.path().display());
        assert_same(
            &format!("{url} vs {dir}"),
            &documents(&render(&kubectl, &dir)),
            &documents(&render(&kubectl, &url)),
        );
    }
}
