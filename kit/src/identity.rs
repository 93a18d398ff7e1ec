//! Who is answering: the pod's identity from the downward API, and who is asking.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

/// Shown where a value is not known (running outside Kubernetes without the env set).
pub const UNKNOWN: &str = "unknown";

/// The downward-API variables the manifests set on every container.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct IdentityArgs {
    /// Pod name shown on pages and in `X-Pod-Name` [default: the hostname]
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Namespace of the pod [default: unknown]
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// Pod IP shown on pages and in `X-Pod-IP` [default: unknown]
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<String>,
    /// Node the pod runs on, shown on pages and in `X-Node-Name` [default: unknown]
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// IP of that node [default: unknown]
    #[arg(long, env = "NODE_IP")]
    pub node_ip: Option<String>,
    /// Release track shown on the pages, stable or canary (the manifests set it from the pod's
    /// rel label)
    #[arg(long, env = "RELEASE")]
    pub release: Option<String>,
}

/// The identity a service reports, every field filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_ip: String,
    pub node_name: String,
    pub node_ip: String,
    /// The kernel's hostname; in a pod it equals the pod name unless `hostname` is set.
    pub hostname: String,
    /// Release track (stable, canary), when the environment says.
    pub release: Option<String>,
}

impl IdentityArgs {
    /// Fills what the environment left out. The downward API can yield empty strings (a pod IP
    /// before it is assigned), so empty counts as unset.
    pub fn resolve(self) -> Identity {
        let hostname = local_hostname();
        let or_unknown = |v: Option<String>| given(v).unwrap_or_else(|| UNKNOWN.to_owned());
        Identity {
            pod_name: given(self.pod_name).unwrap_or_else(|| hostname.clone()),
            pod_namespace: or_unknown(self.pod_namespace),
            pod_ip: or_unknown(self.pod_ip),
            node_name: or_unknown(self.node_name),
            node_ip: or_unknown(self.node_ip),
            hostname,
            release: given(self.release),
        }
    }
}

impl Identity {
    /// An identity for an instance that is not in a pod (tests, the local suite).
    pub fn named(pod_name: &str) -> Self {
        let hostname = local_hostname();
        Identity {
            pod_name: pod_name.to_owned(),
            pod_namespace: UNKNOWN.to_owned(),
            pod_ip: UNKNOWN.to_owned(),
            node_name: hostname.clone(),
            node_ip: UNKNOWN.to_owned(),
            hostname,
            release: None,
        }
    }
}

fn given(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

fn local_hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| UNKNOWN.to_owned())
}

/// The peer address of the connection, with IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as a
/// dual-stack socket reports IPv4 clients) shown as plain IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    pub fn from_socket(addr: SocketAddr) -> Self {
        ClientIp(addr.ip().to_canonical())
    }

    /// Every listener of ours records the peer; a router driven without one (a unit test
    /// calling it directly) reports the unspecified address rather than failing the request.
    pub(crate) fn from_extensions(extensions: &axum::http::Extensions) -> Self {
        if let Some(connection) = extensions.get::<crate::Connection>() {
            return ClientIp::from_socket(connection.peer);
        }
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| ClientIp::from_socket(*addr))
            .unwrap_or(ClientIp(IpAddr::from([0, 0, 0, 0])))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp::from_extensions(&parts.extensions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_downward_api_values_fall_back() {
        let id = IdentityArgs {
            pod_name: Some(String::new()),
            pod_ip: Some(" ".into()),
            node_name: Some("node-a".into()),
            ..Default::default()
        }
        .resolve();
        assert_eq!(id.pod_name, id.hostname);
        assert_eq!(id.pod_ip, UNKNOWN);
        assert_eq!(id.pod_namespace, UNKNOWN);
        assert_eq!(id.node_name, "node-a");
    }

    #[test]
    fn ipv4_mapped_clients_show_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:5000".parse().unwrap();
        assert_eq!(ClientIp::from_socket(mapped).0.to_string(), "10.1.2.3");
        let v6: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        assert_eq!(ClientIp::from_socket(v6).0.to_string(), "2001:db8::1");
    }
}
