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
    /// For client-side balancing: the pod URLs called in turn.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

pub async fn spread(
    State(state): State<LabState>,
    Query(query): Query<SpreadQuery>,
    WantsJson(json): WantsJson,
) -> Result<Response, Error> {
    let (service, n, mode) = parse(&query)?;
    let _running = state.limits.start(mode.connections(n))?;
    let result = sample(&state, service, n, mode).await;
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
    let new = sample(state, service, n, Mode::New).await;
    let reused = sample(state, service, n, Mode::Reuse).await;
    Ok((new, reused))
}

/// How the calls travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A new connection each: the Service picks a pod per call.
    New,
    /// One kept HTTP/1 connection: one pod for all.
    Reuse,
    /// One HTTP/2 connection, every call a stream on it, as gRPC clients do: one pod for all.
    H2,
    /// Balancing in the client: the headless Service's pod addresses in turn, a connection each.
    Headless,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::New => "new",
            Mode::Reuse => "reuse",
            Mode::H2 => "h2",
            Mode::Headless => "headless",
        }
    }

    /// New connections n calls open (reconnects aside).
    fn connections(self, n: usize) -> u32 {
        match self {
            Mode::Reuse | Mode::H2 => 1,
            Mode::New | Mode::Headless => n as u32,
        }
    }
}

/// Backend, number of calls, and how they travel.
fn parse(query: &SpreadQuery) -> Result<(Backend, usize, Mode), Error> {
    let service = match query.service.as_deref().unwrap_or("quote") {
        "quote" => Backend::Quote,
        "quiz" => Backend::Quiz,
        other => return Err(bad(format!("service must be quote or quiz, not '{other}'"))),
    };
    let n = match query.n.as_deref().unwrap_or("20").parse::<usize>() {
        Ok(n) if (1..=MAX_CALLS).contains(&n) => n,
        _ => return Err(bad(format!("n must be a number from 1 to {MAX_CALLS}"))),
    };
    let mode = match query.connection.as_deref().unwrap_or("new") {
        "new" => Mode::New,
        "reuse" => Mode::Reuse,
        "h2" => Mode::H2,
        "headless" => Mode::Headless,
        other => {
            return Err(bad(format!(
                "connection must be new, reuse, h2 or headless, not '{other}'"
            )));
        }
    };
    Ok((service, n, mode))
}

async fn sample(state: &LabState, service: Backend, n: usize, mode: Mode) -> Spread {
    let mut result = Spread {
        service,
        url: state.url(service),
        connection: mode.name(),
        calls: n,
        failed: 0,
        pods: BTreeMap::new(),
        last_error: None,
        addresses: Vec::new(),
    };
    // The URL each call goes to: the Service's, or for client-side balancing each pod's own.
    let urls: Vec<String> = match mode {
        Mode::Headless => match headless_urls(state, &result.url).await {
            Ok((name, urls)) => {
                result.addresses = urls.clone();
                result.url = format!("{name}: {} pod addresses", urls.len());
                urls
            }
            Err(why) => {
                result.failed = n;
                result.last_error = Some(why.to_string());
                return result;
            }
        },
        _ => vec![result.url.clone()],
    };
    let client = match mode {
        Mode::H2 => state.backends.h2_client(),
        mode => state.backends.lab_client(mode == Mode::Reuse),
    };
    // One after the other: concurrent calls would open several connections even in reuse mode.
    for i in 0..n {
        let url = &urls[i % urls.len()];
        let reply = state.backends.send(service, client.get(url)).await;
        match reply.result {
            Ok(_) => {
                let pod = reply.by.pod.unwrap_or_else(|| "(no X-Pod-Name)".into());
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

/// The headless Service beside the configured one (`quote` → `quote-headless`, as the
/// manifests name it) and a URL per pod address it resolves to: the pods' own port, the
/// configured path. Only that name is ever resolved, and only its addresses called.
async fn headless_urls(state: &LabState, url: &str) -> Result<(String, Vec<String>), NoPods> {
    let parsed = reqwest::Url::parse(url).map_err(|e| NoPods::Url(e.to_string()))?;
    let Some(host) = parsed.domain() else {
        return Err(NoPods::Address);
    };
    let name = format!("{host}-headless");
    let addrs = state
        .backends
        .resolve_all(&name)
        .await
        .map_err(|e| NoPods::Lookup(e.message))?;
    if addrs.is_empty() {
        return Err(NoPods::Empty(name));
    }
    let urls = addrs
        .into_iter()
        .take(MAX_CALLS)
        .map(|addr| {
            let port = if addr.port() == 0 {
                state.check.pod_port
            } else {
                addr.port()
            };
            let mut pod = parsed.clone();
            let _ = pod.set_ip_host(addr.ip());
            let _ = pod.set_port(Some(port));
            pod.to_string()
        })
        .collect();
    Ok((name, urls))
}

/// Why a client-side balanced run has no pod addresses to call.
#[derive(Debug, thiserror::Error)]
enum NoPods {
    #[error("{0}")]
    Url(String),
    #[error("the backend URL holds an address, so there is no headless name to resolve")]
    Address,
    #[error("{0}")]
    Lookup(String),
    #[error("{0} has no address: no ready pod")]
    Empty(String),
}

fn bad(message: String) -> Error {
    Error::BadRequest(format!(
        "{message}. Usage: /lab/spread?service=quote|quiz&n=1..{MAX_CALLS}\
         &connection=new|reuse|h2|headless"
    ))
}

fn text(s: &Spread) -> String {
    let mut out = String::new();
    let over = match s.connection {
        "reuse" => "one reused connection",
        "h2" => "as HTTP/2 streams over one connection",
        "headless" => "balanced by kiada, a new connection each",
        _ => "a new connection each",
    };
    let head = format!(
        "{} calls to {} ({}), {over}:",
        s.calls,
        s.service.name(),
        s.url
    );
    out.push_str(&crate::terminal::wrap(&head, 0, 80));
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
    let lesson = match s.connection {
        "h2" => Some(
            "A Service balances connections, and HTTP/2 sends every request over one: all of \
             them reach the pod that connection reached. Balance in the client (connection=\
             headless), put a proxy that balances requests in between, or have the server close \
             connections after a while (--max-connection-age) so they spread over time.",
        ),
        "headless" => Some(
            "The headless Service gives the pods' own addresses, and the client takes them in \
             turn: every ready pod answers, whatever the connections carry. The client must now \
             follow the pods itself (look the name up again as pods come and go).",
        ),
        _ => None,
    };
    if let Some(lesson) = lesson {
        out.push('\n');
        out.push_str(&crate::terminal::wrap(lesson, 0, 80));
    }
    out
}
