//! The page explains each hop from the calls it made: where the URL came from, what the name
//! resolved to, the address dialled, new or reused connection, the answering pod's node; and
//! what the client IP and the client's own connection mean.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use kiada::backends::discovery::{Discovered, Source};
use kiada::page::client_ip::{Cidrs, Networks};
use kit::{App, AppSpec, Identity, Running, ServerConfig};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::Value;

/// A stand-in quote or quiz served by the shared kit, so it answers with the suite's headers
/// (`X-Pod-Name`, `X-Node-Name`, `X-Connection-Requests`, …).
fn kit_backend(router: axum::Router, pod: &str, node: &str) -> Running {
    let identity = Identity {
        pod_ip: "10.244.9.9".into(),
        node_name: node.into(),
        ..Identity::named(pod)
    };
    App::bind(
        &ServerConfig::ephemeral(),
        &identity,
        AppSpec::new("stand-in", router),
    )
    .unwrap()
    .spawn()
}

async fn api(url: &str) -> Value {
    fetch(format!("{url}/api"), "application/json")
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_pooled_connection_is_reported_reused_and_counted() {
    let quote = kit_backend(
        crate::support::quote("quote-a", "A tip."),
        "quote-a",
        "node-7",
    );
    let quiz = kit_backend(crate::support::quiz("quiz-a", "Q?"), "quiz-a", "node-9");
    let kiada = start(config(&format!("{}/quote", quote.url()), &quiz.url())).await;
    let first = api(&kiada.url()).await;
    let second = api(&kiada.url()).await;
    assert_eq!(first["tip"]["connection"]["reused"], false, "{first}");
    assert_eq!(first["tip"]["connection"]["requestsOnConnection"], 1);
    assert_eq!(second["tip"]["connection"]["reused"], true, "{second}");
    assert_eq!(second["tip"]["connection"]["requestsOnConnection"], 2);
    assert_eq!(
        second["tip"]["remote"],
        format!("127.0.0.1:{}", quote.addr.port())
    );
    assert_eq!(second["tip"]["source"], "QUOTE_URL");
    // An IP address in the URL: nothing to resolve.
    assert!(second["tip"].get("resolved").is_none(), "{second}");
    // kiada's node is node-7 (crate::support::config).
    assert_eq!(second["tip"]["node"], "node-7");
    assert_eq!(second["tip"]["sameNode"], true);
    assert_eq!(second["question"]["node"], "node-9");
    assert_eq!(second["question"]["sameNode"], false);
    // Connected to 127.0.0.1, the pod says 10.244.9.9: a virtual IP in between.
    assert_eq!(second["tip"]["directToPod"], false);

    let page = text(format!("{}/text", kiada.url())).await;
    assert!(
        page.lines()
            .all(|l| l.chars().count() <= 80 || !l.starts_with("  ")),
        "an explanation line is wider than 80 columns:\n{page}"
    );
    let page = flat(&page);
    assert!(
        page.contains("reused connection, request 3 on it"),
        "{page}"
    );
    assert!(page.contains("pod on node node-7 (this node)"), "{page}");
    assert!(page.contains("pod on node node-9 (another node)"), "{page}");
}

#[tokio::test]
async fn without_pooling_every_call_is_a_new_connection_and_spreads() {
    let quotes: Vec<Running> = ["quote-a", "quote-b", "quote-c"]
        .iter()
        .map(|pod| kit_backend(crate::support::quote(pod, "A tip."), pod, "node-7"))
        .collect();
    let balancer =
        balancer::Balancer::start(0, quotes.iter().map(|q| loopback(q.addr)).collect()).unwrap();
    let quiz = kit_backend(crate::support::quiz("quiz-a", "Q?"), "quiz-a", "node-7");
    let mut config = config(
        &format!("http://127.0.0.1:{}/quote", balancer.addr().port()),
        &quiz.url(),
    );
    config.backend_pool_idle = Duration::ZERO;
    let kiada = start(config).await;
    let mut pods = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let page = api(&kiada.url()).await;
        assert_eq!(page["tip"]["connection"]["reused"], false, "{page}");
        assert_eq!(page["tip"]["connection"]["requestsOnConnection"], 1);
        pods.insert(page["tip"]["pod"].as_str().unwrap().to_owned());
    }
    assert_eq!(pods.len(), 3, "{pods:?}");

    // With pooling, the kept connection keeps reaching one pod, and its count rises.
    let mut config = crate::support::config(
        &format!("http://127.0.0.1:{}/quote", balancer.addr().port()),
        &quiz.url(),
    );
    config.backend_pool_idle = Duration::from_secs(5);
    let kiada = start(config).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let page = api(&kiada.url()).await;
        seen.push((
            page["tip"]["pod"].as_str().unwrap().to_owned(),
            page["tip"]["connection"]["requestsOnConnection"]
                .as_u64()
                .unwrap(),
        ));
    }
    assert!(seen.iter().all(|(pod, _)| *pod == seen[0].0), "{seen:?}");
    assert_eq!(
        seen.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
}

