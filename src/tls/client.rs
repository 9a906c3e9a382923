//! The client side: rustls settings for the HTTPS upstream connector, and the extra roots
//! the authorization-server client (reqwest) trusts besides the system's.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;

use super::TrustBundle;

/// The upstream's TLS settings: TLS 1.2+, the certificate verified against `ca_file` when
/// one is configured (only those CAs), else against the system's trust store. ALPN is left
/// to the connector, which offers what `upstream.http2_prior_knowledge` allows.
pub fn upstream_tls_config(ca: Option<&TrustBundle>) -> ClientConfig {
    let provider = super::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(super::PROTOCOL_VERSIONS)
        .expect("aws-lc-rs supports TLS 1.2 and 1.3");
    match ca {
        Some(bundle) => builder.with_root_certificates(bundle.roots()).with_no_client_auth(),
        None => match rustls_platform_verifier::Verifier::new(Arc::clone(&provider)) {
            Ok(verifier) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth(),
            // Without a trust store no upstream certificate verifies: every HTTPS request
            // fails with 502, which is safe and shows in the logs.
            Err(e) => {
                tracing::error!(error = %e, "cannot load the system trust store; set upstream.ca_file");
                let verifier =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(rustls::RootCertStore::empty()), provider)
                        .build();
                match verifier {
                    Ok(verifier) => builder
                        .dangerous()
                        .with_custom_certificate_verifier(verifier)
                        .with_no_client_auth(),
                    Err(_) => builder
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth(),
                }
            }
        },
    }
}

/// Adds `roots` to the CAs a reqwest client trusts (the system's stay trusted).
pub fn with_extra_roots(builder: reqwest::ClientBuilder, roots: Option<&TrustBundle>) -> reqwest::ClientBuilder {
    let Some(roots) = roots else { return builder };
    let certificates = roots
        .0
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der.as_ref()).ok());
    builder.tls_certs_merge(certificates)
}
