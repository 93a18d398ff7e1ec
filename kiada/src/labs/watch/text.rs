//! The watch as text for `curl -N`: a line per call, `>>` lines for transitions, the summary.

use std::fmt::Write;
use std::time::Duration;

use super::calls::Outcome;
use super::query::Params;
use super::summary::Summary;
use super::tally::seconds;
use super::transitions::Transition;

pub(super) fn start(out: &mut String, p: &Params, url: &str) {
    let over = match (p.reuse, p.h2) {
        (_, true) => "HTTP/2 streams over one connection",
        (true, false) => "one reused connection",
        (false, false) => "a new connection each",
    };
    let _ = writeln!(
        out,
        "Watching {} ({url}) every {} ms for {} s, {over}. Ctrl-C stops it.",
        p.service.name(),
        p.interval.as_millis(),
        p.duration.as_secs()
    );
    let _ = writeln!(
        out,
        "    time  answered by (its X-Pod-State), or the failure; latency"
    );
}

pub(super) fn call(out: &mut String, t: Duration, outcome: &Outcome) {
    let t = seconds(t);
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

pub(super) fn transition(out: &mut String, transition: &Transition) {
    let _ = writeln!(out, "{:>8.2} s  >> {}", transition.t, transition.text);
}

pub(super) fn summary(out: &mut String, s: &Summary) {
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
