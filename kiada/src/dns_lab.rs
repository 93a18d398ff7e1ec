//! `GET /lab/dns?name=NAME`: how this pod resolves a name, step by step. It reads the pod's
//! `resolv.conf` (nameservers, search list, ndots), lists the names a stub resolver tries in
//! order, asks the nameserver for each (A, then AAAA) until one resolves, and says what the
//! answer means for a Service: one virtual IP, a headless Service's pods, an ExternalName's
//! CNAME, and the SRV records of a named port.
//!
//! The lookups go to the nameserver `resolv.conf` names and nowhere else, for DNS names only,
//! each with a short timeout; one lab run per pod at a time.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::op::ResponseCode;
use hickory_client::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::udp::UdpClientStream;
use kit::negotiate::WantsJson;
use serde::{Deserialize, Serialize};

use crate::{AppState, Error};

/// Where the lab reads the resolver configuration; `--resolv-conf` points elsewhere (tests).
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Each query's time limit.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Candidate names tried at most (the name itself and up to this many less one search domains).
pub const MAX_CANDIDATES: usize = 8;

#[derive(Deserialize)]
pub struct DnsQuery {
    name: Option<String>,
}

/// What `resolv.conf` says, as the stub resolver reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
}

impl ResolvConf {
    /// The last `search` line wins, as does the last `ndots` option; ndots defaults to 1 and is
    /// capped at 15, as glibc does.
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.search = words.map(|w| w.trim_end_matches('.').to_owned()).collect()
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) = option.strip_prefix("ndots:").and_then(|n| n.parse().ok())
                        {
                            conf.ndots = usize::min(n, 15);
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }

    /// The names tried, in order, each fully qualified (trailing dot), as musl does it (the C
    /// library of the suite's images): a name ending in a dot, or with at least ndots dots, is
    /// tried as given and nothing else; one with fewer dots goes through the search list first
    /// and is tried as given last. (glibc differs in one case: with at least ndots dots it tries
    /// the search list after the name as given.)
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if name.ends_with('.') {
            return vec![name.to_owned()];
        }
        let searched = self
            .search
            .iter()
            .map(|domain| format!("{name}.{domain}."))
            .take(MAX_CANDIDATES - 1);
        let as_given = format!("{name}.");
        if name.matches('.').count() < self.ndots {
            searched.chain(std::iter::once(as_given)).collect()
        } else {
            vec![as_given]
        }
    }
}

/// The answer to one candidate name.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    /// `addresses`, `nxdomain` (no such name), `nodata` (the name exists, without addresses),
    /// `timeout`, or `error`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// CNAME records on the way, each `alias -> target`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Queries sent for this name (A, and AAAA when A had nothing).
    pub queries: usize,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Srv {
    pub name: String,
    pub records: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsLab {
    pub name: String,
    pub resolv_conf: ResolvConf,
    pub nameserver: Option<IpAddr>,
    pub steps: Vec<Step>,
    /// The name that resolved, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meaning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srv: Option<Srv>,
    pub lesson: String,
}

/// Why a name a learner typed cannot be looked up.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("give a name to look up, for example ?name=quiz")]
    Missing,
    #[error("'{0}' is an IP address: there is nothing to resolve; give a DNS name such as quiz")]
    Address(String),
    #[error("a DNS name has at most 253 characters; this one has {0}")]
    TooLong(usize),
    #[error("'{0}' is not a valid DNS name: each dot-separated part must be 1 to 63 characters")]
    LabelLength(String),
    #[error("'{0}' is not a valid DNS name: use letters, digits, '-' and '_' between dots")]
    Characters(String),
}

/// Checks a name a learner typed: a DNS name, not an address or a URL.
pub fn check_name(raw: &str) -> Result<String, NameError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(NameError::Missing);
    }
    if IpAddr::from_str(name.trim_matches(|c| c == '[' || c == ']')).is_ok() {
        return Err(NameError::Address(name.to_owned()));
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.len() > 253 {
        return Err(NameError::TooLong(bare.len()));
    }
    for label in bare.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(NameError::LabelLength(shorten(name)));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(NameError::Characters(shorten(name)));
        }
    }
    Ok(name.to_ascii_lowercase())
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

