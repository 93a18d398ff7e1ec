//! The little cluster through the real suite binary: three quote pods from the first start, a
//! Service with no ready pod refusing, kube-proxy's random choice, every pod's state at a
//! glance, admin ports that stay put, and `--reset`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

#[tokio::test]
async fn the_first_start_spreads_over_three_quote_pods() {
    let data = tempfile::tempdir().unwrap();
    let suite = Suite::start(data.path(), &[]);
    let spread = json(&format!(
        "{}/lab/spread?service=quote&n=30&connection=new",
        suite.kiada
    ))
    .await;
    let pods: Vec<&String> = spread["pods"].as_object().unwrap().keys().collect();
    assert_eq!(pods, ["quote-1", "quote-2", "quote-3"], "{spread}");
    assert_eq!(spread["failed"], 0);
    // The lab page has the pods section, which its script fills from /lab/pods.
    let page = client()
        .get(format!("{}/lab", suite.kiada))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"id="pods-table""#), "{page}");
    assert!(page.contains(r#"data-rollout="quote""#));
    // The request lines went to the data directory, not the terminal.
    let log = std::fs::read_to_string(data.path().join("access.log")).unwrap();
    assert!(log.contains("path=\"/lab/spread\""), "{log}");
    assert!(
        !suite
            .lines()
            .iter()
            .any(|l| l.contains("path=\"/lab/spread\"")),
        "{:#?}",
        suite.lines()
    );
}

#[tokio::test]
async fn a_service_whose_last_pod_is_disabled_refuses_connections() {
    let data = tempfile::tempdir().unwrap();
    let suite = Suite::start(data.path(), &["--quote-replicas", "1"]);
    let quote_port = suite.port("quote").await;
    let admin = suite.pod("quote-1").await.unwrap()["admin"]
        .as_str()
        .unwrap()
        .to_owned();
    let disabled = post(&format!("{admin}/healthz/ready/disable")).await;
    assert_eq!(disabled.status(), 200);
    until(
        "quote-1 is out of its Service",
        Duration::from_secs(5),
        || async { suite.pod("quote-1").await.unwrap()["endpoint"] == false },
    )
    .await;
    // Refused, as kube-proxy's REJECT rule refuses: not accepted and closed.
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", quote_port))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // And the watch says so: every call refused.
    let watch = watch(&suite.kiada, "service=quote&interval_ms=100&duration_s=1").await;
    let events = watch.await.unwrap();
    let summary = of_kind(&events, "summary")[0];
    let failures: Vec<&String> = summary["failures"].as_object().unwrap().keys().collect();
    assert_eq!(failures, ["refused"], "{summary}");
    assert!(summary["failed"].as_u64().unwrap() >= 5, "{summary}");

    post(&format!("{admin}/healthz/ready/enable")).await;
    until("quote-1 is back", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", quote_port))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn each_new_connection_gets_a_ready_pod_at_random() {
    let data = tempfile::tempdir().unwrap();
    let suite = Suite::start(data.path(), &[]);
    let quote = format!("http://127.0.0.1:{}/quote", suite.port("quote").await);
    let mut seen = Vec::new();
    for _ in 0..60 {
        let res = client()
            .get(&quote)
            .header("connection", "close")
            .send()
            .await
            .unwrap();
        seen.push(res.headers()["x-pod-name"].to_str().unwrap().to_owned());
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for pod in &seen {
        *counts.entry(pod).or_default() += 1;
    }
    // Each at a third: fewer than 5 of 60 has a probability below one in a million.
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n >= 5), "{counts:?}");
    // Not in turn: round robin repeats a cycle of three; chance does so this long once in 3^57.
    assert!(!seen.windows(4).all(|w| w[0] == w[3]), "{seen:?}");

    // --balance round-robin: in turn, as IPVS's default.
    let data = tempfile::tempdir().unwrap();
    let turns = Suite::start(data.path(), &["--balance", "round-robin"]);
    let quote = format!("http://127.0.0.1:{}/quote", turns.port("quote").await);
    let mut seen = Vec::new();
    for _ in 0..9 {
        let res = client()
            .get(&quote)
            .header("connection", "close")
            .send()
            .await
            .unwrap();
        seen.push(res.headers()["x-pod-name"].to_str().unwrap().to_owned());
    }
    assert!(seen.windows(4).all(|w| w[0] == w[3]), "{seen:?}");
}

#[tokio::test]
async fn the_pods_say_ready_disabled_fault_and_draining_as_they_change() {
    let data = tempfile::tempdir().unwrap();
    let suite = Suite::start(data.path(), &[]);
    let pods = suite.pods().await;
    let names: Vec<&str> = pods["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["kiada-1", "quiz-1", "quote-1", "quote-2", "quote-3"]
    );
    for pod in pods["pods"].as_array().unwrap() {
        assert_eq!(pod["state"], "ready", "{pod}");
        assert_eq!(pod["endpoint"], true, "{pod}");
    }
    let admin = |pod: &str| {
        pods["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == pod)
            .unwrap()["admin"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Calls through the Service are counted per pod; /lab/pods is served by kiada itself.
    json(&format!("{}/lab/spread?service=quote&n=9", suite.kiada)).await;
    let after = suite.pods().await;
    let served: u64 = after["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["service"] == "quote")
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(served, 9, "{after}");
    let kiada = suite.pod("kiada-1").await.unwrap();
    assert!(
        kiada["open"].as_u64().unwrap() >= 1,
        "this very request: {kiada}"
    );

    post(&format!("{}/healthz/ready/disable", admin("quote-2"))).await;
    until(
        "quote-2 says disabled and is out",
        Duration::from_secs(5),
        || async {
            let p = suite.pod("quote-2").await.unwrap();
            p["state"] == "disabled" && p["endpoint"] == false
        },
    )
    .await;

    // A fault drill: 500s while readiness stays green, so it stays in the Service.
    post(&format!("{}/fault/enable", admin("quote-3"))).await;
    let p = suite.pod("quote-3").await.unwrap();
    assert_eq!(p["state"], "fault", "{p}");
    assert_eq!(p["endpoint"], true, "{p}");

    // Deleted: draining through its shutdown delay, while its Deployment starts another.
    let deleted = client()
        .delete(format!("{}/lab/pods/quote-1", suite.kiada))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    assert!(deleted.text().await.unwrap().contains("starts quote-4"));
    let p = suite.pod("quote-1").await.unwrap();
    assert_eq!(p["state"], "draining", "{p}");
    until("quote-4 is ready", Duration::from_secs(5), || async {
        suite
            .pod("quote-4")
            .await
            .is_some_and(|p| p["state"] == "ready" && p["endpoint"] == true)
    })
    .await;
    until("quote-1 is gone", Duration::from_secs(10), || async {
        suite.pod("quote-1").await.is_none()
    })
    .await;

    // Bad input gets a clear 4xx.
    let missing = client()
        .delete(format!("{}/lab/pods/quote-99", suite.kiada))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let unknown = post(&format!("{}/lab/rollout?service=nginx", suite.kiada)).await;
    assert_eq!(unknown.status(), 400);
    assert!(unknown.text().await.unwrap().contains("quote|quiz|kiada"));
    let cross = client()
        .post(format!("{}/lab/rollout?service=quote", suite.kiada))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
}

/// Ports from `from` to `from + 59` that nothing listens on now, below Linux's range of
/// ephemeral ports (32768 and up), where no other test's free port can be taken meanwhile.
fn free_block() -> u16 {
    'next: for from in (12000..32000).step_by(600).map(|p| p + fastrand_offset()) {
        for port in from..from + 60 {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue 'next;
            }
        }
        return from;
    }
    panic!("no block of 60 free ports");
}

/// A different block per test process, so that two runs at once do not pick the same one.
fn fastrand_offset() -> u16 {
    (std::process::id() % 500) as u16
}

#[tokio::test]
async fn admin_ports_are_fixed_by_pod_and_the_same_at_every_start() {
    let from = free_block();
    let from_s = from.to_string();
    let data = tempfile::tempdir().unwrap();
    let admins = |pods: serde_json::Value| -> BTreeMap<String, String> {
        pods["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["admin"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let expected: BTreeMap<String, String> = [
        ("kiada-1", 0),
        ("quiz-1", 10),
        ("quote-1", 20),
        ("quote-2", 21),
        ("quote-3", 22),
    ]
    .into_iter()
    .map(|(n, offset)| (n.to_owned(), format!("http://127.0.0.1:{}", from + offset)))
    .collect();
    for _ in 0..2 {
        let suite = Suite::start(data.path(), &["--admin-ports-from", &from_s]);
        assert_eq!(admins(suite.pods().await), expected);
        let banner = suite.lines().join("\n");
        assert!(
            banner.contains(&format!("quote-2   admin http://127.0.0.1:{}", from + 21)),
            "{banner}"
        );
        let ready = client()
            .get(format!("http://127.0.0.1:{}/healthz/ready", from + 21))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        assert_eq!(suite.stop().code(), Some(0));
    }
}

#[tokio::test]
async fn reset_empties_the_quiz_answers_and_only_then() {
    let data = tempfile::tempdir().unwrap();
    let answered = |suite: &Suite| {
        let kiada = suite.kiada.clone();
        async move {
            let res = client()
                .post(format!("{kiada}/question/1/answers/0"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    };
    let recorded = |suite: &Suite| {
        let kiada = suite.kiada.clone();
        async move {
            let suite_quiz = json(&format!("{kiada}/lab/pods")).await;
            let port = suite_quiz["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == "quiz")
                .unwrap()["port"]
                .as_u64()
                .unwrap();
            let stats = json(&format!("http://127.0.0.1:{port}/stats")).await;
            stats["answerCount"].as_u64().unwrap()
        }
    };
    let suite = Suite::start(data.path(), &[]);
    answered(&suite).await;
    answered(&suite).await;
    assert_eq!(recorded(&suite).await, 2);
    suite.stop();

    // Kept without --reset.
    let suite = Suite::start(data.path(), &[]);
    assert_eq!(recorded(&suite).await, 2);
    suite.stop();

    let suite = Suite::start(data.path(), &["--reset"]);
    assert_eq!(recorded(&suite).await, 0);
    assert!(
        suite
            .lines()
            .iter()
            .any(|l| l.contains("quiz answers emptied")),
        "{:#?}",
        suite.lines()
    );
    answered(&suite).await;
    assert_eq!(recorded(&suite).await, 1);
}

/// A client that opens a new connection for every request, as a reconnecting browser does.
fn new_connection_each() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// `--quiz-replicas` and `--kiada-replicas`: each replica its own pod behind its Service's
/// balancer, as the manifests run them. New connections to kiada's port reach both kiada pods
/// (a browser that reconnects sees another kiada pod); answers through quiz's reach both quiz
/// pods and land in the one database, as replicas of one Deployment share one store.
#[tokio::test]
async fn quiz_and_kiada_replicas_answer_behind_their_services() {
    let data = tempfile::tempdir().unwrap();
    let suite = Suite::start(
        data.path(),
        &["--quiz-replicas", "2", "--kiada-replicas", "2"],
    );
    let pods = suite.pods().await;
    let mut by_service: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pod in pods["pods"].as_array().unwrap() {
        assert_eq!(pod["state"], "ready", "{pod}");
        by_service
            .entry(pod["service"].as_str().unwrap().to_owned())
            .or_default()
            .push(pod["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(by_service["kiada"], ["kiada-1", "kiada-2"], "{pods}");
    assert_eq!(by_service["quiz"], ["quiz-1", "quiz-2"], "{pods}");
    assert_eq!(by_service["quote"].len(), 3, "{pods}");

    // A new connection per request, as a reconnecting browser: the kiada Service picks a pod
    // each time, and the page names the pod that served it.
    let mut kiada_pods = BTreeMap::<String, u32>::new();
    for _ in 0..40 {
        let page = new_connection_each()
            .get(format!("{}/api", suite.kiada))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let pod = page.headers()["x-pod-name"].to_str().unwrap().to_owned();
        *kiada_pods.entry(pod).or_default() += 1;
    }
    let answered: Vec<&String> = kiada_pods.keys().collect();
    assert_eq!(answered, ["kiada-1", "kiada-2"], "{kiada_pods:?}");

    let quiz_port = suite.port("quiz").await;
    let mut quiz_pods = BTreeMap::<String, u32>::new();
    for _ in 0..40 {
        let res = new_connection_each()
            .post(format!("http://127.0.0.1:{quiz_port}/questions/1/answers"))
            .json(&serde_json::json!({"questionId": 1, "answerIndex": 0}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let pod = res.headers()["x-pod-name"].to_str().unwrap().to_owned();
        *quiz_pods.entry(pod).or_default() += 1;
    }
    let answered: Vec<&String> = quiz_pods.keys().collect();
    assert_eq!(answered, ["quiz-1", "quiz-2"], "{quiz_pods:?}");
    // Every answer acknowledged is in the one database, whichever pod is asked.
    let mut asked = BTreeMap::<String, u32>::new();
    for _ in 0..20 {
        let res = new_connection_each()
            .get(format!("http://127.0.0.1:{quiz_port}/stats"))
            .send()
            .await
            .unwrap();
        let pod = res.headers()["x-pod-name"].to_str().unwrap().to_owned();
        let stats: serde_json::Value = res.json().await.unwrap();
        assert_eq!(stats["answerCount"], 40, "{pod}: {stats}");
        *asked.entry(pod).or_default() += 1;
    }
    assert_eq!(asked.len(), 2, "both quiz pods asked: {asked:?}");
}
