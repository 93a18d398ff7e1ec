//! `manifests/` read with the typed Kubernetes API and checked for meaning, not only shape:
//! selectors find pods, ports and probes exist, the backend URLs name Services defined here,
//! every pod meets the restricted profile, and the NetworkPolicies allow exactly the intended
//! flows. `manifests/experiments/`, applied after the suite, passes the same checks, and each
//! of its objects is checked for what it demonstrates. `manifests/postgres/`, the variant that
//! runs quiz on PostgreSQL, applied after the suite, passes them too, and is checked for what it
//! promises: three quiz replicas on one database whose Service, port, Secret and volumes exist,
//! and no one but quiz reaching the database. Then each probe the manifests use is asked of the
//! real binary.
//!
//! Every check runs on the files as `kubectl apply -f` reads them (`files::…`) and on the
//! renderings of the kustomizations, as `kubectl apply -k` applies them: the suite
//! (`kustomized::…`: `manifests/`, `manifests/experiments/`, `overlays/postgres/`), the published
//! images (`published::…`), the custom tips and questions (`custom::…`) and `make deploy` for
//! another registry (`registry::…`); see kustomize.rs for how each is rendered.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, PersistentVolumeClaim, Pod, PodSpec, Service, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_yaml_ng::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const NAMESPACE: &str = "kiada";
const CLUSTER_DOMAIN: &str = "cluster.local";
type Labels = BTreeMap<String, String>;

#[derive(Default)]
struct Objects {
    kinds_in_order: Vec<String>,
    namespaces: Vec<Namespace>,
    deployments: Vec<Deployment>,
    statefulsets: Vec<StatefulSet>,
    pods: Vec<Pod>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    claims: Vec<PersistentVolumeClaim>,
    budgets: Vec<PodDisruptionBudget>,
    policies: Vec<NetworkPolicy>,
    config_maps: Vec<ConfigMap>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The YAML files of `dir` (relative to the repository), sorted as `kubectl apply -f` takes them.
/// Beside them a directory holds only its `Kustomization` (named without an extension, so that
/// `kubectl apply -f` skips it; kustomize.rs checks that it lists exactly these files).
fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            !(p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n == "experiments" || n == "postgres"))
                && p.file_name().is_none_or(|n| n != "Kustomization")
        })
        .collect();
    files.sort();
    for file in &files {
        assert!(
            file.is_file(),
            "{dir} stays flat but for experiments/ and postgres/: {}",
            file.display()
        );
        assert_eq!(
            file.extension().and_then(|e| e.to_str()),
            Some("yaml"),
            "{}",
            file.display()
        );
    }
    files
}

fn load_into(objects: &mut Objects, dir: &str) {
    for file in yaml_files(dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        load_documents(objects, &text, &file.display().to_string());
    }
}

fn load_documents(objects: &mut Objects, text: &str, origin: &str) {
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        let kind = value["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("no kind in {origin}"))
            .to_owned();
        assert!(
            value["apiVersion"].as_str().is_some(),
            "{kind} without apiVersion"
        );
        let ns = value["metadata"]["namespace"].as_str();
        if kind != "Namespace" {
            assert_eq!(
                ns,
                Some(NAMESPACE),
                "{kind} {:?} outside namespace kiada",
                value["metadata"]["name"]
            );
        }
        match kind.as_str() {
            "Namespace" => objects
                .namespaces
                .push(serde_yaml_ng::from_value(value).unwrap()),
            "Deployment" => objects
                .deployments
                .push(serde_yaml_ng::from_value(value).unwrap()),
            "StatefulSet" => objects
                .statefulsets
                .push(serde_yaml_ng::from_value(value).unwrap()),
            "Pod" => objects.pods.push(serde_yaml_ng::from_value(value).unwrap()),
            "Service" => objects
                .services
                .push(serde_yaml_ng::from_value(value).unwrap()),
            "EndpointSlice" => objects
                .slices
                .push(serde_yaml_ng::from_value(value).unwrap()),
            "PersistentVolumeClaim" => objects
                .claims
                .push(serde_yaml_ng::from_value(value).unwrap()),
            "PodDisruptionBudget" => objects
                .budgets
                .push(serde_yaml_ng::from_value(value).unwrap()),
            "NetworkPolicy" => objects
                .policies
                .push(serde_yaml_ng::from_value(value).unwrap()),
            // The custom tips and questions (examples/, its kustomization).
            "ConfigMap" => objects
                .config_maps
                .push(serde_yaml_ng::from_value(value).unwrap()),
            other => panic!("unexpected kind {other} in {origin}"),
        }
        objects.kinds_in_order.push(kind);
    }
}

/// The suite: `kubectl apply -f manifests/`.
fn load() -> Objects {
    let mut objects = Objects::default();
    load_into(&mut objects, "manifests");
    objects
}

/// Only what `kubectl apply -f manifests/experiments/` adds.
fn load_experiments() -> Objects {
    let mut objects = Objects::default();
    load_into(&mut objects, "manifests/experiments");
    objects
}

/// The suite with the experiments applied after it.
fn load_all() -> Objects {
    let mut objects = load();
    load_into(&mut objects, "manifests/experiments");
    objects
}

/// Only what `kubectl apply -f manifests/postgres/` applies.
fn load_postgres_only() -> Objects {
    let mut objects = Objects::default();
    load_into(&mut objects, "manifests/postgres");
    objects
}

/// The suite and the experiments with the PostgreSQL variant applied after them: an object of
/// the same kind and name replaces the earlier one, as `kubectl apply` does.
fn load_postgres() -> Objects {
    fn apply<T: k8s_openapi::Metadata<Ty = ObjectMeta>>(into: &mut Vec<T>, from: Vec<T>) {
        for object in from {
            into.retain(|o| name(o) != name(&object));
            into.push(object);
        }
    }
    let mut objects = load_all();
    let variant = load_postgres_only();
    apply(&mut objects.deployments, variant.deployments);
    apply(&mut objects.statefulsets, variant.statefulsets);
    apply(&mut objects.services, variant.services);
    apply(&mut objects.policies, variant.policies);
    apply(&mut objects.claims, variant.claims);
    objects
}

/// Where the checks below read the objects from: the files, as `kubectl apply -f` reads them,
/// or a kustomization rendered by kubectl, as `kubectl apply -k` applies it.
#[derive(Clone, Copy)]
enum Via {
    Files,
    Kustomize(&'static Variant),
}

/// A kustomization of the suite and how its parts are applied with it.
struct Variant {
    /// Where the suite's kustomization is (relative to the repository), or the registry `make
    /// deploy-kustomization` is asked for.
    suite: Suite,
    /// The image names the suite's containers have, as `<registry>/<service>:<version>`.
    registry: &'static str,
}

enum Suite {
    Dir(&'static str),
    MakeDeploy,
}

/// The suite: `kubectl apply -k manifests/`.
static KUSTOMIZED: Variant = Variant {
    suite: Suite::Dir("manifests"),
    registry: "localhost/kiada",
};
/// The published images: `kubectl apply -k overlays/published/`.
static PUBLISHED: Variant = Variant {
    suite: Suite::Dir("overlays/published"),
    registry: "ghcr.io/kiada-suite/kiada-rs",
};
/// The custom tips and questions: `kubectl apply -k examples/`.
static CUSTOM: Variant = Variant {
    suite: Suite::Dir("examples"),
    registry: "localhost/kiada",
};
/// Another registry: `make deploy REGISTRY=registry.example.com/kiada`.
static REGISTRY: Variant = Variant {
    suite: Suite::MakeDeploy,
    registry: "registry.example.com/kiada",
};

impl Via {
    /// The rendering of `dir` (relative to the repository), with the variant's image names when
    /// they are not the local ones: a kustomization of its own in target/ over `dir` with the
    /// suite's `images:`, as a user who applies the parts with those images writes it.
    fn render(variant: &Variant, dir: &str) -> Objects {
        // The tests of a variant skip before this when kubectl is missing (see `checks!`).
        let kubectl = crate::kustomize::kubectl_or_skip("manifests (kustomized)").expect("kubectl");
        let dir = if variant.registry == "localhost/kiada" {
            dir.to_owned()
        } else {
            Self::with_images(variant, dir)
        };
        let mut objects = Objects::default();
        load_documents(
            &mut objects,
            &crate::kustomize::render(&kubectl, &dir),
            &format!("kubectl kustomize {dir}"),
        );
        objects
    }

