//! The spread lab over three stand-in quote pods behind the shared per-connection balancer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use axum::Router;
use axum::routing::get;
use balancer::Balancer;
use serde_json::Value;

struct Lab {
    _pods: Vec<StandIn>,
    _balancer: Balancer,
    kiada: kit::Running,
}

async fn lab(pods: Vec<Router>) -> Lab {
    let mut stand_ins = Vec::new();
    for pod in pods {
        stand_ins.push(serve(pod).await);
    }
    let addrs = stand_ins
        .iter()
        .map(|s| ([127, 0, 0, 1], s.port).into())
        .collect();
    let balancer = Balancer::start(0, addrs).unwrap();
    let quiz = serve(quiz("quiz-a", "Q?")).await;
    let kiada = start(config(&format!("{}/quote", balancer.url()), &quiz.url)).await;
    stand_ins.push(quiz);
    Lab {
        _pods: stand_ins,
        _balancer: balancer,
        kiada,
    }
}

async fn three_pods() -> Lab {
    lab(vec![
        quote("quote-1", "one"),
        quote("quote-2", "two"),
        quote("quote-3", "three"),
    ])
    .await
}

#[tokio::test]
async fn new_connections_spread_over_every_pod_and_one_reused_connection_does_not() {
    let lab = three_pods().await;
    let url = lab.kiada.url();

    let spread: Value = fetch(
        format!("{url}/lab/spread?service=quote&n=30&connection=new"),
        "application/json",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(spread["calls"], 30);
    assert_eq!(spread["failed"], 0);
    // Round robin per connection: ten each.
    for pod in ["quote-1", "quote-2", "quote-3"] {
        assert_eq!(spread["pods"][pod], 10, "{spread}");
    }

    let reused: Value = fetch(
        format!("{url}/lab/spread?service=quote&n=30&connection=reuse"),
        "application/json",
    )
    .await
    .json()
    .await
    .unwrap();
    let pods = reused["pods"].as_object().unwrap();
    assert_eq!(pods.len(), 1, "one connection, one pod: {reused}");
    assert_eq!(pods.values().next().unwrap(), 30);

    let text = text(format!("{url}/lab/spread?n=6")).await;
    assert!(text.starts_with("6 calls to quote ("), "{text}");
    assert!(text.contains("a new connection each"), "{text}");
    assert!(
        text.contains("quote-1") && text.contains("quote-2") && text.contains("quote-3"),
        "{text}"
    );
    assert!(
        text.contains("3 pod(s) answered; 0 call(s) failed."),
        "{text}"
    );
}

#[tokio::test]
async fn human_paced_page_loads_reach_different_pods() {
    // kiada keeps idle backend connections for a short while only; a person reloading every
    // few seconds gets a new connection, and so possibly another pod, each time.
    let lab = three_pods().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let page: Value = fetch(format!("{}/api", lab.kiada.url()), "*/*")
            .await
            .json()
            .await
            .unwrap();
        seen.insert(page["tip"]["pod"].as_str().unwrap().to_owned());
        // Past the 1 s idle timeout of the default configuration.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[tokio::test]
async fn the_quiz_service_can_be_sampled_too_and_failures_are_counted() {
    let lab = lab(vec![quote("quote-1", "one")]).await;
    let spread: Value = fetch(
        format!("{}/lab/spread?service=quiz&n=4", lab.kiada.url()),
        "application/json",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(spread["pods"]["quiz-a"], 4, "{spread}");

    let down = start(config(
        &format!("http://127.0.0.1:{}/quote", closed_port()),
        "http://127.0.0.1:1",
    ))
    .await;
    let text = text(format!("{}/lab/spread?n=3", down.url())).await;
    assert!(
        text.contains("0 pod(s) answered; 3 call(s) failed."),
        "{text}"
    );
    assert!(text.contains("Last error: connection refused"), "{text}");
}

#[tokio::test]
async fn bad_parameters_are_400_and_a_second_run_at_once_is_429() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let slow = Router::new().route(
        "/quote",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                // Slow on purpose: a run of ten takes a second, time for a second run to ask.
                tokio::time::sleep(Duration::from_millis(100)).await;
                ([("x-pod-name", "slow-pod")], "slow\n")
            }
        }),
    );
    let lab = lab(vec![slow]).await;
    let url = lab.kiada.url();
    for query in ["service=db", "n=0", "n=101", "n=ten", "connection=maybe"] {
        let res = fetch(format!("{url}/lab/spread?{query}"), "*/*").await;
        assert_eq!(res.status(), 400, "{query}");
        assert!(
            res.text().await.unwrap().contains("Usage: /lab/spread?"),
            "{query}"
        );
    }

    let first = tokio::spawn(fetch(format!("{url}/lab/spread?n=10"), "*/*"));
    assert!(
        eventually(Duration::from_secs(5), || async {
            calls.load(Ordering::SeqCst) > 0
        })
        .await,
        "the first run never called the pod"
    );
    let second = fetch(format!("{url}/lab/spread?n=1"), "*/*").await;
    assert_eq!(second.status(), 429);
    assert_eq!(first.await.unwrap().status(), 200);
    // Free again once the first run ended.
    assert_eq!(
        fetch(format!("{url}/lab/spread?n=1"), "*/*").await.status(),
        200
    );
}

