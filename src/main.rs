//! The `scopegate` binary: a thin CLI over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use scopegate::config::{Config, ConfigError, LogFormat};

/// Every request allocates and frees a few dozen small blocks (header maps, bodies, futures);
/// mimalloc serves them from per-thread pages, which the worker threads never share.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "scopegate",
    version,
    about = "OAuth 2.0 resource-server sidecar for HTTP APIs and MCP servers"
)]
struct Cli {
    /// Config file of `run`, the command when none is given. The commands that read a config
    /// (`run`, `check`, `explain`) also take it after their name.
    #[arg(long, short, value_name = "FILE", env = "SCOPEGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Log level or filter (e.g. `info`, `debug`, `scopegate=debug`); overrides the file.
    #[arg(long, global = true, env = "SCOPEGATE_LOG_LEVEL")]
    log_level: Option<String>,
    /// Log format; overrides the file.
    #[arg(long, global = true, value_enum, env = "SCOPEGATE_LOG_FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run(RunArgs),
    /// Get, use and revoke tokens for a protected URL, as an MCP client would.
    Token(scopegate::client::cli::TokenArgs),
    /// Validate the config, print the compiled route table, and exit non-zero on any problem.
    Check(CheckArgs),
    /// Explain what the proxy would do with one request: canonical path, route, requirement, decision.
    Explain(ExplainArgs),
    /// Run a local authorization server, an echo API and the proxy, with example requests.
    #[cfg(feature = "dev")]
    Demo(scopegate::dev::demo::DemoArgs),
    /// Run only the development authorization server (never for production).
    #[cfg(feature = "dev")]
    DevIssuer(scopegate::dev::cli::DevIssuerArgs),
}

