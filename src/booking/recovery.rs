//! SOLD seats in Redis, rebuilt from Postgres, so that a Redis restart or flush
//! never offers a sold seat again.
//!
//! - At start, and whenever the marker key `{prefix}:sold:rebuilt` is missing
//!   (Redis lost its data), every CONFIRMED reservation marks its seat in the
//!   schedule's SOLD bitmap.
//! - Every [`INTERVAL`], the sales of the last [`CATCH_UP`] are marked again:
//!   a sale whose server died between its commit and its Redis update (or met a
//!   Redis outage there) shows as SOLD within seconds.
//!
//! Marking only sets bits, so it never races a sale into being undone. Until a
//! rebuild has run, the Postgres unique index on confirmed seats still refuses
//! a second sale (the payer gets `409 seat_unavailable`, nothing debited).

use crate::AppState;
use crate::error::Result;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const INTERVAL: Duration = Duration::from_secs(5);
/// Longer than any payment transaction can run (the request timeout is 30 s),
/// with room for clock skew between servers and Postgres.
const CATCH_UP: chrono::TimeDelta = chrono::TimeDelta::seconds(120);
/// Seat indexes per script call.
const CHUNK: usize = 5000;

/// Marks the seats of every sale confirmed after `since` (all sales for `None`)
/// SOLD in Redis. Returns how many bits were newly set.
pub async fn mark_sold(app: &AppState, since: Option<DateTime<Utc>>) -> Result<u64> {
    let rows: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT concert_schedule_id, seat_no FROM reservation
          WHERE status = 'CONFIRMED' AND ($1::timestamptz IS NULL OR confirmed_at > $1)",
    )
    .bind(since)
    .fetch_all(&app.pg)
    .await?;
    let mut by_schedule: HashMap<i64, Vec<i32>> = HashMap::new();
    for (schedule, seat_no) in rows {
        by_schedule.entry(schedule).or_default().push(seat_no);
    }
    let mut fresh = 0u64;
    for (schedule_id, numbers) in by_schedule {
        let catalog = app.booking.seats.get(&app.pg, schedule_id).await?;
        let indexes: Vec<String> = numbers
            .iter()
            .filter_map(|&n| catalog.index_of(i64::from(n)))
            .map(|i| i.to_string())
            .collect();
        let key = app.keys.booking(catalog.concert_id).sold(schedule_id);
        for chunk in indexes.chunks(CHUNK) {
            let n: i64 = app
                .redis
                .run(
                    &app.redis.scripts.sold_mark,
                    vec![key.clone()],
                    chunk.to_vec(),
                )
                .await?;
            fresh += n as u64;
        }
    }
    Ok(fresh)
}

/// A full rebuild: sets the marker first, so a flush during the rebuild is seen
/// by the next round (the marker is gone again) and the rebuild runs again.
pub async fn rebuild(app: &AppState) -> Result<()> {
    let _: Option<String> = fred::interfaces::KeysInterface::set(
        app.redis.client(),
        app.keys.sold_rebuilt(),
        Utc::now().to_rfc3339(),
        None,
        None,
        false,
    )
    .await?;
    let fresh = mark_sold(app, None).await?;
    if fresh > 0 {
        tracing::warn!(seats = fresh, "SOLD seats rebuilt in Redis from Postgres");
        metrics::counter!("sold_seats_rebuilt_total").increment(fresh);
    }
    Ok(())
}

async fn marker_present(app: &AppState) -> Result<bool> {
    let n: i64 =
        fred::interfaces::KeysInterface::exists(app.redis.client(), app.keys.sold_rebuilt())
            .await?;
    Ok(n == 1)
}

/// One round: a full rebuild when needed, else the catch-up of recent sales.
/// Returns whether a full rebuild is still needed.
async fn round(app: &AppState, need_full: bool) -> bool {
    let outcome = async {
        if need_full || !marker_present(app).await? {
            rebuild(app).await
        } else {
            let since = Utc::now() - CATCH_UP;
            let fresh = mark_sold(app, Some(since)).await?;
            if fresh > 0 {
                tracing::warn!(seats = fresh, "sales missing in Redis marked SOLD");
                metrics::counter!("sold_seats_rebuilt_total").increment(fresh);
            }
            Ok(())
        }
    }
    .await;
    match outcome {
        Ok(()) => false,
        Err(e) => {
            tracing::warn!(error = %e, "SOLD seat rebuild failed; will retry");
            true
        }
    }
}

/// The background task: a round every [`INTERVAL`] until `stop`.
pub async fn run(app: Arc<AppState>, mut stop: watch::Receiver<bool>, mut need_full: bool) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        need_full = round(&app, need_full).await;
    }
}

/// The rebuild at start, before the server takes requests; `true` if it could
/// not run (Redis or Postgres down), so the background task starts with it.
pub async fn at_start(app: &AppState, patience: Duration) -> bool {
    match tokio::time::timeout(patience, round(app, true)).await {
        Ok(still_needed) => still_needed,
        Err(_) => {
            tracing::warn!("SOLD seat rebuild did not finish at start; retrying in the background");
            true
        }
    }
}
