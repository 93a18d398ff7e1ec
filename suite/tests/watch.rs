//! The readiness and rollout experiments without a cluster: a watch through the local balancer
//! in front of three quote instances, while one is disabled or stopped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use balancer::{Balancer, Probe};
use kit::Running;
use serde_json::Value;

/// A Server-Sent Events body as (event, JSON data) pairs.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name.to_owned(), serde_json::from_str(data).unwrap())
        })
        .collect()
}

fn of_kind<'a>(events: &'a [(String, Value)], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, d)| d)
        .collect()
}

/// Starts a watch as the lab page does; the instant is about the watch's time zero.
async fn watch(kiada: &str, query: &str) -> (reqwest::Response, Instant) {
    let res = reqwest::Client::new()
        .get(format!("{kiada}/lab/watch?{query}"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    (res, Instant::now())
}

#[tokio::test]
async fn a_disabled_instance_leaves_the_watch_within_a_probe_period() {
    let data = tempfile::tempdir().unwrap();
    // In turn, so that quote-2's last call before the probe is certain to be near it: this
    // test is about the probe's timing, not about the balancer's choice.
    let suite = suite::start(&suite::Config {
        balance: balancer::Mode::RoundRobin,
        shutdown_delay: Duration::from_millis(100),
        ..suite::Config::local(data.path())
    })
    .await
    .unwrap();
    let (res, zero) = watch(
        &suite.kiada_url(),
        "service=quote&interval_ms=100&duration_s=6",
    )
    .await;
    let body = tokio::spawn(res.text());
    // A fixed wait on purpose: the experiment's timeline, quote-2 disabled 2 s into a 6 s
    // watch, the times asserted below measured against it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let quote_2 = suite.instance("quote-2").expect("quote-2 runs");
    let disabled = reqwest::Client::new()
        .post(format!("{}/healthz/ready/disable", quote_2.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    let disabled_at = zero.elapsed().as_secs_f64();
    let events = events(&body.await.unwrap().unwrap());

    let new_pods: Vec<&str> = of_kind(&events, "transition")
        .into_iter()
        .filter(|t| t["kind"] == "new-pod")
        .map(|t| t["pod"].as_str().unwrap())
        .collect();
    assert_eq!(new_pods.len(), 3, "all three seen: {new_pods:?}");
    let last = of_kind(&events, "call")
        .into_iter()
        .filter(|c| c["pod"] == "quote-2")
        .map(|c| c["t"].as_f64().unwrap())
        .fold(0.0, f64::max);
    // Out at the next probe: one period (1 s), and a little for the timing of this test.
    assert!(
        last > disabled_at - 0.5 && last < disabled_at + 1.3,
        "quote-2 last answered at {last} s, disabled at {disabled_at} s"
    );
    let gone = of_kind(&events, "transition")
        .into_iter()
        .find(|t| t["kind"] == "gone" && t["pod"] == "quote-2");
    assert!(gone.is_some(), "{events:?}");

    let summary = of_kind(&events, "summary")[0];
    assert_eq!(
        summary["failed"], 0,
        "a pod taken out by readiness costs no call"
    );
    let stopped = summary["stopped"].as_array().unwrap();
    assert_eq!(stopped.len(), 1, "{summary}");
    assert_eq!(stopped[0]["pod"], "quote-2");
    assert_eq!(stopped[0]["lastS"].as_f64().unwrap(), last);
    // Calls that reached it between the disabling and the probe said so.
    if let Some(since) = stopped[0]["notReadySinceS"].as_f64() {
        assert_eq!(stopped[0]["state"], "disabled");
        assert!(since >= disabled_at - 0.5, "{since}");
    }
    for pod in ["quote-1", "quote-3"] {
        assert!(
            summary["pods"][pod]["lastS"].as_f64().unwrap() > 5.5,
            "{pod}"
        );
    }
    suite.stop().await;
}

/// Three quote instances that stop at once when told (no shutdown delay) behind a balancer
/// whose probe needs three failures, as a Service whose pods vanish before readiness says so.
async fn abrupt_instances() -> (Vec<Running>, Balancer, Running) {
    let mut quotes = Vec::new();
    for i in 1..=3 {
        let app = quote_service::build(quote_service::Config {
            server: kit::ServerConfig {
                shutdown_delay: Duration::ZERO,
                ..kit::ServerConfig::ephemeral()
            },
            ..quote_service::Config::local(&format!("quote-{i}"))
        })
        .await
        .unwrap();
        quotes.push(app.spawn());
    }
    let addrs: Vec<SocketAddr> = quotes
        .iter()
        .map(|q| ([127, 0, 0, 1], q.addr.port()).into())
        .collect();
    let probe = Probe {
        period: Duration::from_millis(500),
        failure_threshold: 3,
        ..Probe::default()
    };
    let balancer = Balancer::start_probed(0, addrs, probe).unwrap();
    let kiada = kiada::build(kiada::Config::local(
        "kiada-1",
        &format!("{}/quote", balancer.url()),
        "http://127.0.0.1:1",
    ))
    .await
    .unwrap()
    .spawn();
    (quotes, balancer, kiada)
}

#[tokio::test]
async fn an_instance_stopped_without_a_shutdown_delay_costs_failed_calls_until_its_probe_fails() {
    let (mut quotes, _balancer, kiada) = abrupt_instances().await;
    let (res, zero) = watch(&kiada.url(), "interval_ms=100&duration_s=5").await;
    let body = tokio::spawn(res.text());
    // A fixed wait on purpose: the experiment's timeline, quote-3 stopped 1.5 s into a 5 s
    // watch, the times asserted below measured against it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopped_at = zero.elapsed().as_secs_f64();
    quotes.remove(2).stop().await.unwrap();
    let events = events(&body.await.unwrap().unwrap());

    let summary = of_kind(&events, "summary")[0];
    let failed = summary["failed"].as_u64().unwrap();
    // Round robin sends every third new connection to quote-3 until three probes 0.5 s apart
    // have failed: about 1 to 1.5 s of calls, a third of them.
    assert!((2..=8).contains(&failed), "{summary}");
    let failures = summary["failures"].as_object().unwrap();
    let by_kind: u64 = failures
        .values()
        .map(|f| f["count"].as_u64().unwrap())
        .sum();
    assert_eq!(by_kind, failed, "{failures:?}");
    for (kind, f) in failures {
        assert!(["closed", "refused"].contains(&kind.as_str()), "{kind}");
        assert!(f["firstS"].as_f64().unwrap() >= stopped_at - 0.2, "{f}");
        assert!(f["lastS"].as_f64().unwrap() < stopped_at + 2.0, "{f}");
    }
    let transitions = of_kind(&events, "transition");
    let first = transitions
        .iter()
        .position(|t| t["kind"] == "failing")
        .expect("the first failure is marked");
    assert!(
        transitions[first]["text"]
            .as_str()
            .unwrap()
            .starts_with("first failure: "),
        "{transitions:?}"
    );
    let recovered = transitions
        .iter()
        .rposition(|t| t["kind"] == "recovered")
        .expect("the recovery is marked");
    assert!(recovered > first);
    let stopped = summary["stopped"].as_array().unwrap();
    assert_eq!(stopped.len(), 1, "{summary}");
    assert_eq!(stopped[0]["pod"], "quote-3");
    // After the probe took it out, the rest of the watch had no failure.
    let run = &summary["longestRun"];
    assert!(run["toS"].as_f64().unwrap() > 4.5, "{run}");
}
