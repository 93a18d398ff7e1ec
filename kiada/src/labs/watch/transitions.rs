//! The moments a watch marks on lines starting `>>`: a pod answering for the first time, a pod
//! whose `X-Pod-State` changed, a pod not seen for a while and its return, the first failure
//! and each recovery. Each is said once, when it happens; the tally decides when.

use std::time::Duration;

use serde::Serialize;

/// A pod is "not seen for a while" once this many calls per pod still answering have passed
/// without it, and at least [`GONE_MIN`]. Eight rounds of the pods: a random balancer (iptables)
/// skips a given pod of three that often by chance about once in 17,000 calls.
const GONE_ROUNDS: usize = 8;
const GONE_MIN: Duration = Duration::from_secs(2);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Transition {
    pub t: f64,
    /// new-pod, state, gone, back, failing, recovered.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub text: String,
}

impl Transition {
    pub fn new_pod(t: f64, pod: &str, state: &str) -> Self {
        let text = match serving(state) {
            true => format!("{pod} answered for the first time"),
            false => format!("{pod} answered for the first time, saying {state}"),
        };
        Transition {
            t,
            kind: "new-pod",
            pod: Some(pod.to_owned()),
            text,
        }
    }

    /// `pod` answers again; it last answered at `last_s`.
    pub fn back(t: f64, pod: &str, last_s: f64) -> Self {
        Transition {
            t,
            kind: "back",
            pod: Some(pod.to_owned()),
            text: format!(
                "{pod} answers again, {:.1} s after its last answer",
                t - last_s
            ),
        }
    }

    pub fn state(t: f64, pod: &str, now: &str, was: &str) -> Self {
        Transition {
            t,
            kind: "state",
            pod: Some(pod.to_owned()),
            text: format!("{pod} now says {now} (was {was})"),
        }
    }

    pub fn gone(t: f64, pod: &str, last_s: f64) -> Self {
        Transition {
            t,
            kind: "gone",
            pod: Some(pod.to_owned()),
            text: format!("{pod} last answered {:.1} s ago", t - last_s),
        }
    }

    /// The first failure of the watch, or the first of a new streak.
    pub fn failing(t: f64, first: bool, kind: &str, message: &str) -> Self {
        let which = if first {
            "first failure"
        } else {
            "failing again"
        };
        Transition {
            t,
            kind: "failing",
            pod: None,
            text: format!("{which}: {kind} ({message})"),
        }
    }

    /// `pod` answered after `failed` failed calls, the first of them at `since`.
    pub fn recovered(t: f64, pod: &str, failed: usize, since: f64) -> Self {
        Transition {
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
        }
    }
}

/// How long a pod must be silent to be marked gone, with `active` pods still answering:
/// calls of the watch since its last answer, and seconds.
pub(super) fn gone_after(active: usize, interval: Duration) -> (usize, f64) {
    let rounds = GONE_ROUNDS * active.max(1);
    let min_s = GONE_MIN
        .as_secs_f64()
        .max(interval.as_secs_f64() * rounds as f64);
    (rounds, min_s)
}

/// Whether a pod's `X-Pod-State` says it serves as usual: `ready`, or nothing (a backend that
/// does not send the header, `unknown`), rather than draining, disabled or in a fault drill.
pub(super) fn serving(state: &str) -> bool {
    matches!(state, "ready" | "unknown")
}
