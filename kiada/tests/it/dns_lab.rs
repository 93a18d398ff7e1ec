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

pub struct Dnsmasq {
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
    dnsmasq_at(ADDRESS, &[])
}

pub fn root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// dnsmasq on `address`, port 53, answering the lab's names; `extra` adds to its arguments.
pub fn dnsmasq_at(address: &str, extra: &[String]) -> Option<Dnsmasq> {
    let binary = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(binary) = binary.filter(|_| root()) else {
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
         10.244.3.7 quote-headless.kiada.svc.cluster.local\n\
         10.244.1.9 tips.quote-headless.kiada.svc.cluster.local\n\
         10.96.0.1 kubernetes.default.svc.cluster.local\n\
         10.96.0.99 gap.cluster.local\n",
    )
    .unwrap();
    let resolv_conf = dir.path().join("resolv.conf");
    std::fs::write(
        &resolv_conf,
        format!(
            "search kiada.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver {address}\noptions ndots:5\n"
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
            &format!("--listen-address={address}"),
            &format!("--addn-hosts={}", hosts.display()),
            "--cname=quiz-alias.kiada.svc.cluster.local,quiz.kiada.svc.cluster.local",
            "--srv-host=_http._tcp.quiz.kiada.svc.cluster.local,quiz.kiada.svc.cluster.local,80",
            // A name with a record of another type only: NODATA for A and AAAA.
            "--txt-record=gap.svc.cluster.local,a name without addresses",
            // Everything else is NXDOMAIN here, never forwarded anywhere.
            "--local=/cluster.local/",
            "--local=/#/",
        ])
        .args(extra)
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
        let _ = socket.send_to(query, (address, 53));
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
    // A and AAAA at once, as getaddrinfo for any address family asks.
    assert_eq!(quiz["steps"][0]["queries"], 2);
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
        quiz["lesson"]
            .as_str()
            .unwrap()
            .contains("1 try (2 queries"),
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
async fn a_slow_nameserver_holds_the_dns_lab_six_seconds_at_most_and_never_the_spread_lab() {
    // Port 53 on a loopback address of its own: every query answered NXDOMAIN after 1.5 s, so
    // that the walk goes on (musl stops at a timeout, not at NXDOMAIN) and eight candidates
    // would take 12 s.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        testkit::skip("dns lab deadline", "needs root for port 53");
        return;
    }
    let slow = std::net::UdpSocket::bind("127.0.0.154:53").expect("port 53 is free there");
    let server = slow.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let mut answer = buf[..n].to_vec();
            let socket = server.try_clone().unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500));
                answer[2] |= 0x80; // a response
                answer[3] = (answer[3] & 0xf0) | 3; // NXDOMAIN
                let _ = socket.send_to(&answer, from);
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let resolv_conf = dir.path().join("resolv.conf");
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
    assert_eq!(walked["ended"], "deadline", "{walked}");
    let steps = walked["steps"].as_array().unwrap();
    assert!((3..8).contains(&steps.len()), "{walked}");
    let last = steps.last().unwrap();
    assert!(
        last["outcome"] == "not-asked" || last["outcome"] == "timeout",
        "{walked}"
    );
    assert!(
        last["detail"].as_str().unwrap().contains("6 s limit"),
        "{walked}"
    );
    drop(slow);
}

/// A getaddrinfo client linked with musl, the C library of the suite's images: what curl and
/// kiada's own lookups do in a pod.
const MUSL_CLIENT: &str = r#"
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    struct addrinfo hints = {0}, *res, *p;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(argv[1], NULL, &hints, &res);
    if (rc) { printf("error %d\n", rc); return 2; }
    for (p = res; p; p = p->ai_next) {
        char text[64];
        void *a = p->ai_family == AF_INET
            ? (void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr
            : (void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr;
        printf("%s\n", inet_ntop(p->ai_family, a, text, sizeof text));
    }
    return 0;
}
"#;

/// The (type, name) of every A and AAAA query dnsmasq logged after byte `from` of its log.
fn logged_queries(log: &Path, from: usize) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.get(from..)
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("query[")? + 6..];
            let (kind, rest) = rest.split_once("] ")?;
            let name = rest.split(" from ").next()?;
            matches!(kind, "A" | "AAAA").then(|| (kind.to_owned(), name.to_ascii_lowercase()))
        })
        .collect()
}

