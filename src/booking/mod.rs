//! Seats, holds and reservations: what the fans came for.
//!
//! The live state of every seat is in Redis, under its concert's hash tag
//! (`store::keys::BookingKeys`): a SOLD bitmap and a HELD index per schedule, one
//! `SET NX PXAT` key per held seat, a record per reservation and each user's
//! holds. Every hot request (seat map, hold) is one Lua script and one round
//! trip, with the queue pass checked inside it, and none touches Postgres.
//! Postgres has the catalog (cached in process, `catalog::seats`) and, from the
//! payment on, every sale; the SOLD bitmap is rebuilt from it whenever Redis
//! lost its data.
//!
//! - [`seat_map`]: a schedule's seats with their live status;
//! - [`holds`]: taking and cancelling a hold;
//! - [`reservations`]: reading a reservation, wherever it lives now;
//! - [`payment`]: a hold becomes a sale;
//! - [`ids`]: reservation ids, from blocks Postgres hands out;
//! - [`recovery`]: SOLD seats rebuilt in Redis from Postgres.

pub mod holds;
pub mod ids;
pub mod payment;
pub mod recovery;
pub mod reservations;
pub mod seat_map;

pub use holds::{cancel, hold};
pub use reservations::reservation;
pub use seat_map::{SeatMap, seat_map};

use crate::error::{Error, Result};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

/// How long a cancelled or lapsed hold still reads as CANCELED (API.md: at
/// least 24 hours).
pub const CANCELED_RETENTION_MS: u64 = 25 * 3600 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "reservation_status", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum ReservationStatus {
    Pending,
    Confirmed,
    Canceled,
}

/// A reservation as API.md shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ReservationView {
    pub id: i64,
    pub schedule_id: i64,
    pub seat_id: i64,
    pub seat_no: i64,
    pub price: i64,
    pub status: ReservationStatus,
    #[serde(serialize_with = "crate::time::serialize")]
    pub expires_at: DateTime<Utc>,
}

/// The booking side of the service's state. (How long a hold lasts and how
/// many a fan may have are each concert's waiting-room settings.)
#[derive(Default)]
pub struct Booking {
    pub ids: ids::ReservationIds,
}

fn millis(ms: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| Error::Internal(format!("time out of range: {ms} ms")))
}

pub fn reservation_not_found() -> Error {
    Error::not_found(
        "reservation_not_found",
        "no reservation of yours with that id",
    )
}

/// Counts holds that lapsed by themselves, as a script tidied them.
pub(crate) fn count_lapsed(n: i64) {
    if n > 0 {
        metrics::counter!("holds_released_total", "reason" => "expired").increment(n as u64);
    }
}
