//! From what a user knows to an authorization server, as an MCP client finds it: request the
//! protected URL → 401 → `resource_metadata` in the challenge (or the RFC 9728 §3.1
//! well-known locations) → the protected-resource document → its authorization server's
//! metadata (RFC 8414, then OpenID Connect discovery). A URL that answers no challenge is
//! taken as an issuer itself.

use reqwest::Url;
use serde_json::Value;

use super::challenge::BearerChallenge;
use super::error::ClientError;
use crate::http_client::{FetchError, fetch_metadata_document, get_bounded, is_acceptable_remote_url};

/// Largest metadata document read.
const MAX_METADATA_BYTES: usize = 512 * 1024;
/// RFC 9728 §3: the protected-resource metadata's well-known suffix.
const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

/// The parts of an authorization server's metadata (RFC 8414 §2) a client uses.
#[derive(Debug, Clone)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: Option<Url>,
    pub token_endpoint: Url,
    pub registration_endpoint: Option<Url>,
    pub revocation_endpoint: Option<Url>,
    pub device_authorization_endpoint: Option<Url>,
    pub scopes_supported: Vec<String>,
    pub grant_types_supported: Option<Vec<String>>,
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9207 §3: the server promises an `iss` parameter in every authorization response.
    pub iss_parameter_supported: bool,
}

impl ServerMetadata {
    /// Whether the metadata lists `grant` (RFC 8414 §2: absent means code and implicit).
    pub fn offers_grant(&self, grant: &str) -> bool {
        match &self.grant_types_supported {
            Some(grants) => grants.iter().any(|g| g == grant),
            None => matches!(grant, "authorization_code" | "refresh_token"),
        }
    }

    /// The client authentication to use with a secret: `client_secret_basic` unless the
    /// server lists only `client_secret_post` (RFC 8414 §2: absent means basic).
    pub fn prefers_post(&self) -> bool {
        self.token_endpoint_auth_methods_supported
            .as_ref()
            .is_some_and(|methods| {
                !methods.iter().any(|m| m == "client_secret_basic") && methods.iter().any(|m| m == "client_secret_post")
            })
    }
}

/// Where a token for a URL comes from, and what to ask for.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: ServerMetadata,
    /// RFC 8707 resource indicator: the protected resource's identifier, when known.
    pub resource: Option<String>,
    /// Scopes the challenge or the metadata name (used when the user names none).
    pub suggested_scopes: Vec<String>,
}

/// Finds the authorization server for `url`: a protected URL or an issuer. `issuer` picks
/// one of several servers a resource lists.
pub async fn discover(client: &reqwest::Client, url: &str, issuer: Option<&str>) -> Result<Target, ClientError> {
    let parsed = Url::parse(url).map_err(|e| ClientError::Usage(format!("{url} is not a URL: {e}")))?;
    // A bearer token is a password for its lifetime (RFC 6750 §5.3): never in clear text
    // beyond this machine.
    if !is_acceptable_remote_url(&parsed) {
        return Err(ClientError::Usage(format!(
            "{url}: a token is only sent over https (or plain http to a loopback address)"
        )));
    }
    let response = client
        .get(parsed.clone())
        .send()
        .await
        .map_err(|e| unreachable(url, &e))?;
    let status = response.status().as_u16();
    let challenge = BearerChallenge::from_headers(response.headers());
    drop(response);
    match challenge {
        Some(challenge) if status == 401 || status == 403 => protected(client, &parsed, &challenge, issuer).await,
        _ => match server_metadata(client, url).await {
            Ok(server) => Ok(Target {
                suggested_scopes: Vec::new(),
                server,
                resource: None,
            }),
            Err(e) => Err(ClientError::NoMetadata {
                url: url.to_string(),
                status,
                detail: e.to_string(),
            }),
        },
    }
}

fn unreachable(url: &str, e: &reqwest::Error) -> ClientError {
    let reason = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection refused or unreachable".to_string()
    } else {
        format!("request failed: {e}")
    };
    ClientError::Unreachable {
        url: url.to_string(),
        reason,
    }
}

