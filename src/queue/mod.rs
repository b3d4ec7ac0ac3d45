//! The waiting room: fans join a concert's queue, poll their place, are
//! admitted at a fixed rate, and pass the gate of the booking pages.
//!
//! All of it lives in Redis, one Lua script per operation, every key of a
//! concert under its hash tag. The hot calls (join, poll, the gate) are one
//! round trip each and never touch Postgres; what Postgres gets is the audit
//! trail, written behind in batches ([`audit`]). Admission runs in the server
//! ([`admission`]).

pub mod admission;
pub mod audit;
pub mod token;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::redis::{int, text};
use crate::store::{Keys, Redis};
use audit::{Audit, AuditEvent};
use chrono::{DateTime, TimeZone, Utc};
use fred::types::Value;
use serde::Serialize;
pub use token::QueueToken;

/// How long an ended token (EXPIRED, PROCESSED) can still be read.
pub const ENDED_RETENTION_MS: u64 = 3600 * 1000;
/// How long a queue's "listed" marker lasts without an admission tick: the
/// longest a queue can go unvisited if adding it to the worker's set failed.
pub const LISTED_MARKER_MS: u64 = 5 * 1000;

/// Ordered as a token's life goes: a status never moves backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, sqlx::Type)]
#[sqlx(type_name = "queue_token_status", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum QueueStatus {
    Waiting,
    Active,
    Expired,
    Processed,
}

impl QueueStatus {
    fn from_code(code: &str) -> Result<Self> {
        Ok(match code {
            "W" => QueueStatus::Waiting,
            "A" => QueueStatus::Active,
            "X" => QueueStatus::Expired,
            "P" => QueueStatus::Processed,
            other => return Err(Error::Internal(format!("queue status code {other:?}"))),
        })
    }
}

/// A token as API.md shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TokenView {
    pub token: String,
    pub concert_id: i64,
    pub status: QueueStatus,
    pub position: Option<i64>,
    pub estimated_wait_seconds: i64,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// What the queue operations need from the configuration.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    pub admission_rate: u32,
    pub max_active: u32,
    pub active_ttl_ms: u64,
    pub waiting_idle_ms: u64,
}

impl QueueSettings {
    pub fn from_config(c: &Config) -> Self {
        QueueSettings {
            admission_rate: c.admission_rate,
            max_active: c.max_active,
            active_ttl_ms: c.active_ttl.as_millis() as u64,
            waiting_idle_ms: c.waiting_idle.as_millis() as u64,
        }
    }

    /// A WAITING record outlives its last poll by the idle window plus the
    /// retention, so it is still readable (as EXPIRED) after it drops out.
    fn waiting_record_ttl_ms(&self) -> u64 {
        self.waiting_idle_ms + ENDED_RETENTION_MS
    }
}

/// Seconds a WAITING fan at `position` can expect to wait: the free active slots
/// fill at the admission rate; past them, places open only as admitted fans
/// finish, at most `max_active` per active lifetime. At least 1.
pub fn estimate_wait_seconds(position: i64, active: i64, s: &QueueSettings) -> i64 {
    let rate = f64::from(s.admission_rate.max(1));
    let position = position.max(1) as f64;
    let seconds = if s.max_active == 0 {
        position / rate
    } else {
        let free = (i64::from(s.max_active) - active).max(0) as f64;
        if position <= free {
            position / rate
        } else {
            let turnover = f64::from(s.max_active) / (s.active_ttl_ms.max(1000) as f64 / 1000.0);
            free / rate + (position - free) / rate.min(turnover)
        }
    };
    (seconds.ceil() as i64).max(1)
}

fn millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// The result of a join: the view, and whether a new token was made (201) or
/// the user's live one returned (200).
pub struct Joined {
    pub created: bool,
    pub view: TokenView,
}

