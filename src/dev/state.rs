//! In-memory state of the development issuer: keys, clients, codes, tokens.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use aws_lc_rs::digest;
use serde_json::{Map, Value, json};

use super::bounded::Bounded;
use super::config::{DevIssuerConfig, ENDPOINT_COUNT, Fault};
use super::keys::{KeyAlg, SigningKey, random_token};
use super::mint::mint;
use super::respond::cnf_claim;
use crate::token::principal::Confirmation;

/// Upper bound of every token/code/client map; the oldest entries go first.
pub(crate) const MAX_ENTRIES: usize = 100_000;

pub(crate) use super::clients::{
    AUTH_BASIC, AUTH_NONE, AUTH_POST, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE,
    GRANT_REFRESH_TOKEN,
};

/// Lock a mutex, ignoring poisoning (the state stays usable for tests).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) use super::keys::now_unix;

/// Key under which tokens are stored: SHA-256 of the token string.
pub(crate) type TokenKey = [u8; 32];

pub(crate) fn token_key(token: &str) -> TokenKey {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

pub(crate) use super::clients::build_client;
pub use super::clients::{ClientRegistration, RegisteredClient};

/// An issued authorization code.
pub(crate) struct CodeRecord {
    pub client_id: String,
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub scope: String,
    pub resources: Vec<String>,
    pub challenge: Option<String>,
    pub sub: String,
    pub auth_time: i64,
    pub expires_at: Instant,
    /// Set once redeemed: the token family it produced.
    pub redeemed_family: Option<u64>,
}

/// An issued access token (JWT or opaque).
pub(crate) struct AccessRecord {
    pub sub: String,
    pub client_id: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub family: Option<u64>,
    pub revoked: bool,
    /// An opaque token's extra claims, which introspection answers with (RFC 7662 §2.2
    /// allows members beyond its own); a JWT carries its own.
    pub extra: Map<String, Value>,
    /// What the token is bound to: a DPoP key (RFC 9449 §6), a client certificate
    /// (RFC 8705 §3), or nothing.
    pub cnf: Confirmation,
}

/// An issued refresh token.
pub(crate) struct RefreshRecord {
    pub family: u64,
    pub client_id: String,
    pub sub: String,
    pub scope: String,
    pub aud: Vec<String>,
    pub auth_time: i64,
    pub iat: i64,
    pub exp: i64,
    pub rotated: bool,
}

/// A pending device authorization (RFC 8628 §3.2).
pub(crate) struct DeviceRecord {
    pub client_id: String,
    pub user_code: String,
    pub scope: String,
    pub resources: Vec<String>,
    pub expires_at: Instant,
    /// Set when the user visits the verification URI.
    pub approved: bool,
    pub redeemed: bool,
    pub last_poll: Option<Instant>,
}

/// Everything a grant produced, for revocation of the whole family.
pub(crate) struct Family {
    pub revoked: bool,
}

/// Mutable registries of clients, codes and tokens.
pub(crate) struct Store {
    pub clients: Bounded<String, RegisteredClient>,
    pub codes: Bounded<String, CodeRecord>,
    /// By device code.
    pub devices: Bounded<String, DeviceRecord>,
    pub access: Bounded<TokenKey, AccessRecord>,
    pub refresh: Bounded<TokenKey, RefreshRecord>,
    pub families: Bounded<u64, Family>,
    next_family: u64,
}

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            clients: Bounded::new(MAX_ENTRIES),
            codes: Bounded::new(MAX_ENTRIES),
            devices: Bounded::new(MAX_ENTRIES),
            access: Bounded::new(MAX_ENTRIES),
            refresh: Bounded::new(MAX_ENTRIES),
            families: Bounded::new(MAX_ENTRIES),
            next_family: 1,
        }
    }

    pub(crate) fn new_family(&mut self) -> u64 {
        let id = self.next_family;
        self.next_family += 1;
        self.families.insert(id, Family { revoked: false });
        id
    }

    pub(crate) fn revoke_family(&mut self, id: u64) {
        if let Some(f) = self.families.get_mut(&id) {
            f.revoked = true;
        }
    }

    /// A family that was evicted counts as revoked.
    pub(crate) fn family_live(&self, id: u64) -> bool {
        self.families.get(&id).is_some_and(|f| !f.revoked)
    }

    /// The live access-token record for `token`, if any.
    pub(crate) fn active_access(&self, token: &str) -> Option<&AccessRecord> {
        let rec = self.access.get(&token_key(token))?;
        let live = !rec.revoked && rec.exp > now_unix() && rec.family.is_none_or(|f| self.family_live(f));
        live.then_some(rec)
    }

    /// The live (not rotated, not revoked, unexpired) refresh-token record.
    pub(crate) fn active_refresh(&self, token: &str) -> Option<&RefreshRecord> {
        let rec = self.refresh.get(&token_key(token))?;
        let live = !rec.rotated && rec.exp > now_unix() && self.family_live(rec.family);
        live.then_some(rec)
    }
}