    fn suite_dir(variant: &Variant) -> String {
        static MAKE_DEPLOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        match variant.suite {
            Suite::Dir(dir) => dir.to_owned(),
            // What `make deploy` writes, two levels below the repository as in target/deploy.
            Suite::MakeDeploy => MAKE_DEPLOY
                .get_or_init(|| {
                    let made =
                        crate::kustomize::make_deploy_kustomization(variant.registry, "manifests");
                    let text = std::fs::read_to_string(made.join("kustomization.yaml")).unwrap();
                    std::fs::remove_dir_all(&made).unwrap();
                    let dir = "target/kustomize-test-make-deploy".to_owned();
                    write_atomically(&dir, &text);
                    dir
                })
                .clone(),
        }
    }

    fn with_images(variant: &Variant, dir: &str) -> String {
        let suite = Self::suite_dir(variant);
        if dir == "manifests" || dir == suite {
            return suite;
        }
        let images = crate::kustomize::images(&root().join(&suite));
        let wrapper = format!(
            "target/kustomize-test/{}",
            format!("{suite}-{dir}").replace('/', "_")
        );
        let mut text = format!("resources:\n  - ../../../{dir}\nimages:\n");
        for (name, (new_name, tag)) in images {
            text.push_str(&format!(
                "  - name: {name}\n    newName: {new_name}\n    newTag: \"{tag}\"\n"
            ));
        }
        write_atomically(&wrapper, &text);
        wrapper
    }

    fn load(self) -> Objects {
        match self {
            Via::Files => load(),
            Via::Kustomize(v) => Self::render(v, &Self::suite_dir(v)),
        }
    }

    fn load_experiments(self) -> Objects {
        match self {
            Via::Files => load_experiments(),
            Via::Kustomize(v) => Self::render(v, "manifests/experiments"),
        }
    }

    /// `kubectl apply -k` of the suite, then of manifests/experiments/.
    fn load_all(self) -> Objects {
        match self {
            Via::Files => load_all(),
            Via::Kustomize(v) => {
                let mut objects = self.load();
                let experiments = Self::render(v, "manifests/experiments");
                objects.merge(experiments);
                objects
            }
        }
    }

    fn load_postgres_only(self) -> Objects {
        match self {
            Via::Files => load_postgres_only(),
            Via::Kustomize(v) => Self::render(v, "manifests/postgres"),
        }
    }

    /// `kubectl apply -k overlays/postgres/`, then of manifests/experiments/.
    fn load_postgres(self) -> Objects {
        match self {
            Via::Files => load_postgres(),
            Via::Kustomize(v) => {
                let mut objects = Self::render(v, "overlays/postgres");
                objects.merge(Self::render(v, "manifests/experiments"));
                objects
            }
        }
    }

    /// The registry of the suite's own images.
    fn registry(self) -> &'static str {
        match self {
            Via::Files => "localhost/kiada",
            Via::Kustomize(v) => v.registry,
        }
    }
}

/// Writes `dir/kustomization.yaml` (relative to the repository) so that a test process running
/// at the same time reads the old file or the new one, never half of one.
fn write_atomically(dir: &str, text: &str) {
    let dir = root().join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = dir.join(format!(".kustomization.yaml.{}.{n}", std::process::id()));
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, dir.join("kustomization.yaml")).unwrap();
}

impl Objects {
    /// The objects of a kustomization of parts that only adds (experiments_add_to_the_suite…).
    fn merge(&mut self, other: Objects) {
        self.kinds_in_order.extend(other.kinds_in_order);
        self.namespaces.extend(other.namespaces);
        self.deployments.extend(other.deployments);
        self.statefulsets.extend(other.statefulsets);
        self.pods.extend(other.pods);
        self.services.extend(other.services);
        self.slices.extend(other.slices);
        self.claims.extend(other.claims);
        self.budgets.extend(other.budgets);
        self.policies.extend(other.policies);
        self.config_maps.extend(other.config_maps);
    }
}

fn name<
    T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    o: &T,
) -> &str {
    o.metadata().name.as_deref().unwrap_or("")
}

fn pod_labels(d: &Deployment) -> Labels {
    d.spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap_or_default()
}

fn pod_spec(d: &Deployment) -> &PodSpec {
    d.spec.template.spec.as_ref().unwrap()
}

fn subset(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn matches(selector: &LabelSelector, labels: &Labels) -> bool {
    assert!(
        selector.match_expressions.is_none(),
        "matchExpressions are not evaluated here"
    );
    subset(&selector.match_labels.clone().unwrap_or_default(), labels)
}

/// The container port a Service's or probe's port refers to, by number or name.
fn container_has_port(c: &Container, port: &IntOrString) -> bool {
    c.ports.iter().flatten().any(|p| match port {
        IntOrString::Int(n) => p.container_port == *n,
        IntOrString::String(s) => p.name.as_deref() == Some(s.as_str()),
    })
}

/// A pod the manifests run: from a Deployment's template, or a bare Pod (experiments).
struct Workload<'a> {
    kind: &'static str,
    name: &'a str,
    /// The object's own metadata, where the checkov skips are.
    meta: &'a ObjectMeta,
    labels: Labels,
    spec: &'a PodSpec,
}

fn workloads(objects: &Objects) -> Vec<Workload<'_>> {
    let deployments = objects.deployments.iter().map(|d| Workload {
        kind: "Deployment",
        name: name(d),
        meta: &d.metadata,
        labels: pod_labels(d),
        spec: pod_spec(d),
    });
    let pods = objects.pods.iter().map(|p| Workload {
        kind: "Pod",
        name: name(p),
        meta: &p.metadata,
        labels: p.metadata.labels.clone().unwrap_or_default(),
        spec: p.spec.as_ref().expect("pod spec"),
    });
    deployments.chain(pods).collect()
}

fn service_spec(s: &Service) -> &ServiceSpec {
    s.spec.as_ref().expect("Service spec")
}

fn find_service<'a>(objects: &'a Objects, n: &str) -> Option<&'a Service> {
    objects.services.iter().find(|s| name(*s) == n)
}

fn the_namespace_comes_first_with_pod_security_labels(via: Via) {
    let objects = via.load();
    assert_eq!(
        objects.kinds_in_order.first().map(String::as_str),
        Some("Namespace")
    );
    let ns = &objects.namespaces[0];
    assert_eq!(name(ns), NAMESPACE);
    let labels = ns.metadata.labels.clone().unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
    assert_eq!(labels["pod-security.kubernetes.io/warn"], "restricted");
    assert_eq!(labels["pod-security.kubernetes.io/audit"], "restricted");
}

fn the_deployments_are_the_ones_the_chapter_uses(via: Via) {
    let objects = via.load();
    let want = [
        ("quote", 3, "stable"),
        ("quote-canary", 1, "canary"),
        ("quiz", 1, "stable"),
        ("kiada", 3, "stable"),
        ("kiada-canary", 1, "canary"),
    ];
    for (dname, replicas, rel) in want {
        let d = objects
            .deployments
            .iter()
            .find(|d| name(*d) == dname)
            .unwrap_or_else(|| panic!("no Deployment {dname}"));
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(replicas), "{dname}");
        assert_eq!(pod_labels(d)["rel"], rel, "{dname}");
        assert!(
            matches(&spec.selector, &pod_labels(d)),
            "{dname}: its selector misses its own pods"
        );
    }
    // No two Deployments claim the same pods.
    for a in &objects.deployments {
        for b in &objects.deployments {
            if name(a) != name(b) {
                assert!(
                    !matches(&a.spec.selector, &pod_labels(b)),
                    "{} selects {}'s pods",
                    name(a),
                    name(b)
                );
            }
        }
    }
    let quiz = objects
        .deployments
        .iter()
        .find(|d| name(*d) == "quiz")
        .unwrap();
    assert_eq!(
        quiz.spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("Recreate")
    );
    let pod = pod_spec(quiz);
    assert!(
        pod.security_context.as_ref().unwrap().fs_group.is_some(),
        "quiz needs fsGroup to write its volume"
    );
    let claim = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.persistent_volume_claim.as_ref())
        .expect("quiz mounts a PVC");
    assert_eq!(claim.claim_name, "quiz-data");
    assert!(objects.claims.iter().any(|c| name(c) == "quiz-data"));

    for d in objects
        .deployments
        .iter()
        .filter(|d| pod_labels(d)["app"] == "kiada")
    {
        let c = &pod_spec(d).containers[0];
        assert_eq!(
            c.stdin,
            Some(true),
            "{}: kubectl attach -i needs stdin",
            name(d)
        );
        let tls = pod_spec(d)
            .volumes
            .iter()
            .flatten()
            .find_map(|v| v.secret.as_ref())
            .expect("the TLS Secret volume");
        assert_eq!(tls.secret_name.as_deref(), Some("kiada-tls"));
        assert_eq!(tls.optional, Some(true), "kiada starts without the Secret");
        assert!(
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == "/etc/kiada/tls")
        );
    }
    let budgets: HashSet<&str> = objects.budgets.iter().map(name).collect();
    assert!(
        budgets.contains("kiada") && budgets.contains("quote"),
        "{budgets:?}"
    );
}

