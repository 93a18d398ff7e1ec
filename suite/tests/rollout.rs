//! The rollout experiment without a cluster, through the real suite binary: `POST
//! /lab/rollout?service=quote` under a watch replaces the three quote pods one by one; with the
//! suite's shutdown delay no call fails, and without one (`--shutdown-delay 0`) some do.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// One rollout at a time on this machine: each is a timeline of its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Rolls quote out under a watch; returns the watch's events and the pods after.
async fn rollout_under_watch(args: &[&str]) -> (Vec<(String, Value)>, Value) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let data = tempfile::tempdir().unwrap();
    let suite = Suite::start(data.path(), args);
    let watch = watch(&suite.kiada, "service=quote&interval_ms=100&duration_s=10").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = post(&format!("{}/lab/rollout?service=quote", suite.kiada)).await;
    assert_eq!(started.status(), 202);
    // One rollout of a Service at a time.
    let again = post(&format!("{}/lab/rollout?service=quote", suite.kiada)).await;
    assert_eq!(again.status(), 409);
    until(
        "the rollout is complete",
        Duration::from_secs(8),
        || async {
            let pods = suite.pods().await;
            let quotes: Vec<&str> = pods["pods"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["service"] == "quote")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            quotes == ["quote-4", "quote-5", "quote-6"]
        },
    )
    .await;
    let events = watch.await.unwrap();
    (events, suite.pods().await)
}

fn pods_seen(events: &[(String, Value)], kind: &str) -> Vec<String> {
    let mut pods: Vec<String> = of_kind(events, "transition")
        .into_iter()
        .filter(|t| t["kind"] == kind)
        .map(|t| t["pod"].as_str().unwrap().to_owned())
        .collect();
    pods.sort();
    pods
}

#[tokio::test]
async fn a_rollout_under_a_watch_replaces_every_pod_without_a_failed_call() {
    let (events, pods) = rollout_under_watch(&[]).await;
    let summary = of_kind(&events, "summary")[0];
    assert_eq!(summary["failed"], 0, "Failures: none: {summary}");
    assert_eq!(
        pods_seen(&events, "new-pod"),
        [
            "quote-1", "quote-2", "quote-3", "quote-4", "quote-5", "quote-6"
        ]
    );
    let mut stopped: Vec<&str> = summary["stopped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pod"].as_str().unwrap())
        .collect();
    stopped.sort();
    assert_eq!(stopped, ["quote-1", "quote-2", "quote-3"], "{summary}");
    for pod in pods["pods"].as_array().unwrap() {
        assert_eq!(pod["state"], "ready", "{pod}");
    }
}

#[tokio::test]
async fn without_a_shutdown_delay_a_rollout_costs_failed_calls() {
    let (events, _) = rollout_under_watch(&["--shutdown-delay", "0"]).await;
    let summary = of_kind(&events, "summary")[0];
    let failed = summary["failed"].as_u64().unwrap();
    // A pod that stops listening at SIGTERM is still sent connections until the next
    // readiness probe (up to a second): about a third of ten calls, three times over.
    assert!(failed >= 1, "{summary}");
    for kind in summary["failures"].as_object().unwrap().keys() {
        assert!(["closed", "refused"].contains(&kind.as_str()), "{summary}");
    }
    let first = of_kind(&events, "transition")
        .into_iter()
        .find(|t| t["kind"] == "failing")
        .expect("the first failure is marked");
    assert!(
        first["t"].as_f64().unwrap() > 1.0,
        "after the rollout began: {first}"
    );
}
