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
pub mod room;
pub mod token;

use crate::AppState;
use crate::error::{Error, Result};
use crate::limits::{self, Limit};
use crate::store::scripts::{self, JoinReply, PollReply, RoomLive, RoomState, Roomed, Script};
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
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, sqlx::Type, utoipa::ToSchema,
)]
#[sqlx(type_name = "queue_token_status", rename_all = "UPPERCASE")]
#[serde(rename_all = "UPPERCASE")]
pub enum QueueStatus {
    Waiting,
    Active,
    Expired,
    Processed,
}

/// A token as API.md shows it, with its room.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// The queue pass: send it as `X-Queue-Token` once ACTIVE.
    #[schema(format = "uuid")]
    pub token: String,
    pub concert_id: i64,
    pub status: QueueStatus,
    /// 1-based while WAITING with a place (1 = admitted next); `null` otherwise,
    /// and in the pre-queue of a SCHEDULED room.
    #[schema(minimum = 1)]
    pub position: Option<i64>,
    /// At least 1 while WAITING, 0 otherwise.
    #[schema(minimum = 0)]
    pub estimated_wait_seconds: i64,
    /// When an ACTIVE token stops being valid; `null` unless ACTIVE.
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    pub room_state: RoomState,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub opens_at: Option<DateTime<Utc>>,
    /// The operator's message to everyone waiting.
    pub message: Option<String>,
    /// AVAILABLE seats as counted at the last admission tick; `null` until
    /// counted, or while the concert has no schedule.
    pub seats_left: Option<i64>,
}

/// Seconds a WAITING fan at `place` (its position, or the one it can expect
/// in the pre-queue) can expect to wait, from its room's own settings: the
/// time until the room opens, if it is scheduled; then the free active slots
/// fill at the room's rate; past them, places open only as admitted fans
/// finish, at most `max_active` per active lifetime. At least 1.
pub fn estimate_wait_seconds(place: i64, active: i64, room: &RoomLive, now_ms: i64) -> i64 {
    let rate = f64::from(room.admission_rate.max(1));
    let place = place.max(1) as f64;
    let until_open = room
        .opens_ms
        .map_or(0.0, |opens| (opens - now_ms).max(0) as f64 / 1000.0);
    // Nobody holds a slot yet when a scheduled room opens.
    let active = if until_open > 0.0 { 0 } else { active };
    let seconds = if room.max_active == 0 {
        place / rate
    } else {
        let free = (i64::from(room.max_active) - active).max(0) as f64;
        if place <= free {
            place / rate
        } else {
            let turnover =
                f64::from(room.max_active) / (room.active_ttl_ms.max(1000) as f64 / 1000.0);
            free / rate + (place - free) / rate.min(turnover)
        }
    };
    ((until_open + seconds).ceil() as i64).max(1)
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

fn sold_out() -> Error {
    Error::Conflict {
        code: "sold_out",
        message: "every seat of this concert is sold".into(),
    }
}

/// A random, secret place in a pre-queue: 52 bits, exact as a Redis score.
fn prequeue_score() -> u64 {
    let (high, _) = uuid::Uuid::new_v4().as_u64_pair();
    high >> 12
}

/// Joins `concert_id`'s waiting room (the caller has checked the concert exists).
pub async fn join(app: &AppState, user_id: i64, concert_id: i64) -> Result<Joined> {
    let check = QueueToken::new_check();
    let keys = app.keys.queue(concert_id);
    let score = prequeue_score();
    let reply = room::run_with_room(
        app,
        concert_id,
        || scripts::Join {
            keys: &keys,
            concert_id,
            check,
            user_id,
            ended_retention_ms: ENDED_RETENTION_MS,
            listed_marker_ms: LISTED_MARKER_MS,
            prequeue_score: score,
            rate: app.config.limits.rate(Limit::Join),
        },
        |r| matches!(r, JoinReply::NoRoom),
    )
    .await?;
    let joined = match reply {
        JoinReply::Joined(joined) => joined,
        JoinReply::SoldOut => return Err(sold_out()),
        JoinReply::NoRoom => return Err(Error::Internal("join after restore".into())),
        JoinReply::Limited { wait_ms } => return Err(limits::refused(Limit::Join, wait_ms)),
    };
    let token = QueueToken::from_name(concert_id, &joined.token).ok_or_else(|| {
        Error::Internal(format!("queue_join: token {:?} does not fit", joined.token))
    })?;
    if joined.needs_listing {
        app.redis.list_queue(&app.keys, concert_id).await?;
    }
    if joined.created {
        metrics::counter!("queue_joins_total", "concert" => concert_id.to_string()).increment(1);
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
            token.text(),
            concert_id,
            Place {
                status: joined.status,
                position: joined.position,
                expected: joined.expected_position,
                expires_ms: joined.expires_ms,
                active: joined.active,
            },
            joined.room,
        ),
    })
}

