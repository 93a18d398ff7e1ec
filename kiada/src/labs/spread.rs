//! `GET /lab/spread`: the chapter's lesson made visible. A Service balances connections, not
//! requests: n calls over new connections spread across the pods, while n calls over one
//! reused connection all reach the same pod.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use kit::negotiate::WantsJson;
use serde::{Deserialize, Serialize};

use super::state::LabState;
use crate::backends::Backend;
use crate::error::Error;

pub const MAX_CALLS: usize = 100;

#[derive(Default, Deserialize)]
pub struct SpreadQuery {
    pub service: Option<String>,
    pub n: Option<String>,
    pub connection: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Spread {
    pub service: Backend,
    pub url: String,
    pub connection: &'static str,
    pub calls: usize,
    pub failed: usize,
    /// Calls answered by each pod.
    pub pods: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

pub async fn spread(
    State(state): State<LabState>,
    Query(query): Query<SpreadQuery>,
    WantsJson(json): WantsJson,
) -> Result<Response, Error> {
    let (service, n, reuse) = parse(&query)?;
    // A reused connection is one new connection (reconnects aside); otherwise one per call.
    let connections = if reuse { 1 } else { n as u32 };
    let _running = state.limits.start(connections)?;
    let result = sample(&state, service, n, reuse).await;
    if json {
        return Ok(Json(result).into_response());
    }
    Ok(text(&result).into_response())
}

/// Both runs of the lab page, new connections then one reused, as one run of the limits.
pub(crate) async fn compare(
    state: &LabState,
    query: &SpreadQuery,
) -> Result<(Spread, Spread), Error> {
    let (service, n, _) = parse(query)?;
    let _running = state.limits.start(n as u32 + 1)?;
    let new = sample(state, service, n, false).await;
    let reused = sample(state, service, n, true).await;
    Ok((new, reused))
}

/// Backend, number of calls, and whether to reuse one connection.
fn parse(query: &SpreadQuery) -> Result<(Backend, usize, bool), Error> {
    let service = match query.service.as_deref().unwrap_or("quote") {
        "quote" => Backend::Quote,
        "quiz" => Backend::Quiz,
        other => return Err(bad(format!("service must be quote or quiz, not '{other}'"))),
    };
    let n = match query.n.as_deref().unwrap_or("20").parse::<usize>() {
        Ok(n) if (1..=MAX_CALLS).contains(&n) => n,
        _ => return Err(bad(format!("n must be a number from 1 to {MAX_CALLS}"))),
    };
    let reuse = match query.connection.as_deref().unwrap_or("new") {
        "new" => false,
        "reuse" => true,
        other => {
            return Err(bad(format!(
                "connection must be new or reuse, not '{other}'"
            )));
        }
    };
    Ok((service, n, reuse))
}

async fn sample(state: &LabState, service: Backend, n: usize, reuse: bool) -> Spread {
    let client = state.backends.lab_client(reuse);
    let mut result = Spread {
        service,
        url: state.url(service),
        connection: if reuse { "reuse" } else { "new" },
        calls: n,
        failed: 0,
        pods: BTreeMap::new(),
        last_error: None,
    };
    // One after the other: concurrent calls would open several connections even in reuse mode.
    for _ in 0..n {
        let reply = state.backends.send(service, client.get(&result.url)).await;
        match reply.result {
            Ok(_) => {
                let pod = reply.pod.unwrap_or_else(|| "(no X-Pod-Name)".into());
                *result.pods.entry(pod).or_default() += 1;
            }
            Err(e) => {
                result.failed += 1;
                result.last_error = Some(e.message);
            }
        }
    }
    result
}

fn bad(message: String) -> Error {
    Error::BadRequest(format!(
        "{message}. Usage: /lab/spread?service=quote|quiz&n=1..{MAX_CALLS}&connection=new|reuse"
    ))
}

fn text(s: &Spread) -> String {
    let mut out = String::new();
    let over = if s.connection == "reuse" {
        "one reused connection"
    } else {
        "a new connection each"
    };
    let _ = writeln!(
        out,
        "{} calls to {} ({}), {over}:",
        s.calls,
        s.service.name(),
        s.url
    );
    let width = s.pods.keys().map(|p| p.len()).max().unwrap_or(0);
    for (pod, count) in &s.pods {
        let _ = writeln!(out, "  {pod:<width$}  {count:>3}  {}", "#".repeat(*count));
    }
    let _ = writeln!(
        out,
        "{} pod(s) answered; {} call(s) failed.",
        s.pods.len(),
        s.failed
    );
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "Last error: {e}");
    }
    out
}
