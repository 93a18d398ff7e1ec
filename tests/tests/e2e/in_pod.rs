//! Every command the README, the docs, the manifests' comments and the tips tell a learner to
//! type inside a pod, run with the tools the pod has, where the answer needs no Kubernetes.
//!
//! The pods' images are Alpine: busybox applets (`sh`, `nslookup`, `ping`, `wget`, `env`, `cat`,
//! `hostname`), musl's `getent` and curl. Here they are Debian's `busybox` (the same applets),
//! curl, and a small `getent hosts` built with `musl-gcc -static` from [`GETENT_C`], so that its
//! lookups walk the search list exactly as musl does.
//!
//! The stand-in for the namespace: two network namespaces of the test's own (`unshare --net`),
//! the pods' and a node's, joined by a veth pair. The node forwards the Service range
//! (`10.96.0.0/12`) and the pod range (`10.244.0.0/16`) to a `tun` device that nothing reads,
//! standing for the rest of the cluster, so nothing answers there unless nftables rules in the
//! pods' namespace, written the way kube-proxy's iptables mode works, rewrite a connection
//! (DNAT) to one of the suite's real binaries listening on loopback there:
//! a ClusterIP's declared ports to its pods (at random, by client address for `sessionAffinity:
//! ClientIP`, only this node's pods for `internalTrafficPolicy: Local`), a pod IP's container
//! port to that pod, and the cluster DNS Service's port 53 to dnsmasq, which answers the lab's
//! names as cluster DNS does (ClusterIPs, the headless Services' pods, a pod's hostname under its
//! subdomain, the ExternalName's CNAME, SRV records) and NXDOMAIN for every other name. Each pod
//! is a process holding a mount namespace (the `resolv.conf` the kubelet writes for that pod,
//! bound over `/etc/resolv.conf`) and a UTS namespace (the pod's hostname); a command runs there
//! with `nsenter`, as the pods' user (10001), with the environment the kubelet gives that
//! container (its `env`, the downward API values, and the variables of the Services that
//! existed when it started). The node rejects what kube-proxy rejects: connections to a Service
//! without endpoints, and, in its nftables mode, anything else sent to a ClusterIP, so the ICMP
//! error comes back to the pod as it does in a cluster. Everything dies with the processes.
//!
//! A few `kubectl` commands between the in-pod ones change what the next ones see, and are
//! played here: patching the hand-written EndpointSlice, and restarting kiada (new pods, with
//! the variables of the Services that exist now).
//!
//! Each command must exit 0, or fail as the text says it fails; where a `text` block follows a
//! `sh` block, what the commands print must be what it shows, line by line, with `…` for lines
//! left out and pod names, node names, addresses and timings allowed to differ. The commands
//! that need a real cluster are in [`NEEDS_A_CLUSTER`], each with the reason. With
//! `IN_POD_VERBOSE=1` the test prints every command it runs and what it printed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

use crate::readme::{DOCS, GUIDE, Snippets, snippets, words, yaml_docs};

/// `getent hosts NAME` as Alpine's `getent` (musl-utils) does it: an IPv6 lookup, then an
/// IPv4 one, through musl's resolver; the first address, the canonical name, then any aliases.
/// Not found: exit status 2 and nothing printed.
const GETENT_C: &str = r#"#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 3 || strcmp(argv[1], "hosts") != 0) {
        fprintf(stderr, "usage: getent hosts NAME\n");
        return 1;
    }
    struct hostent *h = gethostbyname2(argv[2], AF_INET6);
    if (!h) h = gethostbyname2(argv[2], AF_INET);
    if (!h) return 2;
    char address[INET6_ADDRSTRLEN];
    inet_ntop(h->h_addrtype, h->h_addr_list[0], address, sizeof address);
    printf("%-16s  %s", address, h->h_name);
    for (char **alias = h->h_aliases; *alias; alias++)
        printf("%s%s", alias == h->h_aliases ? "  " : " ", *alias);
    printf("\n");
    return 0;
}
"#;

/// In-pod commands that are not run here, and why. A command matches when it contains the
/// first string.
///
/// Some that are run show a change a cluster makes between two commands, which the stand-in
/// does not make: after the canary's readiness is disabled, the headless Service's name still
/// lists it here (in a cluster the EndpointSlice controller marks it not ready and the cluster
/// DNS drops it), and the quote Services keep sending it connections. The commands and their
/// tools are what this test checks; that change needs a cluster.
const NEEDS_A_CLUSTER: &[(&str, &str)] = &[
    (
        "kiada check",
        "it reports what holds in the cluster it runs in, claim by claim; \
         kiada/tests/it/check.rs runs it against stand-ins",
    ),
    (
        "quote-dual/",
        "needs a dual-stack cluster (kind/cluster-dual-stack.yaml): IPv4 and IPv6 ClusterIPs \
         and pod addresses",
    ),
    (
        "quote-near/",
        "needs the zoned cluster (kind/cluster-zones.yaml): the EndpointSlice controller's zone \
         hints and kube-proxy on nodes of two zones",
    ),
    (
        "kubectl run probe -n default",
        "a new pod in another namespace, refused by the NetworkPolicies: needs the network \
         plugin enforcing them",
    ),
    (
        "kubectl run client",
        "an interactive shell in a new pod: nothing to compare",
    ),
    (
        "localhost:9901/…",
        "a pattern for any admin route, not a command; the admin commands themselves are run",
    ),
];

/// In-pod commands that fail on purpose where no text block shows it (a table, a comment, a
/// tip), with their exit status.
const EXPECTED_FAILURES: &[(&str, i32, &str)] = &[
    (
        "ping -c1 -W2 quote",
        1,
        "nothing answers an echo request to a ClusterIP",
    ),
    (
        "curl -s -m 2 quote-manual/",
        7,
        "the Service has no endpoints yet: kube-proxy rejects the connection",
    ),
    (
        "dns-client -- getent hosts quiz.kiada",
        2,
        "with ndots 1 musl asks for quiz.kiada only",
    ),
];

/// Tips that name an in-pod command: a distinctive part of the tip, the pod, the command.
const TIP_COMMANDS: &[(&str, &str, &str)] = &[
    (
        "curl http://quiz works",
        "deploy/kiada",
        "curl -s http://quiz",
    ),
    (
        "-- cat /etc/resolv.conf",
        "deploy/kiada",
        "cat /etc/resolv.conf",
    ),
    (
        "-- nslookup quote.kiada.svc.cluster.local",
        "deploy/kiada",
        "nslookup quote.kiada.svc.cluster.local",
    ),
    (
        "for quote-headless.kiada.svc.cluster.local it prints",
        "deploy/kiada",
        "nslookup quote-headless.kiada.svc.cluster.local",
    ),
    (
        "-- env | grep SERVICE_HOST",
        "deploy/kiada",
        "env | grep SERVICE_HOST",
    ),
    (
        "curl quote-sticky/ run again",
        "deploy/kiada",
        "curl -s quote-sticky/",
    ),
    (
        "<quote-pod> -- curl -s -X POST localhost:9901/healthz/ready/disable",
        "<quote-pod>",
        "curl -s -X POST localhost:9901/healthz/ready/disable",
    ),
    (
        "-- curl -s http://quote/quote runs curl",
        "deploy/kiada",
        "curl -s http://quote/quote",
    ),
];

