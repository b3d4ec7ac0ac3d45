//! Every Redis key boxoffice uses is spelled here. The one other place is
//! `lua/lib.lua`: scripts that release a hold found through a reservation
//! record build that hold's keys from the concert's tag, with the same
//! spellings (a test runs them in Redis and compares), and the queue scripts
//! build token records, the user index and poll marks from it (see
//! [`QueueKeys::waiting`]).
//!
//! All keys start with `REDIS_PREFIX`, so several deployments (or test runs) share
//! one Redis safely. Keys of one concert carry the hash tag `{c:<concert_id>}` so
//! that, on Redis Cluster, every script touching one concert lands on one slot.
//! Admission is shared out by groups of concerts ([`admission_group`]): a
//! group's lease and its set of queued concerts share the tag `{a:<group>}`, so
//! the script that takes the lease also reads the set; the groups spread over
//! the cluster's slots like the concerts do.

use crate::queue::QueueToken;

/// Token records per bucket hash (`REC_BUCKET` in `lua/lib.lua`): few enough
/// that a bucket stays a listpack, Redis's compact encoding.
pub const TOKEN_BUCKET: u64 = 128;

/// How many admission groups the concerts are dealt into. Each group has one
/// lease, so this bounds how many servers share the admission ticks; 16 spreads
/// evenly enough over 2, 3 or 4 servers (8/8; 6/5/5; 4 each).
pub const ADMISSION_GROUPS: i64 = 16;

/// The admission group of a concert: its id modulo [`ADMISSION_GROUPS`].
pub fn admission_group(concert_id: i64) -> i64 {
    concert_id.rem_euclid(ADMISSION_GROUPS)
}

/// Builds keys under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys {
            prefix: prefix.into(),
        }
    }

    /// The key the readiness probe's script writes and reads back.
    pub fn ready_probe(&self) -> String {
        format!("{}:ready", self.prefix)
    }

    /// The hash tag that pins a concert's keys to one cluster slot.
    pub fn concert_tag(&self, concert_id: i64) -> String {
        format!("{}:{{c:{concert_id}}}", self.prefix)
    }

    /// The keys of one concert's waiting room.
    pub fn queue(&self, concert_id: i64) -> QueueKeys {
        QueueKeys {
            tag: self.concert_tag(concert_id),
        }
    }

    /// The keys of one concert's seats, holds and reservations.
    pub fn booking(&self, concert_id: i64) -> BookingKeys {
        BookingKeys {
            tag: self.concert_tag(concert_id),
        }
    }

    /// The hash tag of one admission group's keys.
    fn group_tag(&self, group: i64) -> String {
        format!("{}:{{a:{group}}}", self.prefix)
    }

    /// The set of concerts of one admission group whose queues the admission
    /// worker visits (see [`admission_group`]).
    pub fn queued_concerts(&self, group: i64) -> String {
        format!("{}:queues", self.group_tag(group))
    }

    /// The lease that lets exactly one server admit the concerts of a group at
    /// a time. Same hash tag as the group's [`Keys::queued_concerts`].
    pub fn admission_lease(&self, group: i64) -> String {
        format!("{}:lease", self.group_tag(group))
    }

    /// Sorted set: the id of each server running an admission worker -> when
    /// it last said so (ms). The servers deal the groups out by their rank in
    /// it. One key, under a tag of its own.
    pub fn admission_servers(&self) -> String {
        format!("{}:{{a}}:servers", self.prefix)
    }

    /// A rate limit of one client address (`crate::limits`: `POST /users`).
    /// Its own key, checked on its own: no hash tag needed.
    pub fn address_rate(&self, subject: &str) -> String {
        format!("{}:rl:users:{subject}", self.prefix)
    }

    /// A rate limit of one user outside any concert's script (payments,
    /// charges), under the user's own hash tag.
    pub fn user_rate(&self, limit: &str, user_id: i64) -> String {
        format!("{}:{{u:{user_id}}}:rl:{limit}", self.prefix)
    }
}

/// Keys of one concert's waiting room, all under the concert's hash tag.
#[derive(Clone, Debug)]
pub struct QueueKeys {
    tag: String,
}

