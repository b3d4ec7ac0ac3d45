//! Waiting rooms: each concert's sale as its operator sets it up and steers it
//! live: the admission rate and cap, token and hold lifetimes, a scheduled
//! opening with its pre-queue, a pause, a message to every waiter.
//!
//! Postgres (`waiting_room`) is the record: a row only for a room someone
//! changed, a NULL setting meaning the environment's default. The hot paths
//! read the room's Redis hash inside their own script (still one round trip);
//! this module writes it: at a change (inside the change's transaction, so
//! both or neither), and whenever Redis lost it (a script answers 'noroom', and
//! [`run_with_room`] restores the room and runs the script again), and when the
//! server admitting its concert finds the hash differs from Postgres ([`reconcile`]).

use crate::AppState;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::postgres::Deadline;
use crate::store::scripts::{self, RoomRecord, RoomSettingsMs, RoomState, Roomed, Script};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The ranges API.md gives each settable field.
pub const RATE_RANGE: (u32, u32) = (1, 100_000);
pub const MAX_ACTIVE_RANGE: (u32, u32) = (0, 1_000_000);
pub const ACTIVE_TTL_RANGE: (u32, u32) = (10, 86_400);
pub const IDLE_RANGE: (u32, u32) = (10, 86_400);
pub const HOLD_TTL_RANGE: (u32, u32) = (1, 86_400);
pub const MAX_HOLDS_RANGE: (u32, u32) = (1, 100);
pub const MESSAGE_MAX_CHARS: usize = 500;

/// How long the public concert page's room summary is kept in process.
const SUMMARY_TTL: Duration = Duration::from_secs(1);

/// A room's settings, whole: what the operator set, the defaults elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    pub admission_rate: u32,
    pub max_active: u32,
    pub active_ttl_secs: u32,
    pub waiting_idle_secs: u32,
    pub hold_ttl_secs: u32,
    pub max_holds_per_user: u32,
    pub opens_at: Option<DateTime<Utc>>,
    pub paused: bool,
    pub message: Option<String>,
}

impl RoomSettings {
    /// The environment's defaults: every room starts from them.
    pub fn defaults(c: &Config) -> Self {
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        RoomSettings {
            admission_rate: c.admission_rate,
            max_active: c.max_active,
            active_ttl_secs: secs(c.active_ttl),
            waiting_idle_secs: secs(c.waiting_idle),
            hold_ttl_secs: secs(c.hold_ttl),
            max_holds_per_user: c.max_holds_per_user,
            opens_at: None,
            paused: false,
            message: None,
        }
    }

    fn in_ms(&self) -> RoomSettingsMs {
        RoomSettingsMs {
            admission_rate: self.admission_rate,
            max_active: self.max_active,
            active_ttl_ms: u64::from(self.active_ttl_secs) * 1000,
            waiting_idle_ms: u64::from(self.waiting_idle_secs) * 1000,
            hold_ttl_ms: u64::from(self.hold_ttl_secs) * 1000,
            max_holds_per_user: self.max_holds_per_user,
            opens_ms: self.opens_at.map(|t| t.timestamp_millis()),
            paused: self.paused,
            message: self.message.clone(),
        }
    }
}

/// A room as `GET`/`PATCH /admin/concerts/{id}/waiting-room` answer it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RoomView {
    pub concert_id: i64,
    pub admission_rate: u32,
    pub max_active: u32,
    pub active_ttl_secs: u64,
    pub waiting_idle_secs: u64,
    pub hold_ttl_secs: u64,
    pub max_holds_per_user: u32,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub opens_at: Option<DateTime<Utc>>,
    pub paused: bool,
    pub message: Option<String>,
    pub state: RoomState,
    pub waiting: i64,
    pub active: i64,
    pub seats_left: Option<i64>,
}

impl RoomView {
    fn new(concert_id: i64, r: RoomRecord) -> Self {
        RoomView {
            concert_id,
            admission_rate: r.live.admission_rate,
            max_active: r.live.max_active,
            active_ttl_secs: r.live.active_ttl_ms / 1000,
            waiting_idle_secs: r.waiting_idle_ms / 1000,
            hold_ttl_secs: r.hold_ttl_ms / 1000,
            max_holds_per_user: r.max_holds_per_user,
            opens_at: r.live.opens_ms.and_then(millis),
            paused: r.paused,
            message: r.live.message,
            state: r.live.state,
            waiting: r.waiting,
            active: r.active,
            seats_left: r.live.seats_left,
        }
    }
}

