//! The fleet: every sidecar of a deployment sharing revocations (and, optionally,
//! introspection answers) through one Redis, and accepting Shared Signals events.
//!
//! - [`config`] compiles `[fleet]` and `[ssf]`; [`redis`] is the bounded connection.
//! - [`revocations`] is the record format; [`Fleet`] (here) keeps the local revocation set
//!   and the shared one in step: a revocation accepted here is written to a sorted set
//!   (score = until when it holds) and published; every sidecar subscribes, applies what it
//!   hears, and loads the whole set whenever it (re)connects, so a missed message costs
//!   nothing. What this sidecar holds is written back after every reconnect, so a Redis
//!   that lost its data (restarted without persistence) is refilled.
//! - [`shared_cache`] shares active introspection answers, keyed by the token's SHA-256.
//! - [`ssf`] verifies Security Event Tokens (RFC 8417, pushed as RFC 8935 describes) and
//!   turns CAEP/RISC events into holder rules.
//!
//! The local set ([`crate::token::revocation`]) stays the enforcement point: when Redis is
//! unreachable, known revocations are still refused, and new ones are applied locally and
//! written to Redis once it is back (`docs/fleet.md`).

pub mod config;
pub mod redis;
pub mod revocations;
pub mod shared_cache;
pub mod ssf;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::config::Config;
use crate::fleet::config::FleetConfig;
use crate::fleet::redis::{RedisFailure, RedisLink};
use crate::fleet::revocations::Record;
use crate::fleet::shared_cache::SharedIntrospection;
use crate::fleet::ssf::SsfReceiver;
use crate::metrics::Metrics;
use crate::token::revocation::Revocations;
use crate::token::{Authenticator, Clock};

/// Starts what `config` asks of the fleet for a sidecar whose first authenticator is
/// `auth`: the fleet's connection (and shared introspection answers), and the Shared
/// Signals receiver. Both last for the process (a change needs a restart).
pub fn start(
    config: &Config,
    auth: &Authenticator,
    metrics: &Metrics,
) -> (Option<Arc<Fleet>>, Option<Arc<SsfReceiver>>) {
    let fleet = config.fleet.as_ref().and_then(|settings| {
        match Fleet::start(settings, auth.shared_revocations(), auth.clock(), metrics.clone()) {
            Ok(fleet) => Some(fleet),
            Err(error) => {
                // The URL was checked when the config was compiled; this is not expected.
                tracing::error!(%error, "fleet: cannot use fleet.url; running without the fleet");
                None
            }
        }
    });
    if let Some(fleet) = fleet.as_ref().filter(|f| f.config.share_introspection) {
        auth.share_answers(Arc::new(SharedIntrospection::new(
            fleet.link(),
            &fleet.config.key_prefix,
            metrics.clone(),
        )));
    }
    let ssf = config
        .ssf
        .as_ref()
        .map(|settings| Arc::new(SsfReceiver::start(settings, metrics.clone())));
    (fleet, ssf)
}

/// The `op` label values of `scopegate_fleet_errors_total`.
pub const FLEET_OPS: [&str; 7] = [
    "subscribe",
    "load",
    "publish",
    "write_back",
    "apply",
    "shared_cache",
    "ssf_replay",
];

/// Records written back per pipeline.
const WRITE_BACK_CHUNK: usize = 500;

/// What became of a revocation sent to the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Stored and published: every connected sidecar refuses it now.
    Published,
    /// Redis did not take it: applied here, and written to Redis (and announced) as soon as
    /// it is reachable again.
    Pending,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Published => "published",
            Delivery::Pending => "pending",
        }
    }
}

/// The keys this fleet uses in Redis, all under `key_prefix`.
struct Keys {
    /// Sorted set of [`Record`]s, scored by their `until`.
    revocations: String,
    /// Pub/sub channel of [`Record`]s.
    channel: String,
}

