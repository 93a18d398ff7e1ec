//! The chapter's claims, each tested from inside this pod and turned into a row: what the
//! chapter says (in our words), what was done, what was seen, and the verdict with its likely
//! cause and the next command. An object that is not there is SKIP, never FAIL.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use super::probe::{self, Answer, Connect, Outcome, Resolved};
use super::report::{Row, Verdict};
use super::targets::Targets;
use crate::labs::dns::ResolvConf;

/// Every claim's id, in the report's order.
pub const IDS: [&str; 12] = [
    "names",
    "variables",
    "spread",
    "headless",
    "ready",
    "vip",
    "affinity",
    "local",
    "nodeport",
    "canary",
    "experiments",
    "policy",
];

/// The claims that need the pods asked at their headless addresses, and those that need the
/// calls through the ClusterIP.
const NEEDS_PODS: &[&str] = &[
    "spread",
    "headless",
    "ready",
    "local",
    "canary",
    "experiments",
    "policy",
];
const NEEDS_CALLS: &[&str] = &["spread", "ready", "canary"];

/// New connections over the ClusterIP, and requests over one kept connection.
const NEW_CALLS: usize = 24;
const KEPT_CALLS: usize = 10;
/// New connections to each of the sticky and the Local Service.
const PROBE_CALLS: usize = 6;
/// Pods asked directly, at most.
const MAX_PODS: usize = 10;
/// The new connections a run of the claims in `only` (all when empty) may open: what the labs'
/// budget is asked for before it starts.
pub fn connections(only: &BTreeSet<&'static str>) -> u32 {
    let wants = |ids: &[&str]| only.is_empty() || ids.iter().any(|id| only.contains(id));
    let mut n = 0;
    if wants(NEEDS_CALLS) {
        n += NEW_CALLS + 1;
    }
    if wants(NEEDS_PODS) {
        n += MAX_PODS;
    }
    for (id, calls) in [
        ("affinity", PROBE_CALLS),
        ("local", PROBE_CALLS),
        ("nodeport", 1),
        ("vip", 1),
        ("policy", 1),
    ] {
        if wants(&[id]) {
            n += calls;
        }
    }
    n as u32
}
/// A port no Service of the suite declares, asked on the virtual IP and on a pod.
const UNDECLARED_PORT: u16 = 1;

/// What the checks share: the resolver configuration, the targets, and the deadline.
pub struct Run<'a> {
    pub targets: &'a Targets,
    pub conf: ResolvConf,
    /// Where the lookups go instead of resolv.conf's first nameserver (`--nameserver`).
    pub nameserver: Option<std::net::SocketAddr>,
    pub deadline: Instant,
    /// Claims to run; all when empty.
    pub only: BTreeSet<&'static str>,
}

/// What was found along the way, which later claims use.
#[derive(Default)]
struct Seen {
    vip: Option<Resolved>,
    /// Headless addresses and what each said when asked directly.
    direct: Vec<(IpAddr, Outcome)>,
    headless: Option<Resolved>,
    /// The ClusterIP over new connections, and over one kept connection.
    new: Vec<Outcome>,
    kept: Vec<Outcome>,
}