#[tokio::test]
async fn the_lab_page_draws_the_spread_per_pod_on_the_server() {
    let lab = three_pods().await;
    let url = lab.kiada.url();
    let page = fetch(format!("{url}/lab"), "text/html").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text().await.unwrap();
    for form in [
        r#"action="lab" id="spread-form""#,
        r#"action="lab/watch" id="watch-form""#,
        r#"action="lab/dns" id="dns-form""#,
    ] {
        assert!(html.contains(form), "{form}");
    }
    assert!(
        html.contains("<noscript>"),
        "says the timeline needs JavaScript"
    );
    assert!(
        !html.contains("spread-chart"),
        "nothing runs before it is asked"
    );
    assert!(!html.contains("style="), "no inline styles under the CSP");
    // The pods section is the local suite's, which serves /lab/pods; a pod has none.
    assert!(!html.contains(r#"id="pods-table""#));

    let html = fetch(
        format!("{url}/lab?run=spread&service=quote&n=30"),
        "text/html",
    )
    .await
    .text()
    .await
    .unwrap();
    assert_eq!(
        html.matches(r#"<g class="spread-row""#).count(),
        3,
        "{html}"
    );
    for pod in ["quote-1", "quote-2", "quote-3"] {
        assert!(html.contains(&format!(r#"data-pod="{pod}""#)), "{pod}");
        // The pod's colour, the same function everywhere.
        assert!(html.contains(&kiada::view::colour::of(pod)), "{pod}");
    }
    // Ten each over new connections; all thirty to one pod over the reused one.
    assert_eq!(html.matches(": 10 of 30 over new connections").count(), 3);
    assert_eq!(
        html.matches(": 30 of 30 over one reused connection")
            .count(),
        1
    );
    assert!(html.contains("3 pod(s) answered"), "{html}");

    for (query, status) in [("run=spread&n=0", 400), ("run=other", 400)] {
        let res = fetch(format!("{url}/lab?{query}"), "text/html").await;
        assert_eq!(res.status(), status, "{query}");
        assert!(res.text().await.unwrap().contains(r#"class="error""#));
    }
}

#[tokio::test]
async fn pod_names_from_the_network_never_reach_the_lab_page_as_markup() {
    let lab = lab(vec![quote("<b>pod</b>", "tip")]).await;
    let html = fetch(
        format!("{}/lab?run=spread&n=2", lab.kiada.url()),
        "text/html",
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(!html.contains("<b>pod</b>"), "{html}");
    // Not a pod name at all (a DNS subdomain has no `<`): shown as invalid, never as markup.
    assert!(html.contains("(invalid)"), "{html}");
}

/// Names for kiada's backend calls: `quote` the balancer (a ClusterIP's stand-in),
/// `quote-headless` every pod's own address, as a headless Service answers.
struct Names(std::collections::HashMap<String, Vec<std::net::SocketAddr>>);

impl reqwest::dns::Resolve for Names {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let found = self.0.get(name.as_str()).cloned();
        Box::pin(async move {
            let addrs = found.ok_or("no such name")?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Three pods behind the balancer, reached by the names `quote` and `quote-headless`.
async fn named_lab() -> (Vec<StandIn>, Balancer, kit::Running) {
    let mut pods = Vec::new();
    for name in ["quote-a", "quote-b", "quote-c"] {
        pods.push(serve(quote(name, "A tip.")).await);
    }
    let addrs: Vec<std::net::SocketAddr> = pods
        .iter()
        .map(|s| ([127, 0, 0, 1], s.port).into())
        .collect();
    let balancer = Balancer::start(0, addrs.clone()).unwrap();
    let quiz = serve(quiz("quiz-a", "Q?")).await;
    let mut config = config(
        &format!("http://quote:{}/quote", balancer.addr().port()),
        &quiz.url,
    );
    config.resolver = Some(Arc::new(Names(
        [
            ("quote".to_owned(), vec![([127, 0, 0, 1], 0).into()]),
            ("quote-headless".to_owned(), addrs),
        ]
        .into(),
    )));
    let kiada = start(config).await;
    pods.push(quiz);
    (pods, balancer, kiada)
}

async fn spread_json(kiada: &kit::Running, query: &str) -> Value {
    fetch(
        format!("{}/lab/spread?{query}", kiada.url()),
        "application/json",
    )
    .await
    .json()
    .await
    .unwrap()
}

#[tokio::test]
async fn one_http2_connection_reaches_one_pod_and_client_side_balancing_reaches_all() {
    let (_pods, _balancer, kiada) = named_lab().await;
    // Over new connections the Service's stand-in spreads them.
    let new = spread_json(&kiada, "n=12&connection=new").await;
    assert_eq!(new["pods"].as_object().unwrap().len(), 3, "{new}");
    // HTTP/2: twelve streams on one connection, so one pod answers them all.
    let h2 = spread_json(&kiada, "n=12&connection=h2").await;
    assert_eq!(h2["connection"], "h2");
    assert_eq!(h2["failed"], 0, "{h2}");
    let pods = h2["pods"].as_object().unwrap();
    assert_eq!(pods.len(), 1, "{h2}");
    assert_eq!(pods.values().next().unwrap(), 12, "{h2}");
    // Balancing in the client over the headless name's addresses: every pod, in turn.
    let headless = spread_json(&kiada, "n=12&connection=headless").await;
    assert_eq!(headless["failed"], 0, "{headless}");
    assert_eq!(
        headless["addresses"].as_array().unwrap().len(),
        3,
        "{headless}"
    );
    for pod in ["quote-a", "quote-b", "quote-c"] {
        assert_eq!(headless["pods"][pod], 4, "{headless}");
    }
    // The text says why.
    let text = text(format!("{}/lab/spread?n=6&connection=h2", kiada.url())).await;
    assert!(
        text.contains("as HTTP/2 streams over one\nconnection"),
        "{text}"
    );
    assert!(text.contains("Balance in the client"), "{text}");
    // A watch over one HTTP/2 connection stays on one pod too.
    let watch = text_of_watch(&kiada, "interval_ms=100&duration_s=1&connection=h2").await;
    assert!(
        watch.contains("HTTP/2 streams over one connection"),
        "{watch}"
    );
    assert_eq!(
        watch.matches("answered for the first time").count(),
        1,
        "{watch}"
    );
}

async fn text_of_watch(kiada: &kit::Running, query: &str) -> String {
    text(format!("{}/lab/watch?{query}", kiada.url())).await
}

#[tokio::test]
async fn client_side_balancing_without_a_headless_name_says_so() {
    let lab = three_pods().await;
    // The backend URL holds an address: nothing to resolve.
    let res = spread_json(&lab.kiada, "n=3&connection=headless").await;
    assert_eq!(res["failed"], 3, "{res}");
    assert!(
        res["lastError"]
            .as_str()
            .unwrap()
            .contains("no headless name"),
        "{res}"
    );
    let bad = fetch(
        format!("{}/lab/spread?connection=h3", lab.kiada.url()),
        "*/*",
    )
    .await;
    assert_eq!(bad.status(), 400);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("new, reuse, h2 or headless")
    );
}

#[tokio::test]
async fn the_lab_page_draws_where_the_spread_runs_connections_went() {
    let lab = three_pods().await;
    let html = fetch(
        format!("{}/lab?run=spread&n=12", lab.kiada.url()),
        "text/html",
    )
    .await
    .text()
    .await
    .unwrap();
    let start = html
        .find(r#"<svg id="spread-path""#)
        .expect("the drawing is there");
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    assert_eq!(svg.matches(r#"data-role="pod""#).count(), 3, "{svg}");
    assert_eq!(svg.matches(r#"data-role="kiada""#).count(), 1, "{svg}");
    // Every pod's box says how many calls it got each way; twelve new ones spread 4, 4, 4
    // over round robin, and the twelve reused ones all went to one pod.
    assert_eq!(svg.matches(">4 new, ").count(), 3, "{svg}");
    assert_eq!(svg.matches(", 12 reused<").count(), 1, "{svg}");
    assert!(
        svg.contains(r#"class="note" x="#) && svg.contains(">12 + 12 calls<"),
        "{svg}"
    );
}
