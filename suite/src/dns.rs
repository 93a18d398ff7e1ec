//! The suite's cluster DNS: the zone `cluster.local.` as a cluster's DNS (CoreDNS) answers it
//! for namespace `kiada`, served on a loopback port over UDP and TCP, so that kiada's DNS lab
//! walks its search list against real answers.
//!
//! hickory-server does the DNS protocol (both transports, parsing, the response's sections);
//! the answers come from the records the cluster has at the moment of each query, so a
//! headless Service's answer follows readiness as it does in a cluster. A CNAME is answered
//! with its target's records in the answer section, as CoreDNS answers an ExternalName, since
//! a stub resolver such as musl reads only that section. Names outside `cluster.local.` are
//! refused: this DNS forwards nothing.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::ServerFuture;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, CNAME, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tokio::task::JoinHandle;

/// The cluster domain and the namespace the suite's Services live in.
pub const CLUSTER_DOMAIN: &str = "cluster.local";
pub const NAMESPACE: &str = "kiada";
/// The TTL of every answer, CoreDNS's default for the kubernetes plugin.
pub const TTL: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cluster DNS: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// `NAME.kiada.svc.cluster.local.`
pub fn service_name(service: &str) -> Name {
    Name::from_ascii(format!("{service}.{NAMESPACE}.svc.{CLUSTER_DOMAIN}."))
        .expect("a Service name of the suite is a DNS name")
}

/// What the zone holds now, asked at every query.
pub type Records = Arc<dyn Fn() -> Vec<Record> + Send + Sync>;

/// The zone's records as a cluster DNS has them for Services.
pub fn a(name: &Name, ip: Ipv4Addr) -> Record {
    Record::from_rdata(name.clone(), TTL, RData::A(A(ip)))
}

pub fn srv(name: &Name, port: u16, weight: u16, target: &Name) -> Record {
    Record::from_rdata(
        name.clone(),
        TTL,
        RData::SRV(SRV::new(0, weight, port, target.clone())),
    )
}

pub fn cname(name: &Name, target: &Name) -> Record {
    Record::from_rdata(name.clone(), TTL, RData::CNAME(CNAME(target.clone())))
}

/// The sockets, bound before anything serves.
pub struct Sockets {
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
}

impl Sockets {
    /// UDP and TCP on the same port of 127.0.0.1; 0 picks one free for both.
    pub fn bind(port: u16) -> Result<Sockets, DnsError> {
        let error = |port: u16| {
            move |source| DnsError::Bind {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                source,
            }
        };
        // With a free port, the one UDP gets may be taken for TCP: a few tries.
        let mut last = None;
        for _ in 0..if port == 0 { 8 } else { 1 } {
            let udp =
                std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).map_err(error(port))?;
            let bound = udp.local_addr().map_err(error(port))?.port();
            match std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, bound)) {
                Ok(tcp) => {
                    udp.set_nonblocking(true).map_err(error(bound))?;
                    tcp.set_nonblocking(true).map_err(error(bound))?;
                    return Ok(Sockets { udp, tcp });
                }
                Err(e) => last = Some(error(bound)(e)),
            }
        }
        Err(last.expect("at least one try"))
    }

    pub fn addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .expect("a bound socket has an address")
    }
}

