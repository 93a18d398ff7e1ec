//! The walk: each candidate name asked of the nameserver, in order, as musl (the C library of
//! the suite's images, and so what curl and kiada use in a pod) walks them: A and AAAA at once
//! for each (`getaddrinfo` with `AF_UNSPEC`), on to the next candidate only when the name does
//! not exist (NXDOMAIN), and a stop at the first candidate that answers anything else — its
//! addresses, a name without addresses (NODATA), a server failure, a timeout. Then the SRV
//! record of the port named `http` of the name that resolved.
//! (musl's `name_from_dns` and `name_from_dns_search`, `src/network/lookup_name.c`.)

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_client::client::{Client, ClientHandle};
use hickory_client::proto::op::ResponseCode;
use hickory_client::proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_client::proto::runtime::TokioRuntimeProvider;
use hickory_client::proto::udp::UdpClientStream;
use serde::Serialize;

use super::resolv_conf::ResolvConf;
use super::scope::Names;

/// Each query's time limit.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole walk's: past it no further query is sent, however many candidates are left.
pub const DEADLINE: Duration = Duration::from_secs(6);

/// The answer to one candidate name.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    /// `addresses`, `nxdomain` (no such name), `nodata` (the name exists, without addresses),
    /// `servfail`, `timeout`, `error` (another answer code), or `not-asked` (outside the
    /// lab's scope, or past its time limit).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// CNAME records on the way, each `alias -> target`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Queries sent for this name: A and AAAA, as a lookup for any address family sends.
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
    /// The address the queries went to: the first nameserver on port 53, or the one
    /// `--nameserver` names (the local suite's cluster DNS, on a port of its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asked: Option<SocketAddr>,
    /// Whether `resolv.conf` is a pod's, searching the cluster's Service domain
    /// (`svc.cluster.local`): whether a cluster DNS is what answers.
    pub cluster_dns: bool,
    pub steps: Vec<Step>,
    /// The name that resolved, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    /// Why the walk ended: `resolved`, `nodata`, `servfail`, `timeout`, `error` (at the last
    /// step asked), `exhausted` (every candidate was NXDOMAIN or not asked), `deadline` (the
    /// lab's time limit), or `no-nameserver`.
    pub ended: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meaning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srv: Option<Srv>,
    pub lesson: String,
}

/// Walks the candidates as a stub resolver does, then asks for the SRV record of the name that
/// resolved. The queries go to `server` when given (`--nameserver`), else to the first
/// nameserver of `resolv.conf` on port 53. The meaning and the lesson are left for the report
/// to fill in.
pub(super) async fn walk(
    name: &str,
    conf: ResolvConf,
    names: &Names,
    server: Option<SocketAddr>,
) -> DnsLab {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let nameserver = conf.nameservers.first().copied();
    let asked = server.or_else(|| nameserver.map(|ip| SocketAddr::new(ip, 53)));
    let cluster_dns = conf.searches_services(&names.cluster_domain);
    let mut lab = DnsLab {
        name: name.to_owned(),
        nameserver,
        asked,
        cluster_dns,
        steps: Vec::new(),
        resolved: None,
        ended: "no-nameserver",
        meaning: None,
        srv: None,
        lesson: String::new(),
        resolv_conf: conf,
    };
    let Some(server) = asked else {
        return lab;
    };
    lab.ended = "exhausted";
    for candidate in lab.resolv_conf.candidates(name) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            lab.steps.push(not_asked(
                candidate,
                format!("the lab's {} s limit was reached", DEADLINE.as_secs()),
            ));
            lab.ended = "deadline";
            break;
        }
        if !names.allows(&candidate) {
            let zone = names.zone().unwrap_or_default();
            lab.steps.push(not_asked(
                candidate,
                format!("outside this lab's scope ({zone})"),
            ));
            continue;
        }
        let mut step = lookup(server, &candidate, left.min(QUERY_TIMEOUT)).await;
        let outcome = step.outcome;
        // A wait the lab's own limit cut short says so, not that the server was silent.
        let cut = outcome == "timeout" && left < QUERY_TIMEOUT;
        if cut {
            step.detail = Some(format!(
                "the lab's {} s limit ended the wait for an answer",
                DEADLINE.as_secs()
            ));
        }
        lab.steps.push(step);
        if cut {
            lab.ended = "deadline";
            break;
        }
        // Only a name that does not exist sends musl on to the next candidate.
        if outcome == "nxdomain" {
            continue;
        }
        if outcome == "addresses" {
            lab.resolved = Some(candidate);
            lab.ended = "resolved";
        } else {
            lab.ended = outcome;
        }
        break;
    }
    if let Some(resolved) = &lab.resolved {
        let srv_name = format!("_http._tcp.{resolved}");
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let srv = match left.is_zero() {
            true => None,
            false => srv(server, &srv_name, left.min(QUERY_TIMEOUT)).await,
        };
        if let Some(records) = srv {
            lab.srv = Some(Srv {
                name: srv_name,
                records,
            });
        }
    }
    lab
}

