//! The check's report: a row per claim with its verdict, as text for curl and `kiada check`,
//! as JSON, and as the `/lab/check` page.

use std::fmt::Write;

use askama::Template;
use serde::{Deserialize, Serialize};

use crate::terminal::wrap;
use crate::view::{Badge, VERSION, colour};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }

    /// The badge's CSS class on the page.
    pub fn class(self) -> &'static str {
        match self {
            Verdict::Pass => "verdict pass",
            Verdict::Warn => "verdict warn",
            Verdict::Fail => "verdict fail",
            Verdict::Skip => "verdict skip",
        }
    }
}

/// One claim, what was done, what was seen, and the verdict.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub id: String,
    pub claim: String,
    pub did: String,
    pub saw: String,
    pub verdict: Verdict,
    /// For FAIL and WARN: the likeliest cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// For FAIL and WARN: the command to run next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// The pods involved, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
}

impl Row {
    pub fn new(id: &str, claim: &str, did: String, saw: String, verdict: Verdict) -> Row {
        Row {
            id: id.into(),
            claim: claim.into(),
            did,
            saw,
            verdict,
            cause: None,
            next: None,
            pods: Vec::new(),
        }
    }

    pub fn because(mut self, cause: impl Into<String>, next: impl Into<String>) -> Row {
        self.cause = Some(cause.into());
        self.next = Some(next.into());
        self
    }

    pub fn with_pods(mut self, pods: impl IntoIterator<Item = String>) -> Row {
        self.pods = pods.into_iter().collect();
        self
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub pod: String,
    pub namespace: String,
    pub node: String,
    pub seconds: f64,
    pub rows: Vec<Row>,
    pub counts: Counts,
    /// No claim failed.
    pub passed: bool,
}

impl Report {
    pub fn new(pod: &str, namespace: &str, node: &str, seconds: f64, rows: Vec<Row>) -> Report {
        let mut counts = Counts::default();
        for row in &rows {
            match row.verdict {
                Verdict::Pass => counts.pass += 1,
                Verdict::Warn => counts.warn += 1,
                Verdict::Fail => counts.fail += 1,
                Verdict::Skip => counts.skip += 1,
            }
        }
        Report {
            pod: pod.into(),
            namespace: namespace.into(),
            node: node.into(),
            seconds: (seconds * 10.0).round() / 10.0,
            passed: counts.fail == 0,
            rows,
            counts,
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "kiada check from pod {} (namespace {}, node {}): {} claim(s) in {:.1} s\n",
            self.pod,
            self.namespace,
            self.node,
            self.rows.len(),
            self.seconds
        );
        for row in &self.rows {
            // The claim wrapped beside its verdict and id, then the details indented.
            let head = format!("{}  {:<11} ", row.verdict.word(), row.id);
            let claim = wrap(&row.claim, head.len(), 80);
            out.push_str(&head);
            out.push_str(claim.get(head.len()..).unwrap_or("\n"));
            for (label, text) in [("did", Some(&row.did)), ("saw", Some(&row.saw))]
                .into_iter()
                .chain([("cause", row.cause.as_ref()), ("next", row.next.as_ref())])
            {
                if let Some(text) = text {
                    let line = format!("{label}: {text}");
                    out.push_str(&wrap(&line, 6, 80));
                }
            }
            out.push('\n');
        }
        let c = &self.counts;
        let _ = writeln!(
            out,
            "{} PASS, {} WARN, {} FAIL, {} SKIP: {}",
            c.pass,
            c.warn,
            c.fail,
            c.skip,
            if self.passed {
                "nothing failed"
            } else {
                "something failed (see cause and next above)"
            }
        );
        out
    }

    pub fn html(&self, release: Option<&str>) -> Result<String, askama::Error> {
        CheckHtml {
            base: "../",
            version: VERSION,
            release: Badge::of(release),
            pod_colour: colour::of(&self.pod),
            report: self,
            rows: self
                .rows
                .iter()
                .map(|row| RowHtml {
                    row,
                    pods: row
                        .pods
                        .iter()
                        .map(|p| (p.as_str(), colour::of(p)))
                        .collect(),
                })
                .collect(),
        }
        .render()
    }
}

struct RowHtml<'a> {
    row: &'a Row,
    pods: Vec<(&'a str, String)>,
}

#[derive(Template)]
#[template(path = "check.html")]
struct CheckHtml<'a> {
    base: &'a str,
    version: &'a str,
    release: Option<Badge<'a>>,
    pod_colour: String,
    report: &'a Report,
    rows: Vec<RowHtml<'a>>,
}