/// The page with its line wrapping undone.
fn flat(page: &str) -> String {
    page.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn loopback(addr: SocketAddr) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], addr.port()))
}

/// Resolves the given names to loopback, as cluster DNS resolves Service names.
struct Names(Vec<(&'static str, Vec<IpAddr>)>);

impl Resolve for Names {
    fn resolve(&self, name: Name) -> Resolving {
        let found = self
            .0
            .iter()
            .find(|(n, _)| *n == name.as_str())
            .map(|(_, a)| a.clone());
        Box::pin(async move {
            let addrs = found.ok_or("not found")?;
            Ok(Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0))) as Addrs)
        })
    }
}

#[tokio::test]
async fn each_discovery_path_is_named_and_names_show_what_they_resolved_to() {
    let quote = kit_backend(
        crate::support::quote("quote-a", "A tip."),
        "quote-a",
        "node-7",
    );
    let quiz = kit_backend(crate::support::quiz("quiz-a", "Q?"), "quiz-a", "node-7");
    let mut config = config("http://unused", "http://unused");
    config.quote = Discovered {
        url: format!("http://quote:{}/quote", quote.addr.port()),
        source: Source::DnsDefault,
    };
    config.quiz = Discovered {
        url: format!("http://quiz-headless:{}", quiz.addr.port()),
        source: Source::ServiceEnv,
    };
    let localhost: IpAddr = [127, 0, 0, 1].into();
    config.resolver = Some(Arc::new(Names(vec![
        ("quote", vec![localhost]),
        // Like a headless Service: several addresses, one of which answers.
        (
            "quiz-headless",
            vec![localhost, [127, 0, 0, 9].into(), [127, 0, 0, 10].into()],
        ),
    ])));
    let kiada = start(config).await;
    let page = api(&kiada.url()).await;
    assert_eq!(page["tip"]["source"], "dns-default");
    assert_eq!(page["tip"]["resolved"]["name"], "quote");
    assert_eq!(page["tip"]["resolved"]["addresses"][0], "127.0.0.1");
    assert_eq!(
        page["question"]["source"],
        "QUIZ_SERVICE_HOST/QUIZ_SERVICE_PORT"
    );
    assert_eq!(
        page["question"]["resolved"]["addresses"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{page}"
    );
    let text = flat(&text(format!("{}/text", kiada.url())).await);
    assert!(
        text.contains("via the DNS default: quote -> 127.0.0.1"),
        "{text}"
    );
    assert!(
        text.contains("via QUIZ_SERVICE_HOST/QUIZ_SERVICE_PORT: quiz-headless -> 127.0.0.1, 127.0.0.9, 127.0.0.10"),
        "{text}"
    );
    let html = fetch(format!("{}/html", kiada.url()), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("from QUIZ_SERVICE_HOST and QUIZ_SERVICE_PORT, injected by Kubernetes"),
        "{html}"
    );
    assert!(
        html.contains("quiz-headless resolved to 3 addresses"),
        "{html}"
    );
}

#[tokio::test]
async fn the_client_ip_is_classified_by_the_configured_ranges() {
    let s = healthy().await;
    let mut config = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    config.identity.node_ip = "127.0.0.2".into();
    config.networks = Networks {
        nodes: "127.0.1.0/24".parse::<Cidrs>().unwrap().0,
        pods: "127.0.2.0/24".parse::<Cidrs>().unwrap().0,
    };
    let kiada = start(config).await;
    for (from, class) in [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "thisNode"),
        ("127.0.1.5", "otherNode"),
        ("127.0.2.5", "pod"),
    ] {
        let client = reqwest::Client::builder()
            .local_address(from.parse::<IpAddr>().unwrap())
            .build()
            .unwrap();
        let page: Value = client
            .get(format!("http://127.0.0.1:{}/api", kiada.addr.port()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["request"]["clientIp"], from, "{page}");
        assert_eq!(page["request"]["clientIpClass"], class, "{page}");
    }
    // Without ranges, what can still be said.
    let page = text(format!("{}/text", s.kiada.url())).await;
    assert!(page.contains("Client IP 127.0.0.1 (loopback)"), "{page}");
}

#[tokio::test]
async fn the_clients_own_connection_is_counted_and_explained() {
    let s = healthy().await;
    let client = reqwest::Client::new();
    let url = format!("{}/text", s.kiada.url());
    let first = client.get(&url).send().await.unwrap();
    assert_eq!(first.headers()["x-connection-requests"], "1");
    assert!(flat(&first.text().await.unwrap()).contains("first request on your connection"));
    let second = client.get(&url).send().await.unwrap();
    assert_eq!(second.headers()["x-connection-requests"], "2");
    let page = flat(&second.text().await.unwrap());
    assert!(
        page.contains("Your connection has carried 2 requests"),
        "{page}"
    );
}

#[tokio::test]
async fn the_html_page_explains_without_script_and_never_shows_backend_markup() {
    let quote = kit_backend(
        crate::support::quote("quote-a", "A tip."),
        "quote-a",
        "<b>node</b>",
    );
    let quiz = kit_backend(crate::support::quiz("quiz-a", "Q?"), "quiz-a", "node-7");
    let kiada = start(config(&format!("{}/quote", quote.url()), &quiz.url())).await;
    let html = fetch(format!("{}/html", kiada.url()), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"<ul class="hop" id="quote-hop">"#),
        "{html}"
    );
    assert!(html.contains("a new connection"), "{html}");
    // A node name is a DNS subdomain: anything else is shown as invalid, never as markup.
    assert!(html.contains("The pod runs on node (invalid)."), "{html}");
    assert!(!html.contains("<b>node</b>"), "{html}");
    assert!(
        html.contains("(loopback)") || html.contains("loopback:"),
        "{html}"
    );
}

/// The text of every box of `role` in the drawing `id`, for `service`: (title, detail).
fn boxes(html: &str, id: &str, role: &str, service: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!(r#"<svg id="{id}""#))
        .expect("the drawing is on the page");
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    let marker = format!(r#"data-role="{role}" data-service="{service}""#);
    svg.match_indices(&marker)
        .map(|(at, _)| {
            let shape = &svg[at..at + svg[at..].find("</g>").unwrap()];
            let text = |class: &str| {
                let open = shape.find(&format!(r#"class="{class}""#)).unwrap();
                let from = open + shape[open..].find('>').unwrap() + 1;
                shape[from..from + shape[from..].find("</text>").unwrap()].to_owned()
            };
            (text("title"), text("detail"))
        })
        .collect()
}

#[tokio::test]
async fn the_html_page_draws_the_path_of_its_view_and_a_failure_where_it_stopped() {
    let quote = kit_backend(
        crate::support::quote("quote-a", "A tip."),
        "quote-a",
        "node-7",
    );
    let quiz = kit_backend(crate::support::quiz("quiz-a", "Q?"), "quiz-a", "node-8");
    let kiada = start(config(&format!("{}/quote", quote.url()), &quiz.url())).await;
    let html = fetch(format!("{}/html", kiada.url()), "text/html")
        .await
        .text()
        .await
        .unwrap();
    let api: Value = fetch(format!("{}/api", kiada.url()), "application/json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(boxes(&html, "path", "client", "").len(), 1, "{html}");
    assert_eq!(boxes(&html, "path", "kiada", "")[0].0, "kiada-test");
    for (service, json) in [("quote", &api["tip"]), ("quiz", &api["question"])] {
        let pod = &boxes(&html, "path", "pod", service)[0];
        assert_eq!(pod.0, json["pod"].as_str().unwrap(), "{service}");
        let dialled = &boxes(&html, "path", "dialled", service)[0];
        assert_eq!(dialled.0, json["remote"].as_str().unwrap(), "{service}");
        assert_eq!(boxes(&html, "path", "name", service)[0].0, "an IP address");
    }
    // node-7 is this kiada's node; node-8 is not.
    assert_eq!(
        boxes(&html, "path", "pod", "quote")[0].1,
        "node-7, same node"
    );
    assert_eq!(
        boxes(&html, "path", "pod", "quiz")[0].1,
        "node-8, other node"
    );

    // A quiz nobody listens for: the row stops at the failure, with its kind.
    let down = start(config(
        &format!("{}/quote", quote.url()),
        &format!("http://127.0.0.1:{}", closed_port()),
    ))
    .await;
    let html = fetch(format!("{}/html", down.url()), "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        boxes(&html, "path", "failure", "quiz"),
        [("✗ failed".to_owned(), "refused".to_owned())],
        "{html}"
    );
    assert!(boxes(&html, "path", "pod", "quiz").is_empty());
    assert_eq!(boxes(&html, "path", "pod", "quote").len(), 1);
    // Text and JSON pages stay as they were: no drawing.
    let text = text(format!("{}/text", down.url())).await;
    assert!(!text.contains("<svg"), "{text}");
}
