//! Logging: text for people or JSON for log pipelines, `RUST_LOG` honoured, and one line per
//! request.
//!
//! Request lines are formatted here rather than by `tracing`'s formatter: they are the one line
//! logged thousands of times a second, and writing the few fields straight into the thread's
//! log buffer costs a fraction of a generic event. They look exactly like the other lines and
//! obey the same `RUST_LOG` filter (target `kit::telemetry`).

mod sink;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use axum::http::Method;
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::LogFormat;
use crate::identity::ClientIp;
use sink as log_sink;

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
    let _ = subscriber(format, ansi, log_sink::MakeSinkWriter, filter).try_init();
    LogGuard(())
}

/// The subscriber every other line goes through; the request lines copy its layout, and a test
/// holds them to it.
fn subscriber<W>(
    format: LogFormat,
    ansi: bool,
    writer: W,
    filter: EnvFilter,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

/// What a request's log line says.
pub(crate) struct RequestLine<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    pub client: ClientIp,
    pub id: &'a str,
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
    let request_id = line.id;
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

/// The layout of `tracing_subscriber`'s default format, so request lines read like the others.
/// Plain lines are assembled byte by byte: `core::fmt` made up most of a request's log cost.
fn write_text(
    out: &mut Vec<u8>,
    ansi: bool,
    level: Level,
    line: &RequestLine<'_>,
) -> std::io::Result<()> {
    if ansi {
        return write_coloured(out, level, line);
    }
    push_timestamp(out);
    out.extend_from_slice(match level {
        Level::DEBUG => b" DEBUG request method=",
        _ => b"  INFO request method=",
    });
    out.extend_from_slice(line.method.as_str().as_bytes());
    out.extend_from_slice(b" path=");
    push_quoted(out, line.path.as_bytes(), Quoting::Debug);
    out.extend_from_slice(b" status=");
    out.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    out.extend_from_slice(b" latency_ms=");
    push_millis(out, line.elapsed);
    out.extend_from_slice(b" client=");
    push_ip(out, line.client.0);
    out.extend_from_slice(b" request_id=");
    push_quoted(out, line.id.as_bytes(), Quoting::Debug);
    out.push(b'\n');
    Ok(())
}

/// For a terminal, where speed matters less than colour.
fn write_coloured(out: &mut Vec<u8>, level: Level, line: &RequestLine<'_>) -> std::io::Result<()> {
    let id = line.id;
    let (method, path, status) = (line.method, line.path, line.status);
    let (latency, client) = (Millis(line.elapsed), line.client.0);
    let level = match level {
        Level::DEBUG => "\x1b[34mDEBUG\x1b[0m",
        _ => "\x1b[32m INFO\x1b[0m",
    };
    let f = |name: &str| format!("\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m");
    writeln!(
        out,
        "\x1b[2m{}\x1b[0m {level} request {}{method} {}{path:?} {}{status} {}{latency} {}{client} {}{id:?}",
        humantime::format_rfc3339_micros(SystemTime::now()),
        f("method"),
        f("path"),
        f("status"),
        f("latency_ms"),
        f("client"),
        f("request_id"),
    )
}

/// The fields of `tracing_subscriber`'s JSON format with flattened events.
fn write_json(out: &mut Vec<u8>, level: Level, line: &RequestLine<'_>) -> std::io::Result<()> {
    out.extend_from_slice(br#"{"timestamp":""#);
    push_timestamp(out);
    out.extend_from_slice(match level {
        Level::DEBUG => br#"","level":"DEBUG","message":"request","method":""#,
        _ => br#"","level":"INFO","message":"request","method":""#,
    });
    out.extend_from_slice(line.method.as_str().as_bytes());
    out.extend_from_slice(br#"","path":"#);
    push_quoted(out, line.path.as_bytes(), Quoting::Json);
    out.extend_from_slice(br#","status":"#);
    out.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    out.extend_from_slice(br#","latency_ms":"#);
    push_millis(out, line.elapsed);
    out.extend_from_slice(br#","client":""#);
    push_ip(out, line.client.0);
    out.extend_from_slice(br#"","request_id":"#);
    push_quoted(out, line.id.as_bytes(), Quoting::Json);
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// `2026-11-22T04:00:16.198706Z`; the part up to the second is made once a second per thread.
fn push_timestamp(out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((0, [0; 20])) };
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let prefix = SECOND.with(|second| {
        let (secs, prefix) = second.get();
        if secs == now.as_secs() && prefix[0] != 0 {
            return prefix;
        }
        // `2026-11-22T04:00:16Z` becomes `2026-11-22T04:00:16.`
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let formatted = humantime::format_rfc3339_seconds(whole).to_string();
        let mut prefix = [b'.'; 20];
        prefix[..19].copy_from_slice(&formatted.as_bytes()[..19]);
        second.set((now.as_secs(), prefix));
        prefix
    });
    out.extend_from_slice(&prefix);
    push_padded(out, now.subsec_micros(), 6);
    out.push(b'Z');
}

fn push_millis(out: &mut Vec<u8>, elapsed: Duration) {
    let micros = elapsed.as_micros();
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    out.push(b'.');
    push_padded(out, (micros % 1000) as u32, 3);
}

fn push_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value).as_bytes();
    out.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits);
}

fn push_ip(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

#[derive(Clone, Copy)]
enum Quoting {
    /// Rust's `{:?}`, as `tracing` prints string fields.
    Debug,
    Json,
}

/// A quoted string; anything but printable ASCII without quotes and backslashes goes through
/// the general escaping. Request ids and paths are almost always plain.
fn push_quoted(out: &mut Vec<u8>, bytes: &[u8], quoting: Quoting) {
    const PLAIN: [bool; 256] = {
        let mut plain = [false; 256];
        let mut b = b' ';
        while b <= b'~' {
            plain[b as usize] = b != b'"' && b != b'\\';
            b += 1;
        }
        plain
    };
    let plain = bytes.iter().all(|&b| PLAIN[usize::from(b)]);
    if plain {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    match quoting {
        Quoting::Debug => {
            let _ = write!(out, "{text:?}");
        }
        Quoting::Json => {
            let _ = serde_json::to_writer(&mut *out, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str) -> RequestLine<'_> {
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
        let id = "a\"b";
        write_text(&mut out, false, Level::INFO, &line(id)).unwrap();
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
        let id = "a\"b";
        write_json(&mut out, Level::DEBUG, &line(id)).unwrap();
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

    /// The same request through tracing-subscriber (the way every other line is written) and
    /// through the fast path, timestamps aside: an upgrade that changes the layout fails here.
    #[test]
    fn request_lines_match_what_tracing_subscriber_writes() {
        #[derive(Clone, Default)]
        struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let without_stamp = |line: &str| line.split_once(' ').unwrap().1.to_owned();
        let id = "a\"b";
        for (format, level) in [
            (LogFormat::Text, Level::INFO),
            (LogFormat::Text, Level::DEBUG),
            (LogFormat::Json, Level::INFO),
            (LogFormat::Json, Level::DEBUG),
        ] {
            let capture = Capture::default();
            let writer = {
                let capture = capture.clone();
                move || capture.clone()
            };
            let subscriber = subscriber(format, false, writer, EnvFilter::new("debug"));
            tracing::subscriber::with_default(subscriber, || emit_event(level, &line(id)));
            let theirs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
            let mut ours = Vec::new();
            match format {
                LogFormat::Text => write_text(&mut ours, false, level, &line(id)).unwrap(),
                LogFormat::Json => write_json(&mut ours, level, &line(id)).unwrap(),
            }
            let ours = String::from_utf8(ours).unwrap();
            match format {
                LogFormat::Text => assert_eq!(without_stamp(&ours), without_stamp(&theirs)),
                LogFormat::Json => {
                    let strip = |line: &str| {
                        let (_, rest) = line.split_once(r#"","level""#).unwrap();
                        rest.to_owned()
                    };
                    assert_eq!(strip(&ours), strip(&theirs));
                }
            }
        }
    }

    #[test]
    fn quoting_matches_debug_and_json_with_or_without_the_fast_path() {
        for text in ["/quote", "a\"b", "back\\slash", "tab\there", "ünïcode", ""] {
            let mut debug = Vec::new();
            push_quoted(&mut debug, text.as_bytes(), Quoting::Debug);
            assert_eq!(String::from_utf8(debug).unwrap(), format!("{text:?}"));
            let mut json = Vec::new();
            push_quoted(&mut json, text.as_bytes(), Quoting::Json);
            assert_eq!(
                String::from_utf8(json).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
    }

    #[test]
    fn timestamps_and_numbers_are_formatted_in_full() {
        let mut out = Vec::new();
        push_timestamp(&mut out);
        let stamp = String::from_utf8(out).unwrap();
        let parsed = humantime::parse_rfc3339(&stamp).unwrap();
        let off = SystemTime::now().duration_since(parsed).unwrap();
        assert!(off < Duration::from_secs(2), "{stamp}");
        assert_eq!(stamp.len(), "2026-11-22T04:00:16.000706Z".len());

        for (micros, text) in [
            (0, "0.000"),
            (7, "0.007"),
            (1_234, "1.234"),
            (98_765_432, "98765.432"),
        ] {
            let mut out = Vec::new();
            push_millis(&mut out, Duration::from_micros(micros));
            assert_eq!(out, text.as_bytes());
        }
        for ip in ["10.0.0.255", "2001:db8::1"] {
            let mut out = Vec::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
        }
    }
}