/// What the public concert page shows of its room.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RoomSummary {
    pub state: RoomState,
    #[serde(serialize_with = "crate::time::serialize_opt")]
    pub opens_at: Option<DateTime<Utc>>,
    pub seats_left: Option<i64>,
}

pub(crate) fn millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

/// A field of a PATCH that may be given as `null`: absent, `null`, or a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Nullable<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Nullable::Null,
            Some(v) => Nullable::Value(v),
        })
    }
}

/// A PATCH body as the operator sent it. Unknown fields are refused, so a typo
/// in an operator's script is a `400`, not a change that silently did nothing.
/// (The ranges in `schema` attributes are the document's copy of the
/// `*_RANGE` constants above; a test in `http::openapi` compares them.)
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoomPatch {
    /// Tokens admitted per second.
    #[schema(minimum = 1, maximum = 100_000)]
    pub admission_rate: Option<i64>,
    /// ACTIVE tokens at once; 0 = no cap.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub max_active: Option<i64>,
    #[schema(minimum = 10, maximum = 86_400)]
    pub active_ttl_secs: Option<i64>,
    #[schema(minimum = 10, maximum = 86_400)]
    pub waiting_idle_secs: Option<i64>,
    #[schema(minimum = 1, maximum = 86_400)]
    pub hold_ttl_secs: Option<i64>,
    #[schema(minimum = 1, maximum = 100)]
    pub max_holds_per_user: Option<i64>,
    /// When the room opens (RFC 3339); `null` or a past time opens it at the next tick.
    #[serde(default)]
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub opens_at: Nullable<String>,
    pub paused: Option<bool>,
    /// Up to 500 Unicode code points; `null` or `""` clears it.
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub message: Nullable<String>,
}

/// A checked PATCH: every value in range; `Some` for what it changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomChange {
    pub admission_rate: Option<u32>,
    pub max_active: Option<u32>,
    pub active_ttl_secs: Option<u32>,
    pub waiting_idle_secs: Option<u32>,
    pub hold_ttl_secs: Option<u32>,
    pub max_holds_per_user: Option<u32>,
    pub opens_at: Option<Option<DateTime<Utc>>>,
    pub paused: Option<bool>,
    pub message: Option<Option<String>>,
}

fn in_range(field: &str, v: Option<i64>, (min, max): (u32, u32)) -> Result<Option<u32>> {
    match v {
        None => Ok(None),
        Some(v) if (i64::from(min)..=i64::from(max)).contains(&v) => Ok(Some(v as u32)),
        Some(_) => Err(Error::bad_request(format!(
            "{field} must be a whole number from {min} to {max}"
        ))),
    }
}

impl RoomPatch {
    /// Checks every field against API.md's ranges; the first bad one is the `400`.
    pub fn checked(self) -> Result<RoomChange> {
        let opens_at = match self.opens_at {
            Nullable::Absent => None,
            Nullable::Null => Some(None),
            Nullable::Value(text) => Some(Some(crate::time::parse(&text).ok_or_else(|| {
                Error::bad_request("opens_at must be an RFC 3339 timestamp or null")
            })?)),
        };
        let message = match self.message {
            Nullable::Absent => None,
            Nullable::Null => Some(None),
            Nullable::Value(text) if text.is_empty() => Some(None),
            Nullable::Value(text) => {
                if text.chars().count() > MESSAGE_MAX_CHARS {
                    return Err(Error::bad_request(format!(
                        "message must be at most {MESSAGE_MAX_CHARS} characters"
                    )));
                }
                Some(Some(text))
            }
        };
        Ok(RoomChange {
            admission_rate: in_range("admission_rate", self.admission_rate, RATE_RANGE)?,
            max_active: in_range("max_active", self.max_active, MAX_ACTIVE_RANGE)?,
            active_ttl_secs: in_range("active_ttl_secs", self.active_ttl_secs, ACTIVE_TTL_RANGE)?,
            waiting_idle_secs: in_range("waiting_idle_secs", self.waiting_idle_secs, IDLE_RANGE)?,
            hold_ttl_secs: in_range("hold_ttl_secs", self.hold_ttl_secs, HOLD_TTL_RANGE)?,
            max_holds_per_user: in_range(
                "max_holds_per_user",
                self.max_holds_per_user,
                MAX_HOLDS_RANGE,
            )?,
            opens_at,
            paused: self.paused,
            message,
        })
    }
}

