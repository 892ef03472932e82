//! The optional HTTPS / WSS listener. Browsers give the microphone only to pages on https or
//! localhost, so operators on other machines need TLS; a reverse proxy works too, but this
//! keeps a single-machine install to one program.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Why the TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read the TLS certificate {path}: {reason} (expected PEM, e.g. from `openssl req -x509 …` or your CA)"
    )]
    Certificate { path: String, reason: String },
    #[error(
        "cannot read the TLS private key {path}: {reason} (expected a PEM PKCS#8, PKCS#1 or SEC1 key)"
    )]
    Key { path: String, reason: String },
    #[error("the TLS certificate and key do not make a server configuration: {0}")]
    Config(String),
}

/// Loads a PEM certificate chain and private key into a TLS acceptor (HTTP/1.1 only: the
/// WebSocket upgrade needs it).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    crate::keywords::install_tls_provider();
    let cert_err = |reason: String| TlsError::Certificate {
        path: cert.display().to_string(),
        reason,
    };
    let pem = std::fs::read(cert).map_err(|e| cert_err(e.to_string()))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_reader_iter(&mut BufReader::new(pem.as_slice()))
            .collect::<Result<_, _>>()
            .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block found".to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The HTTPS / WSS listener: a TCP listener whose connections start with a TLS handshake.
/// [`serve_on`](super::serve_on) runs the handshakes, each in its connection's task with the
/// header timeout (`server.header_timeout_s`), at most `server.max_tls_handshakes` at once,
/// so a slow or silent client never holds up the others.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        Ok(Self { tcp, acceptor })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }

    pub(crate) fn into_parts(self) -> (TcpListener, TlsAcceptor) {
        (self.tcp, self.acceptor)
    }
}
