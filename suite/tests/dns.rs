//! The DNS lab against the suite's own cluster DNS, through the real suite binary: a short
//! name completed by the search list, name.namespace after one NXDOMAIN, the headless Service
//! with every ready pod (and only those), the SRV records of the named port, and the
//! ExternalName-like CNAME.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn addresses(lab: &Value) -> Vec<String> {
    let mut found: Vec<String> = lab["steps"].as_array().unwrap().last().unwrap()["addresses"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

#[tokio::test]
async fn the_dns_lab_walks_the_suites_cluster_dns() {
    let data = tempfile::tempdir().unwrap();
    let suite = Suite::start(data.path(), &[]);
    let lab = |name: &str| json(format!("{}/lab/dns?name={name}", suite.kiada));
    let pods = suite.pods().await;
    let quote_port = suite.port("quote").await;

    // A short name: the first search domain of the pod's resolv.conf completes it.
    let quote = lab("quote").await;
    assert_eq!(
        quote["resolved"], "quote.kiada.svc.cluster.local.",
        "{quote}"
    );
    assert_eq!(quote["steps"].as_array().unwrap().len(), 1);
    assert_eq!(addresses(&quote), ["127.0.10.1"]);
    assert_eq!(quote["clusterDns"], true);
    assert_eq!(quote["asked"], pods["dns"]);
    assert_eq!(quote["resolvConf"]["ndots"], 5);
    assert!(
        quote["meaning"]
            .as_str()
            .unwrap()
            .starts_with("One address")
    );
    let srv = quote["srv"]["records"][0].as_str().unwrap();
    assert_eq!(
        srv,
        format!("priority 0 weight 100 port {quote_port} target quote.kiada.svc.cluster.local.")
    );

    // name.namespace: the first candidate does not exist, the second is the Service.
    let dotted = lab("quote.kiada").await;
    let steps = dotted["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{dotted}");
    assert_eq!(steps[0]["name"], "quote.kiada.kiada.svc.cluster.local.");
    assert_eq!(steps[0]["outcome"], "nxdomain");
    assert_eq!(dotted["resolved"], "quote.kiada.svc.cluster.local.");

    // Headless: the address of every ready quote pod, and an SRV record for each, with the
    // pod's own port.
    let headless = lab("quote-headless").await;
    assert_eq!(
        addresses(&headless),
        ["127.0.1.1", "127.0.1.2", "127.0.1.3"],
        "{headless}"
    );
    assert!(
        headless["meaning"]
            .as_str()
            .unwrap()
            .starts_with("3 addresses")
    );
    let records = headless["srv"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{headless}");
    for pod in pods["pods"].as_array().unwrap() {
        if pod["service"] != "quote" {
            continue;
        }
        let port = pod["addr"].as_str().unwrap().rsplit(':').next().unwrap();
        let target = format!(
            "port {port} target {}.quote-headless.kiada.svc.cluster.local.",
            pod["podIp"].as_str().unwrap().replace('.', "-")
        );
        assert!(
            records
                .iter()
                .any(|r| r.as_str().unwrap().ends_with(&target)),
            "{target}: {records:?}"
        );
    }

    // The ExternalName experiment's alias: a CNAME, then quiz's virtual IP.
    let alias = lab("quiz-alias").await;
    assert_eq!(
        alias["steps"][0]["cnames"],
        serde_json::json!(["quiz-alias.kiada.svc.cluster.local. -> quiz.kiada.svc.cluster.local."])
    );
    assert_eq!(addresses(&alias), ["127.0.10.2"]);
    assert!(alias["meaning"].as_str().unwrap().contains("CNAME"));

    // Outside cluster.local nothing is forwarded: the walk ends at the refusal.
    let outside = lab("example.com").await;
    assert_eq!(outside["ended"], "error", "{outside}");
    let last = outside["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["name"], "example.com.");
    assert!(
        last["detail"].as_str().unwrap().contains("Refused"),
        "{last}"
    );

    // A headless Service's answer follows readiness.
    let admin = pods["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "quote-2")
        .unwrap()["admin"]
        .as_str()
        .unwrap()
        .to_owned();
    post(&format!("{admin}/healthz/ready/disable")).await;
    until(
        "quote-2 leaves the headless answer",
        Duration::from_secs(5),
        || async { addresses(&lab("quote-headless").await) == ["127.0.1.1", "127.0.1.3"] },
    )
    .await;
    // The virtual IP stays one address whatever the pods do.
    assert_eq!(addresses(&lab("quote").await), ["127.0.10.1"]);
}
