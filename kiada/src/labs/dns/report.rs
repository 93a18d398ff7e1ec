//! The walk explained: what the answer means for a Service, the lesson of the walk, and the
//! whole run as text for curl.

use std::fmt::Write;
use std::net::IpAddr;

use super::walk::{DnsLab, Step};
use crate::terminal::wrap;

/// Fills in what the walk's answer means and its lesson.
pub(super) fn explain(lab: &mut DnsLab) {
    lab.meaning = match (&lab.resolved, lab.steps.last()) {
        (Some(_), Some(step)) => Some(meaning(step)),
        _ => None,
    };
    lab.lesson = match lab.asked {
        None => "resolv.conf names no nameserver, so nothing was asked.".into(),
        Some(_) if !lab.cluster_dns && lab.resolved.is_none() => no_cluster_dns(lab),
        Some(_) => lesson(lab),
    };
}

/// Said instead of "no such name" where no cluster DNS answers: kiada outside a cluster, with
/// this machine's resolver.
fn no_cluster_dns(lab: &DnsLab) -> String {
    let server = lab.asked.map(|a| a.ip().to_string()).unwrap_or_default();
    format!(
        "There is no cluster DNS here. This resolv.conf is not a pod's: its search list has no \
         svc.<cluster domain> entry, so {server} is this machine's own resolver, which knows \
         nothing of Services, and '{}' did not resolve through it. Service names resolve only \
         where a cluster DNS answers: in a pod, or in the local suite (cargo run --release -p \
         suite), whose kiada asks the suite's own cluster DNS.",
        lab.name
    )
}

fn meaning(step: &Step) -> String {
    let mut meaning = match step.addresses.len() {
        1 => format!(
            "One address, {}: for a ClusterIP Service that is its virtual IP, which rules \
             written by kube-proxy rewrite (DNAT) to a ready pod's address (a headless Service \
             with a single ready pod also gives one).",
            step.addresses[0]
        ),
        n => format!(
            "{n} addresses: if this is a headless Service (clusterIP: None), they are the IPs \
             of its ready pods, and the client picks one itself; no virtual IP is involved."
        ),
    };
    if !step.cnames.is_empty() {
        meaning.push_str(
            " The answer went through a CNAME: an ExternalName Service, for one, answers with \
             an alias for another name, which is then resolved in turn.",
        );
    }
    meaning
}

fn lesson(lab: &DnsLab) -> String {
    let tries = lab.steps.iter().filter(|s| s.queries > 0).count();
    let queries: usize = lab.steps.iter().map(|s| s.queries).sum();
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let dots = lab.name.matches('.').count();
    let ndots = lab.resolv_conf.ndots;
    let why = if lab.name.ends_with('.') {
        "a trailing dot makes the name absolute, so the search list is skipped".to_owned()
    } else if dots < ndots {
        format!(
            "'{}' has {} and ndots is {ndots}, so each search domain is tried before the name \
             as given",
            lab.name,
            count(dots, "dot", "dots")
        )
    } else {
        format!(
            "'{}' has {} (ndots is {ndots}), so it is tried as given and the search list is \
             skipped, as musl (the C library of this image) does; glibc would try the search \
             domains after it",
            lab.name,
            count(dots, "dot", "dots")
        )
    };
    let asked = count(tries, "try", "tries");
    let sent = count(queries, "query", "queries");
    let at = lab
        .steps
        .iter()
        .rev()
        .find(|s| s.queries > 0)
        .map_or("", |s| s.name.as_str());
    match lab.ended {
        "resolved" => format!(
            "{} took {asked} ({sent}, A and AAAA for each) to resolve, as {}: {why}.",
            lab.name,
            lab.resolved.as_deref().unwrap_or(at)
        ),
        "nodata" => format!(
            "{} did not resolve: the walk stopped at {at}, a name that exists without an A or \
             AAAA record. musl gives up at such an answer (no address) rather than try the next \
             candidate; glibc would go on ({why}).",
            lab.name
        ),
        "servfail" => format!(
            "{} did not resolve: the nameserver failed (SERVFAIL) for {at}, and musl gives up \
             there (try again later); glibc would try the next candidate ({why}).",
            lab.name
        ),
        "timeout" => format!(
            "{} did not resolve: the nameserver did not answer in time for {at}, and musl \
             gives up there, as glibc does ({why}).",
            lab.name
        ),
        "error" => format!(
            "{} did not resolve: the nameserver refused or could not answer for {at}, and \
             musl gives up there ({why}).",
            lab.name
        ),
        "deadline" => format!(
            "{} did not resolve within the lab's time limit after {asked} ({why}).",
            lab.name
        ),
        _ => format!(
            "{} did not resolve: no candidate name exists ({why}).",
            lab.name
        ),
    }
}

pub(super) fn text(lab: &DnsLab) -> String {
    let mut out = String::new();
    let conf = &lab.resolv_conf;
    let _ = writeln!(out, "How this pod resolves '{}'\n", lab.name);
    let servers: Vec<String> = conf.nameservers.iter().map(|s| s.to_string()).collect();
    let _ = writeln!(out, "resolv.conf:");
    let asked = match lab.asked {
        Some(at) if at.port() != 53 => format!(" (asked at {at}: --nameserver)"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "  nameserver {}{asked}",
        if servers.is_empty() {
            "(none)".to_owned()
        } else {
            servers.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  search     {}",
        if conf.search.is_empty() {
            "(none)".to_owned()
        } else {
            conf.search.join(" ")
        }
    );
    let _ = writeln!(out, "  ndots      {}\n", conf.ndots);
    if !lab.steps.is_empty() {
        let _ = writeln!(out, "Names tried, in order:");
    }
    for (i, step) in lab.steps.iter().enumerate() {
        let result = match step.outcome {
            "addresses" => step
                .addresses
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            "nxdomain" => "NXDOMAIN (no such name)".to_owned(),
            "nodata" => "the name exists but has no addresses: the walk stops here".to_owned(),
            "servfail" => "SERVFAIL (the server failed): the walk stops here".to_owned(),
            "timeout" => "no answer (timeout): the walk stops here".to_owned(),
            "not-asked" => format!(
                "not asked: {}",
                step.detail.as_deref().unwrap_or("outside this lab's scope")
            ),
            _ => format!("error: {}", step.detail.as_deref().unwrap_or("unknown")),
        };
        let _ = writeln!(out, "  {}. {} -> {result}", i + 1, step.name);
        for cname in &step.cnames {
            let _ = writeln!(out, "     CNAME {cname}");
        }
    }
    if let Some(meaning) = &lab.meaning {
        let _ = writeln!(out);
        out.push_str(&wrap(meaning, 0, 80));
    }
    if let Some(srv) = &lab.srv {
        let _ = writeln!(out, "\nSRV {} (the port named http):", srv.name);
        for record in &srv.records {
            let _ = writeln!(out, "  {record}");
        }
    }
    let _ = writeln!(out);
    out.push_str(&wrap(&lab.lesson, 0, 80));
    out
}