fn every_pod_meets_the_restricted_profile_and_knows_its_identity(via: Via) {
    for objects in [via.load_all(), via.load_postgres()] {
        for d in &objects.deployments {
            let dn = name(d);
            let annotations = d
                .spec
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .clone()
                .unwrap_or_default();
            assert_eq!(
                annotations.get("prometheus.io/scrape").map(String::as_str),
                Some("true"),
                "{dn}"
            );
            assert_eq!(
                annotations.get("prometheus.io/path").map(String::as_str),
                Some("/metrics"),
                "{dn}"
            );
        }
        let all = workloads(&objects);
        assert!(
            all.iter().any(|w| w.kind == "Pod"),
            "the experiments' pods are checked too"
        );
        for w in &all {
            let pod = w.spec;
            let dn = format!("{} {}", w.kind, w.name);
            assert_eq!(pod.automount_service_account_token, Some(false), "{dn}");
            assert!(
                pod.termination_grace_period_seconds.unwrap_or(30) > 15,
                "{dn}: grace must exceed delay + drain"
            );
            let psc = pod.security_context.as_ref().expect("pod securityContext");
            assert_eq!(psc.run_as_non_root, Some(true), "{dn}");
            assert!(
                psc.run_as_user.is_some_and(|u| u >= 10000),
                "{dn}: a numeric, high UID"
            );
            assert_eq!(
                psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
                Some("RuntimeDefault"),
                "{dn}"
            );
            let sysctls = psc.sysctls.clone().unwrap_or_default();
            assert!(
                sysctls
                    .iter()
                    .any(|s| s.name == "net.ipv4.ping_group_range"),
                "{dn}: ping must be allowed"
            );
            for c in &pod.containers {
                let sc = c
                    .security_context
                    .as_ref()
                    .expect("container securityContext");
                assert_eq!(sc.allow_privilege_escalation, Some(false), "{dn}");
                assert_eq!(sc.read_only_root_filesystem, Some(true), "{dn}");
                assert_eq!(
                    sc.capabilities.as_ref().unwrap().drop.clone().unwrap(),
                    ["ALL"],
                    "{dn}"
                );
                let res = c.resources.as_ref().expect("resources");
                for key in ["cpu", "memory"] {
                    assert!(
                        res.requests.as_ref().unwrap().contains_key(key),
                        "{dn}: {key} request"
                    );
                    assert!(
                        res.limits.as_ref().unwrap().contains_key(key),
                        "{dn}: {key} limit"
                    );
                }
                let env: BTreeMap<&str, String> = c
                    .env
                    .iter()
                    .flatten()
                    .map(|e| {
                        let from = e
                            .value_from
                            .as_ref()
                            .and_then(|f| f.field_ref.as_ref())
                            .map(|f| f.field_path.clone());
                        (
                            e.name.as_str(),
                            from.or(e.value.clone()).unwrap_or_default(),
                        )
                    })
                    .collect();
                for (var, path) in [
                    ("POD_NAME", "metadata.name"),
                    ("POD_NAMESPACE", "metadata.namespace"),
                    ("POD_IP", "status.podIP"),
                    ("NODE_NAME", "spec.nodeName"),
                    ("NODE_IP", "status.hostIP"),
                    ("RELEASE", "metadata.labels['rel']"),
                ] {
                    assert_eq!(env.get(var).map(String::as_str), Some(path), "{dn}: {var}");
                }
                // Probes: the kit's paths, on a port the container declares.
                for (probe, path) in [
                    (&c.readiness_probe, "/healthz/ready"),
                    (&c.liveness_probe, "/healthz/live"),
                ] {
                    let get = probe
                        .as_ref()
                        .and_then(|p| p.http_get.as_ref())
                        .unwrap_or_else(|| panic!("{dn}: probe on {path}"));
                    assert_eq!(get.path.as_deref(), Some(path), "{dn}");
                    assert!(
                        container_has_port(c, &get.port),
                        "{dn}: probe port {:?} is not a container port",
                        get.port
                    );
                }
            }
        }
    }
}

fn only_the_approved_policy_checks_are_skipped(via: Via) {
    // Local images loaded into kind or minikube are neither pulled Always nor pinned by digest.
    for objects in [via.load_all(), via.load_postgres()] {
        for w in workloads(&objects) {
            let annotations = w.meta.annotations.clone().unwrap_or_default();
            let skips: Vec<&String> = annotations
                .iter()
                .filter(|(k, _)| k.starts_with("checkov.io/skip"))
                .map(|(_, v)| v)
                .collect();
            assert_eq!(skips.len(), 2, "{}", w.name);
            for skip in skips {
                let (check, reason) = skip.split_once('=').expect("CHECK=reason");
                assert!(
                    ["CKV_K8S_15", "CKV_K8S_43"].contains(&check),
                    "{}: unapproved skip {check}",
                    w.name
                );
                assert!(reason.len() > 20, "{}: {check} needs its reason", w.name);
            }
        }
        // No other object carries a skip.
        let others = objects
            .services
            .iter()
            .map(|s| &s.metadata)
            .chain(objects.slices.iter().map(|s| &s.metadata))
            .chain(objects.policies.iter().map(|p| &p.metadata));
        for meta in others {
            assert!(
                meta.annotations
                    .iter()
                    .flatten()
                    .all(|(k, _)| !k.starts_with("checkov.io/")),
                "{:?}: skips belong on workloads only",
                meta.name
            );
        }
    }
}

fn images_match_what_the_dockerfile_and_makefile_build(via: Via) {
    for objects in [via.load_all(), via.load_postgres()] {
        let dockerfile = std::fs::read_to_string(root().join("Dockerfiles/Dockerfile")).unwrap();
        let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
        assert!(
            makefile.contains("REGISTRY ?= localhost/kiada"),
            "the Makefile's default registry"
        );
        for w in workloads(&objects) {
            for c in &w.spec.containers {
                assert_eq!(
                    c.image.as_deref(),
                    Some(format!("{}/{}:{VERSION}", via.registry(), c.name).as_str()),
                    "{}",
                    w.name
                );
                assert!(
                    dockerfile.contains(&format!("FROM runtime AS {}\n", c.name)),
                    "no Dockerfile target {}",
                    c.name
                );
                assert!(dockerfile.contains(&format!("/usr/local/bin/{}\"]", c.name)));
            }
        }
    }
}

