//! `scopegate dev-issuer`: run the development authorization server.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::{DevError, DevIssuer, DevIssuerConfig};

/// Command-line arguments of the development issuer.
#[derive(Args, Clone, Debug)]
pub struct DevIssuerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000", env = "SCOPEGATE_DEV_LISTEN")]
    pub listen: SocketAddr,
    /// Issuer identifier (default: http://<listen address>).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Subject that every authorization is auto-approved for.
    #[arg(long, default_value = "dev-user")]
    pub user: String,
    /// Additional supported scope (repeatable).
    #[arg(long = "extra-scope")]
    pub extra_scope: Vec<String>,
    /// Issue opaque access tokens (resolvable only by introspection).
    #[arg(long)]
    pub opaque: bool,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// Access-token lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    pub token_ttl: u64,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Ask HTTPS clients for a certificate chaining to these CAs (optional for the client);
    /// a token requested with one is bound to it (RFC 8705, `cnf.x5t#S256`).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<std::path::PathBuf>,
}

impl DevIssuerArgs {
    /// The issuer configuration these arguments describe (with the
    /// development endpoints, such as `POST /dev/rotate`, enabled).
    pub fn config(&self) -> DevIssuerConfig {
        DevIssuerConfig {
            issuer: self.issuer.clone(),
            dev_user: self.user.clone(),
            extra_scopes: self.extra_scope.clone(),
            access_token_ttl: Duration::from_secs(self.token_ttl),
            opaque_access_tokens: self.opaque,
            allow_non_loopback: self.allow_non_loopback,
            dev_endpoints: true,
            tls: self
                .tls_cert
                .clone()
                .zip(self.tls_key.clone())
                .map(|(cert_file, key_file)| crate::tls::config::TlsFiles {
                    cert_file,
                    key_file,
                    client_auth: if self.client_ca.is_some() {
                        crate::tls::config::ClientAuth::Optional
                    } else {
                        crate::tls::config::ClientAuth::None
                    },
                    client_ca_file: self.client_ca.clone(),
                }),
            ..DevIssuerConfig::default()
        }
    }
}

/// Serve until `shutdown` completes, printing the issuer and its endpoints.
pub async fn run(args: DevIssuerArgs, shutdown: impl Future<Output = ()>) -> Result<(), DevError> {
    if !args.listen.ip().is_loopback() && !args.allow_non_loopback {
        return Err(DevError::NonLoopback(args.listen));
    }
    let listener = crate::server::bind("development issuer listener", "--listen", args.listen).await?;
    let issuer = DevIssuer::start(listener, args.config()).await?;
    println!("scopegate development authorization server (in-memory, NOT for production)");
    println!("issuer:                 {}", issuer.issuer());
    println!("metadata:               {}", issuer.metadata_url());
    println!("openid configuration:   {}", issuer.openid_configuration_url());
    println!("jwks:                   {}", issuer.jwks_uri());
    println!("authorization endpoint: {}", issuer.authorization_endpoint());
    println!("token endpoint:         {}", issuer.token_endpoint());
    println!("registration endpoint:  {}", issuer.registration_endpoint());
    println!("introspection endpoint: {}", issuer.introspection_endpoint());
    println!("revocation endpoint:    {}", issuer.revocation_endpoint());
    println!("userinfo endpoint:      {}", issuer.userinfo_endpoint());
    println!("device authorization:   {}", issuer.device_authorization_endpoint());
    println!(
        "rotate keys:            POST {}/dev/rotate",
        issuer.issuer().trim_end_matches('/')
    );
    shutdown.await;
    issuer.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: DevIssuerArgs,
    }

    #[test]
    fn parses_flags() {
        let cli = Cli::parse_from([
            "x",
            "--extra-scope",
            "admin",
            "--extra-scope",
            "audit",
            "--opaque",
            "--token-ttl",
            "60",
        ]);
        let config = cli.args.config();
        assert_eq!(config.extra_scopes, ["admin", "audit"]);
        assert!(config.opaque_access_tokens && config.dev_endpoints);
        assert_eq!(config.access_token_ttl, Duration::from_secs(60));
        assert_eq!(cli.args.listen.to_string(), "127.0.0.1:9000");
        assert!(config.tls.is_none());
    }

    #[test]
    fn tls_flags_ask_for_optional_client_certificates() {
        let cli = Cli::parse_from([
            "x",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--client-ca",
            "ca.pem",
        ]);
        let tls = cli
            .args
            .config()
            .tls
            .expect("--tls-cert and --tls-key give TLS settings");
        assert_eq!(tls.client_auth, crate::tls::config::ClientAuth::Optional);
        assert!(cli.args.config().binds_certificates());
        assert!(Cli::try_parse_from(["x", "--tls-cert", "c.pem"]).is_err());
    }
}
