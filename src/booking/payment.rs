//! Payments: a live hold becomes a sale, paid from the prepaid balance.
//!
//! 1. Redis (`lua/pay_begin.lua`, one round trip, the queue pass folded in): the
//!    reservation is the user's, the hold is PENDING, not past its expiry and
//!    still owns the seat. The seat's claim is then extended by [`GRACE`].
//! 2. Postgres, one transaction: the CONFIRMED reservation row (its primary key
//!    makes concurrent payments of one reservation wait for each other and all
//!    but one fail), the balance debit guarded by `balance >= price` (so never
//!    negative: else `402`), the payment row and the USE history row, and the
//!    idempotent answer when the request has a key.
//! 3. Redis (`lua/pay_finish.lua`): the seat becomes SOLD, the hold goes, and the
//!    queue token becomes PROCESSED when the user has no pending hold left.
//!
//! **The rule for a hold that lapses while its payment is in flight**: a payment
//! that *starts* (step 1) before the hold's `expires_at` is honoured; one that
//! starts after it is `410 hold_expired` with nothing debited. Step 1 extends
//! the seat's claim by [`GRACE`] (twice the request timeout), so while the money
//! moves nobody else can hold the seat, and the hold's own expiry is put back if
//! the payment fails. Should Postgres still be slower than the grace, the unique
//! index "one CONFIRMED reservation per seat" lets only one sale commit: the
//! other payer gets `409 seat_unavailable` and is not debited.
//!
//! The work runs in its own task ([`crate::idempotency::once`]), so a client
//! that goes away (or the request timeout) cannot stop a payment between its
//! commit and step 3.

use super::reservation_not_found;
use super::reservations::{concert_of_reservation, confirmed, exists_for};
use crate::AppState;
use crate::error::{Error, Result};
use crate::idempotency::Claim;
use crate::queue::{self, QueueStatus, QueueToken, audit::AuditEvent, gate};
use crate::store::postgres::Deadline;
use crate::store::scripts::{self, HeldSeat, PayBeginVerdict, Script};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a payment's claim on its seat lasts past its start.
pub const GRACE: Duration = Duration::from_secs(2 * crate::config::REQUEST_TIMEOUT.as_secs());

/// A payment as API.md shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Paid {
    pub id: i64,
    pub reservation_id: i64,
    pub amount: i64,
    pub status: PaymentStatus,
    pub balance_after: i64,
}

/// A payment's status: a payment exists only once it is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PaymentStatus {
    Paid,
}

fn already_paid() -> Error {
    Error::Conflict {
        code: "already_paid",
        message: "the reservation is already paid".into(),
    }
}

fn failed(reason: &'static str, e: Error) -> Error {
    metrics::counter!("payment_failures_total", "reason" => reason).increment(1);
    e
}

/// Pays reservation `id` for the user. With a `claim` (an `Idempotency-Key`),
/// the answer is stored in the payment's transaction.
pub async fn pay(
    app: Arc<AppState>,
    user_id: i64,
    pass: Option<String>,
    id: i64,
    claim: Option<Claim>,
) -> Result<Paid> {
    let (app, pass, claim) = (&*app, pass.as_deref(), claim.as_ref());
    let concert_id = concert_of_reservation(app, id).await?;
    let token = match gate::parse_for(pass, concert_id) {
        Ok(token) => token,
        // No pass, a malformed one, or another concert's: the reservation's 404
        // first, then the gate's exact error (API.md's order).
        Err(mismatch) => {
            if !exists_for(app, concert_id, user_id, id).await? {
                return Err(reservation_not_found());
            }
            return Err(mismatch.into_error(app, user_id).await);
        }
    };
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let hold = begin(app, concert_id, &token, user_id, id, &nonce).await?;
    let started = Instant::now();
    // Past the deadline it is a `503` whose commit may yet happen (a frozen
    // Postgres that wakes): the hold keeps its payment claim, and a sale that
    // lands is marked SOLD by the catch-up, its answer kept for a retry's key.
    let committed = commit(app, user_id, id, &hold, claim).deadline().await;
    metrics::histogram!("postgres_transaction_duration_seconds", "op" => "payment")
        .record(started.elapsed().as_secs_f64());
    let paid = match committed {
        Ok(paid) => paid,
        Err(e) => {
            // Nothing was written and no other payment of it committed: the
            // hold goes back to its own expiry. (Not after `already_paid`, a
            // `409` of the idempotency claim, or a `503` whose commit may have
            // happened: then the claim lapses by itself.)
            if matches!(e.code(), "insufficient_balance" | "seat_unavailable") {
                abort(app, concert_id, id, &nonce).await;
            }
            return Err(failed(e.code(), e));
        }
    };
    metrics::counter!("payments_total").increment(1);
    metrics::counter!("payments_won_total").increment(paid.amount as u64);
    finish(app, concert_id, &token, user_id, id, &hold).await;
    Ok(paid)
}