impl QueueKeys {
    /// Bitmap: bit `n` is set while the token of arrival number `n` waits,
    /// placed by arrival. `lua/lib.lua` keeps its count in all in
    /// [`QueueKeys::waiting_counts`] and its counts per block and group of
    /// arrival numbers in `<waiting>:c` (BITFIELD); the scripts also build
    /// the token records' buckets, the user index and the poll marks from the
    /// tag.
    pub fn waiting(&self) -> String {
        format!("{}:w", self.tag)
    }
    /// Hash: the waiting bitmap's counts (field `all`: all of them).
    pub fn waiting_counts(&self) -> String {
        format!("{}:w:n", self.tag)
    }
    /// Sorted set: ACTIVE token's arrival number -> the time it expires (ms).
    pub fn active(&self) -> String {
        format!("{}:active", self.tag)
    }
    /// Counter of arrivals: the order of the queue.
    pub fn arrivals(&self) -> String {
        format!("{}:arrivals", self.tag)
    }
    /// Marker: present while the admission worker visits this queue.
    pub fn listed(&self) -> String {
        format!("{}:listed", self.tag)
    }
    /// Hash: the admission token bucket.
    pub fn bucket(&self) -> String {
        format!("{}:bucket", self.tag)
    }
    /// A reference to a token's record, as a script's first key:
    /// `<tag>#<arrival number>#<check>` (`token_ref` in `lua/lib.lua`). Not a
    /// key itself: it carries the concert's hash tag, so Redis Cluster routes
    /// the script to the slot of the record it names.
    pub fn token_ref(&self, token: &QueueToken) -> String {
        format!("{}#{}#{}", self.tag, token.seq, token.check)
    }
    /// Where a token's record is: its bucket hash and its field, as
    /// `rec_key` in `lua/lib.lua` spells them (for tests and operators' tools;
    /// the service goes through [`QueueKeys::token_ref`]). The record is
    /// `status|user|check|joined ms|expires ms|admitted ms`.
    pub fn token_record(&self, token: &QueueToken) -> (String, String) {
        (
            format!("{}:q:{}", self.tag, token.seq / TOKEN_BUCKET),
            token.seq.to_string(),
        )
    }
    /// Hash: the waiting room (settings mirrored from Postgres, seat counts).
    pub fn room(&self) -> String {
        format!("{}:room", self.tag)
    }
    /// Sorted set: the open pre-queue, token -> the random score it drew.
    pub fn prequeue(&self) -> String {
        format!("{}:prequeue", self.tag)
    }
    /// Sorted set: a closed pre-queue waiting its turn at arrival number
    /// `base` (`lua/lib.lua` builds these from the tag too).
    pub fn segment(&self, base: i64) -> String {
        format!("{}:pq:{base}", self.tag)
    }
    /// Scratch key of a script that combines bitmaps (deleted by that script).
    pub fn scratch(&self) -> String {
        format!("{}:scratch", self.tag)
    }
    /// The concert's hash tag, the start of every key above.
    pub fn tag(&self) -> &str {
        &self.tag
    }
    /// A user's rate limit inside this concert's scripts (join, poll, hold):
    /// under the concert's tag, so the script that checks it touches one slot.
    pub fn user_rate(&self, limit: &str, user_id: i64) -> String {
        format!("{}:rl:{limit}:{user_id}", self.tag)
    }
}

/// Keys of one concert's seats, holds and reservations, all under the concert's
/// hash tag, so one script can check the queue pass and take a seat atomically.
///
/// Scripts that release holds found through a reservation record build the
/// hold keys themselves from [`BookingKeys::tag`], with the same names as
/// [`BookingKeys::hold`], [`BookingKeys::held`] and [`BookingKeys::held_bits`]
/// (see `lua/lib.lua`): the
/// keys are in the same slot, and a test that cancels and takes a seat again
/// fails if the two spellings ever part.
#[derive(Clone, Debug)]
pub struct BookingKeys {
    tag: String,
}

