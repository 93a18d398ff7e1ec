//! The page: what it shows, gathered once, then rendered as text, HTML or JSON.

use std::fmt::Write;

use askama::Template;
use serde::Serialize;

use super::client_ip::ClientClass;
use crate::backends::{BackendError, Hop, Question, Reply};
use crate::terminal::{one_line, plain, wrap};
use crate::view::{Badge, VERSION};

/// Everything a page shows.
pub struct Page {
    /// stable, canary, …: from `RELEASE`, which the manifests set from the pod's `rel` label.
    pub release: Option<String>,
    pub tip: Reply<String>,
    pub question: Reply<Question>,
    /// How each call travelled.
    pub tip_hop: Hop,
    pub question_hop: Hop,
    pub request: RequestInfo,
    pub status: String,
    /// `scheme://host` the client used, for the curl commands the text page suggests.
    pub origin: String,
}

/// Who served the request and who asked. The identity is shared, not copied per request.
pub struct RequestInfo {
    pub identity: std::sync::Arc<kit::Identity>,
    pub client_ip: String,
    pub client_class: ClientClass,
    pub forwarded_for: Option<String>,
    /// Requests the client's connection has carried, this one included.
    pub connection_requests: Option<u64>,
}

impl RequestInfo {
    /// What the client's connection count means for load spread.
    pub fn connection_words(&self) -> Option<String> {
        let n = self.connection_requests?;
        Some(if n == 1 {
            "This is the first request on your connection. A Service picks a pod per \
             connection: a client that opens a new connection for every request (curl does) may \
             reach another kiada pod next time, while one that keeps its connection open (a \
             browser does) stays with this pod until the connection closes."
                .to_owned()
        } else {
            format!(
                "Your connection has carried {n} requests: a browser keeps its connection open, \
                 and a Service picks a pod per connection, so every reload reaches this same \
                 kiada pod until the connection closes."
            )
        })
    }
}

impl Serialize for RequestInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct View<'a> {
            pod_name: &'a str,
            pod_namespace: &'a str,
            node_name: &'a str,
            hostname: &'a str,
            pod_ip: &'a str,
            node_ip: &'a str,
            client_ip: &'a str,
            client_ip_class: ClientClass,
            client_ip_label: &'static str,
            client_ip_meaning: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            forwarded_for: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            requests_on_connection: Option<u64>,
        }
        let id = &self.identity;
        View {
            pod_name: &id.pod_name,
            pod_namespace: &id.pod_namespace,
            node_name: &id.node_name,
            hostname: &id.hostname,
            pod_ip: &id.pod_ip,
            node_ip: &id.node_ip,
            client_ip: &self.client_ip,
            client_ip_class: self.client_class,
            client_ip_label: self.client_class.label(),
            client_ip_meaning: self.client_class.meaning(),
            forwarded_for: self.forwarded_for.as_deref(),
            requests_on_connection: self.connection_requests,
        }
        .serialize(serializer)
    }
}

/// One backend call as the pages show it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Served<'a, T: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<&'a T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a BackendError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
    pub pod: Option<&'a str>,
    pub pod_ip: Option<&'a str>,
    pub elapsed_ms: f64,
    #[serde(flatten)]
    pub hop: &'a Hop,
}

impl<'a, T: Serialize> Served<'a, T> {
    fn of(reply: &'a Reply<T>, hop: &'a Hop) -> Self {
        Served {
            value: reply.result.as_ref().ok(),
            error: reply.result.as_ref().err(),
            hint: reply.result.as_ref().err().map(BackendError::hint),
            pod: reply.by.pod.as_deref(),
            pod_ip: reply.by.pod_ip.as_deref(),
            elapsed_ms: millis(reply.elapsed),
            hop,
        }
    }
}