async fn protected(
    client: &reqwest::Client,
    url: &Url,
    challenge: &BearerChallenge,
    issuer: Option<&str>,
) -> Result<Target, ClientError> {
    let document = match challenge.resource_metadata() {
        Some(named) => named_document(client, url, named).await,
        None => well_known_document(client, url).await,
    };
    let (prm_url, doc, resource) = match (document, issuer) {
        (Ok(found), _) => found,
        // A resource without RFC 9728 metadata (a plain API behind scopegate): the issuer the
        // user names, and the resource they name, if any.
        (Err(_), Some(issuer)) => {
            return Ok(Target {
                server: server_metadata(client, issuer).await?,
                resource: None,
                suggested_scopes: challenge.scopes(),
            });
        }
        (Err(e), None) => return Err(e),
    };
    let bad = |reason: String| ClientError::BadResourceMetadata {
        url: prm_url.clone(),
        reason,
    };
    let servers: Vec<&str> = doc
        .get("authorization_servers")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let chosen = match (issuer, servers.as_slice()) {
        (_, []) => return Err(bad("it lists no authorization_servers".into())),
        (Some(wanted), listed) if listed.contains(&wanted) => wanted,
        (Some(wanted), listed) => {
            return Err(ClientError::Usage(format!(
                "--issuer {wanted} is not among the resource's authorization servers: {}",
                listed.join(", ")
            )));
        }
        (None, [only]) => only,
        (None, [first, ..]) => {
            tracing::warn!(
                "the resource lists several authorization servers; using {first} (pick another with --issuer)"
            );
            first
        }
    };
    let server = server_metadata(client, chosen).await?;
    let mut suggested = challenge.scopes();
    if suggested.is_empty() {
        suggested = strings(&doc, "scopes_supported").unwrap_or_default();
    }
    Ok(Target {
        server,
        resource: Some(resource),
        suggested_scopes: suggested,
    })
}

/// The document a challenge names. Its `resource` must contain the URL asked for (same
/// origin, a path prefix at a segment boundary), so a token for one resource is never
/// fetched to be sent to another (RFC 9728 §7.3, as the MCP SDKs check).
async fn named_document(
    client: &reqwest::Client,
    url: &Url,
    named: &str,
) -> Result<(String, Value, String), ClientError> {
    let doc = fetch_json(client, named)
        .await
        .map_err(|e| no_document(named, &e.to_string()))?;
    let resource = resource_of(named, &doc)?;
    let covers = Url::parse(&resource).is_ok_and(|r| {
        let prefix = r.path().trim_end_matches('/');
        r.origin() == url.origin()
            && (url.path() == prefix || url.path().starts_with(&format!("{prefix}/")) || prefix.is_empty())
    });
    if !covers {
        return Err(ClientError::BadResourceMetadata {
            url: named.to_string(),
            reason: format!(
                "it describes {resource}, which does not contain {url}; pass --issuer to name the authorization server"
            ),
        });
    }
    Ok((named.to_string(), doc, resource))
}

/// RFC 9728 §3.1's locations; a document found there must name exactly the resource its
/// location was formed from (§3.3).
async fn well_known_document(client: &reqwest::Client, url: &Url) -> Result<(String, Value, String), ClientError> {
    let mut tried = Vec::new();
    for (location, identifier) in well_known_locations(url) {
        match fetch_json(client, &location).await {
            Ok(doc) => {
                let resource = resource_of(&location, &doc)?;
                if resource.trim_end_matches('/') == identifier.trim_end_matches('/') {
                    return Ok((location, doc, resource));
                }
                tried.push(format!("{location} describes {resource}, not {identifier}"));
            }
            Err(e) => tried.push(format!("{location}: {e}")),
        }
    }
    Err(no_document(
        url.as_ref(),
        &format!("{}; pass --issuer to name the authorization server", tried.join("; ")),
    ))
}

fn no_document(url: &str, reason: &str) -> ClientError {
    ClientError::BadResourceMetadata {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

fn resource_of(url: &str, doc: &Value) -> Result<String, ClientError> {
    doc.get("resource")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| no_document(url, "no \"resource\" (RFC 9728 §2)"))
}

/// RFC 9728 §3.1: the path-inserted form, then the origin's root document, each with the
/// resource identifier it stands for.
fn well_known_locations(url: &Url) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let path = url.path().trim_end_matches('/');
    let mut at = url.clone();
    at.set_query(None);
    at.set_fragment(None);
    let origin = url.origin().ascii_serialization();
    if !path.is_empty() {
        at.set_path(&format!("{PRM_PATH}{path}"));
        out.push((at.to_string(), format!("{origin}{path}")));
    }
    at.set_path(PRM_PATH);
    out.push((at.to_string(), origin));
    out
}

