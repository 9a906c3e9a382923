//! Listeners: the data plane (HTTP/1.1 and h2c on one port, or HTTP/1.1 and h2 over TLS
//! with `[listener.tls]`: see [`crate::tls::acceptor`]), the forward-auth listener when
//! configured (the same limits and timeouts, a connection cap of its own) and the admin
//! plane, with connection limits, header-read and idle timeouts, and graceful drain on
//! shutdown. The data plane runs on worker threads of its own (`listener.worker_threads`),
//! each a single-threaded runtime accepting from the one listening socket and serving what
//! it accepted to the end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::connection::{
    Activity, ActivityGuard, ConnectionLease, Inactive, InactivityLimits, TrackedBody, accept_within, inactivity,
};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::proxy::handle;
use crate::tls::acceptor::{Accepted, TlsTermination};

/// A running scopegate: its listeners bound and serving.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The forward-auth listener, when `[forward_auth]` is configured.
    pub forward_auth_addr: Option<SocketAddr>,
    pub app: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    data: tokio::task::JoinHandle<()>,
    admin: tokio::task::JoinHandle<()>,
    forward_auth: Option<tokio::task::JoinHandle<()>>,
    /// Re-reads the TLS files when `[listener.tls]` and `[reload] watch` are on.
    certificate_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests up to the configured deadline, and
    /// returns when both listeners are closed.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.data.await;
        if let Some(forward_auth) = self.forward_auth {
            let _ = forward_auth.await;
        }
        let _ = self.admin.await;
        if let Some(watch) = self.certificate_watch {
            watch.abort();
        }
        self.app.stop_refreshers();
    }
}

/// A listener that could not be bound: which one, where, and why (e.g. the port is taken).
#[derive(Debug, thiserror::Error)]
// The OS error is part of the message, not a `source`: printed once, whoever prints it.
#[error("cannot bind the {listener} to {address} ({setting}): {error}")]
pub struct BindError {
    /// Which listener, e.g. "data listener".
    pub listener: &'static str,
    /// The setting that names the address, e.g. `listener.address`.
    pub setting: &'static str,
    pub address: SocketAddr,
    pub error: std::io::Error,
}

/// Binds one listener, naming it and its address if that fails.
pub async fn bind(
    listener: &'static str,
    setting: &'static str,
    address: SocketAddr,
) -> Result<TcpListener, BindError> {
    TcpListener::bind(address).await.map_err(|error| BindError {
        listener,
        setting,
        address,
        error,
    })
}

/// Binds the addresses in `config` and starts serving; `config_path` is re-read on reload.
/// The data plane runs on [`worker_count`] threads of its own.
pub async fn start(config: Config, config_path: Option<std::path::PathBuf>) -> Result<Running, BindError> {
    let data = bind("data listener", "listener.address", config.listener.address).await?;
    let admin = bind("admin listener", "admin.address", config.admin_address).await?;
    let forward_auth = match &config.forward_auth {
        Some(settings) => Some(bind("forward-auth listener", "forward_auth.listen", settings.listen).await?),
        None => None,
    };
    let workers = Workers::Threads(worker_count(config.listener.worker_threads));
    let app = Gateway::new(config, Metrics::new(), config_path);
    Ok(serve_with(app, data, admin, forward_auth, workers))
}

/// Serves on listeners the caller bound (tests pass `127.0.0.1:0`); no forward-auth.
pub fn start_with_listeners(config: Config, data: TcpListener, admin: TcpListener) -> Running {
    serve(Gateway::new(config, Metrics::new(), None), data, admin)
}

/// Serves a gateway on bound listeners; no forward-auth.
pub fn serve(app: Arc<Gateway>, data: TcpListener, admin: TcpListener) -> Running {
    serve_all(app, data, admin, None)
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Serves a gateway on bound listeners, the forward-auth one included when given: the data
/// plane on worker threads of its own when the config sets `listener.worker_threads`,
/// otherwise on the caller's runtime.
pub fn serve_all(
    app: Arc<Gateway>,
    data: TcpListener,
    admin: TcpListener,
    forward_auth: Option<TcpListener>,
) -> Running {
    let workers = app
        .app()
        .config
        .listener
        .worker_threads
        .map_or(Workers::Current, Workers::Threads);
    serve_with(app, data, admin, forward_auth, workers)
}

/// Where the data plane runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// On the runtime of the caller (tests, embedding).
    Current,
    /// On this many threads, each a single-threaded runtime with its own accept loop and
    /// its own upstream connections: a request never leaves the thread that accepted it.
    Threads(usize),
}