impl Run<'_> {
    fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.contains(id)
    }

    fn out_of_time(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// What `step` gives if it ends before the run's deadline; nothing if the deadline comes
    /// first, so no step, however slow its answers, takes the run past its time limit.
    async fn within<T>(&self, step: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::time::timeout_at(self.deadline, step).await.ok()
    }

    pub async fn rows(&self) -> Vec<Row> {
        let mut seen = Seen::default();
        let mut rows = Vec::new();
        let needs_vip = IDS.iter().any(|id| {
            self.wants(id) && !matches!(*id, "affinity" | "local" | "nodeport" | "experiments")
        });
        let needs_pods = NEEDS_PODS.iter().any(|id| self.wants(id));
        let quote = self.targets.quote.clone();
        if needs_vip && let Some(q) = &quote {
            seen.vip = self
                .within(probe::resolve(q, &self.conf, self.nameserver))
                .await;
        }
        if needs_pods && let Some(name) = self.targets.quote_as("-headless") {
            let headless = self
                .within(probe::resolve(&name, &self.conf, self.nameserver))
                .await
                .unwrap_or_default();
            for ip in headless.addresses.iter().take(MAX_PODS) {
                if self.out_of_time() {
                    break;
                }
                let client = probe::client(false, None);
                let url = format!("{}/", probe::origin(&ip.to_string(), self.targets.pod_port));
                let Some(answer) = self.within(probe::get(&client, &url)).await else {
                    break;
                };
                seen.direct.push((*ip, answer));
            }
            seen.headless = Some(headless);
        }
        if ["spread", "ready", "canary"]
            .iter()
            .any(|id| self.wants(id))
            && let (Some(q), Some(vip)) = (&quote, seen.vip.as_ref().filter(|v| v.found()))
        {
            let addr = SocketAddr::new(vip.addresses[0], self.targets.service_port);
            let url = format!(
                "{}{}",
                probe::origin(q, self.targets.service_port),
                self.targets.quote_path
            );
            for _ in 0..NEW_CALLS {
                if self.out_of_time() {
                    break;
                }
                let client = probe::client(false, Some((q, addr)));
                let Some(answer) = self.within(probe::get(&client, &url)).await else {
                    break;
                };
                seen.new.push(answer);
            }
            let kept = probe::client(true, Some((q, addr)));
            for _ in 0..KEPT_CALLS {
                if self.out_of_time() {
                    break;
                }
                let Some(answer) = self.within(probe::get(&kept, &url)).await else {
                    break;
                };
                seen.kept.push(answer);
            }
        }
        for id in IDS {
            if !self.wants(id) {
                continue;
            }
            if self.out_of_time() {
                rows.push(Row::new(
                    id,
                    claim(id),
                    "nothing: the check's time limit was reached first".into(),
                    "-".into(),
                    Verdict::Skip,
                ));
                continue;
            }
            let row = async {
                match id {
                    "names" => self.names(&seen).await,
                    "variables" => self.variables(&seen),
                    "spread" => self.spread(&seen),
                    "headless" => self.headless(&seen),
                    "ready" => self.ready(&seen),
                    "vip" => self.vip(&seen).await,
                    "affinity" => self.affinity().await,
                    "local" => self.local(&seen).await,
                    "nodeport" => self.nodeport().await,
                    "canary" => self.canary(&seen),
                    "experiments" => self.experiments(&seen).await,
                    _ => self.policy(&seen).await,
                }
            };
            let row = self.within(row).await.unwrap_or_else(|| {
                Row::new(
                    id,
                    claim(id),
                    "stopped: the check's time limit was reached while this claim ran".into(),
                    "-".into(),
                    Verdict::Skip,
                )
            });
            rows.push(row);
        }
        rows
    }

    /// A row saying the quote Service could not be named (QUOTE_URL holds an address).
    fn no_name(&self, id: &str) -> Row {
        Row::new(
            id,
            claim(id),
            "nothing: QUOTE_URL names an address, not a Service".into(),
            "-".into(),
            Verdict::Skip,
        )
    }

    async fn names(&self, seen: &Seen) -> Row {
        let (Some(q), Some(short)) = (&self.targets.quote, &seen.vip) else {
            return self.no_name("names");
        };
        let dotted = format!("{q}.{}", self.targets.namespace);
        let full = self.targets.full(q);
        let with_ns = probe::resolve(&dotted, &self.conf, self.nameserver).await;
        let fqdn = probe::resolve(&full, &self.conf, self.nameserver).await;
        let search = self.conf.search.join(" ");
        let did = format!(
            "resolved {q}, {dotted} and {full} through this pod's resolv.conf (search {search}; \
             ndots {})",
            self.conf.ndots
        );
        let saw = format!(
            "{q} -> {}; {dotted} -> {}; {full} -> {}",
            short.shown(),
            with_ns.shown(),
            fqdn.shown()
        );
        let row = |verdict| Row::new("names", claim("names"), did.clone(), saw.clone(), verdict);
        let missing: Vec<&str> = [(q.as_str(), short), (&dotted, &with_ns), (&full, &fqdn)]
            .iter()
            .filter(|(_, r)| !r.found())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            return row(Verdict::Fail).because(
                format!(
                    "{} did not resolve: the Service is missing, in another namespace, or the \
                     cluster DNS does not answer",
                    missing.join(", ")
                ),
                format!("kubectl get svc {q} -n {}", self.targets.namespace),
            );
        }
        if short.set() != with_ns.set() || short.set() != fqdn.set() {
            return row(Verdict::Fail).because(
                "the three names gave different addresses: one of the search domains holds \
                 another record of that name",
                format!(
                    "kubectl exec deploy/kiada -n {} -- cat /etc/resolv.conf",
                    self.targets.namespace
                ),
            );
        }
        let domain = self
            .targets
            .cluster_domain
            .trim_matches('.')
            .to_ascii_lowercase();
        let kubelet = [
            format!("{}.svc.{domain}", self.targets.namespace),
            format!("svc.{domain}"),
            domain.clone(),
        ];
        let searched = self.conf.search.iter().map(|d| d.to_ascii_lowercase());
        if !searched.take(3).eq(kubelet.iter().cloned()) || self.conf.ndots != 5 {
            return row(Verdict::Warn).because(
                format!(
                    "resolv.conf is not what the kubelet writes by default (search {} first, \
                     ndots 5): a dnsConfig or dnsPolicy changed it",
                    kubelet.join(" ")
                ),
                format!("kubectl get deploy kiada -n {} -o jsonpath='{{.spec.template.spec.dnsConfig}}'", self.targets.namespace),
            );
        }
        row(Verdict::Pass)
    }

    fn variables(&self, seen: &Seen) -> Row {
        let Some(q) = &self.targets.quote else {
            return self.no_name("variables");
        };
        let prefix = Targets::env_prefix(q);
        let did = format!(
            "read {prefix}_SERVICE_HOST, {prefix}_SERVICE_PORT and the {prefix}_PORT_<port>_TCP_PORT \
             variables from the environment kiada started with"
        );
        let (host, port) = (&self.targets.service_host, &self.targets.service_port_env);
        let Some(host) = host else {
            return Row::new(
                "variables",
                claim("variables"),
                did,
                "neither is set".into(),
                Verdict::Warn,
            )
            .because(
                "the variables are written when a pod starts, for the Services that exist then: \
                 this pod is older than the Service, or the pod spec sets enableServiceLinks: false",
                format!("kubectl rollout restart deploy/kiada -n {}", self.targets.namespace),
            );
        };
        let saw = format!(
            "{prefix}_SERVICE_HOST={host}, {prefix}_SERVICE_PORT={}; DNS gave {}",
            port.as_deref().unwrap_or("(unset)"),
            seen.vip.as_ref().map_or("nothing".into(), Resolved::shown)
        );
        let agrees = host
            .parse::<IpAddr>()
            .ok()
            .zip(seen.vip.as_ref())
            .is_some_and(|(ip, vip)| vip.addresses.contains(&ip));
        let row = Row::new("variables", claim("variables"), did, saw, Verdict::Pass);
        // QUOTE_SERVICE_PORT holds the Service's first port; the link variables name them all.
        let dialled = self.targets.service_port;
        let declared = port.as_deref() == Some(dialled.to_string().as_str())
            || self.targets.declared_ports.contains(&dialled);
        if agrees && !declared {
            return Row {
                verdict: Verdict::Warn,
                ..row
            }
            .because(
                format!(
                    "the Service's variables name no port {dialled}, the one QUOTE_URL dials \
                     (neither {prefix}_SERVICE_PORT nor a {prefix}_PORT_{dialled}_TCP_PORT): the \
                     Service does not declare it, or its ports changed after this pod started"
                ),
                format!(
                    "kubectl get svc {q} -n {} -o jsonpath='{{.spec.ports}}'",
                    self.targets.namespace
                ),
            );
        }
        if agrees {
            row
        } else {
            Row {
                verdict: Verdict::Fail,
                ..row
            }
            .because(
                "the variable and the name disagree: the Service was deleted and created again \
                 (a new ClusterIP) after this pod started",
                format!("kubectl get svc {q} -n {} -o wide", self.targets.namespace),
            )
        }
    }

    /// Pods that answered directly at their headless addresses.
    fn ready_pods(seen: &Seen) -> BTreeSet<String> {
        seen.direct
            .iter()
            .filter_map(|(_, o)| o.pod().map(str::to_owned))
            .collect()
    }

    fn spread(&self, seen: &Seen) -> Row {
        let Some(q) = &self.targets.quote else {
            return self.no_name("spread");
        };
        let Some(vip) = seen.vip.as_ref().filter(|v| v.found()) else {
            return Row::new(
                "spread",
                claim("spread"),
                "nothing: the name did not resolve".into(),
                "-".into(),
                Verdict::Skip,
            );
        };
        let by_new = tally(&seen.new);
        let by_kept = tally(&seen.kept);
        let did = format!(
            "{NEW_CALLS} calls to {q} ({}) over a new connection each, then {KEPT_CALLS} over one kept connection",
            vip.addresses[0]
        );
        let saw = format!(
            "new: {}; kept: {}",
            shown(&by_new, &seen.new),
            shown(&by_kept, &seen.kept)
        );
        let pods: BTreeSet<String> = by_new.keys().chain(by_kept.keys()).cloned().collect();
        let row = |verdict| {
            Row::new("spread", claim("spread"), did.clone(), saw.clone(), verdict)
                .with_pods(pods.iter().cloned())
        };
        if by_new.is_empty() {
            let refused = seen.new.contains(&Outcome::Refused);
            return row(Verdict::Fail).because(
                if refused {
                    "connections to the virtual IP were refused: the Service has no ready endpoints (kube-proxy rejects them), or its targetPort is not where the pods listen"
                } else {
                    "no pod answered through the virtual IP: the pods are not ready, a NetworkPolicy drops the traffic, or kube-proxy is not running"
                },
                format!("kubectl get endpointslices -n {} -l kubernetes.io/service-name={q}", self.targets.namespace),
            );
        }
        if by_kept.len() > 1 {
            return row(Verdict::Fail).because(
                "requests over one kept connection reached several pods: something between this pod and the Service balances requests (a proxy or a service mesh), which a Service alone never does",
                format!("kubectl get pods -n {} -o wide", self.targets.namespace),
            );
        }
        let ready = Self::ready_pods(seen);
        let missed: Vec<&String> = ready.iter().filter(|p| !by_new.contains_key(*p)).collect();
        if !missed.is_empty() {
            return row(Verdict::Warn).because(
                format!(
                    "{} answered at their own addresses but not through the Service in {NEW_CALLS} new connections: a random pick misses a pod that often only rarely, so run the check again; if it stays, the EndpointSlice lacks them",
                    missed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
                format!("kubectl get endpointslices -n {} -l kubernetes.io/service-name={q} -o wide", self.targets.namespace),
            );
        }
        row(Verdict::Pass)
    }

    fn headless(&self, seen: &Seen) -> Row {
        let Some(name) = self.targets.quote_as("-headless") else {
            return self.no_name("headless");
        };
        let Some(headless) = &seen.headless else {
            return self.no_name("headless");
        };
        let did = format!(
            "resolved {name}, asked each address directly on port {}, and looked up the SRV record of its port named http",
            self.targets.pod_port
        );
        if !headless.found() {
            return Row::new("headless", claim("headless"), did, format!("{name} -> {}", headless.shown()), Verdict::Fail)
                .because(
                    "the headless Service is missing, or has no ready pod (its name then has no address)",
                    format!("kubectl get svc,endpointslices -n {} -l app={}", self.targets.namespace, self.targets.quote.as_deref().unwrap_or("quote")),
                );
        }
        let ready = Self::ready_pods(seen);
        let through_vip = tally(&seen.new);
        let saw = format!(
            "{name} -> {}; directly: {}; SRV: {}",
            headless.shown(),
            seen.direct
                .iter()
                .map(|(ip, o)| format!("{ip} {}", o.words()))
                .collect::<Vec<_>>()
                .join(", "),
            if headless.srv.is_empty() {
                "none".into()
            } else {
                headless.srv.join("; ")
            }
        );
        let row = |verdict| {
            Row::new(
                "headless",
                claim("headless"),
                did.clone(),
                saw.clone(),
                verdict,
            )
            .with_pods(ready.iter().cloned())
        };
        let vip = seen.vip.as_ref().map(Resolved::set).unwrap_or_default();
        if headless.addresses.iter().any(|a| vip.contains(a)) {
            return row(Verdict::Fail).because(
                "the headless name gave the virtual IP: the Service is not headless (clusterIP: None)",
                format!("kubectl get svc {name} -n {} -o jsonpath='{{.spec.clusterIP}}'", self.targets.namespace),
            );
        }
        if !through_vip.is_empty() {
            let via: BTreeSet<String> = through_vip.keys().cloned().collect();
            let extra: Vec<&String> = via.difference(&ready).collect();
            if !extra.is_empty() {
                return row(Verdict::Fail).because(
                    format!(
                        "{} answered through the Service but is not among the headless name's addresses: the two Services select different pods",
                        extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                    format!("kubectl get endpointslices -n {} -l app={} -o wide", self.targets.namespace, self.targets.quote.as_deref().unwrap_or("quote")),
                );
            }
        }
        if headless.srv.is_empty() {
            return row(Verdict::Warn).because(
                "no SRV record for the port named http: the Service's port has no name",
                format!(
                    "kubectl get svc {name} -n {} -o jsonpath='{{.spec.ports}}'",
                    self.targets.namespace
                ),
            );
        }
        row(Verdict::Pass)
    }

    fn ready(&self, seen: &Seen) -> Row {
        let answers: Vec<&Answer> = seen
            .new
            .iter()
            .chain(&seen.kept)
            .chain(seen.direct.iter().map(|(_, o)| o))
            .filter_map(|o| match o {
                Outcome::Answered(a) => Some(a),
                _ => None,
            })
            .collect();
        let did =
            "read X-Pod-State on every answer, through the Service and at the headless addresses"
                .to_owned();
        if answers.is_empty() && seen.direct.is_empty() {
            return Row::new(
                "ready",
                claim("ready"),
                did,
                "no pod answered".into(),
                Verdict::Skip,
            );
        }
        let mut states: BTreeMap<String, String> = BTreeMap::new();
        for a in &answers {
            states.insert(
                a.pod.clone(),
                a.state.clone().unwrap_or_else(|| "unknown".into()),
            );
        }
        let silent: Vec<String> = seen
            .direct
            .iter()
            .filter(|(_, o)| o.pod().is_none())
            .map(|(ip, o)| format!("{ip} ({})", o.words()))
            .collect();
        let saw = states
            .iter()
            .map(|(p, s)| format!("{p} {s}"))
            .chain(silent.iter().map(|s| format!("{s} did not answer")))
            .collect::<Vec<_>>()
            .join(", ");
        let not_ready: Vec<String> = states
            .iter()
            .filter(|(_, s)| s.as_str() != "ready")
            .map(|(p, s)| format!("{p} said {s}"))
            .collect();
        let row = Row::new("ready", claim("ready"), did, saw, Verdict::Pass)
            .with_pods(states.keys().cloned());
        if !not_ready.is_empty() || !silent.is_empty() {
            let mut what = not_ready;
            what.extend(
                silent
                    .iter()
                    .map(|s| format!("{s} is listed but does not answer")),
            );
            return Row {
                verdict: Verdict::Warn,
                ..row
            }
            .because(
                format!(
                    "{}: a pod that is not ready still got traffic (the endpoints lag behind readiness by up to a probe period times its failure threshold), or a listed pod is gone",
                    what.join("; ")
                ),
                format!("kubectl describe endpointslice -n {} -l kubernetes.io/service-name={}", self.targets.namespace, self.targets.quote.as_deref().unwrap_or("quote")),
            );
        }
        row
    }

    async fn vip(&self, seen: &Seen) -> Row {
        let Some(vip) = seen.vip.as_ref().filter(|v| v.found()) else {
            return Row::new(
                "vip",
                claim("vip"),
                "nothing: the name did not resolve".into(),
                "-".into(),
                Verdict::Skip,
            );
        };
        let addr = SocketAddr::new(vip.addresses[0], UNDECLARED_PORT);
        let did = format!("connected to {addr}, a port the Service does not declare");
        let result = probe::connect(addr).await;
        let row =
            |saw: &str, verdict| Row::new("vip", claim("vip"), did.clone(), saw.into(), verdict);
        match result {
            Connect::Refused => row(
                "refused at once: kube-proxy's rules reject what no Service port matches (nftables or IPVS mode)",
                Verdict::Pass,
            ),
            Connect::Timeout => row(
                "no answer: no rule matches and nothing owns the address, so the packet is dropped (iptables mode)",
                Verdict::Pass,
            ),
            Connect::Unreachable => row("unreachable: the address is not routed to any host", Verdict::Pass),
            Connect::Connected => row("a connection was accepted", Verdict::Fail).because(
                "something listens on the virtual IP's undeclared port: the address is a host's, not a Service's",
                format!("kubectl get svc -n {} -o wide", self.targets.namespace),
            ),
        }
    }

    /// `calls` new connections to `name`, or `None` when it does not resolve.
    async fn calls_to(&self, name: &str, calls: usize) -> Option<(Resolved, Vec<Outcome>)> {
        let resolved = probe::resolve(name, &self.conf, self.nameserver).await;
        if !resolved.found() {
            return None;
        }
        let addr = SocketAddr::new(resolved.addresses[0], self.targets.service_port);
        let url = format!(
            "{}{}",
            probe::origin(name, self.targets.service_port),
            self.targets.quote_path
        );
        let mut outcomes = Vec::new();
        for _ in 0..calls {
            if self.out_of_time() {
                break;
            }
            let client = probe::client(false, Some((name, addr)));
            outcomes.push(probe::get(&client, &url).await);
        }
        Some((resolved, outcomes))
    }

    async fn affinity(&self) -> Row {
        let Some(name) = self.targets.quote_as("-sticky") else {
            return self.no_name("affinity");
        };
        let did = format!("{PROBE_CALLS} calls to {name} over a new connection each");
        let Some((_, outcomes)) = self.calls_to(&name, PROBE_CALLS).await else {
            return Row::new(
                "affinity",
                claim("affinity"),
                did,
                format!("{name} does not resolve"),
                Verdict::Skip,
            );
        };
        let by_pod = tally(&outcomes);
        let saw = shown(&by_pod, &outcomes);
        let row = |verdict| {
            Row::new(
                "affinity",
                claim("affinity"),
                did.clone(),
                saw.clone(),
                verdict,
            )
            .with_pods(by_pod.keys().cloned())
        };
        match by_pod.len() {
            1 => row(Verdict::Pass),
            0 => row(Verdict::Fail).because(
                "no pod answered through the sticky Service: no ready endpoints, or a NetworkPolicy",
                format!("kubectl get endpointslices -n {} -l kubernetes.io/service-name={name}", self.targets.namespace),
            ),
            _ => row(Verdict::Fail).because(
                "new connections from this pod reached several pods: sessionAffinity: ClientIP is not set, or what implements Services here ignores it",
                format!("kubectl get svc {name} -n {} -o jsonpath='{{.spec.sessionAffinity}}'", self.targets.namespace),
            ),
        }
    }

    async fn local(&self, seen: &Seen) -> Row {
        let Some(name) = self.targets.quote_as("-local") else {
            return self.no_name("local");
        };
        let here = &self.targets.node_name;
        if here == kit::identity::UNKNOWN {
            return Row::new(
                "local",
                claim("local"),
                "nothing: this pod does not know its node (NODE_NAME)".into(),
                "-".into(),
                Verdict::Skip,
            );
        }
        let did =
            format!("{PROBE_CALLS} calls to {name} over a new connection each, from node {here}");
        let Some((_, outcomes)) = self.calls_to(&name, PROBE_CALLS).await else {
            return Row::new(
                "local",
                claim("local"),
                did,
                format!("{name} does not resolve"),
                Verdict::Skip,
            );
        };
        let answers: Vec<&Answer> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Answered(a) => Some(a),
                _ => None,
            })
            .collect();
        let elsewhere: BTreeSet<String> = answers
            .iter()
            .filter(|a| a.node.as_deref() != Some(here.as_str()))
            .map(|a| {
                format!(
                    "{} on {}",
                    a.pod,
                    a.node.as_deref().unwrap_or("an unknown node")
                )
            })
            .collect();
        let by_pod = tally(&outcomes);
        let saw = shown(&by_pod, &outcomes);
        let row = |verdict| {
            Row::new("local", claim("local"), did.clone(), saw.clone(), verdict)
                .with_pods(by_pod.keys().cloned())
        };
        if !elsewhere.is_empty() {
            return row(Verdict::Fail).because(
                format!(
                    "{} answered: a pod on another node, which internalTrafficPolicy: Local never sends to",
                    elsewhere.into_iter().collect::<Vec<_>>().join(", ")
                ),
                format!("kubectl get svc {name} -n {} -o jsonpath='{{.spec.internalTrafficPolicy}}'", self.targets.namespace),
            );
        }
        if !answers.is_empty() {
            return row(Verdict::Pass);
        }
        // No answer at all: right when no quote pod runs on this node.
        let pods_here = seen.direct.iter().any(
            |(_, o)| matches!(o, Outcome::Answered(a) if a.node.as_deref() == Some(here.as_str())),
        );
        if pods_here {
            row(Verdict::Fail).because(
                "a quote pod runs on this node, yet the Local Service did not answer",
                format!(
                    "kubectl get endpointslices -n {} -l kubernetes.io/service-name={name} -o wide",
                    self.targets.namespace
                ),
            )
        } else {
            Row {
                saw: format!(
                    "{saw}: no quote pod runs on node {here}, so there is nothing for it to reach"
                ),
                ..row(Verdict::Pass)
            }
        }
    }

    async fn nodeport(&self) -> Row {
        let Some(ip) = self.targets.node_ip else {
            return Row::new(
                "nodeport",
                claim("nodeport"),
                "nothing: this pod does not know its node's address (NODE_IP)".into(),
                "-".into(),
                Verdict::Skip,
            );
        };
        let url = format!(
            "{}/api",
            probe::origin(&ip.to_string(), self.targets.node_port)
        );
        let did = format!("asked {url}, kiada's own NodePort on this node");
        let client = probe::client(false, None);
        let answer = client
            .get(&url)
            .header("accept", "application/json")
            .send()
            .await;
        let res = match answer {
            Ok(res) => res,
            Err(e) => {
                return Row::new("nodeport", claim("nodeport"), did, crate::backends::failure::classify(&e).message, Verdict::Fail)
                    .because(
                        "the node port did not answer from inside the cluster: the Service is not a NodePort with that port, or the node's firewall or a NetworkPolicy stops it",
                        format!("kubectl get svc kiada -n {}", self.targets.namespace),
                    );
            }
        };
        let said = crate::backends::identity::Said::of(res.headers());
        let body = crate::backends::reply::read_body(res)
            .await
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let label = json["request"]["clientIpLabel"]
            .as_str()
            .unwrap_or("unknown");
        let client_ip = json["request"]["clientIp"].as_str().unwrap_or("?");
        let pod = said.pod.unwrap_or_else(|| "(no X-Pod-Name)".into());
        let saw = format!(
            "kiada pod {pod} answered; it saw this call come from {} ({label})",
            crate::terminal::one_line(client_ip)
        );
        Row::new("nodeport", claim("nodeport"), did, saw, Verdict::Pass).with_pods([pod])
    }

    fn canary(&self, seen: &Seen) -> Row {
        let mut releases: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for o in seen.new.iter().chain(&seen.kept) {
            if let Outcome::Answered(a) = o
                && let Some(rel) = &a.release
            {
                releases
                    .entry(rel.clone())
                    .or_default()
                    .insert(a.pod.clone());
            }
        }
        let did =
            format!("read X-Release on the {NEW_CALLS} new-connection calls through the Service");
        if releases.is_empty() {
            return Row::new(
                "canary",
                claim("canary"),
                did,
                "no answer named its release".into(),
                Verdict::Skip,
            );
        }
        let saw = releases
            .iter()
            .map(|(rel, pods)| {
                format!(
                    "{rel}: {}",
                    pods.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let pods: Vec<String> = releases.values().flatten().cloned().collect();
        let row = Row::new("canary", claim("canary"), did, saw, Verdict::Pass).with_pods(pods);
        if releases.contains_key("stable") && releases.contains_key("canary") {
            row
        } else {
            Row {
                verdict: Verdict::Warn,
                ..row
            }
            .because(
                "only one release answered: the canary Deployment is not running, or the Service's selector leaves it out",
                format!("kubectl get pods -n {} -l app={} -L rel", self.targets.namespace, self.targets.quote.as_deref().unwrap_or("quote")),
            )
        }
    }

    async fn experiments(&self, seen: &Seen) -> Row {
        let did = "looked up the experiments' names: the ExternalName alias, the headless Service with not-ready addresses, the named pod, the dual-stack Service".to_owned();
        let mut parts: Vec<String> = Vec::new();
        let mut failed: Vec<(String, String)> = Vec::new();
        if let Some(quiz) = &self.targets.quiz {
            let alias = format!("{quiz}-alias");
            let r = probe::resolve(&alias, &self.conf, self.nameserver).await;
            if r.found() || !r.cnames.is_empty() {
                let target = format!("{}.", self.targets.full(quiz));
                if r.cnames.iter().any(|c| c.ends_with(&target)) {
                    parts.push(format!("{alias} is a CNAME to {target}"));
                } else {
                    failed.push((
                        format!("{alias} resolved without a CNAME to {target}"),
                        format!(
                            "kubectl get svc {alias} -n {} -o jsonpath='{{.spec.externalName}}'",
                            self.targets.namespace
                        ),
                    ));
                }
            }
        }
        if let Some(all) = self.targets.quote_as("-headless-all") {
            let r = probe::resolve(&all, &self.conf, self.nameserver).await;
            if r.found() {
                let ready = seen
                    .headless
                    .as_ref()
                    .map(Resolved::set)
                    .unwrap_or_default();
                let missing: Vec<String> =
                    ready.difference(&r.set()).map(IpAddr::to_string).collect();
                if missing.is_empty() {
                    parts.push(format!(
                        "{all} has {} address(es), the ready ones among them",
                        r.addresses.len()
                    ));
                } else {
                    failed.push((
                        format!("{all} lacks ready addresses {}", missing.join(", ")),
                        format!(
                            "kubectl get endpointslices -n {} -l kubernetes.io/service-name={all}",
                            self.targets.namespace
                        ),
                    ));
                }
            }
        }
        if let Some(headless) = self.targets.quote_as("-headless") {
            let named = format!("tips.{headless}");
            let r = probe::resolve(&named, &self.conf, self.nameserver).await;
            if r.found() {
                parts.push(format!("{named} -> {}", r.shown()));
            }
        }
        if let Some(dual) = self.targets.quote_as("-dual") {
            let r = probe::resolve(&dual, &self.conf, self.nameserver).await;
            if r.found() {
                let v4 = r.addresses.iter().any(IpAddr::is_ipv4);
                let v6 = r.addresses.iter().any(IpAddr::is_ipv6);
                parts.push(match (v4, v6) {
                    (true, true) => format!("{dual} has both families: {}", r.shown()),
                    _ => format!(
                        "{dual} has one family only, {} (a single-stack cluster)",
                        r.shown()
                    ),
                });
            }
        }
        if parts.is_empty() && failed.is_empty() {
            return Row::new(
                "experiments",
                claim("experiments"),
                did,
                "none of their names resolves: kubectl apply -f manifests/experiments/ adds them"
                    .into(),
                Verdict::Skip,
            );
        }
        let saw = parts
            .iter()
            .cloned()
            .chain(failed.iter().map(|(f, _)| f.clone()))
            .collect::<Vec<_>>()
            .join("; ");
        let row = Row::new("experiments", claim("experiments"), did, saw, Verdict::Pass);
        match failed.into_iter().next() {
            None => row,
            Some((cause, next)) => Row {
                verdict: Verdict::Fail,
                ..row
            }
            .because(cause, next),
        }
    }

    async fn policy(&self, seen: &Seen) -> Row {
        let Some((ip, _)) = seen.direct.iter().find(|(_, o)| o.pod().is_some()) else {
            return Row::new(
                "policy",
                claim("policy"),
                "nothing: no quote pod answered at its own address".into(),
                "-".into(),
                Verdict::Skip,
            );
        };
        let addr = SocketAddr::new(*ip, UNDECLARED_PORT);
        let did = format!(
            "connected to {addr}, a port of a quote pod that its NetworkPolicy does not admit"
        );
        let row = |saw: &str, verdict| {
            Row::new("policy", claim("policy"), did.clone(), saw.into(), verdict)
        };
        match probe::connect(addr).await {
            Connect::Timeout => row("no answer: a NetworkPolicy dropped the connection, so policies are enforced here", Verdict::Pass),
            Connect::Refused => row("refused at once: the pod itself answered, so nothing enforces NetworkPolicies in this cluster", Verdict::Warn)
                .because(
                    "the network plugin does not implement NetworkPolicy, so the manifests' policies have no effect here",
                    "kubectl get pods -n kube-system -o wide",
                ),
            Connect::Unreachable => row("unreachable: a policy rejected it", Verdict::Pass),
            Connect::Connected => row("a connection was accepted on a port no policy admits", Verdict::Warn).because(
                "the pod listens there and nothing enforces NetworkPolicies",
                "kubectl get networkpolicies -n kiada",
            ),
        }
    }
}

/// Calls answered per pod.
fn tally(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut by_pod = BTreeMap::new();
    for o in outcomes {
        if let Some(pod) = o.pod() {
            *by_pod.entry(pod.to_owned()).or_default() += 1;
        }
    }
    by_pod
}

/// `quote-a 8, quote-b 7; 2 refused`.
fn shown(by_pod: &BTreeMap<String, usize>, outcomes: &[Outcome]) -> String {
    let mut parts: Vec<String> = by_pod.iter().map(|(p, n)| format!("{p} {n}")).collect();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.pod().is_none()) {
        *failures.entry(o.words()).or_default() += 1;
    }
    parts.extend(failures.into_iter().map(|(w, n)| format!("{n} {w}")));
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

/// What the chapter claims, in one line each.
pub fn claim(id: &str) -> &'static str {
    match id {
        "names" => {
            "A Service is found by its short name, name.namespace and full name, all one address"
        }
        "variables" => {
            "The Service's variables in this pod hold its DNS name's address and the port dialled"
        }
        "spread" => {
            "A Service balances connections: new ones reach every ready pod, one kept connection reaches one"
        }
        "headless" => {
            "A headless Service's name gives the ready pods' own addresses and an SRV record"
        }
        "ready" => "Only ready pods get traffic",
        "vip" => "A virtual IP is not a host: a port the Service does not declare gets no service",
        "affinity" => "sessionAffinity: ClientIP keeps new connections from one client on one pod",
        "local" => "internalTrafficPolicy: Local reaches only pods on the client's own node",
        "nodeport" => "A NodePort answers on the node's address, from inside the cluster too",
        "canary" => "One Service selects stable and canary pods alike",
        "experiments" => "The experiments behave as the guide says, where applied",
        _ => "Whether NetworkPolicies are enforced in this cluster",
    }
}

/// The deadline of a run that starts now and may take `limit`.
pub fn deadline(limit: Duration) -> Instant {
    Instant::now() + limit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A nameserver that never answers holds each lookup for its 2 s step limit and the DNS
    /// walk for 6 s; the run's deadline cuts every step short, so a run ends at its limit and
    /// the claims it did not reach are SKIP.
    #[tokio::test]
    async fn a_run_ends_at_its_deadline_however_slow_its_steps() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let targets = Targets::new("http://quote/quote", "http://quiz");
        let run = Run {
            targets: &targets,
            conf: ResolvConf::parse(
                "search kiada.svc.cluster.local svc.cluster.local cluster.local\n\
                 nameserver 127.0.0.1\noptions ndots:5\n",
            ),
            nameserver: Some(silent.local_addr().unwrap()),
            deadline: deadline(Duration::from_millis(300)),
            only: BTreeSet::new(),
        };
        let started = Instant::now();
        let rows = run.rows().await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "took {took:?}");
        assert_eq!(rows.len(), IDS.len());
        assert!(
            rows.iter().all(|r| r.verdict == Verdict::Skip),
            "{:?}",
            rows.iter().map(|r| (&r.id, &r.verdict)).collect::<Vec<_>>()
        );

        // A claim that does its own lookups (affinity needs nothing looked up before it) is
        // cut while it runs.
        let run = Run {
            deadline: deadline(Duration::from_millis(300)),
            only: BTreeSet::from(["affinity"]),
            ..run
        };
        let started = Instant::now();
        let rows = run.rows().await;
        assert!(started.elapsed() < Duration::from_millis(1500));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].verdict, Verdict::Skip);
        assert!(
            rows[0].did.contains("while this claim ran"),
            "{}",
            rows[0].did
        );
    }
}