/// Tips that name a tool but give no in-pod command to run here, and why.
const TIP_OTHERS: &[(&str, &str)] = &[
    (
        "kubectl run probe -n default",
        "needs a cluster (see NEEDS_A_CLUSTER)",
    ),
    (
        "kubectl run client",
        "needs a cluster (see NEEDS_A_CLUSTER)",
    ),
    (
        "curl 'localhost:30080/lab/spread",
        "runs on the host, through the NodePort",
    ),
    ("Use kubectl exec into the pod", "no command"),
    ("so a ping goes unanswered", "no command"),
    ("not even reported by busybox's ping", "no command"),
    ("ICMP echo included", "no command"),
];

const NAMESPACE: &str = "kiada";
const DOMAIN: &str = "svc.cluster.local";
/// The cluster DNS Service, as the kubelet puts it in every pod's resolv.conf.
const CLUSTER_DNS: &str = "10.96.0.10";
/// Where dnsmasq listens inside the namespace; the DNS Service's port 53 is rewritten to it.
const DNSMASQ: &str = "127.0.0.153";
/// The pods' user and group (the manifests' runAsUser and runAsGroup).
const POD_USER: &str = "10001";

/// The pods of the stand-in: name, the manifest object it comes from (a Deployment's or a
/// Pod's name), its IP, its node, and the loopback port its server listens on here (0: none).
const PODS: &[(&str, &str, &str, &str, u16)] = &[
    (
        "kiada-7f9c8d6b5-4nh2s",
        "kiada",
        "10.244.1.6",
        "kiada-worker",
        18080,
    ),
    (
        "quote-6d5f8b7c9d-2xk8q",
        "quote",
        "10.244.1.4",
        "kiada-worker",
        18081,
    ),
    (
        "quote-6d5f8b7c9d-h7m4p",
        "quote",
        "10.244.1.5",
        "kiada-worker",
        18082,
    ),
    (
        "quote-6d5f8b7c9d-wz9rt",
        "quote",
        "10.244.2.3",
        "kiada-worker2",
        18083,
    ),
    (
        "quote-canary-7c9f6b8d5-k2v8n",
        "quote-canary",
        "10.244.2.4",
        "kiada-worker2",
        18084,
    ),
    (
        "quote-named",
        "quote-named",
        "10.244.2.7",
        "kiada-worker2",
        18085,
    ),
    (
        "quiz-5b8d7f6c4-xq2lm",
        "quiz",
        "10.244.2.5",
        "kiada-worker2",
        18090,
    ),
    ("dns-client", "dns-client", "10.244.1.8", "kiada-worker", 0),
];

/// The pod whose address is the source of every connection in the namespace.
const SOURCE_POD: &str = "kiada-7f9c8d6b5-4nh2s";
/// The node's address on the pods' link: their default route.
const GATEWAY: &str = "10.244.1.1";

fn node_ip(node: &str) -> &'static str {
    match node {
        "kiada-worker" => "172.18.0.3",
        _ => "172.18.0.4",
    }
}

struct Tools {
    busybox: PathBuf,
    curl: PathBuf,
    musl_gcc: PathBuf,
    dnsmasq: PathBuf,
    nft: PathBuf,
    nsenter: PathBuf,
}

fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

fn tools() -> Result<Tools, String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        return Err("needs root, for network and mount namespaces".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err(
            "needs /dev/net/tun, for the device that stands for the rest of the cluster".into(),
        );
    }
    let need = |name: &str, package: &str| {
        find(name).ok_or_else(|| format!("needs {name} (Debian's {package})"))
    };
    for (name, package) in [
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("ip", "iproute2"),
    ] {
        need(name, package)?;
    }
    Ok(Tools {
        busybox: need("busybox", "busybox")?,
        curl: need("curl", "curl")?,
        musl_gcc: need("musl-gcc", "musl-tools")?,
        dnsmasq: need("dnsmasq", "dnsmasq-base")?,
        nft: need("nft", "nftables")?,
        nsenter: need("nsenter", "util-linux")?,
    })
}

// ---------------------------------------------------------------------------------------------
// What the manifests define.

#[derive(Clone, Debug)]
struct Service {
    name: String,
    /// From `manifests/` (not the experiments): there when the suite's pods started.
    in_suite: bool,
    headless: bool,
    external_name: Option<String>,
    selector: BTreeMap<String, String>,
    /// (name, port, targetPort) of each port.
    ports: Vec<(Option<String>, i64, Value)>,
    local: bool,
    sticky: bool,
    cluster_ip: Option<String>,
}

struct Workload {
    labels: BTreeMap<String, String>,
    env: Vec<Value>,
    hostname: Option<String>,
    subdomain: Option<String>,
    dns_config: Value,
}

struct Manifests {
    services: Vec<Service>,
    workloads: BTreeMap<String, Workload>,
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
        .collect()
}

