//! The pod's `resolv.conf` as the stub resolver reads it, and the names it tries in order.

use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::error::Error;

/// Candidate names tried at most (the name itself and up to this many less one search domains).
pub const MAX_CANDIDATES: usize = 8;

/// What `resolv.conf` says, as the stub resolver reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
}

impl ResolvConf {
    /// The last `search` line wins, as does the last `ndots` option; ndots defaults to 1 and is
    /// capped at 15, as glibc does.
    pub fn parse(text: &str) -> Self {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.search = words.map(|w| w.trim_end_matches('.').to_owned()).collect()
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) = option.strip_prefix("ndots:").and_then(|n| n.parse().ok())
                        {
                            conf.ndots = usize::min(n, 15);
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }

    /// Whether the search list holds the cluster's Service domain (`svc.cluster.local`, or
    /// `<namespace>.svc.cluster.local`), as every pod's `resolv.conf` does: the sign that a
    /// cluster DNS answers, rather than this machine's resolver.
    pub fn searches_services(&self, cluster_domain: &str) -> bool {
        let services = format!("svc.{}", cluster_domain.trim_matches('.'));
        self.search
            .iter()
            .any(|d| *d == services || d.ends_with(&format!(".{services}")))
    }

    /// The names tried, in order, each fully qualified (trailing dot), as musl does it (the C
    /// library of the suite's images): a name ending in a dot, or with at least ndots dots, is
    /// tried as given and nothing else; one with fewer dots goes through the search list first
    /// and is tried as given last. (glibc differs in one case: with at least ndots dots it tries
    /// the search list after the name as given.)
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if name.ends_with('.') {
            return vec![name.to_owned()];
        }
        let searched = self
            .search
            .iter()
            .map(|domain| format!("{name}.{domain}."))
            .take(MAX_CANDIDATES - 1);
        let as_given = format!("{name}.");
        if name.matches('.').count() < self.ndots {
            searched.chain(std::iter::once(as_given)).collect()
        } else {
            vec![as_given]
        }
    }
}

pub async fn read_resolv_conf(path: &Path) -> Result<ResolvConf, Error> {
    let path = path.to_owned();
    let read =
        tokio::task::spawn_blocking(move || kit::config::file::read_text(&path, 64 * 1024)).await;
    match read {
        Ok(Ok(text)) => Ok(ResolvConf::parse(&text)),
        Ok(Err(e)) => Err(Error::Lab(format!(
            "cannot read the resolver configuration: {e}"
        ))),
        Err(e) => Err(Error::Lab(format!(
            "cannot read the resolver configuration: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> ResolvConf {
        ResolvConf::parse(
            "# a pod's resolv.conf\nsearch kiada.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.96.0.10\noptions ndots:5 edns0\n",
        )
    }

    #[test]
    fn resolv_conf_is_read_as_the_stub_resolver_reads_it() {
        let c = conf();
        assert_eq!(c.nameservers, ["10.96.0.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            c.search,
            [
                "kiada.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(c.ndots, 5);
        assert_eq!(ResolvConf::parse("nameserver 1.1.1.1\n").ndots, 1);
    }

    #[test]
    fn candidates_follow_ndots_and_the_trailing_dot() {
        let c = conf();
        assert_eq!(
            c.candidates("quiz"),
            [
                "quiz.kiada.svc.cluster.local.",
                "quiz.svc.cluster.local.",
                "quiz.cluster.local.",
                "quiz."
            ]
        );
        assert_eq!(
            c.candidates("quiz.kiada.svc.cluster.local."),
            ["quiz.kiada.svc.cluster.local."]
        );
        let few = ResolvConf { ndots: 1, ..conf() };
        assert!(c.searches_services("cluster.local"));
        assert!(!c.searches_services("example.org"));
        assert!(
            !ResolvConf::parse("search lan\nnameserver 192.168.1.1\n")
                .searches_services("cluster.local")
        );
        assert_eq!(few.candidates("quiz.kiada")[0], "quiz.kiada.");
    }
}
