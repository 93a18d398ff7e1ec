//! The DNS lab against a real DNS server: dnsmasq on a loopback address of its own, answering
//! from a hosts file as cluster DNS answers for Services (one virtual IP, a headless Service's
//! pods, an ExternalName's CNAME, a named port's SRV record, NXDOMAIN for the rest of
//! cluster.local), and a resolv.conf like a pod's in namespace kiada.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use axum::http::StatusCode;
use serde_json::Value;

/// Port 53 it must be: resolv.conf has no port field.
const ADDRESS: &str = "127.0.0.153";

struct Dnsmasq {
    child: Child,
    _dir: tempfile::TempDir,
    resolv_conf: PathBuf,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dnsmasq() -> Option<Dnsmasq> {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let binary = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(binary) = binary.filter(|_| root) else {
        testkit::skip(
            "dns lab",
            "needs dnsmasq (Debian's dnsmasq-base) and root for port 53",
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "10.96.0.20 quiz.kiada.svc.cluster.local\n\
         10.244.1.5 quote-headless.kiada.svc.cluster.local\n\
         10.244.2.6 quote-headless.kiada.svc.cluster.local\n\
         10.244.3.7 quote-headless.kiada.svc.cluster.local\n",
    )
    .unwrap();
    let resolv_conf = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!(
            "search kiada.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver {ADDRESS}\noptions ndots:5\n"
        ),
    )
    .unwrap();
    let child = Command::new(binary)
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--pid-file",
            &format!("--listen-address={ADDRESS}"),
            &format!("--addn-hosts={}", hosts.display()),
            "--cname=quiz-alias.kiada.svc.cluster.local,quiz.kiada.svc.cluster.local",
            "--srv-host=_http._tcp.quiz.kiada.svc.cluster.local,quiz.kiada.svc.cluster.local,80",
            // Everything else is NXDOMAIN here, never forwarded anywhere.
            "--local=/cluster.local/",
            "--local=/#/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsmasq starts");
    // Ready once it answers on UDP port 53.
    let deadline = Instant::now() + Duration::from_secs(5);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04quiz\x00\x00\x01\x00\x01";
    loop {
        let _ = socket.send_to(query, (ADDRESS, 53));
        let mut answer = [0u8; 512];
        if socket.recv(&mut answer).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "dnsmasq does not answer");
    }
    Some(Dnsmasq {
        child,
        _dir: dir,
        resolv_conf,
    })
}

