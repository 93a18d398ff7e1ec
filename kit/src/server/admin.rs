//! The admin port's guard. It listens on 127.0.0.1 only, but a web page open in a browser on
//! the same machine can still reach it: by a cross-site form post, or by DNS rebinding (a name
//! of the attacker's that resolves to 127.0.0.1). Both are refused: a request must name a
//! loopback host, and must not come from another site's page.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub(super) async fn guard(request: Request, next: Next) -> Response {
    match refusal(
        request.headers(),
        request.uri().authority().map(|a| a.as_str()),
    ) {
        Some(reason) => (
            StatusCode::FORBIDDEN,
            format!(
                "Refused: {reason}. The admin port answers only requests addressed to \
                 localhost, 127.0.0.1 or [::1] that do not come from another site's page.\n"
            ),
        )
            .into_response(),
        None => next.run(request).await,
    }
}

fn refusal(headers: &HeaderMap, authority: Option<&str>) -> Option<String> {
    let host = headers
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("(not text)"))
        .or(authority);
    if let Some(host) = host
        && !is_loopback_authority(host)
    {
        return Some(format!(
            "Host '{}' is not a loopback address",
            shorten(host)
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(is_loopback_authority) {
            return Some(format!("Origin '{}' is another site", shorten(origin)));
        }
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Some("the request comes from another site's page".to_owned());
    }
    None
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, port))
                if port.is_empty() || port.strip_prefix(':').is_some_and(is_port) =>
            {
                host
            }
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return false,
            None => authority,
        },
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_port(digits: &str) -> bool {
    (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn shorten(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn loopback_hosts_pass_and_others_are_refused() {
        for host in [
            "localhost",
            "LOCALHOST:9901",
            "127.0.0.1",
            "127.0.0.1:9901",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:9901",
        ] {
            assert_eq!(refusal(&headers(&[("host", host)]), None), None, "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:9901",
            "localhost.evil.example",
            "10.0.0.1:9901",
            "[::2]:9901",
            "127.0.0.1:",
            "127.0.0.1:99x",
            "localhost:9901:1",
        ] {
            assert!(
                refusal(&headers(&[("host", host)]), None).is_some(),
                "{host}"
            );
        }
        assert!(refusal(&HeaderMap::new(), Some("evil.example")).is_some());
        assert_eq!(refusal(&HeaderMap::new(), None), None);
    }

    #[test]
    fn cross_site_origins_are_refused() {
        let with = |origin: &str| {
            refusal(
                &headers(&[("host", "127.0.0.1:9901"), ("origin", origin)]),
                None,
            )
        };
        assert_eq!(with("http://localhost:8080"), None);
        assert_eq!(with("http://127.0.0.1:9901"), None);
        assert!(with("https://evil.example").is_some());
        assert!(with("null").is_some());
        let fetch = headers(&[("host", "localhost"), ("sec-fetch-site", "cross-site")]);
        assert!(refusal(&fetch, None).is_some());
        let same = headers(&[("host", "localhost"), ("sec-fetch-site", "same-origin")]);
        assert_eq!(refusal(&same, None), None);
    }
}
