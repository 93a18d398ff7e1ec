//! How each backend call travelled, in the chapter's terms: where its URL came from, what the
//! name resolved to, which address was dialled, whether the connection was new or reused, and
//! which pod on which node answered. All of it comes from the call that was made (the
//! resolver's answer is recorded when it is asked; the rest is in the response), so explaining
//! a page costs no extra query or connection.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use super::discovery::Source;
use super::failure::FailureKind;
use super::identity::INVALID;
use super::reply::Reply;
use super::resolve::Resolutions;
use crate::terminal::wrap;

/// One backend: its URL, how that URL was found, and its host.
#[derive(Clone, Debug)]
pub struct Route {
    pub url: String,
    pub source: Source,
    /// The URL's host; `None` when the URL holds an IP address (nothing to resolve).
    pub host: Option<String>,
}

impl Route {
    pub fn new(url: &str, source: Source) -> Self {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.domain().map(str::to_owned));
        Route {
            url: url.to_owned(),
            source,
            host,
        }
    }
}

/// The connection a call went over, as the backend counted it.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionUse {
    pub reused: bool,
    pub requests_on_connection: u64,
}

/// Everything the pages say about one call besides its answer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    /// `QUOTE_URL`, `QUOTE_SERVICE_HOST/QUOTE_SERVICE_PORT` or `dns-default`.
    pub source: &'static str,
    #[serde(skip)]
    source_words: &'static str,
    pub url: String,
    /// The host name and the addresses it resolved to; `None` for an IP address in the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Resolved>,
    /// The address kiada connected to.
    #[serde(serialize_with = "as_string", skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionUse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Whether the answering pod runs on this kiada pod's node; unknown when either node is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_node: Option<bool>,
    /// Whether the address dialled was the answering pod's own (a headless name, a pod IP)
    /// rather than a virtual IP that kube-proxy forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direct_to_pod: Option<bool>,
    /// The call failed because the name did not resolve: the recorded addresses, if any, are
    /// an earlier call's and are not shown.
    #[serde(skip)]
    lookup_failed: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Resolved {
    pub name: String,
    /// Empty when the lookup was not recorded (no call has opened a connection yet).
    pub addresses: Vec<IpAddr>,
}

fn as_string<S: serde::Serializer>(v: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(addr) => s.collect_str(addr),
        None => s.serialize_none(),
    }
}

impl Hop {
    pub fn of<T>(
        service: &str,
        route: &Route,
        reply: &Reply<T>,
        resolutions: &Resolutions,
        this_node: &str,
    ) -> Hop {
        let known = |v: &str| v != kit::identity::UNKNOWN && v != INVALID && !v.is_empty();
        let same_node = match (&reply.by.node, known(this_node)) {
            (Some(node), true) if known(node) => Some(node == this_node),
            _ => None,
        };
        let pod_ip: Option<IpAddr> = reply.by.pod_ip.as_deref().and_then(|ip| ip.parse().ok());
        let direct_to_pod = match (reply.by.remote, pod_ip) {
            (Some(remote), Some(pod)) => Some(remote.ip().to_canonical() == pod),
            _ => None,
        };
        let (source, source_words) = source_names(service, route.source);
        let lookup_failed = matches!(
            &reply.result,
            Err(e) if e.kind == FailureKind::Dns
        );
        Hop {
            source,
            source_words,
            url: route.url.clone(),
            resolved: route.host.as_ref().map(|host| Resolved {
                name: host.clone(),
                addresses: resolutions
                    .get(host)
                    .map(|a| a.to_vec())
                    .unwrap_or_default(),
            }),
            remote: reply.by.remote,
            connection: reply.by.connection_requests.map(|n| ConnectionUse {
                reused: n > 1,
                requests_on_connection: n,
            }),
            node: reply.by.node.clone(),
            same_node,
            direct_to_pod,
            lookup_failed,
        }
    }

