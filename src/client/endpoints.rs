//! Calls to an authorization server's endpoints: registration (RFC 7591), token (RFC 6749
//! §4.1.3, §4.4, §6; RFC 8628 §3.4), device authorization (RFC 8628 §3.1) and revocation
//! (RFC 7009). Each is one bounded POST; answers are parsed here and nowhere else.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::discovery::ServerMetadata;
use super::error::ClientError;

/// Largest answer read from any endpoint.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// RFC 8628 §3.4.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Who this client is at the token endpoint: a public client (RFC 6749 §2.1) sends its id,
/// a confidential one authenticates with its secret (§2.3.1).
#[derive(Clone)]
pub struct ClientIdentity {
    pub client_id: String,
    pub secret: Option<String>,
    /// `client_secret_post` instead of `client_secret_basic`.
    pub post: bool,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// An error answer (RFC 6749 §5.2) or an answer that is not one.
#[derive(Debug)]
pub struct EndpointError {
    pub status: u16,
    pub error: String,
    pub description: Option<String>,
}

impl From<EndpointError> for ClientError {
    fn from(e: EndpointError) -> ClientError {
        if e.error == "invalid_scope" {
            return ClientError::ScopeRefused {
                scope: String::new(),
                detail: e.description.unwrap_or_else(|| "invalid_scope".into()),
            };
        }
        ClientError::TokenRefused {
            status: e.status,
            error: e.error,
            detail: e.description,
        }
    }
}

fn transport(url: &reqwest::Url, e: &reqwest::Error) -> EndpointError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    EndpointError {
        status: 0,
        error: format!("{url}: {what}"),
        description: None,
    }
}

/// Sends `request` and reads at most [`MAX_ANSWER_BYTES`] of its answer as JSON.
async fn send(url: &reqwest::Url, request: reqwest::RequestBuilder) -> Result<(u16, Value), EndpointError> {
    let mut response = request.send().await.map_err(|e| transport(url, &e))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(url, &e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(EndpointError {
                status,
                error: format!("{url}: answer larger than {MAX_ANSWER_BYTES} bytes"),
                description: None,
            });
        }
        body.extend_from_slice(&chunk);
    }
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    if (200..300).contains(&status) {
        return Ok((status, json));
    }
    let text = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_string);
    Err(EndpointError {
        status,
        error: text("error").unwrap_or_else(|| format!("HTTP {status}")),
        description: text("error_description"),
    })
}

/// RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined.
fn basic_credentials(id: &str, secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

/// POSTs `form` to `url` as `client` (its id or its credentials added as the server wants).
async fn post_as(
    http: &reqwest::Client,
    url: &reqwest::Url,
    client: &ClientIdentity,
    form: &[(&str, &str)],
) -> Result<Value, EndpointError> {
    let mut pairs: Vec<(&str, &str)> = form.to_vec();
    let mut request = http.post(url.clone()).header(http::header::ACCEPT, "application/json");
    match (&client.secret, client.post) {
        (Some(secret), false) => {
            request = request.header(
                http::header::AUTHORIZATION,
                basic_credentials(&client.client_id, secret),
            );
        }
        (Some(secret), true) => {
            pairs.push(("client_id", &client.client_id));
            pairs.push(("client_secret", secret));
        }
        (None, _) => pairs.push(("client_id", &client.client_id)),
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let request = request
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body);
    send(url, request).await.map(|(_, json)| json)
}

/// A token-endpoint request; the answer must be a bearer token response.
pub async fn token_request(
    http: &reqwest::Client,
    server: &ServerMetadata,
    client: &ClientIdentity,
    form: &[(&str, &str)],
) -> Result<TokenResponse, EndpointError> {
    let json = post_as(http, &server.token_endpoint, client, form).await?;
    let response: TokenResponse = serde_json::from_value(json).map_err(|e| EndpointError {
        status: 200,
        error: "the token endpoint's answer is not a token response".into(),
        description: Some(e.to_string()),
    })?;
    // RFC 6749 §7.1: this client only knows how to send bearer tokens.
    match response.token_type.as_deref() {
        Some(t) if !t.eq_ignore_ascii_case("bearer") => Err(EndpointError {
            status: 200,
            error: format!("token_type {t} is not Bearer"),
            description: None,
        }),
        _ => Ok(response),
    }
}

/// Registers a public native client for the loopback redirect (RFC 7591 §2, RFC 8252 §8.4);
/// returns its `client_id`.
pub async fn register(
    http: &reqwest::Client,
    server: &ServerMetadata,
    redirect_uri: &str,
    device: bool,
) -> Result<String, ClientError> {
    let Some(endpoint) = &server.registration_endpoint else {
        return Err(ClientError::NoRegistration {
            issuer: server.issuer.clone(),
        });
    };
    let mut grant_types = vec!["authorization_code", "refresh_token"];
    if device {
        grant_types.push(DEVICE_CODE_GRANT);
    }
    let metadata = json!({
        "client_name": "scopegate token",
        "application_type": "native",
        "redirect_uris": [redirect_uri],
        "grant_types": grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    let request = http
        .post(endpoint.clone())
        .header(http::header::ACCEPT, "application/json")
        .json(&metadata);
    let refused = |status: u16, detail: String| ClientError::RegistrationRefused {
        issuer: server.issuer.clone(),
        status,
        detail,
    };
    let (status, json) = send(endpoint, request).await.map_err(|e| {
        let detail = match e.description {
            Some(d) => format!("{}: {d}", e.error),
            None => e.error,
        };
        refused(e.status, detail)
    })?;
    json.get("client_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| refused(status, "the answer has no client_id".into()))
}

/// RFC 7009 §2.1: revokes `token`; a server without the endpoint is an error.
pub async fn revoke(
    http: &reqwest::Client,
    server: &ServerMetadata,
    client: &ClientIdentity,
    token: &str,
    hint: &str,
) -> Result<(), ClientError> {
    let Some(endpoint) = &server.revocation_endpoint else {
        return Err(ClientError::Unsupported {
            issuer: server.issuer.clone(),
            what: "token revocation (RFC 7009)",
            reason: "its metadata has no revocation_endpoint".into(),
        });
    };
    post_as(http, endpoint, client, &[("token", token), ("token_type_hint", hint)])
        .await
        .map(drop)
        .map_err(ClientError::from)
}

/// RFC 8628 §3.2: what the user is asked to do, and what to poll with.
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: u64,
}

/// RFC 8628 §3.1.
pub async fn device_authorization(
    http: &reqwest::Client,
    server: &ServerMetadata,
    client: &ClientIdentity,
    form: &[(&str, &str)],
) -> Result<DeviceAuthorization, ClientError> {
    let Some(endpoint) = &server.device_authorization_endpoint else {
        return Err(ClientError::Unsupported {
            issuer: server.issuer.clone(),
            what: "the device authorization grant (RFC 8628)",
            reason: "its metadata has no device_authorization_endpoint".into(),
        });
    };
    let json = post_as(http, endpoint, client, form).await?;
    let text = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_string);
    let number = |name: &str| json.get(name).and_then(Value::as_u64);
    let missing = |name: &str| ClientError::TokenRefused {
        status: 200,
        error: format!("the device authorization answer has no {name}"),
        detail: None,
    };
    Ok(DeviceAuthorization {
        device_code: text("device_code").ok_or_else(|| missing("device_code"))?,
        user_code: text("user_code").ok_or_else(|| missing("user_code"))?,
        verification_uri: text("verification_uri").ok_or_else(|| missing("verification_uri"))?,
        verification_uri_complete: text("verification_uri_complete"),
        expires_in: number("expires_in").unwrap_or(600),
        // RFC 8628 §3.2: 5 seconds when the server does not say.
        interval: number("interval").unwrap_or(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        // RFC 6749 §2.3.1: "a:b" as a secret must not split the pair.
        assert_eq!(
            basic_credentials("id", "a:b"),
            format!("Basic {}", STANDARD.encode("id:a%3Ab"))
        );
    }
}