pub async fn lab(
    State(state): State<AppState>,
    Query(query): Query<DnsQuery>,
    WantsJson(json): WantsJson,
) -> Result<Response, Error> {
    let name = check_name(query.name.as_deref().unwrap_or(""))
        .map_err(|e| Error::BadRequest(format!("{e}. Usage: /lab/dns?name=NAME")))?;
    // A DNS run opens no backend connection, but takes the pod's one lab slot.
    let _running = state.labs.start(0)?;
    let conf = read_resolv_conf(&state.resolv_conf).await?;
    let result = run(&name, conf).await;
    if json {
        return Ok(Json(result).into_response());
    }
    Ok(text(&result).into_response())
}

async fn read_resolv_conf(path: &Path) -> Result<ResolvConf, Error> {
    let path = path.to_owned();
    let read = tokio::task::spawn_blocking(move || kit::file::read_text(&path, 64 * 1024)).await;
    match read {
        Ok(Ok(text)) => Ok(ResolvConf::parse(&text)),
        Ok(Err(e)) => Err(Error::Lab(format!(
            "cannot read the resolver configuration: {e}"
        ))),
        Err(e) => Err(Error::Lab(format!(
            "cannot read the resolver configuration: {e}"
        ))),
    }
}

/// Walks the candidates as a stub resolver does, then looks at the name that resolved.
pub async fn run(name: &str, conf: ResolvConf) -> DnsLab {
    let nameserver = conf.nameservers.first().copied();
    let mut lab = DnsLab {
        name: name.to_owned(),
        nameserver,
        steps: Vec::new(),
        resolved: None,
        meaning: None,
        srv: None,
        lesson: String::new(),
        resolv_conf: conf,
    };
    let Some(server) = nameserver else {
        lab.lesson = "resolv.conf names no nameserver, so nothing was asked.".into();
        return lab;
    };
    let server = SocketAddr::new(server, 53);
    for candidate in lab.resolv_conf.candidates(name) {
        let step = lookup(server, &candidate).await;
        let found = step.outcome == "addresses";
        lab.steps.push(step);
        if found {
            lab.resolved = Some(candidate);
            break;
        }
    }
    if let (Some(resolved), Some(step)) = (&lab.resolved, lab.steps.last()) {
        lab.meaning = Some(meaning(step));
        let srv_name = format!("_http._tcp.{resolved}");
        if let Some(records) = srv(server, &srv_name).await {
            lab.srv = Some(Srv {
                name: srv_name,
                records,
            });
        }
    }
    lab.lesson = lesson(&lab);
    lab
}

async fn lookup(server: SocketAddr, candidate: &str) -> Step {
    let mut step = Step {
        name: candidate.to_owned(),
        outcome: "error",
        addresses: Vec::new(),
        cnames: Vec::new(),
        detail: None,
        queries: 0,
    };
    let Ok(name) = Name::from_ascii(candidate) else {
        step.detail = Some("not a valid DNS name".into());
        return step;
    };
    for record_type in [RecordType::A, RecordType::AAAA] {
        step.queries += 1;
        match query(server, name.clone(), record_type).await {
            Ok(answer) => {
                if answer.code == ResponseCode::NXDomain {
                    step.outcome = "nxdomain";
                    return step;
                }
                if answer.code != ResponseCode::NoError {
                    step.outcome = "error";
                    step.detail = Some(format!("the nameserver answered {}", answer.code));
                    return step;
                }
                for cname in answer.cnames {
                    if !step.cnames.contains(&cname) {
                        step.cnames.push(cname);
                    }
                }
                step.addresses.extend(answer.addresses);
                if !step.addresses.is_empty() {
                    step.outcome = "addresses";
                    return step;
                }
                step.outcome = "nodata";
            }
            Err(Failure::Timeout) => {
                step.outcome = "timeout";
                step.detail = Some(format!(
                    "no answer within {} s",
                    QUERY_TIMEOUT.as_secs_f64()
                ));
                return step;
            }
            Err(Failure::Other(e)) => {
                step.outcome = "error";
                step.detail = Some(e);
                return step;
            }
        }
    }
    step
}