fn manifests() -> Manifests {
    let suite: BTreeSet<String> = yaml_docs("manifests")
        .iter()
        .filter(|d| d["kind"] == "Service")
        .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let mut docs = yaml_docs("manifests");
    docs.extend(yaml_docs("manifests/experiments"));
    let mut services = Vec::new();
    let mut workloads = BTreeMap::new();
    for doc in &docs {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match doc["kind"].as_str().unwrap_or_default() {
            "Service" => {
                let spec = &doc["spec"];
                services.push(Service {
                    in_suite: suite.contains(&name),
                    headless: spec["clusterIP"] == "None",
                    external_name: spec["externalName"].as_str().map(str::to_owned),
                    selector: string_map(&spec["selector"]),
                    ports: spec["ports"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            (
                                p["name"].as_str().map(str::to_owned),
                                p["port"].as_i64().unwrap(),
                                p["targetPort"].clone(),
                            )
                        })
                        .collect(),
                    local: spec["internalTrafficPolicy"] == "Local",
                    sticky: spec["sessionAffinity"] == "ClientIP",
                    cluster_ip: None,
                    name,
                });
            }
            kind @ ("Deployment" | "Pod") => {
                let (meta, spec) = if kind == "Pod" {
                    (&doc["metadata"], &doc["spec"])
                } else {
                    (
                        &doc["spec"]["template"]["metadata"],
                        &doc["spec"]["template"]["spec"],
                    )
                };
                let container = &spec["containers"][0];
                workloads.insert(
                    name,
                    Workload {
                        labels: string_map(&meta["labels"]),
                        env: container["env"].as_sequence().cloned().unwrap_or_default(),
                        hostname: spec["hostname"].as_str().map(str::to_owned),
                        subdomain: spec["subdomain"].as_str().map(str::to_owned),
                        dns_config: spec["dnsConfig"].clone(),
                    },
                );
            }
            _ => {}
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let mut next = 1;
    for s in &mut services {
        if !s.headless && s.external_name.is_none() {
            s.cluster_ip = Some(format!("10.96.1.{next}"));
            next += 1;
        }
    }
    Manifests {
        services,
        workloads,
    }
}

// ---------------------------------------------------------------------------------------------
// The namespace and its pods.

/// A process that holds namespaces open until its standard input closes.
struct Holder {
    child: Child,
}

impl Holder {
    fn start(mut command: Command) -> Holder {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the namespace holder starts");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the namespace holder did not set up");
        Holder { child }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A background process that dies with the test's thread (`setpriv --pdeathsig`) as well as on
/// drop.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Pod {
    name: &'static str,
    workload: &'static str,
    ip: &'static str,
    node: &'static str,
    port: u16,
}

fn pods() -> Vec<Pod> {
    PODS.iter()
        .map(|&(name, workload, ip, node, port)| Pod {
            name,
            workload,
            ip,
            node,
            port,
        })
        .collect()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// kube-proxy's choice of rules in this stand-in.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Only the declared ports of a ClusterIP are rewritten; anything else goes unanswered.
    Iptables,
    /// As in kube-proxy's nftables mode: anything else sent to a ClusterIP is rejected.
    Nftables,
}

struct Lab {
    // Dropped in this order: the servers and dnsmasq, the namespaces' holders, the files.
    _servers: Vec<testkit::Process>,
    _dnsmasq: Option<Background>,
    bin: PathBuf,
    manifests: Manifests,
    pods: Vec<Pod>,
    /// The node's network namespace: what leaves the pods and no rule rewrote is forwarded
    /// here, to the rest of the cluster (a `tun` device nothing reads: silence), or rejected.
    node: Option<Holder>,
    /// Pod name → the holder of its mount and UTS namespaces; the source pod's holds the pods'
    /// network namespace.
    holders: BTreeMap<&'static str, Holder>,
    /// The pod that `kubectl patch endpointslice quote-manual-1` put in the slice.
    manual_endpoint: Option<&'static str>,
    /// kiada's pods were started again after the experiments were applied.
    kiada_restarted: bool,
    mode: Mode,
    tools: Tools,
    /// Last: the files the processes above use.
    dir: tempfile::TempDir,
}

impl Lab {
    fn pod(&self, name: &str) -> &Pod {
        self.pods.iter().find(|p| p.name == name).unwrap()
    }

    fn workload(&self, pod: &Pod) -> &Workload {
        &self.manifests.workloads[pod.workload]
    }

    /// The pods a Service's selector picks (every one the manifests define is ready here).
    fn endpoints(&self, service: &Service) -> Vec<&Pod> {
        self.pods
            .iter()
            .filter(|p| selects(&service.selector, &self.workload(p).labels))
            .collect()
    }

    fn resolv_conf(&self, pod: &Pod) -> String {
        let dns = &self.workload(pod).dns_config;
        let mut search: Vec<String> = ["kiada.svc.cluster.local", DOMAIN, "cluster.local"]
            .map(str::to_owned)
            .to_vec();
        for s in dns["searches"].as_sequence().into_iter().flatten() {
            let s = s.as_str().unwrap().to_owned();
            if !search.contains(&s) {
                search.push(s);
            }
        }
        let mut options = vec![("ndots".to_owned(), Some("5".to_owned()))];
        for o in dns["options"].as_sequence().into_iter().flatten() {
            let name = o["name"].as_str().unwrap().to_owned();
            let value = o["value"].as_str().map(str::to_owned);
            match options.iter_mut().find(|(n, _)| *n == name) {
                Some(entry) => entry.1 = value,
                None => options.push((name, value)),
            }
        }
        let options: Vec<String> = options
            .into_iter()
            .map(|(n, v)| v.map_or(n.clone(), |v| format!("{n}:{v}")))
            .collect();
        format!(
            "search {}\nnameserver {CLUSTER_DNS}\noptions {}\n",
            search.join(" "),
            options.join(" ")
        )
    }

    /// The container's environment as the kubelet builds it: the spec's `env` with the downward
    /// API filled in, and, unless the spec sets the same name, the variables of the Services that
    /// existed when the container started.
    fn environment(&self, pod: &Pod, with_services: bool) -> Vec<(String, String)> {
        let w = self.workload(pod);
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), self.bin.display().to_string()),
            ("HOSTNAME".into(), self.hostname(pod)),
            ("HOME".into(), "/".into()),
        ];
        for e in &w.env {
            let name = e["name"].as_str().unwrap().to_owned();
            let value = match e["value"].as_str() {
                Some(v) => v.to_owned(),
                None => match e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap() {
                    "metadata.name" => pod.name.to_owned(),
                    "metadata.namespace" => NAMESPACE.to_owned(),
                    "status.podIP" => pod.ip.to_owned(),
                    "spec.nodeName" => pod.node.to_owned(),
                    "status.hostIP" => node_ip(pod.node).to_owned(),
                    "metadata.labels['rel']" => w.labels["rel"].clone(),
                    other => panic!("no downward API value for {other}"),
                },
            };
            env.push((name, value));
        }
        if with_services {
            let restarted = pod.workload.starts_with("kiada") && self.kiada_restarted;
            let mut services = vec![(
                "kubernetes".to_owned(),
                "10.96.0.1".to_owned(),
                443,
                Some("https".to_owned()),
            )];
            for s in &self.manifests.services {
                if let Some(ip) = &s.cluster_ip
                    && (s.in_suite || restarted)
                {
                    services.push((
                        s.name.clone(),
                        ip.clone(),
                        s.ports[0].1,
                        s.ports[0].0.clone(),
                    ));
                }
            }
            for (name, ip, port, port_name) in services {
                let prefix = name.to_uppercase().replace('-', "_");
                let mut vars = vec![
                    (format!("{prefix}_SERVICE_HOST"), ip.clone()),
                    (format!("{prefix}_SERVICE_PORT"), port.to_string()),
                ];
                if let Some(n) = port_name {
                    let n = n.to_uppercase().replace('-', "_");
                    vars.push((format!("{prefix}_SERVICE_PORT_{n}"), port.to_string()));
                }
                let url = format!("tcp://{ip}:{port}");
                let tcp = format!("{prefix}_PORT_{port}_TCP");
                vars.extend([
                    (format!("{prefix}_PORT"), url.clone()),
                    (tcp.clone(), url),
                    (format!("{tcp}_PROTO"), "tcp".into()),
                    (format!("{tcp}_PORT"), port.to_string()),
                    (format!("{tcp}_ADDR"), ip),
                ]);
                for (k, v) in vars {
                    if !env.iter().any(|(n, _)| *n == k) {
                        env.push((k, v));
                    }
                }
            }
        }
        env
    }

    fn hostname(&self, pod: &Pod) -> String {
        self.workload(pod)
            .hostname
            .clone()
            .unwrap_or_else(|| pod.name.to_owned())
    }

    /// `nsenter` into a pod's namespaces; `as_pod_user` drops to the pods' user.
    fn enter(&self, pod: &str, as_pod_user: bool) -> Command {
        let holder = self.holders.get(pod).unwrap_or(&self.holders[SOURCE_POD]);
        let mut c = Command::new(&self.tools.nsenter);
        c.args([
            "--target",
            &holder.pid(),
            "--net",
            "--mount",
            "--uts",
            "--wd=/",
        ]);
        if as_pod_user {
            c.args(["--setuid", POD_USER, "--setgid", POD_USER]);
        }
        c.arg("--");
        c
    }

    fn hosts_file(&self) -> (String, Vec<String>) {
        let mut hosts = vec![
            "10.96.0.1 kubernetes.default.svc.cluster.local".to_owned(),
            format!("{CLUSTER_DNS} kube-dns.kube-system.svc.cluster.local"),
        ];
        let mut extra = Vec::new();
        for s in &self.manifests.services {
            let fqdn = format!("{}.{NAMESPACE}.{DOMAIN}", s.name);
            if let Some(target) = &s.external_name {
                extra.push(format!("--cname={fqdn},{target}"));
            } else if let Some(ip) = &s.cluster_ip {
                hosts.push(format!("{ip} {fqdn}"));
                for (name, port, _) in &s.ports {
                    if let Some(name) = name {
                        extra.push(format!("--srv-host=_{name}._tcp.{fqdn},{fqdn},{port}"));
                    }
                }
            } else {
                // Headless: every endpoint (every pod here is ready, so publishing not-ready
                // ones changes nothing), and a pod's own name under its subdomain.
                for p in self.endpoints(s) {
                    hosts.push(format!("{} {fqdn}", p.ip));
                    let w = self.workload(p);
                    if let (Some(h), Some(sub)) = (&w.hostname, &w.subdomain)
                        && *sub == s.name
                    {
                        hosts.push(format!("{} {h}.{fqdn}", p.ip));
                    }
                }
            }
        }
        (hosts.join("\n") + "\n", extra)
    }

    /// The kube-proxy stand-in: nftables rules for the namespace, replaced as a whole.
    fn apply_rules(&self) {
        let mut nat = vec![format!(
            "ip daddr {CLUSTER_DNS} meta l4proto {{ tcp, udp }} th dport 53 dnat to {DNSMASQ}:53"
        )];
        let mut filter = Vec::new();
        let source_node = self.pod(SOURCE_POD).node;
        for s in &self.manifests.services {
            let Some(ip) = &s.cluster_ip else { continue };
            for (_, port, target) in &s.ports {
                let mut backends: Vec<&Pod> = if s.selector.is_empty() {
                    // Selector-less: what the hand-written slice holds.
                    self.manual_endpoint.iter().map(|n| self.pod(n)).collect()
                } else {
                    self.endpoints(s)
                };
                if s.local {
                    backends.retain(|p| p.node == source_node);
                }
                // Only pods listening on the targetPort (kiada's https is not served here).
                backends.retain(|p| {
                    p.port != 0
                        && (target.is_null()
                            || target.as_i64() == Some(8080)
                            || target.as_str() == Some("http"))
                });
                let rule = format!("ip daddr {ip} tcp dport {port}");
                match backends.as_slice() {
                    [] => filter.push(format!("{rule} reject")),
                    [one] => nat.push(format!("{rule} dnat to 127.0.0.1:{}", one.port)),
                    many => {
                        let map: Vec<String> = many
                            .iter()
                            .enumerate()
                            .map(|(i, p)| format!("{i} : {}", p.port))
                            .collect();
                        let pick = if s.sticky {
                            "jhash ip saddr"
                        } else {
                            "numgen random"
                        };
                        nat.push(format!(
                            "{rule} dnat to 127.0.0.1 : {pick} mod {} map {{ {} }}",
                            many.len(),
                            map.join(", ")
                        ));
                    }
                }
            }
        }
        // Pod IPs: the container ports of the pods that serve here.
        for p in &self.pods {
            if p.port != 0 {
                nat.push(format!(
                    "ip daddr {} tcp dport 8080 dnat to 127.0.0.1:{}",
                    p.ip, p.port
                ));
            }
        }
        if self.mode == Mode::Nftables {
            let ips: Vec<&str> = self
                .manifests
                .services
                .iter()
                .filter_map(|s| s.cluster_ip.as_deref())
                .collect();
            filter.push(format!("ip daddr {{ {} }} reject", ips.join(", ")));
        }
        let lines = |rules: &[String]| {
            rules
                .iter()
                .map(|r| format!("    {r}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let pods = format!(
            "flush ruleset\ntable ip kubelab {{\n  chain nat-output {{\n    type nat hook output priority -100; policy accept;\n{}\n  }}\n}}\n",
            lines(&nat)
        );
        // On the node, as kube-proxy filters what pods send: rejected with an ICMP error.
        let node = format!(
            "flush ruleset\ntable ip kubelab {{\n  chain filter-forward {{\n    type filter hook forward priority 0; policy accept;\n{}\n  }}\n}}\n",
            lines(&filter)
        );
        let node_pid = self.node.as_ref().unwrap().pid();
        for (name, ruleset, target) in [
            ("pods", pods, self.holders[SOURCE_POD].pid()),
            ("node", node, node_pid),
        ] {
            let file = self.dir.path().join(format!("{name}.nft"));
            std::fs::write(&file, &ruleset).unwrap();
            let out = Command::new(&self.tools.nsenter)
                .args(["--target", &target, "--net", "--"])
                .arg(&self.tools.nft)
                .arg("-f")
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "nft refused the rules: {}\n{ruleset}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn start(tools: Tools) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o755);
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for applet in [
            "sh", "nslookup", "ping", "wget", "env", "cat", "hostname", "grep",
        ] {
            std::os::unix::fs::symlink(&tools.busybox, bin.join(applet)).unwrap();
        }
        std::os::unix::fs::symlink(&tools.curl, bin.join("curl")).unwrap();
        let source = dir.path().join("getent.c");
        std::fs::write(&source, GETENT_C).unwrap();
        let built = Command::new(&tools.musl_gcc)
            .args(["-static", "-O1", "-o"])
            .arg(bin.join("getent"))
            .arg(&source)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "musl-gcc: {}",
            String::from_utf8_lossy(&built.stderr)
        );

        let mut lab = Lab {
            bin,
            manifests: manifests(),
            pods: pods(),
            node: None,
            holders: BTreeMap::new(),
            _dnsmasq: None,
            _servers: Vec::new(),
            manual_endpoint: None,
            kiada_restarted: false,
            mode: Mode::Iptables,
            tools,
            dir,
        };

        // The node: forwards what the pods send, and sends the cluster's ranges nowhere.
        let node_script = "set -e\n\
             ip link set lo up\n\
             ip tuntap add mode tun cluster0\n\
             ip link set cluster0 up\n\
             ip route add 10.96.0.0/12 dev cluster0\n\
             ip route add 10.244.0.0/16 dev cluster0\n\
             echo 1 > /proc/sys/net/ipv4/ip_forward\n\
             echo ready\n\
             exec cat >/dev/null\n";
        let mut node = Command::new("unshare");
        node.args(["--net", "--", "sh", "-c", node_script]);
        let node = Holder::start(node);

        // The pods' network namespace, held by the source pod, wired to the node.
        let source = lab.pod(SOURCE_POD);
        let resolv = lab.dir.path().join(format!("{}.resolv.conf", source.name));
        std::fs::write(&resolv, lab.resolv_conf(source)).unwrap();
        set_mode(&resolv, 0o644);
        let script = format!(
            "set -e\n\
             ip link set lo up\n\
             ip link add eth0 type veth peer name pods0 netns {node}\n\
             ip link set eth0 up\n\
             ip addr add {ip}/24 dev eth0\n\
             ip route add default via {gateway} dev eth0\n\
             echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range\n\
             mount --bind {resolv} /etc/resolv.conf\n\
             {busybox} hostname {host}\n\
             echo ready\n\
             exec cat >/dev/null\n",
            node = node.pid(),
            ip = source.ip,
            gateway = GATEWAY,
            resolv = resolv.display(),
            busybox = lab.tools.busybox.display(),
            host = lab.hostname(source),
        );
        let mut holder = Command::new("unshare");
        holder.args(["--net", "--mount", "--uts", "--", "sh", "-c", &script]);
        lab.holders.insert(SOURCE_POD, Holder::start(holder));
        let wired = Command::new(&lab.tools.nsenter)
            .args(["--target", &node.pid(), "--net", "--", "sh", "-c"])
            .arg(format!(
                "set -e; ip link set pods0 up; ip addr add {GATEWAY}/24 dev pods0"
            ))
            .status()
            .unwrap();
        assert!(wired.success(), "the node's side of the pods' link");
        lab.node = Some(node);

        // The other pods where commands run: a mount namespace of their own when their
        // resolv.conf differs, a UTS namespace for their hostname.
        for name in [
            "quote-6d5f8b7c9d-2xk8q",
            "quote-canary-7c9f6b8d5-k2v8n",
            "quote-named",
            "dns-client",
        ] {
            let pod = lab.pod(name);
            let resolv = lab.dir.path().join(format!("{name}.resolv.conf"));
            std::fs::write(&resolv, lab.resolv_conf(pod)).unwrap();
            set_mode(&resolv, 0o644);
            let script = format!(
                "set -e\nmount --bind {} /etc/resolv.conf\n{} hostname {}\necho ready\nexec cat >/dev/null\n",
                resolv.display(),
                lab.tools.busybox.display(),
                lab.hostname(pod)
            );
            let mut c = lab.enter(SOURCE_POD, false);
            c.args(["unshare", "--mount", "--uts", "--", "sh", "-c", &script]);
            let holder = Holder::start(c);
            lab.holders.insert(name, holder);
        }

        // The cluster DNS.
        let (hosts, extra) = lab.hosts_file();
        let hosts_path = lab.dir.path().join("hosts");
        std::fs::write(&hosts_path, hosts).unwrap();
        let mut dnsmasq = lab.enter(SOURCE_POD, false);
        dnsmasq
            .args(["setpriv", "--pdeathsig", "KILL", "--"])
            .arg(&lab.tools.dnsmasq)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--port=53",
                "--user=root",
                "--pid-file",
                &format!("--listen-address={DNSMASQ}"),
                &format!("--addn-hosts={}", hosts_path.display()),
                // Everything else is NXDOMAIN: no upstream to forward to.
                "--local=/cluster.local/",
                "--local=/#/",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab._dnsmasq = Some(Background(dnsmasq.spawn().expect("dnsmasq starts")));

        lab.apply_rules();

        // The servers, as the pods run them.
        let data = lab.dir.path().join("quiz");
        std::fs::create_dir(&data).unwrap();
        let mut servers = Vec::new();
        for pod in lab.pods.iter().filter(|p| p.port != 0) {
            let binary = match pod.workload {
                w if w.starts_with("quote") => "quote",
                "quiz" => "quiz",
                _ => "kiada",
            };
            let mut c = lab.enter(pod.name, false);
            c.args(["setpriv", "--pdeathsig", "KILL", "--"])
                .arg(e2e::binary(binary))
                .args(["--listen-port", &pod.port.to_string()]);
            if pod.workload == "quote-canary" {
                c.args(["--admin-port", "9901"]);
            }
            match binary {
                "quiz" => {
                    c.arg("--db").arg(data.join("quiz.db"));
                }
                "kiada" => {
                    c.arg("--no-tls");
                }
                _ => {}
            }
            c.env_clear();
            c.envs(lab.environment(pod, false));
            c.env("PATH", std::env::var("PATH").unwrap_or_default());
            let process = testkit::Process::spawn(c).unwrap_or_else(|(status, logs)| {
                panic!("{} exited with {status:?}:\n{}", pod.name, logs.join("\n"))
            });
            servers.push(process);
        }
        lab._servers = servers;
        lab
    }

    /// Runs `argv` in `pod` as the pod's user, stdout and stderr together as a terminal shows
    /// them, with the rest of the learner's pipeline (`| grep …`) run on this side.
    fn exec(&self, pod: &str, argv: &[String], local: Option<&str>) -> (Vec<String>, i32) {
        let p = self.pod(pod);
        let out_path = self.dir.path().join("out");
        let out = std::fs::File::create(&out_path).unwrap();
        // Alpine's busybox pings unprivileged (a patch of Alpine's: an ICMP datagram socket
        // where the raw one is refused); Debian's needs root for its raw socket. Either reports
        // only echo replies.
        let mut c = self.enter(pod, argv[0] != "ping");
        c.args(argv)
            .env_clear()
            .envs(self.environment(p, true))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut child = c.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut output = std::fs::read(&out_path).unwrap();
        if let Some(local) = local {
            let mut sh = Command::new("sh")
                .args(["-c", local])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            sh.stdin.take().unwrap().write_all(&output).unwrap();
            output = sh.wait_with_output().unwrap().stdout;
        }
        let lines = String::from_utf8_lossy(&output)
            .lines()
            .map(str::to_owned)
            .collect();
        (lines, status.code().unwrap_or(-1))
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Command lines.

/// A command line split at the shell's `|` (outside quotes).
fn pipeline(line: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '|') => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().unwrap().push(c);
    }
    parts.iter().map(|p| p.trim().to_owned()).collect()
}

/// `kubectl exec [flags] TARGET -- ARGV…`: (TARGET, ARGV).
fn exec_target(words: &[String]) -> Option<(String, Vec<String>)> {
    let start = words
        .windows(2)
        .position(|w| w[0] == "kubectl" && w[1] == "exec")?;
    let mut i = start + 2;
    let mut target = None;
    while i < words.len() && words[i] != "--" {
        match words[i].as_str() {
            "-n" | "--namespace" | "-c" | "--container" => i += 2,
            w if w.starts_with('-') => i += 1,
            w => {
                target = Some(w.to_owned());
                i += 1;
            }
        }
    }
    let argv = words.get(i + 1..)?.to_vec();
    Some((target?, argv))
}

/// The pod a `kubectl exec` target reaches here.
fn pod_for(target: &str) -> Option<&'static str> {
    Some(match target {
        "deploy/kiada" | "<kiada-pod>" | "…" => SOURCE_POD,
        "deploy/quote" | "<quote-pod>" => "quote-6d5f8b7c9d-2xk8q",
        "deploy/quote-canary" => "quote-canary-7c9f6b8d5-k2v8n",
        "quote-named" => "quote-named",
        "dns-client" => "dns-client",
        _ => return None,
    })
}

