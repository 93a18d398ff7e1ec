//! The watch's response: a body that makes the next call when the previous piece has been
//! sent, in the format the client asked for.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::calls::{Caller, Outcome};
use super::query::{Params, WatchQuery, parse};
use super::tally::Tally;
use super::transitions::Transition;
use super::{events, summary, text};
use crate::error::Error;
use crate::labs::limits::WatchSlot;
use crate::labs::state::LabState;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Events,
}

pub async fn watch(
    State(state): State<LabState>,
    Query(query): Query<WatchQuery>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let params = parse(&query)?;
    let slot = state.limits.start_watch()?;
    let format = match kit::negotiate::best(&headers, &["text/plain", "text/event-stream"]) {
        Some("text/event-stream") => Format::Events,
        _ => Format::Text,
    };
    let watcher = Watcher {
        caller: Caller {
            url: state.url(params.service),
            service: params.service,
            reuse: params.reuse,
            client: match params.h2 {
                true => state.backends.h2_client(),
                false => state.backends.lab_client(params.reuse),
            },
            backends: state.backends.clone(),
            limits: state.limits.clone(),
            // The body is polled outside the request's task-local scope: keep the id for the
            // calls.
            request_id: kit::request_id::current(),
            charged: false,
        },
        params,
        format,
        started: Instant::now(),
        next: 0,
        tally: Tally::default(),
        step: Step::Start,
        _slot: slot,
    };
    let deadline = Instant::now() + params.duration + GRACE;
    let (tx, rx) = mpsc::channel::<Bytes>(BUFFERED);
    tokio::spawn(drive(watcher, tx, deadline));
    let body = Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(chunk), rx))
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

/// How long a watch may run past its duration (its last call, the summary) before it is ended.
pub const GRACE: Duration = Duration::from_secs(5);

/// Pieces made but not yet taken by the response body. A client that stops reading holds at
/// most these; the calls wait until it reads again, or until the deadline ends the watch.
const BUFFERED: usize = 8;

/// Runs the watch on a task of its own, so that its end does not wait for the body to be read:
/// at the deadline (duration plus [`GRACE`]) it stops, and its slot among the watches is free
/// again, whether or not the client ever read a byte. A client that goes away closes the
/// channel, which ends the watch at once, the call in flight included.
async fn drive(mut watcher: Watcher, tx: mpsc::Sender<Bytes>, deadline: Instant) {
    loop {
        let chunk = tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep_until(deadline) => return,
            chunk = watcher.step() => chunk,
        };
        let Some(chunk) = chunk else { return };
        tokio::select! {
            sent = tx.send(chunk) => if sent.is_err() { return },
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

enum Step {
    Start,
    Calling,
    Done,
}

struct Watcher {
    caller: Caller,
    params: Params,
    format: Format,
    started: Instant,
    /// The number of the next call; call k is due at `started + k × interval`.
    next: u64,
    tally: Tally,
    step: Step,
    _slot: WatchSlot,
}

impl Watcher {
    /// The next piece of the stream, or `None` at its end.
    async fn step(&mut self) -> Option<Bytes> {
        let mut out = String::new();
        match self.step {
            Step::Start => {
                match self.format {
                    Format::Text => text::start(&mut out, &self.params, &self.caller.url),
                    Format::Events => events::start(&mut out, &self.params, &self.caller.url),
                }
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
                let outcome = self.caller.call().await;
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
        let summary = summary::of(&self.tally, end);
        match self.format {
            Format::Text => text::summary(out, &summary),
            Format::Events => events::summary(out, &summary),
        }
        self.step = Step::Done;
    }

    fn write_call(&self, out: &mut String, t: Duration, outcome: &Outcome) {
        match self.format {
            Format::Text => text::call(out, t, outcome),
            Format::Events => {
                let seq = self.tally.calls + self.tally.throttled;
                events::call(out, seq, t, outcome)
            }
        }
    }

    fn write_transition(&self, out: &mut String, transition: &Transition) {
        match self.format {
            Format::Text => text::transition(out, transition),
            Format::Events => events::transition(out, transition),
        }
    }
}