fn services_find_their_pods_and_ports(via: Via) {
    let objects = via.load_all();
    let mut node_ports = HashSet::new();
    let all = workloads(&objects);
    for s in &objects.services {
        let spec = service_spec(s);
        let Some(selector) = spec.selector.clone() else {
            // No selector: an alias, or endpoints written by hand (checked below).
            assert!(
                spec.type_.as_deref() == Some("ExternalName")
                    || objects.slices.iter().any(|e| slice_service(e) == name(s)),
                "Service {} has neither a selector nor an EndpointSlice",
                name(s)
            );
            continue;
        };
        assert!(!selector.is_empty(), "{}: an empty selector", name(s));
        let backing: Vec<&Workload> = all
            .iter()
            .filter(|w| subset(&selector, &w.labels))
            .collect();
        assert!(
            !backing.is_empty(),
            "Service {} selects no Deployment's or Pod's pods",
            name(s)
        );
        for port in spec.ports.iter().flatten() {
            let target = port
                .target_port
                .clone()
                .unwrap_or(IntOrString::Int(port.port));
            for w in &backing {
                assert!(
                    w.spec
                        .containers
                        .iter()
                        .any(|c| container_has_port(c, &target)),
                    "{} port {:?} is not a port of {}",
                    name(s),
                    target,
                    w.name
                );
            }
            if let Some(np) = port.node_port {
                assert!((30000..=32767).contains(&np), "{}: nodePort {np}", name(s));
                assert!(node_ports.insert(np), "nodePort {np} is used twice");
            }
        }
    }
    let service = |n: &str| {
        objects
            .services
            .iter()
            .find(|s| name(*s) == n)
            .unwrap_or_else(|| panic!("no Service {n}"))
            .spec
            .clone()
            .unwrap()
    };
    for n in ["quote", "quiz"] {
        let spec = service(n);
        assert_eq!(spec.type_.as_deref().unwrap_or("ClusterIP"), "ClusterIP");
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.port, port.name.as_deref()), (80, Some("http")));
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
    }
    let kiada = service("kiada");
    assert_eq!(kiada.type_.as_deref(), Some("NodePort"));
    let ports: Vec<(i32, Option<i32>)> = kiada
        .ports
        .unwrap()
        .iter()
        .map(|p| (p.port, p.node_port))
        .collect();
    assert_eq!(ports, [(80, Some(30080)), (443, Some(30443))]);
    assert_eq!(service("kiada-lb").type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        service("quote-headless").cluster_ip.as_deref(),
        Some("None")
    );
    let specs: Vec<_> = objects
        .services
        .iter()
        .map(|s| s.spec.clone().unwrap())
        .collect();
    assert!(specs.iter().any(|s| s.type_.as_deref() == Some("NodePort")
        && s.external_traffic_policy.as_deref() == Some("Local")));
    assert!(
        specs
            .iter()
            .any(|s| s.internal_traffic_policy.as_deref() == Some("Local"))
    );
    assert!(
        specs
            .iter()
            .any(|s| s.session_affinity.as_deref() == Some("ClientIP"))
    );
}

fn the_backend_urls_name_services_defined_here(via: Via) {
    let objects = via.load();
    for d in objects
        .deployments
        .iter()
        .filter(|d| pod_labels(d)["app"] == "kiada")
    {
        let env: BTreeMap<String, String> = pod_spec(d).containers[0]
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        // Reachable from outside the cluster: the DNS lab keeps to the pod's namespace.
        assert_eq!(
            env.get("DNS_LAB_SCOPE").map(String::as_str),
            Some("namespace"),
            "{}",
            name(d)
        );
        for (var, want) in [
            ("QUOTE_URL", "http://quote/quote"),
            ("QUIZ_URL", "http://quiz"),
        ] {
            let url = &env[var];
            assert_eq!(url, want, "{}", name(d));
            let authority = url.trim_start_matches("http://").split('/').next().unwrap();
            let (host, port) = authority
                .split_once(':')
                .map_or((authority, 80), |(h, p)| (h, p.parse().unwrap()));
            let svc = objects
                .services
                .iter()
                .find(|s| name(*s) == host)
                .unwrap_or_else(|| panic!("{var}: no Service {host}"));
            assert!(
                svc.spec
                    .as_ref()
                    .unwrap()
                    .ports
                    .iter()
                    .flatten()
                    .any(|p| p.port == port),
                "{var}: Service {host} has no port {port}"
            );
        }
    }
}

/// Where a connection comes from: a pod (its labels and its namespace's labels), or outside
/// the cluster (NodePort, LoadBalancer).
enum Source<'a> {
    Pod {
        labels: Labels,
        namespace: &'a str,
        namespace_labels: Labels,
    },
    Outside,
}

/// Whether the policies let `source` connect to a pod with `target` labels on container port
/// `port_name`, as a network plugin enforcing them would decide.
fn allowed(
    policies: &[NetworkPolicy],
    source: &Source,
    target: &Labels,
    port_name: &str,
    port: i32,
) -> bool {
    let selecting: Vec<&NetworkPolicy> = policies
        .iter()
        .filter(|p| {
            let spec = p.spec.as_ref().unwrap();
            spec.pod_selector
                .as_ref()
                .is_none_or(|sel| matches(sel, target))
                && spec.policy_types.iter().flatten().any(|t| t == "Ingress")
        })
        .collect();
    if selecting.is_empty() {
        return true;
    }
    let peer_ok = |peer: &NetworkPolicyPeer| match source {
        Source::Outside => peer
            .ip_block
            .as_ref()
            .is_some_and(|b| b.cidr == "0.0.0.0/0"),
        Source::Pod {
            labels,
            namespace,
            namespace_labels,
        } => {
            if peer.ip_block.is_some() {
                return false;
            }
            let ns_ok = match &peer.namespace_selector {
                Some(sel) => matches(sel, namespace_labels),
                None => *namespace == NAMESPACE,
            };
            let pod_ok = peer
                .pod_selector
                .as_ref()
                .is_none_or(|sel| matches(sel, labels));
            ns_ok && pod_ok
        }
    };
    let port_ok = |p: &NetworkPolicyPort| match &p.port {
        None => true,
        Some(IntOrString::Int(n)) => *n == port,
        Some(IntOrString::String(s)) => s == port_name,
    };
    selecting.iter().any(|policy| {
        policy
            .spec
            .as_ref()
            .unwrap()
            .ingress
            .iter()
            .flatten()
            .any(|rule| {
                let from_ok = rule
                    .from
                    .as_ref()
                    .is_none_or(|from| from.iter().any(peer_ok));
                let ports_ok = rule
                    .ports
                    .as_ref()
                    .is_none_or(|ports| ports.iter().any(port_ok));
                from_ok && ports_ok
            })
    })
}

fn network_policies_allow_the_intended_flows_only(via: Via) {
    let objects = via.load_all();
    let labels =
        |app: &str| Labels::from([("app".into(), app.into()), ("rel".into(), "stable".into())]);
    let in_namespace = |app: &str| Source::Pod {
        labels: labels(app),
        namespace: NAMESPACE,
        namespace_labels: Labels::from([("kubernetes.io/metadata.name".into(), NAMESPACE.into())]),
    };
    let curl_pod = Source::Pod {
        labels: Labels::from([("run".into(), "client".into())]),
        namespace: NAMESPACE,
        namespace_labels: Labels::new(),
    };
    let other_namespace = Source::Pod {
        labels: labels("anything"),
        namespace: "default",
        namespace_labels: Labels::new(),
    };
    let monitoring = Source::Pod {
        labels: Labels::from([("app".into(), "prometheus".into())]),
        namespace: "monitoring",
        namespace_labels: Labels::from([("kiada.example/monitoring".into(), "true".into())]),
    };
    let p = &objects.policies;
    let cases: [(&str, &Source, &str, bool); 10] = [
        ("kiada → quote", &in_namespace("kiada"), "quote", true),
        ("kiada → quiz", &in_namespace("kiada"), "quiz", true),
        ("curl pod → quiz", &curl_pod, "quiz", true),
        ("quote → kiada", &in_namespace("quote"), "kiada", true),
        ("outside → kiada", &Source::Outside, "kiada", true),
        ("other namespace → kiada", &other_namespace, "kiada", true),
        ("monitoring → quote", &monitoring, "quote", true),
        ("outside → quiz", &Source::Outside, "quiz", false),
        ("outside → quote", &Source::Outside, "quote", false),
        ("other namespace → quiz", &other_namespace, "quiz", false),
    ];
    for (flow, source, target, want) in cases {
        assert_eq!(
            allowed(p, source, &labels(target), "http", 8080),
            want,
            "{flow}"
        );
    }
    // kiada is reachable on both of its ports from outside.
    assert!(allowed(
        p,
        &Source::Outside,
        &labels("kiada"),
        "https",
        8443
    ));
    // The experiments' pods: the named quote pod is admitted like any quote pod, the DNS
    // client reaches quote and quiz like any pod in the namespace, and admits no one.
    let lab = |app: &str| Labels::from([("app".into(), app.into()), ("rel".into(), "lab".into())]);
    let dns_client = Source::Pod {
        labels: lab("dns-client"),
        namespace: NAMESPACE,
        namespace_labels: Labels::new(),
    };
    assert!(allowed(
        p,
        &in_namespace("kiada"),
        &lab("quote"),
        "http",
        8080
    ));
    assert!(!allowed(p, &Source::Outside, &lab("quote"), "http", 8080));
    assert!(allowed(p, &dns_client, &labels("quote"), "http", 8080));
    assert!(allowed(p, &dns_client, &labels("quiz"), "http", 8080));
    assert!(!allowed(
        p,
        &in_namespace("kiada"),
        &lab("dns-client"),
        "http",
        8080
    ));
    assert!(!allowed(
        p,
        &Source::Outside,
        &lab("dns-client"),
        "http",
        8080
    ));
    // Every pod, the experiments' included, is covered by some policy.
    for w in workloads(&objects) {
        assert!(
            p.iter().any(|pol| {
                let sel = pol.spec.as_ref().unwrap().pod_selector.as_ref();
                sel.is_none_or(|sel| matches(sel, &w.labels))
            }),
            "{} has no policy",
            w.name
        );
    }
}

