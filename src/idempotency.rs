//! Idempotent requests: a retried request with the same `Idempotency-Key` gets the
//! first successful answer again, with no second effect.
//!
//! Answers are stored in Postgres (they must outlive restarts and be shared by
//! every instance), per user, endpoint and key, for at least 24 hours. A request
//! first *claims* its key; the effect and the stored answer then commit in one
//! transaction, so either both happen or neither does. Only successes are kept: a
//! failed request releases its claim and may be retried with the same key. A
//! claim whose process died expires after [`CLAIM_TTL`] and can be taken over.
//!
//! Both idempotent endpoints go through [`once`] the same way: it claims the
//! key (or finds the answer to replay), runs the effect with the claim, and
//! releases the claim if the effect fails.

use crate::error::{Error, Result};
use crate::shutdown::Inflight;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a claimed key stays locked while its request runs: longer than any
/// request may run, so a claim never expires under a request still working.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);
const _: () = assert!(CLAIM_TTL.as_secs() >= 2 * crate::config::REQUEST_TIMEOUT.as_secs());
/// How long a stored answer is kept (API.md: at least 24 h).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// Checks an `Idempotency-Key` header value: 1 to 255 visible ASCII characters.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        )));
    }
    Ok(())
}

/// The outcome of claiming a key.
pub enum Begin {
    /// The key is new (or its earlier request failed): run the request.
    Proceed(Claim),
    /// The key already has an answer for this very request: send it again.
    Replay(StoredAnswer),
}

/// A first successful answer, kept byte for byte: its HTTP status and JSON body.
#[derive(Debug)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

/// A request that may carry an `Idempotency-Key`: whose, to which endpoint,
/// and the status its success answers with.
pub struct Request<'a> {
    pub user_id: i64,
    pub endpoint: &'static str,
    /// The JSON body, compared with a retry's.
    pub body: &'a serde_json::Value,
    pub success_status: u16,
}

/// What [`once`] gives back.
pub enum Answer<T> {
    /// The effect ran now.
    Fresh(T),
    /// The key was answered before: the same answer again, nothing done.
    Replay(StoredAnswer),
}

/// Runs `effect` at most once per key: with no key it just runs; with a new
/// key it runs holding the key's [`Claim`] (the effect stores its answer with
/// [`Claim::complete`] in its own transaction); with an answered key it does
/// not run and the stored answer comes back.
///
/// The effect runs in a task of its own, so a client that goes away cannot cut
/// it short between its commit and what follows (a payment's Redis step), and
/// a failed effect always gives its key back.
pub async fn once<T, Fut>(
    pg: &PgPool,
    inflight: &Arc<Inflight>,
    request: Request<'_>,
    key: Option<&str>,
    effect: impl FnOnce(Option<Claim>) -> Fut,
) -> Result<Answer<T>>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let claim = match key {
        None => None,
        Some(key) => match begin(pg, &request, key).await? {
            Begin::Replay(answer) => {
                metrics::counter!("idempotent_replays_total", "endpoint" => request.endpoint)
                    .increment(1);
                return Ok(Answer::Replay(answer));
            }
            Begin::Proceed(claim) => Some(claim),
        },
    };
    let run = effect(claim.clone());
    let pg = pg.clone();
    // A graceful shutdown waits for it (a payment between commit and Redis).
    let running = inflight.enter();
    tokio::spawn(async move {
        let _running = running;
        let done = run.await;
        if done.is_err()
            && let Some(claim) = claim
        {
            claim.release(&pg).await;
        }
        done
    })
    .await
    .map_err(|e| Error::Internal(format!("idempotent request task: {e}")))?
    .map(Answer::Fresh)
}

/// A key this request holds while it runs. `locked_until` doubles as the owner's
/// token: completing or releasing touches the row only while it is still this
/// claim, so a request whose claim was taken over cannot overwrite or free the
/// claim of the request that took it.
#[derive(Clone, Debug)]
pub struct Claim {
    user_id: i64,
    endpoint: &'static str,
    key: String,
    locked_until: DateTime<Utc>,
    success_status: u16,
}

