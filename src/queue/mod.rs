//! The waiting room: fans join a concert's queue, poll their place, are
//! admitted at a fixed rate, and pass the gate of the booking pages.
//!
//! All of it lives in Redis, one Lua script per operation, every key of a
//! concert under its hash tag. The hot calls (join, poll, the gate) are one
//! round trip each and never touch Postgres; what Postgres gets is the audit
//! trail, written behind in batches ([`audit`]). Admission runs in the server
//! ([`admission`]); the pass the booking pages ask for is [`gate`]'s. Tokens
//! carry their concert ([`token`]).

pub mod admission;
pub mod audit;
pub mod gate;
pub mod token;

use crate::AppState;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::scripts::{self, Script};
use audit::AuditEvent;
use chrono::{DateTime, TimeZone, Utc};
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
    pub fn waiting_record_ttl_ms(&self) -> u64 {
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
pub async fn join(app: &AppState, user_id: i64, concert_id: i64) -> Result<Joined> {
    let token = QueueToken::new(concert_id)
        .ok_or_else(|| Error::Internal(format!("concert id {concert_id} does not fit a token")))?;
    let s = &app.queue;
    let joined = scripts::Join {
        keys: &app.keys.queue(concert_id),
        token: &token,
        user_id,
        record_ttl_ms: s.waiting_record_ttl_ms(),
        listed_marker_ms: LISTED_MARKER_MS,
    }
    .run(&app.redis)
    .await?;
    if joined.needs_listing {
        app.redis.list_queue(&app.keys, concert_id).await?;
    }
    if joined.created {
        metrics::counter!("queue_joins_total").increment(1);
        app.audit.record(AuditEvent {
            token: token.uuid,
            user_id,
            concert_id,
            status: QueueStatus::Waiting,
            queue_no: Some(joined.arrival),
            joined_at: millis(joined.joined_ms).unwrap_or_else(Utc::now),
            activated_at: None,
            expires_at: None,
        });
    }
    Ok(Joined {
        created: joined.created,
        view: view(
            joined.token,
            concert_id,
            joined.status,
            joined.position,
            joined.expires_ms,
            joined.active,
            s,
        ),
    })
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
pub async fn status(app: &AppState, user_id: i64, token: &str) -> Result<TokenView> {
    let token = QueueToken::parse(token).ok_or_else(token_not_found)?;
    let s = &app.queue;
    let polled = scripts::Poll {
        keys: &app.keys.queue(token.concert_id),
        token: &token,
        user_id,
        record_ttl_ms: s.waiting_record_ttl_ms(),
        listed_marker_ms: LISTED_MARKER_MS,
    }
    .run(&app.redis)
    .await?
    .ok_or_else(token_not_found)?;
    if polled.needs_listing {
        app.redis.list_queue(&app.keys, token.concert_id).await?;
    }
    Ok(view(
        token.text(),
        token.concert_id,
        polled.status,
        polled.position,
        polled.expires_ms,
        polled.active,
        s,
    ))
}

/// The owner gives a token up: it leaves the queue or frees its active slot,
/// and the user's pending holds in the concert are released.
pub async fn leave(app: &AppState, user_id: i64, token: &str) -> Result<()> {
    let token = QueueToken::parse(token).ok_or_else(token_not_found)?;
    let left = scripts::Leave {
        keys: &app.keys,
        token: &token,
        user_id,
        ended_retention_ms: ENDED_RETENTION_MS,
    }
    .run(&app.redis)
    .await?
    .ok_or_else(token_not_found)?;
    if left.holds_released > 0 {
        metrics::counter!("holds_released_total", "reason" => "left")
            .increment(left.holds_released as u64);
    }
    if matches!(left.had, QueueStatus::Waiting | QueueStatus::Active) {
        metrics::counter!("queue_expired_total", "reason" => "left").increment(1);
        app.audit.record(AuditEvent::ended(
            token.uuid,
            user_id,
            token.concert_id,
            QueueStatus::Expired,
        ));
    }
    Ok(())
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
