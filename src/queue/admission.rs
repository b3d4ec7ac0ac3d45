//! The admission worker: every [`TICK`], each concert with a queue gets one
//! `queue_admit.lua`, run by exactly one server at a time.
//!
//! The concerts are dealt into [`ADMISSION_GROUPS`] groups (concert id modulo
//! 16), each with its lease (a Redis key taken with `SET NX PX`, renewed each
//! tick) and its set of queued concerts, under one hash tag. The servers share
//! the groups out: each says every tick that it is alive (a roll in Redis whose
//! entries lapse after [`LEASE`]), finds its rank r among the N live servers,
//! and takes the leases of the groups g with g mod N = r; a group it holds that
//! is now another's it hands back. So N servers share the ticks of M concerts
//! (16 groups over 3 servers: 6, 5 and 5), and on a cluster the leases spread
//! over the masters like the concerts. If a server dies, it leaves the roll
//! and its leases lapse within [`LEASE`]: the others deal its groups out again
//! and take them at their next tick. While two servers briefly disagree on the
//! roll, they only contend for a lease: at most one holds it. The rate's token
//! bucket lives in the concert's slot, so a hand-over neither doubles nor
//! resets the rate.
//!
//! Each concert's tick follows its waiting room (`room.rs`): its own rate and
//! cap, its opening, its pause, its seats. Every [`RECONCILE_EVERY`] ticks a
//! server checks that the rooms it ticked are Postgres's copy.

use super::audit::AuditEvent;
use super::{ENDED_RETENTION_MS, LISTED_MARKER_MS, QueueStatus, QueueToken, millis, room};
use crate::AppState;
use crate::error::{Error, Result};
use crate::store::keys::ADMISSION_GROUPS;
use crate::store::scripts::{self, RoomState, Roomed, Script};
use chrono::Utc;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How often admission runs. Finer is smoother; 100 ms keeps a tick cheap.
pub const TICK: Duration = Duration::from_millis(100);
/// How long a lease lasts without renewal, and a server stays on the roll
/// without saying it is alive: the take-over time if a server dies.
pub const LEASE: Duration = Duration::from_secs(2);
/// Ticks between two checks of the rooms against Postgres (2 s).
pub const RECONCILE_EVERY: u32 = 20;

/// Per concert ticked: the room's (settings version, schedules) as Redis had them.
type Seen = HashMap<i64, (i64, i64)>;

/// Runs until `stop` turns true; a tick under way is finished first, so what it
/// admitted or expired also reaches the audit trail. Then the server leaves the
/// roll and hands its leases back: the others take them at their next tick.
pub async fn run(app: Arc<AppState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut roll: Vec<String> = Vec::new();
    let mut held: BTreeSet<i64> = BTreeSet::new();
    let mut ticks = 0u32;
    let leases_held = metrics::gauge!("admission_leases_held");
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopping {
            leave(&app, &held).await;
            leases_held.set(0.0);
            return;
        }
        match enrol(&app).await {
            Ok(live) => roll = live,
            // Keep the last roll: a lease is still held by one server at most,
            // and the groups keep being ticked if only the roll's slot is out.
            Err(e) => tracing::warn!(error = %e, "admission: the roll of servers not reachable"),
        }
        let mine = my_groups(&roll, &app.instance_id);
        let (now_held, seen) = tick_groups(&app, &mine, &held).await;
        if now_held != held {
            tracing::info!(
                held = ?now_held,
                servers = roll.len(),
                "admission groups changed hands"
            );
            held = now_held;
        }
        leases_held.set(held.len() as f64);
        if held.is_empty() {
            continue;
        }
        ticks += 1;
        if ticks.is_multiple_of(RECONCILE_EVERY)
            && let Err(e) = room::reconcile(&app, &seen).await
        {
            tracing::warn!(error = %e, "waiting rooms not checked against Postgres; will retry");
        }
    }
}

/// The admission groups dealt to server `me` by its rank among the live
/// servers of `roll` (sorted): g mod N = rank. None if `me` is not on it.
pub fn my_groups(roll: &[String], me: &str) -> BTreeSet<i64> {
    let Some(rank) = roll.iter().position(|id| id == me) else {
        return BTreeSet::new();
    };
    let n = roll.len() as i64;
    (0..ADMISSION_GROUPS)
        .filter(|g| g % n == rank as i64)
        .collect()
}

/// Says this server is alive; returns the live servers, sorted.
async fn enrol(app: &AppState) -> Result<Vec<String>> {
    scripts::AdmissionServers {
        keys: &app.keys,
        server: &app.instance_id,
        ttl_ms: LEASE.as_millis() as u64,
    }
    .run(&app.redis)
    .await
}