/// Claims `key` for this user and endpoint, or finds its stored answer.
///
/// - new key, or a claim left by a request that failed or died: [`Begin::Proceed`];
/// - same key and same JSON body, answered: [`Begin::Replay`];
/// - same key, another body: `422 idempotency_key_reused`;
/// - same key, first request still running: `409 idempotency_key_in_use`.
pub async fn begin(pg: &PgPool, request: &Request<'_>, key: &str) -> Result<Begin> {
    validate_key(key)?;
    let Request {
        user_id,
        endpoint,
        body: request_body,
        success_status,
    } = *request;
    let claimed: Option<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO idempotency_key (user_id, endpoint, key, request, locked_until)
         VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond')
         ON CONFLICT (user_id, endpoint, key) DO UPDATE
             SET request = EXCLUDED.request, locked_until = EXCLUDED.locked_until,
                 created_at = now()
             WHERE idempotency_key.response IS NULL
               AND idempotency_key.locked_until < now()
         RETURNING locked_until",
    )
    .bind(user_id)
    .bind(endpoint)
    .bind(key)
    .bind(request_body)
    .bind(CLAIM_TTL.as_millis() as i64)
    .fetch_optional(pg)
    .await?;
    if let Some(locked_until) = claimed {
        return Ok(Begin::Proceed(Claim {
            user_id,
            endpoint,
            key: key.to_owned(),
            locked_until,
            success_status,
        }));
    }
    let row: Option<(bool, Option<i16>, Option<String>)> = sqlx::query_as(
        "SELECT request = $4, status_code, response FROM idempotency_key
          WHERE user_id = $1 AND endpoint = $2 AND key = $3",
    )
    .bind(user_id)
    .bind(endpoint)
    .bind(key)
    .bind(request_body)
    .fetch_optional(pg)
    .await?;
    match row {
        // Released between our two statements: the key is free again.
        None => Box::pin(begin(pg, request, key)).await,
        Some((false, _, _)) => Err(Error::Unprocessable {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used with another request body".into(),
        }),
        Some((true, Some(status), Some(body))) => Ok(Begin::Replay(StoredAnswer {
            status: u16::try_from(status)
                .map_err(|_| Error::Internal(format!("stored status {status}")))?,
            body,
        })),
        Some((true, _, _)) => Err(key_in_use()),
    }
}

fn key_in_use() -> Error {
    Error::Conflict {
        code: "idempotency_key_in_use",
        message: "a request with this Idempotency-Key is still running".into(),
    }
}

impl Claim {
    /// Stores the answer, inside the transaction that makes the request's effect.
    /// If the claim is no longer this request's, refuses with `409`, which rolls
    /// the effect back: the request that holds the key now is the one that counts.
    pub async fn complete(&self, tx: &mut PgConnection, answer: &impl Serialize) -> Result<()> {
        let body = serde_json::to_string(answer).map_err(|e| Error::Internal(e.to_string()))?;
        let stored = sqlx::query(
            "UPDATE idempotency_key SET status_code = $5, response = $6
              WHERE user_id = $1 AND endpoint = $2 AND key = $3
                AND locked_until = $4 AND response IS NULL",
        )
        .bind(self.user_id)
        .bind(self.endpoint)
        .bind(&self.key)
        .bind(self.locked_until)
        .bind(self.success_status as i16)
        .bind(body)
        .execute(tx)
        .await?;
        if stored.rows_affected() == 1 {
            Ok(())
        } else {
            Err(key_in_use())
        }
    }

    /// Gives the key up after a failure, so the client may retry with it. If this
    /// cannot reach Postgres, the claim simply expires after [`CLAIM_TTL`].
    pub async fn release(self, pg: &PgPool) {
        let released = sqlx::query(
            "DELETE FROM idempotency_key
              WHERE user_id = $1 AND endpoint = $2 AND key = $3
                AND locked_until = $4 AND response IS NULL",
        )
        .bind(self.user_id)
        .bind(self.endpoint)
        .bind(&self.key)
        .bind(self.locked_until)
        .execute(pg)
        .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "idempotency claim not released; it will expire");
        }
    }
}

/// Deletes answers older than [`RETENTION`]; run periodically.
pub async fn sweep(pg: &PgPool) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM idempotency_key
          WHERE created_at < now() - $1 * interval '1 second' AND locked_until < now()",
    )
    .bind(RETENTION.as_secs() as i64)
    .execute(pg)
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert!(validate_key("a").is_ok());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
        assert!(validate_key("has space").is_err());
        assert!(validate_key("ключ").is_err());
    }
}
