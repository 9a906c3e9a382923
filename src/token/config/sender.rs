//! `[dpop]` and `[cert_binding]`: how sender-constrained tokens are proven (RFC 9449 DPoP
//! proofs, RFC 8705 certificate-bound tokens), compiled into [`DpopConfig`] and
//! [`CertBindingConfig`]. A route's own `dpop` mode is read with `[[route]]`.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

use crate::config::problems::Issues;
use crate::token::jwk::Algorithm;

/// Whether a route takes DPoP-bound tokens (RFC 9449).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpopMode {
    /// `Authorization: DPoP` is not accepted; DPoP-bound tokens are refused (as every
    /// token with a `cnf` scopegate cannot check).
    #[default]
    Off,
    /// Bearer tokens and DPoP-bound tokens with a proof.
    Allowed,
    /// Only DPoP-bound tokens with a proof.
    Required,
}

impl DpopMode {
    /// The name written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            DpopMode::Off => "off",
            DpopMode::Allowed => "allowed",
            DpopMode::Required => "required",
        }
    }
}

/// `[dpop]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDpop {
    /// The mode of every route without its own `dpop`.
    #[serde(default)]
    pub mode: DpopMode,
    /// Proof signature algorithms accepted (asymmetric only).
    #[serde(default = "defaults::algorithms")]
    pub algorithms: Vec<String>,
    /// How old a proof's `iat` may be.
    #[serde(default = "defaults::max_age")]
    pub max_age: String,
    /// Clock skew allowed on `iat`, both ways.
    #[serde(default = "defaults::leeway")]
    pub leeway: String,
    /// Bound on remembered proof `jti`s (replay detection).
    #[serde(default = "defaults::replay_cache_entries")]
    pub replay_cache_entries: u64,
    /// RFC 9449 §8: require a server-provided nonce in every proof.
    #[serde(default)]
    pub use_nonce: bool,
    /// How long a nonce is good for (it stays good for at most twice this).
    #[serde(default = "defaults::nonce_lifetime")]
    pub nonce_lifetime: String,
}

impl Default for FileDpop {
    fn default() -> Self {
        FileDpop {
            mode: DpopMode::Off,
            algorithms: defaults::algorithms(),
            max_age: defaults::max_age(),
            leeway: defaults::leeway(),
            replay_cache_entries: defaults::replay_cache_entries(),
            use_nonce: false,
            nonce_lifetime: defaults::nonce_lifetime(),
        }
    }
}

/// Validated `[dpop]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopConfig {
    pub mode: DpopMode,
    pub algorithms: Vec<Algorithm>,
    pub max_age: Duration,
    pub leeway: Duration,
    pub replay_cache_entries: u64,
    /// `Some(lifetime)` when proofs must carry a server nonce.
    pub nonce_lifetime: Option<Duration>,
    /// `algorithms` as a challenge's `algs` (RFC 9449 §7.1), space-separated.
    pub algs: String,
}

impl Default for DpopConfig {
    fn default() -> Self {
        DpopConfig::compile(&FileDpop::default(), &mut Issues::default())
    }
}

impl DpopConfig {
    pub fn compile(file: &FileDpop, issues: &mut Issues) -> DpopConfig {
        let mut algorithms = Vec::new();
        for (i, name) in file.algorithms.iter().enumerate() {
            match Algorithm::from_name(name) {
                Some(alg) if !algorithms.contains(&alg) => algorithms.push(alg),
                Some(_) => {}
                None => issues.push(
                    format!("dpop.algorithms[{i}]"),
                    format!("{name:?} is not an accepted proof algorithm (asymmetric JWS only: ES256, ES384, RS256, PS256, EdDSA, ...)"),
                ),
            }
        }
        if file.algorithms.is_empty() {
            issues.push("dpop.algorithms", "at least one algorithm is needed to verify proofs");
        }
        let max_age = issues.duration("dpop.max_age", &file.max_age, Duration::from_secs(60));
        if max_age.is_zero() || max_age > Duration::from_secs(3600) {
            issues.push(
                "dpop.max_age",
                "must be between 1s and 1h: proofs are meant to be fresh",
            );
        }
        let leeway = issues.duration("dpop.leeway", &file.leeway, Duration::from_secs(5));
        if leeway > Duration::from_secs(300) {
            issues.push("dpop.leeway", "must be at most 5m");
        }
        if !(1..=10_000_000).contains(&file.replay_cache_entries) {
            issues.push(
                "dpop.replay_cache_entries",
                "must be between 1 and 10000000 (memory grows with it)",
            );
        }
        let nonce_lifetime = issues.duration("dpop.nonce_lifetime", &file.nonce_lifetime, Duration::from_secs(60));
        if nonce_lifetime < Duration::from_secs(1) || nonce_lifetime > Duration::from_secs(3600) {
            issues.push("dpop.nonce_lifetime", "must be between 1s and 1h");
        }
        DpopConfig {
            mode: file.mode,
            algs: algorithms.iter().map(Algorithm::name).collect::<Vec<_>>().join(" "),
            algorithms,
            max_age,
            leeway,
            replay_cache_entries: file.replay_cache_entries,
            nonce_lifetime: file.use_nonce.then_some(nonce_lifetime),
        }
    }