#[tokio::test]
async fn every_probe_the_manifests_use_answers_200_from_the_real_binary() {
    let objects = load();
    let mut probed = HashSet::new();
    let data = tempfile::tempdir().unwrap();
    for d in &objects.deployments {
        for c in &pod_spec(d).containers {
            if !probed.insert(c.name.clone()) {
                continue;
            }
            // The probes name the port `http`: it must be the port the binary listens on by default.
            let http = c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some("http"))
                .unwrap();
            assert_eq!(
                http.container_port, 8080,
                "{}: LISTEN_PORT defaults to 8080",
                c.name
            );
            let db = data.path().join(format!("{}.db", c.name));
            let args: Vec<&str> = match c.name.as_str() {
                "quiz" => vec!["--db", db.to_str().unwrap()],
                "kiada" => vec!["--tls-port", "0"],
                _ => vec![],
            };
            let process = e2e::start(&c.name, &args);
            for probe in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe]
                .into_iter()
                .flatten()
            {
                let path = probe.http_get.as_ref().unwrap().path.clone().unwrap();
                let res = e2e::get(format!("{}{path}", process.url())).await;
                assert_eq!(res.status(), 200, "{} {path}", c.name);
            }
        }
    }
    assert_eq!(probed.len(), 3);
}

/// The Service an EndpointSlice belongs to, by its `kubernetes.io/service-name` label.
fn slice_service(e: &EndpointSlice) -> &str {
    e.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/service-name"))
        .map_or("", String::as_str)
}

fn app_label(meta: &ObjectMeta) -> Option<&str> {
    meta.labels.as_ref()?.get("app").map(String::as_str)
}

fn every_service_carries_the_label_of_its_app(via: Via) {
    let objects = via.load_all();
    for s in &objects.services {
        let app = app_label(&s.metadata)
            .unwrap_or_else(|| panic!("Service {} has no app label", name(s)));
        assert!(
            ["quote", "quiz", "kiada"].contains(&app),
            "Service {}: app {app}",
            name(s)
        );
        if let Some(selector) = &service_spec(s).selector {
            assert_eq!(
                selector.get("app").map(String::as_str),
                Some(app),
                "Service {}: its label and its selector name different apps",
                name(s)
            );
        }
    }
    for (app, want) in [
        (
            "quote",
            &["quote", "quote-headless", "quote-local", "quote-sticky"][..],
        ),
        ("quiz", &["quiz"][..]),
        ("kiada", &["kiada", "kiada-lb", "kiada-local"][..]),
    ] {
        let got = service_names_of_app(&objects, app);
        for n in want {
            assert!(got.contains(n), "-l app={app} misses Service {n}: {got:?}");
        }
    }
    // Hand-written slices carry their Service's app label, as the controller's copies do, so
    // `-l app=quote` lists them with the rest.
    for e in &objects.slices {
        let svc = find_service(&objects, slice_service(e)).expect("the slice's Service");
        assert_eq!(
            app_label(&e.metadata),
            app_label(&svc.metadata),
            "{}",
            name(e)
        );
    }
}

fn service_names_of_app<'a>(objects: &'a Objects, app: &str) -> BTreeSet<&'a str> {
    objects
        .services
        .iter()
        .filter(|s| app_label(&s.metadata) == Some(app))
        .map(name)
        .collect()
}

fn experiments_add_to_the_suite_and_replace_nothing(via: Via) {
    let suite = via.load();
    let experiments = via.load_experiments();
    assert!(
        experiments.namespaces.is_empty()
            && experiments.deployments.is_empty()
            && experiments.claims.is_empty()
            && experiments.budgets.is_empty(),
        "experiments add Services, EndpointSlices, Pods and NetworkPolicies only"
    );
    let mut seen = HashSet::new();
    for (kind, n) in experiments
        .services
        .iter()
        .map(|s| ("Service", name(s)))
        .chain(
            experiments
                .slices
                .iter()
                .map(|e| ("EndpointSlice", name(e))),
        )
        .chain(experiments.pods.iter().map(|p| ("Pod", name(p))))
        .chain(
            experiments
                .policies
                .iter()
                .map(|p| ("NetworkPolicy", name(p))),
        )
    {
        assert!(
            seen.insert((kind, n)),
            "{kind} {n} twice in the experiments"
        );
    }
    for s in &experiments.services {
        assert!(
            find_service(&suite, name(s)).is_none(),
            "Service {} would replace the suite's",
            name(s)
        );
    }
    for pol in &experiments.policies {
        assert!(
            !suite.policies.iter().any(|q| name(q) == name(pol)),
            "NetworkPolicy {} would replace the suite's",
            name(pol)
        );
    }
    // A bare pod that a Deployment's selector matched would be adopted by its ReplicaSet, which
    // would then delete a pod to keep its replica count.
    for p in &experiments.pods {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        for d in &suite.deployments {
            assert!(
                !matches(&d.spec.selector, &labels),
                "Deployment {} would adopt Pod {}",
                name(d),
                name(p)
            );
        }
    }
    // Each file opens with a comment: what it demonstrates, then `Try:` and the commands.
    for file in yaml_files("manifests/experiments") {
        let text = std::fs::read_to_string(&file).unwrap();
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        let shown = file.display();
        assert!(header.len() >= 3, "{shown}: opens with a comment");
        let try_at = header
            .iter()
            .position(|l| l.trim_end() == "# Try:")
            .unwrap_or_else(|| panic!("{shown}: no '# Try:' in the opening comment"));
        assert!(try_at > 0, "{shown}: say what it demonstrates first");
        assert!(
            header[try_at..].iter().any(|l| l.contains("kubectl ")),
            "{shown}: a command to try"
        );
    }
}

fn the_external_name_aliases_a_service_of_the_suite(via: Via) {
    let suite = via.load();
    let experiments = via.load_experiments();
    let aliases: Vec<&Service> = experiments
        .services
        .iter()
        .filter(|s| service_spec(s).type_.as_deref() == Some("ExternalName"))
        .collect();
    assert!(!aliases.is_empty(), "an ExternalName Service");
    for alias in aliases {
        let spec = service_spec(alias);
        let an = name(alias);
        assert!(spec.selector.is_none(), "{an}: an alias selects no pods");
        assert!(spec.cluster_ip.is_none(), "{an}: an alias has no ClusterIP");
        let target = spec.external_name.as_deref().expect("externalName");
        let (svc, domain) = target
            .split_once('.')
            .unwrap_or_else(|| panic!("{an}: {target} is not a Service's FQDN"));
        assert_eq!(
            domain,
            format!("{NAMESPACE}.svc.{CLUSTER_DOMAIN}"),
            "{an}: {target} is not in namespace kiada"
        );
        let t = find_service(&suite, svc)
            .unwrap_or_else(|| panic!("{an}: {target} names no Service of manifests/"));
        let t_spec = service_spec(t);
        assert!(
            t_spec.type_.as_deref() != Some("ExternalName") && t_spec.selector.is_some(),
            "{an}: the target must have pods behind it"
        );
        assert_eq!(app_label(&alias.metadata), app_label(&t.metadata), "{an}");
    }
}