impl BookingKeys {
    /// The concert's hash tag, the start of every key below.
    pub fn tag(&self) -> &str {
        &self.tag
    }
    /// Marker: the run id of the Redis node whose SOLD bitmaps of this concert
    /// were rebuilt from Postgres. Gone (a flush) or naming another run (a
    /// restart without its data, a promoted replica) means "rebuild them now".
    /// In the concert's slot, so it lives and dies with the bitmaps it vouches
    /// for, on whichever master holds them.
    pub fn sold_rebuilt(&self) -> String {
        format!("{}:sold:rebuilt", self.tag)
    }
    /// The nonce of a rebuild in progress (one server at a time): the marker is
    /// set only if it is still there when the rebuild ends (no flush between).
    pub fn sold_rebuilding(&self) -> String {
        format!("{}:sold:rebuilding", self.tag)
    }
    /// Bitmap: bit `i` is set when the schedule's `i`-th seat (by seat_no) is SOLD.
    pub fn sold(&self, schedule_id: i64) -> String {
        format!("{}:s:{schedule_id}:sold", self.tag)
    }
    /// Sorted set: seat index -> when its hold expires (ms). The seat map's index
    /// of HELD seats; an entry past its score is stale and ignored.
    pub fn held(&self, schedule_id: i64) -> String {
        format!("{}:s:{schedule_id}:held", self.tag)
    }
    /// Bitmap: bit `i` is set while seat `i` is HELD (the seat map reads it as
    /// one value; the sorted set above says when each hold lapses).
    pub fn held_bits(&self, schedule_id: i64) -> String {
        format!("{}:s:{schedule_id}:heldbits", self.tag)
    }
    /// Scratch key of a script that combines bitmaps (deleted by that script).
    pub fn scratch(&self) -> String {
        format!("{}:scratch", self.tag)
    }
    /// The hold of one seat: `SET NX PXAT`, value = reservation id.
    pub fn hold(&self, schedule_id: i64, seat_index: usize) -> String {
        format!("{}:s:{schedule_id}:h:{seat_index}", self.tag)
    }
    /// Sorted set: the user's reservation ids in this concert -> hold expiry (ms).
    pub fn user_holds(&self, user_id: i64) -> String {
        format!("{}:uh:{user_id}", self.tag)
    }
    /// Hash: one reservation (owner, seat, price, expiry, state).
    pub fn reservation(&self, reservation_id: i64) -> String {
        format!("{}:r:{reservation_id}", self.tag)
    }
    /// The same concert's waiting-room keys (for the queue pass).
    pub fn queue(&self) -> QueueKeys {
        QueueKeys {
            tag: self.tag.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_the_concert_hash_tag() {
        let k = Keys::new("bo");
        assert_eq!(k.ready_probe(), "bo:ready");
        assert_eq!(k.user_rate("charge", 7), "bo:{u:7}:rl:charge");
        assert_eq!(k.address_rate("192.0.2.1"), "bo:rl:users:192.0.2.1");
        assert_eq!(k.concert_tag(42), "bo:{c:42}");
        let q = k.queue(42);
        for key in [
            q.waiting(),
            q.waiting_counts(),
            q.active(),
            q.arrivals(),
            q.bucket(),
            q.room(),
            q.prequeue(),
            q.segment(12),
            q.user_rate("join", 7),
        ] {
            assert!(key.starts_with("bo:{c:42}:"), "{key}");
        }
        assert_eq!(
            q.token_ref(&QueueToken::compose(42, 3, 4).unwrap()),
            "bo:{c:42}#3#4"
        );
        let b = k.booking(42);
        for key in [
            b.sold(3),
            b.held(3),
            b.held_bits(3),
            b.scratch(),
            b.hold(3, 0),
            b.user_holds(7),
            b.reservation(9),
        ] {
            assert!(key.starts_with("bo:{c:42}:"), "{key}");
        }
        // lua/lib.lua spells these two from the tag.
        assert_eq!(b.hold(3, 5), format!("{}:s:3:h:5", b.tag()));
        assert_eq!(b.held(3), format!("{}:s:3:held", b.tag()));
        assert_eq!(b.held_bits(3), format!("{}:s:3:heldbits", b.tag()));
        assert_eq!(b.reservation(9), format!("{}:r:9", b.tag()));
        assert_eq!(b.user_holds(7), format!("{}:uh:7", b.tag()));
    }

    #[test]
    fn a_group_lease_and_its_concerts_share_a_tag() {
        let k = Keys::new("bo");
        assert_eq!(k.admission_lease(3), "bo:{a:3}:lease");
        assert_eq!(k.queued_concerts(3), "bo:{a:3}:queues");
        assert_eq!(k.admission_servers(), "bo:{a}:servers");
        let slot = |key: String| fred::util::redis_keyslot(key.as_bytes());
        for g in 0..ADMISSION_GROUPS {
            assert_eq!(slot(k.admission_lease(g)), slot(k.queued_concerts(g)));
        }
        // The groups do not all sit on one slot (nor one master).
        let slots: std::collections::BTreeSet<u16> = (0..ADMISSION_GROUPS)
            .map(|g| slot(k.admission_lease(g)))
            .collect();
        assert!(slots.len() as i64 == ADMISSION_GROUPS, "{slots:?}");
        assert_eq!(admission_group(0), 0);
        assert_eq!(admission_group(17), 1);
        assert_eq!(admission_group(-1), ADMISSION_GROUPS - 1);
        // Consecutive concerts land in every group, each group once per
        // ADMISSION_GROUPS concerts.
        let groups: std::collections::BTreeSet<i64> =
            (1..=ADMISSION_GROUPS).map(admission_group).collect();
        assert_eq!(groups.len() as i64, ADMISSION_GROUPS);
    }
}
