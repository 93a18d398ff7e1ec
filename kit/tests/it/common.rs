//! An app with a few test routes, on free ports.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use kit::{App, AppSpec, ClientIp, Identity, Running, ServerConfig};

pub fn routes() -> Router {
    Router::new()
        .route(
            "/client",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/slow",
            get(|| async {
                // Slow on purpose: a request still in flight when a test needs one.
                tokio::time::sleep(Duration::from_millis(800)).await;
                "done"
            }),
        )
        // Large enough to fill a connection's socket buffers.
        .route("/big", get(|| async { "x".repeat(BIG) }))
        // A stream that keeps producing: a chunk every `STREAM_EVERY`, `STREAM_CHUNKS` of them.
        .route(
            "/stream",
            get(|| async {
                axum::body::Body::new(Ticks {
                    left: STREAM_CHUNKS,
                    timer: Box::pin(tokio::time::sleep(STREAM_EVERY)),
                })
            }),
        )
        .fallback(kit::not_found)
}

pub const BIG: usize = 1 << 20;
pub const STREAM_CHUNKS: usize = 10;
pub const STREAM_EVERY: Duration = Duration::from_millis(250);

/// The body of `/stream`: `tick N\n` lines at an interval.
struct Ticks {
    left: usize,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for Ticks {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.timer.as_mut().poll(cx));
        self.left -= 1;
        let next = tokio::time::Instant::now() + STREAM_EVERY;
        self.timer.as_mut().reset(next);
        let line = format!("tick {}\n", STREAM_CHUNKS - self.left);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(line.into()))))
    }
}

pub fn start_with(config: ServerConfig) -> Running {
    let identity = Identity {
        pod_name: "pod-a".into(),
        pod_ip: "10.0.0.7".into(),
        node_name: "node-1".into(),
        ..Identity::named("pod-a")
    };
    App::bind(&config, &identity, AppSpec::new("test", routes()))
        .expect("bind")
        .spawn()
}

pub fn start() -> Running {
    start_with(ServerConfig::ephemeral())
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub use testkit::eventually;
