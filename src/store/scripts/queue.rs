//! The waiting room's scripts: join, poll, leave, the gate, the admission tick,
//! the lease that lets one server tick a group of concerts at a time and the
//! roll of servers that share the groups out.

use super::room::{RoomLive, Roomed, found};
use super::{Fields, KeyCount, Lua, Script, lua, one_int, shape};
use crate::error::{Error, Result};
use crate::limits::{Limit, Rate};
use crate::queue::{QueueStatus, QueueToken};
use crate::store::keys::{Keys, QueueKeys};
use fred::types::Value;

fn status(letter: &str, script: &str) -> Result<QueueStatus> {
    QueueStatus::from_letter(letter)
        .ok_or_else(|| Error::Internal(format!("{script}: status letter {letter:?}")))
}

/// Why a queue pass does not let a request through (checked in API.md's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// Unknown, or another user's.
    Invalid,
    /// Expired or already processed.
    Expired,
    /// Still waiting to be admitted.
    Waiting,
}

impl Denied {
    /// Reads the verdict of `lib.lua`'s `gate()`: `None` for `'ok'`.
    pub(super) fn from_verdict(verdict: &str, script: &str) -> Result<Option<Denied>> {
        match verdict {
            "ok" => Ok(None),
            "invalid" => Ok(Some(Denied::Invalid)),
            "expired" => Ok(Some(Denied::Expired)),
            "waiting" => Ok(Some(Denied::Waiting)),
            other => Err(Error::Internal(format!("{script}: gate verdict {other:?}"))),
        }
    }
}

/// `queue_join.lua`: makes the user's token in a concert's waiting room (in
/// the pre-queue before the room opens), or returns their live one.
pub struct Join<'a> {
    pub keys: &'a QueueKeys,
    pub concert_id: i64,
    /// A new token's random check ([`QueueToken::new_check`]).
    pub check: u64,
    pub user_id: i64,
    /// How long an ended record stays readable (a WAITING one also lives the
    /// room's idle window past its last poll).
    pub ended_retention_ms: u64,
    pub listed_marker_ms: u64,
    /// The new token's place among the pre-queue, if it joins one: random,
    /// secret, drawn by the service.
    pub prequeue_score: u64,
    /// The user's join rate limit (checked first).
    pub rate: Rate,
}

/// What a join found or made.
#[derive(Debug)]
pub struct Joined {
    /// A new token was made (else the user's live one is returned).
    pub created: bool,
    /// The token as the script names it, `seq#check`
    /// ([`QueueToken::from_name`] spells it).
    pub token: String,
    pub status: QueueStatus,
    /// 1-based while WAITING with a place (none in the open pre-queue).
    pub position: Option<i64>,
    /// In the open pre-queue: the place it can expect.
    pub expected_position: Option<i64>,
    /// When an ACTIVE token stops being valid (ms), else 0.
    pub expires_ms: i64,
    pub active: i64,
    /// The admission worker is not known to visit this queue: list it.
    pub needs_listing: bool,
    pub joined_ms: i64,
    /// A new token's place in the concert's arrival order (0 when not new).
    pub arrival: i64,
    pub room: RoomLive,
}

/// What a join may answer besides a token.
#[derive(Debug)]
pub enum JoinReply {
    Joined(Joined),
    /// No live token, and no seat left to sell: no new one.
    SoldOut,
    NoRoom,
    /// Over the user's join rate: nothing changed; retry after this many ms.
    Limited {
        wait_ms: i64,
    },
}

fn positive(v: i64) -> Option<i64> {
    (v > 0).then_some(v)
}

