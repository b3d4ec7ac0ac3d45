//! The Redis client: the scripts of `lua/` (through their types in
//! [`scripts`](super::scripts)) and the few plain commands the service sends,
//! each a method named for what it does. Nothing outside `store` sees a Redis
//! command or reply.
//!
//! One multiplexed, auto-pipelined connection: on two cores it beat pools of 4
//! and 8 (STACK.md). Scripts are compiled into the binary, loaded once at start,
//! and called by SHA; if Redis forgets them (a restart, `SCRIPT FLUSH`), the call
//! that meets `NOSCRIPT` loads the script again and retries.

use super::keys::{BookingKeys, Keys, admission_group};
use super::scripts::{self, ReservationRecord, Script};
use crate::error::{Error, Result};
use fred::prelude::*;
use fred::types::config::{ClusterDiscoveryPolicy, UnresponsiveConfig};
use std::time::Duration;

/// How long a command may wait, including time queued while reconnecting, before
/// it fails and the request gets a `503`.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection may leave a command unanswered before it is closed
/// and made again (longer than any command may take).
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(5);
/// Delay between reconnection attempts while Redis is down.
const RECONNECT_DELAY_MS: u32 = 250;

/// A connected (or reconnecting) Redis client with the service's scripts.
pub struct Redis {
    pool: Pool,
}

