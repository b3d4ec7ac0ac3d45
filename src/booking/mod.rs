//! Seats, holds and reservations: what the fans came for.
//!
//! The live state of every seat is in Redis, under its concert's hash tag
//! (`store::keys::BookingKeys`): a SOLD bitmap and a HELD index per schedule, one
//! `SET NX PXAT` key per held seat, a record per reservation and each user's
//! holds. Every hot request (seat map, availability, hold) is one Lua script and
//! one round trip, with the queue pass checked inside it, and none touches
//! Postgres. Postgres has the catalog (cached in process, [`seats`]) and, from
//! the payment on ([`payment`]), every sale; the SOLD bitmap is rebuilt from it
//! whenever Redis lost its data ([`recovery`]).

pub mod ids;
pub mod payment;
pub mod recovery;
pub mod seats;

use crate::AppState;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::queue::{self, QueueToken};
use crate::store::redis::{int, text};
use chrono::{DateTime, TimeZone, Utc};
use fred::types::Value;
use seats::{Seat, SeatCatalog, SeatStatus};
use serde::Serialize;

/// How long a cancelled or lapsed hold still reads as CANCELED (API.md: at
/// least 24 hours).
pub const CANCELED_RETENTION_MS: u64 = 25 * 3600 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "reservation_status", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum ReservationStatus {
    Pending,
    Confirmed,
    Canceled,
}

/// A reservation as API.md shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
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

/// What the booking paths need from the configuration.
#[derive(Clone, Debug)]
pub struct BookingSettings {
    pub hold_ttl_ms: u64,
    pub max_holds_per_user: u32,
}

impl BookingSettings {
    pub fn from_config(c: &Config) -> Self {
        BookingSettings {
            hold_ttl_ms: c.hold_ttl.as_millis() as u64,
            max_holds_per_user: c.max_holds_per_user,
        }
    }
}

/// The booking side of the service's state.
pub struct Booking {
    pub settings: BookingSettings,
    pub seats: seats::SeatCache,
    pub ids: ids::ReservationIds,
}

