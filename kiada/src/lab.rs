//! `GET /lab/spread`: the chapter's lesson made visible. A Service balances connections, not
//! requests: n calls over new connections spread across the pods, while n calls over one
//! reused connection all reach the same pod.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use kit::negotiate::WantsJson;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::{AppState, Error};

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

/// New backend connections the labs may open in a burst, and how many more each second: one
/// full spread run at once, then one every five seconds, so that repeated runs cannot pile up
/// thousands of sockets in TIME_WAIT on the pod.
pub const CONNECTION_BURST: u32 = 100;
pub const CONNECTIONS_PER_SECOND: u32 = 20;

/// Watches streaming at once on one kiada pod.
pub const MAX_WATCHES: usize = 4;

/// What keeps the labs from turning kiada into a load generator: one spread run at a time per
/// pod, at most [`MAX_WATCHES`] watches, and a budget of new backend connections (a token
/// bucket) that both draw on.
pub struct Limits {
    busy: AtomicBool,
    watches: AtomicUsize,
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
            watches: AtomicUsize::new(0),
            budget: Mutex::new(Budget {
                tokens: f64::from(CONNECTION_BURST),
                at: Instant::now(),
            }),
        }
    }

    /// Starts a run that may open up to `connections` new connections, or says why not.
    pub(crate) fn start(&self, connections: u32) -> Result<LabSlot<'_>, Error> {
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(Error::LabBusy);
        }
        let running = LabSlot(&self.busy);
        let mut budget = self.budget();
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

    /// The bucket, refilled for the time since it was last used.
    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill =
            now.duration_since(budget.at).as_secs_f64() * f64::from(CONNECTIONS_PER_SECOND);
        budget.tokens = (budget.tokens + refill).min(f64::from(CONNECTION_BURST));
        budget.at = now;
        budget
    }

    /// Takes one new connection from the budget, if one is left. A watch asks before each call
    /// and skips the call when none is: a long watch must not fail because a spread run spent
    /// the budget, and must not starve spread runs by waiting for tokens either.
    pub fn take_connection(&self) -> bool {
        let mut budget = self.budget();
        if budget.tokens >= 1.0 {
            budget.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Starts a watch, or says that [`MAX_WATCHES`] are running.
    pub fn start_watch(self: &Arc<Self>) -> Result<WatchSlot, Error> {
        let taken = self
            .watches
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WATCHES).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(WatchSlot(self.clone())),
            Err(_) => Err(Error::WatchLimit),
        }
    }
}

/// One running watch; its place is given back when dropped, which is when its response body
/// is dropped: at its end, or at once when the client goes away.
pub struct WatchSlot(Arc<Limits>);

impl Drop for WatchSlot {
    fn drop(&mut self) {
        self.0.watches.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

/// Lets one lab run at a time use the pod; released on drop.
pub(crate) struct LabSlot<'a>(&'a AtomicBool);

impl Drop for LabSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub async fn spread(
    State(state): State<AppState>,
    Query(query): Query<SpreadQuery>,
    WantsJson(json): WantsJson,
) -> Result<Response, Error> {
    let (service, n, reuse) = parse(&query)?;
    // A reused connection is one new connection (reconnects aside); otherwise one per call.
    let connections = if reuse { 1 } else { n as u32 };
    let _running = state.labs.start(connections)?;
    let result = sample(&state, service, n, reuse).await;
    if json {
        return Ok(Json(result).into_response());
    }
    Ok(text(&result).into_response())
}

/// Both runs of the lab page, new connections then one reused, as one run of the limits.
pub(crate) async fn compare(
    state: &AppState,
    query: &SpreadQuery,
) -> Result<(Spread, Spread), Error> {
    let (service, n, _) = parse(query)?;
    let _running = state.labs.start(n as u32 + 1)?;
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

/// The URL a lab calls: the configured backends only, never one a client names.
pub(crate) fn lab_url(state: &AppState, service: Backend) -> String {
    match service {
        Backend::Quote => state.backends.quote_url().to_owned(),
        Backend::Quiz => format!("{}/", state.backends.quiz_url()),
    }
}

async fn sample(state: &AppState, service: Backend, n: usize, reuse: bool) -> Spread {
    let client = state.backends.lab_client(reuse);
    let mut result = Spread {
        service,
        url: lab_url(state, service),
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
