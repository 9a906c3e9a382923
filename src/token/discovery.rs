//! One discovery per issuer (RFC 8414, OpenID Connect Discovery), shared by the issuer's key
//! set and its introspection client, so an issuer that does both asks for its metadata once.
//!
//! The document is fetched on first need and kept for the life of the issuer's settings
//! (a reload with changed settings starts a new one). Concurrent first needs share one
//! fetch; a failed fetch is not kept, so the next need retries (the key refresh loop retries
//! with backoff until the issuer is ready).

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::http_client::{FetchError, IssuerMetadata, discover, http_client};
use crate::token::config::IssuerConfig;

/// An issuer's metadata, discovered at most once.
pub struct IssuerDiscovery {
    issuer: String,
    client: reqwest::Client,
    max_bytes: usize,
    metadata: OnceCell<IssuerMetadata>,
}

impl IssuerDiscovery {
    pub fn new(config: &IssuerConfig) -> Arc<IssuerDiscovery> {
        Arc::new(IssuerDiscovery {
            issuer: config.issuer.clone(),
            client: http_client(config.fetch_timeout, config.extra_roots.as_ref()),
            max_bytes: config.max_response_bytes,
            metadata: OnceCell::new(),
        })
    }

    /// The client for this issuer's bounded GETs (discovery and JWKS).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The issuer's metadata, fetching it unless an earlier call did.
    ///
    /// # Errors
    /// The fetch failed or the document is unacceptable (an outage, never a token verdict).
    pub async fn metadata(&self) -> Result<&IssuerMetadata, FetchError> {
        self.metadata
            .get_or_try_init(|| discover(&self.client, &self.issuer, self.max_bytes))
            .await
    }
}
