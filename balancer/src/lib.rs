//! A per-connection round-robin TCP balancer: a local stand-in for a ClusterIP Service.
//!
//! Like kube-proxy, it picks a backend when a connection opens and then only copies bytes, so
//! every request on a kept-alive connection reaches the same backend. That is the behaviour
//! the spread lab makes visible.
//!
//! Started with a [`Probe`], it also follows readiness the way a Service's endpoints do: each
//! backend's readiness URL is asked every period, a backend that fails `failure_threshold`
//! probes in a row gets no new connections until one succeeds, and connections already open
//! stay where they are. Then, as with kube-proxy, a backend that vanishes without failing its
//! probe first still gets connections until the next probes notice: those fail, which is what
//! a shutdown delay prevents. Without a probe every backend counts as ready, and one that
//! refuses a connection is skipped for the next, the nearest a balancer without readiness can
//! come to "only ready endpoints".

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use kit::Error;

/// A readiness probe for every backend, as a pod's readinessProbe with `httpGet`.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The HTTP path asked on each backend's own address (`/healthz/ready`).
    pub path: &'static str,
    /// How often each backend is asked.
    pub period: Duration,
    /// How long an answer may take; no answer in time is a failure.
    pub timeout: Duration,
    /// Failed probes in a row before a backend gets no new connections. One success puts it
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

pub struct Balancer {
    addr: SocketAddr,
    backends: Arc<Backends>,
    tasks: Vec<JoinHandle<()>>,
}

/// The backends and whether each passes its probe now.
struct Backends {
    addrs: Vec<SocketAddr>,
    ready: Vec<AtomicBool>,
    probed: bool,
}

impl Balancer {
    /// Listens on `port` (all addresses, IPv6 and IPv4; 0 picks a free port) and spreads
    /// connections over `backends` in turn, skipping one that refuses.
    pub fn start(port: u16, backends: Vec<SocketAddr>) -> Result<Balancer, Error> {
        Self::launch(port, backends, None)
    }

    /// Like [`Balancer::start`], but new connections go only to backends whose readiness
    /// probe passes, as a Service's traffic goes only to ready endpoints.
    pub fn start_probed(
        port: u16,
        backends: Vec<SocketAddr>,
        probe: Probe,
    ) -> Result<Balancer, Error> {
        Self::launch(port, backends, Some(probe))
    }

    /// Like [`Balancer::start`], on one address only: several balancers can then share a port
    /// on loopback addresses of their own, as Services share port 80 on their virtual IPs.
    pub fn start_at(addr: SocketAddr, backends: Vec<SocketAddr>) -> Result<Balancer, Error> {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| Error::Bind { addr, source })?;
        Self::serve(listener, backends, None)
    }

    fn launch(
        port: u16,
        backends: Vec<SocketAddr>,
        probe: Option<Probe>,
    ) -> Result<Balancer, Error> {
        Self::serve(kit::bind_dual_stack(port)?, backends, probe)
    }

    fn serve(
        listener: std::net::TcpListener,
        backends: Vec<SocketAddr>,
        probe: Option<Probe>,
    ) -> Result<Balancer, Error> {
        assert!(
            !backends.is_empty(),
            "a balancer needs at least one backend"
        );
        let bound = listener.local_addr().ok();
        let listener = TcpListener::from_std(listener).map_err(|source| Error::Bind {
            addr: bound.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
            source,
        })?;
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let backends = Arc::new(Backends {
            ready: backends.iter().map(|_| AtomicBool::new(true)).collect(),
            addrs: backends,
            probed: probe.is_some(),
        });
        let mut tasks = vec![tokio::spawn(accept(listener, backends.clone()))];
        if let Some(probe) = probe {
            tasks.push(tokio::spawn(follow_readiness(backends.clone(), probe)));
        }
        Ok(Balancer {
            addr,
            backends,
            tasks,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// Whether each backend, in the order given, gets new connections now.
    pub fn ready(&self) -> Vec<bool> {
        self.backends
            .ready
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn accept(listener: TcpListener, backends: Arc<Backends>) {
    let next = AtomicUsize::new(0);
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let turn = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(forward(client, backends.clone(), turn));
    }
}

async fn forward(mut client: TcpStream, backends: Arc<Backends>, turn: usize) {
    let Ok(mut backend) = connect(&backends, turn).await else {
        // Nothing reachable: close, as a Service without ready endpoints refuses.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}

/// Connects to the ready backend whose turn it is. Counting turns over the ready ones only
/// keeps the spread even when one is out (skipping it in a fixed ring would double its
/// neighbour's share).
async fn connect(backends: &Backends, turn: usize) -> io::Result<TcpStream> {
    let ready: Vec<SocketAddr> = backends
        .addrs
        .iter()
        .zip(&backends.ready)
        .filter(|(_, r)| r.load(Ordering::Relaxed))
        .map(|(a, _)| *a)
        .collect();
    if ready.is_empty() {
        return Err(io::Error::other("no ready backends"));
    }
    let chosen = ready[turn % ready.len()];
    if backends.probed {
        // As kube-proxy: the endpoint is in the rules until its probe says otherwise.
        return TcpStream::connect(chosen).await;
    }
    let mut last = io::Error::other("no backends");
    for i in 0..ready.len() {
        match TcpStream::connect(ready[(turn + i) % ready.len()]).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Probes every backend each period, all at once, and updates which ones are ready.
async fn follow_readiness(backends: Arc<Backends>, probe: Probe) {
    let mut failures = vec![0u32; backends.addrs.len()];
    let mut ticks = tokio::time::interval(probe.period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let checks = backends.addrs.iter().map(|addr| {
            let probe = probe.clone();
            let addr = *addr;
            tokio::spawn(async move {
                tokio::time::timeout(probe.timeout, ask(addr, probe.path))
                    .await
                    .unwrap_or(Err(io::ErrorKind::TimedOut.into()))
            })
        });
        let checks: Vec<_> = checks.collect();
        for (i, check) in checks.into_iter().enumerate() {
            let passed = matches!(check.await, Ok(Ok(true)));
            failures[i] = if passed { 0 } else { failures[i] + 1 };
            let ready = failures[i] < probe.failure_threshold.max(1);
            let was = backends.ready[i].swap(ready, Ordering::Relaxed);
            let addr = backends.addrs[i];
            match (was, ready) {
                (true, false) => tracing::info!(
                    backend = %addr,
                    "balancer: readiness probe failed; no new connections to this backend"
                ),
                (false, true) => tracing::info!(
                    backend = %addr,
                    "balancer: readiness probe passed; the backend gets connections again"
                ),
                _ => {}
            }
        }
    }
}

/// One probe: `GET path` over a connection of its own; passes on a status from 200 to 399, as
/// the kubelet's `httpGet` does (the suite's probes answer 200 or 503).
async fn ask(addr: SocketAddr, path: &str) -> io::Result<bool> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    // The status line is all that matters: `HTTP/1.1 200 OK`.
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    Ok(head.starts_with(b"HTTP/1.") && (b'2'..=b'3').contains(&head[9]))
}
