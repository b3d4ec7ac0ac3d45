//! The booking scripts: the seat map and availability, holds and cancels, the
//! steps of a payment, and the SOLD rebuild from Postgres.
//!
//! The gated ones (seat map, availability, hold, payment start) check the queue
//! pass inside the same script, so each is one round trip; their reply says
//! [`Denied`] when the pass fails.

use super::queue::Denied;
use super::{Fields, KeyCount, Lua, Script, lua, one_int, shape};
use crate::error::{Error, Result};
use crate::limits::{Limit, Rate};
use crate::queue::QueueToken;
use crate::store::keys::BookingKeys;
use fred::types::Value;

/// Reads the first item of a gated script's reply: the gate's verdict.
fn gated(value: Value, script: &'static str) -> Result<Result<Fields, Denied>> {
    let mut r = Fields::new(value, script)?;
    match Denied::from_verdict(&r.text()?, script)? {
        None => Ok(Ok(r)),
        Some(denied) => Ok(Err(denied)),
    }
}

/// `seat_map.lua`: the live state of one schedule's seats, behind the pass.
pub struct SeatMap<'a> {
    pub keys: &'a BookingKeys,
    pub token: &'a QueueToken,
    pub user_id: i64,
    pub schedule_id: i64,
}

/// The SOLD and HELD bitmaps of a schedule (bit `i`: the seat of index `i`).
#[derive(Debug)]
pub struct SeatBits {
    pub sold: fred::bytes::Bytes,
    pub held: fred::bytes::Bytes,
    /// Holds that had lapsed, tidied by this read.
    pub lapsed: i64,
}

impl Script for SeatMap<'_> {
    type Reply = Result<SeatBits, Denied>;

    fn lua() -> &'static Lua {
        lua!("seat_map.lua", KeyCount::Exactly(4))
    }

    fn keys(&self) -> Vec<String> {
        let (b, s) = (self.keys, self.schedule_id);
        vec![
            b.queue().token_ref(self.token),
            b.sold(s),
            b.held(s),
            b.held_bits(s),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![self.user_id.to_string()]
    }

    fn reply(value: Value) -> Result<Self::Reply> {
        Ok(match gated(value, "seat_map")? {
            Ok(mut r) => Ok(SeatBits {
                sold: r.bytes()?,
                held: r.bytes()?,
                lapsed: r.int()?,
            }),
            Err(denied) => Err(denied),
        })
    }
}

/// `availability.lua`: per schedule of a concert, how many seats are sold or
/// held, behind the pass.
pub struct Availability<'a> {
    pub keys: &'a BookingKeys,
    pub token: &'a QueueToken,
    pub user_id: i64,
    pub schedule_ids: &'a [i64],
}

#[derive(Debug)]
pub struct Taken {
    /// Per schedule, in the order asked: seats sold or held.
    pub taken: Vec<i64>,
    pub lapsed: i64,
}

impl Script for Availability<'_> {
    type Reply = Result<Taken, Denied>;

    fn lua() -> &'static Lua {
        lua!(
            "availability.lua",
            KeyCount::Repeating { fixed: 2, each: 3 }
        )
    }

    fn keys(&self) -> Vec<String> {
        let b = self.keys;
        let mut keys = Vec::with_capacity(2 + 3 * self.schedule_ids.len());
        keys.push(b.queue().token_ref(self.token));
        keys.push(b.scratch());
        for &s in self.schedule_ids {
            keys.push(b.sold(s));
            keys.push(b.held(s));
            keys.push(b.held_bits(s));
        }
        keys
    }

    fn args(&self) -> Vec<String> {
        vec![self.user_id.to_string()]
    }

    fn reply(value: Value) -> Result<Self::Reply> {
        Ok(match gated(value, "availability")? {
            Ok(mut r) => Ok(Taken {
                lapsed: r.int()?,
                taken: r.rest_ints()?,
            }),
            Err(denied) => Err(denied),
        })
    }
}

/// `hold.lua`: takes a seat for a user (the pass, then the seat, then the
/// user's limit), with `SET NX PXAT`.
pub struct Hold<'a> {
    pub keys: &'a BookingKeys,
    pub token: &'a QueueToken,
    pub user_id: i64,
    pub schedule_id: i64,
    pub seat_index: usize,
    pub seat_no: i32,
    pub seat_id: i64,
    pub price: i64,
    pub reservation_id: i64,
    /// How long the reservation record outlives the hold. (The hold's own
    /// length and the user's limit are the room's, read by the script.)
    pub record_retention_ms: u64,
    /// The user's hold rate limit (checked first).
    pub rate: Rate,
}

