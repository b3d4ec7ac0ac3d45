//! The waiting room's own scripts: writing its settings into its hash, and
//! reading it whole; and how every token answer's room part reads.

use super::{Fields, KeyCount, Lua, Script, lua, one_int};
use crate::error::{Error, Result};
use crate::store::keys::QueueKeys;
use fred::types::Value;

/// A waiting room's state (API.md's table, checked in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoomState {
    SoldOut,
    Paused,
    Scheduled,
    Open,
}

impl RoomState {
    pub const ALL: [RoomState; 4] = [
        RoomState::SoldOut,
        RoomState::Paused,
        RoomState::Scheduled,
        RoomState::Open,
    ];

    pub const fn word(self) -> &'static str {
        use super::codes::room_state as w;
        match self {
            RoomState::SoldOut => w::SOLD_OUT,
            RoomState::Paused => w::PAUSED,
            RoomState::Scheduled => w::SCHEDULED,
            RoomState::Open => w::OPEN,
        }
    }

    fn from_word(word: &str, script: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.word() == word)
            .ok_or_else(|| Error::Internal(format!("{script}: room state {word:?}")))
    }
}

/// The room as a script saw it, the part every token answer carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomLive {
    pub state: RoomState,
    /// When the pre-queue opens (ms), if an opening is set.
    pub opens_ms: Option<i64>,
    pub message: Option<String>,
    /// Seats neither sold nor held, as last counted; `None` before the first
    /// count or while the concert has no schedule.
    pub seats_left: Option<i64>,
    pub admission_rate: u32,
    /// 0: no cap.
    pub max_active: u32,
    pub active_ttl_ms: u64,
}

impl RoomLive {
    /// Reads the room view `lib.lua`'s `render_view` keeps:
    /// `state|opens ms|seats left|rate|cap|active ttl ms|message`.
    pub(super) fn read(r: &mut Fields, script: &'static str) -> Result<RoomLive> {
        let view = r.text()?;
        let bad = || Error::Internal(format!("{script}: room view {view:?}"));
        let mut parts = view.splitn(7, '|');
        let mut next = || parts.next().ok_or_else(bad);
        let state = RoomState::from_word(next()?, script)?;
        let number = |s: &str| s.parse::<i64>().map_err(|_| bad());
        let opens = number(next()?)?;
        let left = number(next()?)?;
        let setting = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let admission_rate = setting(next()?)?;
        let max_active = setting(next()?)?;
        let active_ttl_ms = u64::from(setting(next()?)?);
        let message = next()?;
        Ok(RoomLive {
            state,
            opens_ms: (opens > 0).then_some(opens),
            message: (!message.is_empty()).then(|| message.to_owned()),
            seats_left: (left >= 0).then_some(left),
            admission_rate,
            max_active,
            active_ttl_ms,
        })
    }
}

/// A reply that may say the room is missing from Redis (a flush, a restart):
/// the service restores it from Postgres and runs the script again.
#[derive(Debug)]
pub enum Roomed<T> {
    Found(T),
    NoRoom,
}

/// Reads the first item of a reply; `None` when it says 'noroom'.
pub(super) fn found(value: Value, script: &'static str) -> Result<Option<Fields>> {
    let mut r = Fields::new(value, script)?;
    match r.text()?.as_str() {
        "ok" => Ok(Some(r)),
        "noroom" => Ok(None),
        other => Err(Error::Internal(format!("{script}: verdict {other:?}"))),
    }
}

/// The settings of a room, as `room_set.lua` writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSettingsMs {
    pub admission_rate: u32,
    pub max_active: u32,
    pub active_ttl_ms: u64,
    pub waiting_idle_ms: u64,
    pub hold_ttl_ms: u64,
    pub max_holds_per_user: u32,
    pub opens_ms: Option<i64>,
    pub paused: bool,
    pub message: Option<String>,
}

/// `room_set.lua`: writes a room's settings unless the hash has a newer copy.
pub struct RoomSet<'a> {
    pub keys: &'a QueueKeys,
    /// The settings' version in Postgres (0: the defaults).
    pub version: i64,
    /// The concert's schedules and their seat counts.
    pub schedules: &'a [(i64, i64)],
    pub settings: &'a RoomSettingsMs,
    /// Write whatever the hash holds.
    pub force: bool,
}

impl Script for RoomSet<'_> {
    /// Whether it was written.
    type Reply = bool;

    fn lua() -> &'static Lua {
        lua!("room_set.lua", KeyCount::Exactly(1))
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.room()]
    }

    fn args(&self) -> Vec<String> {
        let s = self.settings;
        let schedules: Vec<String> = self
            .schedules
            .iter()
            .map(|(id, seats)| format!("{id}:{seats}"))
            .collect();
        let total: i64 = self.schedules.iter().map(|(_, seats)| seats).sum();
        vec![
            self.version.to_string(),
            self.schedules.len().to_string(),
            if self.force { "1" } else { "0" }.to_owned(),
            s.admission_rate.to_string(),
            s.max_active.to_string(),
            s.active_ttl_ms.to_string(),
            s.waiting_idle_ms.to_string(),
            s.hold_ttl_ms.to_string(),
            s.max_holds_per_user.to_string(),
            s.opens_ms.unwrap_or(0).to_string(),
            if s.paused { "1" } else { "0" }.to_owned(),
            s.message.clone().unwrap_or_default(),
            schedules.join(","),
            total.to_string(),
        ]
    }

    fn reply(value: Value) -> Result<bool> {
        Ok(one_int(value, "room_set")? == 1)
    }
}

/// `room_read.lua`: the room whole, its seats counted now.
pub struct RoomRead<'a> {
    pub keys: &'a QueueKeys,
}

/// A room as its operator sees it.
#[derive(Clone, Debug)]
pub struct RoomRecord {
    pub version: i64,
    pub schedules: i64,
    /// WAITING tokens: placed, in closed pre-queues, and in the open one.
    pub waiting: i64,
    /// Live ACTIVE tokens.
    pub active: i64,
    pub waiting_idle_ms: u64,
    pub hold_ttl_ms: u64,
    pub max_holds_per_user: u32,
    pub paused: bool,
    pub lapsed: i64,
    pub live: RoomLive,
}

impl Script for RoomRead<'_> {
    type Reply = Roomed<RoomRecord>;

    fn lua() -> &'static Lua {
        lua!("room_read.lua", KeyCount::Exactly(5))
    }

    fn keys(&self) -> Vec<String> {
        let q = self.keys;
        vec![q.room(), q.waiting(), q.prequeue(), q.active(), q.scratch()]
    }

    fn args(&self) -> Vec<String> {
        vec![self.keys.tag().to_owned()]
    }

    fn reply(value: Value) -> Result<Self::Reply> {
        let Some(mut r) = found(value, "room_read")? else {
            return Ok(Roomed::NoRoom);
        };
        let unsigned = |v: i64| {
            u64::try_from(v).map_err(|_| Error::Internal(format!("room_read: setting {v}")))
        };
        Ok(Roomed::Found(RoomRecord {
            version: r.int()?,
            schedules: r.int()?,
            waiting: r.int()?,
            active: r.int()?,
            waiting_idle_ms: unsigned(r.int()?)?,
            hold_ttl_ms: unsigned(r.int()?)?,
            max_holds_per_user: unsigned(r.int()?)? as u32,
            paused: r.int()? == 1,
            lapsed: r.int()?,
            live: RoomLive::read(&mut r, "room_read")?,
        }))
    }
}
