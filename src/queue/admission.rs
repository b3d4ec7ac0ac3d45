//! The admission worker: every [`TICK`], the server that holds the admission
//! lease runs one `queue_admit.lua` per concert with a queue. The lease (a Redis
//! key taken with `SET NX PX`, renewed each tick) makes exactly one server admit
//! at a time; if it dies, another takes over within [`LEASE`]. The rate's token
//! bucket lives in Redis too, so a hand-over neither doubles nor resets the rate.
//!
//! Each concert's tick follows its waiting room (`room.rs`): its own rate and
//! cap, its opening, its pause, its seats. Every [`RECONCILE_EVERY`] ticks the
//! leader checks that the rooms it ticked are Postgres's copy.

use super::audit::AuditEvent;
use super::{ENDED_RETENTION_MS, LISTED_MARKER_MS, QueueStatus, millis, room};
use crate::AppState;
use crate::error::{Error, Result};
use crate::store::scripts::{self, RoomState, Roomed, Script};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often admission runs. Finer is smoother; 100 ms keeps a tick cheap.
pub const TICK: Duration = Duration::from_millis(100);
/// How long the lease lasts without renewal: the take-over time if its holder dies.
pub const LEASE: Duration = Duration::from_secs(2);
/// Ticks between two checks of the rooms against Postgres (2 s).
pub const RECONCILE_EVERY: u32 = 20;

/// Runs until `stop` turns true; a tick under way is finished first, so what it
/// admitted or expired also reaches the audit trail.
pub async fn run(app: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading = false;
    let mut ticks = 0u32;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            if leading {
                release_lease(&app).await;
            }
            return;
        }
        match hold_lease(&app).await {
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
            let seen = admit_all(&app).await;
            ticks += 1;
            if ticks.is_multiple_of(RECONCILE_EVERY)
                && let Err(e) = room::reconcile(&app, &seen).await
            {
                tracing::warn!(error = %e, "waiting rooms not checked against Postgres; will retry");
            }
        }
    }
}

/// Hands the lease back at shutdown: another server admits at its next tick.
async fn release_lease(app: &AppState) {
    let released = scripts::LeaseRelease {
        keys: &app.keys,
        holder: &app.instance_id,
    }
    .run(&app.redis)
    .await;
    match released {
        Ok(true) => tracing::info!("admission lease handed back"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "admission lease not handed back; it lapses by itself")
        }
    }
}

async fn hold_lease(app: &AppState) -> Result<bool> {
    scripts::Lease {
        keys: &app.keys,
        holder: &app.instance_id,
        lease_ms: LEASE.as_millis() as u64,
    }
    .run(&app.redis)
    .await
}

/// One tick over every concert with a queue. A concert that fails is logged
/// and retried next tick; it never holds up the others. Returns, per concert
/// ticked, the room's (settings version, schedules) as Redis had them.
pub async fn admit_all(app: &AppState) -> HashMap<i64, (i64, i64)> {
    let mut seen = HashMap::new();
    let concerts = match app.redis.queued_concerts(&app.keys).await {
        Ok(concerts) => concerts,
        Err(e) => {
            tracing::warn!(error = %e, "admission: cannot read the list of queues");
            return seen;
        }
    };
    for concert_id in concerts {
        let started = Instant::now();
        let tick = match admit(app, concert_id).await {
            Ok(tick) => tick,
            Err(e) => {
                tracing::warn!(error = %e, concert_id, "admission tick failed; retrying next tick");
                continue;
            }
        };
        metrics::histogram!("queue_admission_tick_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        record_gauges(concert_id, &tick);
        seen.insert(concert_id, (tick.version, tick.schedules));
        if tick.waiting == 0 && tick.active == 0 {
            unlist_if_idle(app, concert_id).await;
        }
    }
    seen
}

/// The room's gauges, per concert: what operators watch during a sale.
fn record_gauges(concert_id: i64, tick: &scripts::Ticked) {
    let concert = concert_id.to_string();
    metrics::gauge!("queue_waiting", "concert" => concert.clone()).set(tick.waiting as f64);
    metrics::gauge!("queue_active", "concert" => concert.clone()).set(tick.active as f64);
    metrics::gauge!("waiting_room_seats_left", "concert" => concert.clone())
        .set(tick.room.seats_left.unwrap_or(0) as f64);
    for state in RoomState::ALL {
        let on = if tick.room.state == state { 1.0 } else { 0.0 };
        metrics::gauge!("waiting_room_state", "concert" => concert.clone(), "state" => state.word())
            .set(on);
    }
    // The room's counters exist from its first tick, at 0, so increase()
    // and rate() see its first admissions and joins too.
    metrics::counter!("waiting_room_admitted_total", "concert" => concert.clone())
        .increment(tick.admitted.len() as u64);
    metrics::counter!("queue_joins_total", "concert" => concert.clone()).increment(0);
    for reason in ["active_ttl", "idle", "left"] {
        metrics::counter!("queue_expired_total", "concert" => concert.clone(), "reason" => reason)
            .increment(0);
    }
}

/// Takes an empty queue off the worker's list. The concert leaves the set
/// first; then, atomically, the listed marker is dropped only if the queue is
/// still empty, so a join either ran before (and is seen: the concert goes back)
/// or runs after (finds no marker, and lists the concert itself).
async fn unlist_if_idle(app: &AppState, concert_id: i64) {
    if app.redis.unlist_queue(&app.keys, concert_id).await.is_err() {
        return;
    }
    let unlisted = scripts::Unlist {
        keys: &app.keys.queue(concert_id),
    }
    .run(&app.redis)
    .await;
    if !matches!(unlisted, Ok(true)) {
        // In use again, or unknown: list it back (the marker heals a failure here).
        let _ = app.redis.list_queue(&app.keys, concert_id).await;
    }
}

/// One atomic admission step for one concert's room (restored from Postgres
/// first if Redis lost it: nobody is admitted by a room that is not there).
pub async fn admit(app: &AppState, concert_id: i64) -> Result<scripts::Ticked> {
    let keys = app.keys.queue(concert_id);
    let tick = room::run_with_room(
        app,
        concert_id,
        || scripts::Admit {
            keys: &keys,
            ended_retention_ms: ENDED_RETENTION_MS,
            listed_marker_ms: LISTED_MARKER_MS,
        },
        |r| matches!(r, Roomed::NoRoom),
    )
    .await?;
    let Roomed::Found(tick) = tick else {
        return Err(Error::Internal("admission tick after restore".into()));
    };
    crate::booking::count_lapsed(tick.lapsed);
    let now = Utc::now();
    let expires_at = millis(tick.admitted_until_ms);
    for (reason, pairs, status) in [
        ("admitted", &tick.admitted, QueueStatus::Active),
        ("active_ttl", &tick.expired, QueueStatus::Expired),
        ("idle", &tick.dropped, QueueStatus::Expired),
    ] {
        if pairs.is_empty() {
            continue;
        }
        match reason {
            "admitted" => metrics::counter!("queue_admissions_total").increment(pairs.len() as u64),
            _ => metrics::counter!("queue_expired_total", "concert" => concert_id.to_string(),
                "reason" => reason)
            .increment(pairs.len() as u64),
        }
        for (token, user_id) in pairs {
            let (Ok(token), Ok(user_id)) = (Uuid::parse_str(token), user_id.parse::<i64>()) else {
                continue;
            };
            app.audit.record(AuditEvent {
                token,
                user_id,
                concert_id,
                status,
                queue_no: None,
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
    Ok(tick)
}