/// How a connection to the fleet ended.
struct SessionEnd {
    op: &'static str,
    error: RedisFailure,
    /// It had been subscribed and loaded (the retry pause starts over).
    established: bool,
}

/// One sidecar's part of the fleet.
pub struct Fleet {
    link: Arc<RedisLink>,
    keys: Keys,
    config: FleetConfig,
    revocations: Arc<Revocations>,
    clock: Clock,
    metrics: Metrics,
    /// Local revocations may be missing from Redis: write them back.
    dirty: AtomicBool,
    wake: Notify,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Fleet {
    /// Connects in the background and starts keeping `revocations` in step with the fleet.
    ///
    /// # Errors
    /// The Redis URL cannot be used.
    pub fn start(
        config: &FleetConfig,
        revocations: Arc<Revocations>,
        clock: Clock,
        metrics: Metrics,
    ) -> Result<Arc<Fleet>, RedisFailure> {
        let prefix = &config.key_prefix;
        let fleet = Arc::new(Fleet {
            link: Arc::new(RedisLink::new(config)?),
            keys: Keys {
                revocations: format!("{prefix}revocations"),
                channel: format!("{prefix}revocations"),
            },
            config: config.clone(),
            revocations,
            clock,
            metrics,
            dirty: AtomicBool::new(false),
            wake: Notify::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let listen = tokio::spawn(Arc::clone(&fleet).listen());
        let write_back = tokio::spawn(Arc::clone(&fleet).write_back_loop());
        fleet.lock_tasks().extend([listen, write_back]);
        Ok(fleet)
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the background tasks (on shutdown).
    pub fn stop(&self) {
        for task in self.lock_tasks().drain(..) {
            task.abort();
        }
        self.metrics.fleet_connected.set(0);
    }

    /// The connection, for the shared introspection answers.
    pub fn link(&self) -> Arc<RedisLink> {
        Arc::clone(&self.link)
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    fn error(&self, op: &str, error: &RedisFailure) {
        self.metrics.fleet_errors.with_label_values(&[op]).inc();
        tracing::warn!(op, %error, "fleet: Redis operation failed; serving from what this sidecar knows");
    }

    /// Sends a revocation already applied here to every other sidecar.
    pub async fn publish(&self, record: &Record) -> Delivery {
        let member = record.encode();
        let mut pipeline = ::redis::pipe();
        pipeline.atomic();
        if let Some(until) = record.until() {
            pipeline.zadd(&self.keys.revocations, &member, until).ignore();
        }
        pipeline.publish(&self.keys.channel, &member).ignore();
        match self.link.run::<()>(&pipeline).await {
            Ok(()) => Delivery::Published,
            Err(error) => {
                self.error("publish", &error);
                self.mark_dirty();
                Delivery::Pending
            }
        }
    }

    /// Whether a Security Event Token's `jti` is seen for the first time by the whole fleet
    /// (remembered for `ttl`, by its SHA-256); `None` when Redis cannot tell, and the
    /// receiving sidecar's own replay cache has the last word.
    pub async fn first_sighting(&self, jti: &str, ttl: Duration) -> Option<bool> {
        let digest: String = crate::token::sha256(jti.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let claim = ::redis::cmd("SET")
            .arg(format!("{}ssf-jti:{digest}", self.config.key_prefix))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .to_owned();
        match self.link.run::<Option<String>>(&claim).await {
            Ok(set) => Some(set.is_some()),
            Err(error) => {
                self.error("ssf_replay", &error);
                None
            }
        }
    }

    fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn now(&self) -> Duration {
        self.clock.since_epoch()
    }

    /// Applies a record heard from the fleet.
    fn apply(&self, record: &Record) {
        match record.apply(&self.revocations, self.now()) {
            Ok(()) => self.metrics.fleet_revocations.with_label_values(&["fleet"]).inc(),
            Err(full) => {
                self.metrics.fleet_errors.with_label_values(&["apply"]).inc();
                tracing::error!(error = %full, "fleet: a revocation could not be applied");
            }
        }
    }

    /// Loads every live record of the durable set (and drops lapsed ones from it).
    async fn load(&self) -> Result<usize, RedisFailure> {
        let now = self.now().as_secs();
        let mut pipeline = ::redis::pipe();
        pipeline
            .cmd("ZREMRANGEBYSCORE")
            .arg(&self.keys.revocations)
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore()
            .cmd("ZRANGEBYSCORE")
            .arg(&self.keys.revocations)
            .arg(now)
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            // Beyond the local bound they would be refused anyway.
            .arg(self.revocations.max_entries());
        let (members,): (Vec<Vec<u8>>,) = self.link.run(&pipeline).await?;
        let records: Vec<Record> = members.iter().filter_map(|m| Record::decode(m)).collect();
        for record in &records {
            self.apply(record);
        }
        Ok(records.len())
    }

    /// Subscribes, loads the durable set, then applies what is published; again after any
    /// disconnection, with a growing pause between failed attempts.
    async fn listen(self: Arc<Self>) {
        let mut pause = Duration::from_millis(100);
        loop {
            let ended = self.session().await;
            self.metrics.fleet_connected.set(0);
            self.error(ended.op, &ended.error);
            if ended.established {
                pause = Duration::from_millis(100);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// One connection's life, until it fails or is lost.
    async fn session(&self) -> SessionEnd {
        let failed = |op, error| SessionEnd {
            op,
            error,
            established: false,
        };
        // Subscribed before loading: a revocation published in between is heard, not lost.
        let pubsub = match self.link.subscribe(&self.keys.channel).await {
            Ok(pubsub) => pubsub,
            Err(error) => return failed("subscribe", error),
        };
        let loaded = match self.load().await {
            Ok(loaded) => loaded,
            Err(error) => return failed("load", error),
        };
        self.metrics.fleet_connected.set(1);
        tracing::info!(loaded, "fleet: connected; revocations loaded");
        // What this sidecar knows may be missing from Redis (accepted while it was away, or
        // Redis restarted empty).
        self.mark_dirty();
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            match Record::decode(message.get_payload_bytes()) {
                Some(Record::Resync) => {
                    if let Err(error) = self.load().await {
                        self.error("load", &error);
                    }
                }
                Some(record) => self.apply(&record),
                None => tracing::warn!("fleet: ignored a message that is not a revocation record"),
            }
        }
        SessionEnd {
            op: "subscribe",
            error: RedisFailure::lost(),
            established: true,
        }
    }

    /// Writes local revocations back whenever they may be missing from Redis; retries
    /// until it succeeds.
    async fn write_back_loop(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            while self.dirty.swap(false, Ordering::SeqCst) {
                if let Err(error) = self.write_back().await {
                    self.error("write_back", &error);
                    self.dirty.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Adds every local revocation the durable set lacks; if any was missing, asks every
    /// sidecar to reload.
    async fn write_back(&self) -> Result<(), RedisFailure> {
        let records = Record::all_of(&self.revocations.snapshot(self.now()));
        let mut added = 0u64;
        for chunk in records.chunks(WRITE_BACK_CHUNK) {
            let mut pipeline = ::redis::pipe();
            for record in chunk {
                pipeline.zadd(
                    &self.keys.revocations,
                    record.encode(),
                    record.until().unwrap_or_default(),
                );
            }
            let counts: Vec<u64> = self.link.run(&pipeline).await?;
            added += counts.iter().sum::<u64>();
        }
        if added > 0 {
            tracing::info!(added, "fleet: wrote back revocations Redis did not hold");
            let resync = ::redis::cmd("PUBLISH")
                .arg(&self.keys.channel)
                .arg(Record::Resync.encode())
                .to_owned();
            self.link.run::<()>(&resync).await?;
        }
        Ok(())
    }
}