impl Booking {
    pub fn new(settings: BookingSettings) -> Self {
        Booking {
            settings,
            seats: Default::default(),
            ids: Default::default(),
        }
    }
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

/// The concert of reservation `id` (from its id block), or
/// `404 reservation_not_found` for an id never handed out.
pub async fn concert_of_reservation(app: &AppState, id: i64) -> Result<i64> {
    app.booking
        .ids
        .concert_of(&app.pg, id)
        .await?
        .ok_or_else(reservation_not_found)
}

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

fn count_lapsed(n: i64) {
    if n > 0 {
        metrics::counter!("holds_released_total", "reason" => "expired").increment(n as u64);
    }
}

/// Reads the first element of a script reply as the gate's verdict and answers
/// the gate's error if the pass failed.
fn passed(reply: &[Value], script: &str) -> Result<()> {
    let verdict = reply
        .first()
        .map(text)
        .transpose()?
        .ok_or_else(|| Error::Internal(format!("{script}: empty reply")))?;
    queue::gate_verdict(&verdict)
}

/// The seat map of a schedule (gated), as the response body: every seat with
/// its live status, or only those in `only`.
pub async fn seat_map(
    app: &AppState,
    user_id: i64,
    pass: Option<&str>,
    schedule_id: i64,
    only: Option<SeatStatus>,
) -> Result<Vec<u8>> {
    let catalog = app.booking.seats.get(&app.pg, schedule_id).await?;
    let token = queue::pass_for(&app.redis, &app.keys, user_id, pass, catalog.concert_id).await?;
    let b = app.keys.booking(catalog.concert_id);
    let reply: Vec<Value> = app
        .redis
        .run(
            &app.redis.scripts.seat_map,
            vec![
                b.queue().token(&token.text()),
                b.sold(schedule_id),
                b.held(schedule_id),
                b.held_bits(schedule_id),
            ],
            vec![user_id.to_string()],
        )
        .await?;
    passed(&reply, "seat_map")?;
    let [_, sold, held, lapsed] = reply.as_slice() else {
        return Err(Error::Internal(format!("seat_map reply {reply:?}")));
    };
    count_lapsed(int(lapsed)?);
    let statuses = catalog.statuses(
        sold.as_bytes().unwrap_or_default(),
        held.as_bytes().unwrap_or_default(),
    );
    Ok(catalog.render(&statuses, only))
}

/// A schedule as the booking pages list it.
#[derive(Clone, Debug, Serialize)]
pub struct ScheduleAvailability {
    pub id: i64,
    #[serde(serialize_with = "crate::time::serialize")]
    pub start_at: DateTime<Utc>,
    pub seat_count: i32,
    pub available_seats: i64,
}

/// A concert's schedules by start (gated), each with the seats neither sold
/// nor held, from the same Redis state as the seat map, in one round trip.
pub async fn schedules(
    app: &AppState,
    user_id: i64,
    pass: Option<&str>,
    concert_id: i64,
) -> Result<Vec<ScheduleAvailability>> {
    crate::catalog::concert(&app.pg, &app.catalog, concert_id).await?;
    let token = queue::pass_for(&app.redis, &app.keys, user_id, pass, concert_id).await?;
    let list = crate::catalog::schedules(&app.pg, &app.catalog, concert_id).await?;
    let b = app.keys.booking(concert_id);
    let mut keys = Vec::with_capacity(2 + 3 * list.len());
    keys.push(b.queue().token(&token.text()));
    keys.push(b.scratch());
    for s in list.iter() {
        keys.push(b.sold(s.id));
        keys.push(b.held(s.id));
        keys.push(b.held_bits(s.id));
    }
    let reply: Vec<Value> = app
        .redis
        .run(
            &app.redis.scripts.availability,
            keys,
            vec![user_id.to_string()],
        )
        .await?;
    passed(&reply, "availability")?;
    if reply.len() != 2 + list.len() {
        return Err(Error::Internal(format!("availability reply {reply:?}")));
    }
    count_lapsed(int(&reply[1])?);
    list.iter()
        .zip(&reply[2..])
        .map(|(s, taken)| {
            let taken = int(taken)?;
            Ok(ScheduleAvailability {
                id: s.id,
                start_at: s.start_at,
                seat_count: s.seat_count,
                available_seats: (i64::from(s.seat_count) - taken).max(0),
            })
        })
        .collect()
}

/// Holds seat `seat_no` of `schedule_id` for the user (gated): one script, one
/// round trip, no Postgres (but for one id block per 16 384 holds).
pub async fn hold(
    app: &AppState,
    user_id: i64,
    pass: Option<&str>,
    schedule_id: i64,
    seat_no: i64,
) -> Result<ReservationView> {
    let catalog = app.booking.seats.get(&app.pg, schedule_id).await?;
    let index = catalog.index_of(seat_no).ok_or_else(seat_not_found)?;
    let token = queue::pass_for(&app.redis, &app.keys, user_id, pass, catalog.concert_id).await?;
    let seat = *catalog.seat(index).ok_or_else(seat_not_found)?;
    let id = app.booking.ids.next(&app.pg, catalog.concert_id).await?;
    let reply = run_hold(app, &catalog, &seat, &token, user_id, index, id).await?;
    let [verdict, expires, lapsed] = reply.as_slice() else {
        return Err(Error::Internal(format!("hold reply {reply:?}")));
    };
    count_lapsed(int(lapsed)?);
    let verdict = text(verdict)?;
    let outcome = match verdict.as_str() {
        "ok" => "ok",
        "taken" => "seat_unavailable",
        "limit" => "hold_limit_reached",
        _ => "gate",
    };
    metrics::counter!("holds_total", "result" => outcome).increment(1);
    match verdict.as_str() {
        "ok" => Ok(ReservationView {
            id,
            schedule_id,
            seat_id: seat.id,
            seat_no: i64::from(seat.seat_no),
            price: seat.price,
            status: ReservationStatus::Pending,
            expires_at: millis(int(expires)?)?,
        }),
        "taken" => Err(seat_unavailable()),
        "limit" => Err(Error::Conflict {
            code: "hold_limit_reached",
            message: format!(
                "you already hold {} seats in this concert",
                app.booking.settings.max_holds_per_user
            )
            .into(),
        }),
        other => {
            queue::gate_verdict(other)?;
            Err(Error::Internal(format!("hold verdict {other:?}")))
        }
    }
}

async fn run_hold(
    app: &AppState,
    catalog: &SeatCatalog,
    seat: &Seat,
    token: &QueueToken,
    user_id: i64,
    index: usize,
    id: i64,
) -> Result<Vec<Value>> {
    let b = app.keys.booking(catalog.concert_id);
    let s = &app.booking.settings;
    app.redis
        .run(
            &app.redis.scripts.hold,
            vec![
                b.queue().token(&token.text()),
                b.sold(catalog.schedule_id),
                b.held(catalog.schedule_id),
                b.hold(catalog.schedule_id, index),
                b.user_holds(user_id),
                b.reservation(id),
                b.held_bits(catalog.schedule_id),
            ],
            vec![
                user_id.to_string(),
                index.to_string(),
                id.to_string(),
                s.hold_ttl_ms.to_string(),
                s.max_holds_per_user.to_string(),
                CANCELED_RETENTION_MS.to_string(),
                catalog.schedule_id.to_string(),
                seat.seat_no.to_string(),
                seat.id.to_string(),
                seat.price.to_string(),
            ],
        )
        .await
}

/// A reservation record as Redis keeps it.
struct Record {
    user_id: i64,
    schedule_id: i64,
    seat_no: i64,
    seat_id: i64,
    price: i64,
    expires_ms: i64,
    state: String,
    /// A payment of it began (it may have committed without Redis hearing).
    payment_began: bool,
}

async fn read_record(app: &AppState, concert_id: i64, id: i64) -> Result<Option<Record>> {
    let fields: Vec<Option<String>> = fred::interfaces::HashesInterface::hmget(
        app.redis.client(),
        app.keys.booking(concert_id).reservation(id),
        vec!["u", "sc", "n", "d", "p", "e", "st", "pay"],
    )
    .await?;
    let num = |i: usize| -> Result<i64> {
        fields
            .get(i)
            .and_then(|f| f.as_deref())
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| Error::Internal(format!("reservation record {id}: field {i}")))
    };
    if fields.first().is_none_or(|u| u.is_none()) {
        return Ok(None);
    }
    Ok(Some(Record {
        user_id: num(0)?,
        schedule_id: num(1)?,
        seat_no: num(2)?,
        seat_id: num(3)?,
        price: num(4)?,
        expires_ms: num(5)?,
        state: fields.get(6).cloned().flatten().unwrap_or_default(),
        payment_began: fields.get(7).is_some_and(|f| f.is_some()),
    }))
}