fn hand_written_endpoint_slices_belong_to_services_without_a_selector(via: Via) {
    let all = via.load_all();
    let experiments = via.load_experiments();
    assert!(
        !experiments.slices.is_empty(),
        "a hand-written EndpointSlice"
    );
    for e in &all.slices {
        let en = name(e);
        let labels = e.metadata.labels.clone().unwrap_or_default();
        let svc = find_service(&all, slice_service(e))
            .unwrap_or_else(|| panic!("{en}: kubernetes.io/service-name names no Service"));
        let spec = service_spec(svc);
        assert!(
            spec.selector.is_none(),
            "{en}: the EndpointSlice controller owns the slices of a Service with a selector"
        );
        assert_ne!(spec.type_.as_deref(), Some("ExternalName"), "{en}");
        assert_ne!(spec.cluster_ip.as_deref(), Some("None"), "{en}");
        let managed_by = labels
            .get("endpointslice.kubernetes.io/managed-by")
            .unwrap_or_else(|| panic!("{en}: no endpointslice.kubernetes.io/managed-by"));
        assert!(
            !managed_by.ends_with(".k8s.io") && managed_by.contains('/'),
            "{en}: managed-by {managed_by} must be our own, not a controller's"
        );
        assert!(
            ["IPv4", "IPv6"].contains(&e.address_type.as_str()),
            "{en}: addressType {}",
            e.address_type
        );
        let protocol = |p: Option<&String>| p.map_or("TCP", |p| p.as_str()).to_owned();
        let want: BTreeSet<(Option<String>, String)> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), protocol(p.protocol.as_ref())))
            .collect();
        let got: BTreeSet<(Option<String>, String)> = e
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), protocol(p.protocol.as_ref())))
            .collect();
        assert_eq!(
            got, want,
            "{en}: port names and protocols must be the Service's"
        );
        // The addresses the experiment puts in are pod IPs of the Service's app: its port must
        // be one their container listens on.
        let app = app_label(&svc.metadata).expect("the Service's app label");
        for port in e.ports.iter().flatten() {
            let n = port.port.unwrap_or_else(|| panic!("{en}: a port number"));
            for d in all
                .deployments
                .iter()
                .filter(|d| pod_labels(d)["app"] == app)
            {
                assert!(
                    pod_spec(d)
                        .containers
                        .iter()
                        .any(|c| container_has_port(c, &IntOrString::Int(n))),
                    "{en}: port {n} is not a port of {}",
                    name(d)
                );
            }
        }
        for endpoint in e.endpoints.iter().flatten() {
            for a in &endpoint.addresses {
                let ip: std::net::IpAddr = a.parse().unwrap_or_else(|_| panic!("{en}: {a}"));
                assert_eq!(ip.is_ipv4(), e.address_type == "IPv4", "{en}: {a}");
            }
        }
    }
}

fn a_pod_with_hostname_and_subdomain_sits_under_a_headless_service_that_selects_it(via: Via) {
    let all = via.load_all();
    let experiments = via.load_experiments();
    let named: Vec<&Pod> = experiments
        .pods
        .iter()
        .filter(|p| p.spec.as_ref().unwrap().subdomain.is_some())
        .collect();
    assert!(!named.is_empty(), "a pod with hostname and subdomain");
    for p in named {
        let pn = name(p);
        let spec = p.spec.as_ref().unwrap();
        let subdomain = spec.subdomain.as_deref().unwrap();
        let hostname = spec
            .hostname
            .as_deref()
            .unwrap_or_else(|| panic!("{pn}: without a hostname the pod gets no record"));
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        assert!(label_ok(hostname) && label_ok(subdomain), "{pn}");
        let svc = find_service(&all, subdomain)
            .unwrap_or_else(|| panic!("{pn}: subdomain {subdomain} names no Service"));
        let ss = service_spec(svc);
        assert_eq!(
            ss.cluster_ip.as_deref(),
            Some("None"),
            "{pn}: Service {subdomain} must be headless"
        );
        let labels = p.metadata.labels.clone().unwrap_or_default();
        let selector = ss.selector.clone().unwrap_or_default();
        assert!(
            !selector.is_empty() && subset(&selector, &labels),
            "{pn}: Service {subdomain} must select the pod"
        );
        if ss.publish_not_ready_addresses != Some(true) {
            assert!(
                spec.containers.iter().all(|c| c.readiness_probe.is_some()),
                "{pn}: only a ready pod gets its record"
            );
        }
        let fqdn = format!("{hostname}.{subdomain}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}");
        assert!(fqdn.len() <= 253, "{pn}: {fqdn} is too long for a DNS name");
    }
}

fn the_not_ready_service_is_quote_headless_publishing_every_pod(via: Via) {
    let all = via.load_all();
    let experiments = via.load_experiments();
    let all_pods = experiments
        .services
        .iter()
        .find(|s| service_spec(s).publish_not_ready_addresses == Some(true))
        .expect("a Service with publishNotReadyAddresses");
    let headless = service_spec(find_service(&all, "quote-headless").unwrap());
    let spec = service_spec(all_pods);
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(
        spec.selector, headless.selector,
        "the same pods as quote-headless"
    );
    assert_ne!(headless.publish_not_ready_addresses, Some(true));
}

fn the_dns_client_adds_search_domains_and_changes_ndots(via: Via) {
    let all = via.load_all();
    let experiments = via.load_experiments();
    let clients: Vec<&Pod> = experiments
        .pods
        .iter()
        .filter(|p| p.spec.as_ref().unwrap().dns_config.is_some())
        .collect();
    assert!(!clients.is_empty(), "a pod with dnsConfig");
    for p in clients {
        let pn = name(p);
        let spec = p.spec.as_ref().unwrap();
        assert!(
            spec.dns_policy
                .as_deref()
                .is_none_or(|d| d == "ClusterFirst"),
            "{pn}: ClusterFirst keeps the cluster's search list, to which ours is added"
        );
        let config = spec.dns_config.as_ref().unwrap();
        let searches = config.searches.clone().unwrap_or_default();
        assert!(searches.len() >= 2, "{pn}: extra search domains");
        for domain in &searches {
            let prefix = domain
                .strip_suffix(&format!(".svc.{CLUSTER_DOMAIN}"))
                .unwrap_or_else(|| panic!("{pn}: {domain} is not a cluster domain"));
            // `<namespace>` or `<headless Service>.<namespace>`.
            if let Some((svc, ns)) = prefix.split_once('.') {
                assert_eq!(ns, NAMESPACE, "{pn}: {domain}");
                let s = find_service(&all, svc)
                    .unwrap_or_else(|| panic!("{pn}: {domain} names no Service"));
                assert_eq!(
                    service_spec(s).cluster_ip.as_deref(),
                    Some("None"),
                    "{pn}: only a headless Service has names under it"
                );
            }
        }
        let ndots = config
            .options
            .iter()
            .flatten()
            .find(|o| o.name.as_deref() == Some("ndots"))
            .and_then(|o| o.value.as_deref())
            .unwrap_or_else(|| panic!("{pn}: ndots"));
        let ndots: u32 = ndots.parse().unwrap();
        assert!(ndots < 5, "{pn}: ndots {ndots} is the default or more");
        // A client only: no Service sends it traffic.
        let labels = p.metadata.labels.clone().unwrap_or_default();
        for s in &all.services {
            if let Some(selector) = &service_spec(s).selector {
                assert!(!subset(selector, &labels), "{pn}: selected by {}", name(s));
            }
        }
    }
}

/// A kind cluster configuration, as YAML.
fn kind_config(file: &str) -> Value {
    let text = std::fs::read_to_string(root().join("kind").join(file)).unwrap();
    let config: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(config["kind"].as_str(), Some("Cluster"), "{file}");
    assert_eq!(
        config["apiVersion"].as_str(),
        Some("kind.x-k8s.io/v1alpha4"),
        "{file}"
    );
    let known_top = ["kind", "apiVersion", "name", "nodes", "networking"];
    let known_node = ["role", "labels", "extraPortMappings"];
    for key in config.as_mapping().unwrap().keys() {
        assert!(
            known_top.contains(&key.as_str().unwrap()),
            "{file}: {key:?}"
        );
    }
    for node in config["nodes"].as_sequence().unwrap() {
        for key in node.as_mapping().unwrap().keys() {
            assert!(
                known_node.contains(&key.as_str().unwrap()),
                "{file}: {key:?}"
            );
        }
        assert!(
            ["control-plane", "worker"].contains(&node["role"].as_str().unwrap()),
            "{file}"
        );
    }
    config
}

