//! `[forward_auth]`: the listener an ingress asks for decisions, which ingress it is (that
//! fixes which headers name the original request), and the peers allowed to ask.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::config::problems::Issues;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForwardAuth {
    /// Address of the forward-auth listener, e.g. "127.0.0.1:9191".
    pub listen: String,
    /// `nginx`, `traefik` or `envoy`.
    pub ingress: Ingress,
    /// Addresses (`10.0.0.7`) and CIDR blocks (`10.0.0.0/8`) allowed to ask.
    #[serde(default)]
    pub trusted_peers: Vec<String>,
    /// Envoy only: the `path_prefix` of its `http_service`, removed from the path it sends.
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// The ingress in front, and so the way it names the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ingress {
    /// nginx `auth_request`: a GET subrequest; `X-Original-Method`, `X-Original-URI` and
    /// `X-Forwarded-Host`, set by `proxy_set_header`.
    Nginx,
    /// Traefik `ForwardAuth`: `X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host`.
    Traefik,
    /// Envoy HTTP `ext_authz`: the request's own method, `Host` and path (after
    /// `path_prefix`).
    Envoy,
}

impl Ingress {
    pub fn label(self) -> &'static str {
        match self {
            Ingress::Nginx => "nginx",
            Ingress::Traefik => "traefik",
            Ingress::Envoy => "envoy",
        }
    }
}

/// A compiled `[forward_auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuthConfig {
    pub listen: SocketAddr,
    pub ingress: Ingress,
    pub trusted_peers: Vec<PeerBlock>,
    /// Starts with `/` and does not end with one; `None` for no prefix.
    pub path_prefix: Option<String>,
}

impl ForwardAuthConfig {
    /// Whether `peer` may ask for decisions (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_peers.iter().any(|block| block.contains(peer))
    }
}

/// An address block: a network address and the length of its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerBlock {
    network: IpAddr,
    prefix: u8,
}

impl PeerBlock {
    /// Parses `10.0.0.7` (one address) or `10.0.0.0/8`; the host bits must be zero.
    pub fn parse(text: &str) -> Result<PeerBlock, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block, e.g. \"10.0.0.0/8\" or \"::1\""))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
        };
        if prefix == 0 {
            return Err(format!(
                "{text:?} trusts every address: anyone could then name the original request; list the ingress's addresses"
            ));
        }
        let block = PeerBlock { network, prefix };
        if mask(network, prefix) != bits_of(network) {
            return Err(format!("{text:?} has host bits set; write the network address"));
        }
        Ok(block)
    }

    fn contains(self, peer: IpAddr) -> bool {
        peer.is_ipv4() == self.network.is_ipv4() && mask(peer, self.prefix) == bits_of(self.network)
    }
}

impl std::fmt::Display for PeerBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn bits_of(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address with every bit past `prefix` cleared.
fn mask(address: IpAddr, prefix: u8) -> u128 {
    let width = if address.is_ipv4() { 32 } else { 128 };
    let host_bits = u32::from(width - prefix);
    let bits = bits_of(address);
    if host_bits >= 128 {
        0
    } else {
        bits >> host_bits << host_bits
    }
}

/// Compiles `[forward_auth]`; `None` when the section is left out (no listener).
pub fn compile_forward_auth(file: Option<&FileForwardAuth>, issues: &mut Issues) -> Option<ForwardAuthConfig> {
    let file = file?;
    let listen = file.listen.parse().unwrap_or_else(|_| {
        issues.push(
            "forward_auth.listen",
            format!("{:?} is not an IP:port address, e.g. \"127.0.0.1:9191\"", file.listen),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });
    if file.trusted_peers.is_empty() {
        issues.push(
            "forward_auth.trusted_peers",
            "must list the addresses of the ingress (e.g. [\"10.0.0.0/8\"]): only they may ask, so with none every request would be refused",
        );
    }
    let mut trusted_peers = Vec::new();
    for (i, text) in file.trusted_peers.iter().enumerate() {
        match PeerBlock::parse(text.trim()) {
            Ok(block) => trusted_peers.push(block),
            Err(message) => issues.push(format!("forward_auth.trusted_peers[{i}]"), message),
        }
    }
    let path_prefix = match (&file.path_prefix, file.ingress) {
        (None, _) => None,
        (Some(prefix), Ingress::Envoy) => {
            let trimmed = prefix.trim_end_matches('/');
            let plain = trimmed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
            if !trimmed.starts_with('/') || !plain || trimmed.contains("//") {
                issues.push(
                    "forward_auth.path_prefix",
                    format!("{prefix:?} must be a plain absolute path, the path_prefix of Envoy's http_service, e.g. \"/ext_authz\""),
                );
            }
            Some(trimmed.to_string()).filter(|p| !p.is_empty())
        }
        (Some(_), ingress) => {
            issues.push(
                "forward_auth.path_prefix",
                format!(
                    "applies to ingress = \"envoy\" only; {} names the original URI in a header",
                    ingress.label()
                ),
            );
            None
        }
    };
    Some(ForwardAuthConfig {
        listen,
        ingress: file.ingress,
        trusted_peers,
        path_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a valid test value")
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        let block = PeerBlock::parse("10.1.0.0/16").expect("a valid test value");
        assert!(block.contains(ip("10.1.200.3")));
        assert!(!block.contains(ip("10.2.0.1")));
        assert!(!block.contains(ip("::1")));
        let one = PeerBlock::parse("127.0.0.1").expect("a valid test value");
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let v6 = PeerBlock::parse("fd00::/8").expect("a valid test value");
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let config = ForwardAuthConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ingress: Ingress::Nginx,
            trusted_peers: vec![PeerBlock::parse("127.0.0.1").expect("a valid test value")],
            path_prefix: None,
        };
        assert!(config.trusts(ip("::ffff:127.0.0.1")));
        assert!(!config.trusts(ip("::ffff:127.0.0.2")));
    }

    #[test]
    fn bad_blocks_are_refused() {
        for text in [
            "0.0.0.0/0",
            "::/0",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "host.example",
            "10.0.0.0/x",
        ] {
            assert!(PeerBlock::parse(text).is_err(), "{text}");
        }
    }
}
