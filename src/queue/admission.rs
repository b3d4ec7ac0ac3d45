//! The admission worker: every [`TICK`], the server that holds the admission
//! lease runs one `queue_admit.lua` per concert with a queue. The lease (a Redis
//! key taken with `SET NX PX`, renewed each tick) makes exactly one server admit
//! at a time; if it dies, another takes over within [`LEASE`]. The rate's token
//! bucket lives in Redis too, so a hand-over neither doubles nor resets the rate.

use super::audit::{Audit, AuditEvent};
use super::{ENDED_RETENTION_MS, QueueSettings, QueueStatus, int, millis, text};
use crate::error::{Error, Result};
use crate::store::{Keys, Redis};
use chrono::Utc;
use fred::interfaces::SetsInterface;
use fred::types::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often admission runs. Finer is smoother; 100 ms keeps a tick cheap.
pub const TICK: Duration = Duration::from_millis(100);
/// How long the lease lasts without renewal: the take-over time if its holder dies.
pub const LEASE: Duration = Duration::from_secs(2);

/// Runs until `stop` turns true; a tick under way is finished first, so what it
/// admitted or expired also reaches the audit trail.
pub async fn run(app: Arc<crate::AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let me = app.instance_id.clone();
    let settings = QueueSettings::from_config(&app.config);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match hold_lease(&app.redis, &app.keys, &me).await {
            Ok(now_leading) => {
                if now_leading != leading {
                    tracing::info!(leading = now_leading, "admission lease changed hands");
                    leading = now_leading;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "admission lease not reachable");
                leading = false;
            }
        }
        if leading {
            admit_all(&app.redis, &app.keys, &app.audit, &settings).await;
        }
    }
}

async fn hold_lease(redis: &Redis, keys: &Keys, me: &str) -> Result<bool> {
    let held: i64 = redis
        .run(
            &redis.scripts.lease,
            vec![keys.admission_lease()],
            vec![me.to_owned(), LEASE.as_millis().to_string()],
        )
        .await?;
    Ok(held == 1)
}

/// One tick over every concert with a queue. A concert that fails is logged
/// and retried next tick; it never holds up the others.
pub async fn admit_all(redis: &Redis, keys: &Keys, audit: &Audit, s: &QueueSettings) {
    let concerts: Vec<i64> = match redis.client().smembers(keys.queued_concerts()).await {
        Ok(concerts) => concerts,
        Err(e) => {
            tracing::warn!(error = %e, "admission: cannot read the list of queues");
            return;
        }
    };
    for concert_id in concerts {
        let started = Instant::now();
        let (waiting, active) = match admit(redis, keys, audit, s, concert_id).await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::warn!(error = %e, concert_id, "admission tick failed; retrying next tick");
                continue;
            }
        };
        metrics::histogram!("queue_admission_tick_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let label = concert_id.to_string();
        metrics::gauge!("queue_waiting", "concert" => label.clone()).set(waiting as f64);
        metrics::gauge!("queue_active", "concert" => label).set(active as f64);
        if waiting == 0 && active == 0 {
            unlist_if_idle(redis, keys, concert_id).await;
        }
    }
}

/// Takes an empty queue off the worker's list. The concert leaves the set
/// first; then, atomically, the listed marker is dropped only if the queue is
/// still empty, so a join either ran before (and is seen: the concert goes back)
/// or runs after (finds no marker, and lists the concert itself).
async fn unlist_if_idle(redis: &Redis, keys: &Keys, concert_id: i64) {
    let q = keys.queue(concert_id);
    let client = redis.client();
    if client
        .srem::<i64, _, _>(keys.queued_concerts(), concert_id)
        .await
        .is_err()
    {
        return;
    }
    let unlisted: Result<i64> = redis
        .run(
            &redis.scripts.queue_unlist,
            vec![q.waiting(), q.active(), q.listed()],
            vec![],
        )
        .await;
    if !matches!(unlisted, Ok(1)) {
        // In use again, or unknown: list it back (the marker heals a failure here).
        let _ = client
            .sadd::<i64, _, _>(keys.queued_concerts(), concert_id)
            .await;
    }
}

/// One atomic admission step for one concert; returns (waiting, active).
pub async fn admit(
    redis: &Redis,
    keys: &Keys,
    audit: &Audit,
    s: &QueueSettings,
    concert_id: i64,
) -> Result<(i64, i64)> {
    let q = keys.queue(concert_id);
    let reply: Vec<Value> = redis
        .run(
            &redis.scripts.queue_admit,
            vec![q.waiting(), q.polled(), q.active(), q.bucket(), q.listed()],
            vec![
                s.admission_rate.to_string(),
                s.max_active.to_string(),
                s.active_ttl_ms.to_string(),
                s.waiting_idle_ms.to_string(),
                ENDED_RETENTION_MS.to_string(),
                q.token_prefix(),
                q.user_prefix(),
                super::LISTED_MARKER_MS.to_string(),
            ],
        )
        .await?;
    let [waiting, active, admitted, expired, dropped, expires_ms] = reply.as_slice() else {
        return Err(Error::Internal(format!("queue_admit reply {reply:?}")));
    };
    let now = Utc::now();
    let expires_at = millis(int(expires_ms)?);
    for (reason, list, status) in [
        ("admitted", admitted, QueueStatus::Active),
        ("active_ttl", expired, QueueStatus::Expired),
        ("idle", dropped, QueueStatus::Expired),
    ] {
        let pairs = pairs(list)?;
        if pairs.is_empty() {
            continue;
        }
        match reason {
            "admitted" => metrics::counter!("queue_admissions_total").increment(pairs.len() as u64),
            _ => metrics::counter!("queue_expired_total", "reason" => reason)
                .increment(pairs.len() as u64),
        }
        for (token, user_id) in pairs {
            let (Ok(token), Ok(user_id)) = (Uuid::parse_str(&token), user_id.parse::<i64>()) else {
                continue;
            };
            audit.record(AuditEvent {
                token,
                user_id,
                concert_id,
                status,
                joined_at: now,
                activated_at: (status == QueueStatus::Active).then_some(now),
                expires_at: if status == QueueStatus::Active {
                    expires_at
                } else {
                    Some(now)
                },
            });
        }
    }
    Ok((int(waiting)?, int(active)?))
}

/// `[token, user, token, user, ...]` as pairs.
fn pairs(list: &Value) -> Result<Vec<(String, String)>> {
    let items = match list {
        Value::Array(items) => items,
        Value::Null => return Ok(Vec::new()),
        other => return Err(Error::Internal(format!("queue_admit list {other:?}"))),
    };
    items
        .chunks(2)
        .map(|p| match p {
            [t, u] => Ok((text(t)?, text(u).unwrap_or_default())),
            _ => Err(Error::Internal("queue_admit list of odd length".into())),
        })
        .collect()
}