fn not_asked(name: String, why: String) -> Step {
    Step {
        name,
        outcome: "not-asked",
        addresses: Vec::new(),
        cnames: Vec::new(),
        detail: Some(why),
        queries: 0,
    }
}

/// One candidate, as musl asks it: A and AAAA at once, then the answers looked at in that
/// order — a timeout or SERVFAIL, NXDOMAIN, another error code — before any address is.
async fn lookup(server: SocketAddr, candidate: &str, timeout: Duration) -> Step {
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
    step.queries = 2;
    let (a, aaaa) = tokio::join!(
        query(server, name.clone(), RecordType::A, timeout),
        query(server, name, RecordType::AAAA, timeout),
    );
    let mut answers = Vec::with_capacity(2);
    for (record, answer) in [("A", a), ("AAAA", aaaa)] {
        match answer {
            Err(Failure::Timeout) => {
                step.outcome = "timeout";
                step.detail = Some(format!(
                    "no answer to the {record} query within {:.1} s",
                    timeout.as_secs_f64()
                ));
                return step;
            }
            Err(Failure::Other(e)) => {
                step.detail = Some(e);
                return step;
            }
            Ok(answer) if answer.code == ResponseCode::ServFail => {
                step.outcome = "servfail";
                step.detail = Some(format!("the nameserver failed the {record} query"));
                return step;
            }
            Ok(answer) if answer.code == ResponseCode::NXDomain => {
                step.outcome = "nxdomain";
                return step;
            }
            Ok(answer) if answer.code != ResponseCode::NoError => {
                step.detail = Some(format!(
                    "the nameserver answered {} to the {record} query",
                    answer.code
                ));
                return step;
            }
            Ok(answer) => answers.push(answer),
        }
    }
    for answer in answers {
        for cname in answer.cnames {
            if !step.cnames.contains(&cname) {
                step.cnames.push(cname);
            }
        }
        step.addresses.extend(answer.addresses);
    }
    step.outcome = if step.addresses.is_empty() {
        "nodata"
    } else {
        "addresses"
    };
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

async fn query(
    server: SocketAddr,
    name: Name,
    record_type: RecordType,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
        .with_timeout(Some(timeout))
        .build();
    let (mut client, background) = Client::connect(stream)
        .await
        .map_err(|e| Failure::Other(e.to_string()))?;
    let background = tokio::spawn(background);
    let asked = tokio::time::timeout(
        timeout + Duration::from_millis(200),
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

async fn srv(server: SocketAddr, name: &str, timeout: Duration) -> Option<Vec<String>> {
    let name = Name::from_ascii(name).ok()?;
    let answer = query(server, name, RecordType::SRV, timeout).await.ok()?;
    (!answer.srv.is_empty()).then_some(answer.srv)
}