struct Answer {
    code: ResponseCode,
    addresses: Vec<IpAddr>,
    cnames: Vec<String>,
    srv: Vec<String>,
}

enum Failure {
    Timeout,
    Other(String),
}

async fn query(server: SocketAddr, name: Name, record_type: RecordType) -> Result<Answer, Failure> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(QUERY_TIMEOUT))
        .build();
    let (mut client, background) = Client::connect(stream)
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    let background = tokio::spawn(background);
    let asked = tokio::time::timeout(
        QUERY_TIMEOUT + Duration::from_millis(200),
        client.query(name, DNSClass::IN, record_type),
    )
    .await;
    background.abort();
    let response = match asked {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(e)) if e.to_string().contains("timed out") => return Err(Failure::Timeout),
        Ok(Err(e)) => return Err(Failure::Other(e.to_string())),
        Ok(Ok(response)) => response,
    };
    let mut answer = Answer {
        code: response.response_code(),
        addresses: Vec::new(),
        cnames: Vec::new(),
        srv: Vec::new(),
    };
    for record in response.answers() {
        match record.data() {
            RData::A(a) => answer.addresses.push(IpAddr::V4(a.0)),
            RData::AAAA(a) => answer.addresses.push(IpAddr::V6(a.0)),
            RData::CNAME(target) => {
                answer
                    .cnames
                    .push(format!("{} -> {}", record.name(), target.0))
            }
            RData::SRV(srv) => answer.srv.push(format!(
                "priority {} weight {} port {} target {}",
                srv.priority(),
                srv.weight(),
                srv.port(),
                srv.target()
            )),
            _ => {}
        }
    }
    Ok(answer)
}

async fn srv(server: SocketAddr, name: &str) -> Option<Vec<String>> {
    let name = Name::from_ascii(name).ok()?;
    let answer = query(server, name, RecordType::SRV).await.ok()?;
    (!answer.srv.is_empty()).then_some(answer.srv)
}

fn meaning(step: &Step) -> String {
    let mut meaning = match step.addresses.len() {
        1 => format!(
            "One address, {}: for a ClusterIP Service that is its virtual IP, which rules \
             written by kube-proxy rewrite (DNAT) to a ready pod's address (a headless Service \
             with a single ready pod also gives one).",
            step.addresses[0]
        ),
        n => format!(
            "{n} addresses: if this is a headless Service (clusterIP: None), they are the IPs \
             of its ready pods, and the client picks one itself; no virtual IP is involved."
        ),
    };
    if !step.cnames.is_empty() {
        meaning.push_str(
            " The answer went through a CNAME: an ExternalName Service, for one, answers with \
             an alias for another name, which is then resolved in turn.",
        );
    }
    meaning
}

fn lesson(lab: &DnsLab) -> String {
    let tries = lab.steps.len();
    let queries: usize = lab.steps.iter().map(|s| s.queries).sum();
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let dots = lab.name.matches('.').count();
    let ndots = lab.resolv_conf.ndots;
    let why = if lab.name.ends_with('.') {
        "a trailing dot makes the name absolute, so the search list is skipped".to_owned()
    } else if dots < ndots {
        format!(
            "'{}' has {} and ndots is {ndots}, so each search domain is tried before the name \
             as given",
            lab.name,
            count(dots, "dot", "dots")
        )
    } else {
        format!(
            "'{}' has {} (ndots is {ndots}), so it is tried as given and the search list is \
             skipped, as musl (the C library of this image) does; glibc would try the search \
             domains after it",
            lab.name,
            count(dots, "dot", "dots")
        )
    };
    match &lab.resolved {
        Some(resolved) => format!(
            "{} took {} ({}) to resolve, as {resolved}: {why}.",
            lab.name,
            count(tries, "try", "tries"),
            count(queries, "query", "queries")
        ),
        None if lab.steps.iter().any(|s| s.outcome == "timeout") => format!(
            "{} did not resolve: the nameserver did not answer in time ({why}).",
            lab.name
        ),
        None => format!(
            "{} did not resolve: no candidate name exists ({why}).",
            lab.name
        ),
    }
}

