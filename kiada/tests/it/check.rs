//! `GET /lab/check` and `kiada check` against a little cluster on loopback: a real DNS server
//! (dnsmasq) answering a namespace's Service names, each ClusterIP a real per-connection
//! balancer on an address of its own, each pod a server on an address of its own that names
//! itself, its node and its release. A healthy run, then the broken cases each claim must
//! catch, the report's three forms, the exit codes of the real binary, and its bounds.

use std::net::SocketAddr;
use std::process::Command;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use balancer::Balancer;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::dns_lab::{Dnsmasq, dnsmasq_at};
use crate::support::*;

/// The namespace of this little cluster, and its nameserver.
const NS: &str = "lab";
const DNS: &str = "127.0.0.157";

/// A pod: `/` and `/quote` answered with its name, node, state and release.
async fn pod(addr: SocketAddr, name: &'static str, node: &'static str, release: &'static str) {
    let headers = [
        ("x-pod-name", name),
        ("x-node-name", node),
        ("x-pod-state", "ready"),
        ("x-release", release),
    ];
    let router = Router::new()
        .route(
            "/",
            get(move || async move { (headers, format!("pod {name}\n")) }),
        )
        .route("/quote", get(move || async move { (headers, "A tip.\n") }));
    let listener = TcpListener::bind(addr)
        .await
        .expect("the pod's address is free");
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
}

/// A port free on every address this test uses.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    _dns: Dnsmasq,
    _balancers: Vec<Balancer>,
    resolv_conf: std::path::PathBuf,
    service_port: u16,
    pod_port: u16,
    _dir: tempfile::TempDir,
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// Three quote pods (two on node-1, one on node-2; one canary), a ClusterIP Service `quote`
/// over all three (round robin), `quote-sticky` over one (sticky by construction),
/// `quote-local` over node-1's two, the headless `quote-headless` and its SRV record, the
/// ExternalName-like `quiz-alias`; and the broken Service `broken` (nothing listens at its
/// address), `broken-headless` (an address where nothing answers) and `broken-sticky` (round
/// robin over three pods: not sticky).
async fn cluster() -> Option<(Cluster, tokio::sync::MutexGuard<'static, ()>)> {
    // One cluster at a time: each owns the nameserver's address and the pods' addresses.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        [
            ("127.0.0.20", "quote"),
            ("127.0.0.21", "quote-headless"),
            ("127.0.0.22", "quote-headless"),
            ("127.0.0.23", "quote-headless"),
            ("127.0.0.24", "quote-sticky"),
            ("127.0.0.25", "quote-local"),
            ("127.0.0.26", "quiz"),
            ("127.0.0.30", "broken"),
            ("127.0.0.31", "broken-headless"),
            ("127.0.0.32", "broken-sticky"),
            ("127.0.0.33", "slow-headless"),
            // Behind quote's balancer: a "headless" Service that has a virtual IP, and a
            // headless Service whose port has no name (no SRV record).
            ("127.0.0.20", "vip"),
            ("127.0.0.20", "vip-headless"),
            ("127.0.0.20", "unnamed"),
            ("127.0.0.21", "unnamed-headless"),
            ("127.0.0.22", "unnamed-headless"),
            ("127.0.0.23", "unnamed-headless"),
            ("127.0.0.20", "leaky"),
            ("127.0.0.34", "leaky-local"),
            ("127.0.0.35", "stable"),
        ]
        .iter()
        .map(|(ip, name)| format!("{ip} {name}.{NS}.svc.cluster.local\n"))
        .collect::<String>(),
    )
    .unwrap();
    // dnsmasq reads its files after dropping privileges.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let dns = dnsmasq_at(
        DNS,
        &[
            format!("--addn-hosts={}", hosts.display()),
            format!("--cname=quiz-alias.{NS}.svc.cluster.local,quiz.{NS}.svc.cluster.local"),
            format!(
                "--srv-host=_http._tcp.quote-headless.{NS}.svc.cluster.local,quote-headless.{NS}.svc.cluster.local,8080"
            ),
        ],
    )?;
    let resolv_conf = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!(
            "search {NS}.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver {DNS}\noptions ndots:5\n"
        ),
    )
    .unwrap();
    let (service_port, pod_port) = (free_port(), free_port());
    let pods = [
        ("127.0.0.21", "quote-a", "node-1", "stable"),
        ("127.0.0.22", "quote-b", "node-2", "stable"),
        ("127.0.0.23", "quote-c", "node-1", "canary"),
    ];
    for (ip, name, node, release) in pods {
        pod(at(ip, pod_port), name, node, release).await;
    }
    let every: Vec<SocketAddr> = pods.iter().map(|p| at(p.0, pod_port)).collect();
    let balancers = vec![
        Balancer::start_at(at("127.0.0.20", service_port), every.clone()).unwrap(),
        Balancer::start_at(at("127.0.0.24", service_port), vec![every[1]]).unwrap(),
        Balancer::start_at(at("127.0.0.25", service_port), vec![every[0], every[2]]).unwrap(),
        Balancer::start_at(at("127.0.0.32", service_port), every.clone()).unwrap(),
        // A "Local" Service that reaches node-2's pod too, and a Service of the stable pods only.
        Balancer::start_at(at("127.0.0.34", service_port), every.clone()).unwrap(),
        Balancer::start_at(at("127.0.0.35", service_port), vec![every[0], every[1]]).unwrap(),
    ];
    // A pod address that accepts connections and never answers.
    let silent = std::net::TcpListener::bind(at("127.0.0.33", pod_port)).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept() {
            held.push(conn);
        }
    });
    Some((
        Cluster {
            _dns: dns,
            _balancers: balancers,
            resolv_conf,
            service_port,
            pod_port,
            _dir: dir,
        },
        turn,
    ))
}

