//! The resolver every backend client of kiada uses: it asks the system resolver (or one a test
//! gives) and records what each backend name resolved to, so the pages can say so without a
//! query of their own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What the resolver answered for each backend host name, the last time it was asked (when a
/// connection was opened).
#[derive(Clone, Default)]
pub struct Resolutions {
    seen: Arc<RwLock<HashMap<String, Arc<[IpAddr]>>>>,
}

/// A handful of backend hosts; a bound all the same.
const MAX_HOSTS: usize = 64;

impl Resolutions {
    pub fn get(&self, host: &str) -> Option<Arc<[IpAddr]>> {
        self.seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            .cloned()
    }

    fn record(&self, host: String, addrs: &[SocketAddr]) {
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.len() < MAX_HOSTS || seen.contains_key(&host) {
            seen.insert(host, addrs.iter().map(SocketAddr::ip).collect());
        }
    }

    /// A resolver for reqwest that asks `inner` (the system resolver when `None`) and records
    /// the answer.
    pub fn resolver(&self, inner: Option<Arc<dyn Resolve>>) -> Arc<dyn Resolve> {
        Arc::new(Recording {
            inner,
            resolutions: self.clone(),
        })
    }
}

struct Recording {
    inner: Option<Arc<dyn Resolve>>,
    resolutions: Resolutions,
}

impl Resolve for Recording {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let inner = self.inner.clone();
        let resolutions = self.resolutions.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match inner {
                Some(inner) => inner.resolve(name).await?.collect(),
                // What reqwest does by default: getaddrinfo on a blocking thread.
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            resolutions.record(host, &addrs);
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
