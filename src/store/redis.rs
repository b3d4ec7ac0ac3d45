//! The Redis client and the Lua scripts of `lua/`.
//!
//! One multiplexed, auto-pipelined connection: on two cores it beat pools of 4
//! and 8 (STACK.md). Scripts are compiled into the binary, loaded once at start,
//! and called by SHA; if Redis forgets them (a restart, `SCRIPT FLUSH`), the call
//! that meets `NOSCRIPT` loads the script again and retries.

use crate::error::{Error, Result};
use fred::prelude::*;
use fred::types::scripts::Script;
use std::time::Duration;

/// How long a command may wait, including time queued while reconnecting, before
/// it fails and the request gets a `503`.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Delay between reconnection attempts while Redis is down.
const RECONNECT_DELAY_MS: u32 = 250;

/// A script of `lua/` with the shared helpers of `lua/lib.lua` in front.
macro_rules! with_lib {
    ($file:literal) => {
        Script::from_lua(concat!(
            include_str!("../../lua/lib.lua"),
            include_str!(concat!("../../lua/", $file))
        ))
    };
}

/// Every script the service runs, by name.
pub struct Scripts {
    pub ready: Script,
    pub queue_join: Script,
    pub queue_status: Script,
    pub queue_gate: Script,
    pub queue_leave: Script,
    pub queue_admit: Script,
    pub queue_unlist: Script,
    pub lease: Script,
    pub seat_map: Script,
    pub availability: Script,
    pub hold: Script,
    pub cancel: Script,
    pub pay_begin: Script,
    pub pay_abort: Script,
    pub pay_finish: Script,
    pub sold_mark: Script,
    pub sold_rebuilt: Script,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            ready: Script::from_lua(include_str!("../../lua/ready.lua")),
            queue_join: Script::from_lua(include_str!("../../lua/queue_join.lua")),
            queue_status: Script::from_lua(include_str!("../../lua/queue_status.lua")),
            queue_gate: with_lib!("queue_gate.lua"),
            queue_leave: with_lib!("queue_leave.lua"),
            queue_admit: Script::from_lua(include_str!("../../lua/queue_admit.lua")),
            queue_unlist: Script::from_lua(include_str!("../../lua/queue_unlist.lua")),
            lease: Script::from_lua(include_str!("../../lua/lease.lua")),
            seat_map: with_lib!("seat_map.lua"),
            availability: with_lib!("availability.lua"),
            hold: with_lib!("hold.lua"),
            cancel: with_lib!("cancel.lua"),
            pay_begin: with_lib!("pay_begin.lua"),
            pay_abort: with_lib!("pay_abort.lua"),
            pay_finish: with_lib!("pay_finish.lua"),
            sold_mark: with_lib!("sold_mark.lua"),
            sold_rebuilt: Script::from_lua(include_str!("../../lua/sold_rebuilt.lua")),
        }
    }

    fn all(&self) -> [&Script; 17] {
        [
            &self.ready,
            &self.queue_join,
            &self.queue_status,
            &self.queue_gate,
            &self.queue_leave,
            &self.queue_admit,
            &self.queue_unlist,
            &self.lease,
            &self.seat_map,
            &self.availability,
            &self.hold,
            &self.cancel,
            &self.pay_begin,
            &self.pay_abort,
            &self.pay_finish,
            &self.sold_mark,
            &self.sold_rebuilt,
        ]
    }
}

/// Reads an integer out of a script reply.
pub fn int(v: &Value) -> Result<i64> {
    v.as_i64()
        .ok_or_else(|| Error::Internal(format!("script reply: expected an integer, got {v:?}")))
}

/// Reads a string out of a script reply.
pub fn text(v: &Value) -> Result<String> {
    v.as_string()
        .ok_or_else(|| Error::Internal(format!("script reply: expected a string, got {v:?}")))
}

/// A connected (or reconnecting) Redis client with the service's scripts.
pub struct Redis {
    pool: Pool,
    pub scripts: Scripts,
}

impl Redis {
    /// Builds the client and starts connecting in the background. Never waits for
    /// Redis: a server that starts during a Redis outage serves `/health`, answers
    /// `503` where Redis is needed, and recovers when Redis returns.
    pub fn connect(url: &str) -> Result<Self, fred::error::Error> {
        let config = Config::from_url(url)?;
        let pool = Builder::from_config(config)
            .with_config(|c| c.fail_fast = false)
            .with_performance_config(|p| p.default_command_timeout = COMMAND_TIMEOUT)
            .with_connection_config(|c| {
                c.connection_timeout = CONNECT_TIMEOUT;
                c.internal_command_timeout = CONNECT_TIMEOUT;
                // A command whose connection dropped is not sent again: a script
                // may already have run, and its caller decides what a retry means.
                c.max_command_attempts = 1;
            })
            .set_policy(ReconnectPolicy::new_constant(0, RECONNECT_DELAY_MS))
            .build_pool(1)?;
        pool.connect();
        Ok(Redis {
            pool,
            scripts: Scripts::new(),
        })
    }

    /// Waits up to `wait` for the first connection, then loads every script.
    /// Failure is logged, not fatal: scripts load lazily on `NOSCRIPT` as well.
    pub async fn load_scripts(&self, wait: Duration) {
        let loaded = tokio::time::timeout(wait, async {
            self.pool.wait_for_connect().await?;
            for script in self.scripts.all() {
                script.load(self.client()).await?;
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
    pub fn client(&self) -> &Client {
        self.pool.next()
    }

    /// Runs a script by SHA, loading it if Redis does not know it.
    pub async fn run<R: FromValue>(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R> {
        Ok(script
            .evalsha_with_reload(self.client(), keys, args)
            .await?)
    }

    /// The readiness probe: one script round trip, bounded by `timeout`.
    pub async fn ping(&self, probe_key: String, timeout: Duration) -> Result<()> {
        let token = uuid::Uuid::new_v4().to_string();
        let answer: String = tokio::time::timeout(
            timeout,
            self.run(&self.scripts.ready, vec![probe_key], vec![token.clone()]),
        )
        .await
        .map_err(|_| Error::Unavailable("redis: readiness probe timed out".into()))??;
        if answer == token {
            Ok(())
        } else {
            Err(Error::Internal(
                "redis: readiness probe read back another value".into(),
            ))
        }
    }

    pub async fn quit(&self) {
        let _ = self.pool.quit().await;
    }
}