/// The DNS serving; stops when dropped.
pub struct ClusterDns {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ClusterDns {
    pub fn serve(sockets: Sockets, records: Records) -> Result<ClusterDns, DnsError> {
        let addr = sockets.addr();
        let error = |source| DnsError::Bind { addr, source };
        let udp = tokio::net::UdpSocket::from_std(sockets.udp).map_err(error)?;
        let tcp = tokio::net::TcpListener::from_std(sockets.tcp).map_err(error)?;
        let mut server = ServerFuture::new(Zone::new(records));
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5));
        let task = tokio::spawn(async move {
            if let Err(e) = server.block_until_done().await {
                tracing::warn!("cluster DNS: {e}");
            }
        });
        tracing::info!(%addr, "cluster DNS: serving {CLUSTER_DOMAIN} for namespace {NAMESPACE}");
        Ok(ClusterDns { addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ClusterDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers queries from the records the cluster has now.
struct Zone {
    origin: LowerName,
    soa: Record,
    records: Records,
}

/// An answer: its code, the answer section, and the SOA for a negative one.
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub negative: bool,
}

impl Zone {
    fn new(records: Records) -> Zone {
        let origin = Name::from_ascii(format!("{CLUSTER_DOMAIN}.")).expect("the cluster domain");
        let soa = SOA::new(
            Name::from_ascii(format!("ns.dns.{CLUSTER_DOMAIN}.")).expect("a name"),
            Name::from_ascii(format!("hostmaster.{CLUSTER_DOMAIN}.")).expect("a name"),
            1,
            7200,
            1800,
            86400,
            TTL,
        );
        Zone {
            origin: LowerName::new(&origin),
            soa: Record::from_rdata(origin, TTL, RData::SOA(soa)),
            records,
        }
    }

    /// How a cluster DNS answers `name` for `kind`: the records of that type, a CNAME followed
    /// to its target's records (within the zone), NODATA for a name that exists without such
    /// records (or has names below it), NXDOMAIN for one that does not, REFUSED outside the
    /// zone.
    fn answer(&self, name: &LowerName, kind: RecordType) -> Answer {
        if !self.origin.zone_of(name) {
            return Answer {
                code: ResponseCode::Refused,
                answers: Vec::new(),
                negative: false,
            };
        }
        let records = (self.records)();
        let mut answers: Vec<Record> = Vec::new();
        let mut at = name.clone();
        // A chain of aliases ends within a few steps; a loop must not run for ever.
        for _ in 0..8 {
            let here: Vec<&Record> = records
                .iter()
                .filter(|r| LowerName::new(r.name()) == at)
                .collect();
            if kind != RecordType::CNAME
                && let Some(alias) = here.iter().find(|r| r.record_type() == RecordType::CNAME)
            {
                answers.push((*alias).clone());
                let Some(RData::CNAME(CNAME(target))) = Some(alias.data()) else {
                    break;
                };
                at = LowerName::new(target);
                if !self.origin.zone_of(&at) {
                    break;
                }
                continue;
            }
            let matching = here
                .iter()
                .filter(|r| kind == RecordType::ANY || r.record_type() == kind)
                .map(|r| (*r).clone());
            answers.extend(matching);
            if answers.is_empty() {
                // Also an empty non-terminal (svc.cluster.local., _tcp.quote…): NODATA.
                let exists = !here.is_empty()
                    || records.iter().any(|r| {
                        let below = LowerName::new(r.name());
                        below != at && at.zone_of(&below)
                    })
                    || at == self.origin;
                return Answer {
                    code: if exists {
                        ResponseCode::NoError
                    } else {
                        ResponseCode::NXDomain
                    },
                    answers,
                    negative: true,
                };
            }
            break;
        }
        let negative = answers.is_empty();
        Answer {
            code: ResponseCode::NoError,
            answers,
            negative,
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Zone {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(true);
        header.set_recursion_available(false);
        let query = match request.request_info() {
            Ok(info)
                if request.message_type() == MessageType::Query
                    && request.op_code() == OpCode::Query =>
            {
                info.query.clone()
            }
            _ => {
                let refusal = builder.error_msg(request.header(), ResponseCode::NotImp);
                return send(&mut response, refusal, request.header()).await;
            }
        };
        let answer = self.answer(query.name(), query.query_type());
        header.set_response_code(answer.code);
        let soa = answer.negative.then_some(&self.soa);
        let message = builder.build(header, answer.answers.iter(), [], soa, []);
        send(&mut response, message, request.header()).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Header,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("cluster DNS: cannot answer: {e}");
            let mut header = Header::response_from_request(request);
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        let quote = service_name("quote");
        let quiz = service_name("quiz");
        let headless = service_name("quote-headless");
        let srv_name = Name::from_ascii("_http._tcp.quote.kiada.svc.cluster.local.").unwrap();
        let records = vec![
            a(&quote, Ipv4Addr::new(127, 0, 10, 1)),
            srv(&srv_name, 8081, 100, &quote),
            a(&quiz, Ipv4Addr::new(127, 0, 10, 2)),
            a(&headless, Ipv4Addr::new(127, 0, 1, 1)),
            a(&headless, Ipv4Addr::new(127, 0, 1, 2)),
            cname(&service_name("quiz-alias"), &quiz),
        ];
        Zone::new(Arc::new(move || records.clone()))
    }

    fn ask(zone: &Zone, name: &str, kind: RecordType) -> Answer {
        zone.answer(&LowerName::new(&Name::from_ascii(name).unwrap()), kind)
    }

    #[test]
    fn the_zone_answers_as_a_cluster_dns_does() {
        let z = zone();
        let quote = ask(&z, "Quote.kiada.svc.cluster.local.", RecordType::A);
        assert_eq!(quote.code, ResponseCode::NoError);
        assert_eq!(quote.answers.len(), 1);
        assert_eq!(
            ask(&z, "quote-headless.kiada.svc.cluster.local.", RecordType::A)
                .answers
                .len(),
            2
        );
        // An A name asked for AAAA: it exists, without such records.
        let aaaa = ask(&z, "quote.kiada.svc.cluster.local.", RecordType::AAAA);
        assert_eq!((aaaa.code, aaaa.negative), (ResponseCode::NoError, true));
        let srv = ask(
            &z,
            "_http._tcp.quote.kiada.svc.cluster.local.",
            RecordType::SRV,
        );
        assert_eq!(srv.answers.len(), 1);
        // The alias and its target's address, both in the answer section.
        let alias = ask(&z, "quiz-alias.kiada.svc.cluster.local.", RecordType::A);
        let kinds: Vec<RecordType> = alias.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(kinds, [RecordType::CNAME, RecordType::A]);
        let missing = ask(&z, "quote.svc.cluster.local.", RecordType::A);
        assert_eq!(missing.code, ResponseCode::NXDomain);
        assert!(missing.negative);
        // A name with names below it exists: NODATA, where a stub resolver stops.
        let between = ask(&z, "svc.cluster.local.", RecordType::A);
        assert_eq!(between.code, ResponseCode::NoError);
        let tcp = ask(&z, "_tcp.quote.kiada.svc.cluster.local.", RecordType::A);
        assert_eq!(tcp.code, ResponseCode::NoError);
        assert_eq!(
            ask(&z, "example.com.", RecordType::A).code,
            ResponseCode::Refused
        );
    }
}
