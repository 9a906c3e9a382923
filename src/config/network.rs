//! The sections that bound the network: `[listener]` (the data plane's connections,
//! streams and timeouts), `[admin]` (the admin plane's connections and the revocations it
//! accepts) and `[upstream]` (the upstream client and the cap on requests in flight to it).
//! Each as written in the file, its defaults, its compiled form and its compiler.

use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use super::problems::Issues;
use crate::tls::TrustBundle;
use crate::tls::config::{FileListenerTls, ListenerTls, compile_ca_file, compile_listener_tls};
use crate::token::config::{Secret, read_optional_secret};
use crate::token::revocation::RevocationLimits;

/// The shortest admin token accepted: a guessable token would open every sidecar's
/// revocation endpoints at once.
const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// `Default` is an empty, invalid section: only a stand-in while a file whose `[listener]`
/// is missing or unreadable is compiled for its other problems.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListener {
    pub address: String,
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: String,
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: String,
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: String,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: String,
    /// Longest pause inside a request body; "0s" turns the limit off.
    #[serde(default = "defaults::request_body_idle_timeout")]
    pub request_body_idle_timeout: String,
    /// SETTINGS_MAX_CONCURRENT_STREAMS advertised to HTTP/2 clients.
    #[serde(default = "defaults::http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    /// Longest time a response may wait for the client to take its next bytes; "0s" turns
    /// the limit off.
    #[serde(default = "defaults::response_progress_timeout")]
    pub response_progress_timeout: String,
    /// `[listener.tls]`: TLS termination; plain HTTP (and h2c) when absent.
    #[serde(default)]
    pub tls: Option<FileListenerTls>,
    /// Threads serving the data plane; unset: one per CPU the process may use.
    #[serde(default)]
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    #[serde(default = "defaults::admin_address")]
    pub address: String,
    #[serde(default = "defaults::admin_max_connections")]
    pub max_connections: usize,
    #[serde(default = "defaults::admin_header_read_timeout")]
    pub header_read_timeout: String,
    #[serde(default = "defaults::admin_idle_timeout")]
    pub idle_timeout: String,
    #[serde(default = "defaults::revocation_max_entries")]
    pub revocation_max_entries: usize,
    #[serde(default = "defaults::revocation_max_ttl")]
    pub revocation_max_ttl: String,
    /// A file holding the bearer token that admin actions (revocations) require; required
    /// when `[fleet]` is set, since a revocation then reaches every sidecar.
    #[serde(default)]
    pub token_file: Option<String>,
    /// The same token from an environment variable (at most one of the two).
    #[serde(default)]
    pub token_env: Option<String>,
}

impl Default for FileAdmin {
    fn default() -> Self {
        Self {
            address: defaults::admin_address(),
            max_connections: defaults::admin_max_connections(),
            header_read_timeout: defaults::admin_header_read_timeout(),
            idle_timeout: defaults::admin_idle_timeout(),
            revocation_max_entries: defaults::revocation_max_entries(),
            revocation_max_ttl: defaults::revocation_max_ttl(),
            token_file: None,
            token_env: None,
        }
    }
}

/// `Default` is an empty, invalid section, a stand-in like [`FileListener`]'s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub url: String,
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "defaults::response_header_timeout")]
    pub response_header_timeout: String,
    #[serde(default = "defaults::pool_idle_timeout")]
    pub pool_idle_timeout: String,
    #[serde(default = "defaults::pool_max_idle_per_host")]
    pub pool_max_idle_per_host: usize,
    #[serde(default)]
    pub http2_prior_knowledge: bool,
    /// Requests in flight to the upstream at once, over all client connections.
    #[serde(default = "defaults::upstream_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// PEM bundle of the CAs an `https://` upstream's certificate must chain to (instead of
    /// the system's trust store).
    #[serde(default)]
    pub ca_file: Option<String>,
}