impl Script for Join<'_> {
    type Reply = JoinReply;

    fn lua() -> &'static Lua {
        lua!("queue_join.lua", KeyCount::Exactly(7))
    }

    fn keys(&self) -> Vec<String> {
        let q = self.keys;
        vec![
            q.waiting(),
            q.arrivals(),
            q.active(),
            q.listed(),
            q.room(),
            q.prequeue(),
            q.user_rate(Limit::Join.name(), self.user_id),
        ]
    }

    fn args(&self) -> Vec<String> {
        let [interval, burst] = self.rate.args();
        vec![
            self.check.to_string(),
            self.user_id.to_string(),
            self.ended_retention_ms.to_string(),
            self.listed_marker_ms.to_string(),
            self.keys.tag().to_owned(),
            self.prequeue_score.to_string(),
            interval,
            burst,
        ]
    }

    fn reply(value: Value) -> Result<JoinReply> {
        let mut r = Fields::new(value, "queue_join")?;
        match r.text()?.as_str() {
            "ok" => {}
            "soldout" => return Ok(JoinReply::SoldOut),
            "noroom" => return Ok(JoinReply::NoRoom),
            "limited" => return Ok(JoinReply::Limited { wait_ms: r.int()? }),
            other => return Err(Error::Internal(format!("queue_join: verdict {other:?}"))),
        }
        Ok(JoinReply::Joined(Joined {
            created: r.int()? == 1,
            token: r.text()?,
            status: status(&r.text()?, "queue_join")?,
            position: positive(r.int()?),
            expected_position: positive(r.int()?),
            expires_ms: r.int()?,
            active: r.int()?,
            needs_listing: r.int()? == 1,
            joined_ms: r.int()?,
            arrival: r.int()?,
            room: RoomLive::read(&mut r, "queue_join")?,
        }))
    }
}

/// `queue_status.lua`: the owner reads a token; a read of a WAITING token
/// counts as a poll.
pub struct Poll<'a> {
    pub keys: &'a QueueKeys,
    pub token: &'a QueueToken,
    pub user_id: i64,
    pub ended_retention_ms: u64,
    pub listed_marker_ms: u64,
    /// The user's poll rate limit (checked first).
    pub rate: Rate,
}

/// What a poll may answer.
#[derive(Debug)]
pub enum PollReply {
    Found(Roomed<Polled>),
    /// Unknown, or another user's.
    Unknown,
    /// Over the user's poll rate: nothing changed; retry after this many ms.
    Limited {
        wait_ms: i64,
    },
}

/// A token as its owner's poll found it.
#[derive(Debug)]
pub struct Polled {
    pub status: QueueStatus,
    /// 1-based while WAITING with a place (none in the open pre-queue).
    pub position: Option<i64>,
    /// In the open pre-queue: the place it can expect.
    pub expected_position: Option<i64>,
    /// When an ACTIVE token stops being valid (ms), else 0.
    pub expires_ms: i64,
    /// Live ACTIVE tokens (counted only while WAITING, else 0).
    pub active: i64,
    pub needs_listing: bool,
    pub room: RoomLive,
}

impl Script for Poll<'_> {
    type Reply = PollReply;

    fn lua() -> &'static Lua {
        lua!("queue_status.lua", KeyCount::Exactly(8))
    }

    fn keys(&self) -> Vec<String> {
        let q = self.keys;
        vec![
            q.token_ref(self.token),
            q.waiting(),
            q.active(),
            q.listed(),
            q.room(),
            q.prequeue(),
            q.arrivals(),
            q.user_rate(Limit::Poll.name(), self.user_id),
        ]
    }

    fn args(&self) -> Vec<String> {
        let [interval, burst] = self.rate.args();
        vec![
            self.user_id.to_string(),
            self.ended_retention_ms.to_string(),
            self.listed_marker_ms.to_string(),
            interval,
            burst,
        ]
    }

    fn reply(value: Value) -> Result<Self::Reply> {
        if value.is_null() {
            return Ok(PollReply::Unknown);
        }
        if let Value::Array(items) = &value
            && items.first().and_then(Value::as_str).as_deref() == Some("limited")
        {
            let mut r = Fields::new(value, "queue_status")?;
            r.text()?;
            return Ok(PollReply::Limited { wait_ms: r.int()? });
        }
        let Some(mut r) = found(value, "queue_status")? else {
            return Ok(PollReply::Found(Roomed::NoRoom));
        };
        Ok(PollReply::Found(Roomed::Found(Polled {
            status: status(&r.text()?, "queue_status")?,
            position: positive(r.int()?),
            expected_position: positive(r.int()?),
            expires_ms: r.int()?,
            active: r.int()?,
            needs_listing: r.int()? == 1,
            room: RoomLive::read(&mut r, "queue_status")?,
        })))
    }
}

