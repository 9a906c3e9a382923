//! Tool-level policy for MCP routes: which JSON-RPC calls a request carries (from the
//! `Mcp-Method`/`Mcp-Name` headers and the body, which must agree), and which scopes the
//! configured `[[route.mcp_rule]]`s demand for them. No I/O.

use std::collections::BTreeSet;

use base64::Engine;
use http::HeaderMap;
use serde::Deserialize;

use super::uri;
use crate::policy::scopes::Scope;

/// `Mcp-Method`: the JSON-RPC method, sent by clients of the newest revisions.
pub const MCP_METHOD: &str = "mcp-method";
/// `Mcp-Name`: the tool or prompt name, or the resource URI, of a name-bearing method.
pub const MCP_NAME: &str = "mcp-name";

/// One `[[route.mcp_rule]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMcpRule {
    /// JSON-RPC method glob, e.g. `"tools/call"` or `"resources/*"`.
    pub method: String,
    /// Tool/prompt name or resource URI glob; absent: any (or no) name.
    #[serde(default)]
    pub name: Option<String>,
    /// All of these scopes are needed by a matching call.
    pub scopes: Vec<String>,
}

/// A pattern where `*` matches any run of characters (including none); everything else
/// is literal and case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(text: &str) -> Glob {
        Glob(text.to_string())
    }

    pub fn matches(&self, text: &str) -> bool {
        let pattern = self.0.as_bytes();
        let text = text.as_bytes();
        let (mut p, mut t) = (0, 0);
        // Position of the last `*` seen and the text position it is currently matched up to.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            if p < pattern.len() && pattern[p] == b'*' {
                star = Some((p, t));
                p += 1;
            } else if p < pattern.len() && pattern[p] == text[t] {
                p += 1;
                t += 1;
            } else if let Some((sp, st)) = star {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        pattern[p..].iter().all(|&b| b == b'*')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A compiled rule: calls matching `method` (and `name`, when given) need `scopes`.
#[derive(Debug, Clone)]
pub struct McpRule {
    pub method: Glob,
    pub name: Option<Glob>,
    pub scopes: Vec<Scope>,
}

impl McpRule {
    fn applies_to(&self, call: &Call) -> bool {
        self.method.matches(&call.method)
            && match (&self.name, &call.name) {
                (None, _) => true,
                (Some(glob), Some(name)) => glob.matches(name),
                (Some(_), None) => false,
            }
    }
}

/// One JSON-RPC request or notification found in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub name: Option<String>,
}

/// Why a body cannot be let through (each a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectError {
    /// Not JSON, or not JSON-RPC messages.
    InvalidJsonRpc,
    /// `Mcp-Method`/`Mcp-Name` disagree with the body (or are repeated or unreadable).
    HeaderMismatch,
    /// A resource URI that cannot be compared safely ([`uri`](super::uri)).
    UriNotNormal,
}

impl InspectError {
    pub fn code(self) -> &'static str {
        match self {
            InspectError::InvalidJsonRpc => "mcp_invalid_jsonrpc",
            InspectError::HeaderMismatch => "mcp_header_mismatch",
            InspectError::UriNotNormal => "mcp_uri_not_normal",
        }
    }
}

/// Why a body on a route with tool rules is not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectionError {
    /// A body on a method other than POST: JSON-RPC travels in POST bodies, and a body on
    /// another method could carry a call the rules never saw (400).
    BodyNotAllowed,
    /// Larger than `mcp.max_body_bytes` (413).
    TooLarge,
    /// Not received within `mcp.body_read_timeout` (400).
    ReadTimeout,
    /// The body ended in an error (400).
    ReadFailed,
    /// A `Content-Encoding` other than `identity` (415): the rules would judge bytes the
    /// upstream decodes into something else.
    Encoded,
    /// Not JSON-RPC, or at odds with its headers (400).
    Invalid(InspectError),
    /// Forward-auth: the original request has a body that must be read, and the ingress
    /// did not send it (400).
    NotSent,
}

impl InspectionError {
    /// Stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            InspectionError::BodyNotAllowed => "mcp_body_not_allowed",
            InspectionError::TooLarge => "payload_too_large",
            InspectionError::ReadTimeout => "body_read_timeout",
            InspectionError::ReadFailed => "body_read_failed",
            InspectionError::Encoded => "mcp_body_encoded",
            InspectionError::Invalid(e) => e.code(),
            InspectionError::NotSent => "body_not_sent",
        }
    }
}

impl From<InspectError> for InspectionError {
    fn from(error: InspectError) -> InspectionError {
        InspectionError::Invalid(error)
    }
}

/// The methods whose target is a resource URI, named by `params.uri`.
pub const URI_METHODS: &[&str] = &["resources/read", "resources/subscribe", "resources/unsubscribe"];

/// The params key naming the target of a name-bearing method.
fn name_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        m if URI_METHODS.contains(&m) => Some("uri"),
        _ => None,
    }
}

/// The name rules compare: a resource URI in normal form, any other name as it is.
fn comparable_name(method: &str, name: String) -> Result<String, InspectError> {
    if name_key(method) == Some("uri") {
        uri::normalize(&name).map_err(|_| InspectError::UriNotNormal)
    } else {
        Ok(name)
    }
}

