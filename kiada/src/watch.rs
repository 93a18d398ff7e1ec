//! `GET /lab/watch`: calls a backend every interval and streams what happens, so that the
//! moments the chapter is about — a pod failing readiness and leaving the Service, a rollout
//! replacing every pod — can be watched as they happen and measured afterwards.
//!
//! The calls are made while the response body is being read: the body is a stream that makes
//! the next call when the previous line has been sent. A client that goes away drops the body,
//! and with it the call in flight, the timer and the watch's place among the four allowed.
//!
//! Two formats from the same events: a line per call for `curl -N`, and Server-Sent Events
//! (`Accept: text/event-stream`, one JSON object per event) for the lab page's timeline.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::backend::{Backend, Backends, FailureKind};
use crate::lab::{self, Limits, WatchSlot};
use crate::{AppState, Error};

pub const INTERVAL_MS: (u64, u64) = (100, 5000);
pub const DURATION_S: (u64, u64) = (1, 600);

/// Distinct pod names one watch keeps apart; more are counted as `(other)`. Pod names come
/// from the backends' headers, so a misbehaving backend must not grow a watch without bound.
const MAX_PODS: usize = 100;

/// A pod is "not seen for a while" once this many calls per pod still answering have passed
/// without it, and at least [`GONE_MIN`]. Eight rounds of the pods: a random balancer (iptables)
/// skips a given pod of three that often by chance about once in 17,000 calls.
const GONE_ROUNDS: usize = 8;
const GONE_MIN: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
pub struct WatchQuery {
    service: Option<String>,
    interval_ms: Option<String>,
    duration_s: Option<String>,
    connection: Option<String>,
}

#[derive(Clone, Copy)]
struct Params {
    service: Backend,
    interval: Duration,
    duration: Duration,
    reuse: bool,
}

fn parse(query: &WatchQuery) -> Result<Params, Error> {
    let service = match query.service.as_deref().unwrap_or("quote") {
        "quote" => Backend::Quote,
        "quiz" => Backend::Quiz,
        other => return Err(bad(format!("service must be quote or quiz, not '{other}'"))),
    };
    let number = |raw: Option<&str>, default: u64, (low, high): (u64, u64), what: &str| match raw
        .map_or(Ok(default), str::parse::<u64>)
    {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(bad(format!("{what} must be a number from {low} to {high}"))),
    };
    let interval = number(
        query.interval_ms.as_deref(),
        250,
        INTERVAL_MS,
        "interval_ms",
    )?;
    let duration = number(query.duration_s.as_deref(), 60, DURATION_S, "duration_s")?;
    let reuse = match query.connection.as_deref().unwrap_or("new") {
        "new" => false,
        "reuse" => true,
        other => {
            return Err(bad(format!(
                "connection must be new or reuse, not '{other}'"
            )));
        }
    };
    Ok(Params {
        service,
        interval: Duration::from_millis(interval),
        duration: Duration::from_secs(duration),
        reuse,
    })
}

