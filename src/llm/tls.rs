//! The process-wide TLS provider for `https://` endpoints.

/// reqwest is built without a default TLS backend (the default, aws-lc, needs a long C
/// build); `https://` endpoints use rustls with *ring*, installed once per process.
pub fn install_tls_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
