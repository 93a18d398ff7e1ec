//! `GET /lab/spread`: the chapter's lesson made visible. A Service balances connections, not
//! requests: n calls over new connections spread across the pods, while n calls over one
//! reused connection all reach the same pod.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use kit::negotiate::WantsJson;
use serde::{Deserialize, Serialize};

use crate::backend::{Service, classify, pod_of, read_body, with_request_id};
use crate::{AppState, Error};

pub const MAX_CALLS: usize = 100;

#[derive(Deserialize)]
pub struct SpreadQuery {
    service: Option<String>,
    n: Option<String>,
    connection: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Spread {
    service: Service,
    url: String,
    connection: &'static str,
    calls: usize,
    failed: usize,
    /// Calls answered by each pod.
    pods: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
}

/// New backend connections the labs may open in a burst, and how many more each second: one
/// full spread run at once, then one every five seconds, so that repeated runs cannot pile up
/// thousands of sockets in TIME_WAIT on the pod.
pub const CONNECTION_BURST: u32 = 100;
pub const CONNECTIONS_PER_SECOND: u32 = 20;

/// What keeps the labs from turning kiada into a load generator: one run at a time per pod,
/// and a shared budget of new backend connections (a token bucket).
pub struct Limits {
    busy: AtomicBool,
    budget: Mutex<Budget>,
}

struct Budget {
    tokens: f64,
    at: Instant,
}

impl Limits {
    pub fn new() -> Self {
        Limits {
            busy: AtomicBool::new(false),
            budget: Mutex::new(Budget {
                tokens: f64::from(CONNECTION_BURST),
                at: Instant::now(),
            }),
        }
    }

    /// Starts a run that may open up to `connections` new connections, or says why not.
    pub(crate) fn start(&self, connections: u32) -> Result<Running<'_>, Error> {
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(Error::LabBusy);
        }
        let running = Running(&self.busy);
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill =
            now.duration_since(budget.at).as_secs_f64() * f64::from(CONNECTIONS_PER_SECOND);
        budget.tokens = (budget.tokens + refill).min(f64::from(CONNECTION_BURST));
        budget.at = now;
        let needed = f64::from(connections);
        if budget.tokens < needed {
            let wait = (needed - budget.tokens) / f64::from(CONNECTIONS_PER_SECOND);
            return Err(Error::LabRate {
                needed: connections,
                retry_after_s: wait.ceil() as u64,
            });
        }
        budget.tokens -= needed;
        Ok(running)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

/// Lets one lab run at a time use the pod; released on drop.
pub(crate) struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub async fn spread(
    State(state): State<AppState>,
    Query(query): Query<SpreadQuery>,
    WantsJson(json): WantsJson,
) -> Result<Response, Error> {
    let service = match query.service.as_deref().unwrap_or("quote") {
        "quote" => Service::Quote,
        "quiz" => Service::Quiz,
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
    // A reused connection is one new connection (reconnects aside); otherwise one per call.
    let connections = if reuse { 1 } else { n as u32 };
    let _running = state.labs.start(connections)?;

    let url = match service {
        Service::Quote => state.backends.quote_url().to_owned(),
        Service::Quiz => format!("{}/", state.backends.quiz_url()),
    };
    let client = state.backends.lab_client(reuse);
    let mut result = Spread {
        service,
        url,
        connection: if reuse { "reuse" } else { "new" },
        calls: n,
        failed: 0,
        pods: BTreeMap::new(),
        last_error: None,
    };
    // One after the other: concurrent calls would open several connections even in reuse mode.
    for _ in 0..n {
        match with_request_id(client.get(&result.url)).send().await {
            Ok(res) => {
                let pod = pod_of(res.headers())
                    .0
                    .unwrap_or_else(|| "(no X-Pod-Name)".into());
                let _ = read_body(res).await;
                *result.pods.entry(pod).or_default() += 1;
            }
            Err(e) => {
                result.failed += 1;
                result.last_error = Some(classify(&e).message);
            }
        }
    }
    if json {
        return Ok(Json(result).into_response());
    }
    Ok(text(&result).into_response())
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
