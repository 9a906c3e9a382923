//! One RFC 9728 document: its fields, where it is served (§3.1), and the answer to a
//! request for it.

use std::collections::BTreeSet;

use bytes::Bytes;
use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};

use crate::body::{ProxyBody, full_body};

/// RFC 9728 §3: the well-known suffix; a resource with a path has it inserted before the path.
pub const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

/// Route label, in metrics and the access log, of the answers for `[[resource]]` documents.
pub const RESOURCE_METADATA_ROUTE: &str = "resource-metadata";

/// Metadata documents change only with the config: let clients keep them briefly.
pub const METADATA_CACHE_CONTROL: &str = "public, max-age=300";

/// One RFC 9728 document, served at `well_known_path`.
#[derive(Debug, Clone)]
pub struct ResourceDocument {
    pub resource: String,
    /// Path on scopegate's own listener, e.g. `/.well-known/oauth-protected-resource/mcp`.
    pub well_known_path: String,
    /// `well_known_path` under the resource's origin: what challenges advertise.
    pub metadata_url: String,
    /// The serialized document.
    pub body: Bytes,
}

impl ResourceDocument {
    /// Adds RFC 9728 §2 `dpop_signing_alg_values_supported` and
    /// `dpop_bound_access_tokens_required` to the document (RFC 9449 §5.1 for the names).
    pub fn advertise_dpop(&mut self, algorithms: &[&str], required: bool) {
        if let Ok(serde_json::Value::Object(mut doc)) = serde_json::from_slice(&self.body) {
            doc.insert("dpop_signing_alg_values_supported".into(), algorithms.into());
            doc.insert("dpop_bound_access_tokens_required".into(), required.into());
            self.body = Bytes::from(serde_json::Value::Object(doc).to_string());
        }
    }

    /// The document of `resource` (already checked to parse as `url`), at the location RFC 9728
    /// §3.1 gives it: the well-known suffix inserted between the origin and the path, a
    /// trailing `/` of the path dropped.
    pub fn new(resource: &str, url: &url::Url, body: Bytes) -> ResourceDocument {
        let path = url.path().trim_end_matches('/');
        let well_known_path = format!("{PRM_PATH}{path}");
        ResourceDocument {
            resource: resource.to_string(),
            metadata_url: format!("{}{well_known_path}", url.origin().ascii_serialization()),
            well_known_path,
            body,
        }
    }

    /// The answer to a request for this document: the document to GET, 405 to anything else.
    pub fn response(&self, method: &Method) -> Response<ProxyBody> {
        if method == Method::GET {
            json_response(self.body.clone(), METADATA_CACHE_CONTROL)
        } else {
            method_not_allowed()
        }
    }
}

/// What goes into one RFC 9728 §2 document.
pub struct DocumentFields<'a> {
    pub resource: &'a str,
    /// Issuer identifiers exactly as configured: no trailing slash is added or removed.
    pub authorization_servers: &'a [String],
    pub scopes: &'a BTreeSet<String>,
    pub resource_name: Option<&'a str>,
    pub resource_documentation: Option<&'a str>,
    pub resource_policy_uri: Option<&'a str>,
}

impl DocumentFields<'_> {
    /// The serialized document. Tokens are read from the `Authorization` header only
    /// (DESIGN §3.5), so that is the one bearer method advertised.
    pub fn to_document(&self) -> Bytes {
        let mut doc = serde_json::Map::new();
        doc.insert("resource".into(), self.resource.into());
        doc.insert("authorization_servers".into(), self.authorization_servers.into());
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        doc.insert("scopes_supported".into(), scopes.into());
        doc.insert("bearer_methods_supported".into(), vec!["header"].into());
        for (key, value) in [
            ("resource_name", self.resource_name),
            ("resource_documentation", self.resource_documentation),
            ("resource_policy_uri", self.resource_policy_uri),
        ] {
            if let Some(value) = value {
                doc.insert(key.into(), value.into());
            }
        }
        Bytes::from(serde_json::Value::Object(doc).to_string())
    }
}

/// A public JSON document.
pub fn json_response(body: Bytes, cache_control: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control));
    // Browser-based clients fetch metadata cross-origin; it is public by definition.
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// 405 for a metadata path asked with anything but GET.
pub fn method_not_allowed() -> Response<ProxyBody> {
    let mut response = Response::new(full_body(
        serde_json::json!({"error": "method_not_allowed", "error_description": "metadata is read with GET"})
            .to_string(),
    ));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
