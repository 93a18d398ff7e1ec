//! Which names the DNS lab asks about. Anyone who reaches kiada (a NodePort, a LoadBalancer)
//! can type a name; unbounded, the lab would look up every namespace's Services and any
//! external domain through the cluster's DNS for them. The manifests keep it to the pod's own
//! namespace; a candidate outside the scope is listed as not asked.

use serde::Serialize;

/// The names the lab may send to the nameserver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Any name (the default outside a cluster).
    #[default]
    Any,
    /// Names in the cluster domain (`….cluster.local.`): every namespace's Services.
    Cluster,
    /// Names of this pod's namespace (`….<namespace>.svc.cluster.local.`).
    Namespace,
}

/// A scope with what it needs to decide: the pod's namespace and the cluster domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub scope: Scope,
    pub namespace: String,
    pub cluster_domain: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            scope: Scope::Any,
            namespace: kit::identity::UNKNOWN.to_owned(),
            cluster_domain: "cluster.local".to_owned(),
        }
    }
}

impl Names {
    /// The zone a candidate must be in, fully qualified; `None` for any name.
    pub fn zone(&self) -> Option<String> {
        let domain = self.cluster_domain.trim_matches('.');
        match self.scope {
            Scope::Any => None,
            Scope::Cluster => Some(format!("{domain}.")),
            Scope::Namespace => Some(format!("{}.svc.{domain}.", self.namespace)),
        }
    }

    /// Whether a fully qualified candidate (trailing dot) may be asked.
    pub fn allows(&self, candidate: &str) -> bool {
        match self.zone() {
            None => true,
            Some(zone) => {
                let candidate = candidate.to_ascii_lowercase();
                candidate == zone || candidate.ends_with(&format!(".{zone}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_kept_to_the_namespace_or_the_cluster() {
        let names = |scope| Names {
            scope,
            namespace: "kiada".into(),
            cluster_domain: "cluster.local".into(),
        };
        let ns = names(Scope::Namespace);
        assert!(ns.allows("quiz.kiada.svc.cluster.local."));
        assert!(ns.allows("tips.quote-headless.kiada.svc.cluster.local."));
        assert!(!ns.allows("kube-dns.kube-system.svc.cluster.local."));
        assert!(!ns.allows("quiz.svc.cluster.local."));
        assert!(!ns.allows("example.com."));
        assert!(!ns.allows("evilkiada.svc.cluster.local."));
        let cluster = names(Scope::Cluster);
        assert!(cluster.allows("kube-dns.kube-system.svc.cluster.local."));
        assert!(!cluster.allows("example.com."));
        assert!(!cluster.allows("cluster.local.example.com."));
        assert!(names(Scope::Any).allows("example.com."));
    }
}
