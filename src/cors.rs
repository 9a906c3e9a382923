//! CORS at the edge of the one decision: which requests are browser preflights, and the
//! headers that let a browser app read scopegate's own refusals.
//!
//! A preflight (Fetch standard, "CORS-preflight request") is `OPTIONS` with `Origin` and
//! `Access-Control-Request-Method` and no body; browsers never attach credentials to it, so
//! a protected route answers it 401 and the browser never sends the real request. Where
//! configured (`cors.bypass_preflight`, or a route's `bypass_preflight`), the decision lets
//! such a request through to the upstream without a token, as Envoy's
//! `bypass_cors_preflight` and oauth2-proxy's `--skip-auth-preflight` do; the upstream
//! answers it. A plain `OPTIONS` is authenticated like any other method.
//!
//! scopegate's own answers (401, 403, 404, 503, …) carry CORS headers only for origins in
//! `cors.allowed_origins`, matched exactly; an `Origin` is never reflected otherwise.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method};
use serde::Deserialize;

use crate::config::problems::Issues;

/// `[cors]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCors {
    /// Let preflights through without a token on every route that does not say otherwise.
    #[serde(default)]
    pub bypass_preflight: bool,
    /// Origins (`https://app.example.com`) whose browser apps may read scopegate's refusals;
    /// `["*"]` for any origin, without credentials.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Adds `Access-Control-Allow-Credentials: true` to refusals for allowed origins.
    #[serde(default)]
    pub allow_credentials: bool,
}

/// Which origins may read scopegate's refusals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AllowedOrigins {
    /// None: refusals carry no CORS headers.
    #[default]
    None,
    /// `*`: `Access-Control-Allow-Origin: *` on refusals to any cross-origin request.
    Any,
    /// Exactly these serialized origins (`scheme://host[:port]`, as browsers send them).
    Exactly(Vec<HeaderValue>),
}

/// The compiled `[cors]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CorsConfig {
    /// The default of routes without their own `bypass_preflight`.
    pub bypass_preflight: bool,
    pub allowed_origins: AllowedOrigins,
    pub allow_credentials: bool,
}

/// The reason code of a preflight let through without a token (access log, metrics,
/// `explain`).
pub const PREFLIGHT_REASON: &str = "cors_preflight";

/// Response headers a browser app needs to read a refusal: the challenge and the retry
/// hint are not CORS-safelisted response headers.
const EXPOSED: &str = "WWW-Authenticate, Retry-After";

impl CorsConfig {
    pub fn compile(file: &FileCors, issues: &mut Issues) -> CorsConfig {
        let any = file.allowed_origins.iter().any(|o| o == "*");
        let allowed_origins = if any {
            if file.allowed_origins.len() > 1 {
                issues.push(
                    "cors.allowed_origins",
                    "\"*\" already allows every origin; list it alone, or list origins without it",
                );
            }
            if file.allow_credentials {
                issues.push(
                    "cors.allow_credentials",
                    "cannot be true with allowed_origins = [\"*\"]: browsers refuse a credentialed answer for any origin (Fetch standard); list the origins",
                );
            }
            AllowedOrigins::Any
        } else if file.allowed_origins.is_empty() {
            if file.allow_credentials {
                issues.push(
                    "cors.allow_credentials",
                    "has no effect without cors.allowed_origins; list the origins that may send credentials",
                );
            }
            AllowedOrigins::None
        } else {
            let mut origins = Vec::new();
            for (i, origin) in file.allowed_origins.iter().enumerate() {
                match serialized_origin(origin) {
                    Ok(value) => origins.push(value),
                    Err(message) => issues.push(format!("cors.allowed_origins[{i}]"), message),
                }
            }
            AllowedOrigins::Exactly(origins)
        };
        CorsConfig {
            bypass_preflight: file.bypass_preflight,
            allowed_origins,
            allow_credentials: file.allow_credentials,
        }
    }

    /// What `check` prints about refusals' CORS headers; `None` when there are none.
    pub fn describe_refusals(&self) -> Option<String> {
        let origins = match &self.allowed_origins {
            AllowedOrigins::None => return None,
            AllowedOrigins::Any => "any origin (\"*\")".to_string(),
            AllowedOrigins::Exactly(origins) => {
                let names: Vec<&str> = origins.iter().filter_map(|o| o.to_str().ok()).collect();
                names.join(", ")
            }
        };
        let credentials = if self.allow_credentials {
            ", with credentials"
        } else {
            ""
        };
        Some(format!(
            "cors: scopegate's own refusals are readable by {origins}{credentials}"
        ))
    }

    /// Whether refusals may carry CORS headers at all (the caller then keeps the `Origin`).
    pub fn decorates_refusals(&self) -> bool {
        self.allowed_origins != AllowedOrigins::None
    }

