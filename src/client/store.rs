//! The token file: tokens by issuer, resource and scope set, and the clients registered at
//! each issuer, in one JSON file only its owner can read (mode 0600 in a 0700 directory).
//!
//! Writes go to a private temporary file that is renamed over the old one, so a reader never
//! sees half a file. Two commands writing at the same moment may lose one of their updates
//! (the tokens stay valid at the server; the next run gets them again).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::ClientError;

/// Environment variable that moves the token file (tests, several accounts).
pub const STORE_ENV: &str = "SCOPEGATE_TOKEN_STORE";
/// A token this close to its expiry is refreshed before use.
const EXPIRY_MARGIN_SECS: u64 = 30;

/// A client this tool registered (RFC 7591) and reuses at that issuer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredClient {
    pub issuer: String,
    pub client_id: String,
}

/// One token set, keyed by issuer, resource and scope set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredToken {
    pub issuer: String,
    #[serde(default)]
    pub resource: Option<String>,
    /// Sorted, without duplicates.
    pub scopes: Vec<String>,
    pub client_id: String,
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Seconds since the epoch; `None` when the server did not say.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

impl StoredToken {
    /// Whether the access token can still be sent (with a margin for clock skew and transit).
    pub fn is_fresh(&self) -> bool {
        self.expires_at
            .is_none_or(|at| now_unix().saturating_add(EXPIRY_MARGIN_SECS) < at)
    }

    /// Whether this token serves a request for `issuer`, `resource` and at least `scopes`.
    fn covers(&self, issuer: &str, resource: Option<&str>, scopes: &[String]) -> bool {
        self.issuer == issuer && self.resource.as_deref() == resource && scopes.iter().all(|s| self.scopes.contains(s))
    }
}

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Store {
    #[serde(default)]
    pub clients: Vec<StoredClient>,
    #[serde(default)]
    pub tokens: Vec<StoredToken>,
}

/// Sorted scope set without duplicates: the store's key.
pub fn scope_set(scopes: &[String]) -> Vec<String> {
    let mut set: Vec<String> = scopes.to_vec();
    set.sort();
    set.dedup();
    set
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Store {
    /// The best stored token for the request: the exact scope set first, else the smallest
    /// superset.
    pub fn find(&self, issuer: &str, resource: Option<&str>, scopes: &[String]) -> Option<&StoredToken> {
        let wanted = scope_set(scopes);
        self.tokens
            .iter()
            .filter(|t| t.covers(issuer, resource, &wanted))
            .min_by_key(|t| t.scopes.len())
    }

    /// Adds `token`, replacing the one with the same key.
    pub fn put(&mut self, token: StoredToken) {
        self.remove(&token.issuer, token.resource.as_deref(), &token.scopes);
        self.tokens.push(token);
    }

    /// Forgets the token with exactly this key; returns it.
    pub fn remove(&mut self, issuer: &str, resource: Option<&str>, scopes: &[String]) -> Option<StoredToken> {
        let key = scope_set(scopes);
        let index = self
            .tokens
            .iter()
            .position(|t| t.issuer == issuer && t.resource.as_deref() == resource && t.scopes == key)?;
        Some(self.tokens.remove(index))
    }

    pub fn client(&self, issuer: &str) -> Option<&StoredClient> {
        self.clients.iter().find(|c| c.issuer == issuer)
    }

    pub fn put_client(&mut self, client: StoredClient) {
        self.clients.retain(|c| c.issuer != client.issuer);
        self.clients.push(client);
    }
}

/// Where the token file lives: `--store`, else `SCOPEGATE_TOKEN_STORE`, else the platform's
/// config directory.
pub fn default_path() -> Result<PathBuf, ClientError> {
    if let Some(path) = std::env::var_os(STORE_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    config_dir()
        .map(|dir| dir.join("scopegate").join("tokens.json"))
        .ok_or_else(|| {
            ClientError::Usage(format!(
                "no config directory (set HOME or XDG_CONFIG_HOME), or pass --store FILE or set {STORE_ENV}"
            ))
        })
}

fn env_dir(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

#[cfg(target_os = "macos")]
fn config_dir() -> Option<PathBuf> {
    env_dir("HOME").map(|home| home.join("Library").join("Application Support"))
}

#[cfg(windows)]
fn config_dir() -> Option<PathBuf> {
    env_dir("APPDATA")
}

#[cfg(not(any(target_os = "macos", windows)))]
fn config_dir() -> Option<PathBuf> {
    env_dir("XDG_CONFIG_HOME").or_else(|| env_dir("HOME").map(|home| home.join(".config")))
}

fn store_error(path: &Path, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Store {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads the file; a missing file is an empty store.
pub fn load(path: &Path) -> Result<Store, ClientError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            store_error(
                path,
                format!("not a scopegate token file ({e}); move it away to start afresh"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
        Err(e) => Err(store_error(path, e)),
    }
}

/// Writes the file readable by its owner only, creating its directory owner-only.
pub fn save(path: &Path, store: &Store) -> Result<(), ClientError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir).map_err(|e| store_error(&dir, e))?;
    let text = serde_json::to_vec_pretty(store).map_err(|e| store_error(path, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = private_file(&temporary)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(store_error(path, e));
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
pub(super) fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
pub(super) fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn token(scopes: &[&str]) -> StoredToken {
        StoredToken {
            issuer: "https://as.example".into(),
            resource: Some("https://api.example".into()),
            scopes: scope_set(&scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            client_id: "c".into(),
            access_token: format!("at-{}", scopes.join("-")),
            refresh_token: None,
            expires_at: None,
        }
    }

    #[test]
    fn finds_the_smallest_covering_scope_set() {
        let mut store = Store::default();
        store.put(token(&["read", "write"]));
        store.put(token(&["read"]));
        let read = ["read".to_string()];
        assert_eq!(
            store
                .find("https://as.example", Some("https://api.example"), &read)
                .unwrap()
                .access_token,
            "at-read"
        );
        let write = ["write".to_string()];
        assert_eq!(
            store
                .find("https://as.example", Some("https://api.example"), &write)
                .unwrap()
                .access_token,
            "at-read-write"
        );
        assert!(store.find("https://as.example", None, &read).is_none());
        store.put(token(&["write", "read"]));
        assert_eq!(store.tokens.len(), 2);
    }

    #[test]
    fn expiry_has_a_margin() {
        let mut t = token(&["read"]);
        assert!(t.is_fresh());
        t.expires_at = Some(now_unix() + 5);
        assert!(!t.is_fresh());
        t.expires_at = Some(now_unix() + 3600);
        assert!(t.is_fresh());
    }
}