/// What running one command line gave.
enum Outcome {
    /// Run in a pod: its lines and exit status.
    Ran(Vec<String>, i32),
    /// Not an in-pod command (it runs on the learner's machine or a node): its output is
    /// unknown here.
    Elsewhere,
    /// An in-pod command that needs a real cluster.
    Cluster(&'static str),
}

impl Lab {
    /// Runs one command line of a text: an in-pod command in its pod, a `kubectl` command that
    /// changes what the next ones see as its effect, anything else not at all.
    fn run_line(&mut self, line: &str) -> Result<Outcome, String> {
        let parts = pipeline(line);
        let first = words(&parts[0]);
        if let Some((_, why)) = NEEDS_A_CLUSTER
            .iter()
            .find(|(needle, _)| line.contains(needle))
            && first.first().is_some_and(|w| w == "kubectl")
        {
            return Ok(Outcome::Cluster(why));
        }
        if first.first().is_none_or(|w| w != "kubectl") {
            return Ok(Outcome::Elsewhere);
        }
        let Some((target, argv)) = exec_target(&first) else {
            self.kubectl_effect(&first);
            return Ok(Outcome::Elsewhere);
        };
        let pod = pod_for(&target).ok_or_else(|| format!("no pod here for {target}"))?;
        if argv.is_empty() {
            return Err("nothing to run after --".into());
        }
        let local = (parts.len() > 1).then(|| parts[1..].join(" | "));
        let (lines, rc) = self.exec(pod, &argv, local.as_deref());
        if std::env::var_os("IN_POD_VERBOSE").is_some() {
            eprintln!("$ {line}\n{}\n(exit {rc})", lines.join("\n"));
        }
        Ok(Outcome::Ran(lines, rc))
    }