/// Joins `concert_id`'s queue (the caller has checked the concert exists).
pub async fn join(
    redis: &Redis,
    keys: &Keys,
    audit: &Audit,
    s: &QueueSettings,
    user_id: i64,
    concert_id: i64,
) -> Result<Joined> {
    let token = QueueToken::new(concert_id)
        .ok_or_else(|| Error::Internal(format!("concert id {concert_id} does not fit a token")))?;
    let q = keys.queue(concert_id);
    let text_token = token.text();
    let reply: Vec<Value> = redis
        .run(
            &redis.scripts.queue_join,
            vec![
                q.user(user_id),
                q.token(&text_token),
                q.waiting(),
                q.polled(),
                q.arrivals(),
                q.active(),
                q.listed(),
            ],
            vec![
                text_token.clone(),
                user_id.to_string(),
                s.waiting_record_ttl_ms().to_string(),
                q.token_prefix(),
                LISTED_MARKER_MS.to_string(),
            ],
        )
        .await?;
    let [
        created,
        tok,
        status,
        position,
        expires,
        active,
        needs_listing,
        joined,
    ] = reply.as_slice()
    else {
        return Err(Error::Internal(format!("queue_join reply {reply:?}")));
    };
    let created = int(created)? == 1;
    let status = QueueStatus::from_code(&text(status)?)?;
    let tok = text(tok)?;
    if int(needs_listing)? == 1 {
        list_for_admission(redis, keys, concert_id).await?;
    }
    if created {
        metrics::counter!("queue_joins_total").increment(1);
        audit.record(AuditEvent {
            token: token.uuid,
            user_id,
            concert_id,
            status: QueueStatus::Waiting,
            joined_at: millis(int(joined)?).unwrap_or_else(Utc::now),
            activated_at: None,
            expires_at: None,
        });
    }
    Ok(Joined {
        created,
        view: view(
            tok,
            concert_id,
            status,
            int(position)?,
            int(expires)?,
            int(active)?,
            s,
        ),
    })
}
/// Makes sure the admission worker visits `concert_id`'s queue. The second
/// round trip of a join or poll, needed only when a queue (re)starts: the
/// worker's ticks keep the marker that makes it unnecessary otherwise.
async fn list_for_admission(redis: &Redis, keys: &Keys, concert_id: i64) -> Result<()> {
    let _: i64 =
        fred::interfaces::SetsInterface::sadd(redis.client(), keys.queued_concerts(), concert_id)
            .await?;
    Ok(())
}

fn view(
    token: String,
    concert_id: i64,
    status: QueueStatus,
    position: i64,
    expires_ms: i64,
    active: i64,
    s: &QueueSettings,
) -> TokenView {
    let waiting = status == QueueStatus::Waiting;
    TokenView {
        token,
        concert_id,
        status,
        position: waiting.then_some(position),
        estimated_wait_seconds: if waiting {
            estimate_wait_seconds(position, active, s)
        } else {
            0
        },
        expires_at: if status == QueueStatus::Active {
            millis(expires_ms)
        } else {
            None
        },
    }
}

fn token_not_found() -> Error {
    Error::not_found(
        "queue_token_not_found",
        "no queue token of yours with that id",
    )
}

/// Reads a token for its owner (counts as a poll while WAITING).
pub async fn status(
    redis: &Redis,
    keys: &Keys,
    s: &QueueSettings,
    user_id: i64,
    token: &str,
) -> Result<TokenView> {
    let token = QueueToken::parse(token).ok_or_else(token_not_found)?;
    let q = keys.queue(token.concert_id);
    let text_token = token.text();
    let reply: Option<Vec<Value>> = redis
        .run(
            &redis.scripts.queue_status,
            vec![
                q.token(&text_token),
                q.waiting(),
                q.polled(),
                q.active(),
                q.user(user_id),
                q.listed(),
            ],
            vec![
                text_token.clone(),
                user_id.to_string(),
                s.waiting_record_ttl_ms().to_string(),
                LISTED_MARKER_MS.to_string(),
            ],
        )
        .await?;
    let reply = reply
        .filter(|r| !r.is_empty())
        .ok_or_else(token_not_found)?;
    let [status, position, expires, active, needs_listing] = reply.as_slice() else {
        return Err(Error::Internal(format!("queue_status reply {reply:?}")));
    };
    if int(needs_listing)? == 1 {
        list_for_admission(redis, keys, token.concert_id).await?;
    }
    let status = QueueStatus::from_code(&text(status)?)?;
    Ok(view(
        text_token,
        token.concert_id,
        status,
        int(position)?,
        int(expires)?,
        int(active)?,
        s,
    ))
}

/// The owner gives a token up: it leaves the queue or frees its active slot,
/// and the user's pending holds in the concert are released.
pub async fn leave(
    redis: &Redis,
    keys: &Keys,
    audit: &Audit,
    user_id: i64,
    token: &str,
) -> Result<()> {
    let token = QueueToken::parse(token).ok_or_else(token_not_found)?;
    let q = keys.queue(token.concert_id);
    let b = keys.booking(token.concert_id);
    let text_token = token.text();
    let reply: Option<Vec<Value>> = redis
        .run(
            &redis.scripts.queue_leave,
            vec![
                q.token(&text_token),
                q.waiting(),
                q.polled(),
                q.active(),
                q.user(user_id),
                b.user_holds(user_id),
            ],
            vec![
                text_token,
                user_id.to_string(),
                ENDED_RETENTION_MS.to_string(),
                b.tag().to_owned(),
            ],
        )
        .await?;
    let reply = reply
        .filter(|r| !r.is_empty())
        .ok_or_else(token_not_found)?;
    let [had, released] = reply.as_slice() else {
        return Err(Error::Internal(format!("queue_leave reply {reply:?}")));
    };
    let released = int(released)?;
    if released > 0 {
        metrics::counter!("holds_released_total", "reason" => "left").increment(released as u64);
    }
    if matches!(text(had)?.as_str(), "W" | "A") {
        metrics::counter!("queue_expired_total", "reason" => "left").increment(1);
        audit.record(AuditEvent::ended(
            token.uuid,
            user_id,
            token.concert_id,
            QueueStatus::Expired,
        ));
    }
    Ok(())
}