/// A sale in Postgres: the durable record, whatever Redis still knows.
async fn confirmed(app: &AppState, user_id: i64, id: i64) -> Result<Option<ReservationView>> {
    Ok(sqlx::query_as(
        "SELECT id, concert_schedule_id AS schedule_id, seat_id, seat_no::bigint AS seat_no,
                price, status, COALESCE(expires_at, confirmed_at) AS expires_at
           FROM reservation WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&app.pg)
    .await?)
}

/// Reads a reservation for its owner: a pending, cancelled or lapsed hold from
/// Redis, a sale from Postgres (the source of truth, also after Redis lost it).
pub async fn reservation(app: &AppState, user_id: i64, id: i64) -> Result<ReservationView> {
    let concert_id = concert_of_reservation(app, id).await?;
    let record = read_record(app, concert_id, id).await?;
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
        Some(r) if r.state != "C" => {
            let live = r.state == "P" && r.expires_ms >= Utc::now().timestamp_millis();
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

/// The owner cancels a hold: `204` for a pending (or already ended) hold,
/// `409 already_confirmed` for a sale.
pub async fn cancel(app: &AppState, user_id: i64, id: i64) -> Result<()> {
    let concert_id = concert_of_reservation(app, id).await?;
    let already_confirmed = || Error::Conflict {
        code: "already_confirmed",
        message: "the reservation is paid; it cannot be cancelled".into(),
    };
    let mut force = false;
    loop {
        match run_cancel(app, concert_id, user_id, id, force)
            .await?
            .as_str()
        {
            "released" => {
                metrics::counter!("holds_released_total", "reason" => "cancelled").increment(1);
                return Ok(());
            }
            "ok" => return Ok(()),
            "confirmed" => return Err(already_confirmed()),
            "paying" => {
                return Err(Error::Conflict {
                    code: "payment_in_progress",
                    message: "a payment of this reservation is in progress".into(),
                });
            }
            // A payment began and its claim ended: did it commit?
            "check" if !force => match confirmed(app, user_id, id).await? {
                Some(_) => return Err(already_confirmed()),
                None => force = true,
            },
            "missing" => {
                return match confirmed(app, user_id, id).await? {
                    Some(_) => Err(already_confirmed()),
                    None => Err(reservation_not_found()),
                };
            }
            other => return Err(Error::Internal(format!("cancel reply {other:?}"))),
        }
    }
}

async fn run_cancel(
    app: &AppState,
    concert_id: i64,
    user_id: i64,
    id: i64,
    force: bool,
) -> Result<String> {
    let b = app.keys.booking(concert_id);
    app.redis
        .run(
            &app.redis.scripts.cancel,
            vec![b.reservation(id), b.user_holds(user_id)],
            vec![
                user_id.to_string(),
                id.to_string(),
                b.tag().to_owned(),
                if force { "1" } else { "0" }.to_owned(),
            ],
        )
        .await
}

/// Whether `id` is the user's reservation in Redis or a sale of theirs in
/// Postgres: the resource check that comes before the gate (API.md's order).
async fn exists_for(app: &AppState, concert_id: i64, user_id: i64, id: i64) -> Result<bool> {
    if let Some(r) = read_record(app, concert_id, id).await? {
        return Ok(r.user_id == user_id);
    }
    Ok(confirmed(app, user_id, id).await?.is_some())
}
