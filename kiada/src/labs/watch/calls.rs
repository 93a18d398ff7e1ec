//! The watch's calls: one call of the configured backend, what it came to, and the labs'
//! connection budget it draws on.

use std::sync::Arc;

use crate::backends::{Backend, Backends, FailureKind};
use crate::labs::limits::Limits;

/// What one call came to.
pub(super) enum Outcome {
    Answered {
        pod: String,
        state: String,
        ms: f64,
    },
    Failed {
        kind: String,
        message: String,
        pod: Option<String>,
        ms: f64,
    },
    /// Not made: the labs' budget of new connections was spent.
    Throttled,
}

/// Makes the watch's calls, always to the one configured URL.
pub(super) struct Caller {
    pub url: String,
    pub service: Backend,
    pub reuse: bool,
    pub client: reqwest::Client,
    pub backends: Backends,
    pub limits: Arc<Limits>,
    pub request_id: Option<kit::request_id::RequestId>,
    /// Whether a reused connection has had its one token.
    pub charged: bool,
}

impl Caller {
    pub async fn call(&mut self) -> Outcome {
        // Over new connections each call spends a token; a reused connection spends one for
        // the whole watch (reconnects aside, as in the spread lab).
        if !(self.reuse && self.charged) {
            if !self.limits.take_connection() {
                return Outcome::Throttled;
            }
            self.charged = true;
        }
        let mut request = self.client.get(&self.url).header("accept", "text/plain");
        if let Some(id) = &self.request_id {
            request = request.header(kit::request_id::HEADER, id.as_str());
        }
        let reply = self.backends.send(self.service, request).await;
        let ms = (reply.elapsed.as_secs_f64() * 10_000.0).round() / 10.0;
        match reply.result {
            Ok(answer) if answer.status.is_success() => Outcome::Answered {
                pod: reply.by.pod.unwrap_or_else(|| "(no X-Pod-Name)".into()),
                state: reply.by.state.unwrap_or_else(|| "unknown".into()),
                ms,
            },
            Ok(answer) => Outcome::Failed {
                kind: kind_name(FailureKind::Status(answer.status.as_u16())),
                message: format!("HTTP {}", answer.status),
                pod: reply.by.pod,
                ms,
            },
            Err(e) => Outcome::Failed {
                kind: kind_name(e.kind),
                message: e.message,
                pod: reply.by.pod,
                ms,
            },
        }
    }
}

/// The failure kinds as the watch names them.
fn kind_name(kind: FailureKind) -> String {
    match kind {
        FailureKind::Dns => "dns".into(),
        FailureKind::Refused => "refused".into(),
        FailureKind::Timeout => "timeout".into(),
        FailureKind::Closed => "closed".into(),
        FailureKind::Connect => "connect".into(),
        FailureKind::Status(code) => format!("http-{code}"),
        FailureKind::InvalidResponse => "invalid".into(),
    }
}
