//! The development issuer's handle and its accept loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::config::{DevIssuerConfig, Endpoint, Fault};
use super::error::DevError;
use super::handlers;
use super::keys::SigningKey;
use super::mint::AccessTokenRequest;
use super::state::{
    AccessGrant, ClientRegistration, KeyRing, RegisteredClient, Shared, Store, build_client, lock, rotate,
};

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Handle {
    shared: Arc<Shared>,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// A running development authorization server. Cheap to clone; the server
/// stops when the last clone is dropped or on [`DevIssuer::shutdown`].
#[derive(Clone)]
pub struct DevIssuer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer())
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Serve on an already-bound listener. Refuses a non-loopback local
    /// address unless `allow_non_loopback`. Returns once accepting.
    pub async fn start(listener: TcpListener, config: DevIssuerConfig) -> Result<Self, DevError> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() && !config.allow_non_loopback {
            return Err(DevError::NonLoopback(addr));
        }
        let tls = match &config.tls {
            Some(files) => {
                let (_, server_config) = files.load().map_err(|e| DevError::Config(e.to_string()))?;
                Some(crate::tls::acceptor::TlsTermination::with_config(
                    server_config,
                    Duration::from_secs(10),
                ))
            }
            None => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = config.issuer.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
        if !(issuer.starts_with("http://") || issuer.starts_with("https://")) {
            return Err(DevError::Config(format!("issuer must be an http(s) URL: {issuer}")));
        }
        let base = issuer.trim_end_matches('/').to_owned();
        let alg = config.signing_alg;
        let key = tokio::task::spawn_blocking(move || SigningKey::generate(&Shared::new_kid(alg), alg))
            .await
            .map_err(|e| DevError::Crypto(format!("key generation task failed: {e}")))??;
        tracing::warn!(
            issuer = %issuer,
            user = %config.dev_user,
            "scopegate DEVELOPMENT authorization server: in-memory state, auto-approves every \
             authorization request; never use it in production"
        );
        let shared = Arc::new(Shared {
            config,
            issuer,
            base,
            addr,
            keys: std::sync::Mutex::new(KeyRing {
                current: key,
                retired: Vec::new(),
                extra: Vec::new(),
                replacement: None,
            }),
            store: std::sync::Mutex::new(Store::new()),
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            fault: std::sync::Mutex::new(Fault::None),
            proofs: crate::token::dpop::ProofVerifier::new(&crate::token::config::sender::DpopConfig::default(), None),
            tls,
        });
        let running = spawn_accept_loop(shared.clone(), listener);
        Ok(Self {
            handle: Arc::new(Handle {
                shared,
                running: tokio::sync::Mutex::new(Some(running)),
            }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The issuer identifier exactly as the metadata spells it.
    pub fn issuer(&self) -> &str {
        &self.shared().issuer
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.shared().addr
    }

    /// RFC 8414 metadata URL.
    pub fn metadata_url(&self) -> String {
        self.shared().url("/.well-known/oauth-authorization-server")
    }

    /// OpenID Connect discovery URL.
    pub fn openid_configuration_url(&self) -> String {
        self.shared().url("/.well-known/openid-configuration")
    }

    /// JWKS URL.
    pub fn jwks_uri(&self) -> String {
        self.shared().url(handlers::JWKS_PATH)
    }

    /// Introspection endpoint URL.
    pub fn introspection_endpoint(&self) -> String {
        self.shared().url("/oauth/introspect")
    }

    /// Token endpoint URL.
    pub fn token_endpoint(&self) -> String {
        self.shared().url("/oauth/token")
    }

    /// Authorization endpoint URL.
    pub fn authorization_endpoint(&self) -> String {
        self.shared().url("/oauth/authorize")
    }

    /// Registration endpoint URL.
    pub fn registration_endpoint(&self) -> String {
        self.shared().url("/oauth/register")
    }

    /// Revocation endpoint URL.
    pub fn revocation_endpoint(&self) -> String {
        self.shared().url("/oauth/revoke")
    }

    /// RFC 8628 device authorization endpoint URL.
    pub fn device_authorization_endpoint(&self) -> String {
        self.shared().url(super::device::AUTHORIZATION_PATH)
    }

    /// Userinfo endpoint URL.
    pub fn userinfo_endpoint(&self) -> String {
        self.shared().url("/oauth/userinfo")
    }

    /// Requests received by `endpoint` (including faulted ones).
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.shared().counters[endpoint.index()].load(Ordering::Relaxed)
    }

    /// Generate a new signing key and publish it; the old key stays in the
    /// JWKS for `key_grace`. Returns the new kid. (RSA key generation takes
    /// a moment; call from a blocking context or accept the short stall.)
    pub fn rotate_keys(&self) -> String {
        rotate(self.shared())
    }

    /// Drop every retired key from the JWKS now.
    pub fn expire_retired_keys(&self) {
        lock(&self.shared().keys).retired.clear();
    }

    /// The key that signs legitimate tokens.
    pub fn current_key(&self) -> SigningKey {
        lock(&self.shared().keys).current.clone()
    }

    /// Publish an extra, arbitrary JWK (e.g. an `oct` or weak RSA key).
    pub fn publish_extra_jwk(&self, jwk: serde_json::Value) {
        lock(&self.shared().keys).extra.push(jwk);
    }

    /// Replace the whole JWKS response body (`None` restores the real one).
    pub fn replace_jwks(&self, body: Option<serde_json::Value>) {
        lock(&self.shared().keys).replacement = body;
    }

    /// Mint and record a valid access token without an HTTP flow. Follows
    /// `opaque_access_tokens`. Expired tokens can be minted with
    /// `expires_in_secs <= 0`.
    pub fn mint_access_token(&self, req: &AccessTokenRequest) -> String {
        let shared = self.shared();
        let aud = shared.audience_for(&req.audience);
        let mut store = lock(&shared.store);
        shared.issue_access(
            &mut store,
            &AccessGrant {
                sub: &req.sub,
                client_id: &req.client_id,
                scope: &req.scope,
                aud: &aud,
                expires_in: req.expires_in_secs,
                family: None,
                auth_time: None,
                extra: Some(&req.extra_claims),
                cnf: &crate::token::principal::Confirmation::default(),
            },
        )
    }

    /// Register a client directly, applying RFC 7591 defaults but no
    /// validation (tests may register clients the endpoint would refuse).
    pub fn register_client(&self, req: ClientRegistration) -> RegisteredClient {
        let client = build_client(req);
        lock(&self.shared().store)
            .clients
            .insert(client.client_id.clone(), client.clone());
        client
    }

    /// Inject a fault into the discovery, JWKS and introspection endpoints.
    pub fn set_fault(&self, fault: Fault) {
        *lock(&self.shared().fault) = fault;
    }

    /// Stop accepting and close every connection; state and keys are kept.
    pub async fn stop(&self) {
        let running = self.handle.running.lock().await.take();
        if let Some(r) = running {
            let _ = r.stop.send(());
            let _ = r.task.await;
        }
    }

    /// Re-bind the same address with the same state and keys.
    pub async fn resume(&self) -> std::io::Result<()> {
        let mut running = self.handle.running.lock().await;
        if running.is_none() {
            let listener = TcpListener::bind(self.shared().addr).await?;
            *running = Some(spawn_accept_loop(self.handle.shared.clone(), listener));
        }
        Ok(())
    }

    /// Stop serving for good.
    pub async fn shutdown(self) {
        self.stop().await;
    }
}

fn spawn_accept_loop(shared: Arc<Shared>, listener: TcpListener) -> Running {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        conns.spawn(serve_connection(shared.clone(), stream));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "dev issuer accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(listener);
        conns.shutdown().await;
    });
    Running { stop, task }
}

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream) {
    let accepted = match crate::tls::acceptor::accept(shared.tls.as_deref(), stream).await {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::debug!(error = %e, "dev issuer handshake failed");
            return;
        }
    };
    let certificate = accepted.client_certificate;
    let service = service_fn(move |mut req: Request<Incoming>| {
        if let Some(certificate) = &certificate {
            req.extensions_mut().insert(certificate.clone());
        }
        let shared = shared.clone();
        async move { handlers::handle(shared, req).await }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    if let Err(e) = builder.serve_connection(TokioIo::new(accepted.io), service).await {
        tracing::debug!(error = %e, "dev issuer connection ended");
    }
}
