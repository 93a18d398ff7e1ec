//! Every pod at a glance (`GET /lab/pods`): each instance with its Service, its state, whether
//! its Service sends it new connections, its addresses, the requests it served and the
//! connections open to it; and each Service with its port and a rollout under way.

use std::fmt::Write;

use serde::Serialize;

use crate::cluster::{Cluster, Instance, Service};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pods {
    pub pods: Vec<Pod>,
    pub services: Vec<ServiceView>,
    /// The cluster DNS, `127.0.0.1:PORT`.
    pub dns: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod {
    pub name: String,
    pub service: Service,
    /// `ready`, `starting` (not yet through its first readiness probe), `not-ready` (its
    /// probe fails), `disabled` (on its admin port), `fault` (a fault drill), `draining`
    /// (SIGTERM received), or `unreachable`.
    pub state: String,
    /// Whether its Service sends it new connections.
    pub endpoint: bool,
    pub admin: String,
    /// Where it serves, 127.0.0.1 and a port of its own.
    pub addr: String,
    /// Its address in the cluster DNS.
    pub pod_ip: String,
    /// Requests it answered, probes and scrapes aside (`None`: it did not say).
    pub requests: Option<u64>,
    /// Connections open to it through its Service.
    pub open: usize,
    /// Connections its Service gave it.
    pub connections: u64,
    pub age_s: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceView {
    pub name: &'static str,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    pub virtual_ip: String,
    pub replicas: usize,
    /// What a rollout under way is doing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

/// What each instance says now: its `X-Pod-State` and request count, from its `/metrics`,
/// asked on its own port (all at once, half a second each at most).
pub async fn view(cluster: &Cluster) -> Pods {
    let mut asks = Vec::new();
    for d in cluster.deployments() {
        let endpoints = d.balancer.endpoints();
        for instance in d.instances() {
            let endpoint = endpoints.iter().find(|e| e.name == instance.name).cloned();
            let client = cluster.client.clone();
            asks.push(tokio::spawn(async move {
                let said = ask(&client, &instance).await;
                pod(&instance, endpoint, said)
            }));
        }
    }
    let mut pods = Vec::new();
    for ask in asks {
        if let Ok(pod) = ask.await {
            pods.push(pod);
        }
    }
    let services = cluster
        .deployments()
        .iter()
        .map(|d| ServiceView {
            name: d.service.name(),
            port: d.balancer.addr().port(),
            tls_port: d.tls_balancer.as_ref().map(|b| b.addr().port()),
            virtual_ip: d.service.virtual_ip().to_string(),
            replicas: d.replicas,
            rollout: d.rollout_progress(),
        })
        .collect();
    Pods {
        pods,
        services,
        dns: cluster.dns_addr.to_string(),
    }
}

/// The instance's `X-Pod-State` and its requests, probes and scrapes aside.
async fn ask(client: &reqwest::Client, instance: &Instance) -> Option<(String, u64)> {
    let res = client
        .get(format!("{}/metrics", instance.url()))
        .send()
        .await
        .ok()?;
    let state = res
        .headers()
        .get("x-pod-state")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("ready")
        .to_owned();
    let body = res.text().await.ok()?;
    Some((state, requests(&body)))
}

/// The sum of `http_requests_total` over every route but the probes and `/metrics`.
pub fn requests(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("http_requests_total{"))
        .filter(|l| !l.contains("route=\"/metrics\"") && !l.contains("route=\"/healthz"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn pod(
    instance: &Instance,
    endpoint: Option<balancer::EndpointStatus>,
    said: Option<(String, u64)>,
) -> Pod {
    let ready = endpoint.as_ref().is_some_and(|e| e.ready);
    let probed = endpoint.as_ref().is_some_and(|e| e.state.is_some());
    let state = match (&said, instance.is_terminating()) {
        (_, true) => "draining".to_owned(),
        (None, false) => "unreachable".to_owned(),
        (Some((state, _)), false) if state == "ready" && !ready => match probed {
            false => "starting".to_owned(),
            true => "not-ready".to_owned(),
        },
        (Some((state, _)), false) => state.clone(),
    };
    Pod {
        name: instance.name.clone(),
        service: instance.service,
        state,
        endpoint: ready,
        admin: instance.admin_url(),
        addr: instance.addr.to_string(),
        pod_ip: instance.pod_ip.to_string(),
        requests: said.map(|(_, n)| n),
        open: endpoint.as_ref().map_or(0, |e| e.open),
        connections: endpoint.as_ref().map_or(0, |e| e.connections),
        age_s: instance.started.elapsed().as_secs(),
    }
}

/// The pods as a table for curl.
pub fn text(pods: &Pods) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<7} {:<11} {:<9} {:<11} {:<22} {:>8} {:>5}",
        "POD", "SERVICE", "STATE", "ENDPOINT", "POD IP", "ADMIN", "REQUESTS", "OPEN"
    );
    for p in &pods.pods {
        let requests = p.requests.map_or("?".to_owned(), |n| n.to_string());
        let _ = writeln!(
            out,
            "{:<10} {:<7} {:<11} {:<9} {:<11} {:<22} {:>8} {:>5}",
            p.name,
            p.service.name(),
            p.state,
            if p.endpoint { "yes" } else { "no" },
            p.pod_ip,
            p.admin,
            requests,
            p.open
        );
    }
    let _ = writeln!(out);
    for s in &pods.services {
        let tls = s.tls_port.map_or(String::new(), |p| format!(" and {p}"));
        let _ = writeln!(
            out,
            "{:<6} port {}{tls}, {} in the cluster DNS, {} replica(s){}",
            s.name,
            s.port,
            s.virtual_ip,
            s.replicas,
            s.rollout
                .as_ref()
                .map_or(String::new(), |r| format!("; rollout: {r}"))
        );
    }
    let _ = writeln!(out, "cluster DNS {}", pods.dns);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_without_probes_and_scrapes() {
        let metrics = "# TYPE http_requests counter\n\
            http_requests_total{method=\"GET\",route=\"/quote\",status=\"200\"} 7\n\
            http_requests_total{method=\"GET\",route=\"/\",status=\"200\"} 2\n\
            http_requests_total{method=\"GET\",route=\"/healthz/ready\",status=\"200\"} 40\n\
            http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 3\n\
            http_requests_in_flight 1\n";
        assert_eq!(requests(metrics), 9);
    }
}
