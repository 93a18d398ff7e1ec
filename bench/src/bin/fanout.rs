//! Baseline: the floor of kiada's `/text` — a bare handler making the same two backend calls
//! (quote and a random quiz question) with a pooled client, in parallel, and concatenating the
//! bodies. Nothing else: no page, no logging, no metrics.
//!   fanout <port> <quote URL> <quiz base URL>

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

struct Backends {
    client: reqwest::Client,
    quote: String,
    question: String,
}

async fn text(State(b): State<Arc<Backends>>) -> String {
    let fetch = |url: &str| {
        let request = b.client.get(url).send();
        async move {
            match request.await {
                Ok(res) => res.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            }
        }
    };
    let (tip, question) = tokio::join!(fetch(&b.quote), fetch(&b.question));
    format!("{tip}\n{question}\n")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, quote, quiz] = args.as_slice() else {
        panic!("usage: fanout <port> <quote URL> <quiz base URL>");
    };
    let backends = Arc::new(Backends {
        client: reqwest::Client::new(),
        quote: quote.clone(),
        question: format!("{quiz}/questions/random"),
    });
    let app = Router::new().route("/text", get(text)).with_state(backends);
    let port: u16 = port.parse().expect("port");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
