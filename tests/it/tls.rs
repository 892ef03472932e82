//! The optional HTTPS / WSS listener (browsers give the microphone only to https pages on other
//! machines): a certificate made by openssl, the page over https with curl, a live session over
//! wss with a rustls client, and clear errors for bad certificate files.

use std::process::Command;
use std::sync::Arc;

use crate::support::tls::{make_certificate, start_tls_server};
use crate::support::*;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sori::http::tls::acceptor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_over_https_and_a_session_over_wss() {
    let dir = scratch_dir().join("tls");
    let (cert, key) = make_certificate(&dir);
    let addr = start_tls_server(test_config(), &cert, &key).tls;

    // The page over https, checked against the certificate by curl.
    require_tool("curl", "apt-get install -y curl");
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--cacert"])
        .arg(&cert)
        .arg(format!("https://localhost:{}/", addr.port()))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl over https: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#"id="start""#));
    // Plain http on the TLS port is refused (no handshake), not served.
    let plain = Command::new("curl")
        .args(["--silent", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{}/health", addr.port()))
        .output()
        .expect("run curl");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("ok"));

    // A live session over wss: TLS by rustls trusting only our certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake with the server's certificate");
    let url = format!("wss://localhost:{}/ws?language=en", addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket over TLS");
    let ready = next_json(&mut ws).await.expect("ready");
    assert_eq!(ready["type"], "ready");
    send_pcm(&mut ws, &to_s16le(&jfk_16k()), 32000, 100, false).await;
    let messages = stop_and_collect(&mut ws).await;
    let wer = sori::eval::wer(JFK_REFERENCE, &final_text(&messages));
    assert!(wer <= 0.10, "WER over wss {wer}: {messages:?}");
}

#[test]
fn bad_certificate_files_give_errors_that_name_the_file() {
    let dir = scratch_dir().join("tls-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = make_certificate(&dir.join("good"));

    let missing = dir.join("missing.pem");
    let e = acceptor(&missing, &key)
        .err()
        .expect("missing cert refused");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM").unwrap();
    let e = acceptor(&garbage, &key)
        .err()
        .expect("garbage cert refused");
    assert!(e.to_string().contains("no CERTIFICATE"), "{e}");

    let e = acceptor(&cert, &garbage)
        .err()
        .expect("garbage key refused");
    assert!(e.to_string().contains("private key"), "{e}");

    // A key that does not belong to the certificate.
    let (_, other_key) = make_certificate(&dir.join("other"));
    let e = acceptor(&cert, &other_key)
        .err()
        .expect("mismatched key refused");
    assert!(e.to_string().contains("do not make"), "{e}");
}