/// `--config`, for the commands that read a config file; `SCOPEGATE_CONFIG` (read as the
/// top-level `--config`) stands in when it is not given.
#[derive(clap::Args, Default)]
struct ConfigFile {
    /// Config file (default: $SCOPEGATE_CONFIG).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Default)]
struct RunArgs {
    #[command(flatten)]
    file: ConfigFile,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    file: ConfigFile,
    /// Also contact every issuer (discovery, JWKS, introspection with the configured client
    /// credentials, each bounded by the issuer's fetch_timeout) and print what each route's
    /// tokens need. Exits non-zero if any issuer is unreachable or misbehaves.
    #[arg(long)]
    online: bool,
}

#[derive(clap::Args)]
#[command(after_help = "Exits 0 whenever the request could be explained; the decision is in the output.")]
struct ExplainArgs {
    #[command(flatten)]
    file: ConfigFile,
    /// HTTP method, e.g. GET.
    method: String,
    /// Request path as the client sends it (a query string is ignored), e.g. /projects/7.
    path: String,
    /// A real access token, validated as the proxy would (fetches keys or introspects);
    /// `-` reads it from standard input.
    #[arg(long, conflicts_with_all = ["scopes", "claims"])]
    token: Option<String>,
    /// Evaluate a hypothetical token of the first issuer, for its audiences, holding these
    /// space-separated scopes, e.g. "read write".
    #[arg(long, conflicts_with = "claims")]
    scopes: Option<String>,
    /// Evaluate a token carrying these claims, as a JSON object, taken as verified (e.g.
    /// '{"iss":"https://as.example","aud":"https://api.example","scope":"read"}').
    #[arg(long)]
    claims: Option<String>,
    /// A request header, `Name: value` (repeatable), e.g. Mcp-Method: tools/call.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The request body (an MCP route with tool rules reads its JSON-RPC calls); `@FILE`
    /// reads it from a file.
    #[arg(long)]
    body: Option<String>,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `scopegate --config FILE demo` would silently ignore FILE: say so instead.
    let config_given = matches.value_source("config") == Some(clap::parser::ValueSource::CommandLine);
    if config_given
        && !matches!(
            cli.command,
            None | Some(Command::Run(_) | Command::Check(_) | Command::Explain(_))
        )
    {
        eprintln!("scopegate: --config is read by run, check and explain only; this command takes no config file");
        return ExitCode::from(2);
    }
    let run_by_default = Command::Run(RunArgs::default());
    let result = match cli.command.as_ref().unwrap_or(&run_by_default) {
        Command::Check(args) => check(&cli, args),
        Command::Explain(args) => explain(&cli, args),
        Command::Run(args) => run(&cli, args),
        Command::Token(args) => token(&cli, args),
        #[cfg(feature = "dev")]
        Command::Demo(args) => demo(&cli, args),
        #[cfg(feature = "dev")]
        Command::DevIssuer(args) => dev_issuer(&cli, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scopegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn token(cli: &Cli, args: &scopegate::client::cli::TokenArgs) -> anyhow::Result<ExitCode> {
    // Warnings only, unless asked: stdout carries the token, stderr talks to a person.
    let quiet = scopegate::config::FileLogSettings {
        level: Some("warn".into()),
        format: None,
    };
    let _ = init_logging(cli, &quiet);
    Ok(runtime()?.block_on(scopegate::client::cli::run(args.clone()))?)
}

/// The command's own `--config`, else the top-level one (or `SCOPEGATE_CONFIG`).
fn config_path<'a>(cli: &'a Cli, file: &'a ConfigFile) -> anyhow::Result<&'a PathBuf> {
    file.config
        .as_ref()
        .or(cli.config.as_ref())
        .context("no config file: pass --config FILE or set SCOPEGATE_CONFIG (see config.example.toml)")
}

fn check(cli: &Cli, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(cli, &args.file)?;
    match scopegate::explain::Loaded::load(path) {
        Ok(loaded) => {
            let config = &loaded.config;
            scopegate::outln!("{}: ok", path.display());
            scopegate::outln!(
                "listener {}  admin {}  upstream {}://{}",
                config.listener.address,
                config.admin_address,
                config.upstream.scheme,
                config.upstream.authority
            );
            if let Some(tls) = &config.listener.tls {
                println!("{}", tls.describe());
            }
            if config.upstream.scheme == http::uri::Scheme::HTTPS {
                match (&config.upstream.ca_file, &config.upstream.ca) {
                    (Some(file), Some(ca)) => println!(
                        "upstream TLS: TLS 1.2+, certificate verified against the {} CA certificate(s) in {file} only",
                        ca.len()
                    ),
                    _ => println!("upstream TLS: TLS 1.2+, certificate verified against the system trust store"),
                }
            }
            if let Some(forward_auth) = &config.forward_auth {
                let peers: Vec<String> = forward_auth.trusted_peers.iter().map(ToString::to_string).collect();
                scopegate::outln!(
                    "forward-auth {}  ingress {}  trusted peers {}{}",
                    forward_auth.listen,
                    forward_auth.ingress.label(),
                    peers.join(", "),
                    forward_auth
                        .path_prefix
                        .as_deref()
                        .map(|p| format!("  path prefix {p}"))
                        .unwrap_or_default()
                );
            }
            for issuer in &config.tokens.issuers {
                let algs: Vec<&str> = issuer.algorithms.iter().map(|a| a.name()).collect();
                scopegate::outln!(
                    "issuer {}  audiences {:?}  algorithms {:?}",
                    issuer.issuer,
                    issuer.audiences,
                    algs
                );
                if let Some(caution) = issuer.typ_caution() {
                    scopegate::outln!("  note: {caution}");
                }
                if let (Some(file), Some(ca)) = (&issuer.ca_file, &issuer.extra_roots) {
                    println!(
                        "  trusts the system's CAs and the {} CA certificate(s) in {file}",
                        ca.len()
                    );
                }
            }
            if let Some(cors) = config.cors.describe_refusals() {
                scopegate::outln!("{cors}");
            }
            scopegate::outln!();
            scopegate::out!("{}", config.routes.describe());
            let bindings = loaded.bindings();
            if !bindings.is_empty() {
                scopegate::outln!();
                scopegate::outln!("audience binding and MCP tool rules:");
                for line in bindings {
                    scopegate::outln!("  {line}");
                }
            }
            let metadata = loaded.resource_metadata();
            if !metadata.is_empty() {
                scopegate::outln!();
                scopegate::outln!("protected-resource metadata (RFC 9728), named by 401 challenges:");
                for line in metadata {
                    scopegate::outln!("  {line}");
                }
            }
            if args.online {
                return check_online(&loaded);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ConfigError::Invalid(issues)) => {
            eprintln!("{}: {} problem(s):", path.display(), issues.len());
            for issue in issues {
                eprintln!("  - {issue}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check_online(loaded: &scopegate::explain::Loaded) -> anyhow::Result<ExitCode> {
    use scopegate::online::Progress;
    scopegate::outln!();
    let report = runtime()?.block_on(scopegate::online::check_online(loaded, |progress| match progress {
        Progress::Checking { issuer, index, total } => {
            scopegate::outln!("[{index}/{total}] checking issuer {issuer} ...")
        }
        Progress::Done(result) => scopegate::out!("{result}"),
    }));
    scopegate::outln!();
    scopegate::outln!("what a token needs, per route:");
    for line in &report.routes {
        scopegate::outln!("  {line}");
    }
    scopegate::outln!();
    scopegate::outln!("{}", report.summary());
    if report.is_ok() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} problem(s):", report.problems().len());
    for problem in report.problems() {
        eprintln!("  - {problem}");
    }
    Ok(ExitCode::FAILURE)
}

fn explain(cli: &Cli, args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    use scopegate::explain::Credentials;
    let path = config_path(cli, &args.file)?;
    let loaded = scopegate::explain::Loaded::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let credentials = match (&args.token, &args.scopes) {
        (Some(token), _) if token == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the token from stdin")?;
            Credentials::Token(text.trim().to_string())
        }
        (Some(token), _) => Credentials::Token(token.clone()),
        (None, Some(scopes)) => Credentials::Scopes(scopes.split_whitespace().map(str::to_string).collect()),
        (None, None) => match &args.claims {
            Some(json) => match serde_json::from_str(json) {
                Ok(serde_json::Value::Object(claims)) => Credentials::Claims(claims),
                _ => anyhow::bail!("--claims must be a JSON object, e.g. '{{\"iss\":\"https://as.example\"}}'"),
            },
            None => Credentials::None,
        },
    };
    let mut request = scopegate::explain::RequestSpec::new(&args.method, &args.path);
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("--header {header:?}: write it as `Name: value`"))?;
        if name.trim().eq_ignore_ascii_case("host") {
            // The given Host stands in for the default one, as a client would send it.
            request.host = None;
        }
        request
            .headers
            .push((name.trim().to_string(), value.trim().to_string()));
    }
    request.body = match args.body.as_deref() {
        Some(file) if file.starts_with('@') => {
            Some(std::fs::read(&file[1..]).with_context(|| format!("cannot read the body from {}", &file[1..]))?)
        }
        Some(text) => Some(text.as_bytes().to_vec()),
        None => None,
    };
    let explanation = runtime()?.block_on(scopegate::explain::explain_request(&loaded, &request, &credentials));
    scopegate::out!("{explanation}");
    Ok(ExitCode::SUCCESS)
}

/// Sets up logging; returns a function that changes the filter at runtime (config reload).
fn init_logging(cli: &Cli, file: &scopegate::config::FileLogSettings) -> scopegate::gateway::LogReloader {
    use tracing_subscriber::prelude::*;
    let level = cli
        .log_level
        .clone()
        .or_else(|| file.level.clone())
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&level).unwrap_or_else(|_| {
        eprintln!("scopegate: invalid log level {level:?}; using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // Colour only for a person at a terminal: a file, a pipe or a log collector gets plain
    // text (and so does anyone who sets NO_COLOR, https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match cli.log_format.or(file.format).unwrap_or_default() {
        LogFormat::Json => registry.with(stderr.json().flatten_event(true)).init(),
        LogFormat::Text => registry.with(stderr).init(),
    }
    // A level given on the command line or in the environment wins over the file, also on reload.
    let pinned = cli.log_level.is_some();
    Box::new(move |level: &str| {
        if pinned {
            return Err("the level is set by --log-level or SCOPEGATE_LOG_LEVEL".into());
        }
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let path = config_path(cli, &args.file)?;
    let config = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let log_reloader = init_logging(cli, &config.log);
    // Signals, reloads, key refreshes and the admin plane; the data plane has its own threads.
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    control.block_on(async move {
        let reload = config.reload;
        let running = scopegate::server::start(config, Some(path.clone())).await?;
        running.app.set_log_reloader(log_reloader);
        match running.forward_auth_addr {
            Some(forward_auth) => tracing::info!(
                listen = %running.addr, admin = %running.admin_addr, %forward_auth, "scopegate started"
            ),
            None => tracing::info!(listen = %running.addr, admin = %running.admin_addr, "scopegate started"),
        }
        let watcher = reload
            .watch
            .then(|| tokio::spawn(std::sync::Arc::clone(&running.app).watch_config(reload.interval)));
        let hangups = tokio::spawn(reload_on_sighup(std::sync::Arc::clone(&running.app)));
        shutdown_signal().await;
        hangups.abort();
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown().await;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(feature = "dev")]
fn demo(cli: &Cli, args: &scopegate::dev::demo::DemoArgs) -> anyhow::Result<ExitCode> {
    let _ = init_logging(cli, &Default::default());
    runtime()?.block_on(async move {
        let demo = scopegate::dev::demo::Demo::start(args)
            .await
            .map_err(|e| anyhow::anyhow!("{e}; if the port is taken, pass --listen 127.0.0.1:0 or another address"))?;
        if args.check {
            let (lines, ok) = demo.self_check().await;
            for line in &lines {
                scopegate::outln!("{line}");
            }
            let passed = lines.iter().filter(|l| l.starts_with("ok")).count();
            scopegate::outln!("demo check: {passed} passed, {} failed", lines.len() - passed);
            demo.shutdown().await;
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        scopegate::outln!("{}", demo.instructions());
        shutdown_signal().await;
        demo.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(feature = "dev")]
fn dev_issuer(cli: &Cli, args: &scopegate::dev::cli::DevIssuerArgs) -> anyhow::Result<ExitCode> {
    let _ = init_logging(cli, &Default::default());
    runtime()?.block_on(scopegate::dev::cli::run(args.clone(), shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP re-reads the config file.
async fn reload_on_sighup(gateway: std::sync::Arc<scopegate::gateway::Gateway>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let _ = gateway.reload_file();
        }
    }
    #[cfg(not(unix))]
    drop(gateway);
}

/// SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