/// The names asked, in order, each once, and how many queries each got.
fn walk_of(queries: &[(String, String)]) -> Vec<(String, usize)> {
    let mut walk: Vec<(String, usize)> = Vec::new();
    for (_, name) in queries {
        match walk.last_mut() {
            Some((last, n)) if last == name => *n += 1,
            _ => walk.push((name.clone(), 1)),
        }
    }
    walk
}

#[tokio::test]
async fn the_lab_walks_the_names_musl_walks_and_stops_where_musl_stops() {
    let musl_gcc = ["/usr/bin/musl-gcc", "/usr/local/bin/musl-gcc"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(musl_gcc) = musl_gcc.filter(|_| root()) else {
        testkit::skip(
            "dns lab against musl",
            "needs musl-gcc (Debian's musl-tools) and root (port 53, a private mount namespace)",
        );
        return;
    };
    let address = "127.0.0.156";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("queries.log");
    std::fs::write(&log, "").unwrap();
    let Some(dns) = dnsmasq_at(
        address,
        &[
            "--log-queries".into(),
            format!("--log-facility={}", log.display()),
        ],
    ) else {
        return;
    };
    let source = dir.path().join("lookup.c");
    std::fs::write(&source, MUSL_CLIENT).unwrap();
    let client = dir.path().join("lookup");
    let built = Command::new(musl_gcc)
        .args(["-static", "-O1", "-o"])
        .arg(&client)
        .arg(&source)
        .status()
        .unwrap();
    assert!(built.success(), "musl-gcc builds the client");

    // A pod's resolv.conf in namespace kiada, and the dnsConfig experiment's (ndots 1, two
    // more search domains: manifests/experiments/50-dns-config.yaml).
    let pod = dns.resolv_conf.clone();
    let with_dns_config = dir.path().join("dns-config.resolv.conf");
    std::fs::write(
        &with_dns_config,
        format!(
            "search kiada.svc.cluster.local svc.cluster.local cluster.local \
             quote-headless.kiada.svc.cluster.local default.svc.cluster.local\n\
             nameserver {address}\noptions ndots:1\n"
        ),
    )
    .unwrap();
    let s = healthy().await;
    let mut kiadas = Vec::new();
    for conf in [&pod, &with_dns_config] {
        let mut config = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
        config.resolv_conf = conf.clone();
        kiadas.push(start(config).await);
    }
    let cases: &[(usize, &str)] = &[
        (0, "quiz"),
        (0, "quiz.kiada"),
        (0, "quiz.kiada.svc.cluster.local"),
        (0, "quiz.kiada.svc.cluster.local."),
        (0, "quote-headless"),
        (0, "quiz-alias"),
        (0, "nobody-has-this"),
        // NODATA at the second candidate: gap.svc.cluster.local has only a TXT record, and
        // gap.cluster.local, the third candidate, has an address musl never reaches.
        (0, "gap"),
        (1, "tips"),
        (1, "kubernetes"),
        (1, "quiz.kiada"),
        (1, "quiz"),
    ];
    let settle = || std::thread::sleep(Duration::from_millis(300));
    for &(conf, name) in cases {
        let conf_path = [&pod, &with_dns_config][conf];
        settle();
        let before = std::fs::metadata(&log).unwrap().len() as usize;
        let out = Command::new("unshare")
            .args([
                "-m",
                "sh",
                "-c",
                r#"mount --bind "$0" /etc/resolv.conf && exec "$1" "$2""#,
            ])
            .arg(conf_path)
            .arg(&client)
            .arg(name)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        settle();
        let musl = logged_queries(&log, before);
        let before = std::fs::metadata(&log).unwrap().len() as usize;
        let lab = lab(&kiadas[conf].url(), name).await;
        settle();
        let ours = logged_queries(&log, before);
        let case = format!(
            "{name} with {}:\nmusl {musl:?}\nlab {ours:?}\n{lab}",
            conf_path.display()
        );
        assert!(!musl.is_empty(), "{case}");
        assert_eq!(walk_of(&ours), walk_of(&musl), "{case}");
        assert!(
            walk_of(&musl).iter().all(|(_, n)| *n == 2),
            "A and AAAA each: {case}"
        );
        let queries: u64 = lab["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["queries"].as_u64().unwrap())
            .sum();
        assert_eq!(
            queries as usize,
            musl.len(),
            "the queries the lab reports: {case}"
        );
        // The same verdict: musl's addresses when it resolved, an error when it did not.
        match out.status.code() {
            Some(0) => {
                assert_eq!(lab["ended"], "resolved", "{case}");
                let mut theirs: Vec<&str> = said.lines().collect();
                let mut mine: Vec<String> =
                    lab["steps"].as_array().unwrap().last().unwrap()["addresses"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_owned())
                        .collect();
                theirs.sort();
                theirs.dedup();
                mine.sort();
                assert_eq!(mine, theirs, "{case}");
            }
            _ => assert_ne!(lab["ended"], "resolved", "{case}\nmusl said {said}"),
        }
    }
    // The NODATA case, said in the lab's own words.
    let gap = lab(&kiadas[0].url(), "gap").await;
    assert_eq!(gap["ended"], "nodata", "{gap}");
    assert!(
        gap["lesson"]
            .as_str()
            .unwrap()
            .contains("glibc would go on"),
        "{gap}"
    );
    drop(dns);
}

/// `--nameserver` sends the walk to another address (the local suite's DNS, on a port of its
/// own) while the search list still comes from resolv.conf; where resolv.conf is not a pod's,
/// the lesson says there is no cluster DNS instead of only "no such name".
#[tokio::test]
async fn the_lab_asks_the_nameserver_it_is_given_and_says_when_there_is_no_cluster_dns() {
    let address = "127.0.0.158";
    let Some(dns) = dnsmasq_at(address, &[]) else {
        return;
    };
    let s = healthy().await;
    let dir = tempfile::tempdir().unwrap();

    // A pod's search list, naming a nameserver where nothing listens: only the override is
    // asked, or the walk would time out.
    let pod = dir.path().join("pod.conf");
    std::fs::write(
        &pod,
        "search kiada.svc.cluster.local svc.cluster.local cluster.local\n\
         nameserver 127.0.0.159\noptions ndots:5\n",
    )
    .unwrap();
    let mut given = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    given.resolv_conf = pod;
    given.dns_nameserver = Some(format!("{address}:53").parse().unwrap());
    let kiada = start(given).await;
    let quiz = lab(&kiada.url(), "quiz").await;
    assert_eq!(quiz["resolved"], "quiz.kiada.svc.cluster.local.", "{quiz}");
    assert_eq!(quiz["asked"], format!("{address}:53"));
    assert_eq!(quiz["clusterDns"], true);
    let text = text(format!("{}/lab/dns?name=quiz", kiada.url())).await;
    assert!(text.contains("nameserver 127.0.0.159\n"), "{text}");

    // A laptop's resolv.conf: a nameserver that knows no Service (dnsmasq answers NXDOMAIN).
    let laptop = dir.path().join("laptop.conf");
    std::fs::write(&laptop, format!("search lan\nnameserver {address}\n")).unwrap();
    let mut alone = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    alone.resolv_conf = laptop;
    let kiada = start(alone).await;
    let quote = lab(&kiada.url(), "quote").await;
    assert_eq!(quote["clusterDns"], false, "{quote}");
    assert_eq!(quote["ended"], "exhausted");
    let lesson = quote["lesson"].as_str().unwrap();
    assert!(
        lesson.starts_with("There is no cluster DNS here."),
        "{lesson}"
    );
    assert!(lesson.contains("cargo run --release -p suite"), "{lesson}");
    drop(dns);
}