/// The data plane's threads: `configured` (`listener.worker_threads`), else
/// `TOKIO_WORKER_THREADS`, else [`std::thread::available_parallelism`] — on Linux the CPUs
/// in the process's affinity mask, lowered to a cgroup's CPU quota (`cpu.max`) when there
/// is one, so a container limited to 2 CPUs gets 2 threads.
pub fn worker_count(configured: Option<usize>) -> usize {
    configured
        .or_else(|| {
            std::env::var("TOKIO_WORKER_THREADS")
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .filter(|threads| *threads > 0)
        })
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(std::num::NonZeroUsize::get)
        })
        .unwrap_or(1)
}

/// Serves a gateway on bound listeners, the data plane where `workers` says.
pub fn serve_with(
    app: Arc<Gateway>,
    data: TcpListener,
    admin: TcpListener,
    forward_auth: Option<TcpListener>,
    workers: Workers,
) -> Running {
    let (shutdown, watcher) = watch::channel(false);
    let addr = local_addr(&data);
    let admin_addr = local_addr(&admin);
    let forward_auth_addr = forward_auth.as_ref().map(local_addr);
    let tls = app.app().config.listener.tls.clone();
    let termination = tls.as_ref().map(TlsTermination::new);
    let certificate_watch = match (&tls, &termination) {
        (Some(settings), Some(termination)) if app.app().config.reload.watch => {
            Some(tokio::spawn(crate::tls::reload::watch_certificates(
                Arc::clone(termination),
                settings.files.clone(),
                settings.contents.clone(),
                app.app().config.reload.interval,
                app.metrics.clone(),
            )))
        }
        _ => None,
    };
    // Each listener's connection cap is fixed at start and shared by all that serve it;
    // changing it needs a restart.
    let cap = app.app().config.listener.max_connections;
    let slots = Arc::new(Semaphore::new(cap));
    let data_task = match workers {
        Workers::Threads(threads) => spawn_workers(data, &app, &slots, termination.as_ref(), &watcher, threads),
        Workers::Current => Err(data),
    }
    .unwrap_or_else(|data| {
        tokio::spawn(serve_data(
            data,
            Endpoint::Proxy,
            termination,
            Arc::clone(&app),
            slots,
            wait_for(watcher.clone()),
        ))
    });
    let forward_auth_task = forward_auth.map(|listener| {
        tokio::spawn(serve_data(
            listener,
            Endpoint::ForwardAuth,
            None,
            Arc::clone(&app),
            Arc::new(Semaphore::new(cap)),
            wait_for(watcher.clone()),
        ))
    });
    let admin_task = tokio::spawn(crate::admin::serve(admin, Arc::clone(&app), wait_for(watcher)));
    Running {
        addr,
        admin_addr,
        forward_auth_addr,
        app,
        shutdown,
        data: data_task,
        admin: admin_task,
        forward_auth: forward_auth_task,
        certificate_watch,
    }
}

/// What a listener built on [`serve_data`] answers.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    /// The request path: decide, then forward.
    Proxy,
    /// Forward-auth: decide, then answer the ingress.
    ForwardAuth,
}

/// Starts `threads` worker threads accepting from one listening socket, and returns a task
/// that ends when all of them have drained. If no thread can be started, the listener is
/// handed back to be served on the caller's runtime.
fn spawn_workers(
    data: TcpListener,
    app: &Arc<Gateway>,
    slots: &Arc<Semaphore>,
    tls: Option<&Arc<TlsTermination>>,
    watcher: &watch::Receiver<bool>,
    threads: usize,
) -> Result<tokio::task::JoinHandle<()>, TcpListener> {
    // Taking the socket out of the caller's runtime fails only if epoll refuses to forget
    // it; then the socket is gone, and so is the data plane: said loudly, never silently.
    let listener = match data.into_std() {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot move the data listener to the worker threads; the data plane is not served");
            return Ok(tokio::spawn(async {}));
        }
    };
    let mut finished = Vec::with_capacity(threads);
    for index in 0..threads {
        let started = listener.try_clone().and_then(|listener| {
            let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
            let worker = Worker {
                app: Arc::clone(app),
                slots: Arc::clone(slots),
                tls: tls.cloned(),
            };
            let shutdown = wait_for(watcher.clone());
            let thread = std::thread::Builder::new()
                .name(format!("scopegate-w{index}"))
                .spawn(move || worker.run(listener, shutdown, done))?;
            Ok((finished_rx, thread))
        });
        match started {
            Ok(worker) => finished.push(worker),
            Err(e) => tracing::error!(error = %e, worker = index, "cannot start a worker thread"),
        }
    }
    if finished.is_empty() {
        return match TcpListener::from_std(listener) {
            Ok(listener) => Err(listener),
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the data listener; the data plane is not served");
                Ok(tokio::spawn(async {}))
            }
        };
    }
    tracing::info!(threads = finished.len(), "data plane worker threads started");
    Ok(tokio::spawn(async move {
        for (drained, thread) in finished {
            let _ = drained.await;
            // The thread has dropped its runtime and is returning: the data plane is done
            // only once it is gone (joining it blocks for no longer than that).
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }))
}