async fn lab(url: &str, name: &str) -> Value {
    let res = fetch(format!("{url}/lab/dns?name={name}"), "application/json").await;
    assert_eq!(res.status(), StatusCode::OK, "{name}");
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_dns_lab_walks_the_search_list_against_a_real_server() {
    let Some(dns) = dnsmasq() else { return };
    let s = healthy().await;
    let mut config = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    config.resolv_conf = dns.resolv_conf.clone();
    let kiada = start(config).await;
    let url = kiada.url();

    // A short name: the first search domain completes it; one query.
    let quiz = lab(&url, "quiz").await;
    assert_eq!(quiz["resolvConf"]["ndots"], 5);
    assert_eq!(quiz["steps"].as_array().unwrap().len(), 1, "{quiz}");
    assert_eq!(quiz["resolved"], "quiz.kiada.svc.cluster.local.");
    assert_eq!(quiz["steps"][0]["addresses"][0], "10.96.0.20");
    assert_eq!(quiz["steps"][0]["queries"], 1);
    assert!(quiz["meaning"].as_str().unwrap().contains("One address"));
    assert_eq!(
        quiz["srv"]["name"],
        "_http._tcp.quiz.kiada.svc.cluster.local."
    );
    assert!(
        quiz["srv"]["records"][0]
            .as_str()
            .unwrap()
            .contains("port 80 target quiz.kiada.svc.cluster.local."),
        "{quiz}"
    );
    assert!(
        quiz["lesson"].as_str().unwrap().contains("1 try (1 query)"),
        "{quiz}"
    );

    // name.namespace: fewer dots than ndots, so the search list goes first and the first
    // candidate does not exist.
    let dotted = lab(&url, "quiz.kiada").await;
    let steps = dotted["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{dotted}");
    assert_eq!(steps[0]["name"], "quiz.kiada.kiada.svc.cluster.local.");
    assert_eq!(steps[0]["outcome"], "nxdomain");
    assert_eq!(steps[1]["name"], "quiz.kiada.svc.cluster.local.");
    assert!(
        dotted["lesson"].as_str().unwrap().contains("2 tries"),
        "{dotted}"
    );

    // A trailing dot: the name alone.
    let absolute = lab(&url, "quiz.kiada.svc.cluster.local.").await;
    assert_eq!(absolute["steps"].as_array().unwrap().len(), 1);
    assert!(
        absolute["lesson"]
            .as_str()
            .unwrap()
            .contains("trailing dot")
    );

    // A headless Service: every ready pod's address.
    let headless = lab(&url, "quote-headless").await;
    assert_eq!(
        headless["steps"][0]["addresses"].as_array().unwrap().len(),
        3
    );
    assert!(headless["meaning"].as_str().unwrap().contains("headless"));

    // An ExternalName-like alias: a CNAME on the way.
    let alias = lab(&url, "quiz-alias").await;
    assert_eq!(
        alias["steps"][0]["cnames"][0],
        "quiz-alias.kiada.svc.cluster.local. -> quiz.kiada.svc.cluster.local."
    );
    assert!(alias["meaning"].as_str().unwrap().contains("CNAME"));

    // Nothing anywhere: every candidate, then no answer.
    let missing = lab(&url, "nothing").await;
    let steps = missing["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert!(
        steps.iter().all(|s| s["outcome"] == "nxdomain"),
        "{missing}"
    );
    assert_eq!(steps[3]["name"], "nothing.");
    assert!(missing.get("resolved").is_none());

    // The text version for curl.
    let page = text(format!("{url}/lab/dns?name=quiz.kiada")).await;
    assert!(page.contains("ndots      5"), "{page}");
    assert!(
        page.contains("1. quiz.kiada.kiada.svc.cluster.local. -> NXDOMAIN"),
        "{page}"
    );
    assert!(
        page.contains("2. quiz.kiada.svc.cluster.local. -> 10.96.0.20"),
        "{page}"
    );

    // Bad input is refused with the reason.
    for (name, says) in [
        ("10.96.0.20", "IP address"),
        ("http://quiz/", "not a valid DNS name"),
        (&"a".repeat(300), "253"),
        ("", "give a name"),
    ] {
        let res = fetch(format!("{url}/lab/dns?name={name}"), "*/*").await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{name}");
        assert!(res.text().await.unwrap().contains(says), "{name}");
    }
    drop(dns);
}

#[tokio::test]
async fn the_namespace_scope_asks_only_the_pods_own_namespace() {
    let Some(dns) = dnsmasq() else { return };
    let s = healthy().await;
    let mut config = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    config.resolv_conf = dns.resolv_conf.clone();
    config.dns_names = kiada::labs::dns::Names {
        scope: kiada::labs::dns::Scope::Namespace,
        namespace: "kiada".into(),
        cluster_domain: "cluster.local".into(),
    };
    let kiada = start(config).await;
    let url = kiada.url();
    // The namespace's own Services resolve as before.
    let quiz = lab(&url, "quiz").await;
    assert_eq!(quiz["resolved"], "quiz.kiada.svc.cluster.local.", "{quiz}");
    // Another namespace's Service and an external domain: only the candidate inside the
    // namespace is asked; the others are listed, not sent.
    for name in ["kube-dns.kube-system", "example.com"] {
        let other = lab(&url, name).await;
        let steps = other["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 4, "{other}");
        assert_eq!(steps[0]["outcome"], "nxdomain", "{other}");
        for step in &steps[1..] {
            assert_eq!(step["outcome"], "not-asked", "{other}");
            assert_eq!(step["queries"], 0, "{other}");
        }
        assert!(other.get("resolved").is_none(), "{other}");
    }
    let page = text(format!("{url}/lab/dns?name=example.com")).await;
    assert!(
        page.contains(
            "4. example.com. -> not asked: outside this lab's scope (kiada.svc.cluster.local.)"
        ),
        "{page}"
    );
    drop(dns);
}

#[tokio::test]
async fn a_silent_nameserver_holds_the_dns_lab_six_seconds_at_most_and_never_the_spread_lab() {
    // Port 53 on a loopback address of its own, receiving and never answering.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        testkit::skip("dns lab deadline", "needs root for port 53");
        return;
    }
    let silent = std::net::UdpSocket::bind("127.0.0.154:53").expect("port 53 is free there");
    let dir = tempfile::tempdir().unwrap();
    let resolv_conf = dir.path().join("resolv.conf");
    // Seven search domains and ndots:5: eight candidates, 2 s each unbounded: 16 s.
    std::fs::write(
        &resolv_conf,
        "search a.example b.example c.example d.example e.example f.example g.example\n\
         nameserver 127.0.0.154\noptions ndots:5\n",
    )
    .unwrap();
    let s = healthy().await;
    let mut config = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    config.resolv_conf = resolv_conf;
    let kiada = start(config).await;
    let url = kiada.url();
    let started = Instant::now();
    let dns = tokio::spawn({
        let url = url.clone();
        async move { lab(&url, "quiz").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The spread lab has a slot of its own meanwhile; a second DNS run has not.
    let spread = fetch(format!("{url}/lab/spread?n=1"), "text/plain").await;
    assert_eq!(spread.status(), StatusCode::OK);
    let second = fetch(format!("{url}/lab/dns?name=quiz"), "text/plain").await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let walked = dns.await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(7500), "{took:?}");
    let steps = walked["steps"].as_array().unwrap();
    assert!(steps.len() < 8, "{walked}");
    assert!(steps.iter().all(|s| s["outcome"] == "timeout"), "{walked}");
    drop(silent);
}
