//! The walk: each candidate name asked of the nameserver, in order, until one resolves; then
//! the SRV record of the port named `http`.

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
    /// `timeout`, `error`, or `not-asked` (outside the lab's scope).
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

/// Walks the candidates as a stub resolver does, then asks for the SRV record of the name that
/// resolved. The meaning and the lesson are left for the report to fill in.
pub(super) async fn walk(name: &str, conf: ResolvConf, names: &Names) -> DnsLab {
    let deadline = tokio::time::Instant::now() + DEADLINE;
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
        return lab;
    };
    let server = SocketAddr::new(server, 53);
    for candidate in lab.resolv_conf.candidates(name) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            lab.steps.push(Step {
                name: candidate,
                outcome: "timeout",
                addresses: Vec::new(),
                cnames: Vec::new(),
                detail: Some(format!(
                    "not asked: the lab's {} s limit was reached",
                    DEADLINE.as_secs()
                )),
                queries: 0,
            });
            break;
        }
        if !names.allows(&candidate) {
            let zone = names.zone().unwrap_or_default();
            lab.steps.push(Step {
                name: candidate,
                outcome: "not-asked",
                addresses: Vec::new(),
                cnames: Vec::new(),
                detail: Some(format!("outside this lab's scope ({zone})")),
                queries: 0,
            });
            continue;
        }
        let step = lookup(server, &candidate, left.min(QUERY_TIMEOUT)).await;
        let found = step.outcome == "addresses";
        lab.steps.push(step);
        if found {
            lab.resolved = Some(candidate);
            break;
        }
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
    for record_type in [RecordType::A, RecordType::AAAA] {
        step.queries += 1;
        match query(server, name.clone(), record_type, timeout).await {
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
                step.detail = Some(format!("no answer within {} s", timeout.as_secs_f64()));
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
