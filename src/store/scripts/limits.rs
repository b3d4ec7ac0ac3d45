//! The rate limit checked on its own (`crate::limits`): join, poll and hold
//! check theirs inside their own scripts.

use super::{KeyCount, Lua, Script, lua, one_int};
use crate::error::Result;
use crate::limits::Rate;
use fred::types::Value;

/// `rate_limit.lua`: counts one request of a subject against a rate.
pub struct RateLimit {
    /// The limit's key for the subject (`Keys::address_rate`, `Keys::user_rate`).
    pub key: String,
    pub rate: Rate,
}

impl Script for RateLimit {
    /// 0 when the request fits (it is counted), else the ms to wait.
    type Reply = i64;

    fn lua() -> &'static Lua {
        lua!("rate_limit.lua", KeyCount::Exactly(1))
    }

    fn keys(&self) -> Vec<String> {
        vec![self.key.clone()]
    }

    fn args(&self) -> Vec<String> {
        self.rate.args().into()
    }

    fn reply(value: Value) -> Result<i64> {
        one_int(value, "rate_limit")
    }
}