/// One tick: takes or renews the lease of each group of `mine` and ticks its
/// concerts; hands back the groups of `held` that are no longer mine. Each
/// group is its own task (its keys are in their own slot). Returns the groups
/// held now and the rooms ticked.
async fn tick_groups(
    app: &Arc<AppState>,
    mine: &BTreeSet<i64>,
    held: &BTreeSet<i64>,
) -> (BTreeSet<i64>, Seen) {
    let mut tasks = JoinSet::new();
    for &group in held.difference(mine) {
        let app = app.clone();
        tasks.spawn(async move {
            hand_back(&app, group).await;
            (group, None)
        });
    }
    for &group in mine {
        let app = app.clone();
        tasks.spawn(async move { (group, tick_group(&app, group).await) });
    }
    let mut now_held = BTreeSet::new();
    let mut seen = Seen::new();
    while let Some(done) = tasks.join_next().await {
        let Ok((group, Some(ticked))) = done else {
            continue;
        };
        now_held.insert(group);
        seen.extend(ticked);
    }
    (now_held, seen)
}

/// Takes or renews one group's lease and, if held, ticks its concerts;
/// `None` if another server holds it or Redis did not answer.
async fn tick_group(app: &AppState, group: i64) -> Option<Seen> {
    let leased = scripts::Lease {
        keys: &app.keys,
        group,
        holder: &app.instance_id,
        lease_ms: LEASE.as_millis() as u64,
    }
    .run(&app.redis)
    .await;
    match leased {
        Ok(Some(concerts)) => Some(admit_all(app, concerts).await),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, group, "admission lease not reachable");
            None
        }
    }
}

/// At shutdown: off the roll first (so nobody deals my groups back to me),
/// then every lease handed back, so the others take them at their next tick.
async fn leave(app: &Arc<AppState>, held: &BTreeSet<i64>) {
    if let Err(e) = app.redis.leave_admission(&app.keys, &app.instance_id).await {
        tracing::warn!(error = %e, "admission roll not left; the entry lapses by itself");
    }
    let mut tasks = JoinSet::new();
    for &group in held {
        let app = app.clone();
        tasks.spawn(async move { hand_back(&app, group).await });
    }
    tasks.join_all().await;
    if !held.is_empty() {
        tracing::info!(groups = held.len(), "admission leases handed back");
    }
}

/// Hands one group's lease back.
async fn hand_back(app: &AppState, group: i64) {
    let released = scripts::LeaseRelease {
        keys: &app.keys,
        group,
        holder: &app.instance_id,
    }
    .run(&app.redis)
    .await;
    if let Err(e) = released {
        tracing::warn!(error = %e, group, "admission lease not handed back; it lapses by itself");
    }
}

/// One tick over the concerts of a group. A concert that fails is logged and
/// retried next tick; it never holds up the others. Returns, per concert
/// ticked, the room's (settings version, schedules) as Redis had them.
async fn admit_all(app: &AppState, concerts: Vec<i64>) -> Seen {
    let mut seen = Seen::new();
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

/// Takes an empty queue off its group's list. The concert leaves the set
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
        for (name, user_id) in pairs {
            let (Some(token), Ok(user_id)) = (
                QueueToken::from_name(concert_id, name),
                user_id.parse::<i64>(),
            ) else {
                continue;
            };
            app.audit.record(AuditEvent {
                token: token.uuid,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn roll(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("server-{i}")).collect()
    }

    #[test]
    fn the_groups_are_dealt_out_once_each_and_evenly() {
        for n in 1..=5 {
            let roll = roll(n);
            let shares: Vec<BTreeSet<i64>> = roll.iter().map(|me| my_groups(&roll, me)).collect();
            let dealt: Vec<i64> = shares.iter().flatten().copied().collect();
            let unique: BTreeSet<i64> = dealt.iter().copied().collect();
            assert_eq!(
                dealt.len() as i64,
                ADMISSION_GROUPS,
                "{n} servers: each group once"
            );
            assert_eq!(
                unique.len() as i64,
                ADMISSION_GROUPS,
                "{n} servers: every group"
            );
            let sizes: Vec<usize> = shares.iter().map(BTreeSet::len).collect();
            let (min, max) = (sizes.iter().min(), sizes.iter().max());
            assert!(
                max.zip(min).is_some_and(|(a, b)| a - b <= 1),
                "{n} servers: {sizes:?}"
            );
        }
        assert_eq!(
            roll(3)
                .iter()
                .map(|me| my_groups(&roll(3), me).len())
                .collect::<Vec<_>>(),
            [6, 5, 5]
        );
    }

    #[test]
    fn a_server_off_the_roll_takes_no_group() {
        assert!(my_groups(&roll(3), "someone-else").is_empty());
        assert!(my_groups(&[], "server-0").is_empty());
    }
}
