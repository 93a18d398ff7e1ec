//! What the watch has counted so far: calls, answers and failures, per pod and per failure
//! kind, the failure streak and the longest run without one. Counting a call says which
//! transitions it marks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::calls::Outcome;
use super::transitions::{Transition, gone_after, serving};

/// Distinct pod names one watch keeps apart; more are counted as `(other)`. Pod names come
/// from the backends' headers, so a misbehaving backend must not grow a watch without bound.
const MAX_PODS: usize = 100;

#[derive(Default)]
pub(super) struct Tally {
    /// Calls made (throttled ones are not).
    pub calls: usize,
    pub answered: usize,
    pub failed: usize,
    pub throttled: usize,
    pub pods: BTreeMap<String, PodTally>,
    pub failures: BTreeMap<String, KindTally>,
    /// The failure streak going on: when it began and how many calls it has had.
    failing: Option<(f64, usize)>,
    /// The run of calls without a failure going on: its first and last call, and its length.
    run: Option<Run>,
    pub longest: Option<Run>,
}

pub(super) struct PodTally {
    pub calls: usize,
    pub first_s: f64,
    pub last_s: f64,
    /// `calls` of the watch when this pod last answered.
    last_call: usize,
    pub state: String,
    /// When its answers began to say something other than `ready`, if they still do.
    pub not_ready_since: Option<f64>,
    pub gone: bool,
}

#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Run {
    pub calls: usize,
    pub from_s: f64,
    pub to_s: f64,
    pub seconds: f64,
}

#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct KindTally {
    pub count: usize,
    pub first_s: f64,
    pub last_s: f64,
}

/// Seconds since the start, to the millisecond.
pub(super) fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

impl Tally {
    /// Counts a call and says which transitions it marks.
    pub fn record(
        &mut self,
        at: Duration,
        outcome: &Outcome,
        interval: Duration,
    ) -> Vec<Transition> {
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
                    said.push(Transition::recovered(t, pod, failed, since));
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
                        let first = self.failures.values().map(|f| f.count).sum::<usize>() == 1;
                        said.push(Transition::failing(t, first, kind, message));
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
            said.push(Transition::new_pod(t, pod, state));
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
            said.push(Transition::back(t, pod, p.last_s));
        }
        if p.state != state {
            said.push(Transition::state(t, pod, state, &p.state));
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
    pub fn check_gone(&mut self, at: Duration, interval: Duration) -> Vec<Transition> {
        let t = seconds(at);
        let active = self.pods.values().filter(|p| !p.gone).count();
        let (rounds, min_s) = gone_after(active, interval);
        let mut said = Vec::new();
        for (name, p) in &mut self.pods {
            if !p.gone && self.calls - p.last_call >= rounds && t - p.last_s >= min_s {
                p.gone = true;
                said.push(Transition::gone(t, name, p.last_s));
            }
        }
        said
    }
}
