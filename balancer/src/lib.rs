//! A per-connection TCP balancer: a local stand-in for a ClusterIP Service, made the way
//! kube-proxy makes one.
//!
//! It picks an endpoint when a connection opens and then only copies bytes, so every request on
//! a kept-alive connection reaches the same endpoint: the behaviour the spread lab makes
//! visible. The pick is [`Mode::Random`], a ready endpoint at random, as the rules of
//! kube-proxy's iptables and nftables modes choose one, or [`Mode::RoundRobin`], in turn, as
//! IPVS's default scheduler does. (Random ends an aliasing that round robin has: two clients
//! calling at the same interval take alternate turns, and each sees only some of the pods.)
//!
//! Started with a [`Probe`], it also follows readiness the way a Service's endpoints do: each
//! endpoint's readiness URL is asked every period, an endpoint that fails `failure_threshold`
//! probes in a row gets no new connections until one succeeds, and connections already open
//! stay where they are, as conntrack keeps them. Then, as with kube-proxy, an endpoint that
//! vanishes without failing its probe first still gets connections until the next probes
//! notice: those fail, which is what a shutdown delay prevents. Without a probe every endpoint
//! counts as ready, and one that refuses a connection is skipped for the next, the nearest a
//! balancer without readiness can come to "only ready endpoints".
//!
//! While no endpoint is ready the listener is closed, so that a connection is refused, as
//! kube-proxy's REJECT rule for a Service without ready endpoints refuses it; it listens again
//! on the same address as soon as one is ready. Endpoints can be added and removed while it runs
//! (a rollout, a deleted pod): a removed one gets no new connections, and its open ones stay.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use kit::Error;

/// A readiness probe for every endpoint, as a pod's readinessProbe with `httpGet`.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The HTTP path asked on each endpoint's own address (`/healthz/ready`).
    pub path: &'static str,
    /// How often each endpoint is asked; all are asked at once.
    pub period: Duration,
    /// How long an answer may take; no answer in time is a failure.
    pub timeout: Duration,
    /// Failed probes in a row before an endpoint gets no new connections. One success puts it
    /// back.
    pub failure_threshold: u32,
}

impl Default for Probe {
    /// `GET /healthz/ready` every second, 1 s timeout, out after one failure: the suite's pods
    /// leave within a second, where the manifests' probe takes 15 s.
    fn default() -> Self {
        Probe {
            path: "/healthz/ready",
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            failure_threshold: 1,
        }
    }
}

/// How a new connection's endpoint is chosen among the ready ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// One at random, as kube-proxy's iptables (and nftables) rules choose.
    #[default]
    Random,
    /// Each in turn, as IPVS's default scheduler (`rr`) does.
    RoundRobin,
}

/// One backend: a pod of the Service, by name and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// What the balancer's log lines call it (`quote-2`).
    pub name: String,
    pub addr: SocketAddr,
    /// Where its readiness probe is asked, when not at `addr`: a pod's readiness holds for all
    /// its ports, so an HTTPS port is probed on the pod's HTTP port, as the manifests' probe is.
    pub probe_addr: Option<SocketAddr>,
}

impl Endpoint {
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Endpoint {
        Endpoint {
            name: name.into(),
            addr,
            probe_addr: None,
        }
    }
}

/// How a balancer behaves.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub mode: Mode,
    /// `None`: every endpoint counts as ready.
    pub probe: Option<Probe>,
    /// The Service it stands for, in its log lines (`quote`).
    pub service: String,
}

/// One endpoint as the balancer sees it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointStatus {
    pub name: String,
    pub addr: SocketAddr,
    /// Whether it gets new connections.
    pub ready: bool,
    /// Connections open to it through the balancer.
    pub open: usize,
    /// Connections it was given since it was added.
    pub connections: u64,
    /// What its last probe answer said in `X-Pod-State` (`ready`, `disabled`, `draining`,
    /// `fault`), if it said anything.
    pub state: Option<String>,
}

/// A listening socket for a balancer, bound before the balancer serves: a port in use stops a
/// start before anything runs.
pub struct Listener {
    listener: std::net::TcpListener,
    bind: Bind,
}

/// How to listen again after the listener was closed for want of ready endpoints.
#[derive(Clone, Copy, Debug)]
enum Bind {
    /// All addresses, IPv6 and IPv4, on this port.
    DualStack(u16),
    At(SocketAddr),
}

impl Listener {
    /// All addresses (IPv6 and IPv4) on `port`; 0 picks a free port.
    pub fn bind(port: u16) -> Result<Listener, Error> {
        let listener = kit::bind_dual_stack(port)?;
        let port = listener.local_addr().map_or(port, |a| a.port());
        Ok(Listener {
            listener,
            bind: Bind::DualStack(port),
        })
    }