    /// The effect of a `kubectl` command that is not run: what the cluster would do.
    fn kubectl_effect(&mut self, words: &[String]) {
        let has = |w: &str| words.iter().any(|x| x == w);
        if has("patch") && has("endpointslice") && has("quote-manual-1") {
            assert!(
                words.iter().any(|w| w.contains("addresses")),
                "the patch names addresses"
            );
            // The guide puts the canary's IP there.
            self.manual_endpoint = Some("quote-canary-7c9f6b8d5-k2v8n");
            self.apply_rules();
        }
        if has("rollout") && has("restart") && (has("deploy/kiada") || has("deployment/kiada")) {
            self.kiada_restarted = true;
        }
    }

    fn reset(&mut self) {
        self.manual_endpoint = None;
        self.kiada_restarted = false;
        self.mode = Mode::Iptables;
        self.apply_rules();
        let enable = [
            "curl",
            "-s",
            "-X",
            "POST",
            "localhost:9901/healthz/ready/enable",
        ]
        .map(str::to_owned);
        let (_, rc) = self.exec("quote-canary-7c9f6b8d5-k2v8n", &enable, None);
        assert_eq!(rc, 0, "the canary's admin port answers");
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing what was printed with what the text shows.

/// One line as compared: spaces collapsed, and what differs between runs made alike —
/// addresses, pod names (their hashes; stable and canary alike), node names, milliseconds.
fn normalize(line: &str) -> String {
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    // Addresses: four numbers with dots, or a prefix cut off by `…`.
    let mut out = String::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let run: String = chars[i..j].iter().collect();
            let parts: Vec<&str> = run.trim_end_matches('.').split('.').collect();
            let quad = parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3);
            let cut = run.ends_with('.') && parts.len() >= 2 && chars.get(j) == Some(&'…');
            if quad {
                out.push_str("<ip>");
                // Keep a sentence's final dot.
                if run.ends_with('.') {
                    out.push('.');
                }
                i = j;
                continue;
            }
            if cut {
                out.push_str("<ip>");
                i = j + 1;
                continue;
            }
            if chars[j..].iter().collect::<String>().starts_with(" ms")
                || chars[j..]
                    .iter()
                    .collect::<String>()
                    .starts_with(" millisecond")
            {
                out.push_str("<n>");
                i = j;
                continue;
            }
            out.push_str(&run);
            i = j;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    // Pod and node names.
    let mut result = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, result: &mut String| {
        let parts: Vec<&str> = word.split('-').collect();
        let hashy = |p: &str, lens: std::ops::RangeInclusive<usize>| {
            lens.contains(&p.len())
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        };
        let n = parts.len();
        if n >= 3 && hashy(parts[n - 1], 5..=5) && hashy(parts[n - 2], 8..=10) {
            result.push_str(parts[0]);
            result.push_str("-<pod>");
        } else if word.starts_with("kiada-worker") || word == "kiada-control-plane" {
            result.push_str("<node>");
        } else {
            result.push_str(word);
        }
        word.clear();
    };
    for c in out.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
            word.push(c);
        } else {
            flush(&mut word, &mut result);
            result.push(c);
        }
    }
    flush(&mut word, &mut result);
    result
}