/// `queue_gate.lua`: the queue pass of a gated request whose own work is not a
/// script (the caller compares the token's concert afterwards).
pub struct Gate<'a> {
    pub keys: &'a QueueKeys,
    pub token: &'a QueueToken,
    pub user_id: i64,
}

impl Script for Gate<'_> {
    /// `None`: the pass holds.
    type Reply = Option<Denied>;

    fn lua() -> &'static Lua {
        lua!("queue_gate.lua", KeyCount::Exactly(1))
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.token_ref(self.token)]
    }

    fn args(&self) -> Vec<String> {
        vec![self.user_id.to_string()]
    }

    fn reply(value: Value) -> Result<Option<Denied>> {
        let verdict = value
            .as_string()
            .ok_or_else(|| shape("queue_gate", &value))?;
        Denied::from_verdict(&verdict, "queue_gate")
    }
}

/// `queue_leave.lua`: the owner gives a token up; their pending holds in the
/// concert are released.
pub struct Leave<'a> {
    pub keys: &'a Keys,
    pub token: &'a QueueToken,
    pub user_id: i64,
    pub ended_retention_ms: u64,
}

/// What leaving did.
#[derive(Debug)]
pub struct Left {
    /// The status the token had.
    pub had: QueueStatus,
    pub holds_released: i64,
}

impl Script for Leave<'_> {
    /// `None`: unknown, or another user's.
    type Reply = Option<Left>;

    fn lua() -> &'static Lua {
        lua!("queue_leave.lua", KeyCount::Exactly(6))
    }

    fn keys(&self) -> Vec<String> {
        let q = self.keys.queue(self.token.concert_id);
        let b = self.keys.booking(self.token.concert_id);
        vec![
            q.token_ref(self.token),
            q.waiting(),
            q.active(),
            b.user_holds(self.user_id),
            q.room(),
            q.prequeue(),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.user_id.to_string(),
            self.ended_retention_ms.to_string(),
        ]
    }

    fn reply(value: Value) -> Result<Option<Left>> {
        if value.is_null() {
            return Ok(None);
        }
        let mut r = Fields::new(value, "queue_leave")?;
        Ok(Some(Left {
            had: status(&r.text()?, "queue_leave")?,
            holds_released: r.int()?,
        }))
    }
}

/// `queue_admit.lua`: one admission tick of one concert's waiting room.
pub struct Admit<'a> {
    pub keys: &'a QueueKeys,
    pub ended_retention_ms: u64,
    pub listed_marker_ms: u64,
}

/// What a tick did. Tokens come as `(token, user id)`, the token as the
/// script names it (`seq#check`: [`QueueToken::from_name`] spells it).
#[derive(Debug)]
pub struct Ticked {
    /// WAITING tokens: placed, and in pre-queues.
    pub waiting: i64,
    pub active: i64,
    pub admitted: Vec<(String, String)>,
    /// ACTIVE tokens that reached their end.
    pub expired: Vec<(String, String)>,
    /// WAITING tokens not polled for the idle window.
    pub dropped: Vec<(String, String)>,
    /// When this tick's admissions stop being valid (ms).
    pub admitted_until_ms: i64,
    /// The room settings' version the tick used, and the schedules it knew.
    pub version: i64,
    pub schedules: i64,
    /// Holds that had lapsed, tidied while counting seats.
    pub lapsed: i64,
    pub room: RoomLive,
}

impl Script for Admit<'_> {
    type Reply = Roomed<Ticked>;

    fn lua() -> &'static Lua {
        lua!("queue_admit.lua", KeyCount::Exactly(8))
    }

    fn keys(&self) -> Vec<String> {
        let q = self.keys;
        vec![
            q.waiting(),
            q.active(),
            q.bucket(),
            q.listed(),
            q.room(),
            q.prequeue(),
            q.arrivals(),
            q.scratch(),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.ended_retention_ms.to_string(),
            self.listed_marker_ms.to_string(),
            self.keys.tag().to_owned(),
        ]
    }

    fn reply(value: Value) -> Result<Self::Reply> {
        let Some(mut r) = found(value, "queue_admit")? else {
            return Ok(Roomed::NoRoom);
        };
        Ok(Roomed::Found(Ticked {
            waiting: r.int()?,
            active: r.int()?,
            admitted: r.pairs()?,
            expired: r.pairs()?,
            dropped: r.pairs()?,
            admitted_until_ms: r.int()?,
            version: r.int()?,
            schedules: r.int()?,
            lapsed: r.int()?,
            room: RoomLive::read(&mut r, "queue_admit")?,
        }))
    }
}

