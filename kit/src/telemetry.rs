//! Logging: text for people or JSON for log pipelines, `RUST_LOG` honoured, and one line per
//! request.
//!
//! Request lines are formatted here rather than by `tracing`'s formatter: they are the one line
//! logged thousands of times a second, and writing the few fields straight into the thread's
//! log buffer costs a fraction of a generic event. They look exactly like the other lines and
//! obey the same `RUST_LOG` filter (target `kit::telemetry`).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderValue, Method};
use tracing::Level;
use tracing_subscriber::EnvFilter;

use crate::LogFormat;
use crate::identity::ClientIp;
use crate::log_sink;

/// How lines look, once [`init`] has installed the subscriber.
#[derive(Clone, Copy)]
struct Style {
    format: LogFormat,
    ansi: bool,
}

static STYLE: OnceLock<Style> = OnceLock::new();

/// Flushes the log lines still buffered when dropped: keep it until `main` returns.
#[must_use = "dropping the guard at once would lose the last lines at exit"]
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        log_sink::flush();
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level. Lines go to
/// stdout in batches, written by a thread of their own; none is dropped.
pub fn init(format: LogFormat) -> LogGuard {
    log_sink::start();
    // Colour codes only help on a terminal; `kubectl logs` would show them as noise.
    let ansi = std::io::stdout().is_terminal();
    let _ = STYLE.set(Style { format, ansi });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log_sink::MakeSinkWriter)
        .with_target(false)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    LogGuard(())
}

/// What a request's log line says.
pub(crate) struct RequestLine<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    pub client: ClientIp,
    pub id: &'a HeaderValue,
}

/// Logs a request once it has been answered. Probes and scrapes log at debug level: they come
/// every few seconds and would bury the requests people make.
pub(crate) fn log_request(line: RequestLine<'_>) {
    let probe = line.path.starts_with("/healthz/") || line.path == "/metrics";
    let enabled = match probe {
        true => tracing::enabled!(Level::DEBUG),
        false => tracing::enabled!(Level::INFO),
    };
    if !enabled {
        return;
    }
    let level = if probe { Level::DEBUG } else { Level::INFO };
    match STYLE.get() {
        Some(style) => log_sink::write_line(|out| {
            // Writing into a Vec cannot fail.
            let _ = match style.format {
                LogFormat::Text => write_text(out, style.ansi, level, &line),
                LogFormat::Json => write_json(out, level, &line),
            };
        }),
        // Some other subscriber (a test's): hand it an ordinary event.
        None => emit_event(level, &line),
    }
}

fn emit_event(level: Level, line: &RequestLine<'_>) {
    let (method, path, status, client) = (line.method, line.path, line.status, line.client.0);
    let latency_ms = line.elapsed.as_secs_f64() * 1e3;
    let request_id = line.id.to_str().unwrap_or("-");
    match level {
        Level::DEBUG => {
            tracing::debug!(%method, path, status, latency_ms, %client, request_id, "request")
        }
        _ => tracing::info!(%method, path, status, latency_ms, %client, request_id, "request"),
    }
}

/// Microseconds are plenty, and keep the lines short.
struct Millis(Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.0.as_micros();
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

fn timestamp() -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_micros(SystemTime::now())
}

/// The layout of `tracing_subscriber`'s default format, so request lines read like the others.
fn write_text(
    out: &mut Vec<u8>,
    ansi: bool,
    level: Level,
    line: &RequestLine<'_>,
) -> std::io::Result<()> {
    let id = String::from_utf8_lossy(line.id.as_bytes());
    let (method, path, status) = (line.method, line.path, line.status);
    let (latency, client) = (Millis(line.elapsed), line.client.0);
    if ansi {
        let level = match level {
            Level::DEBUG => "\x1b[34mDEBUG\x1b[0m",
            _ => "\x1b[32m INFO\x1b[0m",
        };
        let f = |name: &str| format!("\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m");
        writeln!(
            out,
            "\x1b[2m{}\x1b[0m {level} request {}{method} {}{path:?} {}{status} {}{latency} {}{client} {}{id:?}",
            timestamp(),
            f("method"),
            f("path"),
            f("status"),
            f("latency_ms"),
            f("client"),
            f("request_id"),
        )
    } else {
        let level = match level {
            Level::DEBUG => "DEBUG",
            _ => " INFO",
        };
        writeln!(
            out,
            "{} {level} request method={method} path={path:?} status={status} latency_ms={latency} client={client} request_id={id:?}",
            timestamp(),
        )
    }
}

/// The fields of `tracing_subscriber`'s JSON format with flattened events.
fn write_json(out: &mut Vec<u8>, level: Level, line: &RequestLine<'_>) -> std::io::Result<()> {
    let id = String::from_utf8_lossy(line.id.as_bytes());
    write!(
        out,
        r#"{{"timestamp":"{}","level":"{level}","message":"request","method":"{}","path":"#,
        timestamp(),
        line.method,
    )?;
    serde_json::to_writer(&mut *out, line.path)?;
    write!(
        out,
        r#","status":{},"latency_ms":{},"client":"{}","request_id":"#,
        line.status,
        Millis(line.elapsed),
        line.client.0,
    )?;
    serde_json::to_writer(&mut *out, &id)?;
    out.write_all(b"}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &HeaderValue) -> RequestLine<'_> {
        RequestLine {
            method: &Method::GET,
            path: "/say \"hi\"",
            status: 404,
            elapsed: Duration::from_micros(1_234),
            client: ClientIp([10, 1, 2, 3].into()),
            id,
        }
    }

    #[test]
    fn text_lines_read_like_the_other_lines() {
        let mut out = Vec::new();
        let id = HeaderValue::from_static("a\"b");
        write_text(&mut out, false, Level::INFO, &line(&id)).unwrap();
        let out = String::from_utf8(out).unwrap();
        let (stamp, rest) = out.split_once(' ').unwrap();
        assert_eq!(stamp.len(), "2026-11-22T04:00:16.198706Z".len(), "{out}");
        assert_eq!(
            rest,
            " INFO request method=GET path=\"/say \\\"hi\\\"\" status=404 latency_ms=1.234 \
             client=10.1.2.3 request_id=\"a\\\"b\"\n"
        );
    }

    #[test]
    fn json_lines_are_objects_with_the_request_fields() {
        let mut out = Vec::new();
        let id = HeaderValue::from_static("a\"b");
        write_json(&mut out, Level::DEBUG, &line(&id)).unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        let event: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(event["level"], "DEBUG");
        assert_eq!(event["message"], "request");
        assert_eq!(event["path"], "/say \"hi\"");
        assert_eq!(event["status"], 404);
        assert_eq!(event["latency_ms"], 1.234);
        assert_eq!(event["client"], "10.1.2.3");
        assert_eq!(event["request_id"], "a\"b");
        let stamp = event["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
    }
}
