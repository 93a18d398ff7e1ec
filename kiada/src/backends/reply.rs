//! One backend call's result and who served it: the answer, the pod, node and address that
//! answered (from the headers every service of the suite sets), the connection it went over.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};

use super::failure::{BackendError, classify};
use super::identity::Said;

/// The result of one backend call and who served it.
#[derive(Clone, Debug)]
pub struct Reply<T> {
    pub result: Result<T, BackendError>,
    /// Who answered, as far as the call got.
    pub by: Answerer,
    pub elapsed: Duration,
}

impl<T> Reply<T> {
    /// The same call with its result turned into another.
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Result<U, BackendError>) -> Reply<U> {
        Reply {
            result: self.result.and_then(f),
            by: self.by,
            elapsed: self.elapsed,
        }
    }
}

/// Who answered a call, from the headers every service of the suite sets (each checked, see
/// [`super::identity`]), and over what.
#[derive(Clone, Debug, Default)]
pub struct Answerer {
    /// From the backend's `X-Pod-Name`, when it answered.
    pub pod: Option<String>,
    /// From the backend's `X-Pod-IP`.
    pub pod_ip: Option<String>,
    /// From the backend's `X-Node-Name`.
    pub node: Option<String>,
    /// The address the call connected to.
    pub remote: Option<std::net::SocketAddr>,
    /// From the backend's `X-Connection-Requests`: 1 on a new connection.
    pub connection_requests: Option<u64>,
    /// From the backend's `X-Pod-State` (ready, draining, disabled, fault).
    pub state: Option<String>,
}

impl Answerer {
    pub fn of(res: &reqwest::Response) -> Self {
        let said = Said::of(res.headers());
        Answerer {
            pod: said.pod,
            pod_ip: said.pod_ip,
            node: said.node,
            state: said.state,
            remote: res.remote_addr(),
            connection_requests: said.connection_requests,
        }
    }

    pub(super) fn reply<T>(self, result: Result<T, BackendError>, elapsed: Duration) -> Reply<T> {
        Reply {
            result,
            by: self,
            elapsed,
        }
    }
}

/// A backend's answer, whatever its status: relayed as it came by the proxy routes, parsed by
/// the page calls.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: axum::body::Bytes,
}

/// Most kiada reads of a backend's answer; a tip or a question is a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The body of a backend's answer, refused as an invalid response past [`BODY_LIMIT`] (declared
/// or counted as it arrives), so that a wrong or hostile backend cannot fill kiada's memory.
pub async fn read_body(mut res: reqwest::Response) -> Result<axum::body::Bytes, BackendError> {
    let too_large = || BackendError::invalid(format!("a body over {BODY_LIMIT} bytes"));
    if res.content_length().is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    async fn chunk(res: &mut reqwest::Response) -> Result<Option<axum::body::Bytes>, BackendError> {
        res.chunk().await.map_err(|e| classify(&e))
    }
    // Most answers arrive in one chunk, kept as it is; more are gathered.
    let Some(first) = chunk(&mut res).await? else {
        return Ok(axum::body::Bytes::new());
    };
    if first.len() > BODY_LIMIT {
        return Err(too_large());
    }
    let Some(second) = chunk(&mut res).await? else {
        return Ok(first);
    };
    let mut body = Vec::with_capacity(first.len() + second.len());
    body.extend_from_slice(&first);
    body.extend_from_slice(&second);
    while body.len() <= BODY_LIMIT {
        match chunk(&mut res).await? {
            Some(more) => body.extend_from_slice(&more),
            None => return Ok(body.into()),
        }
    }
    Err(too_large())
}
