//! The watch's summary, its last piece: calls per pod, failures by kind, the longest run without
//! a failure, and every pod that stopped answering, with when.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::tally::{KindTally, Run, Tally, seconds};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Summary {
    pub duration_s: f64,
    pub calls: usize,
    pub answered: usize,
    pub failed: usize,
    pub throttled: usize,
    pub pods: BTreeMap<String, PodSummary>,
    pub failures: BTreeMap<String, KindTally>,
    /// The most calls in a row without a failure.
    pub longest_run: Option<Run>,
    /// Pods that answered and then stopped, with when.
    pub stopped: Vec<Stopped>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PodSummary {
    pub calls: usize,
    pub first_s: f64,
    pub last_s: f64,
    /// What its last answer said in `X-Pod-State`.
    pub state: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Stopped {
    pub pod: String,
    pub last_s: f64,
    /// From its last answer to the end of the watch.
    pub silent_s: f64,
    /// What it said when it stopped, if not `ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When its answers first said that: about when it was disabled or began to drain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready_since_s: Option<f64>,
    /// How long it kept answering after that: the time the Service took to stop sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_while_not_ready_s: Option<f64>,
}

/// The summary of what `tally` counted, at `end` since the start.
pub(super) fn of(tally: &Tally, end: Duration) -> Summary {
    let end = seconds(end);
    Summary {
        duration_s: end,
        calls: tally.calls,
        answered: tally.answered,
        failed: tally.failed,
        throttled: tally.throttled,
        pods: tally
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
        failures: tally
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
        longest_run: tally.longest,
        stopped: tally
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

fn round(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labs::watch::calls::Outcome;
    use crate::labs::watch::transitions::Transition;

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

        let summary = of(&tally, at(gone_at + 2));
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
        let summary = of(&tally, step * 60);
        let b = &summary.stopped[0];
        assert_eq!(b.pod, "b");
        assert_eq!(b.last_s, 0.5);
        assert_eq!(b.not_ready_since_s, Some(0.3));
        assert_eq!(b.answered_while_not_ready_s, Some(0.2));
        assert_eq!(b.silent_s, 5.5);
    }
}
