//! What the check looks at: the Services the suite knows, by the names the manifests give
//! them (derived from `QUOTE_URL` and `QUIZ_URL`), the ports its pods listen on, and what this
//! pod knows of itself. Never an address or name a client hands it.

use std::net::IpAddr;

/// The check's targets.
#[derive(Clone, Debug)]
pub struct Targets {
    /// The quote Service's name, from `QUOTE_URL` (`quote`); `None` when the URL holds an
    /// address.
    pub quote: Option<String>,
    /// The port `QUOTE_URL` dials (the Services' port, 80 in the manifests).
    pub service_port: u16,
    /// The path of a tip on it (`/quote`).
    pub quote_path: String,
    /// The quiz Service's name, from `QUIZ_URL`.
    pub quiz: Option<String>,
    /// The port the quote pods listen on (`containerPort` named `http`).
    pub pod_port: u16,
    /// kiada's own NodePort.
    pub node_port: u16,
    /// `QUOTE_SERVICE_HOST` and `QUOTE_SERVICE_PORT` (the Service's first port) as this
    /// process found them at start.
    pub service_host: Option<String>,
    pub service_port_env: Option<String>,
    /// Every port of the Service, as its link variables name them (`QUOTE_PORT_80_TCP_PORT=80`
    /// for each port the Service declares).
    pub declared_ports: Vec<u16>,
    pub namespace: String,
    pub cluster_domain: String,
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
}

impl Targets {
    /// The targets for a kiada pod whose backends are `quote_url` and `quiz_url`.
    pub fn new(quote_url: &str, quiz_url: &str) -> Targets {
        let host = |url: &str| {
            reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.domain().map(str::to_owned))
        };
        let quote = reqwest::Url::parse(quote_url).ok();
        Targets {
            quote: host(quote_url),
            service_port: quote
                .as_ref()
                .and_then(|u| u.port_or_known_default())
                .unwrap_or(80),
            quote_path: quote
                .as_ref()
                .map_or("/quote".into(), |u| u.path().to_owned()),
            quiz: host(quiz_url),
            pod_port: 8080,
            node_port: 30080,
            service_host: None,
            service_port_env: None,
            declared_ports: Vec::new(),
            namespace: kit::identity::UNKNOWN.into(),
            cluster_domain: "cluster.local".into(),
            node_name: kit::identity::UNKNOWN.into(),
            node_ip: None,
        }
    }

    /// `name` with the suffix the manifests give a Service of the same pods.
    pub fn quote_as(&self, suffix: &str) -> Option<String> {
        self.quote.as_ref().map(|q| format!("{q}{suffix}"))
    }

    /// The Service's full name, as a learner would type it (no trailing dot).
    pub fn full(&self, name: &str) -> String {
        format!("{name}.{}.svc.{}", self.namespace, self.cluster_domain)
    }

    /// The variable prefix Kubernetes derives from a Service name (`quote-x` → `QUOTE_X`).
    pub fn env_prefix(name: &str) -> String {
        name.to_ascii_uppercase().replace('-', "_")
    }
}
