//! The path of this page view, drawn: you → how the request came in → this kiada pod (its
//! node) → for quote and for quiz: the name → the address dialled (a virtual IP or a pod's own)
//! → the pod that answered (its node, the same as kiada's or another), new or reused
//! connection; a failed call drawn where it stopped. Only the HTML page draws it, from what the
//! page already knows: no extra query, no extra connection.

use super::client_ip::ClientClass;
use super::render::Page;
use crate::backends::{FailureKind, Hop, Reply};
use crate::view::colour;
use crate::view::drawing::{BOX_H, Drawing};

/// Rows of the two backends, and of kiada between them.
const QUOTE_Y: u32 = 8;
const QUIZ_Y: u32 = 8 + 2 * (BOX_H + 14);
const MIDDLE_Y: u32 = 8 + BOX_H + 14;

/// How a request from this client came in, in a few words.
fn entry(class: ClientClass) -> (&'static str, &'static str) {
    match class {
        ClientClass::Loopback => ("port-forward", "or this host"),
        ClientClass::ThisNode => ("via this node", "NodePort, SNAT"),
        ClientClass::Gateway => ("via the gateway", "the host's port map"),
        ClientClass::OtherNode => ("via another node", "NodePort or LB, SNAT"),
        ClientClass::Pod => ("from a pod", "in the cluster"),
        ClientClass::Outside => ("from outside", "address kept"),
        ClientClass::Unknown => ("entry unknown", "ranges not set"),
    }
}

pub fn of(page: &Page) -> Drawing {
    let r = &page.request;
    let id = &r.identity;
    let mut d = Drawing::new(
        "path",
        format!(
            "The path of this page view: from {} to kiada pod {}, then to the quote and quiz pods",
            r.client_ip, id.pod_name
        ),
    );
    let client = d.shape(
        0,
        MIDDLE_Y,
        "client",
        "",
        String::new(),
        "you",
        r.client_ip.clone(),
    );
    let (how, detail) = entry(r.client_class);
    let entry = d.shape(1, MIDDLE_Y, "entry", "", String::new(), how, detail);
    d.arrow(client, entry, "", false);
    let kiada = d.shape(
        2,
        MIDDLE_Y,
        "kiada",
        "",
        colour::of(&id.pod_name),
        id.pod_name.clone(),
        format!("node {}", id.node_name),
    );
    d.arrow(entry, kiada, "", false);
    backend(&mut d, kiada, "quote", QUOTE_Y, &page.tip, &page.tip_hop);
    backend(
        &mut d,
        kiada,
        "quiz",
        QUIZ_Y,
        &page.question,
        &page.question_hop,
    );
    d
}

/// One backend's row: the name, the address dialled, the pod; or the failure where it stopped.
fn backend<T>(
    d: &mut Drawing,
    kiada: usize,
    service: &'static str,
    y: u32,
    reply: &Reply<T>,
    hop: &Hop,
) {
    let failure = reply.result.as_ref().err();
    let dns_failed = failure.is_some_and(|e| e.kind == FailureKind::Dns);
    let (title, detail) = match &hop.resolved {
        Some(r) if dns_failed => (r.name.clone(), "did not resolve".to_owned()),
        Some(r) => (
            r.name.clone(),
            match r.addresses.as_slice() {
                [] => "lookup not recorded".to_owned(),
                [one] => format!("-> {one}"),
                [first, rest @ ..] => format!("-> {first} +{}", rest.len()),
            },
        ),
        None => ("an IP address".to_owned(), "nothing to resolve".to_owned()),
    };
    let name = d.shape(3, y, "name", service, String::new(), title, detail);
    d.arrow(kiada, name, service, false);
    if dns_failed {
        let x = d.shape(
            4,
            y,
            "failure",
            service,
            String::new(),
            "✗ failed",
            "the name",
        );
        d.arrow(name, x, "no address", true);
        return;
    }
    let Some(remote) = hop.remote else {
        // No response: the address dialled is not known; the failure's kind is.
        let words = failure.map_or("no answer".to_owned(), |e| kind_words(e.kind));
        let x = d.shape(4, y, "failure", service, String::new(), "✗ failed", words);
        d.arrow(name, x, "", true);
        return;
    };
    let what = match hop.direct_to_pod {
        Some(true) => "the pod's own",
        Some(false) => "a virtual IP",
        None => "address dialled",
    };
    let dialled = d.shape(
        4,
        y,
        "dialled",
        service,
        String::new(),
        remote.to_string(),
        what,
    );
    d.arrow(name, dialled, "", false);
    let pod = reply.by.pod.clone().unwrap_or_else(|| "no pod name".into());
    let node = match (&hop.node, hop.same_node) {
        (Some(node), Some(true)) => format!("{node}, same node"),
        (Some(node), Some(false)) => format!("{node}, other node"),
        (Some(node), None) => format!("node {node}"),
        (None, _) => "node not given".into(),
    };
    let connection = match hop.connection {
        Some(c) if c.reused => format!("reused conn., #{}", c.requests_on_connection),
        Some(_) => "new connection".to_owned(),
        None => String::new(),
    };
    let colour = reply.by.pod.as_deref().map(colour::of).unwrap_or_default();
    let answered = d.shape(5, y, "pod", service, colour, pod, node);
    d.note(answered, connection);
    d.arrow(dialled, answered, "", false);
    if let Some(e) = failure {
        // It answered, with an error: the pod is drawn, and what went wrong under the row.
        let x = d.shape(
            5,
            y + BOX_H + 4,
            "failure",
            service,
            String::new(),
            "✗ answered",
            kind_words(e.kind),
        );
        let _ = x;
    }
}

fn kind_words(kind: FailureKind) -> String {
    match kind {
        FailureKind::Dns => "did not resolve".into(),
        FailureKind::Refused => "refused".into(),
        FailureKind::Timeout => "timed out".into(),
        FailureKind::Closed => "closed".into(),
        FailureKind::Connect => "cannot connect".into(),
        FailureKind::Status(code) => format!("HTTP {code}"),
        FailureKind::InvalidResponse => "invalid answer".into(),
    }
}