#[derive(Debug, PartialEq, Eq)]
pub enum HoldVerdict {
    /// Held until this moment (ms).
    Held {
        expires_ms: i64,
    },
    /// Sold or held by someone.
    Taken,
    /// The user holds the room's limit of seats already.
    LimitReached {
        limit: i64,
    },
    Gate(Denied),
    /// Redis has no room for the concert: restore it, and try again.
    NoRoom,
    /// Over the user's hold rate: nothing changed; retry after this many ms.
    Limited {
        wait_ms: i64,
    },
}

#[derive(Debug)]
pub struct HoldReply {
    pub verdict: HoldVerdict,
    /// Holds that had lapsed, tidied by this call.
    pub lapsed: i64,
}

impl Script for Hold<'_> {
    type Reply = HoldReply;

    fn lua() -> &'static Lua {
        lua!("hold.lua", KeyCount::Exactly(9))
    }

    fn keys(&self) -> Vec<String> {
        let (b, s) = (self.keys, self.schedule_id);
        vec![
            b.queue().token_ref(self.token),
            b.sold(s),
            b.held(s),
            b.hold(s, self.seat_index),
            b.user_holds(self.user_id),
            b.reservation(self.reservation_id),
            b.held_bits(s),
            b.queue().room(),
            b.queue().user_rate(Limit::Hold.name(), self.user_id),
        ]
    }

    fn args(&self) -> Vec<String> {
        let [interval, burst] = self.rate.args();
        vec![
            self.user_id.to_string(),
            self.seat_index.to_string(),
            self.reservation_id.to_string(),
            self.record_retention_ms.to_string(),
            self.schedule_id.to_string(),
            self.seat_no.to_string(),
            self.seat_id.to_string(),
            self.price.to_string(),
            interval,
            burst,
        ]
    }

    fn reply(value: Value) -> Result<HoldReply> {
        let mut r = Fields::new(value, "hold")?;
        let verdict = r.text()?;
        let expires_ms = r.int()?;
        let lapsed = r.int()?;
        let verdict = match verdict.as_str() {
            "ok" => HoldVerdict::Held { expires_ms },
            "taken" => HoldVerdict::Taken,
            "limit" => HoldVerdict::LimitReached { limit: expires_ms },
            "noroom" => HoldVerdict::NoRoom,
            "limited" => HoldVerdict::Limited {
                wait_ms: expires_ms,
            },
            gate => match Denied::from_verdict(gate, "hold")? {
                Some(denied) => HoldVerdict::Gate(denied),
                None => return Err(Error::Internal("hold: 'ok' read twice".into())),
            },
        };
        Ok(HoldReply { verdict, lapsed })
    }
}

/// `cancel.lua`: the owner releases a PENDING hold.
pub struct Cancel<'a> {
    pub keys: &'a BookingKeys,
    pub user_id: i64,
    pub reservation_id: i64,
    /// Cancel although a payment of it began and its claim ended (the caller
    /// saw that Postgres has no sale of it).
    pub force: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CancelVerdict {
    /// Unknown in Redis, or another user's.
    Missing,
    Confirmed,
    /// A payment of it is in flight.
    Paying,
    /// A payment began and its claim ended: whether it committed is
    /// Postgres's to say.
    Check,
    /// A live hold was freed.
    Released,
    /// It had lapsed or was cancelled already.
    AlreadyEnded,
}

impl Script for Cancel<'_> {
    type Reply = CancelVerdict;

    fn lua() -> &'static Lua {
        lua!("cancel.lua", KeyCount::Exactly(2))
    }

    fn keys(&self) -> Vec<String> {
        vec![
            self.keys.reservation(self.reservation_id),
            self.keys.user_holds(self.user_id),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.user_id.to_string(),
            self.reservation_id.to_string(),
            self.keys.tag().to_owned(),
            if self.force { "1" } else { "0" }.to_owned(),
        ]
    }

    fn reply(value: Value) -> Result<CancelVerdict> {
        let verdict = value.as_string().ok_or_else(|| shape("cancel", &value))?;
        Ok(match verdict.as_str() {
            "missing" => CancelVerdict::Missing,
            "confirmed" => CancelVerdict::Confirmed,
            "paying" => CancelVerdict::Paying,
            "check" => CancelVerdict::Check,
            "released" => CancelVerdict::Released,
            "ok" => CancelVerdict::AlreadyEnded,
            other => return Err(Error::Internal(format!("cancel: verdict {other:?}"))),
        })
    }
}

/// `pay_begin.lua`: a payment starts; the seat's claim is extended by the
/// payment's grace.
pub struct PayBegin<'a> {
    pub keys: &'a BookingKeys,
    pub token: &'a QueueToken,
    pub user_id: i64,
    pub reservation_id: i64,
    pub grace_ms: u64,
    /// This payment's nonce: only the latest payment's failure undoes the claim.
    pub nonce: &'a str,
}