/// Published signing keys.
pub(crate) struct KeyRing {
    pub current: SigningKey,
    pub retired: Vec<(SigningKey, Instant)>,
    pub extra: Vec<Value>,
    pub replacement: Option<Value>,
}

impl KeyRing {
    pub(crate) fn jwks(&self, grace: std::time::Duration) -> Value {
        if let Some(body) = &self.replacement {
            return body.clone();
        }
        let now = Instant::now();
        let mut keys = vec![self.current.public_jwk()];
        keys.extend(
            self.retired
                .iter()
                .filter(|(_, at)| now.duration_since(*at) < grace)
                .map(|(k, _)| k.public_jwk()),
        );
        keys.extend(self.extra.iter().cloned());
        json!({ "keys": keys })
    }
}

/// State shared by the handle and the connection tasks.
pub(crate) struct Shared {
    pub config: DevIssuerConfig,
    pub issuer: String,
    pub base: String,
    pub addr: SocketAddr,
    pub keys: Mutex<KeyRing>,
    pub store: Mutex<Store>,
    pub counters: [AtomicU64; ENDPOINT_COUNT],
    pub fault: Mutex<Fault>,
    /// Checks DPoP proofs sent to the token endpoint (RFC 9449 §5).
    pub proofs: crate::token::dpop::ProofVerifier,
    /// HTTPS, when [`DevIssuerConfig::tls`] is set.
    pub tls: Option<Arc<crate::tls::acceptor::TlsTermination>>,
}

/// What an access token is issued for.
pub(crate) struct AccessGrant<'a> {
    pub sub: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub aud: &'a [String],
    pub expires_in: i64,
    pub family: Option<u64>,
    pub auth_time: Option<i64>,
    pub extra: Option<&'a Map<String, Value>>,
    /// Bind the token to a DPoP key thumbprint (`cnf.jkt`, RFC 9449 §6.1) and/or a client
    /// certificate thumbprint (`cnf.x5t#S256`, RFC 8705 §3.1).
    pub cnf: &'a Confirmation,
}

