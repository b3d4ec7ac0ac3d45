//! Holds: `POST /reservations` takes a seat for a few minutes (one script, one
//! round trip, no Postgres but for one id block per 16 384 holds), and
//! `DELETE /reservations/{id}` gives it back.

use super::reservations::{concert_of_reservation, confirmed};
use super::{
    CANCELED_RETENTION_MS, ReservationStatus, ReservationView, count_lapsed, millis,
    reservation_not_found,
};
use crate::AppState;
use crate::error::{Error, Result};
use crate::limits::{self, Limit};
use crate::queue::{gate, room};
use crate::store::scripts::{self, CancelVerdict, HoldVerdict, Script};

fn seat_not_found() -> Error {
    Error::not_found(
        "seat_not_found",
        "the schedule has no seat with that number",
    )
}

fn seat_unavailable() -> Error {
    Error::Conflict {
        code: "seat_unavailable",
        message: "the seat is held or sold".into(),
    }
}

fn already_confirmed() -> Error {
    Error::Conflict {
        code: "already_confirmed",
        message: "the reservation is paid; it cannot be cancelled".into(),
    }
}

/// Holds seat `seat_no` of `schedule_id` for the user (gated).
pub async fn hold(
    app: &AppState,
    user_id: i64,
    pass: Option<&str>,
    schedule_id: i64,
    seat_no: i64,
) -> Result<ReservationView> {
    let catalog = app.seats.get(&app.pg, schedule_id).await?;
    let index = catalog.index_of(seat_no).ok_or_else(seat_not_found)?;
    let token = gate::pass_for(app, user_id, pass, catalog.concert_id).await?;
    let seat = *catalog.seat(index).ok_or_else(seat_not_found)?;
    let id = app.booking.ids.next(&app.pg, catalog.concert_id).await?;
    let keys = app.keys.booking(catalog.concert_id);
    let held = room::run_with_room(
        app,
        catalog.concert_id,
        || scripts::Hold {
            keys: &keys,
            token: &token,
            user_id,
            schedule_id,
            seat_index: index,
            seat_no: seat.seat_no,
            seat_id: seat.id,
            price: seat.price,
            reservation_id: id,
            record_retention_ms: CANCELED_RETENTION_MS,
            rate: app.config.limits.rate(Limit::Hold),
        },
        |r| r.verdict == HoldVerdict::NoRoom,
    )
    .await?;
    count_lapsed(held.lapsed);
    let outcome = match held.verdict {
        HoldVerdict::Held { .. } => "ok",
        HoldVerdict::Taken => "seat_unavailable",
        HoldVerdict::LimitReached { .. } => "hold_limit_reached",
        HoldVerdict::Gate(_) => "gate",
        HoldVerdict::NoRoom => "unavailable",
        HoldVerdict::Limited { .. } => "rate_limited",
    };
    metrics::counter!("holds_total", "result" => outcome).increment(1);
    match held.verdict {
        HoldVerdict::Held { expires_ms } => Ok(ReservationView {
            id,
            schedule_id,
            seat_id: seat.id,
            seat_no: i64::from(seat.seat_no),
            price: seat.price,
            status: ReservationStatus::Pending,
            expires_at: millis(expires_ms)?,
        }),
        HoldVerdict::Taken => Err(seat_unavailable()),
        HoldVerdict::LimitReached { limit } => Err(Error::Conflict {
            code: "hold_limit_reached",
            message: format!("you already hold {limit} seats in this concert").into(),
        }),
        HoldVerdict::Gate(denied) => Err(gate::refused(denied)),
        HoldVerdict::NoRoom => Err(Error::Internal("hold after room restore".into())),
        HoldVerdict::Limited { wait_ms } => Err(limits::refused(Limit::Hold, wait_ms)),
    }
}

/// The owner cancels a hold: `204` for a pending (or already ended) hold,
/// `409 already_confirmed` for a sale.
pub async fn cancel(app: &AppState, user_id: i64, id: i64) -> Result<()> {
    let concert_id = concert_of_reservation(app, id).await?;
    let keys = app.keys.booking(concert_id);
    let mut force = false;
    loop {
        let verdict = scripts::Cancel {
            keys: &keys,
            user_id,
            reservation_id: id,
            force,
        }
        .run(&app.redis)
        .await?;
        match verdict {
            CancelVerdict::Released => {
                metrics::counter!("holds_released_total", "reason" => "cancelled").increment(1);
                return Ok(());
            }
            CancelVerdict::AlreadyEnded => return Ok(()),
            CancelVerdict::Confirmed => return Err(already_confirmed()),
            CancelVerdict::Paying => {
                return Err(Error::Conflict {
                    code: "payment_in_progress",
                    message: "a payment of this reservation is in progress".into(),
                });
            }
            // A payment began and its claim ended: did it commit?
            CancelVerdict::Check if !force => match confirmed(app, user_id, id).await? {
                Some(_) => return Err(already_confirmed()),
                None => force = true,
            },
            CancelVerdict::Check => {
                return Err(Error::Internal("cancel: asked to check twice".into()));
            }
            CancelVerdict::Missing => {
                return match confirmed(app, user_id, id).await? {
                    Some(_) => Err(already_confirmed()),
                    None => Err(reservation_not_found()),
                };
            }
        }
    }
}
