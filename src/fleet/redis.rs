//! The connection to the fleet's Redis: one multiplexed command connection (the `redis`
//! crate's `ConnectionManager`, which reconnects by itself) and, for each subscription, a
//! dedicated pub/sub connection. Every call is bounded by `[fleet]`'s timeouts; the
//! password comes from `password_file`/`password_env` and never appears in the URL or logs.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{FromRedisValue, IntoConnectionInfo};
use tokio::sync::OnceCell;

use crate::fleet::config::FleetConfig;

/// A Redis operation that failed or took longer than its timeout. Its text names the
/// operation and the cause, never the password.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RedisFailure(String);

impl RedisFailure {
    /// The subscription's connection closed.
    pub fn lost() -> RedisFailure {
        RedisFailure("the connection was lost; known revocations stay in force".into())
    }
}

impl From<redis::RedisError> for RedisFailure {
    fn from(error: redis::RedisError) -> RedisFailure {
        RedisFailure(error.to_string())
    }
}

/// The fleet's Redis.
pub struct RedisLink {
    client: redis::Client,
    /// Made on first need; a failed attempt is not kept, so the next need retries.
    commands: OnceCell<ConnectionManager>,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl RedisLink {
    /// Prepares the client (no connection is made yet).
    ///
    /// # Errors
    /// The URL is not one the `redis` crate can use.
    pub fn new(config: &FleetConfig) -> Result<RedisLink, RedisFailure> {
        let mut info = config.url.as_str().into_connection_info()?;
        if let Some(password) = &config.password {
            let settings = info.redis_settings().clone().set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = match &config.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )?,
            None => redis::Client::open(info)?,
        };
        Ok(RedisLink {
            client,
            commands: OnceCell::new(),
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
        })
    }

    async fn bounded<T, F>(limit: Duration, what: &str, future: F) -> Result<T, RedisFailure>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(limit, future).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(RedisFailure(format!("{what} timed out after {limit:?}"))),
        }
    }

    async fn commands(&self) -> Result<ConnectionManager, RedisFailure> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        self.commands
            .get_or_try_init(|| {
                Self::bounded(
                    self.connect_timeout,
                    "connecting",
                    self.client.get_connection_manager_with_config(config),
                )
            })
            .await
            .cloned()
    }

    /// Runs a command or pipeline on the shared connection, within the command timeout.
    ///
    /// # Errors
    /// No connection, a Redis error, or the timeout.
    pub async fn run<T: FromRedisValue>(&self, command: &impl Runnable) -> Result<T, RedisFailure> {
        let mut connection = self.commands().await?;
        Self::bounded(self.command_timeout, "a command", command.run_on(&mut connection)).await
    }

    /// A new pub/sub connection subscribed to `channel`.
    ///
    /// # Errors
    /// No connection, a Redis error, or a timeout.
    pub async fn subscribe(&self, channel: &str) -> Result<PubSub, RedisFailure> {
        let mut pubsub = Self::bounded(self.connect_timeout, "connecting", self.client.get_async_pubsub()).await?;
        Self::bounded(self.command_timeout, "subscribing", pubsub.subscribe(channel)).await?;
        Ok(pubsub)
    }
}

/// A single command or a pipeline.
pub trait Runnable {
    fn run_on<T: FromRedisValue>(
        &self,
        connection: &mut ConnectionManager,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send;
}

impl Runnable for redis::Cmd {
    fn run_on<T: FromRedisValue>(
        &self,
        connection: &mut ConnectionManager,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(connection)
    }
}

impl Runnable for redis::Pipeline {
    fn run_on<T: FromRedisValue>(
        &self,
        connection: &mut ConnectionManager,
    ) -> impl Future<Output = redis::RedisResult<T>> + Send {
        self.query_async(connection)
    }
}
