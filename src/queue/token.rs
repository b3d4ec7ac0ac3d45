//! Queue tokens: UUIDs (version 4 layout) that carry their concert.
//!
//! The first 40 bits are the concert id, the other 82 free bits are random. So
//! the server finds a token's concert, and the Redis slot of its keys, from the
//! token alone: a poll is one round trip to one slot, even on Redis Cluster.
//! 82 random bits keep tokens unguessable, and a token is worth nothing without
//! its owner's access token anyway.

use uuid::Uuid;

/// The largest concert id a token can carry (2^40 - 1).
pub const MAX_CONCERT_ID: i64 = (1 << 40) - 1;

/// A well-formed queue token and the concert it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueToken {
    pub uuid: Uuid,
    pub concert_id: i64,
}

impl QueueToken {
    /// A new random token for `concert_id`; `None` past [`MAX_CONCERT_ID`].
    pub fn new(concert_id: i64) -> Option<Self> {
        if !(1..=MAX_CONCERT_ID).contains(&concert_id) {
            return None;
        }
        let mut bytes = *Uuid::new_v4().as_bytes();
        bytes[..5].copy_from_slice(&concert_id.to_be_bytes()[3..]);
        let uuid = Uuid::from_bytes(bytes);
        debug_assert_eq!(uuid.get_version_num(), 4);
        Some(QueueToken { uuid, concert_id })
    }

    /// Reads a token as a client sends it; `None` if it is not one of ours.
    pub fn parse(text: &str) -> Option<Self> {
        let uuid = Uuid::try_parse(text.trim()).ok()?;
        if uuid.get_version_num() != 4 {
            return None;
        }
        let b = uuid.as_bytes();
        let mut id = [0u8; 8];
        id[3..].copy_from_slice(&b[..5]);
        let concert_id = i64::from_be_bytes(id);
        (concert_id >= 1).then_some(QueueToken { uuid, concert_id })
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
    fn tokens_carry_their_concert_and_stay_random() {
        let a = QueueToken::new(42).unwrap();
        let b = QueueToken::new(42).unwrap();
        assert_ne!(a.uuid, b.uuid);
        assert_eq!(a.uuid.get_version_num(), 4);
        assert_eq!(QueueToken::parse(&a.text()), Some(a));
        assert_eq!(QueueToken::parse(&a.text().to_uppercase()), Some(a));
        let max = QueueToken::new(MAX_CONCERT_ID).unwrap();
        assert_eq!(
            QueueToken::parse(&max.text()).unwrap().concert_id,
            MAX_CONCERT_ID
        );
        assert!(QueueToken::new(0).is_none());
        assert!(QueueToken::new(MAX_CONCERT_ID + 1).is_none());
    }

    #[test]
    fn foreign_text_is_not_a_token() {
        assert!(QueueToken::parse("not-a-uuid").is_none());
        assert!(QueueToken::parse("").is_none());
        // A v7 UUID, and a v4 whose concert bits are zero.
        assert!(QueueToken::parse("017f22e2-79b0-7cc3-98c4-dc0c0c07398f").is_none());
        assert!(QueueToken::parse("00000000-00aa-4aaa-8aaa-aaaaaaaaaaaa").is_none());
    }
}