/// kiada in that cluster's namespace on node-1, calling the Service `quote_service`; it
/// listens on its own node port.
async fn kiada_in(
    c: &Cluster,
    quote_service: &str,
    with_env: bool,
) -> (kit::Running, String, Suite) {
    let env = with_env.then(|| Env {
        first_port: c.service_port,
        declared: vec![c.service_port],
    });
    kiada_with(c, quote_service, env, &c.resolv_conf).await
}

/// The quote Service's variables in kiada's environment: `QUOTE_SERVICE_HOST`, its first port
/// (`QUOTE_SERVICE_PORT`) and every port its link variables name (`QUOTE_PORT_<port>_TCP_PORT`).
struct Env {
    first_port: u16,
    declared: Vec<u16>,
}

/// kiada as [`kiada_in`] starts it, with the quote Service's variables when `env` is given,
/// and the given `resolv.conf`.
async fn kiada_with(
    c: &Cluster,
    quote_service: &str,
    env: Option<Env>,
    resolv_conf: &std::path::Path,
) -> (kit::Running, String, Suite) {
    let s = healthy().await;
    let node_port = free_port();
    let quote_url = format!("http://{quote_service}:{}/quote", c.service_port);
    let mut config = config(&quote_url, &s.quiz.url);
    config.server.listen_port = node_port;
    config.resolv_conf = resolv_conf.to_owned();
    // The pod's own identity agrees with what the check is told of its place.
    config.identity.pod_namespace = NS.into();
    config.identity.node_name = "node-1".into();
    let mut targets =
        kiada::labs::check::Targets::new(&quote_url, &format!("http://quiz:{}", c.service_port));
    targets.pod_port = c.pod_port;
    targets.node_port = node_port;
    targets.namespace = NS.into();
    targets.node_name = "node-1".into();
    targets.node_ip = Some("127.0.0.1".parse().unwrap());
    if let Some(env) = env {
        targets.service_host = Some("127.0.0.20".into());
        targets.service_port_env = Some(env.first_port.to_string());
        targets.declared_ports = env.declared;
    }
    config.check = Some(targets);
    let kiada = start(config).await;
    let url = kiada.url();
    (kiada, url, s)
}

