//! Metadata answered by scopegate itself on the data listener: RFC 9728 protected-resource
//! metadata and, when enabled, a mirror of the authorization server's RFC 8414 metadata for
//! MCP clients that still look for it at the MCP server's origin (revision 2025-03-26).
//!
//! Documents are built from configuration only: the request's `Host` never shapes them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Response};

use super::config::{McpConfig, MirrorConfig};
use crate::body::ProxyBody;
use crate::resource::{METADATA_CACHE_CONTROL, json_response, method_not_allowed};
use crate::token::error::{AuthError, UnavailableReason};

/// RFC 8414 §3: where older MCP clients look for the authorization server's metadata.
pub use crate::http_client::AS_METADATA_PATH;
/// Route label of these answers in metrics and the access log.
pub const METADATA_ROUTE: &str = "mcp-metadata";

/// How long a mirrored authorization-server document is reused (bounded by its max-age).
const MIRROR_TTL: Duration = Duration::from_secs(300);

struct Mirrored {
    body: Bytes,
    fetched: Instant,
    ttl: Duration,
}

/// Runtime state of the MCP features: the mirror's client and cache.
pub struct McpRuntime {
    client: Option<reqwest::Client>,
    mirrored: tokio::sync::Mutex<Option<Mirrored>>,
}

impl McpRuntime {
    pub fn new(config: &McpConfig) -> McpRuntime {
        McpRuntime {
            client: config
                .mirror
                .as_ref()
                .map(|m| crate::http_client::http_client(m.fetch_timeout, m.extra_roots.as_ref())),
            mirrored: tokio::sync::Mutex::new(None),
        }
    }

    /// Answers the metadata paths; `None` for every other request (and always when no
    /// `[mcp]` table is configured).
    pub async fn well_known(
        &self,
        config: &McpConfig,
        method: &Method,
        path: &str,
    ) -> Option<Result<Response<ProxyBody>, AuthError>> {
        if !config.is_enabled() || !path.starts_with("/.well-known/") {
            return None;
        }
        let answer = if let Some(doc) = config.document_at(path) {
            Ok(json_response(doc.body.clone(), METADATA_CACHE_CONTROL))
        } else if let (true, Some(mirror), Some(client)) = (path == AS_METADATA_PATH, &config.mirror, &self.client) {
            if method != Method::GET {
                return Some(Ok(method_not_allowed()));
            }
            self.mirror(client, mirror).await
        } else {
            return None;
        };
        Some(if method == Method::GET {
            answer
        } else {
            Ok(method_not_allowed())
        })
    }

    async fn mirror(&self, client: &reqwest::Client, config: &MirrorConfig) -> Result<Response<ProxyBody>, AuthError> {
        // One fetch at a time: concurrent misses wait for it instead of multiplying it.
        let mut cached = self.mirrored.lock().await;
        if let Some(hit) = cached.as_ref().filter(|m| m.fetched.elapsed() < m.ttl) {
            return Ok(json_response(hit.body.clone(), METADATA_CACHE_CONTROL));
        }
        match fetch_as_metadata(client, config).await {
            Ok((body, max_age)) => {
                let ttl = max_age.map_or(MIRROR_TTL, |age| age.clamp(Duration::from_secs(10), MIRROR_TTL));
                *cached = Some(Mirrored {
                    body: body.clone(),
                    fetched: Instant::now(),
                    ttl,
                });
                Ok(json_response(body, METADATA_CACHE_CONTROL))
            }
            // A stale copy beats no copy through an outage.
            Err(e) => match cached.as_ref() {
                Some(stale) => {
                    tracing::warn!(error = %e, "authorization-server metadata refresh failed; serving the cached copy");
                    Ok(json_response(stale.body.clone(), "no-cache"))
                }
                None => {
                    tracing::warn!(error = %e, "authorization-server metadata unavailable for the mirror");
                    Err(AuthError::Unavailable(UnavailableReason::AsMetadataUnavailable))
                }
            },
        }
    }
}

/// RFC 8414 §3.1 (path-inserted) then OpenID Connect discovery, bounded; the document must
/// name the configured issuer exactly (RFC 8414 §3.3).
async fn fetch_as_metadata(
    client: &reqwest::Client,
    config: &MirrorConfig,
) -> Result<(Bytes, Option<Duration>), String> {
    let (fetched, _) = crate::http_client::fetch_metadata_document(client, &config.issuer, config.max_response_bytes)
        .await
        .map_err(|e| e.to_string())?;
    Ok((Bytes::from(fetched.body), fetched.max_age))
}