/// Whether `line` fits `pattern`, where `…` stands for anything. A Deployment's pod in the
/// pattern may be `quote-named` in the line (it is a quote pod too); the converse is not true.
fn fits(pattern: &str, line: &str) -> bool {
    fits_exactly(pattern, line)
        || (line.contains("quote-named")
            && fits_exactly(pattern, &line.replace("quote-named", "quote-<pod>")))
}

fn fits_exactly(pattern: &str, line: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('…').collect();
    if pieces.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

#[derive(Clone, Debug)]
enum Shown {
    /// A line of the text block (normalized), `…` in it standing for anything.
    Line(String),
    /// A line that is only `…`: lines left out.
    Gap,
}

#[derive(Clone, Debug)]
enum Printed {
    Line(String),
    /// `command terminated with exit code N`: never left out.
    Failure(String),
    /// What a command that is not run here prints: any lines of the text.
    Unknown,
}

/// Lines compared: empty lines and busybox's "Non-authoritative answer:" (dnsmasq's answers
/// without data are not authoritative; the cluster DNS answers its zone authoritatively) do not
/// count.
fn counts(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && t != "Non-authoritative answer:"
}

/// Whether the text block (`shown`) is what the commands printed, in order. `printed` holds
/// each line with the index of the command that printed it: a command that printed anything
/// must have at least one line shown (its output is not all in gaps), and a failure is always
/// shown.
fn matches(shown: &[Shown], printed: &[(usize, Printed)]) -> bool {
    Matcher {
        shown,
        printed,
        memo: BTreeMap::new(),
    }
    .at(0, 0, false)
}

struct Matcher<'a> {
    shown: &'a [Shown],
    printed: &'a [(usize, Printed)],
    memo: BTreeMap<(usize, usize, bool), bool>,
}

impl Matcher<'_> {
    /// `shown[i..]` matches `printed[j..]`; `seen`: a line of the command that printed
    /// `printed[j]` has been matched already.
    fn at(&mut self, i: usize, j: usize, seen: bool) -> bool {
        if let Some(&known) = self.memo.get(&(i, j, seen)) {
            return known;
        }
        let result = self.compute(i, j, seen);
        self.memo.insert((i, j, seen), result);
        result
    }

    /// After `printed[j]` is accounted for, with `shown[i..]` left.
    fn next(&mut self, i: usize, j: usize, seen: bool) -> bool {
        let group = self.printed[j].0;
        let last = self.printed.get(j + 1).is_none_or(|(g, _)| *g != group);
        if !last {
            return self.at(i, j + 1, seen);
        }
        let printed_something = self
            .printed
            .iter()
            .any(|(g, p)| *g == group && !matches!(p, Printed::Unknown));
        if printed_something && !seen {
            return false;
        }
        self.at(i, j + 1, false)
    }

    fn compute(&mut self, i: usize, j: usize, seen: bool) -> bool {
        let (d, a) = (self.shown.len(), self.printed.len());
        if i == d && j == a {
            return true;
        }
        let gap = i < d && matches!(self.shown[i], Shown::Gap);
        // A gap that covers no (more) printed line.
        if gap && self.at(i + 1, j, seen) {
            return true;
        }
        if j == a {
            return false;
        }
        match &self.printed[j].1 {
            // A command not run here printed shown[i] (and maybe more), or nothing more.
            Printed::Unknown => (i < d && self.at(i + 1, j, seen)) || self.next(i, j, true),
            Printed::Line(line) | Printed::Failure(line) => {
                if i < d
                    && let Shown::Line(pattern) = &self.shown[i]
                    && fits(pattern, line)
                    && self.next(i + 1, j, true)
                {
                    return true;
                }
                // A gap covers a line, never a failure.
                gap && matches!(self.printed[j].1, Printed::Line(_)) && self.next(i, j, seen)
            }
        }
    }
}