/// `queue_unlist.lua`: drops an empty queue's listed marker (the caller has
/// taken the concert off the worker's set first).
pub struct Unlist<'a> {
    pub keys: &'a QueueKeys,
}

impl Script for Unlist<'_> {
    /// `true` if unlisted; `false` if the queue is in use (list it back).
    type Reply = bool;

    fn lua() -> &'static Lua {
        lua!("queue_unlist.lua", KeyCount::Exactly(5))
    }

    fn keys(&self) -> Vec<String> {
        let q = self.keys;
        vec![q.waiting(), q.active(), q.listed(), q.prequeue(), q.room()]
    }

    fn args(&self) -> Vec<String> {
        Vec::new()
    }

    fn reply(value: Value) -> Result<bool> {
        Ok(one_int(value, "queue_unlist")? == 1)
    }
}

/// `lease.lua`: takes or renews the lease of one admission group.
pub struct Lease<'a> {
    pub keys: &'a Keys,
    /// The admission group (`keys::admission_group`).
    pub group: i64,
    /// This server's id.
    pub holder: &'a str,
    pub lease_ms: u64,
}

impl Script for Lease<'_> {
    /// The group's queued concerts if this server holds the lease now;
    /// `None` if another server does.
    type Reply = Option<Vec<i64>>;

    fn lua() -> &'static Lua {
        lua!("lease.lua", KeyCount::Exactly(2))
    }

    fn keys(&self) -> Vec<String> {
        vec![
            self.keys.admission_lease(self.group),
            self.keys.queued_concerts(self.group),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![self.holder.to_owned(), self.lease_ms.to_string()]
    }

    fn reply(value: Value) -> Result<Option<Vec<i64>>> {
        let mut f = Fields::new(value, "lease")?;
        Ok(match f.int()? {
            1 => Some(f.rest_ints()?),
            _ => None,
        })
    }
}

/// `lease_release.lua`: a server hands an admission group's lease back.
pub struct LeaseRelease<'a> {
    pub keys: &'a Keys,
    pub group: i64,
    pub holder: &'a str,
}

impl Script for LeaseRelease<'_> {
    /// Whether this server held it.
    type Reply = bool;

    fn lua() -> &'static Lua {
        lua!("lease_release.lua", KeyCount::Exactly(1))
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.admission_lease(self.group)]
    }

    fn args(&self) -> Vec<String> {
        vec![self.holder.to_owned()]
    }

    fn reply(value: Value) -> Result<bool> {
        Ok(one_int(value, "lease_release")? == 1)
    }
}

/// `admission_servers.lua`: says this server runs an admission worker, and
/// learns which others do.
pub struct AdmissionServers<'a> {
    pub keys: &'a Keys,
    /// This server's id.
    pub server: &'a str,
    /// How long the entry lives without renewal: a dead server's share is
    /// dealt out again this long after its last tick.
    pub ttl_ms: u64,
}

impl Script for AdmissionServers<'_> {
    /// The ids of the live servers (this one included), sorted.
    type Reply = Vec<String>;

    fn lua() -> &'static Lua {
        lua!("admission_servers.lua", KeyCount::Exactly(1))
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.admission_servers()]
    }

    fn args(&self) -> Vec<String> {
        vec![self.server.to_owned(), self.ttl_ms.to_string()]
    }

    fn reply(value: Value) -> Result<Vec<String>> {
        let Value::Array(items) = value else {
            return Err(shape("admission_servers", &value));
        };
        let mut ids = items
            .iter()
            .map(|v| v.as_string().ok_or_else(|| shape("admission_servers", v)))
            .collect::<Result<Vec<String>>>()?;
        ids.sort_unstable();
        Ok(ids)
    }
}
