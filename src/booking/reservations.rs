//! Reading a reservation where it lives: a hold (pending, cancelled or lapsed)
//! in Redis, a sale in Postgres, the source of truth also after Redis lost it.

use super::{ReservationStatus, ReservationView, millis, reservation_not_found};
use crate::AppState;
use crate::error::Result;
use crate::store::postgres::Deadline;
use chrono::Utc;

/// The concert of reservation `id` (from its id block), or
/// `404 reservation_not_found` for an id never handed out.
pub async fn concert_of_reservation(app: &AppState, id: i64) -> Result<i64> {
    app.booking
        .ids
        .concert_of(&app.pg, id)
        .await?
        .ok_or_else(reservation_not_found)
}

/// A sale in Postgres: the durable record, whatever Redis still knows.
pub(super) async fn confirmed(
    app: &AppState,
    user_id: i64,
    id: i64,
) -> Result<Option<ReservationView>> {
    sqlx::query_as(
        "SELECT id, concert_schedule_id AS schedule_id, seat_id, seat_no::bigint AS seat_no,
                price, status, COALESCE(expires_at, confirmed_at) AS expires_at
           FROM reservation WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&app.pg)
    .deadline()
    .await
}

/// Reads a reservation for its owner.
pub async fn reservation(app: &AppState, user_id: i64, id: i64) -> Result<ReservationView> {
    let concert_id = concert_of_reservation(app, id).await?;
    let record = app
        .redis
        .reservation_record(&app.keys.booking(concert_id), id)
        .await?;
    if let Some(r) = &record
        && r.user_id == user_id
        && r.payment_began
        && let Some(sale) = confirmed(app, user_id, id).await?
    {
        // Paid, though Redis may not have heard yet: Postgres says so.
        return Ok(sale);
    }
    match record {
        Some(r) if r.user_id != user_id => Err(reservation_not_found()),
        Some(r) if r.state != ReservationStatus::Confirmed => {
            let live = r.state == ReservationStatus::Pending
                && r.expires_ms >= Utc::now().timestamp_millis();
            Ok(ReservationView {
                id,
                schedule_id: r.schedule_id,
                seat_id: r.seat_id,
                seat_no: r.seat_no,
                price: r.price,
                status: if live {
                    ReservationStatus::Pending
                } else {
                    ReservationStatus::Canceled
                },
                expires_at: millis(r.expires_ms)?,
            })
        }
        _ => confirmed(app, user_id, id)
            .await?
            .ok_or_else(reservation_not_found),
    }
}

/// Whether `id` is the user's reservation in Redis or a sale of theirs in
/// Postgres: the resource check that comes before the gate (API.md's order).
pub(super) async fn exists_for(
    app: &AppState,
    concert_id: i64,
    user_id: i64,
    id: i64,
) -> Result<bool> {
    let keys = app.keys.booking(concert_id);
    if let Some(r) = app.redis.reservation_record(&keys, id).await? {
        return Ok(r.user_id == user_id);
    }
    Ok(confirmed(app, user_id, id).await?.is_some())
}