    /// One address only: several balancers can then share a port on loopback addresses of
    /// their own, as Services share port 80 on their virtual IPs.
    pub fn bind_at(addr: SocketAddr) -> Result<Listener, Error> {
        let listener = bind_at(addr)?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(Listener {
            listener,
            bind: Bind::At(addr),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }
}

fn bind_at(addr: SocketAddr) -> Result<std::net::TcpListener, Error> {
    std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| Error::Bind { addr, source })
}

impl Bind {
    fn listen(self) -> Result<std::net::TcpListener, Error> {
        match self {
            Bind::DualStack(port) => kit::bind_dual_stack(port),
            Bind::At(addr) => bind_at(addr),
        }
    }
}

pub struct Balancer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// The endpoints and how connections are spread over them.
struct Shared {
    service: String,
    mode: Mode,
    probed: bool,
    endpoints: RwLock<Vec<Arc<Slot>>>,
    /// Turns taken, for round robin.
    next: AtomicUsize,
    /// How many endpoints are ready: the accept loop closes the listener at zero.
    ready_count: watch::Sender<usize>,
}

struct Slot {
    name: String,
    addr: SocketAddr,
    probe_addr: SocketAddr,
    ready: AtomicBool,
    failures: AtomicU32,
    open: AtomicUsize,
    connections: AtomicU64,
    state: Mutex<Option<String>>,
}

impl Slot {
    fn new(endpoint: Endpoint, ready: bool) -> Arc<Slot> {
        Arc::new(Slot {
            probe_addr: endpoint.probe_addr.unwrap_or(endpoint.addr),
            name: endpoint.name,
            addr: endpoint.addr,
            ready: AtomicBool::new(ready),
            failures: AtomicU32::new(0),
            open: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            state: Mutex::new(None),
        })
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn slots(&self) -> Vec<Arc<Slot>> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn ready_slots(&self) -> Vec<Arc<Slot>> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.is_ready())
            .cloned()
            .collect()
    }

    /// Tells the accept loop how many endpoints are ready now.
    fn recount(&self) {
        let count = self.ready_slots().len();
        self.ready_count.send_if_modified(|n| {
            let changed = *n != count;
            *n = count;
            changed
        });
    }

    fn label(&self) -> &str {
        if self.service.is_empty() {
            "balancer"
        } else {
            &self.service
        }
    }
}

impl Balancer {
    /// Listens on `port` (all addresses, IPv6 and IPv4; 0 picks a free port) and spreads
    /// connections over `backends` in turn (round robin), skipping one that refuses.
    pub fn start(port: u16, backends: Vec<SocketAddr>) -> Result<Balancer, Error> {
        Ok(Self::serve(
            Listener::bind(port)?,
            named(backends),
            Options {
                mode: Mode::RoundRobin,
                ..Options::default()
            },
        ))
    }

    /// Like [`Balancer::start`], but new connections go only to backends whose readiness
    /// probe passes, as a Service's traffic goes only to ready endpoints.
    pub fn start_probed(
        port: u16,
        backends: Vec<SocketAddr>,
        probe: Probe,
    ) -> Result<Balancer, Error> {
        Ok(Self::serve(
            Listener::bind(port)?,
            named(backends),
            Options {
                mode: Mode::RoundRobin,
                probe: Some(probe),
                ..Options::default()
            },
        ))
    }

    /// Like [`Balancer::start`], on one address only: several balancers can then share a port
    /// on loopback addresses of their own, as Services share port 80 on their virtual IPs.
    pub fn start_at(addr: SocketAddr, backends: Vec<SocketAddr>) -> Result<Balancer, Error> {
        Ok(Self::serve(
            Listener::bind_at(addr)?,
            named(backends),
            Options {
                mode: Mode::RoundRobin,
                ..Options::default()
            },
        ))
    }