/// A `waiting_room` row: NULL settings are the defaults.
#[derive(sqlx::FromRow)]
struct Row {
    admission_rate: Option<i32>,
    max_active: Option<i32>,
    active_ttl_secs: Option<i32>,
    waiting_idle_secs: Option<i32>,
    hold_ttl_secs: Option<i32>,
    max_holds_per_user: Option<i32>,
    opens_at: Option<DateTime<Utc>>,
    paused: bool,
    message: Option<String>,
    version: i64,
}

impl Row {
    fn settings(self, d: RoomSettings) -> RoomSettings {
        let or = |v: Option<i32>, default: u32| v.map_or(default, |v| v.max(0) as u32);
        RoomSettings {
            admission_rate: or(self.admission_rate, d.admission_rate),
            max_active: or(self.max_active, d.max_active),
            active_ttl_secs: or(self.active_ttl_secs, d.active_ttl_secs),
            waiting_idle_secs: or(self.waiting_idle_secs, d.waiting_idle_secs),
            hold_ttl_secs: or(self.hold_ttl_secs, d.hold_ttl_secs),
            max_holds_per_user: or(self.max_holds_per_user, d.max_holds_per_user),
            opens_at: self.opens_at,
            paused: self.paused,
            message: self.message,
        }
    }
}

const ROW_COLUMNS: &str = "admission_rate, max_active, active_ttl_secs, waiting_idle_secs, \
     hold_ttl_secs, max_holds_per_user, opens_at, paused, message, version";

/// A concert's schedules and their seats, as the room counts them.
async fn schedules(db: impl sqlx::PgExecutor<'_>, concert_id: i64) -> Result<Vec<(i64, i64)>> {
    let rows: Vec<(i64, i32)> = sqlx::query_as(
        "SELECT id, seat_count FROM concert_schedule WHERE concert_id = $1 ORDER BY start_at, id",
    )
    .bind(concert_id)
    .fetch_all(db)
    .deadline()
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, seats)| (id, i64::from(seats)))
        .collect())
}

/// Writes the room of `concert_id` into Redis from Postgres (unless Redis has
/// a copy as new; always with `force`).
pub async fn restore(app: &AppState, concert_id: i64, force: bool) -> Result<()> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ROW_COLUMNS} FROM waiting_room WHERE concert_id = $1"
    )))
    .bind(concert_id)
    .fetch_optional(&app.pg)
    .deadline()
    .await?;
    let defaults = RoomSettings::defaults(&app.config);
    let (settings, version) = match row {
        Some(row) => {
            let version = row.version;
            (row.settings(defaults), version)
        }
        None => (defaults, 0),
    };
    let schedules = schedules(&app.pg, concert_id).await?;
    scripts::RoomSet {
        keys: &app.keys.queue(concert_id),
        version,
        schedules: &schedules,
        settings: &settings.in_ms(),
        force,
    }
    .run(&app.redis)
    .await?;
    metrics::counter!("waiting_room_restores_total").increment(1);
    Ok(())
}

/// Runs a script that reads the concert's room; if Redis has lost the room,
/// restores it from Postgres and runs the script once more (the rare second
/// round trip). `make` builds the script call, `missing` tells a reply that
/// found no room.
pub async fn run_with_room<S, R>(
    app: &AppState,
    concert_id: i64,
    make: impl Fn() -> S,
    missing: impl Fn(&R) -> bool,
) -> Result<R>
where
    S: Script<Reply = R>,
{
    let reply = make().run(&app.redis).await?;
    if !missing(&reply) {
        return Ok(reply);
    }
    restore(app, concert_id, false).await?;
    let reply = make().run(&app.redis).await?;
    if missing(&reply) {
        return Err(Error::Unavailable(format!(
            "redis: the room of concert {concert_id} vanished again"
        )));
    }
    Ok(reply)
}

/// The room as its operator sees it, seats counted now.
pub async fn read(app: &AppState, concert_id: i64) -> Result<RoomView> {
    crate::catalog::concert(app, concert_id).await?;
    read_known(app, concert_id).await
}

async fn read_known(app: &AppState, concert_id: i64) -> Result<RoomView> {
    let keys = app.keys.queue(concert_id);
    let read = run_with_room(
        app,
        concert_id,
        || scripts::RoomRead { keys: &keys },
        |r| matches!(r, Roomed::NoRoom),
    )
    .await?;
    match read {
        Roomed::Found(record) => {
            crate::booking::count_lapsed(record.lapsed);
            Ok(RoomView::new(concert_id, record))
        }
        Roomed::NoRoom => Err(Error::Internal("room read after restore".into())),
    }
}

