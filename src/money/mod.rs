//! Balances and their history: the money of boxoffice.
//!
//! Every change of a balance is one SQL statement (or one transaction) that
//! updates the balance row under its row lock and appends the history row with
//! the balance it left, so concurrent charges never lose an update and, for every
//! user, always: balance = sum(CHARGE) - sum(USE) + sum(REFUND).

use crate::error::{Error, Result};
use crate::idempotency::Claim;
use crate::store::postgres::Deadline;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};

/// The most a balance may hold (API.md), in won.
pub const BALANCE_LIMIT: i64 = 9_000_000_000_000_000;
/// The largest single charge (API.md).
pub const MAX_CHARGE: i64 = 1_000_000_000;
/// History page size bounds and default (API.md).
pub const HISTORY_MAX_LIMIT: i64 = 100;
pub const HISTORY_DEFAULT_LIMIT: i64 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, sqlx::Type, utoipa::ToSchema)]
#[sqlx(type_name = "balance_history_type", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum MovementType {
    Charge,
    Use,
    Refund,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Balance {
    pub user_id: i64,
    pub balance: i64,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Movement {
    pub id: i64,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: MovementType,
    /// Always positive: `type` says which way it moved the balance.
    #[schema(minimum = 1)]
    pub amount: i64,
    pub balance_after: i64,
    #[serde(serialize_with = "crate::time::serialize")]
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryPage {
    pub items: Vec<Movement>,
    /// The `before_id` of the next (older) page; `None` exactly when there is none.
    pub next_before_id: Option<i64>,
}

/// The user's balance; 0 for a user boxoffice has not seen yet.
pub async fn balance(pg: &PgPool, user_id: i64) -> Result<Balance> {
    let balance: Option<i64> = sqlx::query_scalar("SELECT balance FROM balance WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pg)
        .deadline()
        .await?;
    Ok(Balance {
        user_id,
        balance: balance.unwrap_or(0),
    })
}

/// Checks a charge amount against the API's bounds.
pub fn validate_charge(amount: i64) -> Result<()> {
    if (1..=MAX_CHARGE).contains(&amount) {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "amount must be a whole number of won from 1 to {MAX_CHARGE}"
        )))
    }
}

/// Adds `amount` to the user's balance and records a CHARGE. With a `claim`
/// (an `Idempotency-Key`), the charge and its stored answer commit together,
/// so a retry never charges twice.
pub async fn charge(
    pg: PgPool,
    user_id: i64,
    amount: i64,
    claim: Option<Claim>,
) -> Result<Balance> {
    let started = std::time::Instant::now();
    let balance = async {
        match claim {
            None => charge_in(&pg, user_id, amount).await,
            Some(claim) => {
                let mut tx = pg.begin().await?;
                let balance = charge_in(&mut *tx, user_id, amount).await?;
                claim.complete(&mut tx, &balance).await?;
                tx.commit().await?;
                Ok(balance)
            }
        }
    }
    .deadline()
    .await?;
    metrics::histogram!("postgres_transaction_duration_seconds", "op" => "charge")
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("balance_charges_total").increment(1);
    metrics::counter!("balance_charged_won_total").increment(amount as u64);
    Ok(balance)
}

/// The charge itself, atomically, in one statement: the user and balance rows
/// are created on a first charge, and the upsert's row lock serialises
/// concurrent charges of one user. Refused with `400 balance_limit` when the
/// balance would pass [`BALANCE_LIMIT`].
async fn charge_in(db: impl PgExecutor<'_>, user_id: i64, amount: i64) -> Result<Balance> {
    validate_charge(amount)?;
    let balance_after: Option<i64> = sqlx::query_scalar(
        "WITH u AS (
             INSERT INTO users (id) VALUES ($1) ON CONFLICT (id) DO NOTHING
         ), b AS (
             INSERT INTO balance (user_id, balance) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE
                 SET balance = balance.balance + EXCLUDED.balance, updated_at = now()
                 WHERE balance.balance <= $3 - EXCLUDED.balance
             RETURNING balance
         )
         INSERT INTO balance_history (user_id, type, amount, balance_after)
         SELECT $1, 'CHARGE', $2, balance FROM b
         RETURNING balance_after",
    )
    .bind(user_id)
    .bind(amount)
    .bind(BALANCE_LIMIT)
    .fetch_optional(db)
    .await?;
    match balance_after {
        Some(balance) => Ok(Balance { user_id, balance }),
        None => Err(Error::BadRequest {
            code: "balance_limit",
            message: format!("the balance may not exceed {BALANCE_LIMIT} won").into(),
        }),
    }
}

/// Checks history paging parameters against the API's bounds.
pub fn validate_history_query(limit: Option<i64>, before_id: Option<i64>) -> Result<i64> {
    let limit = limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
    if !(1..=HISTORY_MAX_LIMIT).contains(&limit) {
        return Err(Error::bad_request(format!(
            "limit must be from 1 to {HISTORY_MAX_LIMIT}"
        )));
    }
    if before_id.is_some_and(|id| id < 1) {
        return Err(Error::bad_request("before_id must be a positive id"));
    }
    Ok(limit)
}

/// One page of the user's history, newest first, older than `before_id` if given
/// (keyset pagination on the history id: stable while new rows arrive).
pub async fn history(
    pg: &PgPool,
    user_id: i64,
    limit: Option<i64>,
    before_id: Option<i64>,
) -> Result<HistoryPage> {
    let limit = validate_history_query(limit, before_id)?;
    // One row more than asked tells whether an older page exists.
    let mut items: Vec<Movement> = sqlx::query_as(
        "SELECT id, type, amount, balance_after, created_at
           FROM balance_history
          WHERE user_id = $1 AND id < COALESCE($2, 9223372036854775807)
          ORDER BY id DESC
          LIMIT $3",
    )
    .bind(user_id)
    .bind(before_id)
    .bind(limit + 1)
    .fetch_all(pg)
    .deadline()
    .await?;
    let next_before_id = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|m| m.id)
    } else {
        None
    };
    Ok(HistoryPage {
        items,
        next_before_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_bounds() {
        assert!(validate_charge(1).is_ok());
        assert!(validate_charge(MAX_CHARGE).is_ok());
        for bad in [0, -5, MAX_CHARGE + 1, i64::MIN] {
            assert_eq!(validate_charge(bad).unwrap_err().code(), "invalid_request");
        }
    }

    #[test]
    fn history_bounds() {
        assert_eq!(validate_history_query(None, None).unwrap(), 20);
        assert_eq!(validate_history_query(Some(100), Some(1)).unwrap(), 100);
        assert!(validate_history_query(Some(0), None).is_err());
        assert!(validate_history_query(Some(101), None).is_err());
        assert!(validate_history_query(None, Some(0)).is_err());
    }
}