fn bad(message: String) -> Error {
    let (i, d) = (INTERVAL_MS, DURATION_S);
    Error::BadRequest(format!(
        "{message}. Usage: /lab/watch?service=quote|quiz&interval_ms={}..{}&duration_s={}..{}\
         &connection=new|reuse",
        i.0, i.1, d.0, d.1
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Events,
}

pub async fn watch(
    State(state): State<AppState>,
    Query(query): Query<WatchQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let params = parse(&query)?;
    let slot = state.labs.start_watch()?;
    let format = match kit::negotiate::best(&headers, &["text/plain", "text/event-stream"]) {
        Some("text/event-stream") => Format::Events,
        _ => Format::Text,
    };
    let watcher = Watcher {
        url: lab::lab_url(&state, params.service),
        client: state.backends.lab_client(params.reuse),
        backends: state.backends.clone(),
        limits: state.labs.clone(),
        // The body is polled outside the request's task-local scope: keep the id for the calls.
        request_id: kit::request_id::current(),
        params,
        format,
        started: Instant::now(),
        next: 0,
        charged: false,
        tally: Tally::default(),
        step: Step::Start,
        _slot: slot,
    };
    let body = Body::from_stream(futures_util::stream::unfold(watcher, |mut w| async move {
        let chunk = w.step().await?;
        Some((Ok::<_, Infallible>(chunk), w))
    }));
    let content_type = match format {
        Format::Text => "text/plain; charset=utf-8",
        Format::Events => "text/event-stream",
    };
    Ok((
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // A proxy in front (an Ingress with nginx) must pass each line on as it comes.
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        body,
    )
        .into_response())
}

enum Step {
    Start,
    Calling,
    Done,
}

struct Watcher {
    url: String,
    client: reqwest::Client,
    backends: Backends,
    limits: Arc<Limits>,
    request_id: Option<kit::request_id::RequestId>,
    params: Params,
    format: Format,
    started: Instant,
    /// The number of the next call; call k is due at `started + k × interval`.
    next: u64,
    /// Whether a reused connection has had its one token.
    charged: bool,
    tally: Tally,
    step: Step,
    _slot: WatchSlot,
}

/// What one call came to.
enum Outcome {
    Answered {
        pod: String,
        state: String,
        ms: f64,
    },
    Failed {
        kind: String,
        message: String,
        pod: Option<String>,
        ms: f64,
    },
    /// Not made: the labs' budget of new connections was spent.
    Throttled,
}

impl Watcher {
    /// The next piece of the stream, or `None` at its end.
    async fn step(&mut self) -> Option<Bytes> {
        let mut out = String::new();
        match self.step {
            Step::Start => {
                self.start(&mut out);
                self.step = Step::Calling;
            }
            Step::Calling => {
                let interval = self.params.interval;
                let end = self.started + self.params.duration;
                let due = self.started + interval * self.next as u32;
                if due >= end {
                    // Wait out the duration, so that the summary covers all of it.
                    tokio::time::sleep_until(end).await;
                    self.summarise(&mut out);
                    return Some(Bytes::from(out));
                }
                tokio::time::sleep_until(due).await;
                let t = self.started.elapsed();
                let outcome = self.call().await;
                // A call slower than the interval skips the ticks it overran, rather than
                // firing them in a burst.
                let after = self.started.elapsed().as_nanos() / interval.as_nanos();
                self.next = (self.next + 1).max(after as u64 + 1);
                let transitions = self.tally.record(t, &outcome, interval);
                self.write_call(&mut out, t, &outcome);
                for transition in &transitions {
                    self.write_transition(&mut out, transition);
                }
            }
            Step::Done => return None,
        }
        Some(Bytes::from(out))
    }

    /// The pods gone by the end, then the summary; the stream ends after it.
    fn summarise(&mut self, out: &mut String) {
        let end = self.started.elapsed();
        let transitions = self.tally.check_gone(end, self.params.interval);
        for transition in &transitions {
            self.write_transition(out, transition);
        }
        let summary = self.tally.summary(end);
        self.write_summary(out, &summary);
        self.step = Step::Done;
    }

    async fn call(&mut self) -> Outcome {
        // Over new connections each call spends a token; a reused connection spends one for
        // the whole watch (reconnects aside, as in the spread lab).
        if !(self.params.reuse && self.charged) {
            if !self.limits.take_connection() {
                return Outcome::Throttled;
            }
            self.charged = true;
        }
        let mut request = self.client.get(&self.url).header("accept", "text/plain");
        if let Some(id) = &self.request_id {
            request = request.header(kit::request_id::HEADER, id.as_str());
        }
        let reply = self.backends.send(self.params.service, request).await;
        let ms = (reply.elapsed.as_secs_f64() * 10_000.0).round() / 10.0;
        match reply.result {
            Ok(answer) if answer.status.is_success() => Outcome::Answered {
                pod: reply.pod.unwrap_or_else(|| "(no X-Pod-Name)".into()),
                state: reply.state.unwrap_or_else(|| "unknown".into()),
                ms,
            },
            Ok(answer) => Outcome::Failed {
                kind: kind_name(FailureKind::Status(answer.status.as_u16())),
                message: format!("HTTP {}", answer.status),
                pod: reply.pod,
                ms,
            },
            Err(e) => Outcome::Failed {
                kind: kind_name(e.kind),
                message: e.message,
                pod: reply.pod,
                ms,
            },
        }
    }

    fn start(&self, out: &mut String) {
        let p = &self.params;
        let connection = if p.reuse { "reuse" } else { "new" };
        match self.format {
            Format::Text => {
                let over = if p.reuse {
                    "one reused connection"
                } else {
                    "a new connection each"
                };
                let _ = writeln!(
                    out,
                    "Watching {} ({}) every {} ms for {} s, {over}. Ctrl-C stops it.",
                    p.service.name(),
                    self.url,
                    p.interval.as_millis(),
                    p.duration.as_secs()
                );
                let _ = writeln!(
                    out,
                    "    time  answered by (its X-Pod-State), or the failure; latency"
                );
            }
            Format::Events => event(
                out,
                "start",
                &StartEvent {
                    service: p.service.name(),
                    url: &self.url,
                    interval_ms: p.interval.as_millis() as u64,
                    duration_s: p.duration.as_secs(),
                    connection,
                },
            ),
        }
    }

    fn write_call(&self, out: &mut String, t: Duration, outcome: &Outcome) {
        let t = seconds(t);
        match self.format {
            Format::Text => {
                let _ = match outcome {
                    Outcome::Answered { pod, state, ms } => {
                        writeln!(out, "{t:>8.2} s  {pod} ({state})  {ms} ms")
                    }
                    Outcome::Failed {
                        kind,
                        message,
                        pod: Some(pod),
                        ms,
                    } => writeln!(
                        out,
                        "{t:>8.2} s  FAILED {kind} from {pod}: {message}  {ms} ms"
                    ),
                    Outcome::Failed {
                        kind, message, ms, ..
                    } => writeln!(out, "{t:>8.2} s  FAILED {kind}: {message}  {ms} ms"),
                    Outcome::Throttled => writeln!(
                        out,
                        "{t:>8.2} s  throttled: the labs' budget of new connections is spent; \
                         call skipped"
                    ),
                };
            }
            Format::Events => {
                let mut call = CallEvent {
                    seq: self.tally.calls + self.tally.throttled,
                    t,
                    outcome: "ok",
                    pod: None,
                    state: None,
                    kind: None,
                    error: None,
                    ms: None,
                };
                match outcome {
                    Outcome::Answered { pod, state, ms } => {
                        call.pod = Some(pod);
                        call.state = Some(state);
                        call.ms = Some(*ms);
                    }
                    Outcome::Failed {
                        kind,
                        message,
                        pod,
                        ms,
                    } => {
                        call.outcome = "failed";
                        call.pod = pod.as_deref();
                        call.kind = Some(kind);
                        call.error = Some(message);
                        call.ms = Some(*ms);
                    }
                    Outcome::Throttled => call.outcome = "throttled",
                }
                event(out, "call", &call);
            }
        }
    }

    fn write_transition(&self, out: &mut String, transition: &Transition) {
        match self.format {
            Format::Text => {
                let _ = writeln!(out, "{:>8.2} s  >> {}", transition.t, transition.text);
            }
            Format::Events => event(out, "transition", transition),
        }
    }

    fn write_summary(&self, out: &mut String, s: &Summary) {
        if self.format == Format::Events {
            return event(out, "summary", s);
        }
        let _ = writeln!(
            out,
            "\n==== SUMMARY after {:.1} s: {} call(s), {} answered, {} failed, {} throttled",
            s.duration_s, s.calls, s.answered, s.failed, s.throttled
        );
        let width = s.pods.keys().map(String::len).max().unwrap_or(0);
        let _ = writeln!(out, "Calls per pod:");
        if s.pods.is_empty() {
            let _ = writeln!(out, "  (no pod answered)");
        }
        for (pod, p) in &s.pods {
            let _ = writeln!(
                out,
                "  {pod:<width$}  {:>5}  first at {:.2} s, last at {:.2} s",
                p.calls, p.first_s, p.last_s
            );
        }
        if s.failures.is_empty() {
            let _ = writeln!(out, "Failures: none");
        } else {
            let _ = writeln!(out, "Failures by kind:");
            for (kind, f) in &s.failures {
                let _ = writeln!(
                    out,
                    "  {kind:<10} {:>5}  first at {:.2} s, last at {:.2} s",
                    f.count, f.first_s, f.last_s
                );
            }
        }
        match &s.longest_run {
            Some(run) => {
                let _ = writeln!(
                    out,
                    "Longest run without a failure: {} call(s), {:.2} s to {:.2} s ({:.1} s)",
                    run.calls, run.from_s, run.to_s, run.seconds
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "Longest run without a failure: none (every call failed)"
                );
            }
        }
        for gone in &s.stopped {
            let _ = write!(
                out,
                "Stopped answering: {} last answered at {:.2} s, {:.1} s before the end",
                gone.pod, gone.last_s, gone.silent_s
            );
            if let (Some(state), Some(since), Some(more)) = (
                &gone.state,
                gone.not_ready_since_s,
                gone.answered_while_not_ready_s,
            ) {
                let _ = write!(
                    out,
                    "; it said {state} from {since:.2} s and was answering {more:.1} s after that"
                );
            }
            let _ = writeln!(out);
        }
    }
}

/// One Server-Sent Event: `event: name` and the JSON on one `data:` line (JSON strings escape
/// newlines, so an event can never be split or forged by what a backend sends).
fn event(out: &mut String, name: &str, data: &impl Serialize) {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    let _ = write!(out, "event: {name}\ndata: {json}\n\n");
}

/// The failure kinds as the watch names them.
fn kind_name(kind: FailureKind) -> String {
    match kind {
        FailureKind::Dns => "dns".into(),
        FailureKind::Refused => "refused".into(),
        FailureKind::Timeout => "timeout".into(),
        FailureKind::Closed => "closed".into(),
        FailureKind::Connect => "connect".into(),
        FailureKind::Status(code) => format!("http-{code}"),
        FailureKind::InvalidResponse => "invalid".into(),
    }
}

/// Seconds since the start, to the millisecond.
fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StartEvent<'a> {
    service: &'static str,
    url: &'a str,
    interval_ms: u64,
    duration_s: u64,
    connection: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallEvent<'a> {
    /// This call's number, throttled ones included: 1, 2, 3, …
    seq: usize,
    t: f64,
    /// ok, failed or throttled.
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ms: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Transition {
    t: f64,
    /// new-pod, state, gone, back, failing, recovered.
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<String>,
    text: String,
}

/// What the watch has seen so far.
#[derive(Default)]
struct Tally {
    /// Calls made (throttled ones are not).
    calls: usize,
    answered: usize,
    failed: usize,
    throttled: usize,
    pods: BTreeMap<String, PodTally>,
    failures: BTreeMap<String, KindTally>,
    /// The failure streak going on: when it began and how many calls it has had.
    failing: Option<(f64, usize)>,
    /// The run of calls without a failure going on: its first and last call, and its length.
    run: Option<Run>,
    longest: Option<Run>,
}

struct PodTally {
    calls: usize,
    first_s: f64,
    last_s: f64,
    /// `calls` of the watch when this pod last answered.
    last_call: usize,
    state: String,
    /// When its answers began to say something other than `ready`, if they still do.
    not_ready_since: Option<f64>,
    gone: bool,
}

#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    calls: usize,
    from_s: f64,
    to_s: f64,
    seconds: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KindTally {
    count: usize,
    first_s: f64,
    last_s: f64,
}

impl Tally {
    /// Counts a call and says which transitions it marks.
    fn record(&mut self, at: Duration, outcome: &Outcome, interval: Duration) -> Vec<Transition> {
        let t = seconds(at);
        let mut said = Vec::new();
        match outcome {
            Outcome::Throttled => {
                self.throttled += 1;
                return said;
            }
            Outcome::Answered { pod, state, .. } => {
                self.calls += 1;
                self.answered += 1;
                let pod = if self.pods.len() >= MAX_PODS && !self.pods.contains_key(pod) {
                    "(other)"
                } else {
                    pod.as_str()
                };
                self.answer(t, pod, state, &mut said);
                if let Some((since, failed)) = self.failing.take() {
                    said.push(Transition {
                        t,
                        kind: "recovered",
                        pod: None,
                        text: match failed {
                            1 => format!("recovered: {pod} answered after 1 failed call"),
                            n => format!(
                                "recovered: {pod} answered after {n} failed calls over {:.1} s",
                                t - since
                            ),
                        },
                    });
                }
                let run = self.run.get_or_insert(Run {
                    calls: 0,
                    from_s: t,
                    to_s: t,
                    seconds: 0.0,
                });
                run.calls += 1;
                run.to_s = t;
                run.seconds = ((t - run.from_s) * 1000.0).round() / 1000.0;
                if self.longest.is_none_or(|l| run.calls > l.calls) {
                    self.longest = Some(*run);
                }
            }
            Outcome::Failed { kind, message, .. } => {
                self.calls += 1;
                self.failed += 1;
                self.run = None;
                let entry = self.failures.entry(kind.clone()).or_insert(KindTally {
                    count: 0,
                    first_s: t,
                    last_s: t,
                });
                entry.count += 1;
                entry.last_s = t;
                match &mut self.failing {
                    Some((_, n)) => *n += 1,
                    None => {
                        let first = if self.failures.values().map(|f| f.count).sum::<usize>() == 1 {
                            "first failure"
                        } else {
                            "failing again"
                        };
                        said.push(Transition {
                            t,
                            kind: "failing",
                            pod: None,
                            text: format!("{first}: {kind} ({message})"),
                        });
                        self.failing = Some((t, 1));
                    }
                }
            }
        }
        said.extend(self.check_gone(at, interval));
        said
    }

    fn answer(&mut self, t: f64, pod: &str, state: &str, said: &mut Vec<Transition>) {
        let calls = self.calls;
        let Some(p) = self.pods.get_mut(pod) else {
            let text = match serving(state) {
                true => format!("{pod} answered for the first time"),
                false => format!("{pod} answered for the first time, saying {state}"),
            };
            said.push(Transition {
                t,
                kind: "new-pod",
                pod: Some(pod.to_owned()),
                text,
            });
            self.pods.insert(
                pod.to_owned(),
                PodTally {
                    calls: 1,
                    first_s: t,
                    last_s: t,
                    last_call: calls,
                    state: state.to_owned(),
                    not_ready_since: (!serving(state)).then_some(t),
                    gone: false,
                },
            );
            return;
        };
        if p.gone {
            p.gone = false;
            said.push(Transition {
                t,
                kind: "back",
                pod: Some(pod.to_owned()),
                text: format!(
                    "{pod} answers again, {:.1} s after its last answer",
                    t - p.last_s
                ),
            });
        }
        if p.state != state {
            said.push(Transition {
                t,
                kind: "state",
                pod: Some(pod.to_owned()),
                text: format!("{pod} now says {state} (was {})", p.state),
            });
            p.not_ready_since = match (serving(state), p.not_ready_since) {
                (true, _) => None,
                (false, Some(since)) => Some(since),
                (false, None) => Some(t),
            };
            p.state = state.to_owned();
        }
        p.calls += 1;
        p.last_s = t;
        p.last_call = calls;
    }

    /// Marks the pods not seen for a while: several rounds of the pods still answering, and a
    /// couple of seconds at least.
    fn check_gone(&mut self, at: Duration, interval: Duration) -> Vec<Transition> {
        let t = seconds(at);
        let active = self.pods.values().filter(|p| !p.gone).count().max(1);
        let rounds = GONE_ROUNDS * active;
        let min_s = GONE_MIN
            .as_secs_f64()
            .max(interval.as_secs_f64() * rounds as f64);
        let mut said = Vec::new();
        for (name, p) in &mut self.pods {
            if !p.gone && self.calls - p.last_call >= rounds && t - p.last_s >= min_s {
                p.gone = true;
                said.push(Transition {
                    t,
                    kind: "gone",
                    pod: Some(name.clone()),
                    text: format!("{name} last answered {:.1} s ago", t - p.last_s),
                });
            }
        }
        said
    }

    fn summary(&self, end: Duration) -> Summary {
        let end = seconds(end);
        Summary {
            duration_s: end,
            calls: self.calls,
            answered: self.answered,
            failed: self.failed,
            throttled: self.throttled,
            pods: self
                .pods
                .iter()
                .map(|(name, p)| {
                    let s = PodSummary {
                        calls: p.calls,
                        first_s: p.first_s,
                        last_s: p.last_s,
                        state: p.state.clone(),
                    };
                    (name.clone(), s)
                })
                .collect(),
            failures: self
                .failures
                .iter()
                .map(|(k, f)| {
                    let f = KindTally {
                        count: f.count,
                        first_s: f.first_s,
                        last_s: f.last_s,
                    };
                    (k.clone(), f)
                })
                .collect(),
            longest_run: self.longest,
            stopped: self
                .pods
                .iter()
                .filter(|(_, p)| p.gone)
                .map(|(name, p)| Stopped {
                    pod: name.clone(),
                    last_s: p.last_s,
                    silent_s: round(end - p.last_s),
                    state: p.not_ready_since.map(|_| p.state.clone()),
                    not_ready_since_s: p.not_ready_since,
                    answered_while_not_ready_s: p.not_ready_since.map(|s| round(p.last_s - s)),
                })
                .collect(),
        }
    }
}

/// Whether a pod's `X-Pod-State` says it serves as usual: `ready`, or nothing (a backend that
/// does not send the header, `unknown`), rather than draining, disabled or in a fault drill.
fn serving(state: &str) -> bool {
    matches!(state, "ready" | "unknown")
}

fn round(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    duration_s: f64,
    calls: usize,
    answered: usize,
    failed: usize,
    throttled: usize,
    pods: BTreeMap<String, PodSummary>,
    failures: BTreeMap<String, KindTally>,
    /// The most calls in a row without a failure.
    longest_run: Option<Run>,
    /// Pods that answered and then stopped, with when.
    stopped: Vec<Stopped>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSummary {
    calls: usize,
    first_s: f64,
    last_s: f64,
    /// What its last answer said in `X-Pod-State`.
    state: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Stopped {
    pod: String,
    last_s: f64,
    /// From its last answer to the end of the watch.
    silent_s: f64,
    /// What it said when it stopped, if not `ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    /// When its answers first said that: about when it was disabled or began to drain.
    #[serde(skip_serializing_if = "Option::is_none")]
    not_ready_since_s: Option<f64>,
    /// How long it kept answering after that: the time the Service took to stop sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    answered_while_not_ready_s: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(pod: &str) -> Outcome {
        Outcome::Answered {
            pod: pod.into(),
            state: "ready".into(),
            ms: 1.0,
        }
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            kind: "refused".into(),
            message: "connection refused".into(),
            pod: None,
            ms: 0.1,
        }
    }

    #[test]
    fn transitions_are_marked_once_and_the_summary_adds_up() {
        let mut tally = Tally::default();
        let step = Duration::from_millis(250);
        let at = |i: u32| step * i;
        let kinds = |said: Vec<Transition>| said.into_iter().map(|t| t.kind).collect::<Vec<_>>();
        assert_eq!(kinds(tally.record(at(0), &ok("a"), step)), ["new-pod"]);
        assert_eq!(kinds(tally.record(at(1), &ok("b"), step)), ["new-pod"]);
        assert!(tally.record(at(2), &ok("a"), step).is_empty());
        assert_eq!(kinds(tally.record(at(3), &failed(), step)), ["failing"]);
        assert!(tally.record(at(4), &failed(), step).is_empty());
        assert!(tally.record(at(5), &Outcome::Throttled, step).is_empty());
        assert_eq!(kinds(tally.record(at(6), &ok("a"), step)), ["recovered"]);
        // b is silent for 16 calls (8 rounds of two pods) and at least 2 s: gone.
        let mut gone_at = None;
        for i in 7..40 {
            if kinds(tally.record(at(i), &ok("a"), step)).contains(&"gone") {
                gone_at = Some(i);
                break;
            }
        }
        let gone_at = gone_at.expect("b is marked gone");
        assert!(gone_at >= 17, "{gone_at}");
        let back = tally.record(at(gone_at + 1), &ok("b"), step);
        assert_eq!(kinds(back), ["back"]);

        let summary = tally.summary(at(gone_at + 2));
        assert_eq!(summary.calls, summary.answered + summary.failed);
        assert_eq!(summary.failed, 2);
        assert_eq!(summary.throttled, 1);
        assert_eq!(summary.failures["refused"].count, 2);
        assert_eq!(summary.failures["refused"].first_s, 0.75);
        assert_eq!(summary.failures["refused"].last_s, 1.0);
        let run = summary.longest_run.unwrap();
        assert_eq!(run.from_s, 1.5);
        assert!(summary.stopped.is_empty(), "b came back");
    }

    #[test]
    fn a_pod_that_said_disabled_then_left_is_reported_with_both_times() {
        let mut tally = Tally::default();
        let step = Duration::from_millis(100);
        tally.record(Duration::ZERO, &ok("a"), step);
        tally.record(step, &ok("b"), step);
        let disabled = Outcome::Answered {
            pod: "b".into(),
            state: "disabled".into(),
            ms: 1.0,
        };
        let said = tally.record(step * 3, &disabled, step);
        assert_eq!(said[0].text, "b now says disabled (was ready)");
        tally.record(step * 5, &disabled, step);
        for i in 6..60 {
            tally.record(step * i, &ok("a"), step);
        }
        let summary = tally.summary(step * 60);
        let b = &summary.stopped[0];
        assert_eq!(b.pod, "b");
        assert_eq!(b.last_s, 0.5);
        assert_eq!(b.not_ready_since_s, Some(0.3));
        assert_eq!(b.answered_while_not_ready_s, Some(0.2));
        assert_eq!(b.silent_s, 5.5);
    }
}
