//! A per-connection round-robin TCP balancer: a local stand-in for a ClusterIP Service.
//!
//! Like kube-proxy, it picks a backend when a connection opens and then only copies bytes, so
//! every request on a kept-alive connection reaches the same backend. That is the behaviour
//! the spread lab makes visible. Unlike kube-proxy it skips a backend that refuses the
//! connection, as a Service skips endpoints that are not ready.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Error;

pub struct Balancer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Balancer {
    /// Listens on `port` (all addresses, IPv6 and IPv4; 0 picks a free port) and spreads
    /// connections over `backends` in turn.
    pub fn start(port: u16, backends: Vec<SocketAddr>) -> Result<Balancer, Error> {
        assert!(
            !backends.is_empty(),
            "a balancer needs at least one backend"
        );
        let listener =
            TcpListener::from_std(crate::server::bind_dual_stack(port)?).map_err(|source| {
                Error::Bind {
                    addr: SocketAddr::from(([0, 0, 0, 0], port)),
                    source,
                }
            })?;
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let backends: Arc<[SocketAddr]> = backends.into();
        let next = Arc::new(AtomicUsize::new(0));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let first = next.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(forward(client, backends.clone(), first));
            }
        });
        Ok(Balancer { addr, accept })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(mut client: TcpStream, backends: Arc<[SocketAddr]>, first: usize) {
    let Ok(mut backend) = connect_from(&backends, first).await else {
        // Nothing reachable: close, as a Service without ready endpoints refuses.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}

async fn connect_from(backends: &[SocketAddr], first: usize) -> io::Result<TcpStream> {
    let mut last = io::Error::other("no backends");
    for i in 0..backends.len() {
        match TcpStream::connect(backends[(first + i) % backends.len()]).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}
