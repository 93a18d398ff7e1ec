//! `GET /lab`: the labs as a page. The spread lab runs on the server and comes back drawn as
//! bars (no JavaScript needed); the watch is drawn live by `static/lab.js` from the watch's
//! Server-Sent Events; the DNS lab's form asks `/lab/dns`. In the local suite a section lists
//! its pods, read from the suite's `/lab/pods` by the same script.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::spread::{self, Spread, SpreadQuery};
use super::state::LabState;
use super::watch;
use crate::error::Error;
use crate::view::drawing::Drawing;
use crate::view::{Badge, VERSION, colour, html};

#[derive(Deserialize)]
pub struct LabQuery {
    /// `spread` runs the spread lab and draws it; absent, the page only shows the forms.
    run: Option<String>,
    service: Option<String>,
    n: Option<String>,
}

/// Where the bars start and how long a bar for all n calls is, in SVG units.
const BARS_X: u32 = 190;
const BARS_WIDTH: u32 = 330;
const ROW_HEIGHT: u32 = 44;
const TOP: u32 = 30;

/// The spread chart: per pod, calls answered over new connections and over one reused one.
struct Chart {
    service: &'static str,
    n: usize,
    width: u32,
    height: u32,
    rows: Vec<Row>,
    failed_new: usize,
    failed_reused: usize,
    last_error: Option<String>,
}

struct Row {
    pod: String,
    colour: String,
    new: usize,
    reused: usize,
    /// Top of the row.
    y: u32,
    new_width: u32,
    reused_width: u32,
}

impl Chart {
    fn of(new: &Spread, reused: &Spread) -> Chart {
        let mut pods: Vec<&String> = new.pods.keys().chain(reused.pods.keys()).collect();
        pods.sort();
        pods.dedup();
        let width = |count: usize| (count * BARS_WIDTH as usize / new.calls.max(1)) as u32;
        let rows = pods
            .into_iter()
            .enumerate()
            .map(|(i, pod)| {
                let (n, r) = (
                    new.pods.get(pod).copied().unwrap_or(0),
                    reused.pods.get(pod).copied().unwrap_or(0),
                );
                Row {
                    pod: pod.clone(),
                    colour: colour::of(pod),
                    new: n,
                    reused: r,
                    y: TOP + i as u32 * ROW_HEIGHT,
                    new_width: width(n).max(1),
                    reused_width: width(r).max(1),
                }
            })
            .collect::<Vec<_>>();
        Chart {
            service: new.service.name(),
            n: new.calls,
            width: BARS_X + BARS_WIDTH + 60,
            height: TOP + rows.len() as u32 * ROW_HEIGHT + 8,
            rows,
            failed_new: new.failed,
            failed_reused: reused.failed,
            last_error: new.last_error.clone().or_else(|| reused.last_error.clone()),
        }
    }
}

#[derive(Template)]
#[template(path = "lab.html")]
struct LabHtml<'a> {
    base: &'a str,
    version: &'a str,
    release: Option<Badge<'a>>,
    pod: &'a str,
    pod_colour: String,
    service: &'a str,
    n: &'a str,
    chart: Option<Chart>,
    /// Where this pod's connections went, drawn (SVG rendered by its own template).
    path: Option<String>,
    error: Option<String>,
    bars_x: u32,
    min_interval: u64,
    max_interval: u64,
    max_duration: u64,
    /// The local suite's pods section (`/lab/pods`, drawn by `static/lab.js`).
    pods: bool,
}

/// The lab page; a template that fails to render is kiada's bug, answered with 500.
pub async fn page(
    State(state): State<LabState>,
    Query(query): Query<LabQuery>,
) -> Result<Response, Error> {
    let (status, chart, error) = match query.run.as_deref() {
        Some("spread") => {
            let spread = SpreadQuery {
                service: query.service.clone(),
                n: query.n.clone(),
                connection: None,
            };
            match spread::compare(&state, &spread).await {
                Ok((new, reused)) => (
                    StatusCode::OK,
                    Some((Chart::of(&new, &reused), spread_path(&state, &new, &reused))),
                    None,
                ),
                Err(e) => (status_of(&e), None, Some(e.to_string())),
            }
        }
        Some(other) => (
            StatusCode::BAD_REQUEST,
            None,
            Some(format!("run must be spread, not '{other}'")),
        ),
        None => (StatusCode::OK, None, None),
    };
    let (chart, path) = match chart {
        Some((chart, path)) => (Some(chart), Some(path.render()?)),
        None => (None, None),
    };
    let pod = state.identity.pod_name.as_str();
    let page = LabHtml {
        base: "",
        version: VERSION,
        release: Badge::of(state.identity.release.as_deref()),
        pod,
        pod_colour: colour::of(pod),
        service: query.service.as_deref().unwrap_or("quote"),
        n: query.n.as_deref().unwrap_or("20"),
        chart,
        path,
        error,
        bars_x: BARS_X,
        min_interval: watch::INTERVAL_MS.0,
        max_interval: watch::INTERVAL_MS.1,
        max_duration: watch::DURATION_S.1,
        pods: state.pods_section,
    };
    Ok(html(status, page.render()?))
}

/// The spread run drawn as a path: this kiada pod, the Service, and every pod its connections
/// reached, with how many calls each got over new connections and over the reused one.
fn spread_path(state: &LabState, new: &Spread, reused: &Spread) -> Drawing {
    use crate::view::drawing::BOX_H;
    let pod = &state.identity.pod_name;
    let mut pods: Vec<&String> = new.pods.keys().chain(reused.pods.keys()).collect();
    pods.sort();
    pods.dedup();
    let mut d = Drawing::new(
        "spread-path",
        format!(
            "Where kiada pod {pod}'s connections to {} went: {} pod(s)",
            new.service.name(),
            pods.len()
        ),
    );
    let rows = pods.len().max(1) as u32;
    let middle = 8 + (rows - 1) * (BOX_H + 10) / 2;
    let kiada = d.shape(
        0,
        middle,
        "kiada",
        "",
        colour::of(pod),
        pod.clone(),
        "this kiada pod",
    );
    let service = d.shape(
        1,
        middle,
        "service",
        new.service.name(),
        String::new(),
        new.service.name(),
        "the Service",
    );
    d.note(service, format!("{} + {} calls", new.calls, reused.calls));
    d.arrow(kiada, service, "", false);
    for (i, name) in pods.iter().enumerate() {
        let (n, r) = (
            new.pods.get(*name).copied().unwrap_or(0),
            reused.pods.get(*name).copied().unwrap_or(0),
        );
        let box_ = d.shape(
            2,
            8 + i as u32 * (BOX_H + 10),
            "pod",
            new.service.name(),
            colour::of(name),
            (*name).clone(),
            format!("{n} new, {r} reused"),
        );
        d.arrow(service, box_, format!("{}", n + r), false);
    }
    if pods.is_empty() {
        let x = d.shape(
            2,
            8,
            "failure",
            new.service.name(),
            String::new(),
            "✗ no pod",
            "answered",
        );
        d.arrow(service, x, "", true);
    }
    d
}

fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::LabBusy | Error::LabRate { .. } | Error::WatchLimit { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
        _ => StatusCode::BAD_GATEWAY,
    }
}
