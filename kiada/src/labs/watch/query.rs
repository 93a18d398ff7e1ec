//! The watch's parameters: which backend, how often, how long, over which connections.

use std::time::Duration;

use serde::Deserialize;

use crate::backends::Backend;
use crate::error::Error;

pub const INTERVAL_MS: (u64, u64) = (100, 5000);
pub const DURATION_S: (u64, u64) = (1, 600);

#[derive(Deserialize)]
pub struct WatchQuery {
    service: Option<String>,
    interval_ms: Option<String>,
    duration_s: Option<String>,
    connection: Option<String>,
}

#[derive(Clone, Copy)]
pub(super) struct Params {
    pub service: Backend,
    pub interval: Duration,
    pub duration: Duration,
    /// One connection for all calls (HTTP/1 kept alive, or HTTP/2).
    pub reuse: bool,
    /// That one connection speaks HTTP/2, every call a stream on it.
    pub h2: bool,
}

pub(super) fn parse(query: &WatchQuery) -> Result<Params, Error> {
    let service = match query.service.as_deref().unwrap_or("quote") {
        "quote" => Backend::Quote,
        "quiz" => Backend::Quiz,
        other => return Err(bad(format!("service must be quote or quiz, not '{other}'"))),
    };
    let number = |raw: Option<&str>, default: u64, (low, high): (u64, u64), what: &str| match raw
        .map_or(Ok(default), str::parse::<u64>)
    {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(bad(format!("{what} must be a number from {low} to {high}"))),
    };
    let interval = number(
        query.interval_ms.as_deref(),
        250,
        INTERVAL_MS,
        "interval_ms",
    )?;
    let duration = number(query.duration_s.as_deref(), 60, DURATION_S, "duration_s")?;
    let (reuse, h2) = match query.connection.as_deref().unwrap_or("new") {
        "new" => (false, false),
        "reuse" => (true, false),
        "h2" => (true, true),
        other => {
            return Err(bad(format!(
                "connection must be new, reuse or h2, not '{other}'"
            )));
        }
    };
    Ok(Params {
        service,
        interval: Duration::from_millis(interval),
        duration: Duration::from_secs(duration),
        reuse,
        h2,
    })
}

fn bad(message: String) -> Error {
    let (i, d) = (INTERVAL_MS, DURATION_S);
    Error::BadRequest(format!(
        "{message}. Usage: /lab/watch?service=quote|quiz&interval_ms={}..{}&duration_s={}..{}\
         &connection=new|reuse|h2",
        i.0, i.1, d.0, d.1
    ))
}