fn call_of(message: &serde_json::Value) -> Result<Option<Call>, InspectError> {
    let object = message.as_object().ok_or(InspectError::InvalidJsonRpc)?;
    let Some(method) = object.get("method") else {
        // A response to a server-initiated request: no method, nothing to authorize.
        return if object.contains_key("result") || object.contains_key("error") {
            Ok(None)
        } else {
            Err(InspectError::InvalidJsonRpc)
        };
    };
    let method = method.as_str().ok_or(InspectError::InvalidJsonRpc)?.to_string();
    let name = match name_key(&method) {
        Some(key) => Some(comparable_name(
            &method,
            object
                .get("params")
                .and_then(|p| p.get(key))
                .and_then(|v| v.as_str())
                .ok_or(InspectError::InvalidJsonRpc)?
                .to_string(),
        )?),
        None => None,
    };
    Ok(Some(Call { method, name }))
}

/// JSON-RPC member names whose spelling decides what a message does.
const SIGNIFICANT_KEYS: &[&str] = &["jsonrpc", "id", "method", "params", "name", "uri", "arguments"];

/// Folds a key the way the most lenient JSON decoders match struct fields (Go's
/// `encoding/json` is case-insensitive with Unicode simple folding, so `ſ` matches `s`).
fn fold(key: &str) -> String {
    key.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ſ' { 's' } else { c })
        .collect()
}

/// Parses JSON strictly: a duplicate member name anywhere, or — in a message or its
/// `params`, the objects scopegate reads — a member that differs from a JSON-RPC name only
/// by case, is an error. Otherwise scopegate and the upstream could read different calls
/// from the same bytes (`{"name":"list","Name":"delete"}`). `depth` counts enclosing objects.
#[derive(Clone, Copy)]
struct StrictVisitor {
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value without duplicate or ambiguous member names")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, serde_json::Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom("duplicate member name"));
            }
            let folded = fold(&key);
            if self.depth <= 1 && SIGNIFICANT_KEYS.iter().any(|k| *k == folded && *k != key) {
                return Err(serde::de::Error::custom(
                    "member name differs from a JSON-RPC name only by case",
                ));
            }
            let value = map.next_value_seed(StrictVisitor { depth: self.depth + 1 })?;
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// Every call in a body: one message or a batch (an array, which must not be empty).
pub fn calls_in_body(body: &[u8]) -> Result<Vec<Call>, InspectError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde::de::DeserializeSeed::deserialize(StrictVisitor { depth: 0 }, &mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|_| InspectError::InvalidJsonRpc)?;
    let (messages, batch) = match &value {
        serde_json::Value::Array(items) if items.is_empty() => return Err(InspectError::InvalidJsonRpc),
        serde_json::Value::Array(items) => (items.iter().collect::<Vec<_>>(), true),
        other => (vec![other], false),
    };
    let mut calls = Vec::new();
    for message in messages {
        if batch && message.is_array() {
            return Err(InspectError::InvalidJsonRpc);
        }
        calls.extend(call_of(message)?);
    }
    Ok(calls)
}

/// The single value of a header, decoded; `Err` for repeated or unreadable values.
fn single_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, InspectError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(InspectError::HeaderMismatch);
    }
    let text = value.to_str().map_err(|_| InspectError::HeaderMismatch)?.trim();
    Ok(Some(decode_header_value(text).ok_or(InspectError::HeaderMismatch)?))
}

/// Values that are not plain visible ASCII travel as `=?base64?<standard base64>?=`.
fn decode_header_value(text: &str) -> Option<String> {
    match text.strip_prefix("=?base64?").and_then(|t| t.strip_suffix("?=")) {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(text.to_string()),
    }
}

/// Whether the body carries a content coding (RFC 9110 §8.4) other than `identity`: the
/// rules would read bytes the upstream decodes into other bytes.
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"identity"))
}

/// The calls a request carries: the body is authoritative, and `Mcp-Method`/`Mcp-Name`,
/// where sent, must name exactly what the body does (a header describes one message).
pub fn calls_in_request(headers: &HeaderMap, body: &[u8]) -> Result<Vec<Call>, InspectError> {
    let header_method = single_header(headers, MCP_METHOD)?;
    let header_name = single_header(headers, MCP_NAME)?;
    let calls = calls_in_body(body)?;
    if header_method.is_none() && header_name.is_none() {
        return Ok(calls);
    }
    let [call] = calls.as_slice() else {
        return Err(InspectError::HeaderMismatch);
    };
    if header_method.as_ref().is_some_and(|m| *m != call.method) {
        return Err(InspectError::HeaderMismatch);
    }
    // A resource URI in the header agrees with the body's when their normal forms do.
    let header_name = header_name
        .map(|name| comparable_name(&call.method, name))
        .transpose()
        .map_err(|_| InspectError::HeaderMismatch)?;
    if header_name.is_some() && header_name != call.name {
        return Err(InspectError::HeaderMismatch);
    }
    Ok(calls)
}

/// The outcome of checking a request's calls against a route's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Some call lacks a scope; `needed` is every rule scope the whole request needs.
    Forbidden {
        needed: BTreeSet<Scope>,
    },
}

/// Checks every call (each matching rule applies) against the granted, already-expanded
/// scopes. A batch is allowed only when every call in it is.
pub fn evaluate(rules: &[McpRule], calls: &[Call], granted: &BTreeSet<Scope>) -> Verdict {
    let mut needed = BTreeSet::new();
    let mut allowed = true;
    for call in calls {
        for rule in rules.iter().filter(|r| r.applies_to(call)) {
            allowed &= rule.scopes.iter().all(|s| granted.contains(s));
            needed.extend(rule.scopes.iter().cloned());
        }
    }
    if allowed {
        Verdict::Allowed
    } else {
        Verdict::Forbidden { needed }
    }
}

#[cfg(test)]
mod tests;
