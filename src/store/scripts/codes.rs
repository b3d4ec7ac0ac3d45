//! The one spelling of what the scripts store in Redis: the letters of a queue
//! token's status and of a hold's state, and the field names of the token and
//! reservation records.
//!
//! Rust reads them from here; the Lua scripts get them as named constants in
//! the prelude [`super::full_text`] generates (`WAITING`, `T_STATUS`, …), so
//! no script spells a letter itself (a test checks that none does).

use crate::booking::ReservationStatus;
use crate::queue::QueueStatus;

impl QueueStatus {
    /// The letter a token record's status field holds.
    pub const fn letter(self) -> &'static str {
        match self {
            QueueStatus::Waiting => "W",
            QueueStatus::Active => "A",
            QueueStatus::Expired => "X",
            QueueStatus::Processed => "P",
        }
    }

    pub fn from_letter(letter: &str) -> Option<Self> {
        [
            QueueStatus::Waiting,
            QueueStatus::Active,
            QueueStatus::Expired,
            QueueStatus::Processed,
        ]
        .into_iter()
        .find(|s| s.letter() == letter)
    }
}

impl ReservationStatus {
    /// The letter a reservation record's state field holds. A record reads
    /// PENDING only while its hold lasts; past it, the hold has lapsed.
    pub const fn letter(self) -> &'static str {
        match self {
            ReservationStatus::Pending => "P",
            ReservationStatus::Confirmed => "C",
            ReservationStatus::Canceled => "X",
        }
    }

    pub fn from_letter(letter: &str) -> Option<Self> {
        [
            ReservationStatus::Pending,
            ReservationStatus::Confirmed,
            ReservationStatus::Canceled,
        ]
        .into_iter()
        .find(|s| s.letter() == letter)
    }
}

/// Fields of a reservation's record (a hash).
pub mod reservation_field {
    pub const USER: &str = "u";
    pub const SCHEDULE: &str = "sc";
    /// The seat's index in its schedule (see `catalog::seats`).
    pub const INDEX: &str = "i";
    pub const SEAT_NO: &str = "n";
    pub const SEAT_ID: &str = "d";
    pub const PRICE: &str = "p";
    /// When the hold lapses (ms).
    pub const EXPIRES: &str = "e";
    pub const STATE: &str = "st";
    /// While a payment of it runs: when the payment's claim on the seat ends (ms).
    pub const PAYING: &str = "pay";
    /// The nonce of the latest payment that began.
    pub const NONCE: &str = "pn";
}

/// Fields of a waiting room's hash: the operator's settings (mirrored from
/// Postgres) and what the admission tick keeps there.
pub mod room_field {
    /// The settings' version in Postgres (`waiting_room.version`, 0 = defaults).
    pub const VERSION: &str = "v";
    /// How many schedules the concert had when the room was written.
    pub const NSCHED: &str = "ns";
    /// The schedules and their seats: `id:seats,id:seats`.
    pub const SCHEDULES: &str = "sched";
    /// Seats over all schedules.
    pub const TOTAL: &str = "total";
    pub const RATE: &str = "rate";
    /// Most live ACTIVE tokens (0 = no cap).
    pub const CAP: &str = "cap";
    /// How long an admitted token stays valid (ms).
    pub const ACTIVE_TTL: &str = "ttl";
    /// A WAITING token not polled for this long leaves (ms).
    pub const IDLE: &str = "idle";
    /// How long a hold lasts (ms).
    pub const HOLD_TTL: &str = "hold";
    pub const MAX_HOLDS: &str = "holds";
    /// When the pre-queue opens (ms; 0 = no opening set).
    pub const OPENS: &str = "opens";
    pub const PAUSED: &str = "paused";
    pub const MESSAGE: &str = "msg";
    /// Seats neither sold nor held, as last counted.
    pub const LEFT: &str = "left";
    /// Seats sold, as last counted.
    pub const SOLD: &str = "sold";
    /// Arrival numbers of the closed pre-queues still waiting (`b1,b2`).
    pub const SEGMENTS: &str = "segs";
    /// Present while the open pre-queue has tokens.
    pub const PREQUEUE: &str = "pq";
    /// What token answers show of the room, rendered when it changes.
    pub const VIEW: &str = "view";
}

/// A waiting room's state, as the scripts answer it (API.md's words).
pub mod room_state {
    pub const SOLD_OUT: &str = "SOLD_OUT";
    pub const PAUSED: &str = "PAUSED";
    pub const SCHEDULED: &str = "SCHEDULED";
    pub const OPEN: &str = "OPEN";
}

/// Every code, with the name the Lua scripts know it by.
pub const LUA_NAMES: &[(&str, &str)] = &[
    ("WAITING", QueueStatus::Waiting.letter()),
    ("ACTIVE", QueueStatus::Active.letter()),
    ("EXPIRED", QueueStatus::Expired.letter()),
    ("PROCESSED", QueueStatus::Processed.letter()),
    ("PENDING", ReservationStatus::Pending.letter()),
    ("CONFIRMED", ReservationStatus::Confirmed.letter()),
    ("CANCELED", ReservationStatus::Canceled.letter()),
    ("R_USER", reservation_field::USER),
    ("R_SCHEDULE", reservation_field::SCHEDULE),
    ("R_INDEX", reservation_field::INDEX),
    ("R_SEAT_NO", reservation_field::SEAT_NO),
    ("R_SEAT_ID", reservation_field::SEAT_ID),
    ("R_PRICE", reservation_field::PRICE),
    ("R_EXPIRES", reservation_field::EXPIRES),
    ("R_STATE", reservation_field::STATE),
    ("R_PAYING", reservation_field::PAYING),
    ("R_NONCE", reservation_field::NONCE),
    ("RM_VERSION", room_field::VERSION),
    ("RM_NSCHED", room_field::NSCHED),
    ("RM_SCHED", room_field::SCHEDULES),
    ("RM_TOTAL", room_field::TOTAL),
    ("RM_RATE", room_field::RATE),
    ("RM_CAP", room_field::CAP),
    ("RM_TTL", room_field::ACTIVE_TTL),
    ("RM_IDLE", room_field::IDLE),
    ("RM_HOLD", room_field::HOLD_TTL),
    ("RM_HOLDS", room_field::MAX_HOLDS),
    ("RM_OPENS", room_field::OPENS),
    ("RM_PAUSED", room_field::PAUSED),
    ("RM_MSG", room_field::MESSAGE),
    ("RM_LEFT", room_field::LEFT),
    ("RM_SOLD", room_field::SOLD),
    ("RM_SEGS", room_field::SEGMENTS),
    ("RM_PREQUEUE", room_field::PREQUEUE),
    ("RM_VIEW", room_field::VIEW),
    ("ROOM_SOLD_OUT", room_state::SOLD_OUT),
    ("ROOM_PAUSED", room_state::PAUSED),
    ("ROOM_SCHEDULED", room_state::SCHEDULED),
    ("ROOM_OPEN", room_state::OPEN),
];