    /// Adds CORS headers to one of scopegate's own refusals: `Vary: Origin` whenever
    /// origins are configured, and for a request from an allowed `origin` the origin
    /// itself (or `*`), the headers it may read, and credentials when configured.
    pub fn decorate_refusal(&self, headers: &mut HeaderMap, origin: Option<&HeaderValue>) {
        let allow = match (&self.allowed_origins, origin) {
            (AllowedOrigins::None, _) => return,
            (AllowedOrigins::Any, Some(_)) => Some(HeaderValue::from_static("*")),
            (AllowedOrigins::Exactly(origins), Some(origin)) => origins.iter().find(|o| *o == origin).cloned(),
            (_, None) => None,
        };
        headers.append(VARY, HeaderValue::from_static("Origin"));
        let Some(allow) = allow else {
            return;
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED));
        if self.allow_credentials {
            headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
    }
}

/// The one `Origin` of a request, if it sent exactly one.
pub fn request_origin(headers: &HeaderMap) -> Option<&HeaderValue> {
    let mut origins = headers.get_all(ORIGIN).iter();
    let origin = origins.next()?;
    origins.next().is_none().then_some(origin)
}

/// The method a CORS preflight announces, when the request is one: `OPTIONS`, without a
/// body, with exactly one `Origin` and exactly one `Access-Control-Request-Method` that is
/// a method token. Anything else is not a preflight and is authenticated like any request.
pub fn preflight_method(method: &Method, headers: &HeaderMap, has_body: bool) -> Option<Method> {
    if method != Method::OPTIONS || has_body {
        return None;
    }
    request_origin(headers)?;
    let mut announced = headers.get_all(ACCESS_CONTROL_REQUEST_METHOD).iter();
    let value = announced.next()?;
    if announced.next().is_some() {
        return None;
    }
    Method::from_bytes(value.as_bytes()).ok()
}

/// Checks that `text` is an origin as a browser serializes it in `Origin` (RFC 6454 §6.2):
/// `scheme://host[:port]`, lower-case, no default port, no path, no trailing slash.
fn serialized_origin(text: &str) -> Result<HeaderValue, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
    let serialized = url.origin().ascii_serialization();
    if !matches!(url.scheme(), "http" | "https") || serialized == "null" {
        return Err(format!(
            "{text:?} is not an http(s) origin; write scheme://host[:port], e.g. \"https://app.example.com\""
        ));
    }
    if serialized != text {
        return Err(format!(
            "{text:?} is not spelled as browsers send Origin, so it would never match; write {serialized:?}"
        ));
    }
    HeaderValue::from_str(text).map_err(|_| format!("{text:?} cannot be a header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(origins: &[&str], credentials: bool) -> (CorsConfig, Vec<String>) {
        let mut issues = Issues::default();
        let file = FileCors {
            bypass_preflight: false,
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_credentials: credentials,
        };
        let config = CorsConfig::compile(&file, &mut issues);
        (config, issues.into_vec().into_iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn origins_must_be_spelled_as_browsers_send_them() {
        let (_, issues) = compile(
            &[
                "https://app.example",
                "https://App.example",
                "https://app.example/",
                "https://app.example:443",
                "ftp://app.example",
                "null",
                "app.example",
            ],
            false,
        );
        assert_eq!(issues.len(), 6, "{issues:#?}");
        assert!(issues[0].contains("write \"https://app.example\""), "{issues:#?}");
    }

    #[test]
    fn star_is_alone_and_without_credentials() {
        let (config, issues) = compile(&["*"], false);
        assert!(issues.is_empty());
        assert_eq!(config.allowed_origins, AllowedOrigins::Any);
        let (_, issues) = compile(&["*", "https://a.example"], true);
        assert_eq!(issues.len(), 2, "{issues:#?}");
    }

    #[test]
    fn only_allowed_origins_are_named_and_never_reflected() {
        let (config, _) = compile(&["https://app.example"], true);
        let mut headers = HeaderMap::new();
        config.decorate_refusal(&mut headers, Some(&HeaderValue::from_static("https://evil.example")));
        assert!(!headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
        assert_eq!(headers.get(VARY).map(HeaderValue::as_bytes), Some(&b"Origin"[..]));
        let mut headers = HeaderMap::new();
        config.decorate_refusal(&mut headers, Some(&HeaderValue::from_static("https://app.example")));
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(headers[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert!(
            headers[ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .is_ok_and(|v| v.contains("WWW-Authenticate"))
        );
    }

    #[test]
    fn preflight_needs_origin_and_one_announced_method_and_no_body() {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, HeaderValue::from_static("https://app.example"));
        assert_eq!(preflight_method(&Method::OPTIONS, &headers, false), None);
        headers.insert(ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static("PUT"));
        assert_eq!(preflight_method(&Method::OPTIONS, &headers, false), Some(Method::PUT));
        assert_eq!(preflight_method(&Method::OPTIONS, &headers, true), None);
        assert_eq!(preflight_method(&Method::GET, &headers, false), None);
        headers.append(ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static("GET"));
        assert_eq!(preflight_method(&Method::OPTIONS, &headers, false), None);
    }
}
