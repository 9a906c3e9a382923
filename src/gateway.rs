//! The long-lived handle behind both listeners: the current [`App`] behind one swap point,
//! and live reload (DESIGN §6, STYLE 6: things that change together swap together).
//!
//! A reload compiles the new file completely before anything changes; a file with any
//! problem is rejected whole, every problem is logged, and the running config stays. On
//! success routes, issuers, limits and the upstream swap at once. Key sets and introspection
//! clients of issuers whose settings did not change are kept (no refetch, no readiness dip);
//! token caches are kept when the issuer settings are unchanged as a whole. Listener
//! addresses, the connection cap, the worker threads and `[listener.tls]` cannot change
//! without a restart: such a change is reported and the rest is applied.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::admission::UpstreamSlots;
use crate::config::{Config, ConfigError};
use crate::forward::UpstreamClient;
use crate::metrics::Metrics;
use crate::policy::{EnforcementMode, RouteSpec};
use crate::token::Authenticator;

/// One generation of the compiled config and what was built from it. A reload swaps in a
/// new `App` as a whole (see [`crate::gateway`]); a request keeps the one it started with.
pub struct App {
    pub config: Config,
    pub metrics: Metrics,
    pub upstream: UpstreamClient,
    /// The cap on requests in flight to the upstream, kept across reloads while its size is.
    pub upstream_slots: Arc<UpstreamSlots>,
    pub auth: Arc<Authenticator>,
    pub mcp: crate::mcp::McpRuntime,
}

impl App {
    pub fn new(config: Config, metrics: Metrics) -> App {
        let upstream = UpstreamClient::new(&config.upstream);
        let auth = Arc::new(Authenticator::new(&config.tokens, metrics.clone()));
        auth.revocations().set_limits(config.admin.revocations);
        let mcp = crate::mcp::McpRuntime::new(&config.mcp);
        App {
            upstream_slots: UpstreamSlots::new(config.upstream.max_concurrent_requests),
            config,
            metrics,
            upstream,
            auth,
            mcp,
        }
    }

    /// Ready to serve protected routes: every issuer has keys.
    pub fn is_ready(&self) -> bool {
        self.auth.is_ready()
    }

    pub fn mode(&self, route: Option<&RouteSpec>) -> EnforcementMode {
        route.and_then(|r| r.mode).unwrap_or(self.config.auth.mode)
    }
}

/// Applies a log filter such as `info` or `scopegate=debug`; set by the binary.
pub type LogReloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct Gateway {
    current: ArcSwap<App>,
    pub metrics: Metrics,
    config_path: Option<PathBuf>,
    log_reloader: Mutex<Option<LogReloader>>,
    refreshers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// One reload at a time (SIGHUP and the file watcher may fire together).
    reloading: Mutex<()>,
    /// This sidecar's part of the fleet (`[fleet]`), fixed at start.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The Shared Signals receiver (`[ssf]`), fixed at start.
    pub ssf: Option<Arc<crate::fleet::ssf::SsfReceiver>>,
}

/// What a successful reload changed, and what it could not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub changed: bool,
    /// Settings that changed in the file but only take effect after a restart.
    pub restart_required: Vec<&'static str>,
}

impl Gateway {
    /// Builds the first generation and starts its key-refresh loops.
    pub fn new(config: Config, metrics: Metrics, config_path: Option<PathBuf>) -> Arc<Gateway> {
        metrics.set_config_hash(&config.source_hash);
        crate::known_series::start_at_zero(&metrics, &config);
        let app = App::new(config, metrics.clone());
        let refreshers = app.auth.spawn_refreshers();
        let (fleet, ssf) = crate::fleet::start(&app.config, &app.auth, &metrics);
        Arc::new(Gateway {
            fleet,
            ssf,
            current: ArcSwap::from_pointee(app),
            metrics,
            config_path,
            log_reloader: Mutex::new(None),
            refreshers: Mutex::new(refreshers),
            reloading: Mutex::new(()),
        })
    }

    /// The current generation; a request holds on to the one it started with.
    pub fn app(&self) -> Arc<App> {
        self.current.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.current.load().is_ready()
    }

    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    pub fn set_log_reloader(&self, reloader: LogReloader) {
        *self.log_reloader.lock().unwrap_or_else(|p| p.into_inner()) = Some(reloader);
    }

    /// Swaps in a compiled config.
    pub fn apply(&self, config: Config) -> ReloadReport {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        self.apply_locked(config)
    }