/// Where a token stands, as a script read it.
struct Place {
    status: QueueStatus,
    position: Option<i64>,
    expected: Option<i64>,
    expires_ms: i64,
    active: i64,
}

fn view(token: String, concert_id: i64, p: Place, room: RoomLive) -> TokenView {
    let waiting = p.status == QueueStatus::Waiting;
    let estimate = match (waiting, p.position.or(p.expected)) {
        (true, Some(place)) => {
            estimate_wait_seconds(place, p.active, &room, Utc::now().timestamp_millis())
        }
        (true, None) => 1,
        (false, _) => 0,
    };
    TokenView {
        token,
        concert_id,
        status: p.status,
        position: if waiting { p.position } else { None },
        estimated_wait_seconds: estimate,
        expires_at: if p.status == QueueStatus::Active {
            millis(p.expires_ms)
        } else {
            None
        },
        room_state: room.state,
        opens_at: room.opens_ms.and_then(millis),
        message: room.message,
        seats_left: room.seats_left,
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
    let keys = app.keys.queue(token.concert_id);
    let polled = room::run_with_room(
        app,
        token.concert_id,
        || scripts::Poll {
            keys: &keys,
            token: &token,
            user_id,
            ended_retention_ms: ENDED_RETENTION_MS,
            listed_marker_ms: LISTED_MARKER_MS,
            rate: app.config.limits.rate(Limit::Poll),
        },
        |r| matches!(r, PollReply::Found(Roomed::NoRoom)),
    )
    .await?;
    let polled = match polled {
        PollReply::Unknown => return Err(token_not_found()),
        PollReply::Found(Roomed::Found(polled)) => polled,
        PollReply::Found(Roomed::NoRoom) => {
            return Err(Error::Internal("poll after restore".into()));
        }
        PollReply::Limited { wait_ms } => return Err(limits::refused(Limit::Poll, wait_ms)),
    };
    if polled.needs_listing {
        app.redis.list_queue(&app.keys, token.concert_id).await?;
    }
    Ok(view(
        token.text(),
        token.concert_id,
        Place {
            status: polled.status,
            position: polled.position,
            expected: polled.expected_position,
            expires_ms: polled.expires_ms,
            active: polled.active,
        },
        polled.room,
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
        metrics::counter!("queue_expired_total", "concert" => token.concert_id.to_string(),
            "reason" => "left")
        .increment(1);
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

    fn room(rate: u32, max_active: u32, ttl_s: u64) -> RoomLive {
        RoomLive {
            state: RoomState::Open,
            opens_ms: None,
            message: None,
            seats_left: None,
            admission_rate: rate,
            max_active,
            active_ttl_ms: ttl_s * 1000,
        }
    }

    #[test]
    fn waits_follow_the_rooms_rate_while_slots_are_free() {
        let r = room(100, 1000, 600);
        assert_eq!(estimate_wait_seconds(1, 0, &r, 0), 1);
        assert_eq!(estimate_wait_seconds(100, 0, &r, 0), 1);
        assert_eq!(estimate_wait_seconds(101, 0, &r, 0), 2);
        assert_eq!(estimate_wait_seconds(1000, 0, &r, 0), 10);
        assert_eq!(estimate_wait_seconds(5000, 0, &room(100, 0, 600), 0), 50);
        assert_eq!(estimate_wait_seconds(5000, 0, &room(10, 0, 600), 0), 500);
    }

    #[test]
    fn past_the_cap_places_open_as_fans_finish() {
        // 1000 slots, all taken, each lasting up to 600 s: ~1.67 places a second.
        let r = room(100, 1000, 600);
        assert_eq!(estimate_wait_seconds(10, 1000, &r, 0), 6);
        assert!(estimate_wait_seconds(2000, 0, &r, 0) > estimate_wait_seconds(1000, 0, &r, 0));
        assert!(estimate_wait_seconds(1, 1000, &r, 0) >= 1);
    }

    #[test]
    fn a_scheduled_room_counts_down_to_its_opening() {
        let mut r = room(100, 0, 600);
        r.state = RoomState::Scheduled;
        r.opens_ms = Some(60_000);
        assert_eq!(estimate_wait_seconds(1, 0, &r, 0), 61);
        assert_eq!(estimate_wait_seconds(1000, 0, &r, 30_000), 40);
        // Opened: the countdown is over.
        assert_eq!(estimate_wait_seconds(1000, 0, &r, 90_000), 10);
    }
}