mod defaults {
    pub fn header_read_timeout() -> String {
        "10s".into()
    }
    pub fn max_header_bytes() -> String {
        "32KiB".into()
    }
    pub fn idle_timeout() -> String {
        "60s".into()
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn drain_timeout() -> String {
        "30s".into()
    }
    pub fn request_body_idle_timeout() -> String {
        "60s".into()
    }
    /// Well below hyper's 200: every stream may hold an upstream request, so this is what
    /// one connection can ask of the upstream at once; browsers open at most about 6–10
    /// concurrent requests per origin, and API clients rarely more than a few dozen.
    pub fn http2_max_concurrent_streams() -> u32 {
        64
    }
    pub fn response_progress_timeout() -> String {
        "30s".into()
    }
    pub fn admin_address() -> String {
        "127.0.0.1:9901".into()
    }
    pub fn admin_max_connections() -> usize {
        16
    }
    pub fn admin_header_read_timeout() -> String {
        "5s".into()
    }
    pub fn admin_idle_timeout() -> String {
        "30s".into()
    }
    pub fn revocation_max_entries() -> usize {
        100_000
    }
    pub fn revocation_max_ttl() -> String {
        "24h".into()
    }
    pub fn upstream_max_concurrent_requests() -> usize {
        1024
    }
    pub fn connect_timeout() -> String {
        "2s".into()
    }
    pub fn response_header_timeout() -> String {
        "30s".into()
    }
    pub fn pool_idle_timeout() -> String {
        "90s".into()
    }
    pub fn pool_max_idle_per_host() -> usize {
        64
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// `None`: request bodies may pause for any time.
    pub request_body_idle_timeout: Option<Duration>,
    pub http2_max_concurrent_streams: u32,
    /// `None`: a response may wait for the client for any time.
    pub response_progress_timeout: Option<Duration>,
    /// `None`: plain HTTP/1.1 and h2c.
    pub tls: Option<ListenerTls>,
    /// Data-plane worker threads; `None`: chosen at start (see [`crate::server::worker_count`]).
    pub worker_threads: Option<usize>,
}

/// Limits of the admin listener (its address is `Config::admin_address`) and of the
/// revocations it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub revocations: RevocationLimits,
    /// The bearer token admin actions require (`token_file` or `token_env`); `None`: they
    /// are open.
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// Scheme and authority of the upstream; requests keep their own path and query.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    pub connect_timeout: Duration,
    pub response_header_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub http2_prior_knowledge: bool,
    pub max_concurrent_requests: usize,
    /// `upstream.ca_file` as written, and the CAs it holds: the only ones an `https://`
    /// upstream may chain to. `None`: the system's trust store.
    pub ca_file: Option<String>,
    pub ca: Option<TrustBundle>,
}

pub(super) fn parse_socket_addr(issues: &mut Issues, path: &str, text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|_| {
        issues.push(
            path,
            format!("{text:?} is not an IP:port address, e.g. \"127.0.0.1:8080\" or \"[::]:8080\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

pub(super) fn compile_listener(file: &FileListener, issues: &mut Issues) -> ListenerConfig {
    let max_header_bytes = issues.size("listener.max_header_bytes", &file.max_header_bytes, 32 << 10);
    if !(1024..=1 << 20).contains(&max_header_bytes) {
        issues.push("listener.max_header_bytes", "must be between 1KiB and 1MiB");
    }
    if file.max_connections == 0 {
        issues.push("listener.max_connections", "must be at least 1");
    }
    let header_read_timeout = issues.duration(
        "listener.header_read_timeout",
        &file.header_read_timeout,
        Duration::from_secs(10),
    );
    if header_read_timeout.is_zero() {
        issues.push(
            "listener.header_read_timeout",
            "must be greater than zero: without it a client can hold a connection open by sending headers slowly",
        );
    }
    ListenerConfig {
        address: parse_socket_addr(issues, "listener.address", &file.address),
        header_read_timeout,
        max_header_bytes: max_header_bytes as usize,
        idle_timeout: match issues.duration("listener.idle_timeout", &file.idle_timeout, Duration::from_secs(60)) {
            idle if idle.is_zero() => {
                issues.push("listener.idle_timeout", "must be greater than zero");
                Duration::from_secs(60)
            }
            idle => idle,
        },
        max_connections: file.max_connections.max(1),
        drain_timeout: issues.duration("listener.drain_timeout", &file.drain_timeout, Duration::from_secs(30)),
        request_body_idle_timeout: Some(issues.duration(
            "listener.request_body_idle_timeout",
            &file.request_body_idle_timeout,
            Duration::from_secs(60),
        ))
        .filter(|idle| !idle.is_zero()),
        http2_max_concurrent_streams: match file.http2_max_concurrent_streams {
            0 => {
                issues.push(
                    "listener.http2_max_concurrent_streams",
                    "must be at least 1 (RFC 9113 §6.5.2: 0 would refuse every HTTP/2 request)",
                );
                1
            }
            streams => streams,
        },
        response_progress_timeout: Some(issues.duration(
            "listener.response_progress_timeout",
            &file.response_progress_timeout,
            Duration::from_secs(30),
        ))
        .filter(|timeout| !timeout.is_zero()),
        tls: compile_listener_tls(file.tls.as_ref(), issues),
        worker_threads: match file.worker_threads {
            Some(threads) if !(1..=MAX_WORKER_THREADS).contains(&threads) => {
                issues.push(
                    "listener.worker_threads",
                    format!("must be between 1 and {MAX_WORKER_THREADS}; leave it out for one per CPU"),
                );
                None
            }
            threads => threads,
        },
    }
}

/// More data-plane threads than this is a typo, not a machine.
const MAX_WORKER_THREADS: usize = 1024;

pub(super) fn compile_admin(file: &FileAdmin, issues: &mut Issues) -> AdminConfig {
    if !(1..=1024).contains(&file.max_connections) {
        issues.push(
            "admin.max_connections",
            "must be between 1 and 1024: the admin plane must not take the data plane's descriptors",
        );
    }
    let mut positive = |path: &str, text: &str, fallback: Duration| issues.positive_duration(path, text, fallback);
    let header_read_timeout = positive(
        "admin.header_read_timeout",
        &file.header_read_timeout,
        Duration::from_secs(5),
    );
    let idle_timeout = positive("admin.idle_timeout", &file.idle_timeout, Duration::from_secs(30));
    let max_ttl = positive(
        "admin.revocation_max_ttl",
        &file.revocation_max_ttl,
        Duration::from_secs(86_400),
    );
    if file.revocation_max_entries == 0 {
        issues.push(
            "admin.revocation_max_entries",
            "must be at least 1, or every POST /cache/evict is refused",
        );
    }
    let token = read_optional_secret(
        ("admin.token_file", file.token_file.as_deref()),
        ("admin.token_env", file.token_env.as_deref()),
        issues,
    );
    if token.as_ref().is_some_and(|t| t.expose().len() < MIN_ADMIN_TOKEN_BYTES) {
        issues.push(
            "admin.token_file",
            format!("the token must be at least {MIN_ADMIN_TOKEN_BYTES} bytes"),
        );
    }
    AdminConfig {
        token,
        max_connections: file.max_connections.clamp(1, 1024),
        header_read_timeout,
        idle_timeout,
        revocations: RevocationLimits {
            max_entries: file.revocation_max_entries.max(1),
            max_ttl,
        },
    }
}

pub(super) fn compile_upstream(file: &FileUpstream, issues: &mut Issues) -> UpstreamConfig {
    let fallback = || (http::uri::Scheme::HTTP, http::uri::Authority::from_static("127.0.0.1"));
    let (scheme, authority) = match file.url.parse::<Uri>() {
        Ok(uri) => match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority))
                if scheme == &http::uri::Scheme::HTTP || scheme == &http::uri::Scheme::HTTPS =>
            {
                if uri.path() != "/" && !uri.path().is_empty() {
                    issues.push(
                        "upstream.url",
                        "must not have a path: requests are forwarded with their own path",
                    );
                }
                (scheme.clone(), authority.clone())
            }
            (Some(_), Some(_)) => {
                issues.push("upstream.url", "must be an http:// or https:// URL");
                fallback()
            }
            _ => {
                issues.push("upstream.url", "must be an absolute URL like \"http://127.0.0.1:3000\"");
                fallback()
            }
        },
        Err(e) => {
            issues.push("upstream.url", format!("{:?} is not a URL: {e}", file.url));
            fallback()
        }
    };
    let ca = compile_ca_file("upstream.ca_file", file.ca_file.as_deref(), issues);
    if ca.is_some() && scheme != http::uri::Scheme::HTTPS {
        issues.push(
            "upstream.ca_file",
            "has no effect on an http:// upstream; use an https:// upstream.url or remove it",
        );
    }
    UpstreamConfig {
        scheme,
        authority,
        connect_timeout: issues.duration(
            "upstream.connect_timeout",
            &file.connect_timeout,
            Duration::from_secs(2),
        ),
        response_header_timeout: issues.duration(
            "upstream.response_header_timeout",
            &file.response_header_timeout,
            Duration::from_secs(30),
        ),
        pool_idle_timeout: issues.duration(
            "upstream.pool_idle_timeout",
            &file.pool_idle_timeout,
            Duration::from_secs(90),
        ),
        pool_max_idle_per_host: file.pool_max_idle_per_host,
        http2_prior_knowledge: file.http2_prior_knowledge,
        max_concurrent_requests: match file.max_concurrent_requests {
            0 => {
                issues.push(
                    "upstream.max_concurrent_requests",
                    "must be at least 1, or no request could reach the upstream",
                );
                1
            }
            requests => requests,
        },
        ca_file: file.ca_file.clone(),
        ca,
    }
}
