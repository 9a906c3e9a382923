//! Bounded HTTP calls to an authorization server: the one client shape (no redirects, a
//! timeout on every call), size-capped GETs, and RFC 8414 / OpenID Connect discovery.
//!
//! A leaf: nothing here knows about tokens, routes or configuration types (only the CA
//! bundles of [`crate::tls`]), so the token layer, the MCP metadata mirror and
//! `check --online` share it without depending on each other.

use std::time::Duration;

use crate::tls::TrustBundle;
use crate::tls::client::with_extra_roots;

/// Why a fetch failed; each is an outage, never a verdict on a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Transport(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("response is not the expected JSON: {0}")]
    Invalid(String),
}

/// A fetched body with the freshness its server asked for.
pub struct Fetched {
    pub body: Vec<u8>,
    /// `Cache-Control: max-age` of the response, if any.
    pub max_age: Option<Duration>,
}

/// The one HTTP client for authorization-server calls: rustls, no redirects (a redirect
/// could move key material to another origin), a timeout on every call. It trusts the
/// system's CAs and `extra_roots` (an issuer's `ca_file`).
pub fn http_client(timeout: Duration, extra_roots: Option<&TrustBundle>) -> reqwest::Client {
    http_client_with_connect_timeout(timeout, timeout, extra_roots)
}

/// [`http_client`] with a connect timeout of its own (introspection sets both).
pub fn http_client_with_connect_timeout(
    timeout: Duration,
    connect_timeout: Duration,
    extra_roots: Option<&TrustBundle>,
) -> reqwest::Client {
    with_extra_roots(reqwest::Client::builder(), extra_roots)
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scopegate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// GETs `url` and reads at most `max_bytes` of body.
pub async fn get_bounded(
    client: &reqwest::Client,
    url: &reqwest::Url,
    max_bytes: usize,
) -> Result<Fetched, FetchError> {
    let mut response = client
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::Transport(without_url(&e)))?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    if response.content_length().is_some_and(|len| len > max_bytes as u64) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let max_age = response
        .headers()
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(parse_max_age);
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Transport(without_url(&e)))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { body, max_age })
}

fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body read failed"
    } else {
        "request failed"
    };
    kind.to_string()
}

/// `no-store`/`no-cache` mean "refresh as early as allowed"; `max-age=N` is taken as is.
fn parse_max_age(value: &str) -> Option<Duration> {
    value.split(',').map(str::trim).find_map(|directive| {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        let (name, seconds) = directive.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().trim_matches('"').parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

/// The endpoints discovery found for an issuer.
#[derive(Debug, Clone)]
pub struct IssuerMetadata {
    pub jwks_uri: Option<reqwest::Url>,
    pub introspection_endpoint: Option<reqwest::Url>,
}

/// RFC 8414 §3.1 path-inserted metadata URL, then OpenID Connect Discovery 1.0 §4's
/// appended form. The document's `issuer` must equal the configured one exactly.
pub async fn discover(client: &reqwest::Client, issuer: &str, max_bytes: usize) -> Result<IssuerMetadata, FetchError> {
    let (_, doc) = fetch_metadata_document(client, issuer, max_bytes).await?;
    endpoints(&doc)
}

/// Fetches the first metadata document the issuer serves (RFC 8414 §3.1, then OpenID
/// Connect Discovery 1.0 §4) and checks that it names `issuer` exactly (RFC 8414 §3.3).
/// Returns the response as fetched together with its parsed JSON.
pub async fn fetch_metadata_document(
    client: &reqwest::Client,
    issuer: &str,
    max_bytes: usize,
) -> Result<(Fetched, serde_json::Value), FetchError> {
    let base = reqwest::Url::parse(issuer).map_err(|e| FetchError::Invalid(e.to_string()))?;
    let path = base.path().trim_end_matches('/');
    let mut rfc8414 = base.clone();
    rfc8414.set_path(&format!("{AS_METADATA_PATH}{path}"));
    let mut oidc = base.clone();
    oidc.set_path(&format!("{path}/.well-known/openid-configuration"));
    let mut last_error = FetchError::Invalid("no discovery document".into());
    for url in [rfc8414, oidc] {
        match get_bounded(client, &url, max_bytes).await {
            Ok(fetched) => {
                let doc = parse_metadata(&fetched.body, issuer)?;
                return Ok((fetched, doc));
            }
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// The RFC 8414 §3 well-known path.
pub const AS_METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

fn parse_metadata(body: &[u8], issuer: &str) -> Result<serde_json::Value, FetchError> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| FetchError::Invalid(e.to_string()))?;
    if doc.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
        return Err(FetchError::Invalid(
            "the metadata's issuer differs from the configured issuer (RFC 8414 §3.3)".into(),
        ));
    }
    Ok(doc)
}

/// The endpoints scopegate uses, each an acceptable remote URL when present.
fn endpoints(doc: &serde_json::Value) -> Result<IssuerMetadata, FetchError> {
    let endpoint = |name: &str| -> Result<Option<reqwest::Url>, FetchError> {
        match doc.get(name).and_then(|v| v.as_str()) {
            None => Ok(None),
            Some(text) => match reqwest::Url::parse(text) {
                Ok(url) if is_acceptable_remote_url(&url) => Ok(Some(url)),
                _ => Err(FetchError::Invalid(format!("{name} is not an https URL"))),
            },
        }
    };
    Ok(IssuerMetadata {
        jwks_uri: endpoint("jwks_uri")?,
        introspection_endpoint: endpoint("introspection_endpoint")?,
    })
}

/// `https`, or `http` to a loopback host (development and tests only).
pub fn is_acceptable_remote_url(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Whether a response declares a JSON body (`application/json` or a `+json` type).
pub fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            let media = media.trim().to_ascii_lowercase();
            media == "application/json" || media.ends_with("+json")
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn max_age() {
        assert_eq!(parse_max_age("public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("private"), None);
    }

    #[test]
    fn metadata_issuer_must_match_exactly() {
        let doc = br#"{"issuer":"https://as.example/","jwks_uri":"https://as.example/jwks"}"#;
        assert!(parse_metadata(doc, "https://as.example").is_err());
        let parsed = parse_metadata(doc, "https://as.example/").unwrap();
        assert!(endpoints(&parsed).unwrap().jwks_uri.is_some());
    }
}
