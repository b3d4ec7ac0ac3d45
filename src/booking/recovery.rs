//! SOLD seats in Redis, rebuilt from Postgres, so that a Redis restart or flush
//! never offers a sold seat again.
//!
//! - At start, and every [`INTERVAL`], each concert's marker
//!   (`{prefix}:{c:<id>}:sold:rebuilt`, in the concert's slot) is compared,
//!   inside a script on the node that holds the concert, with that node's
//!   `run_id`: gone after a flush, another run after a restart without its
//!   data or from an older snapshot, or after a replica was promoted in a
//!   Redis Cluster. Every concert whose marker does not match has each of its
//!   CONFIRMED reservations marked in its schedule's SOLD bitmap; on a cluster
//!   only the concerts of the master that lost its data are rebuilt. A marker
//!   is set only when its rebuild ran to its end with no flush in between (a
//!   nonce key that must survive it), so a rebuild cut short is done again.
//! - Every `SOLD_CATCH_UP_SECS` (30 s), and at start, the sales confirmed since
//!   the durable watermark (table `sold_watermark`: the last sale marked, less
//!   [`CATCH_UP_MARGIN`]) are marked again: a sale whose server died between its
//!   commit and its Redis update (or met a Redis outage there) shows as SOLD
//!   within seconds of any server running, however long none was, and its
//!   reservation reads CONFIRMED from Redis too. The watermark moves only to
//!   sales that were marked, and only forward.
//!
//! Marking only sets bits, so it never races a sale into being undone. Until a
//! rebuild has run, the Postgres unique index on confirmed seats still refuses
//! a second sale (the payer gets `409 seat_unavailable`, nothing debited).
//! Seat indexes are computed in Postgres (row number by `seat_no`), so a
//! rebuild does not churn the in-process seat catalogs.

use crate::AppState;
use crate::error::Result;
use crate::store::postgres::{BULK_DEADLINE, Deadline};
use crate::store::scripts::{self, Sale, Script, SoldCheckVerdict};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the marker is checked.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How far before the watermark the catch-up reads: longer than any payment's
/// transaction (a sale stamped before the watermark may commit after it).
const CATCH_UP_MARGIN: Duration = Duration::from_secs(60);
/// How long a rebuild's nonce lives if its server dies (a rebuild marks a
/// million sales in well under a minute).
const REBUILD_NONCE_TTL: Duration = Duration::from_secs(600);
/// Sales per script call.
const CHUNK: usize = 2500;
/// Concerts whose markers are checked at once (auto-pipelined, one round trip).
const CHECKS_AT_ONCE: usize = 500;

/// Marks the seats of every sale confirmed after `since` (all sales for `None`)
/// of `concerts` (every concert for `None`) SOLD in Redis; when every concert
/// was marked, moves the watermark to the last of them. Returns how many bits
/// were newly set.
pub async fn mark_sold(
    app: &AppState,
    since: Option<DateTime<Utc>>,
    concerts: Option<&[i64]>,
) -> Result<u64> {
    let rows: Vec<(i64, i64, i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "WITH sold AS (
             SELECT id, seat_id, concert_schedule_id, confirmed_at FROM reservation
              WHERE status = 'CONFIRMED' AND ($1::timestamptz IS NULL OR confirmed_at > $1)
                AND ($2::bigint[] IS NULL OR concert_schedule_id IN (
                     SELECT id FROM concert_schedule WHERE concert_id = ANY($2)))
         ), seats AS (
             SELECT id, concert_schedule_id,
                    row_number() OVER (PARTITION BY concert_schedule_id ORDER BY seat_no) - 1 AS idx
               FROM seat
              WHERE concert_schedule_id IN (SELECT concert_schedule_id FROM sold)
         )
         SELECT cs.concert_id, cs.id, seats.idx, sold.id, sold.confirmed_at
           FROM sold
           JOIN seats ON seats.id = sold.seat_id
           JOIN concert_schedule cs ON cs.id = sold.concert_schedule_id",
    )
    .bind(since)
    .bind(concerts)
    .fetch_all(&app.pg)
    .deadline_of(BULK_DEADLINE)
    .await?;
    let last = rows.iter().map(|row| row.4).max();
    let mut by_schedule: HashMap<(i64, i64), Vec<Sale>> = HashMap::new();
    for (concert, schedule, index, reservation, _) in rows {
        by_schedule
            .entry((concert, schedule))
            .or_default()
            .push(Sale {
                seat_index: index,
                reservation_id: reservation,
            });
    }
    let mut fresh = 0u64;
    for ((concert_id, schedule_id), sales) in by_schedule {
        let keys = app.keys.booking(concert_id);
        for chunk in sales.chunks(CHUNK) {
            let n = scripts::SoldMark {
                keys: &keys,
                schedule_id,
                sales: chunk,
            }
            .run(&app.redis)
            .await?;
            fresh += n as u64;
        }
    }
    if fresh > 0 {
        metrics::counter!("sold_seats_rebuilt_total").increment(fresh);
    }
    // A rebuild of some concerts says nothing of the others' recent sales.
    if let (Some(last), None) = (last, concerts) {
        sqlx::query(
            "UPDATE sold_watermark SET confirmed_at = $1
              WHERE confirmed_at IS NULL OR confirmed_at < $1",
        )
        .bind(last)
        .execute(&app.pg)
        .deadline()
        .await?;
    }
    Ok(fresh)
}