/// Applies an operator's change: Postgres and the Redis hash in one go (the
/// hash is written while the row is locked, so two changes reach Redis in the
/// order they commit; if Redis cannot be written, nothing changes: `503`).
pub async fn change(app: &AppState, concert_id: i64, change: RoomChange) -> Result<RoomView> {
    crate::catalog::concert(app, concert_id).await?;
    let started = std::time::Instant::now();
    let mut tx = app.pg.begin().await?;
    // The upsert takes the row's lock and counts the change.
    sqlx::query(
        "INSERT INTO waiting_room (concert_id) VALUES ($1)
         ON CONFLICT (concert_id) DO UPDATE SET version = waiting_room.version + 1,
                                              updated_at = now()",
    )
    .bind(concert_id)
    .execute(&mut *tx)
    .deadline()
    .await?;
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE waiting_room SET
             admission_rate = CASE WHEN $2 THEN $3 ELSE admission_rate END,
             max_active = CASE WHEN $4 THEN $5 ELSE max_active END,
             active_ttl_secs = CASE WHEN $6 THEN $7 ELSE active_ttl_secs END,
             waiting_idle_secs = CASE WHEN $8 THEN $9 ELSE waiting_idle_secs END,
             hold_ttl_secs = CASE WHEN $10 THEN $11 ELSE hold_ttl_secs END,
             max_holds_per_user = CASE WHEN $12 THEN $13 ELSE max_holds_per_user END,
             opens_at = CASE WHEN $14 THEN $15 ELSE opens_at END,
             paused = COALESCE($16, paused),
             message = CASE WHEN $17 THEN $18 ELSE message END
         WHERE concert_id = $1
         RETURNING {ROW_COLUMNS}"
    )))
    .bind(concert_id)
    .bind(change.admission_rate.is_some())
    .bind(change.admission_rate.map(|v| v as i32))
    .bind(change.max_active.is_some())
    .bind(change.max_active.map(|v| v as i32))
    .bind(change.active_ttl_secs.is_some())
    .bind(change.active_ttl_secs.map(|v| v as i32))
    .bind(change.waiting_idle_secs.is_some())
    .bind(change.waiting_idle_secs.map(|v| v as i32))
    .bind(change.hold_ttl_secs.is_some())
    .bind(change.hold_ttl_secs.map(|v| v as i32))
    .bind(change.max_holds_per_user.is_some())
    .bind(change.max_holds_per_user.map(|v| v as i32))
    .bind(change.opens_at.is_some())
    .bind(change.opens_at.flatten())
    .bind(change.paused)
    .bind(change.message.is_some())
    .bind(change.message.clone().flatten())
    .fetch_one(&mut *tx)
    .deadline()
    .await?;
    let version = row.version;
    let settings = row.settings(RoomSettings::defaults(&app.config));
    let schedules = schedules(&mut *tx, concert_id).await?;
    scripts::RoomSet {
        keys: &app.keys.queue(concert_id),
        version,
        schedules: &schedules,
        settings: &settings.in_ms(),
        force: false,
    }
    .run(&app.redis)
    .await?;
    tx.commit().deadline().await?;
    metrics::histogram!("postgres_transaction_duration_seconds", "op" => "room")
        .record(started.elapsed().as_secs_f64());
    tracing::info!(concert_id, version, ?change, "waiting room changed");
    forget_summary(app, concert_id);
    read_known(app, concert_id).await
}

/// A new schedule changes what the room counts: it is written again (a
/// failure here is healed by the admitting server's reconcile within seconds).
pub async fn schedules_changed(app: &AppState, concert_id: i64) {
    if let Err(e) = restore(app, concert_id, false).await {
        tracing::warn!(error = %e, concert_id, "room not rewritten after a new schedule; the reconcile will");
    }
    forget_summary(app, concert_id);
}

/// The public room summaries this process read lately, by concert.
#[derive(Default)]
pub struct Summaries(Mutex<HashMap<i64, (Instant, RoomSummary)>>);

fn forget_summary(app: &AppState, concert_id: i64) {
    if let Ok(mut map) = app.rooms.0.lock() {
        map.remove(&concert_id);
    }
}

