//! kiada over HTTPS: a self-signed certificate when none is mounted, the mounted one otherwise.

use std::path::PathBuf;

use crate::support::*;
use kiada::TlsConfig;

/// HTTPS on a free port with no certificate mounted in `dir`: kiada makes a self-signed one.
fn self_signed(dir: &std::path::Path) -> TlsConfig {
    TlsConfig {
        port: 0,
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    }
}

#[tokio::test]
async fn without_a_mounted_certificate_https_uses_a_self_signed_one() {
    let s = healthy().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    config.tls = Some(self_signed(dir.path()));
    let kiada = start(config).await;
    let port = kiada.tls_addr.expect("an HTTPS listener").port();
    let (page, version) = https_get(port, "/text", None).await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("x-pod-name: kiada-test"), "{page}");
    assert!(page.contains("Services balance connections."), "{page}");
    assert!(
        matches!(
            version,
            rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2
        ),
        "{version:?}"
    );
    assert!(
        page.contains(&format!("https://localhost:{port}/html")),
        "{page}"
    );

    // Plain HTTP keeps working beside it.
    assert!(
        text(format!("{}/text", kiada.url()))
            .await
            .contains("==== POP QUIZ")
    );
}

#[tokio::test]
async fn a_mounted_certificate_is_served_and_verifies() {
    let s = healthy().await;
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = made.cert.pem();
    let (cert, key): (PathBuf, PathBuf) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();

    let mut config = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    config.tls = Some(TlsConfig { port: 0, cert, key });
    let kiada = start(config).await;
    let port = kiada.tls_addr.unwrap().port();
    // Verified against exactly that certificate: proof it is the one served.
    let (response, _) = https_get(port, "/healthz/ready", Some(cert_pem)).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
}

#[tokio::test]
async fn a_certificate_without_its_key_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("tls.crt");
    std::fs::write(&cert, "not even PEM").unwrap();
    let mut config = config("http://127.0.0.1:1/quote", "http://127.0.0.1:1");
    config.tls = Some(TlsConfig {
        port: 0,
        cert,
        key: dir.path().join("tls.key"),
    });
    let err = kiada::build(config)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("tls.key") && err.contains("missing"), "{err}");
}

/// A client that stops reading holds nothing for long over TLS either: HTTP/2 over the HTTPS
/// port (ALPN h2) with no receive window gets its response heads, never a body, and every
/// stream is reset within the stalled-response limit (10 s); `h2load -w 0` over TLS in small.
#[tokio::test]
async fn over_https_http2_responses_nobody_takes_are_reset() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const LIMIT: Duration = Duration::from_secs(10);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config("http://127.0.0.1:1/quote", "http://127.0.0.1:1");
    config.tls = Some(self_signed(dir.path()));
    let kiada = start(config).await;
    let port = kiada.tls_addr.expect("an HTTPS listener").port();
    let mut tls = client_config(None);
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let started = Instant::now();
    let mut held = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..4 {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut send, conn) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, axum::body::Bytes>(stream)
            .await
            .unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        for _ in 0..32 {
            send = send.ready().await.unwrap();
            let request =
                axum::http::Request::get(format!("https://localhost:{port}/static/style.css"))
                    .body(())
                    .unwrap();
            let (response, _) = send.send_request(request, true).unwrap();
            held.push(response.await.unwrap());
        }
        connections.push((send, conn));
    }
    for response in held {
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let data = tokio::time::timeout(LIMIT + Duration::from_secs(10), body.data())
            .await
            .expect("the stream is reset, not left waiting");
        let err = data.expect("a reset, not an end").unwrap_err();
        assert_eq!(err.reason(), Some(h2::Reason::CANCEL), "{err}");
    }
    let after = started.elapsed();
    assert!(
        after >= LIMIT - Duration::from_secs(1),
        "reset after {after:?}"
    );
    drop(connections);
}