/// The hold a payment pays for, as the reservation record has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldSeat {
    pub schedule_id: i64,
    pub seat_index: usize,
    pub seat_no: i64,
    pub seat_id: i64,
    pub price: i64,
    pub expires_ms: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PayBeginVerdict {
    /// Not in Redis, or another user's.
    Missing,
    Gate(Denied),
    AlreadyPaid,
    /// The hold lapsed, was cancelled or lost its seat.
    Lapsed,
    Begun(HeldSeat),
}

impl Script for PayBegin<'_> {
    type Reply = PayBeginVerdict;

    fn lua() -> &'static Lua {
        lua!("pay_begin.lua", KeyCount::Exactly(2))
    }

    fn keys(&self) -> Vec<String> {
        vec![
            self.keys.queue().token_ref(self.token),
            self.keys.reservation(self.reservation_id),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.user_id.to_string(),
            self.reservation_id.to_string(),
            self.grace_ms.to_string(),
            self.keys.tag().to_owned(),
            self.nonce.to_owned(),
        ]
    }

    fn reply(value: Value) -> Result<PayBeginVerdict> {
        let mut r = Fields::new(value, "pay_begin")?;
        Ok(match r.text()?.as_str() {
            "missing" => PayBeginVerdict::Missing,
            "paid" => PayBeginVerdict::AlreadyPaid,
            "lapsed" => PayBeginVerdict::Lapsed,
            "ok" => PayBeginVerdict::Begun(HeldSeat {
                schedule_id: r.int()?,
                seat_index: usize::try_from(r.int()?)
                    .map_err(|_| Error::Internal("pay_begin: negative seat index".into()))?,
                seat_no: r.int()?,
                seat_id: r.int()?,
                price: r.int()?,
                expires_ms: r.int()?,
            }),
            gate => match Denied::from_verdict(gate, "pay_begin")? {
                Some(denied) => PayBeginVerdict::Gate(denied),
                None => return Err(Error::Internal("pay_begin: 'ok' read twice".into())),
            },
        })
    }
}

/// `pay_abort.lua`: a payment failed and wrote nothing; the seat's claim goes
/// back to the hold's own expiry (unless a later payment began since).
pub struct PayAbort<'a> {
    pub keys: &'a BookingKeys,
    pub reservation_id: i64,
    pub nonce: &'a str,
}

impl Script for PayAbort<'_> {
    /// Whether the claim was put back.
    type Reply = bool;

    fn lua() -> &'static Lua {
        lua!("pay_abort.lua", KeyCount::Exactly(1))
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.reservation(self.reservation_id)]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.reservation_id.to_string(),
            self.keys.tag().to_owned(),
            self.nonce.to_owned(),
        ]
    }

    fn reply(value: Value) -> Result<bool> {
        Ok(one_int(value, "pay_abort")? == 1)
    }
}

/// `pay_finish.lua`: a payment committed; the seat becomes SOLD, and the queue
/// token PROCESSED when the user has no pending hold left in the concert.
pub struct PayFinish<'a> {
    pub keys: &'a BookingKeys,
    pub token: &'a QueueToken,
    pub user_id: i64,
    pub reservation_id: i64,
    pub seat: &'a HeldSeat,
    pub ended_retention_ms: u64,
}

impl Script for PayFinish<'_> {
    /// Whether the token became PROCESSED.
    type Reply = bool;

    fn lua() -> &'static Lua {
        lua!("pay_finish.lua", KeyCount::Exactly(8))
    }

    fn keys(&self) -> Vec<String> {
        let (b, s) = (self.keys, self.seat.schedule_id);
        let q = b.queue();
        vec![
            b.reservation(self.reservation_id),
            b.sold(s),
            b.held(s),
            b.hold(s, self.seat.seat_index),
            b.user_holds(self.user_id),
            q.token_ref(self.token),
            q.active(),
            b.held_bits(s),
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.reservation_id.to_string(),
            self.seat.seat_index.to_string(),
            self.user_id.to_string(),
            self.ended_retention_ms.to_string(),
        ]
    }

    fn reply(value: Value) -> Result<bool> {
        Ok(one_int(value, "pay_finish")? == 1)
    }
}

/// A sale as the SOLD rebuild marks it.
#[derive(Clone, Copy, Debug)]
pub struct Sale {
    pub seat_index: i64,
    pub reservation_id: i64,
}

/// `sold_mark.lua`: marks sales SOLD in a schedule's bitmap, from Postgres.
pub struct SoldMark<'a> {
    pub keys: &'a BookingKeys,
    pub schedule_id: i64,
    pub sales: &'a [Sale],
}

