//! Where the backends are: the chapter's two discovery mechanisms. An explicit URL wins; else
//! the variables Kubernetes injects for a Service that existed when the pod started
//! (`QUOTE_SERVICE_HOST`/`QUOTE_SERVICE_PORT`); else the Service's DNS name.

use std::fmt;

/// How a backend URL was found, logged at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `QUOTE_URL` / `QUIZ_URL` (or the flag).
    Explicit,
    /// `<NAME>_SERVICE_HOST` and `<NAME>_SERVICE_PORT`.
    ServiceEnv,
    /// Neither was set: the Service's DNS name.
    DnsDefault,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Explicit => "explicit URL",
            Source::ServiceEnv => "Kubernetes service env vars",
            Source::DnsDefault => "default Service DNS name",
        })
    }
}

/// A backend's URL and how it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    pub url: String,
    pub source: Source,
}

/// What the environment says about one backend Service.
#[derive(Clone, Debug, Default)]
pub struct ServiceEnv {
    /// `QUOTE_URL` or `QUIZ_URL`.
    pub url: Option<String>,
    /// `<NAME>_SERVICE_HOST`.
    pub service_host: Option<String>,
    /// `<NAME>_SERVICE_PORT`.
    pub service_port: Option<String>,
}

/// `path` is appended to URLs built from the service variables (`/quote` for quote, nothing for
/// quiz, whose URL is a base); `default` is used when nothing is set.
pub fn discover(env: ServiceEnv, path: &str, default: &str) -> Discovered {
    let set = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    if let Some(url) = set(env.url) {
        return Discovered {
            url: url.trim().trim_end_matches('/').to_owned(),
            source: Source::Explicit,
        };
    }
    if let (Some(host), Some(port)) = (set(env.service_host), set(env.service_port)) {
        // An IPv6 ClusterIP needs brackets in a URL.
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        return Discovered {
            url: format!("http://{host}:{port}{path}"),
            source: Source::ServiceEnv,
        };
    }
    Discovered {
        url: default.to_owned(),
        source: Source::DnsDefault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(url: Option<&str>, host: Option<&str>, port: Option<&str>) -> ServiceEnv {
        ServiceEnv {
            url: url.map(Into::into),
            service_host: host.map(Into::into),
            service_port: port.map(Into::into),
        }
    }

    #[test]
    fn an_explicit_url_wins() {
        let d = discover(
            env(Some("http://quote/quote"), Some("10.96.0.5"), Some("80")),
            "/quote",
            "x",
        );
        assert_eq!(
            d,
            Discovered {
                url: "http://quote/quote".into(),
                source: Source::Explicit
            }
        );
    }

    #[test]
    fn service_env_vars_come_next() {
        let d = discover(env(None, Some("10.96.0.5"), Some("80")), "/quote", "x");
        assert_eq!(
            d,
            Discovered {
                url: "http://10.96.0.5:80/quote".into(),
                source: Source::ServiceEnv
            }
        );
        let d = discover(env(Some(""), Some("fd00::5"), Some("8080")), "", "x");
        assert_eq!(d.url, "http://[fd00::5]:8080");
    }

    #[test]
    fn the_dns_name_is_the_last_resort() {
        let d = discover(
            env(None, Some("10.96.0.5"), None),
            "/quote",
            "http://quote/quote",
        );
        assert_eq!(
            d,
            Discovered {
                url: "http://quote/quote".into(),
                source: Source::DnsDefault
            }
        );
    }
}