/// The room part of the public concert page: at most about a second old (or,
/// while Redis cannot be read, the last one this process read, if any).
pub async fn summary(app: &AppState, concert_id: i64) -> Result<RoomSummary> {
    let cached = app
        .rooms
        .0
        .lock()
        .ok()
        .and_then(|map| map.get(&concert_id).cloned());
    if let Some((at, s)) = &cached
        && at.elapsed() < SUMMARY_TTL
    {
        return Ok(s.clone());
    }
    let view = match read_known(app, concert_id).await {
        Ok(view) => view,
        Err(e) => {
            return match cached {
                Some((_, stale)) => {
                    tracing::warn!(error = %e, concert_id, "room summary stale: Redis not answering");
                    Ok(stale)
                }
                None => Err(e),
            };
        }
    };
    let summary = RoomSummary {
        state: view.state,
        opens_at: view.opens_at,
        seats_left: view.seats_left,
    };
    if let Ok(mut map) = app.rooms.0.lock() {
        // Bounded by the concerts asked for; entries stay for the stale case.
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(concert_id, (Instant::now(), summary.clone()));
    }
    Ok(summary)
}

/// An admitting server's check that each room it ticked is Postgres's copy
/// (`versions`: concert -> (settings version, schedules) as Redis has them).
/// A hash that differs is written again: a change whose commit failed after
/// its Redis write, or a Redis restarted from an older snapshot.
pub async fn reconcile(app: &AppState, seen: &HashMap<i64, (i64, i64)>) -> Result<()> {
    if seen.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = seen.keys().copied().collect();
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT c.id, COALESCE(w.version, 0),
                (SELECT count(*) FROM concert_schedule s WHERE s.concert_id = c.id)
           FROM concert c LEFT JOIN waiting_room w ON w.concert_id = c.id
          WHERE c.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&app.pg)
    .deadline()
    .await?;
    for (concert_id, version, schedules) in rows {
        if seen.get(&concert_id) != Some(&(version, schedules)) {
            tracing::warn!(
                concert_id,
                "waiting room in Redis differs from Postgres; rewriting it"
            );
            restore(app, concert_id, true).await?;
        }
    }
    Ok(())
}

/// At start: every room an operator changed is written into Redis unless
/// Redis has it as new (say, the seed moved the demo's opening while no server
/// ran). Rooms nobody changed are written when first used.
pub async fn restore_changed(app: &AppState) -> Result<usize> {
    let ids: Vec<i64> = sqlx::query_scalar("SELECT concert_id FROM waiting_room")
        .fetch_all(&app.pg)
        .deadline()
        .await?;
    for &concert_id in &ids {
        restore(app, concert_id, false).await?;
    }
    Ok(ids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(json: &str) -> Result<RoomChange> {
        crate::http::extract::parse::<RoomPatch>(json.as_bytes())?.checked()
    }

    #[test]
    fn a_patch_is_checked_whole() {
        let c = patch(r#"{"admission_rate": 7, "max_active": 0, "paused": true}"#).unwrap();
        assert_eq!(c.admission_rate, Some(7));
        assert_eq!(c.max_active, Some(0));
        assert_eq!(c.paused, Some(true));
        assert_eq!(c.opens_at, None);
        assert_eq!(patch(r#"{"opens_at": null}"#).unwrap().opens_at, Some(None));
        assert_eq!(patch(r#"{"message": ""}"#).unwrap().message, Some(None));
        assert_eq!(patch(r#"{"message": null}"#).unwrap().message, Some(None));
        assert!(
            patch(r#"{"opens_at": "2030-01-01T10:00:00Z"}"#)
                .unwrap()
                .opens_at
                .unwrap()
                .is_some()
        );
        assert_eq!(patch("{}").unwrap(), RoomChange::default());
        for bad in [
            r#"{"admission_rate": 0}"#,
            r#"{"admission_rate": 100001}"#,
            r#"{"admission_rate": "5"}"#,
            r#"{"max_active": -1}"#,
            r#"{"max_active": 1000001}"#,
            r#"{"opens_at": "tomorrow"}"#,
            r#"{"paused": "yes"}"#,
            r#"{"admision_rate": 5}"#,
            r#"{"hold_ttl_secs": 0}"#,
            r#"{"max_holds_per_user": 101}"#,
            r#"{"active_ttl_secs": 5}"#,
            r#"{"waiting_idle_secs": 86401}"#,
        ] {
            assert_eq!(patch(bad).unwrap_err().code(), "invalid_request", "{bad}");
        }
        let long = format!(r#"{{"message": "{}"}}"#, "é".repeat(501));
        assert!(patch(&long).is_err());
        let fits = format!(r#"{{"message": "{}"}}"#, "é".repeat(500));
        assert!(patch(&fits).is_ok());
    }
}
