//! What the client IP on the page means. A pod sees the address the connection came from, and
//! in a cluster that is often not the client's own: traffic that entered through a NodePort
//! or a LoadBalancer with `externalTrafficPolicy: Cluster` is source-NATed by kube-proxy on the
//! node that received it, so the pod sees that node (or, on the same node, a node-side address
//! into the pod network); `kubectl port-forward` delivers from inside the pod's own network
//! namespace, so the pod sees loopback. The pod and node address ranges are configuration
//! (`--pod-cidrs`, `--node-cidrs`): nothing inside a pod can read them.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Serialize;

/// The address ranges of the cluster, as configured.
#[derive(Clone, Debug, Default)]
pub struct Networks {
    pub pods: Vec<IpNet>,
    pub nodes: Vec<IpNet>,
}

/// A comma-separated list of CIDRs, IPv4 and IPv6 (`10.244.0.0/16,fd00:10:244::/56`).
#[derive(Clone, Debug, Default)]
pub struct Cidrs(pub Vec<IpNet>);

impl FromStr for Cidrs {
    type Err = ipnet::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(IpNet::from_str)
            .collect::<Result<_, _>>()
            .map(Cidrs)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientClass {
    Loopback,
    ThisNode,
    /// The first address of a node range: the node network's gateway (kind: the host).
    Gateway,
    OtherNode,
    Pod,
    Outside,
    Unknown,
}

impl ClientClass {
    pub fn of(ip: IpAddr, node_ip: &str, networks: &Networks) -> Self {
        let ip = ip.to_canonical();
        let configured = !networks.pods.is_empty() || !networks.nodes.is_empty();
        if node_ip
            .parse::<IpAddr>()
            .is_ok_and(|n| n.to_canonical() == ip)
        {
            ClientClass::ThisNode
        } else if networks.nodes.iter().any(|n| first_host(n) == Some(ip)) {
            ClientClass::Gateway
        } else if networks.nodes.iter().any(|n| n.contains(&ip)) {
            ClientClass::OtherNode
        } else if networks.pods.iter().any(|n| n.contains(&ip)) {
            ClientClass::Pod
        } else if ip.is_loopback() {
            ClientClass::Loopback
        } else if configured {
            ClientClass::Outside
        } else {
            ClientClass::Unknown
        }
    }

    /// The class in a few words.
    pub fn label(self) -> &'static str {
        match self {
            ClientClass::Loopback => "loopback",
            ClientClass::ThisNode => "this pod's node",
            ClientClass::Gateway => "the node network's gateway",
            ClientClass::OtherNode => "another node",
            ClientClass::Pod => "the pod network",
            ClientClass::Outside => "outside the cluster",
            ClientClass::Unknown => "not classified",
        }
    }

    /// What the class means, in a sentence for the pages.
    pub fn meaning(self) -> &'static str {
        match self {
            ClientClass::Loopback => {
                "the connection came from this same host; in a pod that means from inside the \
                 pod, which is how kubectl port-forward connects"
            }
            ClientClass::ThisNode => {
                "a process on the node, or a request that entered through a NodePort here \
                 whose client address kube-proxy replaced (externalTrafficPolicy: Cluster; \
                 the kiada-local NodePort, with Local, keeps it)"
            }
            ClientClass::Gateway => {
                "a client outside the cluster, seen as the router its traffic came in through \
                 (on kind: your own machine, through Docker's port mapping); kube-proxy did \
                 not replace this address"
            }
            ClientClass::OtherNode => {
                "a process on that node, or a request that entered the cluster there and \
                 whose client address kube-proxy replaced before forwarding it here \
                 (externalTrafficPolicy: Cluster)"
            }
            ClientClass::Pod => {
                "another pod, or a node's own address into the pod network after kube-proxy \
                 replaced the client's"
            }
            ClientClass::Outside => {
                "in none of the pod and node ranges configured here (kind's, unless set for this \
                 cluster): likely the client's own address, kept on the way in"
            }
            ClientClass::Unknown => {
                "set --pod-cidrs and --node-cidrs (POD_CIDRS, NODE_CIDRS) to tell pods, nodes \
                 and outside clients apart"
            }
        }
    }
}

/// The network's first host address, where a gateway conventionally sits (`172.18.0.1` on
/// kind's Docker network).
fn first_host(net: &IpNet) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => {
            Some(IpAddr::V4((u32::from(n.network()) + 1).into()))
        }
        IpNet::V6(n) if n.prefix_len() < 127 => {
            Some(IpAddr::V6((u128::from(n.network()) + 1).into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn networks() -> Networks {
        Networks {
            pods: "10.244.0.0/16, fd00:10:244::/56"
                .parse::<Cidrs>()
                .unwrap()
                .0,
            nodes: "172.18.0.0/16".parse::<Cidrs>().unwrap().0,
        }
    }

    #[test]
    fn addresses_are_classified_by_range() {
        let n = networks();
        let class = |ip: &str| ClientClass::of(ip.parse().unwrap(), "172.18.0.3", &n);
        assert_eq!(class("127.0.0.1"), ClientClass::Loopback);
        assert_eq!(class("::1"), ClientClass::Loopback);
        assert_eq!(class("172.18.0.3"), ClientClass::ThisNode);
        assert_eq!(class("::ffff:172.18.0.3"), ClientClass::ThisNode);
        assert_eq!(class("172.18.0.2"), ClientClass::OtherNode);
        assert_eq!(class("172.18.0.1"), ClientClass::Gateway);
        assert_eq!(class("10.244.1.7"), ClientClass::Pod);
        assert_eq!(class("fd00:10:244::5"), ClientClass::Pod);
        assert_eq!(class("203.0.113.9"), ClientClass::Outside);
        let none = Networks::default();
        assert_eq!(
            ClientClass::of("203.0.113.9".parse().unwrap(), "unknown", &none),
            ClientClass::Unknown
        );
        assert!("10.0.0.0/33".parse::<Cidrs>().is_err());
        assert!("".parse::<Cidrs>().unwrap().0.is_empty());
    }
}