    /// `apply`, for a caller that holds `reloading` (so a reload reads and applies a file
    /// without another one slipping in between).
    fn apply_locked(&self, mut config: Config) -> ReloadReport {
        let old = self.current.load_full();
        if config.source_hash == old.config.source_hash {
            return ReloadReport::default();
        }
        if let (Some(assertion), Some(previous)) = (&mut config.identity.assertion, &old.config.identity.assertion) {
            Arc::make_mut(assertion).keep_generated_key(previous);
        }
        let mut restart_required = Vec::new();
        if config.listener.address != old.config.listener.address {
            restart_required.push("listener.address");
        }
        if config.admin_address != old.config.admin_address {
            restart_required.push("admin.address");
        }
        if config.listener.max_connections != old.config.listener.max_connections {
            restart_required.push("listener.max_connections");
        }
        if config.listener.worker_threads != old.config.listener.worker_threads {
            restart_required.push("listener.worker_threads");
        }
        // Whether the data listener speaks TLS, from which files and with which client
        // certificate policy, is fixed at start; new contents of the same files are picked
        // up by the certificate watcher (crate::tls::reload).
        if config.listener.tls != old.config.listener.tls {
            restart_required.push("listener.tls");
        }
        // Whether forward-auth listens, and where, is fixed at start; its ingress and trusted
        // peers take effect at once (a removed section trusts no peer).
        if config.forward_auth.as_ref().map(|f| f.listen) != old.config.forward_auth.as_ref().map(|f| f.listen) {
            restart_required.push("forward_auth.listen");
        }
        if config.fleet != old.config.fleet {
            restart_required.push("fleet");
        }
        if config.ssf != old.config.ssf {
            restart_required.push("ssf");
        }
        // The admin listener's limits are fixed when it starts; its revocation bounds are not.
        let (admin, old_admin) = (&config.admin, &old.config.admin);
        if (admin.max_connections, admin.header_read_timeout, admin.idle_timeout)
            != (
                old_admin.max_connections,
                old_admin.header_read_timeout,
                old_admin.idle_timeout,
            )
        {
            restart_required.push("admin.max_connections, admin.header_read_timeout, admin.idle_timeout");
        }
        let upstream = if config.upstream == old.config.upstream {
            old.upstream.clone()
        } else {
            UpstreamClient::new(&config.upstream)
        };
        let upstream_slots = if config.upstream.max_concurrent_requests == old.upstream_slots.size() {
            Arc::clone(&old.upstream_slots)
        } else {
            UpstreamSlots::new(config.upstream.max_concurrent_requests)
        };
        let auth = if config.tokens == old.config.tokens {
            Arc::clone(&old.auth)
        } else {
            Arc::new(Authenticator::reusing(
                &config.tokens,
                self.metrics.clone(),
                Some(&old.auth),
            ))
        };
        auth.revocations().set_limits(config.admin.revocations);
        let new_refreshers = auth.spawn_refreshers();
        let mut refreshers = self.lock_refreshers();
        refreshers.retain(|handle| !handle.is_finished());
        refreshers.extend(new_refreshers);
        drop(refreshers);
        if let Some(level) = config
            .log
            .level
            .as_ref()
            .filter(|_| config.log.level != old.config.log.level)
        {
            self.set_log_level(level);
        }
        self.metrics.set_config_hash(&config.source_hash);
        crate::known_series::start_at_zero(&self.metrics, &config);
        self.current.store(Arc::new(App {
            mcp: crate::mcp::McpRuntime::new(&config.mcp),
            config,
            metrics: self.metrics.clone(),
            upstream,
            upstream_slots,
            auth,
        }));
        ReloadReport {
            changed: true,
            restart_required,
        }
    }

    fn set_log_level(&self, level: &str) {
        let guard = self.log_reloader.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reload) = guard.as_ref() {
            match reload(level) {
                Ok(()) => tracing::info!(level, "log level changed"),
                Err(e) => tracing::warn!(level, error = %e, "log level not changed"),
            }
        }
    }

    fn lock_refreshers(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.refreshers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the config file and applies it; a bad file changes nothing. Counted in
    /// `scopegate_config_reloads_total{result}`.
    ///
    /// # Errors
    /// The file's problems, all of them, when it is rejected.
    pub fn reload_file(&self) -> Result<ReloadReport, ConfigError> {
        let Some(path) = &self.config_path else {
            return Ok(ReloadReport::default());
        };
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        match Config::load(path) {
            Ok(config) => {
                let report = self.apply_locked(config);
                if report.changed {
                    self.metrics.config_reloads.with_label_values(&["success"]).inc();
                    tracing::info!(path = %path.display(), hash = %self.app().config.source_hash, "config reloaded");
                    for setting in &report.restart_required {
                        tracing::warn!(setting, "changed in the config file but needs a restart to take effect");
                    }
                }
                Ok(report)
            }
            Err(e) => {
                self.metrics.config_reloads.with_label_values(&["rejected"]).inc();
                tracing::error!(path = %path.display(), error = %e, "config reload rejected; keeping the running config");
                Err(e)
            }
        }
    }

    /// Polls the config file and reloads when its content changes. Polling (rather than
    /// inotify) sees a Kubernetes ConfigMap update, which swaps a symlink in the directory
    /// instead of writing the file. Runs until the task is aborted.
    pub async fn watch_config(self: Arc<Self>, interval: Duration) {
        let Some(path) = self.config_path.clone() else { return };
        let mut last = std::fs::read(&path).ok();
        loop {
            tokio::time::sleep(interval).await;
            let now = std::fs::read(&path).ok();
            if now.is_some() && now != last {
                last = now;
                let _ = self.reload_file();
            }
        }
    }

    /// Stops the key-refresh loops and the fleet's tasks (on shutdown).
    pub fn stop_refreshers(&self) {
        for refresher in self.lock_refreshers().drain(..) {
            refresher.abort();
        }
        if let Some(fleet) = &self.fleet {
            fleet.stop();
        }
        if let Some(ssf) = &self.ssf {
            ssf.stop();
        }
    }
}
