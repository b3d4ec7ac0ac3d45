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
//! Every statement here has the Postgres deadline (3 s). A claim whose request
//! failed is released at once, and while Postgres cannot be reached (or has
//! not yet run the claim's own statement, held up by a frozen server) the
//! release is tried again every [`RELEASE_RETRY`] until it is done or the claim
//! has expired anyway, so a retry with the key is served as soon as Postgres is
//! back, not `409 idempotency_key_in_use` for a minute. The claim's expiry is
//! chosen here, not by Postgres, so that a claim whose statement timed out can
//! still be named and released.
//!
//! Both idempotent endpoints go through [`once`] the same way: it claims the
//! key (or finds the answer to replay), runs the effect with the claim, and
//! releases the claim if the effect fails.

use crate::error::{Error, Result};
use crate::shutdown::Inflight;
use crate::store::postgres::Deadline;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a claimed key stays locked while its request runs: longer than any
/// request may run, so a claim never expires under a request still working.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);
const _: () = assert!(CLAIM_TTL.as_secs() >= 2 * crate::config::REQUEST_TIMEOUT.as_secs());
/// How long a stored answer is kept (API.md: at least 24 h).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often a claim that could not be released is tried again.
pub const RELEASE_RETRY: Duration = Duration::from_millis(500);
/// Releases being retried at most; past that a claim simply expires.
const RELEASES_RETRIED_MAX: usize = 10_000;
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
        let unavailable = matches!(done, Err(Error::Unavailable(_)));
        if done.is_err()
            && let Some(claim) = claim
        {
            if unavailable {
                // Postgres may not be answering: the answer does not wait.
                claim.release_later(pg);
            } else {
                claim.release(pg).await;
            }
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
    let claim = Claim {
        user_id,
        endpoint,
        key: key.to_owned(),
        locked_until: claim_expiry(),
        success_status,
    };
    let claimed = sqlx::query_scalar::<_, DateTime<Utc>>(
        "INSERT INTO idempotency_key (user_id, endpoint, key, request, locked_until)
         VALUES ($1, $2, $3, $4, $5)
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
    .bind(claim.locked_until)
    .fetch_optional(pg)
    .deadline()
    .await;
    match claimed {
        Ok(Some(_)) => return Ok(Begin::Proceed(claim)),
        Ok(None) => {}
        Err(e) => {
            // Postgres may still run the claim when it answers again: it is
            // released then, so the key is free for the client's retry.
            claim.release_later(pg.clone());
            return Err(e);
        }
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
    .deadline()
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

    /// Gives the key up after a failure, so the client may retry with it. When
    /// that cannot be done now (Postgres does not answer, or has not run the
    /// claim yet), it is tried again in the background until it is done or
    /// the claim has expired.
    pub async fn release(self, pg: PgPool) {
        if !self.try_release(&pg).await {
            self.release_later(pg);
        }
    }

    /// Releases the claim in the background, tried every [`RELEASE_RETRY`]
    /// until it is done or the claim has expired anyway.
    pub fn release_later(self, pg: PgPool) {
        static RETRIED: AtomicUsize = AtomicUsize::new(0);
        if RETRIED.fetch_add(1, Ordering::Relaxed) >= RELEASES_RETRIED_MAX {
            RETRIED.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("idempotency claim not released; it will expire");
            return;
        }
        tokio::spawn(async move {
            while Utc::now() < self.locked_until && !self.try_release(&pg).await {
                tokio::time::sleep(RELEASE_RETRY).await;
            }
            RETRIED.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// One attempt: `true` once the claim is gone (deleted now, answered, or
    /// no longer this request's).
    async fn try_release(&self, pg: &PgPool) -> bool {
        let released = sqlx::query_scalar::<_, bool>(
            "WITH gone AS (
                 DELETE FROM idempotency_key
                  WHERE user_id = $1 AND endpoint = $2 AND key = $3
                    AND locked_until = $4 AND response IS NULL
                 RETURNING 1
             )
             SELECT EXISTS (SELECT 1 FROM gone)
                 OR EXISTS (SELECT 1 FROM idempotency_key
                             WHERE user_id = $1 AND endpoint = $2 AND key = $3
                               AND (locked_until <> $4 OR response IS NOT NULL))",
        )
        .bind(self.user_id)
        .bind(self.endpoint)
        .bind(&self.key)
        .bind(self.locked_until)
        .fetch_one(pg)
        .deadline()
        .await;
        match released {
            Ok(done) => done,
            Err(e) => {
                tracing::debug!(error = %e, "idempotency claim not released yet; retrying");
                false
            }
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
    .deadline_of(crate::store::postgres::BULK_DEADLINE)
    .await?;
    Ok(done.rows_affected())
}

/// When a claim made now expires, to Postgres's precision (microseconds), so
/// that the value sent and the value stored compare equal.
fn claim_expiry() -> DateTime<Utc> {
    let at = Utc::now() + CLAIM_TTL;
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
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
