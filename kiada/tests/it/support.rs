//! Stand-in backends for kiada's tests: real HTTP servers on loopback, port 0, whose answers the
//! test decides.

use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use kiada::Config;
use kit::Running;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct StandIn {
    pub url: String,
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(router: Router) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    StandIn {
        url: format!("http://127.0.0.1:{port}"),
        port,
        task,
    }
}

/// A server that accepts connections and never answers.
pub async fn hanging() -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    StandIn {
        url: format!("http://127.0.0.1:{port}"),
        port,
        task,
    }
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn pod_headers(pod: &'static str) -> [(&'static str, &'static str); 2] {
    [("x-pod-name", pod), ("x-pod-ip", "10.244.1.7")]
}

/// A quote service that always answers `tip`, naming itself `pod`.
pub fn quote(pod: &'static str, tip: &'static str) -> Router {
    Router::new()
        .route(
            "/quote",
            get(move || async move { (pod_headers(pod), format!("{tip}\n")) }),
        )
        .route(
            "/",
            get(move || async move { (pod_headers(pod), format!("quote pod {pod}\n")) }),
        )
}

/// A quote service that fails with `status`.
pub fn failing(status: StatusCode) -> Router {
    let handler = move || async move { (status, pod_headers("sick-pod"), "something broke\n") };
    Router::new()
        .route("/quote", get(handler))
        .route("/questions/random", get(handler))
}

pub const QUESTION_ID: u32 = 7;
pub const CORRECT: usize = 1;

/// The explanation the stand-in quiz gives with every verdict: markup that must be escaped.
pub const EXPLANATION: &str = "Beta wins: <script>alert('why')</script> & that is all.";

/// A quiz service with one question, 7, whose correct answer is 1, explained by [`EXPLANATION`].
pub fn quiz(pod: &'static str, text: &'static str) -> Router {
    quiz_explaining(pod, text, Some(EXPLANATION))
}

/// The same quiz service, with the given explanation or none (as from a custom question file).
pub fn quiz_explaining(
    pod: &'static str,
    text: &'static str,
    explanation: Option<&'static str>,
) -> Router {
    let question = move || json!({"id": QUESTION_ID, "text": text, "answers": ["Alpha", "Beta", "<b>Gamma</b>"]});
    Router::new()
        .route(
            "/questions/random",
            get(move || async move { (pod_headers(pod), Json(question())) }),
        )
        .route(
            "/questions/{id}",
            get(move |Path(id): Path<u32>| async move {
                if id == QUESTION_ID {
                    (pod_headers(pod), Json(question())).into_response()
                } else {
                    (
                        StatusCode::NOT_FOUND,
                        Json(json!({"error": format!("no question with id {id}")})),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/questions/{id}/answers",
            post(
                move |Path(id): Path<u32>, Json(body): Json<Value>| async move {
                    let index = body["answerIndex"].as_u64().unwrap_or(99) as usize;
                    if id != QUESTION_ID {
                        return (
                            StatusCode::NOT_FOUND,
                            pod_headers(pod),
                            Json(json!({"error": format!("no question with id {id}")})),
                        );
                    }
                    if index > 2 {
                        return (
                            StatusCode::BAD_REQUEST,
                            pod_headers(pod),
                            Json(json!({"error": format!("answerIndex {index} is out of range")})),
                        );
                    }
                    let mut verdict = json!({
                        "questionId": id, "answerIndex": index, "correctAnswerIndex": CORRECT,
                        "correct": index == CORRECT, "timestamp": "2026-11-22T10:00:00.000Z"
                    });
                    if let Some(explanation) = explanation {
                        verdict["explanation"] = explanation.into();
                    }
                    (StatusCode::OK, pod_headers(pod), Json(verdict))
                },
            ),
        )
        .route(
            "/",
            get(move || async move { (pod_headers(pod), format!("quiz pod {pod}\n")) }),
        )
}

pub fn config(quote_url: &str, quiz_url: &str) -> Config {
    let mut config = Config::local("kiada-test", quote_url, quiz_url);
    config.identity.node_name = "node-7".into();
    config.identity.pod_ip = "10.244.2.2".into();
    config.backend_timeout = Duration::from_millis(500);
    config
}

pub async fn start(config: Config) -> Running {
    kiada::build(config).await.expect("kiada starts").spawn()
}

/// kiada over a healthy quote (`quote-a`) and quiz (`quiz-a`).
pub struct Suite {
    pub kiada: Running,
    pub quote: StandIn,
    pub quiz: StandIn,
}

pub async fn healthy() -> Suite {
    let quote = serve(quote("quote-a", "Services balance connections.")).await;
    let quiz = serve(quiz("quiz-a", "Which is right?")).await;
    let kiada = start(config(&format!("{}/quote", quote.url), &quiz.url)).await;
    Suite { kiada, quote, quiz }
}

pub async fn fetch(url: String, accept: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

pub async fn text(url: String) -> String {
    let res = fetch(url, "*/*").await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

pub use testkit::eventually;

/// A whole HTTP/1.1 response read over TLS from `127.0.0.1:port`, with the TLS version used.
/// `root_pem` verifies the server's certificate against exactly that one; `None` accepts any
/// certificate, as `curl -k` does with a self-signed one. (A blocking rustls client: reqwest's
/// TLS features would change reqwest for every crate in the workspace's test build.)
pub async fn https_get(
    port: u16,
    path: &str,
    root_pem: Option<String>,
) -> (String, rustls::ProtocolVersion) {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || https_get_blocking(port, &path, root_pem.as_deref()))
        .await
        .unwrap()
}

/// A TLS client that trusts exactly `root_pem`, or any certificate (as `curl -k`).
pub fn client_config(root_pem: Option<&str>) -> rustls::ClientConfig {
    use std::sync::Arc;

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    match root_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    }
}

fn https_get_blocking(
    port: u16,
    path: &str,
    root_pem: Option<&str>,
) -> (String, rustls::ProtocolVersion) {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use rustls::pki_types::ServerName;

    let config = client_config(root_pem);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    // A peer closing without close_notify after the body is fine here.
    let _ = tls.read_to_string(&mut response);
    let version = tls.conn.protocol_version().expect("handshake done");
    (response, version)
}

#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