async fn report(url: &str, query: &str) -> Value {
    let res = fetch(format!("{url}/lab/check{query}"), "application/json").await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

fn row<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no row {id}: {report}"))
}

fn verdict(report: &Value, id: &str) -> String {
    row(report, id)["verdict"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_healthy_cluster_passes_every_claim_that_applies() {
    let Some((c, _turn)) = cluster().await else {
        return;
    };
    let (_kiada, url, _s) = kiada_in(&c, "quote", true).await;
    let r = report(&url, "").await;
    for id in [
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
    ] {
        assert_eq!(verdict(&r, id), "PASS", "{id}: {}", row(&r, id));
    }
    // Nothing enforces NetworkPolicies on loopback: said, as a warning, never a failure.
    assert_eq!(verdict(&r, "policy"), "WARN", "{}", row(&r, "policy"));
    assert_eq!(r["passed"], true, "{r}");
    assert_eq!(r["counts"]["fail"], 0);
    // Evidence, not just verdicts.
    let spread = row(&r, "spread");
    for pod in ["quote-a", "quote-b", "quote-c"] {
        assert!(spread["saw"].as_str().unwrap().contains(pod), "{spread}");
    }
    assert!(
        spread["saw"].as_str().unwrap().contains("kept: quote-"),
        "{spread}"
    );
    assert!(
        row(&r, "names")["saw"]
            .as_str()
            .unwrap()
            .contains("127.0.0.20")
    );
    assert!(
        row(&r, "experiments")["saw"]
            .as_str()
            .unwrap()
            .contains("CNAME")
    );
    assert!(
        row(&r, "canary")["saw"]
            .as_str()
            .unwrap()
            .contains("canary: quote-c")
    );
    assert!(
        row(&r, "vip")["saw"]
            .as_str()
            .unwrap()
            .contains("refused at once")
    );

    // The same report as text and as a page.
    let report_text = text(format!("{url}/lab/check?only=dns")).await;
    let t = &report_text;
    assert!(t.starts_with("kiada check from pod kiada-test"), "{t}");
    assert!(t.contains("PASS  names"), "{t}");
    assert!(!t.contains("spread"), "only the dns group: {t}");
    let page = fetch(format!("{url}/lab/check?only=spread,canary"), "text/html").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"id="check-spread" data-verdict="PASS""#),
        "{html}"
    );
    assert!(html.contains("<code>quote-c</code>"), "{html}");
    // Linked from the labs' page.
    let lab = text(format!("{url}/lab")).await;
    assert!(lab.contains(r#"href="lab/check""#), "{lab}");
}

#[tokio::test]
async fn broken_services_fail_or_warn_with_the_cause_and_the_next_command() {
    let Some((c, _turn)) = cluster().await else {
        return;
    };
    let (_kiada, url, _s) = kiada_in(&c, "broken", false).await;
    let r = report(&url, "").await;
    assert_eq!(r["passed"], false, "{r}");
    // No ready endpoints: refused.
    let spread = row(&r, "spread");
    assert_eq!(spread["verdict"], "FAIL", "{spread}");
    assert!(
        spread["cause"]
            .as_str()
            .unwrap()
            .contains("no ready endpoints"),
        "{spread}"
    );
    assert!(
        spread["next"]
            .as_str()
            .unwrap()
            .starts_with("kubectl get endpointslices -n lab"),
        "{spread}"
    );
    // A headless address that does not answer.
    let ready = row(&r, "ready");
    assert_eq!(ready["verdict"], "WARN", "{ready}");
    assert!(
        ready["cause"].as_str().unwrap().contains("127.0.0.31"),
        "{ready}"
    );
    // Not sticky: round robin over three pods.
    let affinity = row(&r, "affinity");
    assert_eq!(affinity["verdict"], "FAIL", "{affinity}");
    assert!(
        affinity["next"]
            .as_str()
            .unwrap()
            .contains("sessionAffinity"),
        "{affinity}"
    );
    // Variables missing: a warning that says why.
    let variables = row(&r, "variables");
    assert_eq!(variables["verdict"], "WARN", "{variables}");
    assert!(
        variables["cause"]
            .as_str()
            .unwrap()
            .contains("enableServiceLinks")
    );
    // An object that is not there is SKIP, never FAIL.
    assert_eq!(verdict(&r, "local"), "SKIP", "{}", row(&r, "local"));

    // A Service whose first port (QUOTE_SERVICE_PORT) is another one: fine while a link
    // variable names the port QUOTE_URL dials, a warning when none does.
    let other_port = c.service_port.wrapping_add(1);
    let env = Env {
        first_port: other_port,
        declared: vec![other_port, c.service_port],
    };
    let (_kiada, ported, _t) = kiada_with(&c, "quote", Some(env), &c.resolv_conf).await;
    let r = report(&ported, "?only=variables").await;
    assert_eq!(verdict(&r, "variables"), "PASS", "{}", row(&r, "variables"));
    let env = Env {
        first_port: other_port,
        declared: vec![other_port],
    };
    let (_kiada, ported, _t) = kiada_with(&c, "quote", Some(env), &c.resolv_conf).await;
    let r = report(&ported, "?only=variables").await;
    let variables = row(&r, "variables");
    assert_eq!(variables["verdict"], "WARN", "{variables}");
    let dialled = c.service_port;
    assert!(
        variables["cause"].as_str().unwrap().contains(&format!(
            "name no port {dialled}, the one QUOTE_URL dials (neither QUOTE_SERVICE_PORT nor a \
             QUOTE_PORT_{dialled}_TCP_PORT)"
        )),
        "{variables}"
    );

    // A search list without svc.cluster.local: quote.lab is never tried as a Service's name.
    let odd = c.resolv_conf.with_file_name("no-svc-resolv.conf");
    std::fs::write(
        &odd,
        format!("search {NS}.svc.cluster.local cluster.local\nnameserver {DNS}\noptions ndots:5\n"),
    )
    .unwrap();
    let (_kiada, odd_url, _t) = kiada_with(&c, "quote", None, &odd).await;
    let r = report(&odd_url, "?only=names").await;
    let names = row(&r, "names");
    assert_eq!(names["verdict"], "FAIL", "{names}");
    assert!(
        names["cause"]
            .as_str()
            .unwrap()
            .starts_with("quote.lab did not resolve"),
        "{names}"
    );
    // The kubelet's search list with another ndots (a dnsConfig): the names resolve, with a
    // warning that says what the kubelet writes.
    let odd = c.resolv_conf.with_file_name("ndots-resolv.conf");
    std::fs::write(
        &odd,
        format!(
            "search {NS}.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver {DNS}\noptions ndots:2\n"
        ),
    )
    .unwrap();
    let (_kiada, odd_url, _t) = kiada_with(&c, "quote", None, &odd).await;
    let r = report(&odd_url, "?only=names").await;
    let names = row(&r, "names");
    assert_eq!(names["verdict"], "WARN", "{names}");
    assert!(
        names["cause"]
            .as_str()
            .unwrap()
            .contains("search lab.svc.cluster.local svc.cluster.local cluster.local first"),
        "{names}"
    );

    // A "headless" name that gives the virtual IP: not headless.
    let (_kiada, vip, _t) = kiada_in(&c, "vip", false).await;
    let r = report(&vip, "?only=headless").await;
    let headless = row(&r, "headless");
    assert_eq!(headless["verdict"], "FAIL", "{headless}");
    assert!(
        headless["cause"]
            .as_str()
            .unwrap()
            .contains("gave the virtual IP"),
        "{headless}"
    );
    assert!(
        headless["next"]
            .as_str()
            .unwrap()
            .contains("kubectl get svc vip-headless -n lab"),
        "{headless}"
    );
    // A headless Service whose port has no name: the pods, but no SRV record.
    let (_kiada, unnamed, _t) = kiada_in(&c, "unnamed", false).await;
    let r = report(&unnamed, "?only=headless").await;
    let headless = row(&r, "headless");
    assert_eq!(headless["verdict"], "WARN", "{headless}");
    assert!(
        headless["cause"]
            .as_str()
            .unwrap()
            .contains("no SRV record"),
        "{headless}"
    );

    // A Local Service that sends this node's client to a pod on another node.
    let (_kiada, leaky, _t) = kiada_in(&c, "leaky", false).await;
    let r = report(&leaky, "?only=local").await;
    let local = row(&r, "local");
    assert_eq!(local["verdict"], "FAIL", "{local}");
    assert!(
        local["cause"]
            .as_str()
            .unwrap()
            .contains("quote-b on node-2 answered"),
        "{local}"
    );
    // A Service that reaches no canary: one release only, a warning.
    let (_kiada, stable, _t) = kiada_in(&c, "stable", false).await;
    let r = report(&stable, "?only=canary").await;
    let canary = row(&r, "canary");
    assert_eq!(canary["verdict"], "WARN", "{canary}");
    assert!(
        canary["cause"]
            .as_str()
            .unwrap()
            .starts_with("only one release answered"),
        "{canary}"
    );

    // Names that do not resolve.
    let (_kiada, nowhere, _t) = kiada_in(&c, "nowhere", false).await;
    let r = report(&nowhere, "?only=names").await;
    assert_eq!(r["rows"].as_array().unwrap().len(), 1);
    let names = row(&r, "names");
    assert_eq!(names["verdict"], "FAIL", "{names}");
    assert!(
        names["next"]
            .as_str()
            .unwrap()
            .contains("kubectl get svc nowhere -n lab")
    );
}

#[tokio::test]
async fn kiada_check_exits_0_when_nothing_failed_and_1_when_something_did() {
    let Some((c, _turn)) = cluster().await else {
        return;
    };
    let (_healthy, healthy_url, _s) = kiada_in(&c, "quote", true).await;
    let (_broken, broken_url, _t) = kiada_in(&c, "broken", false).await;
    let kiada = env!("CARGO_BIN_EXE_kiada");
    let run = |url: String, extra: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || {
            Command::new(kiada)
                .args(["check", "--url", &url])
                .args(extra)
                .output()
                .unwrap()
        })
    };
    let ok = run(healthy_url.clone(), &[]).await.unwrap();
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{out}");
    assert!(out.contains("PASS  spread"), "{out}");
    let bad = run(broken_url, &["--only", "spread,affinity"])
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  spread") && out.contains("next: kubectl"),
        "{out}"
    );
    assert!(!out.contains("  names "), "only what was asked: {out}");
    let json = run(healthy_url.clone(), &["--json", "--only", "names"])
        .await
        .unwrap();
    let parsed: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed["rows"][0]["id"], "names");
    // A claim that does not exist, and no kiada to ask: exit 2 with the reason.
    let unknown = run(healthy_url, &["--only", "telepathy"]).await.unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no claim"));
    let nobody = run(format!("http://127.0.0.1:{}", closed_port()), &[])
        .await
        .unwrap();
    assert_eq!(nobody.status.code(), Some(2));
}

#[tokio::test]
async fn one_check_at_a_time_and_bad_claims_are_400() {
    let Some((c, _turn)) = cluster().await else {
        return;
    };
    // `slow`'s headless address never answers: its run takes a step's time limit at least.
    let (_kiada, url, _s) = kiada_in(&c, "slow", false).await;
    let first = tokio::spawn({
        let url = url.clone();
        async move {
            fetch(format!("{url}/lab/check"), "text/plain")
                .await
                .status()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let second = fetch(format!("{url}/lab/check"), "text/plain").await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    let bad = fetch(
        format!("{url}/lab/check?only=names,telepathy"),
        "text/plain",
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("'telepathy' is no claim")
    );
}
