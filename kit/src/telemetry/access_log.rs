//! The access log: the layer that writes request lines, the events on [`ACCESS_LOG`].
//!
//! It lays a line out as tracing-subscriber's formatter does — its default text format or its
//! JSON with flattened events, timestamp and level first, then the fields in the order they were
//! recorded — but writes each field straight into the thread's log buffer, without the
//! formatter's per-event string and without `core::fmt` for strings and numbers.
//!
//! [`ACCESS_LOG`]: super::ACCESS_LOG

use std::fmt::Debug;
use std::io::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

use crate::LogFormat;

/// Where the access log's lines go: the log sink, or a test's buffer.
pub(super) trait Lines: Send + Sync + 'static {
    /// Appends one line, formatted by `fill`.
    fn line(&self, fill: impl FnOnce(&mut Vec<u8>));
}

/// The service's log sink (stdout, in batches).
pub(super) struct ToSink;

impl Lines for ToSink {
    fn line(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        super::sink::write_line(fill);
    }
}

/// The layer: writes the events on [`super::ACCESS_LOG`] and leaves every other one alone.
pub(super) struct AccessLog<O> {
    format: LogFormat,
    out: O,
}

impl<O> AccessLog<O> {
    pub(super) fn new(format: LogFormat, out: O) -> Self {
        AccessLog { format, out }
    }
}

impl<S: Subscriber, O: Lines> tracing_subscriber::Layer<S> for AccessLog<O> {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != super::ACCESS_LOG {
            return;
        }
        let level = *event.metadata().level();
        self.out.line(|out| match self.format {
            LogFormat::Text => {
                push_timestamp(out);
                out.extend_from_slice(match level {
                    Level::TRACE => b" TRACE ",
                    Level::DEBUG => b" DEBUG ",
                    Level::INFO => b"  INFO ",
                    Level::WARN => b"  WARN ",
                    Level::ERROR => b" ERROR ",
                });
                event.record(&mut TextFields { out, first: true });
                out.push(b'\n');
            }
            LogFormat::Json => {
                out.extend_from_slice(br#"{"timestamp":""#);
                push_timestamp(out);
                out.extend_from_slice(br#"","level":""#);
                out.extend_from_slice(level.as_str().as_bytes());
                out.push(b'"');
                event.record(&mut JsonFields { out });
                out.extend_from_slice(b"}\n");
            }
        });
    }
}

/// The client's address, written without `core::fmt`'s number formatting.
pub(super) struct Client(pub IpAddr);

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(_) => {
                let mut text = Vec::with_capacity(15);
                push_ip(&mut text, self.0);
                // Digits and dots only.
                f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
            }
            IpAddr::V6(v6) => std::fmt::Display::fmt(&v6, f),
        }
    }
}

/// The fields as the formatter's default format writes them: `name=value`, strings quoted as
/// `{:?}` quotes them, the message bare.
struct TextFields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl TextFields<'_> {
    fn name(&mut self, field: &Field) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
        self.out.extend_from_slice(field.name().as_bytes());
        self.out.push(b'=');
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            return self.record_debug(field, &format_args!("{value}"));
        }
        self.name(field);
        push_quoted(self.out, value.as_bytes(), Style::Debug);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        push_integer(self.out, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        push_integer(self.out, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        push_f64(self.out, value, Style::Debug);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            if !self.first {
                self.out.push(b' ');
            }
            self.first = false;
        } else {
            self.name(field);
        }
        let _ = write!(self.out, "{value:?}");
    }
}

/// The fields as the formatter's JSON with flattened events writes them: strings and numbers as
/// JSON strings and numbers, anything else as the string of its `{:?}`.
struct JsonFields<'a> {
    out: &'a mut Vec<u8>,
}

