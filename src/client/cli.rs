//! `scopegate token`: its arguments and what each subcommand does. The binary only parses
//! and dispatches here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::error::ClientError;
use super::flows::{self, GrantChoice, TokenRequest};
use super::grants::Prompt;
use super::process;
use super::store::{self, STORE_ENV};

/// Get, use and revoke OAuth tokens for a protected API, as an MCP client would.
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(clap::Subcommand, Debug, Clone)]
enum TokenCommand {
    /// Print an access token for a protected URL (or an issuer URL): stored, refreshed, or new.
    Get(GetArgs),
    /// Run curl on URL with the token in an `Authorization` header; on a 403
    /// `insufficient_scope` get the challenged scopes and run it once more.
    Curl(CurlArgs),
    /// Run a command with the token in an environment variable.
    Exec(ExecArgs),
    /// Revoke the stored tokens of URL (RFC 7009) and forget them.
    Revoke(RevokeArgs),
    /// List the stored tokens (never the tokens themselves).
    List(StoreArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct StoreArgs {
    /// The token file (default: the platform's config directory, e.g.
    /// $XDG_CONFIG_HOME/scopegate/tokens.json).
    #[arg(long, env = STORE_ENV)]
    store: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum Grant {
    /// Client credentials with a secret; else the device grant when no browser is available
    /// and the server offers it; else authorization code.
    Auto,
    /// Authorization code with PKCE through a loopback redirect.
    Code,
    /// The device authorization grant (RFC 8628).
    Device,
    /// Client credentials (needs --client-id and a secret).
    ClientCredentials,
}

#[derive(clap::Args, Debug, Clone)]
struct TokenOptions {
    /// A scope to request (repeatable, or space-separated); default: the scopes the 401
    /// challenge or the metadata names.
    #[arg(long = "scope", short = 's')]
    scopes: Vec<String>,
    /// RFC 8707 resource indicator; default: the protected resource's identifier.
    #[arg(long)]
    resource: Option<String>,
    /// The authorization server (issuer URL): one of several the resource lists, or the one
    /// to use when the resource publishes no RFC 9728 metadata (an API without `[[resource]]`).
    #[arg(long)]
    issuer: Option<String>,
    /// A client registered at the authorization server (default: register one, RFC 7591).
    #[arg(long)]
    client_id: Option<String>,
    /// File holding the client secret (client credentials).
    #[arg(long, conflicts_with = "client_secret_env")]
    client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret (client credentials).
    #[arg(long)]
    client_secret_env: Option<String>,
    /// How to get a new token.
    #[arg(long, value_enum, default_value = "auto")]
    grant: Grant,
    /// Print the authorization URL instead of opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// How long to wait for the sign-in (redirect or device approval), e.g. 90s or 5m.
    #[arg(long, default_value = "5m", value_parser = duration)]
    timeout: Duration,
    /// Get a new token even when a stored one would do.
    #[arg(long)]
    fresh: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct GetArgs {
    /// The protected URL (discovery as an MCP client does it), or an issuer URL.
    url: String,
    #[command(flatten)]
    options: TokenOptions,
}

#[derive(clap::Args, Debug, Clone)]
struct CurlArgs {
    /// Do not get a wider token and repeat the request on a 403 `insufficient_scope`.
    #[arg(long)]
    no_step_up: bool,
    #[command(flatten)]
    options: TokenOptions,
    /// The protected URL.
    url: String,
    /// Further curl arguments (e.g. -X POST -d @body.json).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    curl_args: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
struct ExecArgs {
    /// The environment variable that carries the token.
    #[arg(long, default_value = "SCOPEGATE_ACCESS_TOKEN")]
    env_var: String,
    #[command(flatten)]
    options: TokenOptions,
    /// The protected URL.
    url: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args, Debug, Clone)]
struct RevokeArgs {
    /// The protected URL or issuer whose tokens to revoke.
    #[arg(required_unless_present = "all")]
    url: Option<String>,
    /// Revoke every stored token.
    #[arg(long, conflicts_with = "url")]
    all: bool,
    #[command(flatten)]
    options: TokenOptions,
}

fn duration(text: &str) -> Result<Duration, String> {
    crate::config::units::parse_duration(text)
}

/// How long a call to the authorization server or the protected URL may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a `scopegate token` subcommand.
pub async fn run(args: TokenArgs) -> Result<ExitCode, ClientError> {
    let http = crate::http_client::http_client(HTTP_TIMEOUT, None);
    match args.command {
        TokenCommand::Get(get) => {
            let request = request(&get.url, &get.options)?;
            let target = flows::resolve(&http, &request).await?;
            let obtained = flows::obtain(&http, &request, target, &prompter(&get.options)).await?;
            eprintln!("scopegate: token {} ({})", describe(&obtained.token), obtained.how);
            crate::outln!("{}", obtained.token.access_token);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Curl(curl) => {
            let request = request(&curl.url, &curl.options)?;
            process::curl(
                &http,
                request,
                &curl.curl_args,
                !curl.no_step_up,
                &prompter(&curl.options),
            )
            .await
        }
        TokenCommand::Exec(exec) => {
            let request = request(&exec.url, &exec.options)?;
            let target = flows::resolve(&http, &request).await?;
            let obtained = flows::obtain(&http, &request, target, &prompter(&exec.options)).await?;
            process::exec(&exec.command, &exec.env_var, &obtained.token.access_token)
        }
        TokenCommand::Revoke(revoke) => {
            let count = match &revoke.url {
                Some(url) => {
                    let request = request(url, &revoke.options)?;
                    let target = flows::resolve(&http, &request).await?;
                    flows::revoke(&http, &request, &target).await?
                }
                None => flows::revoke_all(&http, &request("", &revoke.options)?).await?,
            };
            eprintln!("scopegate: revoked and forgot {count} stored token(s)");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List(args) => {
            let path = store_path(&args)?;
            let stored = store::load(&path)?;
            for token in &stored.tokens {
                crate::outln!("{}", describe(token));
            }
            if stored.tokens.is_empty() {
                eprintln!("scopegate: no stored tokens in {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn store_path(args: &StoreArgs) -> Result<PathBuf, ClientError> {
    match &args.store {
        Some(path) => Ok(path.clone()),
        None => store::default_path(),
    }
}

fn request(url: &str, options: &TokenOptions) -> Result<TokenRequest, ClientError> {
    let client_secret = match (&options.client_secret_file, &options.client_secret_env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ClientError::Usage(format!("--client-secret-file {}: {e}", path.display())))?;
            Some(text.trim().to_string())
        }
        (None, Some(name)) => Some(
            std::env::var(name)
                .map_err(|_| ClientError::Usage(format!("--client-secret-env {name}: the variable is not set")))?,
        ),
        (None, None) => None,
    };
    if client_secret.as_deref().is_some_and(str::is_empty) {
        return Err(ClientError::Usage("the client secret is empty".into()));
    }
    if client_secret.is_some() && options.client_id.is_none() {
        return Err(ClientError::Usage("a client secret needs --client-id".into()));
    }
    let grant = match options.grant {
        Grant::Auto => GrantChoice::Auto,
        Grant::Code => GrantChoice::AuthorizationCode,
        Grant::Device => GrantChoice::Device,
        Grant::ClientCredentials => GrantChoice::ClientCredentials,
    };
    Ok(TokenRequest {
        url: url.to_string(),
        issuer: options.issuer.clone(),
        scopes: options
            .scopes
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_string)
            .collect(),
        resource: options.resource.clone(),
        client_id: options.client_id.clone(),
        client_secret,
        grant,
        // --no-browser asks for the URL to be printed: the code flow, not the device grant.
        device_preferred: !options.no_browser && !process::browser_available(),
        timeout: options.timeout,
        store: store_path(&options.store)?,
        fresh: options.fresh,
    })
}

/// What is said to the person at the terminal (on stderr: stdout carries the token).
fn prompter(options: &TokenOptions) -> impl Fn(&Prompt<'_>) + use<> {
    let open = !options.no_browser;
    move |prompt: &Prompt<'_>| match prompt {
        Prompt::Authorize { url } => {
            if open && process::open_browser(url) {
                eprintln!("scopegate: opened the browser to sign in; if it did not open, visit:");
            } else {
                eprintln!("scopegate: to sign in, open this URL in a browser on this machine:");
            }
            eprintln!("{url}");
        }
        Prompt::Device {
            uri,
            user_code,
            complete,
        } => {
            eprintln!("scopegate: to sign in, visit {uri} and enter the code {user_code}");
            if let Some(complete) = complete {
                eprintln!("scopegate: or open {complete}");
            }
        }
    }
}

fn describe(token: &store::StoredToken) -> String {
    let expiry = match token.expires_at {
        Some(at) if at > store::now_unix() => format!("expires in {} s", at - store::now_unix()),
        Some(_) => "expired".to_string(),
        None => "no expiry given".to_string(),
    };
    format!(
        "issuer {}  resource {}  scope {:?}  {expiry}{}",
        token.issuer,
        token.resource.as_deref().unwrap_or("-"),
        token.scopes.join(" "),
        if token.refresh_token.is_some() {
            "  refreshable"
        } else {
            ""
        }
    )
}
