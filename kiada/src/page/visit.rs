//! What the page says about the request itself: the client's address, its connection's count,
//! a claimed `X-Forwarded-For`, and the origin the client used (checked before it goes into the
//! commands the text page prints).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// What the page says about the request itself.
pub(super) struct Visit {
    pub client: kit::ClientIp,
    /// Requests the client's connection has carried, this one included.
    pub connection_requests: Option<u64>,
    pub forwarded_for: Option<String>,
    /// `scheme://host` as the client addressed this pod, for the curl commands on the text page.
    pub origin: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let client = kit::ClientIp::from_request_parts(parts, state).await?;
        let text = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        // The client's words go into commands the page prints: only a well-formed host is
        // taken, anything else is replaced.
        let host = text("host")
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .filter(|h| is_host(h))
            .unwrap_or_else(|| "localhost".into());
        let scheme = if parts
            .extensions
            .get::<kit::Connection>()
            .is_some_and(|c| c.tls)
        {
            "https"
        } else {
            "http"
        };
        Ok(Visit {
            client,
            connection_requests: parts.extensions.get::<kit::Connection>().map(|c| c.request),
            forwarded_for: text("x-forwarded-for"),
            origin: format!("{scheme}://{host}"),
        })
    }
}

/// A host name or IP address, with an optional port: `[A-Za-z0-9.-]` labels, or an IPv6
/// address in brackets.
fn is_host(authority: &str) -> bool {
    // (host, port digits); an IPv6 address is checked by parsing it.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, rest)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => {
                match rest.strip_prefix(':') {
                    Some(port) => ("v6", port),
                    None if rest.is_empty() => ("v6", "80"),
                    None => return false,
                }
            }
            _ => return false,
        },
        None => authority.split_once(':').unwrap_or((authority, "80")),
    };
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && (1..=253).contains(&host.len())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}