fn expected_failure(command: &str) -> Option<i32> {
    EXPECTED_FAILURES
        .iter()
        .find(|(needle, _, _)| command.contains(needle))
        .map(|(_, rc, _)| *rc)
}

/// Everything run, for the report.
#[derive(Default)]
struct Report {
    ran: BTreeSet<String>,
    /// Text blocks compared with what their commands printed.
    compared: usize,
    cluster: BTreeMap<String, &'static str>,
    errors: Vec<String>,
}

impl Report {
    fn outcome(&mut self, place: &str, command: &str, outcome: &Result<Outcome, String>) {
        match outcome {
            Err(e) => self.errors.push(format!("{place}: {command}: {e}")),
            Ok(Outcome::Ran(..)) => {
                self.ran.insert(command.trim().to_owned());
            }
            Ok(Outcome::Cluster(why)) => {
                self.cluster.insert(command.trim().to_owned(), why);
            }
            Ok(Outcome::Elsewhere) => {}
        }
    }
}

/// Runs every command line of a Markdown text in order and compares each `sh` block's output
/// with the `text` block that follows it.
fn walk_markdown(lab: &mut Lab, file: &str, markdown: &str, report: &mut Report) {
    lab.reset();
    let Snippets { commands, outputs } = snippets(markdown);
    let mut printed: BTreeMap<usize, Vec<(usize, Printed)>> = BTreeMap::new();
    // The `kubectl exec … --` of the last inline span, for `… curl …` after it.
    let mut last_exec: Option<String> = None;
    for (index, snippet) in commands.iter().enumerate() {
        let mut command = snippet.command.trim().to_owned();
        if snippet.block.is_none() {
            if let Some(rest) = command.strip_prefix("… ")
                && let Some(prefix) = &last_exec
            {
                command = format!("{prefix}{rest}");
            }
            if let Some(at) = command.find(" -- ")
                && command.starts_with("kubectl exec")
            {
                last_exec = Some(command[..at + 4].to_owned());
            }
        }
        let outcome = lab.run_line(&command);
        report.outcome(file, &command, &outcome);
        let place = format!("{file}: {command}");
        let entry = snippet.block.map(|b| printed.entry(b).or_default());
        let shown = snippet.block.and_then(|b| outputs[b].as_ref()).is_some();
        match outcome {
            Ok(Outcome::Ran(lines, rc)) => {
                // A failure must be shown, meant, or listed.
                let allowed = rc == 0
                    || shown
                    || snippet.on_purpose
                    || expected_failure(&command) == Some(rc);
                if !allowed {
                    report.errors.push(format!(
                        "{place}: exit status {rc}, and nothing says it fails:\n{}",
                        lines.join("\n")
                    ));
                }
                if let Some(entry) = entry {
                    entry.extend(
                        lines
                            .iter()
                            .filter(|l| counts(l))
                            .map(|l| (index, Printed::Line(normalize(l)))),
                    );
                    if rc != 0 {
                        entry.push((
                            index,
                            Printed::Failure(format!("command terminated with exit code {rc}")),
                        ));
                    }
                }
            }
            Ok(Outcome::Elsewhere | Outcome::Cluster(_)) | Err(_) => {
                if let Some(entry) = entry {
                    entry.push((index, Printed::Unknown));
                }
            }
        }
    }
    for (block, shown) in outputs.iter().enumerate() {
        let Some(shown) = shown else { continue };
        let Some(printed) = printed.get(&block) else {
            continue;
        };
        if printed.iter().all(|(_, p)| matches!(p, Printed::Unknown)) {
            continue;
        }
        let shown: Vec<Shown> = shown
            .iter()
            .filter(|l| counts(l))
            .map(|l| match l.trim() {
                "…" => Shown::Gap,
                l => Shown::Line(normalize(l)),
            })
            .collect();
        report.compared += 1;
        if !matches(&shown, printed) {
            let commands: Vec<&str> = commands
                .iter()
                .filter(|s| s.block == Some(block))
                .map(|s| s.command.as_str())
                .collect();
            report.errors.push(format!(
                "{file}: the output shown after\n  {}\nis not what they print:\n{}",
                commands.join("\n  "),
                printed
                    .iter()
                    .map(|(_, p)| match p {
                        Printed::Line(l) | Printed::Failure(l) => format!("    {l}"),
                        Printed::Unknown => "    (a command not run here)".to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
}

/// The in-pod commands of the manifests' comments: `kubectl exec …` up to a ` (` remark, with
/// `\` continuations joined.
fn manifest_commands() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut out = Vec::new();
    for dir in ["manifests", "manifests/experiments", "manifests/postgres"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let name = file.strip_prefix(root).unwrap().display().to_string();
            let comments: Vec<&str> = text
                .lines()
                .filter_map(|l| l.trim_start().strip_prefix('#'))
                .map(str::trim)
                .collect();
            let mut i = 0;
            while i < comments.len() {
                let line = comments[i];
                i += 1;
                let Some(at) = line.find("kubectl ") else {
                    continue;
                };
                let mut command = line[at..].to_owned();
                while command.ends_with('\\') && i < comments.len() {
                    command.pop();
                    command.push_str(comments[i]);
                    i += 1;
                }
                if let Some(cut) = command.find(" (") {
                    command.truncate(cut);
                }
                out.push((name.clone(), command.trim().to_owned()));
            }
        }
    }
    out
}

/// Tips with a tool in them: every one is in [`TIP_COMMANDS`] or [`TIP_OTHERS`].
fn tip_commands(errors: &mut Vec<String>) -> Vec<(String, String)> {
    let tips = crate::readme::repo_file("quote/tips.txt");
    let mut out = Vec::new();
    for tip in tips.split("\n%\n").map(|t| t.trim().replace('\n', " ")) {
        let tool = [
            "kubectl exec",
            "kubectl run",
            "curl ",
            "nslookup",
            "wget ",
            "getent ",
            "ping ",
        ]
        .iter()
        .any(|t| tip.contains(t));
        let commands: Vec<_> = TIP_COMMANDS
            .iter()
            .filter(|(needle, _, _)| tip.contains(needle))
            .collect();
        let other = TIP_OTHERS.iter().any(|(needle, _)| tip.contains(needle));
        if tool && commands.is_empty() && !other {
            errors.push(format!(
                "a tip names a tool, but in-pod.rs neither runs nor explains it: {tip}"
            ));
        }
        for (_, pod, command) in commands {
            out.push((tip.clone(), format!("kubectl exec {pod} -- {command}")));
        }
    }
    for (needle, _, _) in TIP_COMMANDS {
        if !tips.replace('\n', " ").contains(needle) {
            errors.push(format!(
                "no tip says {needle:?} any more: update TIP_COMMANDS"
            ));
        }
    }
    out
}

/// The page hints hold no in-pod command (the curl command to answer a question runs wherever
/// the page was fetched from); if one appears, it must be added here.
fn page_hints_have_no_in_pod_command(errors: &mut Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = vec![root.join("kiada/templates/page.html")];
    for e in std::fs::read_dir(root.join("kiada/src/page")).unwrap() {
        files.push(e.unwrap().path());
    }
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if text.contains("kubectl exec") {
            errors.push(format!(
                "{}: a page hint with kubectl exec: run it in in_pod.rs",
                f.display()
            ));
        }
    }
}

/// The in-pod commands `kiada check` names as the next one to run (its `next:` lines), with the
/// namespace the manifests use: each is a format string in the claims' source.
fn check_hints() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let file = "kiada/src/labs/check/claims.rs";
    let text = std::fs::read_to_string(root.join(file)).unwrap();
    let hints: Vec<(String, String)> = text
        .match_indices("\"kubectl exec ")
        .map(|(at, _)| {
            let rest = &text[at + 1..];
            let end = rest.find('"').expect("the format string ends");
            let command = rest[..end].replace("-n {}", "-n kiada");
            assert!(
                !command.contains('{'),
                "{file}: {command}: a placeholder this test does not fill"
            );
            (format!("{file} (a next: line)"), command)
        })
        .collect();
    assert!(!hints.is_empty(), "{file} names no in-pod command any more");
    hints
}

/// Runs a command that no text block follows: it must exit 0 unless it fails on purpose.
fn run_one(lab: &mut Lab, report: &mut Report, place: &str, command: &str) {
    let outcome = lab.run_line(command);
    report.outcome(place, command, &outcome);
    if let Ok(Outcome::Ran(lines, rc)) = &outcome
        && *rc != 0
        && expected_failure(command) != Some(*rc)
    {
        report.errors.push(format!(
            "{place}: {command}: exit status {rc}:\n{}",
            lines.join("\n")
        ));
    }
}

#[test]
fn every_in_pod_command_runs_with_the_pods_tools_and_prints_what_the_text_shows() {
    let tools = match tools() {
        Ok(t) => t,
        Err(reason) => {
            testkit::skip("in-pod commands", &reason);
            return;
        }
    };
    let mut lab = Lab::start(tools);
    let mut report = Report::default();

    // The README and every page of docs/.
    for (file, text) in DOCS {
        walk_markdown(&mut lab, file, text, &mut report);
    }

    lab.reset();
    for (file, command) in manifest_commands() {
        run_one(&mut lab, &mut report, &file, &command);
    }
    lab.reset();
    let mut errors = Vec::new();
    for (tip, command) in tip_commands(&mut errors) {
        run_one(&mut lab, &mut report, &format!("tip \"{tip}\""), &command);
    }
    page_hints_have_no_in_pod_command(&mut errors);
    report.errors.extend(errors);
    lab.reset();
    for (place, command) in check_hints() {
        run_one(&mut lab, &mut report, &place, &command);
    }

    // kube-proxy in nftables mode: a ClusterIP rejects what it does not serve. busybox's ping
    // reports only echo replies, so it prints the same loss; curl fails at once.
    lab.reset();
    lab.mode = Mode::Nftables;
    lab.apply_rules();
    let argv = |s: &str| words(s);
    let (ping, rc) = lab.exec(SOURCE_POD, &argv("ping -c1 -W2 quote"), None);
    if rc != 1 || !ping.iter().any(|l| l.contains("100% packet loss")) {
        report
            .errors
            .push(format!("nftables mode: ping -c1 -W2 quote: {rc} {ping:?}"));
    }
    let started = Instant::now();
    let (curl, rc) = lab.exec(SOURCE_POD, &argv("curl -sS -m 3 quote:8080/"), None);
    let line = curl.first().cloned().unwrap_or_default();
    if rc != 7 || started.elapsed() > Duration::from_secs(2) {
        report.errors.push(format!(
            "nftables mode: curl quote:8080 should fail at once: {rc} {curl:?}"
        ));
    }
    let shown = line.split(" after ").next().unwrap_or_default().to_owned();
    if !GUIDE.contains(&shown) {
        report.errors.push(format!(
            "nftables mode: the guide should show curl's message, {shown:?}"
        ));
    }

    eprintln!(
        "in-pod commands run: {}; text blocks compared: {}",
        report.ran.len(),
        report.compared
    );
    for (command, why) in &report.cluster {
        eprintln!("needs a cluster: {command}: {why}");
    }
    assert!(
        report.compared >= 12,
        "only {} text blocks compared",
        report.compared
    );
    assert!(
        report.ran.len() >= 20,
        "only {} commands ran",
        report.ran.len()
    );
    assert!(report.errors.is_empty(), "{}", report.errors.join("\n\n"));
}

#[test]
fn the_comparison_sees_through_names_and_addresses_but_not_missing_lines() {
    let n = normalize;
    assert_eq!(
        n("This is the quote service running in pod quote-6d5f8b7c9d-wz9rt on node kiada-worker2"),
        n(
            "This is the quote service running in pod quote-canary-7c9f6b8d5-k2v8n on node kiada-worker"
        )
    );
    assert_eq!(n("Address: 10.244.1.4"), "Address: <ip>");
    assert_eq!(
        n("2. quiz.kiada.svc.cluster.local. -> 10.96.…"),
        "2. quiz.kiada.svc.cluster.local. -> <ip>"
    );
    assert_eq!(n("after 3002 milliseconds"), n("after 3000 milliseconds"));
    assert_eq!(n("kiada 0.1.0"), "kiada 0.1.0");
    assert!(fits(
        "curl: (28) …",
        "curl: (28) Connection timed out after <n> milliseconds"
    ));
    assert!(!fits("curl: (7) …", "curl: (28) Connection timed out"));
    assert!(fits("in pod quote-<pod> on", "in pod quote-named on"));
    assert!(!fits("in pod quote-named on", "in pod quote-<pod> on"));
    let line = |g: usize, s: &str| (g, Printed::Line(s.to_owned()));
    let shown = |s: &str| Shown::Line(s.to_owned());
    // Every printed line is shown or covered by a gap; an unknown command covers shown lines.
    assert!(matches(
        &[shown("a"), Shown::Gap],
        &[line(0, "a"), line(0, "b")]
    ));
    assert!(!matches(&[shown("a")], &[line(0, "a"), line(0, "b")]));
    assert!(matches(
        &[shown("x"), shown("y"), shown("a")],
        &[(0, Printed::Unknown), line(1, "a")]
    ));
    // A command's output is never all in a gap, even when an unknown command follows.
    assert!(!matches(
        &[Shown::Gap, shown("x")],
        &[line(0, "a"), line(0, "b"), (1, Printed::Unknown)]
    ));
    assert!(!matches(
        &[shown("a"), Shown::Gap, shown("x")],
        &[line(0, "a"), (1, Printed::Unknown), line(2, "b")]
    ));
    // A failure is never hidden in a gap.
    assert!(!matches(
        &[shown("a"), Shown::Gap],
        &[
            line(0, "a"),
            (
                0,
                Printed::Failure("command terminated with exit code 1".into())
            )
        ]
    ));
    assert_eq!(
        pipeline("kubectl exec x -- env | grep -E 'A|B'"),
        ["kubectl exec x -- env", "grep -E 'A|B'"]
    );
    assert_eq!(
        words("sh -c 'for i in 1 2; do curl -s quote/; done'"),
        ["sh", "-c", "for i in 1 2; do curl -s quote/; done"]
    );
}