async fn fetch_json(client: &reqwest::Client, url: &str) -> Result<Value, FetchError> {
    let parsed = Url::parse(url).map_err(|e| FetchError::Invalid(e.to_string()))?;
    let fetched = get_bounded(client, &parsed, MAX_METADATA_BYTES).await?;
    serde_json::from_slice(&fetched.body).map_err(|e| FetchError::Invalid(e.to_string()))
}

fn strings(doc: &Value, name: &str) -> Option<Vec<String>> {
    doc.get(name)
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// The authorization server's metadata (RFC 8414 §3.1, then OpenID Connect Discovery 1.0
/// §4); its `issuer` must equal `issuer` exactly (RFC 8414 §3.3). A trailing `/` the user
/// typed is forgiven once.
pub async fn server_metadata(client: &reqwest::Client, issuer: &str) -> Result<ServerMetadata, ClientError> {
    let mut tries = vec![issuer];
    let trimmed = issuer.trim_end_matches('/');
    if trimmed != issuer {
        tries.push(trimmed);
    }
    let mut last = None;
    for candidate in tries {
        match fetch_metadata_document(client, candidate, MAX_METADATA_BYTES).await {
            Ok((_, doc)) => return parse_server_metadata(candidate, &doc),
            Err(e) => last = Some(e),
        }
    }
    Err(ClientError::BadServerMetadata {
        issuer: issuer.to_string(),
        reason: last.map(|e| e.to_string()).unwrap_or_default(),
    })
}

fn parse_server_metadata(issuer: &str, doc: &Value) -> Result<ServerMetadata, ClientError> {
    let bad = |reason: String| ClientError::BadServerMetadata {
        issuer: issuer.to_string(),
        reason,
    };
    let endpoint = |name: &str| -> Result<Option<Url>, ClientError> {
        match doc.get(name).and_then(Value::as_str) {
            None => Ok(None),
            Some(text) => match Url::parse(text) {
                Ok(url) if is_acceptable_remote_url(&url) => Ok(Some(url)),
                _ => Err(bad(format!("{name} {text:?} is not an https (or loopback http) URL"))),
            },
        }
    };
    let token_endpoint = endpoint("token_endpoint")?.ok_or_else(|| bad("it has no token_endpoint".into()))?;
    Ok(ServerMetadata {
        issuer: issuer.to_string(),
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint,
        registration_endpoint: endpoint("registration_endpoint")?,
        revocation_endpoint: endpoint("revocation_endpoint")?,
        device_authorization_endpoint: endpoint("device_authorization_endpoint")?,
        scopes_supported: strings(doc, "scopes_supported").unwrap_or_default(),
        grant_types_supported: strings(doc, "grant_types_supported"),
        token_endpoint_auth_methods_supported: strings(doc, "token_endpoint_auth_methods_supported"),
        code_challenge_methods_supported: strings(doc, "code_challenge_methods_supported"),
        iss_parameter_supported: doc
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn well_known_locations_follow_rfc9728() {
        let url = Url::parse("https://api.example/mcp/?x=1").unwrap();
        let locations = well_known_locations(&url);
        assert_eq!(
            locations[0],
            (
                "https://api.example/.well-known/oauth-protected-resource/mcp".to_string(),
                "https://api.example/mcp".to_string()
            )
        );
        assert_eq!(
            locations[1],
            (
                "https://api.example/.well-known/oauth-protected-resource".to_string(),
                "https://api.example".to_string()
            )
        );
    }

    #[test]
    fn metadata_needs_a_safe_token_endpoint() {
        let doc = serde_json::json!({"issuer": "https://as.example", "token_endpoint": "http://as.example/token"});
        assert!(parse_server_metadata("https://as.example", &doc).is_err());
        let doc = serde_json::json!({"issuer": "https://as.example", "token_endpoint": "https://as.example/token"});
        let m = parse_server_metadata("https://as.example", &doc).unwrap();
        assert!(m.offers_grant("authorization_code") && !m.offers_grant("client_credentials"));
        assert!(!m.prefers_post());
    }
}
