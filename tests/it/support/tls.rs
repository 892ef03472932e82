//! A sori server behind TLS for the tests that need `https://` / `wss://`: a certificate made
//! by the real openssl CLI, and one server state served on a plain and a TLS listener at once,
//! as `sori serve --tls-cert … --tls-key …` does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use sori::config::Config;
use sori::harness::LocalServer;
use sori::http::serve_on;
use sori::http::tls::{TlsListener, acceptor};

use super::require_tool;

/// A self-signed certificate for 127.0.0.1 / localhost in `dir`: `(cert.pem, key.pem)`.
pub fn make_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    require_tool("openssl", "apt-get install -y openssl");
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A server certificate, not a CA (rustls refuses a CA as the server's own certificate).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

/// Where a server with a TLS listener listens.
#[derive(Debug, Clone, Copy)]
pub struct TlsServer {
    /// Plain http / ws.
    pub plain: SocketAddr,
    /// https / wss with the certificate given.
    pub tls: SocketAddr,
}

/// Starts a server with `config` (loading the Whisper model) that serves the same state on
/// 127.0.0.1:0 in plain text and on another port over TLS; it serves until the test binary
/// exits.
pub fn start_tls_server(config: Config, cert: &Path, key: &Path) -> TlsServer {
    let acceptor = acceptor(cert, key).expect("certificate loads");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = LocalServer::start(config).await.expect("the server starts");
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let tls = tcp.local_addr().unwrap();
            let listener = TlsListener::new(tcp, acceptor).unwrap();
            tx.send(TlsServer {
                plain: server.addr,
                tls,
            })
            .unwrap();
            serve_on(listener, server.state.clone(), std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv().expect("server started")
}