    /// What a challenge says of DPoP on a route in `mode`: the mode and the `algs`
    /// accepted, `None` where DPoP is off.
    pub fn challenge(&self, mode: DpopMode) -> Option<(DpopMode, &str)> {
        (mode != DpopMode::Off).then_some((mode, self.algs.as_str()))
    }

    /// The `algs` of a DPoP challenge and `dpop_signing_alg_values_supported`.
    pub fn algorithm_names(&self) -> Vec<&'static str> {
        self.algorithms.iter().map(Algorithm::name).collect()
    }
}

/// How a forwarded client certificate is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertHeaderFormat {
    /// Envoy's `x-forwarded-client-cert`: `Hash=<hex SHA-256 of the DER>` or
    /// `Cert="<URL-encoded PEM>"`, of the last element.
    #[default]
    EnvoyXfcc,
    /// A URL-encoded PEM certificate, as nginx's `$ssl_client_escaped_cert`.
    PemUrlEncoded,
}

/// `[cert_binding]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCertBinding {
    /// The header a TLS-terminating proxy puts the client certificate in.
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub format: CertHeaderFormat,
    /// CIDRs of the proxies trusted to set `header`; from anyone else it is removed.
    #[serde(default)]
    pub trusted_peers: Vec<String>,
}

/// Validated `[cert_binding]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertBindingConfig {
    /// `None`: no forwarded certificate is read (and nothing is stripped).
    pub header: Option<HeaderName>,
    pub format: CertHeaderFormat,
    pub trusted_peers: Vec<PeerNet>,
}

impl CertBindingConfig {
    pub fn compile(file: &FileCertBinding, issues: &mut Issues) -> CertBindingConfig {
        let header = file.header.as_ref().and_then(|name| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| issues.push("cert_binding.header", format!("{name:?} is not a header name")))
                .ok()
        });
        let mut trusted_peers = Vec::new();
        for (i, text) in file.trusted_peers.iter().enumerate() {
            match PeerNet::parse(text) {
                Some(net) => trusted_peers.push(net),
                None => issues.push(
                    format!("cert_binding.trusted_peers[{i}]"),
                    format!("{text:?} is not an address or CIDR, e.g. \"10.0.0.0/8\" or \"::1/128\""),
                ),
            }
        }
        if header.is_some() && file.trusted_peers.is_empty() {
            issues.push(
                "cert_binding.trusted_peers",
                "name the proxies that set the certificate header; from any other peer it is removed, so without them it is never read",
            );
        }
        if header.is_none() && !file.trusted_peers.is_empty() {
            issues.push(
                "cert_binding.header",
                "trusted_peers without a header: name the header they set",
            );
        }
        CertBindingConfig {
            header,
            format: file.format,
            trusted_peers,
        }
    }

    /// Whether `peer` may set the certificate header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted_peers.iter().any(|net| net.contains(peer))
    }
}

/// An address range, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerNet {
    addr: IpAddr,
    prefix: u8,
}

impl PeerNet {
    /// `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
    pub fn parse(text: &str) -> Option<PeerNet> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, Some(prefix.parse::<u8>().ok()?)),
            None => (text.parse::<IpAddr>().ok()?, None),
        };
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        (prefix <= width).then_some(PeerNet { addr, prefix })
    }

    /// Whether `peer` is in the range (an IPv4-mapped IPv6 peer counts as its IPv4 address).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let bits = |addr: IpAddr| -> u128 {
            match addr {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        let peer = peer.to_canonical();
        if peer.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
        bits(peer) & mask == bits(self.addr) & mask
    }
}

mod defaults {
    pub fn algorithms() -> Vec<String> {
        ["ES256", "ES384", "RS256", "PS256", "EdDSA"].map(String::from).to_vec()
    }
    pub fn max_age() -> String {
        "60s".into()
    }
    pub fn leeway() -> String {
        "5s".into()
    }
    pub fn replay_cache_entries() -> u64 {
        100_000
    }
    pub fn nonce_lifetime() -> String {
        "60s".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_nets() {
        let net = PeerNet::parse("10.1.0.0/16").expect("a CIDR");
        assert!(net.contains("10.1.200.3".parse().expect("an address")));
        assert!(!net.contains("10.2.0.1".parse().expect("an address")));
        assert!(net.contains("::ffff:10.1.0.9".parse().expect("an address")));
        let host = PeerNet::parse("127.0.0.1").expect("an address");
        assert!(host.contains("127.0.0.1".parse().expect("an address")));
        assert!(!host.contains("127.0.0.2".parse().expect("an address")));
        assert!(
            PeerNet::parse("0.0.0.0/0")
                .expect("all")
                .contains("8.8.8.8".parse().expect("an address"))
        );
        assert!(PeerNet::parse("10.0.0.0/33").is_none());
        assert!(PeerNet::parse("ten/8").is_none());
    }

    #[test]
    fn dpop_config_problems_are_reported() {
        let mut issues = Issues::default();
        let file = FileDpop {
            algorithms: vec!["HS256".into(), "none".into()],
            max_age: "0s".into(),
            ..FileDpop::default()
        };
        DpopConfig::compile(&file, &mut issues);
        assert_eq!(issues.count(), 3);
    }
}