/// Step 1: checks the reservation, the pass and the hold; claims the seat for
/// the payment's grace.
async fn begin(
    app: &AppState,
    concert_id: i64,
    token: &QueueToken,
    user_id: i64,
    id: i64,
    nonce: &str,
) -> Result<HeldSeat> {
    let verdict = scripts::PayBegin {
        keys: &app.keys.booking(concert_id),
        token,
        user_id,
        reservation_id: id,
        grace_ms: GRACE.as_millis() as u64,
        nonce,
    }
    .run(&app.redis)
    .await?;
    match verdict {
        PayBeginVerdict::Begun(seat) => Ok(seat),
        PayBeginVerdict::AlreadyPaid => Err(failed("already_paid", already_paid())),
        // Lapsed in Redis; but a payment that committed while Redis did not
        // hear of it (a crash, an outage) is a sale: Postgres says which.
        PayBeginVerdict::Lapsed => {
            if confirmed(app, user_id, id).await?.is_some() {
                return Err(failed("already_paid", already_paid()));
            }
            Err(failed(
                "hold_expired",
                Error::Gone {
                    code: "hold_expired",
                    message: "the hold expired or was cancelled".into(),
                },
            ))
        }
        // Redis no longer has it (a lapsed record, a flush): a sale of the
        // user's is in Postgres, or there is no such reservation for them.
        PayBeginVerdict::Missing => {
            if confirmed(app, user_id, id).await?.is_none() {
                return Err(reservation_not_found());
            }
            gate::check_pass(app, user_id, Some(&token.text()), concert_id).await?;
            Err(failed("already_paid", already_paid()))
        }
        PayBeginVerdict::Gate(denied) => Err(gate::refused(denied)),
    }
}

/// Step 2: the sale, the payment and the debit, in one transaction.
async fn commit(
    app: &AppState,
    user_id: i64,
    id: i64,
    hold: &HeldSeat,
    claim: Option<&Claim>,
) -> Result<Paid> {
    let mut tx = app.pg.begin().await?;
    // The transaction must end well inside the seat's claim (GRACE) and the
    // SOLD catch-up's window: a stuck lock or statement is a 503, not a sale
    // that lands after the seat was given up.
    sqlx::raw_sql("SET LOCAL statement_timeout = '15s'; SET LOCAL lock_timeout = '10s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO reservation (id, user_id, seat_id, concert_schedule_id, seat_no, price,
                                  status, expires_at, confirmed_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'CONFIRMED', to_timestamp($7 / 1000.0),
                 clock_timestamp())",
    )
    .bind(id)
    .bind(user_id)
    .bind(hold.seat_id)
    .bind(hold.schedule_id)
    .bind(hold.seat_no as i32)
    .bind(hold.price)
    .bind(hold.expires_ms as f64)
    .execute(&mut *tx)
    .await
    .map_err(conflict)?;
    let debited: Option<(i64, i64)> = sqlx::query_as(
        "WITH debit AS (
             UPDATE balance SET balance = balance - $2, updated_at = now()
              WHERE user_id = $1 AND balance >= $2
              RETURNING balance
         ), pay AS (
             INSERT INTO payment (reservation_id, user_id, price)
             SELECT $3, $1, $2 FROM debit
             RETURNING id
         ), history AS (
             INSERT INTO balance_history (user_id, type, amount, balance_after, payment_id)
             SELECT $1, 'USE', $2, debit.balance, pay.id FROM debit, pay
         )
         SELECT pay.id, debit.balance FROM pay, debit",
    )
    .bind(user_id)
    .bind(hold.price)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(conflict)?;
    let Some((payment_id, balance_after)) = debited else {
        return Err(Error::PaymentRequired {
            code: "insufficient_balance",
            message: format!("the balance does not cover the price of {} won", hold.price).into(),
        });
    };
    let paid = Paid {
        id: payment_id,
        reservation_id: id,
        amount: hold.price,
        status: PaymentStatus::Paid,
        balance_after,
    };
    if let Some(claim) = claim {
        claim.complete(&mut tx, &paid).await?;
    }
    tx.commit().await.map_err(conflict)?;
    Ok(paid)
}

/// Unique-key violations are the contract's 409s, never a 500.
fn conflict(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e
        && db.code().as_deref() == Some("23505")
    {
        return match db.constraint() {
            Some("reservation_one_confirmed_per_seat") => Error::Conflict {
                code: "seat_unavailable",
                message: "the seat was sold to someone else".into(),
            },
            _ => already_paid(),
        };
    }
    e.into()
}

/// After a failed payment that wrote nothing: the seat's claim goes back to the
/// hold's own expiry. Best effort: the grace lapses by itself otherwise.
async fn abort(app: &AppState, concert_id: i64, id: i64, nonce: &str) {
    let undone = scripts::PayAbort {
        keys: &app.keys.booking(concert_id),
        reservation_id: id,
        nonce,
    }
    .run(&app.redis)
    .await;
    if let Err(e) = undone {
        tracing::warn!(error = %e, reservation = id, "payment claim not put back; it lapses by itself");
    }
}

/// Step 3: after the commit, Redis shows the sale. If Redis cannot be reached,
/// the sale stands (it is in Postgres); the SOLD catch-up of [`super::recovery`]
/// marks the seat within seconds and the seat's claim lapses after the grace.
async fn finish(
    app: &AppState,
    concert_id: i64,
    token: &QueueToken,
    user_id: i64,
    id: i64,
    hold: &HeldSeat,
) {
    let processed = scripts::PayFinish {
        keys: &app.keys.booking(concert_id),
        token,
        user_id,
        reservation_id: id,
        seat: hold,
        ended_retention_ms: queue::ENDED_RETENTION_MS,
    }
    .run(&app.redis)
    .await;
    match processed {
        Ok(true) => {
            metrics::counter!("queue_processed_total").increment(1);
            app.audit.record(AuditEvent::ended(
                token.uuid,
                user_id,
                concert_id,
                QueueStatus::Processed,
            ));
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, reservation = id, "sale committed; Redis not updated yet");
        }
    }
}
