//! Checks that the quote and nginx scenarios logged as their names say: a line per request to a
//! file on one side of a pair, none on the other. A configuration that logs otherwise would
//! compare unlike with unlike, so it fails the run, the smoke run included.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What nginx's `combined` format writes for the scenario's requests.
pub const NGINX_LINE: &str = "\"GET /quote HTTP/1.1\" 200 ";
/// What quote's text format writes for them.
pub const QUOTE_LINE: &str = "request method=GET path=\"/quote\" status=200";

/// How long a log may take to show the lines of requests already answered: quote writes its
/// lines in batches a few milliseconds apart, nginx each right after its response.
pub const SETTLE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LogCheck {
    #[error("cannot read the log {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{scenario}: {lines} request lines ({line:?}) in {path} for {requests} requests answered"
    )]
    Missing {
        scenario: &'static str,
        line: &'static str,
        lines: u64,
        requests: u64,
        path: PathBuf,
    },
    #[error("{scenario}: request lines in {path}, where none should be: {found}")]
    Unwanted {
        scenario: &'static str,
        path: PathBuf,
        found: String,
    },
    #[error(
        "{scenario}: nginx's access log {path} grew from {before} to {after} bytes while the port with access_log off was loaded"
    )]
    Grew {
        scenario: &'static str,
        path: PathBuf,
        before: u64,
        after: u64,
    },
}

/// The lines of the log at `path` that contain `line`: how many, and the first.
fn scan(path: &Path, line: &str) -> Result<(u64, Option<String>), LogCheck> {
    let read = |source| LogCheck::Read {
        path: path.to_owned(),
        source,
    };
    let mut log = std::io::BufReader::new(std::fs::File::open(path).map_err(read)?);
    let (mut count, mut first) = (0, None);
    let mut buf = Vec::new();
    let needle = line.as_bytes();
    loop {
        buf.clear();
        if log.read_until(b'\n', &mut buf).map_err(read)? == 0 {
            return Ok((count, first));
        }
        if buf.windows(needle.len()).any(|w| w == needle) {
            count += 1;
            if first.is_none() {
                first = Some(String::from_utf8_lossy(&buf).trim_end().to_owned());
            }
        }
    }
}

/// The log of `scenario` at `path` has a request line for each of the `requests` answered
/// (or more: the warm-up's and readiness checks' lines count too) within `settle`.
pub fn has_lines(
    scenario: &'static str,
    path: &Path,
    line: &'static str,
    requests: u64,
    settle: Duration,
) -> Result<(), LogCheck> {
    let deadline = Instant::now() + settle;
    loop {
        let (lines, _) = scan(path, line)?;
        if lines >= requests && lines > 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(LogCheck::Missing {
                scenario,
                line,
                lines,
                requests,
                path: path.to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log of `scenario` at `path` holds no request line.
pub fn has_none(scenario: &'static str, path: &Path, line: &str) -> Result<(), LogCheck> {
    match scan(path, line)?.1 {
        None => Ok(()),
        Some(found) => Err(LogCheck::Unwanted {
            scenario,
            path: path.to_owned(),
            found,
        }),
    }
}

/// The size of the log at `path`, to see that a scenario added nothing to it.
pub fn size(path: &Path) -> Result<u64, LogCheck> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| LogCheck::Read {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_holds_request_lines_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let quote = dir.path().join("quote.log");
        std::fs::write(
            &quote,
            "2026-12-04T03:33:08.668502Z  INFO listening service=quote addr=[::]:18555\n\
             2026-12-04T03:33:09.692364Z  INFO request method=GET path=\"/quote\" status=200 latency_ms=0.129 client=127.0.0.1\n",
        )
        .unwrap();
        assert!(has_lines("quote", &quote, QUOTE_LINE, 1, Duration::ZERO).is_ok());
        assert!(matches!(
            has_lines("quote", &quote, QUOTE_LINE, 2, Duration::ZERO),
            Err(LogCheck::Missing {
                lines: 1,
                requests: 2,
                ..
            })
        ));
        let err = has_none("quote", &quote, QUOTE_LINE).unwrap_err();
        assert!(matches!(err, LogCheck::Unwanted { .. }), "{err}");
        assert!(err.to_string().contains("latency_ms=0.129"), "{err}");

        let nginx = dir.path().join("access.log");
        std::fs::write(
            &nginx,
            "127.0.0.1 - - [04/Dec/2026:03:33:09 +0000] \"GET /quote HTTP/1.1\" 200 86 \"-\" \"-\"\n",
        )
        .unwrap();
        assert!(has_lines("nginx", &nginx, NGINX_LINE, 1, Duration::ZERO).is_ok());
        assert!(matches!(
            has_lines("nginx", &quote, NGINX_LINE, 0, Duration::ZERO),
            Err(LogCheck::Missing { lines: 0, .. })
        ));
        assert!(has_none("quote", &nginx, QUOTE_LINE).is_ok());
        assert!(matches!(
            size(&dir.path().join("missing")),
            Err(LogCheck::Read { .. })
        ));
    }
}
