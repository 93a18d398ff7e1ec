//! Flags every service accepts. Each has an environment variable of the same meaning; none of
//! those names may look like the variables Kubernetes injects for Services (`<NAME>_PORT`,
//! `<NAME>_SERVICE_HOST`, …), or a Service of that name would overwrite it.
//!
//! The files an operator hands a service (tips, questions, certificates) are read through
//! [`file`].

pub mod file;

use std::time::Duration;

/// How a service listens, drains and logs. Parsed from flags and env by `main.rs`; tests and the
/// local suite build it directly.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerConfig {
    /// Port for application traffic and probes, on IPv6 and IPv4 (0 picks a free port).
    #[arg(long, env = "LISTEN_PORT", default_value_t = 8080)]
    pub listen_port: u16,

    /// Port of the admin listener on 127.0.0.1 (readiness toggles, fault drills; 0 picks a free port).
    #[arg(long, env = "ADMIN_PORT", default_value_t = 9901)]
    pub admin_port: u16,

    /// Seconds to keep serving after SIGTERM while readiness fails, so endpoints are updated
    /// before the listener closes.
    #[arg(long, env = "SHUTDOWN_DELAY", value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub shutdown_delay: Duration,

    /// Seconds in-flight requests get to finish once the listener has closed.
    #[arg(long, env = "DRAIN_TIMEOUT", value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub drain_timeout: Duration,

    /// Seconds a request may take before it is answered 503.
    #[arg(long, env = "REQUEST_TIMEOUT", value_name = "SECONDS", default_value = "30", value_parser = parse_seconds)]
    pub request_timeout: Duration,

    /// Seconds a request body may take to arrive after its head before the request is answered
    /// 408; shorter than the request timeout, which is the handlers' time.
    #[arg(long, env = "BODY_READ_TIMEOUT", value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub body_read_timeout: Duration,

    /// Seconds after which a connection is asked to close: HTTP/2 with GOAWAY (streams under
    /// way finish), HTTP/1 after its current response; clients that keep connections for long
    /// (gRPC, HTTP/2) then reconnect and spread over a Service's pods. Off unless set.
    #[arg(long, env = "MAX_CONNECTION_AGE", value_name = "SECONDS", value_parser = parse_seconds)]
    pub max_connection_age: Option<Duration>,

    /// Connections each listener (main, HTTPS, admin) serves at once. At the cap readiness
    /// fails; 16 more are answered only on the probes and /metrics; the rest are closed at once.
    #[arg(
        long,
        env = "MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = crate::server::MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,

    /// Milliseconds to delay every application response (not probes), for drills.
    #[arg(
        long,
        env = "RESPONSE_DELAY_MS",
        value_name = "MS",
        default_value_t = 0
    )]
    pub response_delay_ms: u64,

    /// Up to this many more milliseconds, at random, on top of the response delay.
    #[arg(
        long,
        env = "RESPONSE_DELAY_JITTER_MS",
        value_name = "MS",
        default_value_t = 0
    )]
    pub response_delay_jitter_ms: u64,

    /// Fault drill: after this many seconds, application routes answer 500 and readiness fails
    /// (liveness still passes).
    #[arg(long, env = "FAIL_AFTER", value_name = "SECONDS", value_parser = parse_seconds)]
    pub fail_after: Option<Duration>,

    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A connection that has not sent a complete request head for this long is closed
    /// (slowloris, idle keep-alive); fixed, not a flag: tests shorten it.
    #[arg(skip = HEADER_READ_TIMEOUT)]
    pub header_read_timeout: Duration,
}

pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl ServerConfig {
    /// Free ports, a short drain: what tests and embedded instances want.
    pub fn ephemeral() -> Self {
        ServerConfig {
            listen_port: 0,
            admin_port: 0,
            shutdown_delay: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            body_read_timeout: crate::server::BODY_READ_TIMEOUT,
            max_connections: crate::server::MAX_CONNECTIONS,
            max_connection_age: None,
            response_delay_ms: 0,
            response_delay_jitter_ms: 0,
            fail_after: None,
            log_format: LogFormat::Text,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// A flag's value that is not a number of seconds, as clap reports it.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("'{0}' is not a number of seconds (a decimal number, 0 or more)")]
pub struct NotSeconds(String);

/// Seconds as a decimal number (`5`, `0.5`), so tests can ask for a short drain.
pub fn parse_seconds(s: &str) -> Result<Duration, NotSeconds> {
    let secs: f64 = s.trim().parse().map_err(|_| NotSeconds(s.to_owned()))?;
    Duration::try_from_secs_f64(secs).map_err(|_| NotSeconds(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_accept_fractions_and_reject_nonsense() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerConfig,
    }

    #[test]
    fn the_connection_limits_are_flags_with_defaults_and_a_cap_of_one_at_least() {
        use clap::Parser;
        let defaults = Cli::try_parse_from(["service"]).unwrap().server;
        assert_eq!(defaults.max_connections, 512);
        assert_eq!(defaults.body_read_timeout, Duration::from_secs(10));
        let set = [
            "service",
            "--max-connections",
            "64",
            "--body-read-timeout",
            "2.5",
        ];
        let set = Cli::try_parse_from(set).unwrap().server;
        assert_eq!(set.max_connections, 64);
        assert_eq!(set.body_read_timeout, Duration::from_millis(2500));
        assert!(Cli::try_parse_from(["service", "--max-connections", "0"]).is_err());
    }
}