fn text(lab: &DnsLab) -> String {
    let mut out = String::new();
    let conf = &lab.resolv_conf;
    let _ = writeln!(out, "How this pod resolves '{}'\n", lab.name);
    let servers: Vec<String> = conf.nameservers.iter().map(|s| s.to_string()).collect();
    let _ = writeln!(out, "resolv.conf:");
    let _ = writeln!(
        out,
        "  nameserver {}",
        if servers.is_empty() {
            "(none)".to_owned()
        } else {
            servers.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  search     {}",
        if conf.search.is_empty() {
            "(none)".to_owned()
        } else {
            conf.search.join(" ")
        }
    );
    let _ = writeln!(out, "  ndots      {}\n", conf.ndots);
    if !lab.steps.is_empty() {
        let _ = writeln!(out, "Names tried, in order:");
    }
    for (i, step) in lab.steps.iter().enumerate() {
        let result = match step.outcome {
            "addresses" => step
                .addresses
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            "nxdomain" => "NXDOMAIN (no such name)".to_owned(),
            "nodata" => "the name exists but has no addresses".to_owned(),
            "timeout" => "no answer (timeout)".to_owned(),
            _ => format!("error: {}", step.detail.as_deref().unwrap_or("unknown")),
        };
        let _ = writeln!(out, "  {}. {} -> {result}", i + 1, step.name);
        for cname in &step.cnames {
            let _ = writeln!(out, "     CNAME {cname}");
        }
    }
    if let Some(meaning) = &lab.meaning {
        let _ = writeln!(out);
        out.push_str(&crate::hop::wrap(meaning, 0, 80));
    }
    if let Some(srv) = &lab.srv {
        let _ = writeln!(out, "\nSRV {} (the port named http):", srv.name);
        for record in &srv.records {
            let _ = writeln!(out, "  {record}");
        }
    }
    let _ = writeln!(out);
    out.push_str(&crate::hop::wrap(&lab.lesson, 0, 80));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> ResolvConf {
        ResolvConf::parse(
            "# a pod's resolv.conf\nsearch kiada.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\noptions ndots:5 edns0\n",
        )
    }

    #[test]
    fn resolv_conf_is_read_as_the_stub_resolver_reads_it() {
        let c = conf();
        assert_eq!(c.nameservers, ["10.96.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            c.search,
            [
                "kiada.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(c.ndots, 5);
        assert_eq!(ResolvConf::parse("nameserver 1.1.1.1\n").ndots, 1);
    }

    #[test]
    fn candidates_follow_ndots_and_the_trailing_dot() {
        let c = conf();
        assert_eq!(
            c.candidates("quiz"),
            [
                "quiz.kiada.svc.cluster.local.",
                "quiz.svc.cluster.local.",
                "quiz.cluster.local.",
                "quiz."
            ]
        );
        assert_eq!(
            c.candidates("quiz.kiada.svc.cluster.local."),
            ["quiz.kiada.svc.cluster.local."]
        );
        let few = ResolvConf { ndots: 1, ..conf() };
        assert_eq!(few.candidates("quiz.kiada")[0], "quiz.kiada.");
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name(" Quiz ").unwrap(), "quiz");
        assert!(check_name("quiz.kiada.svc.cluster.local.").is_ok());
        assert!(
            check_name("10.96.0.10")
                .unwrap_err()
                .to_string()
                .contains("IP address")
        );
        assert!(matches!(check_name("::1"), Err(NameError::Address(_))));
        assert!(check_name("http://quiz/").is_err());
        assert!(check_name("a..b").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
        assert!(
            check_name(&["a"; 130].join("."))
                .unwrap_err()
                .to_string()
                .contains("253")
        );
        assert!(check_name("").is_err());
    }
}
