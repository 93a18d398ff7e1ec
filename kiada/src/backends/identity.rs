//! What a backend says about itself in the headers every service of the suite sets
//! (`X-Pod-Name`, `X-Pod-IP`, `X-Node-Name`, `X-Pod-State`, `X-Connection-Requests`), checked
//! in this one place before anything of kiada shows, counts, pads or stores it. A backend is
//! another program on the network: a pod or node name of 64 KiB, or a new one on every call,
//! must not become a page, a metric series or a width.

use axum::http::HeaderMap;

/// What a value that fails its check is shown as.
pub const INVALID: &str = "(invalid)";

/// The longest pod or node name: a DNS subdomain.
pub const MAX_NAME: usize = 253;

/// A pod or node name as Kubernetes allows them (a DNS subdomain: letters, digits, `-` and
/// `.`, at most 253 bytes; upper case is let through for hostnames outside a cluster).
pub fn name(raw: &str) -> String {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_NAME
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    keep_if(ok, raw)
}

/// An IP address, or the suite's `unknown` when the pod's own was not given.
pub fn address(raw: &str) -> String {
    let ok = raw == kit::identity::UNKNOWN || raw.parse::<std::net::IpAddr>().is_ok();
    keep_if(ok, raw)
}

/// One of the four states a service of the suite reports.
pub fn state(raw: &str) -> String {
    let ok = matches!(raw, "ready" | "draining" | "disabled" | "fault");
    keep_if(ok, raw)
}

/// A count of requests: a number, or nothing.
pub fn count(raw: &str) -> Option<u64> {
    raw.parse().ok()
}

fn keep_if(ok: bool, raw: &str) -> String {
    if ok {
        raw.to_owned()
    } else {
        INVALID.to_owned()
    }
}

/// The identity headers of a backend's answer, each checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Said {
    pub pod: Option<String>,
    pub pod_ip: Option<String>,
    pub node: Option<String>,
    pub state: Option<String>,
    pub connection_requests: Option<u64>,
}

impl Said {
    pub fn of(headers: &HeaderMap) -> Said {
        // A header that is not even text is as invalid as a wrong one.
        let get = |name: &str, check: fn(&str) -> String| {
            headers
                .get(name)
                .map(|v| v.to_str().map_or_else(|_| INVALID.to_owned(), check))
        };
        Said {
            pod: get("x-pod-name", name),
            pod_ip: get("x-pod-ip", address),
            node: get("x-node-name", name),
            state: get("x-pod-state", state),
            connection_requests: headers
                .get(kit::CONNECTION_REQUESTS)
                .and_then(|v| v.to_str().ok())
                .and_then(count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_states_and_counts_are_checked() {
        assert_eq!(name("quote-7f9c-x2"), "quote-7f9c-x2");
        assert_eq!(name("kind-worker.example"), "kind-worker.example");
        assert_eq!(name(&"a".repeat(253)), "a".repeat(253));
        assert_eq!(name(&"a".repeat(254)), INVALID);
        assert_eq!(name("<b>pod</b>"), INVALID);
        assert_eq!(name("pod\u{1b}[2J"), INVALID);
        assert_eq!(name(""), INVALID);
        assert_eq!(address("10.244.1.7"), "10.244.1.7");
        assert_eq!(address("fd00::7"), "fd00::7");
        assert_eq!(address("unknown"), "unknown");
        assert_eq!(address("10.244.1.7; rm -rf"), INVALID);
        for s in ["ready", "draining", "disabled", "fault"] {
            assert_eq!(state(s), s);
        }
        assert_eq!(state("READY"), INVALID);
        assert_eq!(count("7"), Some(7));
        assert_eq!(count("-1"), None);
        assert_eq!(count(&"9".repeat(40)), None);
    }

    #[test]
    fn headers_that_are_not_text_are_invalid() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-pod-name",
            axum::http::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        );
        headers.insert("x-node-name", "node-1".parse().unwrap());
        let said = Said::of(&headers);
        assert_eq!(said.pod.as_deref(), Some(INVALID));
        assert_eq!(said.node.as_deref(), Some("node-1"));
        assert_eq!(said.state, None);
    }
}
