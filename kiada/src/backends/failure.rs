//! How a backend call failed, sorted into the kinds the pages explain, each with a hint of what
//! to check.

use std::error::Error as _;

use serde::Serialize;

/// How a backend call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// The name did not resolve.
    Dns,
    /// Nothing listens at the address.
    Refused,
    /// No complete answer within the backend timeout.
    Timeout,
    /// The connection was closed before an answer.
    Closed,
    /// Some other connection failure.
    Connect,
    /// The backend answered with an error status.
    Status(u16),
    /// The backend answered something that is not what it should.
    InvalidResponse,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackendError {
    pub kind: FailureKind,
    /// What happened, in a sentence.
    pub message: String,
}

impl BackendError {
    /// What to check, in one line.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            FailureKind::Dns => {
                "The name did not resolve: check the Service name and namespace (kubectl get svc -n kiada)."
            }
            FailureKind::Refused => {
                "Connection refused: no ready endpoints? Check the Service selector and the pods' readiness (kubectl describe endpointslice -n kiada -l kubernetes.io/service-name=<service>), and that the targetPort is where the pods listen."
            }
            FailureKind::Timeout => {
                "No answer in time: the backend is overloaded or hanging, a NetworkPolicy drops the traffic (a targetPort it does not admit, too), or a Local traffic policy finds no endpoint on this node."
            }
            FailureKind::Closed => {
                "The connection closed before an answer: the backend pod may have crashed or be shutting down."
            }
            FailureKind::Connect => {
                "Could not connect: check the backend URL and the network path to it."
            }
            FailureKind::Status(_) => {
                "The backend answered with an error: check its logs (kubectl logs -n kiada -l app=<service>)."
            }
            FailureKind::InvalidResponse => {
                "The backend answered something unexpected: is the URL pointing at the right service?"
            }
        }
    }

    pub(crate) fn invalid(detail: impl std::fmt::Display) -> Self {
        BackendError {
            kind: FailureKind::InvalidResponse,
            message: format!("unexpected response: {detail}"),
        }
    }
}

impl FailureKind {
    /// The outcome label of the metrics.
    pub(crate) fn label(self) -> String {
        match self {
            FailureKind::Dns => "dns".into(),
            FailureKind::Refused => "refused".into(),
            FailureKind::Timeout => "timeout".into(),
            FailureKind::Closed => "closed".into(),
            FailureKind::Connect => "connect".into(),
            FailureKind::Status(code) => code.to_string(),
            FailureKind::InvalidResponse => "invalid".into(),
        }
    }
}

/// Sorts a transport error into the kinds the pages explain. The cause sits several sources
/// down reqwest's error chain (reqwest → hyper-util → io or the resolver).
pub fn classify(err: &reqwest::Error) -> BackendError {
    let mut chain = Vec::new();
    let mut source = err.source();
    while let Some(s) = source {
        chain.push(s);
        source = s.source();
    }
    let io_kind = chain
        .iter()
        .find_map(|s| s.downcast_ref::<std::io::Error>())
        .map(|e| e.kind());
    let said = |text: &str| chain.iter().any(|s| s.to_string().contains(text));
    let kind = if err.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut) {
        FailureKind::Timeout
    } else if said("dns error") || said("failed to lookup address") {
        FailureKind::Dns
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        FailureKind::Refused
    } else if said("connection closed")
        || matches!(
            io_kind,
            Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof)
        )
    {
        FailureKind::Closed
    } else {
        FailureKind::Connect
    };
    let detail = chain
        .last()
        .map(|s| s.to_string())
        .unwrap_or_else(|| err.to_string());
    let message = match kind {
        FailureKind::Timeout => "timed out".to_owned(),
        FailureKind::Dns => format!("DNS lookup failed: {detail}"),
        FailureKind::Refused => "connection refused".to_owned(),
        FailureKind::Closed => format!("connection closed: {detail}"),
        _ => format!("cannot connect: {detail}"),
    };
    BackendError { kind, message }
}