fn pass_required() -> Error {
    Error::Unauthorized {
        code: "queue_token_required",
        message: "an X-Queue-Token header is required".into(),
    }
}

fn pass_invalid() -> Error {
    Error::Unauthorized {
        code: "queue_token_invalid",
        message: "the queue token is unknown or not yours".into(),
    }
}

/// Maps a gate script's verdict to the API's answer: `Ok` for `"ok"`, else the
/// gate's error. Other verdicts are the caller's to read first.
pub fn gate_verdict(verdict: &str) -> Result<()> {
    match verdict {
        "ok" => Ok(()),
        "invalid" => Err(pass_invalid()),
        "expired" => Err(Error::Unauthorized {
            code: "queue_token_expired",
            message: "the queue token has expired or was already used".into(),
        }),
        "waiting" => Err(Error::Forbidden {
            code: "queue_token_not_active",
            message: "the queue token is still waiting to be admitted".into(),
        }),
        other => Err(Error::Internal(format!("gate verdict {other:?}"))),
    }
}

fn wrong_concert() -> Error {
    Error::Forbidden {
        code: "queue_token_wrong_concert",
        message: "the queue token is for another concert".into(),
    }
}

/// The queue pass of a gated request for `concert_id`, checked in API.md's
/// order. `header` is the `X-Queue-Token` value, if any. One round trip.
pub async fn check_pass(
    redis: &Redis,
    keys: &Keys,
    user_id: i64,
    header: Option<&str>,
    concert_id: i64,
) -> Result<()> {
    let token = QueueToken::parse(header.ok_or_else(pass_required)?).ok_or_else(pass_invalid)?;
    let q = keys.queue(token.concert_id);
    let verdict: String = redis
        .run(
            &redis.scripts.queue_gate,
            vec![q.token(&token.text())],
            vec![user_id.to_string()],
        )
        .await?;
    gate_verdict(&verdict)?;
    if token.concert_id != concert_id {
        return Err(wrong_concert());
    }
    Ok(())
}

/// The pass of a gated request whose own script checks the gate in the same
/// round trip. Returns the token when it names `concert_id` (the script then
/// reads its record); otherwise answers with the gate's error (a missing or
/// malformed header at once; a token of another concert after one round trip
/// to its record, for the exact error of API.md's order).
pub async fn pass_for(
    redis: &Redis,
    keys: &Keys,
    user_id: i64,
    header: Option<&str>,
    concert_id: i64,
) -> Result<QueueToken> {
    let token = QueueToken::parse(header.ok_or_else(pass_required)?).ok_or_else(pass_invalid)?;
    if token.concert_id == concert_id {
        return Ok(token);
    }
    check_pass(redis, keys, user_id, header, concert_id).await?;
    Err(wrong_concert())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(rate: u32, max_active: u32, ttl_s: u64) -> QueueSettings {
        QueueSettings {
            admission_rate: rate,
            max_active,
            active_ttl_ms: ttl_s * 1000,
            waiting_idle_ms: 300_000,
        }
    }

    #[test]
    fn waits_follow_the_rate_while_slots_are_free() {
        let s = settings(100, 1000, 600);
        assert_eq!(estimate_wait_seconds(1, 0, &s), 1);
        assert_eq!(estimate_wait_seconds(100, 0, &s), 1);
        assert_eq!(estimate_wait_seconds(101, 0, &s), 2);
        assert_eq!(estimate_wait_seconds(1000, 0, &s), 10);
        assert_eq!(estimate_wait_seconds(5000, 0, &settings(100, 0, 600)), 50);
    }

    #[test]
    fn past_the_cap_places_open_as_fans_finish() {
        // 1000 slots, all taken, each lasting up to 600 s: ~1.67 places a second.
        let s = settings(100, 1000, 600);
        assert_eq!(estimate_wait_seconds(10, 1000, &s), 6);
        assert!(estimate_wait_seconds(2000, 0, &s) > estimate_wait_seconds(1000, 0, &s));
        assert!(estimate_wait_seconds(1, 1000, &s) >= 1);
    }
}
