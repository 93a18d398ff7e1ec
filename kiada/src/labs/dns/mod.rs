//! `GET /lab/dns?name=NAME`: how this pod resolves a name, step by step. It reads the pod's
//! `resolv.conf` (nameservers, search list, ndots), lists the names a stub resolver tries in
//! order, asks the nameserver for each (A, then AAAA) until one resolves, and says what the
//! answer means for a Service: one virtual IP, a headless Service's pods, an ExternalName's
//! CNAME, and the SRV records of a named port.
//!
//! The lookups go to the nameserver `resolv.conf` names and nowhere else (or, in the local
//! suite, to the address `--nameserver` names: the suite's cluster DNS on a port of its own),
//! for DNS names only, each with a short timeout; one lab run per pod at a time. Where
//! `resolv.conf` is not a pod's (kiada run alone on a laptop), the lesson says that no cluster
//! DNS answers rather than only "no such name".
//!
//! - `name`: the name typed, checked; `resolv_conf`: the pod's configuration and candidates;
//! - `scope`: which names it may ask about;
//! - `walk`: the queries; `report`: what the answers mean, and the text form.

mod name;
mod report;
mod resolv_conf;
pub mod scope;
mod walk;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use kit::negotiate::WantsJson;
use serde::Deserialize;

pub use name::{NameError, check_name};
pub use resolv_conf::{MAX_CANDIDATES, ResolvConf, read_resolv_conf};
pub use scope::{Names, Scope};
pub use walk::{DEADLINE, DnsLab, QUERY_TIMEOUT, Srv, Step};

use super::state::LabState;
use crate::error::Error;

/// Walks the candidates as a stub resolver does (those in scope), asking `server` when given
/// (`--nameserver`) or else resolv.conf's first nameserver, then says what the answer means.
pub async fn run(
    name: &str,
    conf: ResolvConf,
    names: &Names,
    server: Option<std::net::SocketAddr>,
) -> DnsLab {
    let mut lab = walk::walk(name, conf, names, server).await;
    report::explain(&mut lab);
    lab
}

/// Where the lab reads the resolver configuration; `--resolv-conf` points elsewhere (tests).
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Deserialize)]
pub struct DnsQuery {
    name: Option<String>,
}

pub async fn lab(
    State(state): State<LabState>,
    Query(query): Query<DnsQuery>,
    WantsJson(json): WantsJson,
) -> Result<Response, Error> {
    let name = check_name(query.name.as_deref().unwrap_or(""))
        .map_err(|e| Error::BadRequest(format!("{e}. Usage: /lab/dns?name=NAME")))?;
    // A DNS run opens no backend connection; it has a slot of its own, so a slow nameserver
    // never holds up the spread lab.
    let _running = state.limits.start_dns()?;
    let conf = resolv_conf::read_resolv_conf(&state.resolv_conf).await?;
    let result = run(&name, conf, &state.dns_names, state.nameserver).await;
    if json {
        return Ok(Json(result).into_response());
    }
    Ok(report::text(&result).into_response())
}
