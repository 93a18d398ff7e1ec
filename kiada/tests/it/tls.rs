//! kiada over HTTPS: a self-signed certificate when none is mounted, the mounted one otherwise.

use std::path::PathBuf;

use crate::support::*;
use kiada::TlsConfig;

#[tokio::test]
async fn without_a_mounted_certificate_https_uses_a_self_signed_one() {
    let s = healthy().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&format!("{}/quote", s.quote.url), &s.quiz.url);
    config.tls = Some(TlsConfig {
        port: 0,
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    });
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
