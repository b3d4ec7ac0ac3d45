//! Every Redis key boxoffice uses is built here, and nowhere else.
//!
//! All keys start with `REDIS_PREFIX`, so several deployments (or test runs) share
//! one Redis safely. Keys of one concert carry the hash tag `{c:<concert_id>}` so
//! that, on Redis Cluster, every script touching one concert lands on one slot.

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

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key the readiness probe's script writes and reads back.
    pub fn ready_probe(&self) -> String {
        format!("{}:ready", self.prefix)
    }

    /// The hash tag that pins a concert's keys to one cluster slot.
    pub fn concert_tag(&self, concert_id: i64) -> String {
        format!("{}:{{c:{concert_id}}}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_the_concert_hash_tag() {
        let k = Keys::new("bo");
        assert_eq!(k.ready_probe(), "bo:ready");
        assert_eq!(k.concert_tag(42), "bo:{c:42}");
    }
}