/// Where the catch-up starts: the watermark less [`CATCH_UP_MARGIN`] (`None`,
/// every sale, while nothing was ever marked).
async fn catch_up_from(app: &AppState) -> Result<Option<DateTime<Utc>>> {
    let watermark: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT confirmed_at FROM sold_watermark")
            .fetch_optional(&app.pg)
            .deadline()
            .await?
            .flatten();
    let margin = chrono::TimeDelta::from_std(CATCH_UP_MARGIN).unwrap_or_default();
    Ok(watermark.map(|at| at - margin))
}

/// Rebuilds the SOLD seats of every concert whose marker does not name the
/// Redis node holding it (all of them when `force`), each by one server at a
/// time; a concert's marker is set when its rebuild ran to its end
/// undisturbed. Returns how many concerts were rebuilt.
async fn rebuild_stale(app: &AppState, force: bool) -> Result<usize> {
    let concerts: Vec<i64> = sqlx::query_scalar("SELECT id FROM concert ORDER BY id")
        .fetch_all(&app.pg)
        .deadline()
        .await?;
    let nonce = uuid::Uuid::new_v4().to_string();
    let nonce = nonce.as_str();
    let mut stale = Vec::new();
    for chunk in concerts.chunks(CHECKS_AT_ONCE) {
        let checks = chunk.iter().map(|&concert_id| async move {
            let keys = app.keys.booking(concert_id);
            let verdict = scripts::SoldCheck {
                keys: &keys,
                nonce,
                nonce_ttl: REBUILD_NONCE_TTL,
                force,
            }
            .run(&app.redis)
            .await?;
            Ok::<_, crate::error::Error>((concert_id, verdict))
        });
        for checked in futures::future::join_all(checks).await {
            let (concert_id, verdict) = checked?;
            // Busy: another server is rebuilding it; the next round looks again.
            if verdict == SoldCheckVerdict::Rebuild {
                stale.push(concert_id);
            }
        }
    }
    if stale.is_empty() {
        return Ok(0);
    }
    let fresh = mark_sold(app, None, Some(&stale)).await?;
    let mut done = 0;
    for &concert_id in &stale {
        let keys = app.keys.booking(concert_id);
        if (scripts::SoldRebuilt { keys: &keys, nonce })
            .run(&app.redis)
            .await?
        {
            done += 1;
        }
    }
    tracing::info!(
        concerts = stale.len(),
        marked = done,
        newly_marked = fresh,
        "SOLD seats rebuilt in Redis from Postgres"
    );
    Ok(stale.len())
}

/// One round: the rebuild of every concert whose marker says so (all when
/// `force`), then the catch-up of recent sales when `catch_up`.
async fn round(app: &AppState, force: bool, catch_up: bool) -> Result<()> {
    rebuild_stale(app, force).await?;
    if catch_up {
        let since = catch_up_from(app).await?;
        let fresh = mark_sold(app, since, None).await?;
        if fresh > 0 {
            tracing::warn!(seats = fresh, "sales missing in Redis marked SOLD");
        }
    }
    Ok(())
}

/// The background task: a round every [`INTERVAL`] until `stop`.
pub async fn run(app: Arc<AppState>, mut stop: watch::Receiver<bool>, mut need_full: bool) {
    let mut tick = tokio::time::interval(INTERVAL.min(app.config.sold_catch_up));
    tick.tick().await;
    let mut last_catch_up = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let catch_up = last_catch_up.elapsed() >= app.config.sold_catch_up;
        match round(&app, need_full, catch_up).await {
            Ok(()) => {
                need_full = false;
                if catch_up {
                    last_catch_up = Instant::now();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "SOLD seat rebuild failed; will retry");
                need_full = true;
            }
        }
    }
}

/// The rebuild at start, before the server takes requests; `true` if it could
/// not run (Redis or Postgres down), so the background task starts with it.
pub async fn at_start(app: &AppState, patience: Duration) -> bool {
    match tokio::time::timeout(patience, round(app, false, true)).await {
        Ok(Ok(())) => false,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "SOLD seat rebuild failed at start; retrying in the background");
            true
        }
        Err(_) => {
            tracing::warn!("SOLD seat rebuild did not finish at start; retrying in the background");
            true
        }
    }
}