impl Script for SoldMark<'_> {
    /// How many seats were not marked yet.
    type Reply = i64;

    fn lua() -> &'static Lua {
        lua!("sold_mark.lua", KeyCount::Exactly(3))
    }

    fn keys(&self) -> Vec<String> {
        let (b, s) = (self.keys, self.schedule_id);
        vec![b.sold(s), b.held(s), b.held_bits(s)]
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(2 + 2 * self.sales.len());
        args.push(self.keys.tag().to_owned());
        args.push(self.schedule_id.to_string());
        for sale in self.sales {
            args.push(sale.seat_index.to_string());
            args.push(sale.reservation_id.to_string());
        }
        args
    }

    fn reply(value: Value) -> Result<i64> {
        one_int(value, "sold_mark")
    }
}

/// What `sold_check.lua` found for a concert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoldCheckVerdict {
    /// The marker names the node's running Redis: nothing to do.
    Current,
    /// The rebuild is this server's (its nonce taken): rebuild now.
    Rebuild,
    /// Another server is rebuilding the concert.
    Busy,
}

/// `sold_check.lua`: whether a concert's SOLD seats must be rebuilt on the node
/// that holds them, taking the rebuild if so.
pub struct SoldCheck<'a> {
    pub keys: &'a BookingKeys,
    pub nonce: &'a str,
    pub nonce_ttl: std::time::Duration,
    /// Rebuild whatever the marker says.
    pub force: bool,
}

impl Script for SoldCheck<'_> {
    type Reply = SoldCheckVerdict;

    fn lua() -> &'static Lua {
        lua!("sold_check.lua", KeyCount::Exactly(2))
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.sold_rebuilt(), self.keys.sold_rebuilding()]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.nonce.to_owned(),
            self.nonce_ttl.as_millis().max(1).to_string(),
            if self.force { "1" } else { "0" }.to_owned(),
        ]
    }

    fn reply(value: Value) -> Result<SoldCheckVerdict> {
        match value.as_str().as_deref() {
            Some("current") => Ok(SoldCheckVerdict::Current),
            Some("rebuild") => Ok(SoldCheckVerdict::Rebuild),
            Some("busy") => Ok(SoldCheckVerdict::Busy),
            _ => Err(shape("sold_check", &value)),
        }
    }
}

/// `sold_rebuilt.lua`: a concert's SOLD rebuild ended; its marker names the
/// node's running Redis if no flush fell in between.
pub struct SoldRebuilt<'a> {
    pub keys: &'a BookingKeys,
    pub nonce: &'a str,
}

impl Script for SoldRebuilt<'_> {
    /// Whether the marker was set.
    type Reply = bool;

    fn lua() -> &'static Lua {
        lua!("sold_rebuilt.lua", KeyCount::Exactly(2))
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.sold_rebuilding(), self.keys.sold_rebuilt()]
    }

    fn args(&self) -> Vec<String> {
        vec![self.nonce.to_owned()]
    }

    fn reply(value: Value) -> Result<bool> {
        Ok(one_int(value, "sold_rebuilt")? == 1)
    }
}

/// A reservation's record as Redis keeps it (read with one `HMGET`, not a
/// script: see [`Redis::reservation_record`](crate::store::Redis::reservation_record)).
#[derive(Clone, Debug)]
pub struct ReservationRecord {
    pub user_id: i64,
    pub schedule_id: i64,
    pub seat_no: i64,
    pub seat_id: i64,
    pub price: i64,
    pub expires_ms: i64,
    pub state: crate::booking::ReservationStatus,
    /// A payment of it began (it may have committed without Redis hearing).
    pub payment_began: bool,
}

impl ReservationRecord {
    /// The fields read, in the order [`ReservationRecord::from_fields`] takes them.
    pub const FIELDS: [&'static str; 8] = {
        use super::codes::reservation_field as f;
        [
            f::USER,
            f::SCHEDULE,
            f::SEAT_NO,
            f::SEAT_ID,
            f::PRICE,
            f::EXPIRES,
            f::STATE,
            f::PAYING,
        ]
    };

    /// `None` when the record does not exist.
    pub fn from_fields(id: i64, fields: &[Option<String>]) -> Result<Option<Self>> {
        if fields.first().is_none_or(|u| u.is_none()) {
            return Ok(None);
        }
        let bad = |what: &str| Error::Internal(format!("reservation record {id}: {what}"));
        let num = |i: usize| -> Result<i64> {
            fields
                .get(i)
                .and_then(|f| f.as_deref())
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad(Self::FIELDS[i]))
        };
        let state = fields
            .get(6)
            .and_then(|f| f.as_deref())
            .and_then(crate::booking::ReservationStatus::from_letter)
            .ok_or_else(|| bad("state"))?;
        Ok(Some(ReservationRecord {
            user_id: num(0)?,
            schedule_id: num(1)?,
            seat_no: num(2)?,
            seat_id: num(3)?,
            price: num(4)?,
            expires_ms: num(5)?,
            state,
            payment_began: fields.get(7).is_some_and(|f| f.is_some()),
        }))
    }
}
