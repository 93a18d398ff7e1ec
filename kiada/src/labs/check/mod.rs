//! `GET /lab/check` (and `kiada check`, which asks it): the chapter's claims tested against the
//! cluster this pod runs in, each PASS, FAIL, WARN or SKIP with what was done and seen, and for
//! a FAIL or WARN the likeliest cause and the next command. No Kubernetes API: DNS, HTTP and TCP
//! from inside the pod only, to the suite's own Services.
//!
//! - `targets`: which Services, ports and identity the check uses;
//! - `probe`: how it asks (names as musl walks them, pinned HTTP calls, bare connects);
//! - `claims`: the claims and their verdicts; `report`: the report as text, JSON and a page.
//!
//! Bounded like the other labs: one run at a time per pod (the labs' slot), the labs'
//! connection budget, a time limit for the whole run and one for every step.

mod claims;
mod probe;
mod report;
pub mod targets;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

pub use claims::{IDS, connections};
pub use report::{Report, Row, Verdict};
pub use targets::Targets;

use super::dns;
use super::state::LabState;
use crate::error::Error;
use crate::view::html;

/// The whole run's time limit: past it, the claims left are SKIP.
pub const TIME_LIMIT: Duration = Duration::from_secs(20);

/// Names for several claims at once in `only`. No group is named like a claim.
const GROUPS: [(&str, &[&str]); 4] = [
    ("dns", &["names", "variables", "headless", "experiments"]),
    (
        "traffic",
        &["spread", "ready", "canary", "affinity", "local", "nodeport"],
    ),
    ("network", &["vip", "policy"]),
    ("all", &IDS),
];

#[derive(Deserialize)]
pub struct CheckQuery {
    /// Claim ids or groups, comma-separated; all when absent.
    only: Option<String>,
}

/// A word in `only` that names neither a claim nor a group.
#[derive(Debug, thiserror::Error)]
#[error(
    "'{word}' is no claim: choose from {claims} or the groups {groups}",
    claims = IDS.join(", "),
    groups = GROUPS.map(|(g, _)| g).join(", ")
)]
pub struct UnknownClaim {
    /// The word, on one line and at most 40 characters.
    word: String,
}

/// The claims `only` names (all when it names none).
pub fn select(only: Option<&str>) -> Result<BTreeSet<&'static str>, UnknownClaim> {
    let mut chosen = BTreeSet::new();
    for word in only
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        if let Some(id) = IDS.iter().find(|id| **id == word) {
            chosen.insert(*id);
        } else if let Some((_, ids)) = GROUPS.iter().find(|(g, _)| *g == word) {
            chosen.extend(ids.iter().copied());
        } else {
            return Err(UnknownClaim {
                word: crate::terminal::one_line(&word.chars().take(40).collect::<String>())
                    .into_owned(),
            });
        }
    }
    Ok(chosen)
}

pub async fn check(
    State(state): State<LabState>,
    Query(query): Query<CheckQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let only = select(query.only.as_deref())
        .map_err(|e| Error::BadRequest(format!("{e}. Usage: /lab/check?only=names,spread")))?;
    let format = kit::negotiate::best(&headers, &["text/plain", "text/html", "application/json"]);
    let _running = state.limits.start(connections(&only))?;
    let conf = dns::read_resolv_conf(&state.resolv_conf).await?;
    let started = std::time::Instant::now();
    let run = claims::Run {
        targets: &state.check,
        conf,
        nameserver: state.nameserver,
        deadline: claims::deadline(TIME_LIMIT),
        only,
    };
    let rows = run.rows().await;
    let id = &state.identity;
    let report = Report::new(
        &id.pod_name,
        &id.pod_namespace,
        &id.node_name,
        started.elapsed().as_secs_f64(),
        rows,
    );
    Ok(match format {
        Some("application/json") => Json(report).into_response(),
        Some("text/html") => html(StatusCode::OK, report.html(id.release.as_deref())?),
        _ => ([(CONTENT_TYPE, "text/plain; charset=utf-8")], report.text()).into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_takes_claims_and_groups_and_no_group_hides_a_claim() {
        for (group, _) in GROUPS {
            assert!(!IDS.contains(&group), "the group {group} hides its claim");
        }
        let policy = select(Some("policy")).unwrap();
        assert_eq!(policy.into_iter().collect::<Vec<_>>(), ["policy"]);
        let network = select(Some("network, names")).unwrap();
        assert_eq!(
            network.into_iter().collect::<Vec<_>>(),
            ["names", "policy", "vip"]
        );
        assert_eq!(select(Some("all")).unwrap().len(), IDS.len());
        assert!(select(None).unwrap().is_empty());
        let err = select(Some("names,tele\npathy")).unwrap_err().to_string();
        assert!(err.starts_with("'tele"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        assert!(
            err.contains("the groups dns, traffic, network, all"),
            "{err}"
        );
    }
}