fn millis(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// "served by pod quote-abc in 1.2 ms", or what is known of a failed call.
fn served_by<T>(reply: &Reply<T>) -> String {
    let pod = reply.by.pod.as_deref().unwrap_or("no pod");
    format!("{pod} in {} ms", millis(reply.elapsed))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageJson<'a> {
    version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<&'a str>,
    tip: Served<'a, String>,
    question: Served<'a, Question>,
    request: &'a RequestInfo,
    status: &'a str,
}

impl Page {
    pub fn json(&self) -> PageJson<'_> {
        PageJson {
            version: VERSION,
            release: self.release.as_deref(),
            tip: Served::of(&self.tip, &self.tip_hop),
            question: Served::of(&self.question, &self.question_hop),
            request: &self.request,
            status: &self.status,
        }
    }

    pub fn text(&self) -> String {
        let mut out = String::with_capacity(2048);
        let r = &self.request;
        let id = &r.identity;
        match &self.release {
            Some(release) => writeln!(out, "==== KIADA {VERSION} ({release} release)\n"),
            None => writeln!(out, "==== KIADA {VERSION}\n"),
        }
        .ok();
        let _ = writeln!(out, "==== TIP OF THE MINUTE");
        match &self.tip.result {
            Ok(tip) => {
                let _ = writeln!(out, "{}", plain(tip));
            }
            Err(e) => write_error(&mut out, "quote", e),
        }
        let _ = writeln!(out, "(quote served by {})", served_by(&self.tip));
        out.push_str(&self.tip_hop.text());
        out.push('\n');

        let _ = writeln!(out, "==== POP QUIZ");
        match &self.question.result {
            Ok(q) => {
                let _ = writeln!(out, "Question {}: {}", q.id, plain(&q.text));
                for (i, answer) in q.answers.iter().enumerate() {
                    let _ = writeln!(out, "  {i}) {}", one_line(answer));
                }
                let _ = writeln!(
                    out,
                    "Answer with: curl -X POST {}/question/{}/answers/<number>",
                    self.origin, q.id
                );
            }
            Err(e) => write_error(&mut out, "quiz", e),
        }
        let _ = writeln!(out, "(quiz served by {})", served_by(&self.question));
        out.push_str(&self.question_hop.text());
        out.push('\n');

        let _ = writeln!(out, "==== REQUEST INFO");
        let _ = writeln!(
            out,
            "Request processed by kiada {VERSION} in pod \"{}\" on node \"{}\".",
            id.pod_name, id.node_name
        );
        let _ = writeln!(
            out,
            "Pod hostname: {}; Pod IP: {}; Node IP: {}; Client IP: {}",
            id.hostname, id.pod_ip, id.node_ip, r.client_ip
        );
        let client = format!(
            "Client IP {} ({}): {}.",
            r.client_ip,
            r.client_class.label(),
            r.client_class.meaning()
        );
        out.push_str(&wrap(&client, 0, 80));
        if let Some(xff) = &r.forwarded_for {
            let claimed = format!(
                "X-Forwarded-For: {} (claimed: a proxy in front of this pod sets it, but any \
                 client can too)",
                one_line(xff)
            );
            out.push_str(&wrap(&claimed, 0, 80));
        }
        if let Some(words) = r.connection_words() {
            out.push_str(&wrap(&words, 0, 80));
        }
        let _ = writeln!(out, "\n==== STATUS\n{}\n", self.status);
        let _ = writeln!(
            out,
            "The HTML version of this page is at {}/html",
            self.origin
        );
        out
    }

    /// The HTML page, with `path`, the page view's path drawn (SVG, see `path.rs`).
    pub fn html(&self, path: &str) -> Result<String, askama::Error> {
        PageHtml {
            path,
            base: "",
            version: VERSION,
            release: Badge::of(self.release.as_deref()),
            tip: &self.tip,
            question: &self.question,
            tip_hop: &self.tip_hop,
            question_hop: &self.question_hop,
            request: &self.request,
            status: &self.status,
        }
        .render()
    }
}

fn write_error(out: &mut String, service: &str, e: &BackendError) {
    let _ = writeln!(
        out,
        "ERROR: cannot reach the {service} service: {}",
        e.message
    );
    let _ = writeln!(out, "HINT: {}", e.hint());
}

#[derive(Template)]
#[template(path = "page.html")]
struct PageHtml<'a> {
    /// The path of this page view, drawn (SVG, rendered and escaped by its own template).
    path: &'a str,
    base: &'a str,
    version: &'a str,
    release: Option<Badge<'a>>,
    tip: &'a Reply<String>,
    question: &'a Reply<Question>,
    tip_hop: &'a Hop,
    question_hop: &'a Hop,
    request: &'a RequestInfo,
    status: &'a str,
}
