//! What the labs' routes read: the backends (only the configured ones are ever called), who
//! this pod is, the limits every lab shares, the resolver configuration, and whether the page
//! shows the local suite's pods.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::check::targets::Targets;
use super::dns::scope::Names;
use super::limits::Limits;
use crate::backends::{Backend, Backends};

#[derive(Clone)]
pub struct LabState {
    pub backends: Backends,
    pub identity: Arc<kit::Identity>,
    /// One run at a time, a few watches, a budget of new backend connections.
    pub limits: Arc<Limits>,
    /// The resolver configuration the DNS lab reads.
    pub resolv_conf: Arc<PathBuf>,
    /// The names the DNS lab may ask about.
    pub dns_names: Arc<Names>,
    /// Where the DNS lab sends its queries instead of resolv.conf's first nameserver on port
    /// 53 (`--nameserver`: the local suite's cluster DNS).
    pub nameserver: Option<SocketAddr>,
    /// Whether the lab page has a section of the pods (the local suite serves `/lab/pods`).
    pub pods_section: bool,
    /// What the check looks at.
    pub check: Arc<Targets>,
}

impl LabState {
    /// The URL a lab calls: the configured backends only, never one a client names.
    pub fn url(&self, service: Backend) -> String {
        match service {
            Backend::Quote => self.backends.quote_url().to_owned(),
            Backend::Quiz => format!("{}/", self.backends.quiz_url()),
        }
    }
}