    /// Serves on a bound listener. The endpoints given here count as ready from the start
    /// (until a probe says otherwise); with none, connections are refused until one is
    /// [added](Balancer::add) and ready.
    pub fn serve(listener: Listener, endpoints: Vec<Endpoint>, options: Options) -> Balancer {
        let Listener { listener, bind } = listener;
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let slots: Vec<Arc<Slot>> = endpoints.into_iter().map(|e| Slot::new(e, true)).collect();
        let (ready_count, _) = watch::channel(slots.len());
        let shared = Arc::new(Shared {
            service: options.service,
            mode: options.mode,
            probed: options.probe.is_some(),
            endpoints: RwLock::new(slots),
            next: AtomicUsize::new(0),
            ready_count,
        });
        let mut tasks = vec![tokio::spawn(accept(listener, bind, shared.clone()))];
        if let Some(probe) = options.probe {
            tasks.push(tokio::spawn(follow_readiness(shared.clone(), probe)));
        }
        Balancer {
            addr,
            shared,
            tasks,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    /// Whether each endpoint, in the order given and added, gets new connections now.
    pub fn ready(&self) -> Vec<bool> {
        self.shared.slots().iter().map(|s| s.is_ready()).collect()
    }

    /// Adds an endpoint. With a probe it gets connections once a probe has passed, as a new
    /// pod joins its Service's endpoints when it is ready; without one, at once.
    pub fn add(&self, endpoint: Endpoint) {
        let slot = Slot::new(endpoint, !self.shared.probed);
        self.shared
            .endpoints
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
        self.shared.recount();
    }

    /// Removes an endpoint by name: no new connections; the open ones stay where they are.
    /// Says whether there was one of that name.
    pub fn remove(&self, name: &str) -> bool {
        let removed = {
            let mut slots = self
                .shared
                .endpoints
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let before = slots.len();
            slots.retain(|s| s.name != name);
            slots.len() != before
        };
        self.shared.recount();
        removed
    }

    /// Every endpoint now, in the order given and added.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.shared
            .slots()
            .iter()
            .map(|s| EndpointStatus {
                name: s.name.clone(),
                addr: s.addr,
                ready: s.is_ready(),
                open: s.open.load(Ordering::Relaxed),
                connections: s.connections.load(Ordering::Relaxed),
                state: s.state.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            })
            .collect()
    }

    /// The endpoint of that name now, if there is one.
    pub fn endpoint(&self, name: &str) -> Option<EndpointStatus> {
        self.endpoints().into_iter().find(|e| e.name == name)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Backends given by address only are named by it.
fn named(backends: Vec<SocketAddr>) -> Vec<Endpoint> {
    backends
        .into_iter()
        .map(|addr| Endpoint::new(addr.to_string(), addr))
        .collect()
}

/// Accepts while some endpoint is ready; closes the listener while none is (connections are
/// then refused) and listens again when one is.
async fn accept(listener: std::net::TcpListener, bind: Bind, shared: Arc<Shared>) {
    let mut ready = shared.ready_count.subscribe();
    let mut listener = TcpListener::from_std(listener).ok();
    loop {
        let count = *ready.borrow_and_update();
        if count == 0 {
            if listener.take().is_some() {
                tracing::info!(
                    service = shared.label(),
                    "balancer: no ready endpoint; new connections are refused"
                );
            }
            if ready.changed().await.is_err() {
                return;
            }
            continue;
        }
        if listener.is_none() {
            let relistened = bind.listen().and_then(|l| {
                let addr = l
                    .local_addr()
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                TcpListener::from_std(l).map_err(|source| Error::Bind { addr, source })
            });
            match relistened {
                Ok(l) => {
                    tracing::info!(
                        service = shared.label(),
                        "balancer: an endpoint is ready; accepting connections again"
                    );
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::warn!(service = shared.label(), "balancer: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let Some(current) = listener.as_ref() else {
            continue;
        };
        tokio::select! {
            accepted = current.accept() => match accepted {
                Ok((client, _)) => {
                    tokio::spawn(forward(client, shared.clone()));
                }
                // Out of descriptors, say: a moment before the next try, not a busy loop.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            changed = ready.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Counts a connection open to its endpoint while it lives.
struct Open(Arc<Slot>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn forward(mut client: TcpStream, shared: Arc<Shared>) {
    let Ok((slot, mut backend)) = connect(&shared).await else {
        // The endpoint chosen is not listening (gone before its probe said so): reset the
        // client's connection, the nearest a proxy that has accepted it can come to the
        // refusal the client would get from a pod's closed port behind kube-proxy's rules.
        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
        return;
    };
    slot.connections.fetch_add(1, Ordering::Relaxed);
    slot.open.fetch_add(1, Ordering::Relaxed);
    let _open = Open(slot);
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}

/// Connects to a ready endpoint chosen by the mode. Round robin counts turns over the ready
/// ones only, which keeps the spread even when one is out (skipping it in a fixed ring would
/// double its neighbour's share).
async fn connect(shared: &Shared) -> io::Result<(Arc<Slot>, TcpStream)> {
    let ready = shared.ready_slots();
    if ready.is_empty() {
        return Err(io::Error::other("no ready endpoints"));
    }
    let first = match shared.mode {
        Mode::Random => fastrand::usize(..ready.len()),
        Mode::RoundRobin => shared.next.fetch_add(1, Ordering::Relaxed) % ready.len(),
    };
    if shared.probed {
        // As kube-proxy: the endpoint is in the rules until its probe says otherwise.
        let slot = ready[first].clone();
        let stream = TcpStream::connect(slot.addr).await?;
        return Ok((slot, stream));
    }
    let mut last = io::Error::other("no endpoints");
    for i in 0..ready.len() {
        let slot = &ready[(first + i) % ready.len()];
        match TcpStream::connect(slot.addr).await {
            Ok(stream) => return Ok((slot.clone(), stream)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Probes every endpoint each period, all at once, and updates which ones are ready.
async fn follow_readiness(shared: Arc<Shared>, probe: Probe) {
    let mut ticks = tokio::time::interval(probe.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let threshold = probe.failure_threshold.max(1);
    loop {
        ticks.tick().await;
        let slots = shared.slots();
        let checks: Vec<_> = slots
            .iter()
            .map(|slot| {
                let probe = probe.clone();
                let addr = slot.probe_addr;
                tokio::spawn(async move {
                    tokio::time::timeout(probe.timeout, ask(addr, probe.path))
                        .await
                        .unwrap_or(Err(io::ErrorKind::TimedOut.into()))
                })
            })
            .collect();
        for (slot, check) in slots.iter().zip(checks) {
            let answer = check.await.ok().and_then(Result::ok);
            if let Some(state) = answer.as_ref().and_then(|a| a.state.clone()) {
                *slot.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
            }
            let passed = answer.is_some_and(|a| a.passed);
            let failures = match passed {
                true => 0,
                false => slot.failures.load(Ordering::Relaxed).saturating_add(1),
            };
            slot.failures.store(failures, Ordering::Relaxed);
            let ready = failures < threshold;
            let was = slot.ready.swap(ready, Ordering::Relaxed);
            match (was, ready) {
                (true, false) => tracing::info!(
                    service = shared.label(),
                    endpoint = %slot.name,
                    "balancer: readiness probe failed; no new connections to this endpoint"
                ),
                (false, true) => tracing::info!(
                    service = shared.label(),
                    endpoint = %slot.name,
                    "balancer: readiness probe passed; the endpoint gets new connections"
                ),
                _ => {}
            }
        }
        shared.recount();
    }
}

/// What a probe's answer said.
struct ProbeAnswer {
    passed: bool,
    state: Option<String>,
}

/// Most of an answer's head a probe reads.
const PROBE_HEAD_LIMIT: usize = 4096;

/// One probe: `GET path` over a connection of its own; passes on a status from 200 to 399, as
/// the kubelet's `httpGet` does (the suite's probes answer 200 or 503), and notes the
/// `X-Pod-State` the answer carries.
async fn ask(addr: SocketAddr, path: &str) -> io::Result<ProbeAnswer> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < PROBE_HEAD_LIMIT {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(parse_head(&head))
}

fn parse_head(head: &[u8]) -> ProbeAnswer {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    // `HTTP/1.1 200 OK`
    let status = lines.next().unwrap_or_default();
    let passed = status.starts_with("HTTP/1.")
        && status
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .is_some_and(|code| (200..400).contains(&code));
    let state = lines
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("x-pod-state")
                .then(|| value.trim().to_owned())
        })
        .filter(|v| v.len() <= 16 && v.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'));
    ProbeAnswer { passed, state }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_answer_is_read_for_its_status_and_pod_state() {
        let ok = parse_head(b"HTTP/1.1 200 OK\r\nX-Pod-State: disabled\r\n\r\n");
        assert!(ok.passed);
        assert_eq!(ok.state.as_deref(), Some("disabled"));
        let down = parse_head(b"HTTP/1.1 503 Service Unavailable\r\nx-pod-state: draining\r\n\r\n");
        assert!(!down.passed);
        assert_eq!(down.state.as_deref(), Some("draining"));
        assert!(parse_head(b"HTTP/1.1 302 Found\r\n\r\n").passed);
        assert!(!parse_head(b"HTTP/1.1 404 Not Found\r\n\r\n").passed);
        assert!(!parse_head(b"garbage").passed);
        // Nothing odd is kept from a header.
        let odd = parse_head(b"HTTP/1.1 200 OK\r\nX-Pod-State: <b>x</b>\r\n\r\n");
        assert_eq!(odd.state, None);
        // A header after the head's end is not the head's.
        let body = parse_head(b"HTTP/1.1 200 OK\r\n\r\nX-Pod-State: fault\r\n");
        assert_eq!(body.state, None);
    }
}
