//! rustls configuration for outbound connections (https upstreams and the IdP).
//!
//! Trust: the operating system's roots (what operators extend with their internal CA), plus
//! Mozilla's bundled roots when the OS store is empty (minimal images), plus
//! `server.upstream_ca_file` when set. The crypto provider is always `ring`, named explicitly
//! (STACK A2: never rely on the process default).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject};

/// Errors building TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA bundle {path}: {source}")]
    CaFile {
        path: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("CA bundle {path} holds no usable certificate")]
    EmptyCaFile { path: String },
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The process's crypto provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client configuration for upstreams and the IdP. ALPN is left empty: hyper-rustls sets it
/// from the protocols the connector enables.
pub fn client_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = extra_ca {
        let shown = path.display().to_string();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|source| TlsError::CaFile {
                path: shown.clone(),
                source,
            })?
            .collect::<Result<_, _>>()
            .map_err(|source| TlsError::CaFile {
                path: shown.clone(),
                source,
            })?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError::EmptyCaFile { path: shown });
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
