//! The admin port's guard. It listens on 127.0.0.1 only, but a web page open in a browser on
//! the same machine can still reach it: by a form post or a `fetch` from another site, from a
//! page another local server serves on another port (the other services of the suite, a
//! developer's own), or by DNS rebinding (a name of the attacker's that resolves to 127.0.0.1).
//! All are refused: a request must name a loopback host, and may come from no page but the
//! admin port's own. Browsers send `Origin` on every cross-origin request and on every POST,
//! and `Sec-Fetch-Site` on every request; a `same-site` page is another port of the same host,
//! so only `none` (typed in, a bookmark) and `same-origin` pass.

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
                 localhost, 127.0.0.1 or [::1] that come from no web page but its own.\n"
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
        if !host.is_some_and(|host| is_own_origin(origin, host)) {
            return Some(format!(
                "Origin '{}' is not this port's own ({})",
                shorten(origin),
                host.map_or_else(|| "none: no Host".to_owned(), own_origin)
            ));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"none" | b"same-origin")
    {
        return Some(format!(
            "the request comes from another page (Sec-Fetch-Site: {})",
            shorten(site.to_str().unwrap_or("(not text)"))
        ));
    }
    None
}

/// The admin listener's origin as the request addressed it: plain HTTP, the `Host` it named.
fn own_origin(host: &str) -> String {
    format!("http://{}", host.to_ascii_lowercase())
}

/// Whether `origin` is `http://` and the host and port the request addressed, the way browsers
/// write an origin: lowercase, without the default port 80.
fn is_own_origin(origin: &str, host: &str) -> bool {
    let Some(authority) = origin.strip_prefix("http://") else {
        return false;
    };
    let strip_default = |a: &str| -> String {
        let a = a.to_ascii_lowercase();
        match a.strip_suffix(":80") {
            Some(bare) => bare.to_owned(),
            None => a,
        }
    };
    strip_default(authority) == strip_default(host)
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
    fn only_the_ports_own_origin_and_no_other_page_pass() {
        let with = |host: &str, origin: &str| {
            refusal(&headers(&[("host", host), ("origin", origin)]), None)
        };
        assert_eq!(with("127.0.0.1:9901", "http://127.0.0.1:9901"), None);
        assert_eq!(with("LOCALHOST:9901", "http://localhost:9901"), None);
        assert_eq!(with("localhost", "http://localhost"), None);
        assert_eq!(with("localhost:80", "http://localhost"), None);
        assert_eq!(with("[::1]:9901", "http://[::1]:9901"), None);
        // Another local port (another service of the suite, a dev server), another name for
        // the same address, another scheme, another site, an opaque origin.
        for (host, origin) in [
            ("127.0.0.1:9901", "http://localhost:8080"),
            ("127.0.0.1:9901", "http://127.0.0.1:8080"),
            ("127.0.0.1:9901", "http://localhost:9901"),
            ("127.0.0.1:9901", "https://127.0.0.1:9901"),
            ("127.0.0.1:9901", "https://evil.example"),
            ("127.0.0.1:9901", "null"),
            ("127.0.0.1:9901", "http://127.0.0.1:9901.evil.example"),
        ] {
            let refused = with(host, origin);
            assert!(refused.is_some(), "{host} from {origin}");
            assert!(refused.unwrap().contains("http://127.0.0.1:9901"));
        }
        // No Host to compare with: no Origin passes.
        let no_host = headers(&[("origin", "http://127.0.0.1:9901")]);
        assert!(refusal(&no_host, None).is_some());
        assert_eq!(
            refusal(&no_host, Some("127.0.0.1:9901")),
            None,
            "HTTP/2 names its authority in the URI"
        );
    }

    #[test]
    fn fetch_metadata_passes_only_for_no_page_or_the_same_origin() {
        let with = |site: &str| {
            refusal(
                &headers(&[("host", "localhost:9901"), ("sec-fetch-site", site)]),
                None,
            )
        };
        assert_eq!(with("none"), None);
        assert_eq!(with("same-origin"), None);
        for site in ["same-site", "cross-site", "SAME-ORIGIN", ""] {
            assert!(with(site).is_some(), "{site:?}");
        }
    }
}