/// Node by node, the host ports of a lab cluster must be those of kind/cluster.yaml, which the
/// README's commands use.
fn same_host_ports_as_the_lab(file: &str, config: &Value) {
    let lab = kind_config("cluster.yaml");
    assert_eq!(
        config["name"], lab["name"],
        "{file}: the make targets use that name"
    );
    let lab_nodes = lab["nodes"].as_sequence().unwrap();
    let nodes = config["nodes"].as_sequence().unwrap();
    assert!(nodes.len() >= lab_nodes.len(), "{file}");
    for (i, (a, b)) in lab_nodes.iter().zip(nodes).enumerate() {
        assert_eq!(a["role"], b["role"], "{file}: node {i}");
        assert_eq!(
            a["extraPortMappings"], b["extraPortMappings"],
            "{file}: node {i}"
        );
    }
}

fn dual_stack_service_and_its_kind_cluster(via: Via) {
    let experiments = via.load_experiments();
    assert!(
        experiments.services.iter().any(|s| {
            let spec = service_spec(s);
            spec.ip_family_policy.as_deref() == Some("PreferDualStack") && spec.selector.is_some()
        }),
        "a PreferDualStack Service: it applies to single-stack clusters too"
    );
    let config = kind_config("cluster-dual-stack.yaml");
    assert_eq!(config["networking"]["ipFamily"].as_str(), Some("dual"));
    same_host_ports_as_the_lab("cluster-dual-stack.yaml", &config);
}

fn topology_aware_service_and_a_kind_cluster_in_two_zones(via: Via) {
    let experiments = via.load_experiments();
    assert!(
        experiments.services.iter().any(|s| {
            let spec = service_spec(s);
            spec.traffic_distribution.as_deref() == Some("PreferClose") && spec.selector.is_some()
        }),
        "a Service with trafficDistribution: PreferClose"
    );
    let file = "cluster-zones.yaml";
    let config = kind_config(file);
    same_host_ports_as_the_lab(file, &config);
    let mut workers_per_zone: BTreeMap<String, usize> = BTreeMap::new();
    for node in config["nodes"].as_sequence().unwrap() {
        let labels = node["labels"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{file}: every node is in a zone"));
        for key in labels.keys() {
            // A kubelet may set this label on its own node (kind passes them as --node-labels).
            assert_eq!(key.as_str(), Some("topology.kubernetes.io/zone"), "{file}");
        }
        let zone = labels
            .get("topology.kubernetes.io/zone")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{file}: every node is in a zone"))
            .to_owned();
        let worker = usize::from(node["role"].as_str() == Some("worker"));
        *workers_per_zone.entry(zone).or_default() += worker;
    }
    assert_eq!(
        workers_per_zone.len(),
        2,
        "{file}: two zones, {workers_per_zone:?}"
    );
    assert!(
        workers_per_zone.values().all(|&n| n > 0),
        "{file}: pods run in both zones, {workers_per_zone:?}"
    );
}

/// The value of `var` in a container's environment, where it is given literally.
fn env_value<'a>(c: &'a Container, var: &str) -> Option<&'a str> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == var)
        .and_then(|e| e.value.as_deref())
}

/// The Secret whose volume is mounted at a directory containing `file`.
fn secret_holding(spec: &PodSpec, c: &Container, file: &str) -> Option<String> {
    let mount = c.volume_mounts.iter().flatten().find(|m| {
        Path::new(file).parent() == Some(Path::new(&m.mount_path)) && m.read_only == Some(true)
    })?;
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)?
        .secret
        .as_ref()?
        .secret_name
        .clone()
}

fn the_postgres_variant_runs_three_quiz_replicas_on_one_database(via: Via) {
    let variant = via.load_postgres_only();
    let kinds: BTreeSet<(&str, &str)> = variant
        .deployments
        .iter()
        .map(|d| ("Deployment", name(d)))
        .chain(
            variant
                .statefulsets
                .iter()
                .map(|s| ("StatefulSet", name(s))),
        )
        .chain(variant.services.iter().map(|s| ("Service", name(s))))
        .chain(variant.policies.iter().map(|p| ("NetworkPolicy", name(p))))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            ("Deployment", "quiz"),
            ("NetworkPolicy", "postgres"),
            ("Service", "postgres"),
            ("StatefulSet", "postgres"),
        ]),
        "the variant replaces quiz's Deployment and adds the database, nothing else"
    );
    assert_eq!(
        variant.kinds_in_order.len(),
        4,
        "no Secret: the user creates it"
    );

    let objects = via.load_postgres();
    let quiz = objects
        .deployments
        .iter()
        .find(|d| name(*d) == "quiz")
        .unwrap();
    assert_eq!(quiz.spec.replicas, Some(3));
    let strategy = quiz.spec.strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(
        strategy
            .rolling_update
            .as_ref()
            .and_then(|r| r.max_unavailable.clone()),
        Some(IntOrString::Int(0)),
        "a rollout never takes a ready quiz pod away first"
    );
    let pod = pod_spec(quiz);
    let c = &pod.containers[0];
    assert!(
        pod.volumes
            .iter()
            .flatten()
            .all(|v| v.persistent_volume_claim.is_none()),
        "quiz keeps no volume of its own"
    );
    assert_eq!(
        env_value(c, "DB_PATH"),
        None,
        "--db and --database-url conflict"
    );

    // The URL names the Service `postgres` on its port, with no password in it.
    let url = env_value(c, "DATABASE_URL").expect("DATABASE_URL");
    let rest = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let (user, rest) = rest.split_once('@').expect("a user");
    assert!(!user.contains(':'), "no password in the URL: {url}");
    let (authority, database) = rest.split_once('/').expect("a database");
    let (host, port) = authority.split_once(':').expect("a port");
    let port: i32 = port.parse().unwrap();
    let service = find_service(&objects, host).unwrap_or_else(|| panic!("no Service {host}"));
    let spec = service_spec(service);
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless");
    let service_port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == port)
        .unwrap_or_else(|| panic!("Service {host} has no port {port}"));

    let password_file = env_value(c, "DATABASE_PASSWORD_FILE").expect("DATABASE_PASSWORD_FILE");
    assert_eq!(
        secret_holding(pod, c, password_file).as_deref(),
        Some("postgres")
    );

    let db = objects
        .statefulsets
        .iter()
        .find(|s| name(*s) == "postgres")
        .unwrap();
    let db_spec = &db.spec;
    assert_eq!(db_spec.service_name.as_deref(), Some(host));
    let db_labels = db_spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert!(matches(&db_spec.selector, &db_labels));
    assert!(subset(spec.selector.as_ref().unwrap(), &db_labels));
    let db_pod = db_spec.template.spec.as_ref().unwrap();
    let pg = &db_pod.containers[0];
    assert!(
        container_has_port(pg, service_port.target_port.as_ref().unwrap()),
        "the Service's targetPort is the server's port"
    );
    assert!(
        pg.ports.iter().flatten().any(|p| p.container_port == port),
        "PostgreSQL listens on {port}"
    );
    assert_eq!(env_value(pg, "POSTGRES_USER"), Some(user));
    assert_eq!(env_value(pg, "POSTGRES_DB"), Some(database));
    let pg_password = env_value(pg, "POSTGRES_PASSWORD_FILE").expect("POSTGRES_PASSWORD_FILE");
    assert_eq!(
        secret_holding(db_pod, pg, pg_password).as_deref(),
        Some("postgres")
    );
    assert!(
        pg.env.iter().flatten().all(|e| e
            .value_from
            .as_ref()
            .is_none_or(|f| f.secret_key_ref.is_none())),
        "secrets as files, not environment variables"
    );

    // Its data on a volume of its own, PGDATA a directory below the mount point.
    let claims = db_spec
        .volume_claim_templates
        .as_ref()
        .expect("a PVC per pod");
    let data = name(&claims[0]);
    let mounts: BTreeMap<&str, &str> = pg
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.as_str(), m.name.as_str()))
        .collect();
    let data_mount = mounts
        .iter()
        .find(|(_, v)| **v == data)
        .map(|(p, _)| *p)
        .expect("the claim is mounted");
    let pgdata = env_value(pg, "PGDATA").expect("PGDATA");
    assert!(
        Path::new(pgdata).parent() == Some(Path::new(data_mount)),
        "PGDATA {pgdata} is a directory directly below the volume {data_mount}"
    );
    // A read-only root filesystem, with writable directories where the server writes.
    for dir in ["/var/run/postgresql", "/tmp"] {
        let volume = mounts
            .get(dir)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
        assert!(
            db_pod
                .volumes
                .iter()
                .flatten()
                .any(|v| v.name == *volume && v.empty_dir.is_some()),
            "{dir} is an emptyDir"
        );
    }
    assert!(
        pg.image
            .as_deref()
            .is_some_and(|i| i.starts_with("postgres:") && i.ends_with("-alpine")),
        "the official alpine image: its postgres user is UID 70"
    );
    assert_eq!(db_pod.automount_service_account_token, Some(false));
    let psc = db_pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!((psc.run_as_user, psc.fs_group), (Some(70), Some(70)));
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let sc = pg.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.clone().unwrap(),
        ["ALL"]
    );
    let res = pg.resources.as_ref().unwrap();
    for key in ["cpu", "memory"] {
        assert!(res.requests.as_ref().unwrap().contains_key(key), "{key}");
        assert!(res.limits.as_ref().unwrap().contains_key(key), "{key}");
    }
    assert!(pg.readiness_probe.is_some() && pg.liveness_probe.is_some());
    let skips: BTreeSet<&str> = db
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("checkov.io/skip"))
        .map(|(_, v)| {
            let (check, reason) = v.split_once('=').expect("CHECK=reason");
            assert!(reason.len() > 20, "{check} needs its reason");
            check
        })
        .collect();
    assert_eq!(
        skips,
        BTreeSet::from(["CKV_K8S_40", "CKV_K8S_43"]),
        "UID 70 is the image's; the public image follows its tag"
    );
}

