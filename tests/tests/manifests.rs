//! `manifests/` read with the typed Kubernetes API and checked for meaning, not only shape:
//! selectors find pods, ports and probes exist, the backend URLs name Services defined here,
//! every pod meets the restricted profile, and the NetworkPolicies allow exactly the intended
//! flows. Then each probe the manifests use is asked of the real binary.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, PersistentVolumeClaim, PodSpec, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde_yaml_ng::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const NAMESPACE: &str = "kiada";
type Labels = BTreeMap<String, String>;

#[derive(Default)]
struct Objects {
    kinds_in_order: Vec<String>,
    namespaces: Vec<Namespace>,
    deployments: Vec<Deployment>,
    services: Vec<Service>,
    claims: Vec<PersistentVolumeClaim>,
    budgets: Vec<PodDisruptionBudget>,
    policies: Vec<NetworkPolicy>,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn load() -> Objects {
    let dir = root().join("manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut objects = Objects::default();
    for file in files {
        assert!(file.is_file(), "manifests/ stays flat: {}", file.display());
        assert_eq!(
            file.extension().and_then(|e| e.to_str()),
            Some("yaml"),
            "{}",
            file.display()
        );
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap();
            if value.is_null() {
                continue;
            }
            let kind = value["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("no kind in {}", file.display()))
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
                "Service" => objects
                    .services
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
                other => panic!("unexpected kind {other} in {}", file.display()),
            }
            objects.kinds_in_order.push(kind);
        }
    }
    objects
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

#[test]
fn the_namespace_comes_first_with_pod_security_labels() {
    let objects = load();
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

#[test]
fn the_deployments_are_the_ones_the_chapter_uses() {
    let objects = load();
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

#[test]
fn every_pod_meets_the_restricted_profile_and_knows_its_identity() {
    let objects = load();
    for d in &objects.deployments {
        let pod = pod_spec(d);
        let dn = name(d);
        assert_eq!(pod.automount_service_account_token, Some(false), "{dn}");
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

#[test]
fn only_the_approved_policy_checks_are_skipped() {
    // Local images loaded into kind or minikube are neither pulled Always nor pinned by digest.
    let objects = load();
    for d in &objects.deployments {
        let annotations = d.metadata.annotations.clone().unwrap_or_default();
        let skips: Vec<&String> = annotations
            .iter()
            .filter(|(k, _)| k.starts_with("checkov.io/skip"))
            .map(|(_, v)| v)
            .collect();
        assert_eq!(skips.len(), 2, "{}", name(d));
        for skip in skips {
            let (check, reason) = skip.split_once('=').expect("CHECK=reason");
            assert!(
                ["CKV_K8S_15", "CKV_K8S_43"].contains(&check),
                "{}: unapproved skip {check}",
                name(d)
            );
            assert!(reason.len() > 20, "{}: {check} needs its reason", name(d));
        }
    }
}

#[test]
fn images_match_what_the_dockerfile_and_makefile_build() {
    let objects = load();
    let dockerfile = std::fs::read_to_string(root().join("Dockerfiles/Dockerfile")).unwrap();
    let makefile = std::fs::read_to_string(root().join("Makefile")).unwrap();
    assert!(
        makefile.contains("REGISTRY ?= localhost/kiada"),
        "the Makefile's default registry"
    );
    for d in &objects.deployments {
        for c in &pod_spec(d).containers {
            assert_eq!(
                c.image.as_deref(),
                Some(format!("localhost/kiada/{}:{VERSION}", c.name).as_str()),
                "{}",
                name(d)
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

#[test]
fn services_find_their_pods_and_ports() {
    let objects = load();
    let mut node_ports = HashSet::new();
    for s in &objects.services {
        let spec = s.spec.as_ref().unwrap();
        let selector = spec.selector.clone().unwrap_or_default();
        let backing: Vec<&Deployment> = objects
            .deployments
            .iter()
            .filter(|d| subset(&selector, &pod_labels(d)))
            .collect();
        assert!(
            !backing.is_empty(),
            "Service {} selects no Deployment's pods",
            name(s)
        );
        for port in spec.ports.iter().flatten() {
            let target = port
                .target_port
                .clone()
                .unwrap_or(IntOrString::Int(port.port));
            for d in &backing {
                assert!(
                    pod_spec(d)
                        .containers
                        .iter()
                        .any(|c| container_has_port(c, &target)),
                    "{} port {:?} is not a port of {}",
                    name(s),
                    target,
                    name(*d)
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

#[test]
fn the_backend_urls_name_services_defined_here() {
    let objects = load();
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

#[test]
fn network_policies_allow_the_intended_flows_only() {
    let objects = load();
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
    // Every pod of the suite is covered by some policy.
    for d in &objects.deployments {
        assert!(
            p.iter().any(|pol| {
                let sel = pol.spec.as_ref().unwrap().pod_selector.as_ref();
                sel.is_none_or(|sel| matches(sel, &pod_labels(d)))
            }),
            "{} has no policy",
            name(d)
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