/// What one worker thread serves the data listener with.
struct Worker {
    app: Arc<Gateway>,
    slots: Arc<Semaphore>,
    tls: Option<Arc<TlsTermination>>,
}

impl Worker {
    /// A single-threaded runtime serving this thread's share of the data listener until
    /// shutdown and drain, then `done`.
    fn run(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()>,
        done: tokio::sync::oneshot::Sender<()>,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(error = %e, "cannot start a worker thread's runtime");
                return;
            }
        };
        runtime.block_on(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => serve_data(listener, Endpoint::Proxy, self.tls, self.app, self.slots, shutdown).await,
                Err(e) => tracing::error!(error = %e, "a worker thread cannot serve the data listener"),
            }
        });
        // Upstream connections and tunnels still open on this thread end with its runtime.
        drop(runtime);
        let _ = done.send(());
    }
}

async fn wait_for(mut watcher: watch::Receiver<bool>) {
    let _ = watcher.wait_for(|stop| *stop).await;
}

/// Connection settings from the current config (a reload applies to new connections).
fn connection_builder(limits: &crate::config::ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        // Each stream may hold an upstream request: this bounds what one connection can
        // ask of the upstream at once (RFC 9113 §5.1.2; streams beyond it are refused).
        .max_concurrent_streams(limits.http2_max_concurrent_streams);
    builder
}

/// Serves one listener with the data plane's limits (`[listener]`): connection cap (`slots`,
/// each listener its own, shared by the workers that serve it), header-read, idle and
/// response-progress timeouts, graceful drain.
async fn serve_data(
    listener: TcpListener,
    endpoint: Endpoint,
    tls: Option<Arc<TlsTermination>>,
    app: Arc<Gateway>,
    slots: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut drain_timeout = app.app().config.listener.drain_timeout;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, permit) = tokio::select! {
            accepted = accept_within(&listener, &slots) => match accepted {
                Some(accepted) => accepted,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let limits = app.app().config.listener.clone();
        drain_timeout = limits.drain_timeout;
        let lease = ConnectionLease::new(permit, limits.idle_timeout);
        let (app, tls, watcher) = (Arc::clone(&app), tls.clone(), graceful.watcher());
        tokio::spawn(async move {
            let metrics = app.metrics.clone();
            metrics.open_connections.inc();
            // The handshake runs here, not in the accept loop, and holds the lease's slot.
            match crate::tls::acceptor::accept(tls.as_deref(), stream).await {
                Ok(accepted) => serve_connection(app, endpoint, accepted, peer, lease, &limits, watcher).await,
                Err(e) => {
                    metrics.tls_handshake_failures.with_label_values(&[e.label()]).inc();
                    tracing::debug!(error = %e, %peer, "connection closed before HTTP");
                }
            }
            metrics.open_connections.dec();
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!(timeout = ?drain_timeout, "drain deadline passed; closing remaining connections");
        }
    }
}

/// Serves HTTP on one accepted connection until it ends, is closed for inactivity or is
/// drained. Every request carries the connection's lease and, over TLS with a verified
/// client certificate, that [`ClientCertificate`].
async fn serve_connection(
    app: Arc<Gateway>,
    endpoint: Endpoint,
    accepted: Accepted,
    peer: SocketAddr,
    lease: ConnectionLease,
    limits: &crate::config::ListenerConfig,
    watcher: Watcher,
) {
    let builder = connection_builder(limits);
    let activity = Activity::new();
    let client_certificate = accepted.client_certificate;
    let service = {
        let activity = Arc::clone(&activity);
        let lease = lease.clone();
        service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(lease.clone());
            if let Some(certificate) = &client_certificate {
                req.extensions_mut().insert(certificate.clone());
            }
            let app = app.app();
            let guard = ActivityGuard::new(Arc::clone(&activity));
            async move {
                let response = match endpoint {
                    Endpoint::Proxy => handle(app, req, peer).await,
                    Endpoint::ForwardAuth => crate::forward_auth::handle(app, req, peer).await,
                };
                Ok::<_, Infallible>(response.map(|inner| TrackedBody::new(inner, guard)))
            }
        })
    };
    let connection = watcher.watch(
        builder
            .serve_connection_with_upgrades(TokioIo::new(accepted.io), service)
            .into_owned(),
    );
    let inactivity_limits = InactivityLimits {
        first_request: limits.header_read_timeout,
        idle: limits.idle_timeout,
        response_progress: limits.response_progress_timeout,
    };
    let _lease = lease;
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        }
        why = inactivity(activity, inactivity_limits) => match why {
            Inactive::Idle => tracing::debug!(%peer, "closing inactive connection"),
            // Dropping the connection drops its responses and their upstream requests.
            Inactive::Stalled => tracing::info!(
                %peer,
                "closing connection: the client took no response bytes within listener.response_progress_timeout"
            ),
        },
    }
}
