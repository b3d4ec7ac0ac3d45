//! Queue tokens: UUIDs (version 4 layout) that carry their concert, their
//! arrival number and a random check.
//!
//! The 122 free bits are, from the top: the concert id (40 bits: the first five
//! bytes), the token's arrival number in its concert (40 bits) and a random
//! check (42 bits). So the server finds a token's concert, and the Redis slot
//! of its keys, from the token alone (a poll is one round trip to one slot,
//! even on Redis Cluster), and the script finds the token's record by its
//! arrival number (`lua/lib.lua`: records are fields of per-concert buckets,
//! not a key each). The check keeps tokens unguessable (2^42 per arrival
//! number), and a token is worth nothing without its owner's access token
//! anyway.

use uuid::Uuid;

/// The largest concert id a token can carry (2^40 - 1).
pub const MAX_CONCERT_ID: i64 = (1 << 40) - 1;
/// The largest arrival number a token can carry (2^40 - 1).
pub const MAX_SEQ: u64 = (1 << 40) - 1;
/// Checks are below this (2^42).
pub const CHECK_LIMIT: u64 = 1 << 42;

/// A well-formed queue token and what it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueToken {
    pub uuid: Uuid,
    pub concert_id: i64,
    /// Its place in the concert's arrival order (the Redis record's name).
    pub seq: u64,
    /// The random part the record must match.
    pub check: u64,
}

/// The 122 payload bits spread around the version nibble (bits 76..80) and the
/// variant bits (62..64) of a v4 UUID, and back.
fn spread(payload: u128) -> u128 {
    let high = (payload >> 74) << 80; // 48 bits
    let middle = ((payload >> 62) & 0xfff) << 64; // 12 bits
    let low = payload & ((1 << 62) - 1); // 62 bits
    high | (0x4 << 76) | middle | (0b10 << 62) | low
}

fn gather(bits: u128) -> u128 {
    ((bits >> 80) << 74) | (((bits >> 64) & 0xfff) << 62) | (bits & ((1 << 62) - 1))
}

impl QueueToken {
    /// The token of arrival number `seq` in `concert_id` with `check`; `None`
    /// when one of them does not fit.
    pub fn compose(concert_id: i64, seq: u64, check: u64) -> Option<Self> {
        if !(1..=MAX_CONCERT_ID).contains(&concert_id) || seq > MAX_SEQ || check >= CHECK_LIMIT {
            return None;
        }
        let payload = ((concert_id as u128) << 82) | ((seq as u128) << 42) | check as u128;
        let uuid = Uuid::from_u128(spread(payload));
        debug_assert_eq!(uuid.get_version_num(), 4);
        Some(QueueToken {
            uuid,
            concert_id,
            seq,
            check,
        })
    }

    /// A fresh random check for a new token.
    pub fn new_check() -> u64 {
        Uuid::new_v4().as_u64_pair().1 % CHECK_LIMIT
    }

    /// The token a script names as `seq#check` (see `token_name` in lib.lua).
    pub fn from_name(concert_id: i64, name: &str) -> Option<Self> {
        let (seq, check) = name.split_once('#')?;
        Self::compose(concert_id, seq.parse().ok()?, check.parse().ok()?)
    }

    /// Reads a token as a client sends it; `None` if it is not one of ours.
    pub fn parse(text: &str) -> Option<Self> {
        let uuid = Uuid::try_parse(text.trim()).ok()?;
        if uuid.get_version_num() != 4 || uuid.get_variant() != uuid::Variant::RFC4122 {
            return None;
        }
        let payload = gather(uuid.as_u128());
        let concert_id = (payload >> 82) as i64;
        let seq = ((payload >> 42) as u64) & MAX_SEQ;
        let check = (payload as u64) & (CHECK_LIMIT - 1);
        (concert_id >= 1).then_some(QueueToken {
            uuid,
            concert_id,
            seq,
            check,
        })
    }

    /// The canonical text: lowercase, hyphenated.
    pub fn text(&self) -> String {
        self.uuid.hyphenated().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_their_concert_arrival_and_check() {
        let a = QueueToken::compose(42, 7, QueueToken::new_check()).unwrap();
        let b = QueueToken::compose(42, 7, QueueToken::new_check()).unwrap();
        assert_ne!(a.uuid, b.uuid, "two checks, two tokens");
        assert_eq!(a.uuid.get_version_num(), 4);
        assert_eq!(QueueToken::parse(&a.text()), Some(a));
        assert_eq!(QueueToken::parse(&a.text().to_uppercase()), Some(a));
        for (concert, seq, check) in [
            (MAX_CONCERT_ID, MAX_SEQ, CHECK_LIMIT - 1),
            (1, 0, 0),
            (1 << 39, 1 << 39, 1 << 41),
            (123_456, 1_000_000, 99),
        ] {
            let t = QueueToken::compose(concert, seq, check).unwrap();
            let back = QueueToken::parse(&t.text()).unwrap();
            assert_eq!(
                (back.concert_id, back.seq, back.check),
                (concert, seq, check)
            );
            assert_eq!(
                QueueToken::from_name(concert, &format!("{seq}#{check}")),
                Some(t)
            );
        }
        // The concert is still the first five bytes (older readers agree).
        let t = QueueToken::compose(0x01_0203_0405, 5, 6).unwrap();
        assert_eq!(&t.uuid.as_bytes()[..5], &[1, 2, 3, 4, 5]);
        assert!(QueueToken::compose(0, 1, 1).is_none());
        assert!(QueueToken::compose(MAX_CONCERT_ID + 1, 1, 1).is_none());
        assert!(QueueToken::compose(1, MAX_SEQ + 1, 1).is_none());
        assert!(QueueToken::compose(1, 1, CHECK_LIMIT).is_none());
        assert!(QueueToken::new_check() < CHECK_LIMIT);
    }

    #[test]
    fn foreign_text_is_not_a_token() {
        assert!(QueueToken::parse("not-a-uuid").is_none());
        assert!(QueueToken::parse("").is_none());
        // A v7 UUID, and a v4 whose concert bits are zero.
        assert!(QueueToken::parse("017f22e2-79b0-7cc3-98c4-dc0c0c07398f").is_none());
        assert!(QueueToken::parse("00000000-00aa-4aaa-8aaa-aaaaaaaaaaaa").is_none());
        assert!(QueueToken::from_name(1, "12").is_none());
        assert!(QueueToken::from_name(1, "x#1").is_none());
    }
}