/// Keeps fred's connection task running. With a reconnect policy of unlimited
/// attempts the task ends only on QUIT, or when its router gives up: seen on
/// a Redis Cluster when many slots moved under a running server at once
/// ("Max attempts reached", then every command "channel closed" or timing
/// out). Left alone, the process would answer 503 until restarted; this logs
/// it and starts the task again (fred resets its router for a new task).
async fn supervise(client: Client, mut task: fred::types::ConnectHandle) {
    loop {
        let ended = match task.await {
            Ok(Ok(())) => return,
            Ok(Err(e)) if e.is_canceled() => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(error = %ended, "redis connection task ended; starting it again");
        tokio::time::sleep(Duration::from_millis(u64::from(RECONNECT_DELAY_MS))).await;
        task = client.connect();
    }
}

impl Redis {
    /// Builds the client and starts connecting in the background. Never waits for
    /// Redis: a server that starts during a Redis outage serves `/health`, answers
    /// `503` where Redis is needed, and recovers when Redis returns.
    ///
    /// A `redis-cluster://` URL names seed nodes of a Redis Cluster: fred asks
    /// one of them for the slot map, connects to every master, routes each
    /// script to its first key's slot (every key of a script shares one: see
    /// `keys.rs`), and after a failover finds the promoted replica by itself.
    pub fn connect(url: &str) -> Result<Self, fred::error::Error> {
        let mut config = Config::from_url(url)?;
        if config.server.is_clustered() {
            // After a failover the seeds may be the dead nodes: also try the
            // nodes of the last known slot map.
            config
                .server
                .set_cluster_discovery_policy(ClusterDiscoveryPolicy::UseCache)?;
        }
        let pool = Builder::from_config(config)
            .with_config(|c| c.fail_fast = false)
            .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT)
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CONNECT_TIMEOUT;
                // A command whose connection dropped is not sent again: a script
                // may already have run, and its caller decides what a retry means.
                c.max_command_attempts = 1;
                // A server that stops answering without closing its socket (a
                // frozen or partitioned master) is dropped and reconnected, so
                // a cluster's promoted replica is found instead of waiting on it.
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(UNRESPONSIVE_AFTER),
                    interval: Duration::from_secs(1),
                };
            })
            .set_policy(ReconnectPolicy::new_constant(0, RECONNECT_DELAY_MS))
            .build_pool(1)?;
        for (client, task) in pool.clients().iter().cloned().zip(pool.connect_pool()) {
            tokio::spawn(supervise(client, task));
        }
        Ok(Redis { pool })
    }

    /// Waits up to `wait` for the first connection, then loads every script.
    /// Failure is logged, not fatal: scripts load lazily on `NOSCRIPT` as well.
    pub async fn load_scripts(&self, wait: Duration) {
        let loaded = tokio::time::timeout(wait, async {
            self.pool.wait_for_connect().await?;
            for lua in scripts::all() {
                lua.compiled().load(self.client()).await?;
            }
            Ok::<_, fred::error::Error>(())
        })
        .await;
        match loaded {
            Ok(Ok(())) => tracing::info!("redis scripts loaded"),
            Ok(Err(e)) => tracing::warn!(error = %e, "redis scripts not loaded yet"),
            Err(_) => tracing::warn!("redis not reachable yet; scripts will load on first use"),
        }
    }

    /// The client to send the next command on.
    fn client(&self) -> &Client {
        self.pool.next()
    }

    /// Runs a script by SHA, loading it if Redis does not know it. Call sites
    /// use [`Script::run`].
    pub(crate) async fn run<S: Script>(&self, script: S) -> Result<S::Reply> {
        let lua = S::lua();
        let keys = script.keys();
        debug_assert!(
            lua.keys.accepts(keys.len()),
            "{} takes {:?} keys, given {}",
            lua.file,
            lua.keys,
            keys.len()
        );
        // Every key of a script in one slot, on a single Redis too: a script
        // that would touch two slots is a bug a cluster refuses, so every test
        // run (every script is run by some test) checks each call's keys.
        if let Some(stray) = stray_key(&keys) {
            return Err(Error::Internal(format!(
                "{}: key {stray} is not in the slot of {}",
                lua.file, keys[0]
            )));
        }
        let started = std::time::Instant::now();
        let reply = lua
            .compiled()
            .evalsha_with_reload::<Value, _, _>(self.client(), keys, script.args())
            .await;
        lua.latency().record(started.elapsed().as_secs_f64());
        match reply {
            Ok(reply) => S::reply(reply),
            Err(e) => {
                metrics::counter!("redis_script_errors_total", "script" => lua.name()).increment(1);
                Err(e.into())
            }
        }
    }

    /// The readiness probe: one script round trip, bounded by `timeout`.
    pub async fn ping(&self, keys: &Keys, timeout: Duration) -> Result<()> {
        let value = uuid::Uuid::new_v4().to_string();
        let answer = tokio::time::timeout(
            timeout,
            scripts::Ready {
                keys,
                value: &value,
            }
            .run(self),
        )
        .await
        .map_err(|_| Error::Unavailable("redis: readiness probe timed out".into()))??;
        if answer == value {
            Ok(())
        } else {
            Err(Error::Internal(
                "redis: readiness probe read back another value".into(),
            ))
        }
    }

    /// Adds a concert to its admission group's set (the worker that holds the
    /// group's lease visits it).
    pub async fn list_queue(&self, keys: &Keys, concert_id: i64) -> Result<()> {
        let set = keys.queued_concerts(admission_group(concert_id));
        let _: i64 = self.client().sadd(set, concert_id).await?;
        Ok(())
    }

    /// Takes a concert off its admission group's set.
    pub async fn unlist_queue(&self, keys: &Keys, concert_id: i64) -> Result<()> {
        let set = keys.queued_concerts(admission_group(concert_id));
        let _: i64 = self.client().srem(set, concert_id).await?;
        Ok(())
    }

    /// Takes a stopping server off the roll of admitting servers, so the
    /// others deal its groups out at their next tick.
    pub async fn leave_admission(&self, keys: &Keys, server: &str) -> Result<()> {
        let _: i64 = self.client().zrem(keys.admission_servers(), server).await?;
        Ok(())
    }

    /// A reservation's record, `None` when Redis has none.
    pub async fn reservation_record(
        &self,
        keys: &BookingKeys,
        id: i64,
    ) -> Result<Option<ReservationRecord>> {
        let fields: Vec<Option<String>> = self
            .client()
            .hmget(keys.reservation(id), ReservationRecord::FIELDS.to_vec())
            .await?;
        ReservationRecord::from_fields(id, &fields)
    }

    pub async fn quit(&self) {
        let _ = self.pool.quit().await;
    }
}

/// The first key not in the first key's hash slot, if any.
fn stray_key(keys: &[String]) -> Option<&str> {
    let (first, rest) = keys.split_first()?;
    let slot = fred::util::redis_keyslot(first.as_bytes());
    rest.iter()
        .find(|k| fred::util::redis_keyslot(k.as_bytes()) != slot)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::stray_key;

    #[test]
    fn keys_of_one_script_share_a_slot() {
        let one = ["bo:{c:7}:waiting".to_owned(), "bo:{c:7}:tok:x".to_owned()];
        assert_eq!(stray_key(&one), None);
        let two = ["bo:{c:7}:waiting".to_owned(), "bo:{c:8}:waiting".to_owned()];
        assert_eq!(stray_key(&two), Some("bo:{c:8}:waiting"));
        assert_eq!(stray_key(&[]), None);
    }
}