impl Shared {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `scopes_supported`: read, write, mcp, the extras and openid.
    pub(crate) fn scopes_supported(&self) -> Vec<String> {
        let mut out: Vec<String> = ["read", "write", "mcp"].map(String::from).to_vec();
        for s in &self.config.extra_scopes {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        if !out.iter().any(|s| s == "openid") {
            out.push("openid".into());
        }
        out
    }

    /// The audience for a grant: its resources, else the default audience.
    pub(crate) fn audience_for(&self, resources: &[String]) -> Vec<String> {
        if resources.is_empty() {
            vec![
                self.config
                    .default_audience
                    .clone()
                    .unwrap_or_else(|| self.issuer.clone()),
            ]
        } else {
            resources.to_vec()
        }
    }

    pub(crate) fn new_kid(alg: KeyAlg) -> String {
        format!("dev-{}-{}", alg.name().to_ascii_lowercase(), random_token(6))
    }

    /// Issue (sign or generate) an access token and record it.
    pub(crate) fn issue_access(&self, store: &mut Store, g: &AccessGrant<'_>) -> String {
        let iat = now_unix();
        let exp = iat.saturating_add(g.expires_in);
        let jti = random_token(16);
        let token = if self.config.opaque_access_tokens {
            random_token(32)
        } else {
            let key = lock(&self.keys).current.clone();
            let aud = match g.aud {
                [one] => Value::String(one.clone()),
                many => json!(many),
            };
            let mut claims = json!({
                "iss": self.issuer, "sub": g.sub, "aud": aud, "client_id": g.client_id,
                "scope": g.scope, "iat": iat, "exp": exp, "jti": jti,
            });
            if let (Some(at), Some(obj)) = (g.auth_time, claims.as_object_mut()) {
                obj.insert("auth_time".into(), json!(at));
            }
            if let (Some(cnf), Some(obj)) = (cnf_claim(g.cnf), claims.as_object_mut()) {
                obj.insert("cnf".into(), cnf);
            }
            if let (Some(extra), Some(obj)) = (g.extra, claims.as_object_mut()) {
                for (k, v) in extra {
                    obj.insert(k.clone(), v.clone());
                }
            }
            let header = json!({"alg": key.alg_name(), "typ": "at+jwt", "kid": key.kid()});
            mint(&header, &claims, &key)
        };
        store.access.insert(
            token_key(&token),
            AccessRecord {
                sub: g.sub.to_owned(),
                client_id: g.client_id.to_owned(),
                scope: g.scope.to_owned(),
                aud: g.aud.to_vec(),
                iat,
                exp,
                jti,
                family: g.family,
                revoked: false,
                extra: match (self.config.opaque_access_tokens, g.extra) {
                    (true, Some(extra)) => extra.clone(),
                    _ => Map::new(),
                },
                cnf: g.cnf.clone(),
            },
        );
        token
    }

    /// Issue and record a refresh token of `family`.
    pub(crate) fn issue_refresh(&self, store: &mut Store, family: u64, template: &RefreshTemplate<'_>) -> String {
        let token = random_token(32);
        let iat = now_unix();
        let ttl = i64::try_from(self.config.refresh_token_ttl.as_secs()).unwrap_or(i64::MAX);
        store.refresh.insert(
            token_key(&token),
            RefreshRecord {
                family,
                client_id: template.client_id.to_owned(),
                sub: template.sub.to_owned(),
                scope: template.scope.to_owned(),
                aud: template.aud.to_vec(),
                auth_time: template.auth_time,
                iat,
                exp: iat.saturating_add(ttl),
                rotated: false,
            },
        );
        token
    }

    /// What a user's grant (authorization code, device) issues: an access token of
    /// `family` and, when the client may refresh, a refresh token of it.
    pub(crate) fn issue_user_tokens(
        &self,
        store: &mut Store,
        family: u64,
        grant: &RefreshTemplate<'_>,
        refreshable: bool,
        cnf: &Confirmation,
    ) -> (String, Option<String>) {
        let access = self.issue_access(
            store,
            &AccessGrant {
                sub: grant.sub,
                client_id: grant.client_id,
                scope: grant.scope,
                aud: grant.aud,
                expires_in: self.access_ttl_secs(),
                family: Some(family),
                auth_time: Some(grant.auth_time),
                extra: None,
                cnf,
            },
        );
        let refresh = refreshable.then(|| self.issue_refresh(store, family, grant));
        (access, refresh)
    }

    pub(crate) fn access_ttl_secs(&self) -> i64 {
        i64::try_from(self.config.access_token_ttl.as_secs()).unwrap_or(i64::MAX)
    }
}

/// Generate a new signing key and make it current; the old one stays in the JWKS for
/// `key_grace`. Returns the new kid, or the current one when generation fails.
pub(crate) fn rotate(shared: &Shared) -> String {
    let alg = shared.config.signing_alg;
    let kid = Shared::new_kid(alg);
    let key = match SigningKey::generate(&kid, alg) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "key rotation failed; keeping the current key");
            return lock(&shared.keys).current.kid().to_owned();
        }
    };
    let mut ring = lock(&shared.keys);
    let old = std::mem::replace(&mut ring.current, key);
    ring.retired.push((old, Instant::now()));
    let grace = shared.config.key_grace;
    ring.retired.retain(|(_, at)| at.elapsed() < grace);
    kid
}

/// Fields a refresh token carries across rotations.
pub(crate) struct RefreshTemplate<'a> {
    pub client_id: &'a str,
    pub sub: &'a str,
    pub scope: &'a str,
    pub aud: &'a [String],
    pub auth_time: i64,
}