impl JsonFields<'_> {
    fn name(&mut self, field: &Field) {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(field.name().as_bytes());
        self.out.extend_from_slice(b"\":");
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        push_quoted(self.out, value.as_bytes(), Style::Json);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        push_integer(self.out, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.name(field);
        push_integer(self.out, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        if value.is_finite() {
            push_f64(self.out, value, Style::Json);
        } else {
            // What serde_json makes of NaN and infinities.
            self.out.extend_from_slice(b"null");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.name(field);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.name(field);
        // Most values are plain (a method, an address): formatted in place between quotes.
        self.out.push(b'"');
        let start = self.out.len();
        let _ = write!(self.out, "{value:?}");
        if is_plain(&self.out[start..]) {
            self.out.push(b'"');
            return;
        }
        let text = self.out.split_off(start);
        self.out.pop();
        push_quoted(self.out, &text, Style::Json);
    }
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

/// A float as `{:?}` and serde_json write it: the shortest decimal that reads back as the same
/// number, with one decimal at least. The latency of a request line — whole microseconds, in
/// milliseconds — is written without `core::fmt`'s float formatting: such a number is the
/// double nearest to n / 1000, and with fewer than 16 digits that decimal is also the
/// shortest.
fn push_f64(out: &mut Vec<u8>, value: f64, style: Style) {
    let thousandths = (value * 1000.0).round();
    if value.is_sign_positive() && thousandths < 1e15 && thousandths / 1000.0 == value {
        let n = thousandths as u64;
        out.extend_from_slice(itoa::Buffer::new().format(n / 1000).as_bytes());
        out.push(b'.');
        let fraction = n % 1000;
        let digits = [fraction / 100, fraction / 10 % 10, fraction % 10];
        let keep = match digits {
            [_, 0, 0] => 1,
            [_, _, 0] => 2,
            _ => 3,
        };
        out.extend(digits[..keep].iter().map(|&d| b'0' + d as u8));
        return;
    }
    // Elsewhere the two differ (`1e16` against `1e+16`).
    let _ = match style {
        Style::Debug => write!(out, "{value:?}"),
        Style::Json => serde_json::to_writer(&mut *out, &value).map_err(std::io::Error::other),
    };
}

fn push_integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
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

/// How a value is written: as `{:?}` writes it, or as JSON.
#[derive(Clone, Copy)]
enum Style {
    /// Rust's `{:?}`, as `tracing` prints string fields.
    Debug,
    Json,
}

/// Printable ASCII but the quote and the backslash: written as they are, between quotes, by
/// `{:?}` and by JSON alike.
const PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut b = b' ';
    while b <= b'~' {
        plain[b as usize] = b != b'"' && b != b'\\';
        b += 1;
    }
    plain
};

fn is_plain(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| PLAIN[usize::from(b)])
}

/// A quoted string; anything but plain bytes goes through the general escaping. Request ids
/// and paths are almost always plain.
fn push_quoted(out: &mut Vec<u8>, bytes: &[u8], style: Style) {
    if is_plain(bytes) {
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    match style {
        Style::Debug => {
            let _ = write!(out, "{text:?}");
        }
        Style::Json => {
            let _ = serde_json::to_writer(&mut *out, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::Method;
    use tracing_subscriber::EnvFilter;

    use super::super::{ACCESS_LOG, RequestLine, log_request, subscriber};
    use super::*;
    use crate::identity::ClientIp;

    /// A buffer both the formatter and the access log can write to.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    impl Lines for Capture {
        fn line(&self, fill: impl FnOnce(&mut Vec<u8>)) {
            fill(&mut self.0.lock().unwrap());
        }
    }

    /// Requests of every shape a line can take: both levels, quotes, backslashes, control
    /// characters and non-ASCII in the path and the id, both address families, latencies from
    /// none to a day.
    fn requests() -> Vec<(String, String, u16, u64, IpAddr)> {
        let paths = [
            "/quote",
            "/say \"hi\"",
            "/back\\slash",
            "/tab\there",
            "/ünï",
            "/healthz/ready",
        ];
        let ids = ["01JDX3", "a\"b", ""];
        let clients: [IpAddr; 3] = [
            [10, 1, 2, 3].into(),
            [127, 0, 0, 1].into(),
            "2001:db8::1".parse().unwrap(),
        ];
        let latencies = [0, 7, 40, 1_200, 1_234, 99_999, 98_765_432, 86_400_000_000];
        let mut all = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            for (j, micros) in latencies.iter().enumerate() {
                let id = ids[(i + j) % ids.len()];
                let client = clients[(i * 3 + j) % clients.len()];
                let status = [200, 404, 503][j % 3];
                all.push((path.to_string(), id.to_string(), status, *micros, client));
            }
        }
        all
    }

    fn log_all() {
        for (path, id, status, micros, client) in requests() {
            log_request(RequestLine {
                method: &Method::GET,
                path: &path,
                status,
                elapsed: Duration::from_micros(micros),
                client: ClientIp(client),
                id: &id,
            });
        }
        // Fields of the other kinds a layer is handed.
        tracing::warn!(target: ACCESS_LOG, flag = true, n = -3, ratio = 0.5, "other");
    }

    /// The text and JSON lines after their timestamps.
    fn without_stamps(text: &str, format: LogFormat) -> Vec<String> {
        text.lines()
            .map(|line| match format {
                LogFormat::Text => line.split_once(' ').unwrap().1.to_owned(),
                LogFormat::Json => line.split_once(r#"","level""#).unwrap().1.to_owned(),
            })
            .collect()
    }

    /// The same events through tracing-subscriber's formatter (the way every other line is
    /// written) and through the access log: an upgrade that changes the layout fails here.
    #[test]
    fn request_lines_are_what_the_formatter_writes() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let theirs = Capture::default();
            let formatter = subscriber(
                format,
                false,
                theirs.clone(),
                None::<Capture>,
                EnvFilter::new("debug"),
            );
            tracing::subscriber::with_default(formatter, log_all);
            let ours = Capture::default();
            let access = subscriber(
                format,
                false,
                std::io::sink,
                Some(ours.clone()),
                EnvFilter::new("debug"),
            );
            tracing::subscriber::with_default(access, log_all);
            let (theirs, ours) = (theirs.text(), ours.text());
            assert_eq!(ours.lines().count(), requests().len() + 1);
            assert_eq!(theirs.lines().count(), ours.lines().count());
            let pairs = without_stamps(&ours, format)
                .into_iter()
                .zip(without_stamps(&theirs, format));
            for (ours, theirs) in pairs {
                assert_eq!(ours, theirs);
            }
        }
    }

    #[test]
    fn request_lines_go_to_the_access_log_and_every_other_line_to_the_formatter() {
        let (lines, requests) = (Capture::default(), Capture::default());
        let both = subscriber(
            LogFormat::Text,
            false,
            lines.clone(),
            Some(requests.clone()),
            EnvFilter::new("info"),
        );
        tracing::subscriber::with_default(both, || {
            tracing::info!("started");
            log_request(RequestLine {
                method: &Method::POST,
                path: "/questions/1/answers",
                status: 200,
                elapsed: Duration::from_micros(1_500),
                client: ClientIp([10, 0, 0, 9].into()),
                id: "r1",
            });
            // A probe, at debug level: filtered out at info.
            log_request(RequestLine {
                method: &Method::GET,
                path: "/healthz/ready",
                status: 200,
                elapsed: Duration::ZERO,
                client: ClientIp([10, 0, 0, 1].into()),
                id: "r2",
            });
        });
        let (lines, requests) = (lines.text(), requests.text());
        assert!(lines.ends_with("  INFO started\n"), "{lines}");
        assert_eq!(lines.lines().count(), 1, "{lines}");
        assert_eq!(requests.lines().count(), 1, "{requests}");
        assert!(
            requests.ends_with(
                "  INFO request method=POST path=\"/questions/1/answers\" status=200 \
                 latency_ms=1.5 client=10.0.0.9 request_id=\"r1\"\n"
            ),
            "{requests}"
        );

        let silenced = Capture::default();
        let quiet = subscriber(
            LogFormat::Json,
            false,
            std::io::sink,
            Some(silenced.clone()),
            EnvFilter::new("info,access_log=off"),
        );
        tracing::subscriber::with_default(quiet, log_all);
        assert_eq!(silenced.text(), "");
    }

    /// hyper takes any token as a method, up to the head's 16 KiB: the line says `other`, as the
    /// metrics do, never the client's text.
    #[test]
    fn made_up_methods_are_logged_as_other() {
        let made_up = Method::from_bytes("M".repeat(5000).as_bytes()).unwrap();
        for format in [LogFormat::Text, LogFormat::Json] {
            let out = Capture::default();
            let access = subscriber(
                format,
                false,
                std::io::sink,
                Some(out.clone()),
                EnvFilter::new("info"),
            );
            tracing::subscriber::with_default(access, || {
                for method in [&made_up, &Method::DELETE] {
                    log_request(RequestLine {
                        method,
                        path: "/quote",
                        status: 405,
                        elapsed: Duration::ZERO,
                        client: ClientIp([10, 0, 0, 9].into()),
                        id: "r1",
                    });
                }
            });
            let text = out.text();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{text}");
            assert!(lines.iter().all(|l| l.len() < 200), "{text}");
            match format {
                LogFormat::Text => {
                    assert!(lines[0].contains(" method=other "), "{text}");
                    assert!(lines[1].contains(" method=DELETE "), "{text}");
                }
                LogFormat::Json => {
                    let methods: Vec<serde_json::Value> = lines
                        .iter()
                        .map(|l| {
                            serde_json::from_str::<serde_json::Value>(l).unwrap()["method"].clone()
                        })
                        .collect();
                    assert_eq!(methods, ["other", "DELETE"]);
                }
            }
        }
    }

    #[test]
    fn json_lines_are_objects_with_the_request_fields() {
        let out = Capture::default();
        let json = subscriber(
            LogFormat::Json,
            false,
            std::io::sink,
            Some(out.clone()),
            EnvFilter::new("debug"),
        );
        tracing::subscriber::with_default(json, || {
            log_request(RequestLine {
                method: &Method::GET,
                path: "/metrics",
                status: 404,
                elapsed: Duration::from_micros(1_234),
                client: ClientIp([10, 1, 2, 3].into()),
                id: "a\"b",
            })
        });
        let event: serde_json::Value = serde_json::from_str(&out.text()).unwrap();
        assert_eq!(event["level"], "DEBUG");
        assert_eq!(event["message"], "request");
        assert_eq!(event["method"], "GET");
        assert_eq!(event["path"], "/metrics");
        assert_eq!(event["status"], 404);
        assert_eq!(event["latency_ms"], 1.234);
        assert_eq!(event["client"], "10.1.2.3");
        assert_eq!(event["request_id"], "a\"b");
        let stamp = event["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{stamp}");
    }

    #[test]
    fn quoting_matches_debug_and_json_with_or_without_the_fast_path() {
        for text in ["/quote", "a\"b", "back\\slash", "tab\there", "ünïcode", ""] {
            let mut debug = Vec::new();
            push_quoted(&mut debug, text.as_bytes(), Style::Debug);
            assert_eq!(String::from_utf8(debug).unwrap(), format!("{text:?}"));
            let mut json = Vec::new();
            push_quoted(&mut json, text.as_bytes(), Style::Json);
            assert_eq!(
                String::from_utf8(json).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
    }

    #[test]
    fn floats_are_written_as_debug_and_serde_json_write_them() {
        let thousandths = (0..3_000_000u64).step_by(37).chain([
            999,
            1_000,
            1_001,
            10_000,
            86_400_000_000_000,
            999_999_999_999_999,
        ]);
        let values = thousandths.map(|n| n as f64 / 1e3).chain([
            0.1 + 0.2,
            1.0 / 3.0,
            1e-7,
            2.5e-4,
            1e16,
            123456.789012,
            -1.5,
            -0.0,
        ]);
        for value in values {
            for (style, theirs) in [
                (Style::Debug, format!("{value:?}")),
                (Style::Json, serde_json::to_string(&value).unwrap()),
            ] {
                let mut ours = Vec::new();
                push_f64(&mut ours, value, style);
                assert_eq!(String::from_utf8(ours).unwrap(), theirs);
            }
        }
    }

    #[test]
    fn timestamps_and_addresses_are_formatted_in_full() {
        let mut out = Vec::new();
        push_timestamp(&mut out);
        let stamp = String::from_utf8(out).unwrap();
        let parsed = humantime::parse_rfc3339(&stamp).unwrap();
        let off = SystemTime::now().duration_since(parsed).unwrap();
        assert!(off < Duration::from_secs(2), "{stamp}");
        assert_eq!(stamp.len(), "2026-11-22T04:00:16.000706Z".len());
        for ip in ["10.0.0.255", "0.0.0.0", "2001:db8::1"] {
            let mut out = Vec::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
            assert_eq!(Client(ip.parse().unwrap()).to_string(), ip);
        }
    }
}
