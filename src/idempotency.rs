//! Idempotent requests: a retried request with the same `Idempotency-Key` gets the
//! first successful answer again, with no second effect.
//!
//! Answers are stored in Postgres (they must outlive restarts and be shared by
//! every instance), per user, endpoint and key, for at least 24 hours. A request
//! first *claims* its key; the effect and the stored answer then commit in one
//! transaction, so either both happen or neither does. Only successes are kept: a
//! failed request releases its claim and may be retried with the same key. A
//! claim whose process died expires after [`CLAIM_TTL`] and can be taken over.

use crate::error::{Error, Result};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::time::Duration;

/// How long a claimed key stays locked while its request runs: longer than any
/// request may run, so a claim never expires under a request still working.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);
const _: () = assert!(CLAIM_TTL.as_secs() >= 2 * crate::http::REQUEST_TIMEOUT.as_secs());
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

/// A first successful answer, kept byte for byte.
#[derive(Debug)]
pub struct StoredAnswer {
    pub status: StatusCode,
    pub body: String,
}

impl IntoResponse for StoredAnswer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        response
    }
}

/// A key this request holds while it runs. `locked_until` doubles as the owner's
/// token: completing or releasing touches the row only while it is still this
/// claim, so a request whose claim was taken over cannot overwrite or free the
/// claim of the request that took it.
#[derive(Debug)]
pub struct Claim {
    user_id: i64,
    endpoint: &'static str,
    key: String,
    locked_until: DateTime<Utc>,
}

/// Claims `key` for this user and endpoint, or finds its stored answer.
///
/// - new key, or a claim left by a request that failed or died: [`Begin::Proceed`];
/// - same key and same JSON body, answered: [`Begin::Replay`];
/// - same key, another body: `422 idempotency_key_reused`;
/// - same key, first request still running: `409 idempotency_key_in_use`.
pub async fn begin(
    pg: &PgPool,
    user_id: i64,
    endpoint: &'static str,
    key: &str,
    request: &serde_json::Value,
) -> Result<Begin> {
    validate_key(key)?;
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
    .bind(request)
    .bind(CLAIM_TTL.as_millis() as i64)
    .fetch_optional(pg)
    .await?;
    if let Some(locked_until) = claimed {
        return Ok(Begin::Proceed(Claim {
            user_id,
            endpoint,
            key: key.to_owned(),
            locked_until,
        }));
    }
    let row: Option<(bool, Option<i16>, Option<String>)> = sqlx::query_as(
        "SELECT request = $4, status_code, response FROM idempotency_key
          WHERE user_id = $1 AND endpoint = $2 AND key = $3",
    )
    .bind(user_id)
    .bind(endpoint)
    .bind(key)
    .bind(request)
    .fetch_optional(pg)
    .await?;
    match row {
        // Released between our two statements: the key is free again.
        None => Box::pin(begin(pg, user_id, endpoint, key, request)).await,
        Some((false, _, _)) => Err(Error::Unprocessable {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used with another request body".into(),
        }),
        Some((true, Some(status), Some(body))) => Ok(Begin::Replay(StoredAnswer {
            status: StatusCode::from_u16(status as u16)
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
    pub async fn complete(
        &self,
        tx: &mut PgConnection,
        status: StatusCode,
        body: &str,
    ) -> Result<()> {
        let stored = sqlx::query(
            "UPDATE idempotency_key SET status_code = $5, response = $6
              WHERE user_id = $1 AND endpoint = $2 AND key = $3
                AND locked_until = $4 AND response IS NULL",
        )
        .bind(self.user_id)
        .bind(self.endpoint)
        .bind(&self.key)
        .bind(self.locked_until)
        .bind(status.as_u16() as i16)
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
