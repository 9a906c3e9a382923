//! Listeners: the data plane (HTTP/1.1 and h2c on one port) and the admin plane, with
//! connection limits, header-read and idle timeouts, and graceful drain on shutdown. The
//! data plane runs on worker threads of its own (`listener.worker_threads`), each accepting
//! from the one listening socket and serving what it accepted to the end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::connection::{
    Activity, ActivityGuard, ConnectionLease, Inactive, InactivityLimits, TrackedBody, accept_within, inactivity,
};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::proxy::handle;

/// A running scopegate: both listeners bound and serving.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub app: Arc<Gateway>,
    shutdown: watch::Sender<bool>,
    data: tokio::task::JoinHandle<()>,
    admin: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drains in-flight requests up to the configured deadline, and
    /// returns when both listeners are closed.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.data.await;
        let _ = self.admin.await;
        self.app.stop_refreshers();
    }
}

/// Binds the addresses in `config` and starts serving; `config_path` is re-read on reload.
/// The data plane runs on [`worker_count`] threads of its own.
pub async fn start(config: Config, config_path: Option<std::path::PathBuf>) -> std::io::Result<Running> {
    let data = TcpListener::bind(config.listener.address).await?;
    let admin = TcpListener::bind(config.admin_address).await?;
    let workers = Workers::Threads(worker_count(config.listener.worker_threads));
    Ok(serve_with(
        Gateway::new(config, Metrics::new(), config_path),
        data,
        admin,
        workers,
    ))
}

/// Serves on listeners the caller bound (tests pass `127.0.0.1:0`).
pub fn start_with_listeners(config: Config, data: TcpListener, admin: TcpListener) -> Running {
    serve(Gateway::new(config, Metrics::new(), None), data, admin)
}

/// Serves a gateway on bound listeners: on worker threads of its own when the config sets
/// `listener.worker_threads`, otherwise on the caller's runtime.
pub fn serve(app: Arc<Gateway>, data: TcpListener, admin: TcpListener) -> Running {
    let workers = app
        .app()
        .config
        .listener
        .worker_threads
        .map_or(Workers::Current, Workers::Threads);
    serve_with(app, data, admin, workers)
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
pub fn serve_with(app: Arc<Gateway>, data: TcpListener, admin: TcpListener, workers: Workers) -> Running {
    let (shutdown, watcher) = watch::channel(false);
    let addr = data
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    let admin_addr = admin
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
    // The connection cap is fixed at start and shared by every worker; changing it needs a
    // restart.
    let slots = Arc::new(Semaphore::new(app.app().config.listener.max_connections));
    let data_task = match workers {
        Workers::Threads(threads) => spawn_workers(data, &app, &slots, &watcher, threads),
        Workers::Current => Err(data),
    }
    .unwrap_or_else(|data| tokio::spawn(serve_data(data, Arc::clone(&app), slots, wait_for(watcher.clone()))));
    let admin_task = tokio::spawn(crate::admin::serve(admin, Arc::clone(&app), wait_for(watcher)));
    Running {
        addr,
        admin_addr,
        app,
        shutdown,
        data: data_task,
        admin: admin_task,
    }
}

/// Starts `threads` worker threads accepting from one listening socket, and returns a task
/// that ends when all of them have drained. If no thread can be started, the listener is
/// handed back to be served on the caller's runtime.
fn spawn_workers(
    data: TcpListener,
    app: &Arc<Gateway>,
    slots: &Arc<Semaphore>,
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
            let (app, slots, shutdown) = (Arc::clone(app), Arc::clone(slots), wait_for(watcher.clone()));
            std::thread::Builder::new()
                .name(format!("scopegate-w{index}"))
                .spawn(move || run_worker(listener, app, slots, shutdown, done))?;
            Ok(finished_rx)
        });
        match started {
            Ok(finished_rx) => finished.push(finished_rx),
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
        for worker in finished {
            let _ = worker.await;
        }
    }))
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

/// One worker thread: a single-threaded runtime serving its share of the data listener
/// until shutdown and drain, then `done`.
fn run_worker(
    listener: std::net::TcpListener,
    app: Arc<Gateway>,
    slots: Arc<Semaphore>,
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
            Ok(listener) => serve_data(listener, app, slots, shutdown).await,
            Err(e) => tracing::error!(error = %e, "a worker thread cannot serve the data listener"),
        }
    });
    // Upstream connections and tunnels still open on this thread end with its runtime.
    drop(runtime);
    let _ = done.send(());
}

async fn serve_data(
    listener: TcpListener,
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
        let builder = connection_builder(&limits);
        let activity = Activity::new();
        let lease = ConnectionLease::new(permit, limits.idle_timeout);
        let service = {
            let app = Arc::clone(&app);
            let activity = Arc::clone(&activity);
            let lease = lease.clone();
            service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(lease.clone());
                let app = app.app();
                let guard = ActivityGuard::new(Arc::clone(&activity));
                async move {
                    let response = handle(app, req, peer).await;
                    Ok::<_, Infallible>(response.map(|inner| TrackedBody::new(inner, guard)))
                }
            })
        };
        let connection = graceful.watch(
            builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned(),
        );
        let metrics = app.metrics.clone();
        let inactivity_limits = InactivityLimits {
            first_request: limits.header_read_timeout,
            idle: limits.idle_timeout,
            response_progress: limits.response_progress_timeout,
        };
        tokio::spawn(async move {
            let _lease = lease;
            metrics.open_connections.inc();
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
