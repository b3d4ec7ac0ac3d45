//! Users that boxoffice creates itself (`POST /users`).
//!
//! Users of a platform that mints its own tokens are not created here: their id
//! comes signed in the token, and they get a row on their first write.

use crate::error::Result;
use crate::store::postgres::Deadline;
use sqlx::PgPool;

/// Creates a user with a zero balance and returns the id.
///
/// Ids handed out here start at 10^15 (the identity column's start), above the
/// ids a platform mints for its own users. Should a platform-minted token carry
/// an id in this range anyway and that user have written first, the insert skips
/// the taken id instead of merging two people into one account.
pub async fn create_user(pg: &PgPool) -> Result<i64> {
    loop {
        let id: Option<i64> = sqlx::query_scalar(
            "WITH u AS (
                 INSERT INTO users DEFAULT VALUES ON CONFLICT (id) DO NOTHING RETURNING id
             ), b AS (
                 INSERT INTO balance (user_id) SELECT id FROM u
             )
             SELECT id FROM u",
        )
        .fetch_optional(pg)
        .deadline()
        .await?;
        if let Some(id) = id {
            return Ok(id);
        }
    }
}