fn in_the_postgres_variant_services_find_pods_and_only_quiz_reaches_the_database(via: Via) {
    let objects = via.load_postgres();
    // Every Service with a selector finds pods, now StatefulSets' too, on a port they declare.
    let mut pods: Vec<(String, Labels, &PodSpec)> = workloads(&objects)
        .into_iter()
        .map(|w| (w.name.to_owned(), w.labels, w.spec))
        .collect();
    for s in &objects.statefulsets {
        let template = &s.spec.template;
        pods.push((
            name(s).to_owned(),
            template.metadata.as_ref().unwrap().labels.clone().unwrap(),
            template.spec.as_ref().unwrap(),
        ));
    }
    for s in &objects.services {
        let Some(selector) = service_spec(s).selector.clone() else {
            continue;
        };
        let backing: Vec<_> = pods
            .iter()
            .filter(|(_, labels, _)| subset(&selector, labels))
            .collect();
        assert!(!backing.is_empty(), "Service {} selects no pods", name(s));
        for port in service_spec(s).ports.iter().flatten() {
            let target = port
                .target_port
                .clone()
                .unwrap_or(IntOrString::Int(port.port));
            for (n, _, spec) in &backing {
                assert!(
                    spec.containers
                        .iter()
                        .any(|c| container_has_port(c, &target)),
                    "{} port {target:?} is not a port of {n}",
                    name(s)
                );
            }
        }
    }

    let p = &objects.policies;
    let pod = |app: &str, namespace: &'static str, ns_labels: Labels| Source::Pod {
        labels: Labels::from([("app".into(), app.into()), ("rel".into(), "stable".into())]),
        namespace,
        namespace_labels: ns_labels,
    };
    let here = || Labels::from([("kubernetes.io/metadata.name".into(), NAMESPACE.into())]);
    let monitoring = Labels::from([("kiada.example/monitoring".into(), "true".into())]);
    let postgres = Labels::from([("app".into(), "postgres".into())]);
    let curl_pod = Source::Pod {
        labels: Labels::from([("run".into(), "client".into())]),
        namespace: NAMESPACE,
        namespace_labels: here(),
    };
    let cases: [(&str, Source, bool); 7] = [
        ("quiz → postgres", pod("quiz", NAMESPACE, here()), true),
        ("kiada → postgres", pod("kiada", NAMESPACE, here()), false),
        ("quote → postgres", pod("quote", NAMESPACE, here()), false),
        ("curl pod → postgres", curl_pod, false),
        (
            "monitoring → postgres",
            pod("prometheus", "monitoring", monitoring),
            false,
        ),
        (
            "quiz elsewhere → postgres",
            pod("quiz", "default", Labels::new()),
            false,
        ),
        ("outside → postgres", Source::Outside, false),
    ];
    for (flow, source, want) in cases {
        assert_eq!(
            allowed(p, &source, &postgres, "postgres", 5432),
            want,
            "{flow}"
        );
    }
    // Only the database's port, even for quiz.
    assert!(!allowed(
        p,
        &pod("quiz", NAMESPACE, here()),
        &postgres,
        "other",
        22
    ));
    // quiz itself is reached as before.
    let quiz = Labels::from([
        ("app".into(), "quiz".into()),
        ("rel".into(), "stable".into()),
    ]);
    assert!(allowed(
        p,
        &pod("kiada", NAMESPACE, here()),
        &quiz,
        "http",
        8080
    ));
    assert!(!allowed(p, &Source::Outside, &quiz, "http", 8080));
    // Every pod has a policy.
    for (n, labels, _) in &pods {
        assert!(
            p.iter().any(|pol| pol
                .spec
                .as_ref()
                .unwrap()
                .pod_selector
                .as_ref()
                .is_none_or(|sel| matches(sel, labels))),
            "{n} has no policy"
        );
    }
}

/// Each check above as a test of its own, on the files (`files::…`) and on the renderings of the
/// kustomizations: the suite (`kustomized::…`), the published images (`published::…`), the
/// custom tips and questions (`custom::…`) and another registry by `make deploy`
/// (`registry::…`), each with its experiments and PostgreSQL variant.
macro_rules! checks {
    ($($check:ident),* $(,)?) => {
        mod files {
            $(#[test] fn $check() { super::$check(super::Via::Files) })*
        }
        checks!(@variant kustomized, KUSTOMIZED, $($check),*);
        checks!(@variant published, PUBLISHED, $($check),*);
        checks!(@variant custom, CUSTOM, $($check),*);
        checks!(@variant registry, REGISTRY, $($check),*);
    };
    (@variant $module:ident, $variant:ident, $($check:ident),*) => {
        mod $module {
            $(#[test] fn $check() {
                let test = concat!("manifests::", stringify!($module), "::", stringify!($check));
                if crate::kustomize::kubectl_or_skip(test).is_some() {
                    super::$check(super::Via::Kustomize(&super::$variant));
                }
            })*
        }
    };
}

checks!(
    the_namespace_comes_first_with_pod_security_labels,
    the_deployments_are_the_ones_the_chapter_uses,
    every_pod_meets_the_restricted_profile_and_knows_its_identity,
    only_the_approved_policy_checks_are_skipped,
    images_match_what_the_dockerfile_and_makefile_build,
    services_find_their_pods_and_ports,
    the_backend_urls_name_services_defined_here,
    network_policies_allow_the_intended_flows_only,
    every_service_carries_the_label_of_its_app,
    experiments_add_to_the_suite_and_replace_nothing,
    the_external_name_aliases_a_service_of_the_suite,
    hand_written_endpoint_slices_belong_to_services_without_a_selector,
    a_pod_with_hostname_and_subdomain_sits_under_a_headless_service_that_selects_it,
    the_not_ready_service_is_quote_headless_publishing_every_pod,
    the_dns_client_adds_search_domains_and_changes_ndots,
    dual_stack_service_and_its_kind_cluster,
    topology_aware_service_and_a_kind_cluster_in_two_zones,
    the_postgres_variant_runs_three_quiz_replicas_on_one_database,
    in_the_postgres_variant_services_find_pods_and_only_quiz_reaches_the_database,
);
