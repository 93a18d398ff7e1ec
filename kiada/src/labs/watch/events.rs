//! The watch as Server-Sent Events (`Accept: text/event-stream`) for the lab page's timeline:
//! `start`, one `call` per call, `transition`, and a last `summary`.

use std::fmt::Write;
use std::time::Duration;

use serde::Serialize;

use super::calls::Outcome;
use super::query::Params;
use super::summary::Summary;
use super::tally::seconds;
use super::transitions::Transition;

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

/// One Server-Sent Event: `event: name` and the JSON on one `data:` line (JSON strings escape
/// newlines, so an event can never be split or forged by what a backend sends).
fn event(out: &mut String, name: &str, data: &impl Serialize) {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    let _ = write!(out, "event: {name}\ndata: {json}\n\n");
}

pub(super) fn start(out: &mut String, p: &Params, url: &str) {
    let start = StartEvent {
        service: p.service.name(),
        url,
        interval_ms: p.interval.as_millis() as u64,
        duration_s: p.duration.as_secs(),
        connection: match (p.reuse, p.h2) {
            (_, true) => "h2",
            (true, false) => "reuse",
            (false, false) => "new",
        },
    };
    event(out, "start", &start);
}

/// Call number `seq` (throttled calls counted), made `t` after the start.
pub(super) fn call(out: &mut String, seq: usize, t: Duration, outcome: &Outcome) {
    let mut call = CallEvent {
        seq,
        t: seconds(t),
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

pub(super) fn transition(out: &mut String, transition: &Transition) {
    event(out, "transition", transition);
}

pub(super) fn summary(out: &mut String, s: &Summary) {
    event(out, "summary", s);
}
