//! What can go wrong while getting or using a token, each worded for the person at the
//! terminal: what happened, and what to try.

/// A failure of `scopegate token`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "{url} answered HTTP {status} without a Bearer challenge, and it is not an issuer either (no RFC 8414 \
         or OpenID Connect metadata: {detail}); pass the protected URL or the authorization server's issuer URL"
    )]
    NoMetadata { url: String, status: u16, detail: String },
    #[error("protected-resource metadata at {url} is unusable: {reason}")]
    BadResourceMetadata { url: String, reason: String },
    #[error("authorization server metadata of {issuer} is unusable: {reason}")]
    BadServerMetadata { issuer: String, reason: String },
    #[error("{issuer} offers no dynamic client registration (RFC 7591); register a client there and pass --client-id")]
    NoRegistration { issuer: String },
    #[error("{issuer} refused to register a client (HTTP {status}): {detail}; register one there and pass --client-id")]
    RegistrationRefused {
        issuer: String,
        status: u16,
        detail: String,
    },
    #[error("{issuer} does not offer {what} ({reason})")]
    Unsupported {
        issuer: String,
        what: &'static str,
        reason: String,
    },
    #[error(
        "{issuer} no longer knows the client registered here earlier ({detail}); it is forgotten: run the \
         command again to register a new one"
    )]
    ClientForgotten { issuer: String, detail: String },
    #[error(
        "no redirect reached http://{listener}/callback within {seconds} s; finish signing in sooner or raise --timeout"
    )]
    RedirectTimedOut {
        listener: std::net::SocketAddr,
        seconds: u64,
    },
    #[error("the redirect's state does not match this request (RFC 6749 §10.12): refusing it")]
    StateMismatch,
    #[error(
        "the redirect names issuer {got:?}, not {expected:?} (RFC 9207): it may come from another authorization \
         server; refusing it"
    )]
    IssuerMismatch { expected: String, got: String },
    #[error("the authorization server refused the requested scope {scope:?}: {detail}")]
    ScopeRefused { scope: String, detail: String },
    #[error("the authorization server granted scope {granted:?}, which lacks {missing:?}")]
    ScopeNotGranted { granted: String, missing: String },
    #[error("authorization failed: {error}{}", detail_suffix(.detail))]
    AuthorizationDenied { error: String, detail: Option<String> },
    #[error("the token endpoint refused the request (HTTP {status}): {error}{}", detail_suffix(.detail))]
    TokenRefused {
        status: u16,
        error: String,
        detail: Option<String>,
    },
    #[error("the device code expired before the sign-in finished (RFC 8628 §3.5); run the command again")]
    DeviceCodeExpired,
    #[error("{0}")]
    Usage(String),
    #[error("token store {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("cannot start {program}: {reason}")]
    Spawn { program: String, reason: String },
    #[error("cannot listen for the redirect on 127.0.0.1: {0}")]
    Listener(std::io::Error),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
}
