//! How the check asks: names through the pod's resolver configuration (as musl walks them, the
//! DNS lab's walk), HTTP calls pinned to the addresses those names gave, and bare TCP connects.
//! Every step has a time limit of its own; only the suite's own names and the addresses they
//! resolved to are ever contacted.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::backends::identity::Said;
use crate::labs::dns::{self, ResolvConf};

/// Each HTTP call's and each connect's time limit.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a name resolved to in this pod.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    pub addresses: Vec<IpAddr>,
    pub cnames: Vec<String>,
    /// The SRV records of its port named `http`.
    pub srv: Vec<String>,
    /// Why the walk ended, in the DNS lab's words (`resolved`, `exhausted`, `nodata`, …).
    pub ended: &'static str,
}

impl Resolved {
    pub fn found(&self) -> bool {
        !self.addresses.is_empty()
    }

    pub fn set(&self) -> BTreeSet<IpAddr> {
        self.addresses.iter().copied().collect()
    }

    pub fn shown(&self) -> String {
        match self.addresses.as_slice() {
            [] => format!("no address ({})", self.ended),
            addrs => addrs
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Resolves `name` as the DNS lab walks it, asking `server` when given (`--nameserver`).
pub async fn resolve(
    name: &str,
    conf: &ResolvConf,
    server: Option<std::net::SocketAddr>,
) -> Resolved {
    let lab = dns::run(name, conf.clone(), &dns::Names::default(), server).await;
    let last = lab.steps.last();
    Resolved {
        addresses: match &lab.resolved {
            Some(_) => last.map(|s| s.addresses.clone()).unwrap_or_default(),
            None => Vec::new(),
        },
        cnames: last.map(|s| s.cnames.clone()).unwrap_or_default(),
        srv: lab.srv.map(|s| s.records).unwrap_or_default(),
        ended: lab.ended,
    }
}

/// Who answered one HTTP call, from the suite's identity headers (checked).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub pod: String,
    pub node: Option<String>,
    pub state: Option<String>,
    pub release: Option<String>,
}

/// What one HTTP call or connect came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered(Answer),
    /// Refused at once: nothing listens, or a rule rejected it.
    Refused,
    /// No answer in time: dropped somewhere.
    Timeout,
    /// Anything else, in a few words.
    Failed(String),
}

impl Outcome {
    pub fn pod(&self) -> Option<&str> {
        match self {
            Outcome::Answered(a) => Some(&a.pod),
            _ => None,
        }
    }

    pub fn words(&self) -> String {
        match self {
            Outcome::Answered(a) => format!("answered by {}", a.pod),
            Outcome::Refused => "refused".into(),
            Outcome::Timeout => format!("no answer in {} s", STEP_TIMEOUT.as_secs()),
            Outcome::Failed(why) => why.clone(),
        }
    }
}

/// A client for the check's calls: `reuse` keeps one connection for all its calls, otherwise
/// each call opens its own; `pin` sends a host name to an address already resolved.
pub fn client(reuse: bool, pin: Option<(&str, SocketAddr)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .timeout(STEP_TIMEOUT)
        .connect_timeout(STEP_TIMEOUT)
        .pool_max_idle_per_host(if reuse { 1 } else { 0 })
        .no_proxy();
    if let Some((host, addr)) = pin {
        builder = builder.resolve(host, addr);
    }
    builder
        .build()
        .expect("an HTTP client without TLS always builds")
}

pub async fn get(client: &reqwest::Client, url: &str) -> Outcome {
    match client.get(url).header("accept", "text/plain").send().await {
        Ok(res) => {
            let said = Said::of(res.headers());
            let release = res
                .headers()
                .get("x-release")
                .and_then(|v| v.to_str().ok())
                .map(crate::backends::identity::name);
            // The body is not needed; a bounded read lets the connection be reused.
            let _ = crate::backends::reply::read_body(res).await;
            Outcome::Answered(Answer {
                pod: said.pod.unwrap_or_else(|| "(no X-Pod-Name)".into()),
                node: said.node,
                state: said.state,
                release,
            })
        }
        Err(e) => classify(&e),
    }
}

fn classify(e: &reqwest::Error) -> Outcome {
    let failure = crate::backends::failure::classify(e);
    match failure.kind {
        crate::backends::FailureKind::Refused => Outcome::Refused,
        crate::backends::FailureKind::Timeout => Outcome::Timeout,
        _ => Outcome::Failed(failure.message),
    }
}

/// What a bare TCP connect came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    Connected,
    Refused,
    Timeout,
    Unreachable,
}

pub async fn connect(addr: SocketAddr) -> Connect {
    match tokio::time::timeout(STEP_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Err(_) => Connect::Timeout,
        Ok(Ok(_)) => Connect::Connected,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Connect::Refused,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => Connect::Timeout,
        Ok(Err(_)) => Connect::Unreachable,
    }
}

/// `http://host:port`, brackets around an IPv6 address.
pub fn origin(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("http://[{v6}]:{port}"),
        _ => format!("http://{host}:{port}"),
    }
}
