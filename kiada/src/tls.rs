//! The HTTPS listener's certificate: the mounted `kiada-tls` Secret when there is one, else a
//! self-signed certificate made at start so that `https://localhost:8443` works out of the box.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// HTTPS port (0 picks a free port).
    pub port: u16,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS: {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("TLS: {0}")]
    Config(String),
}

/// Builds the server configuration: TLS 1.3 and 1.2 only, HTTP/2 and HTTP/1.1 offered.
/// `names` go into a self-signed certificate, if one is needed.
pub fn server_config(
    config: &TlsConfig,
    names: &[String],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (certs, key) = match (config.cert.exists(), config.key.exists()) {
        (true, true) => {
            let certs = read_certs(&config.cert)?;
            let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| TlsError::File {
                path: config.key.clone(),
                reason: e.to_string(),
            })?;
            tracing::info!(cert = %config.cert.display(), "serving HTTPS with the mounted certificate");
            (certs, key)
        }
        (false, false) => {
            tracing::warn!(
                cert = %config.cert.display(),
                "no TLS certificate found; serving HTTPS with a self-signed certificate made at start"
            );
            self_signed(names)?
        }
        (cert, _) => {
            let missing = if cert { &config.key } else { &config.cert };
            return Err(TlsError::File {
                path: missing.clone(),
                reason: "missing, while its partner exists: mount both tls.crt and tls.key".into(),
            });
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("certificate and key do not fit: {e}")))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::File {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("holds no PEM certificate".into()));
    }
    Ok(certs)
}

fn self_signed(
    names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let mut names: Vec<String> = names.to_vec();
    names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
    names.dedup();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError::Config(format!("cannot make a self-signed certificate: {e}")))?;
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok((vec![generated.cert.der().clone()], key))
}