    /// The explanation in two short lines for the text page: where the URL came from and
    /// what was dialled; the connection and the pod.
    pub fn text(&self) -> String {
        let source = match self.source {
            "dns-default" => "the DNS default",
            s => s,
        };
        let mut first = format!("via {source}: ");
        match &self.resolved {
            Some(r) if self.lookup_failed => {
                let _ = write!(first, "{} did not resolve", r.name);
            }
            Some(r) if r.addresses.is_empty() => {
                let _ = write!(first, "{} (no lookup recorded yet)", r.name);
            }
            Some(r) => {
                let shown: Vec<String> =
                    r.addresses.iter().take(3).map(|a| a.to_string()).collect();
                let _ = write!(first, "{} -> {}", r.name, shown.join(", "));
                let more = r.addresses.len().saturating_sub(3);
                if more > 0 {
                    let _ = write!(first, " +{more}");
                }
            }
            None => first.push_str("an IP address, no lookup"),
        }
        if let Some(remote) = self.remote {
            let _ = write!(first, "; dialled {remote}");
            match self.direct_to_pod {
                Some(true) => first.push_str(" (the pod itself)"),
                Some(false) => first.push_str(" (a virtual IP)"),
                None => {}
            }
        }
        let mut second = match self.connection {
            Some(c) if c.reused => format!(
                "reused connection, request {} on it",
                c.requests_on_connection
            ),
            Some(_) => "new connection".to_owned(),
            None => "connection not reported".to_owned(),
        };
        if let Some(node) = &self.node {
            let _ = write!(second, "; pod on node {node}");
            match self.same_node {
                Some(true) => second.push_str(" (this node)"),
                Some(false) => second.push_str(" (another node)"),
                None => {}
            }
        }
        wrap(&first, 2, 80) + &wrap(&second, 2, 80)
    }

    /// The explanation in sentences, for the HTML page.
    pub fn sentences(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut where_from = format!("URL {} from {}", self.url, self.source_words);
        match &self.resolved {
            Some(r) if r.addresses.len() == 1 => {
                let _ = write!(where_from, "; {} resolved to {}", r.name, r.addresses[0]);
            }
            Some(r) if r.addresses.len() > 1 => {
                let _ = write!(
                    where_from,
                    "; {} resolved to {} addresses ({})",
                    r.name,
                    r.addresses.len(),
                    join(&r.addresses)
                );
            }
            Some(r) if self.lookup_failed => {
                let _ = write!(where_from, "; {} did not resolve", r.name);
            }
            Some(r) => {
                let _ = write!(where_from, "; {}: no lookup recorded yet", r.name);
            }
            None => where_from.push_str("; an IP address, nothing to resolve"),
        }
        out.push(where_from + ".");

        let mut dialled = match self.remote {
            Some(remote) => format!("Connected to {remote}"),
            None => "No response, so the address dialled is not known".to_owned(),
        };
        match self.direct_to_pod {
            Some(true) => dialled.push_str(", the pod's own address (no virtual IP)"),
            Some(false) => dialled.push_str(
                ", a virtual IP, which rules written by kube-proxy (or whatever replaces it) \
                     rewrote (DNAT) to the pod's address",
            ),
            None => {}
        }
        match self.connection {
            Some(c) if c.reused => {
                let _ = write!(
                    dialled,
                    "; a reused connection, request {} on it",
                    c.requests_on_connection
                );
            }
            Some(_) => dialled.push_str("; a new connection"),
            None => {}
        }
        out.push(dialled + ".");

        if let Some(node) = &self.node {
            let place = match self.same_node {
                Some(true) => " (the same node as this kiada pod)",
                Some(false) => " (another node than this kiada pod's)",
                None => "",
            };
            out.push(format!("The pod runs on node {node}{place}."));
        }
        out
    }
}

/// The source's name in `/api`, and in words.
fn source_names(service: &str, source: Source) -> (&'static str, &'static str) {
    let quote = service == "quote";
    match (source, quote) {
        (Source::Explicit, true) => ("QUOTE_URL", "QUOTE_URL"),
        (Source::Explicit, false) => ("QUIZ_URL", "QUIZ_URL"),
        (Source::ServiceEnv, true) => (
            "QUOTE_SERVICE_HOST/QUOTE_SERVICE_PORT",
            "QUOTE_SERVICE_HOST and QUOTE_SERVICE_PORT, injected by Kubernetes",
        ),
        (Source::ServiceEnv, false) => (
            "QUIZ_SERVICE_HOST/QUIZ_SERVICE_PORT",
            "QUIZ_SERVICE_HOST and QUIZ_SERVICE_PORT, injected by Kubernetes",
        ),
        (Source::DnsDefault, _) => ("dns-default", "the default, the Service's DNS name"),
    }
}

fn join(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
