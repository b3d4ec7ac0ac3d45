//! One Rust type per script of `lua/`: the seam between the service and Redis.
//!
//! Like a command of `tokio-rs/mini-redis`, each type names what its script
//! takes (its `KEYS`, built from [`Keys`](super::Keys), and its `ARGV`) and
//! turns the script's reply into a domain value, so a call site reads
//! `scripts::Hold { .. }.run(&redis).await?` and no reply is ever read by
//! position outside this module.
//!
//! Every script is sent as one text: the prelude generated from [`codes`] (the
//! status letters and record field names, defined once, here in Rust), then
//! `lua/lib.lua` (the shared helpers), then the script's own file. Redis compiles
//! it once and it runs by SHA; each call is still one `EVALSHA`.
//!
//! - [`queue`]: join, poll, leave, the gate, the admission tick and its lease;
//! - [`booking`]: the seat map, availability, holds, cancels, the payment
//!   steps and the SOLD rebuild;
//! - [`ops`]: the readiness probe.

pub mod booking;
pub mod codes;
pub mod ops;
pub mod queue;
pub mod room;

pub use booking::*;
pub use ops::*;
pub use queue::*;
pub use room::*;

use super::Redis;
use crate::error::{Error, Result};
use fred::bytes::Bytes;
use fred::types::Value;
use fred::types::scripts::Script as Compiled;
use std::future::Future;
use std::sync::OnceLock;

/// How many keys a script takes, as its header's `KEYS[n]` lines say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCount {
    Exactly(usize),
    /// `fixed` keys, then any number of groups of `each` keys.
    Repeating {
        fixed: usize,
        each: usize,
    },
}

impl KeyCount {
    pub fn accepts(self, n: usize) -> bool {
        match self {
            KeyCount::Exactly(k) => n == k,
            KeyCount::Repeating { fixed, each } => n >= fixed && (n - fixed).is_multiple_of(each),
        }
    }
}

/// A script's text as Redis gets it, compiled once per process.
pub struct Lua {
    /// The file under `lua/`.
    pub file: &'static str,
    pub keys: KeyCount,
    /// The script's own text (without the prelude and the helpers).
    pub own_text: &'static str,
    compiled: OnceLock<Compiled>,
}

impl Lua {
    pub(crate) const fn new(file: &'static str, keys: KeyCount, own_text: &'static str) -> Lua {
        Lua {
            file,
            keys,
            own_text,
            compiled: OnceLock::new(),
        }
    }

    /// The whole text, with its SHA, computed on first use.
    pub fn compiled(&self) -> &Compiled {
        self.compiled
            .get_or_init(|| Compiled::from_lua(full_text(self.own_text)))
    }
}

/// The shared helpers every script starts with.
pub const LIB: &str = include_str!("../../../lua/lib.lua");

/// What Redis runs for a script whose own text is `own`.
pub fn full_text(own: &str) -> String {
    format!("{}{LIB}{own}", codes::lua_prelude())
}

/// `lua!("hold.lua", KeyCount::Exactly(7))`: the script's [`Lua`], made once.
macro_rules! lua {
    ($file:literal, $keys:expr) => {{
        static LUA: $crate::store::scripts::Lua = $crate::store::scripts::Lua::new(
            $file,
            $keys,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/lua/", $file)),
        );
        &LUA
    }};
}
pub(crate) use lua;

/// A script call: its keys and arguments, and how its reply reads.
pub trait Script: Sized + Send {
    /// What the reply means, as a domain value.
    type Reply;

    fn lua() -> &'static Lua;
    fn keys(&self) -> Vec<String>;
    fn args(&self) -> Vec<String>;
    fn reply(value: Value) -> Result<Self::Reply>;

    /// Runs the script: one round trip (a second only when Redis must be
    /// handed the script again after a restart or `SCRIPT FLUSH`).
    fn run(self, redis: &Redis) -> impl Future<Output = Result<Self::Reply>> + Send {
        redis.run(self)
    }
}

/// Every script, for loading at start and for the tests that compare each
/// type with its file.
pub fn all() -> Vec<&'static Lua> {
    vec![
        Ready::lua(),
        Lease::lua(),
        Join::lua(),
        Poll::lua(),
        Gate::lua(),
        Leave::lua(),
        Admit::lua(),
        Unlist::lua(),
        SeatMap::lua(),
        Availability::lua(),
        Hold::lua(),
        Cancel::lua(),
        PayBegin::lua(),
        PayAbort::lua(),
        PayFinish::lua(),
        SoldMark::lua(),
        SoldRebuilt::lua(),
        RoomSet::lua(),
        RoomRead::lua(),
    ]
}

/// A script reply read in order, each item with the type it must have; any
/// other shape is an internal error naming the script.
pub(crate) struct Fields {
    items: std::vec::IntoIter<Value>,
    script: &'static str,
}

impl Fields {
    pub fn new(value: Value, script: &'static str) -> Result<Fields> {
        match value {
            Value::Array(items) => Ok(Fields {
                items: items.into_iter(),
                script,
            }),
            other => Err(shape(script, &other)),
        }
    }

    fn next(&mut self) -> Result<Value> {
        self.items
            .next()
            .ok_or_else(|| Error::Internal(format!("{}: reply too short", self.script)))
    }

    pub fn int(&mut self) -> Result<i64> {
        let v = self.next()?;
        int(&v).map_err(|_| shape(self.script, &v))
    }

    pub fn text(&mut self) -> Result<String> {
        let v = self.next()?;
        v.as_string().ok_or_else(|| shape(self.script, &v))
    }

    /// A bitmap, without a copy (an absent key reads as empty).
    pub fn bytes(&mut self) -> Result<Bytes> {
        Ok(match self.next()? {
            Value::Bytes(b) => b,
            Value::String(s) => s.into_inner(),
            Value::Null => Bytes::new(),
            other => return Err(shape(self.script, &other)),
        })
    }

    /// A nested list of `[a, b, a, b, …]` strings as pairs.
    pub fn pairs(&mut self) -> Result<Vec<(String, String)>> {
        let items = match self.next()? {
            Value::Array(items) => items,
            Value::Null => return Ok(Vec::new()),
            other => return Err(shape(self.script, &other)),
        };
        items
            .chunks(2)
            .map(|p| match p {
                [a, b] => Ok((
                    a.as_string().ok_or_else(|| shape(self.script, a))?,
                    b.as_string().unwrap_or_default(),
                )),
                _ => Err(Error::Internal(format!("{}: odd list", self.script))),
            })
            .collect()
    }

    /// The rest of the reply, as integers.
    pub fn rest_ints(&mut self) -> Result<Vec<i64>> {
        let script = self.script;
        self.items
            .by_ref()
            .map(|v| int(&v).map_err(|_| shape(script, &v)))
            .collect()
    }
}

fn int(v: &Value) -> Result<i64, ()> {
    v.as_i64().ok_or(())
}

pub(crate) fn shape(script: &str, v: &Value) -> Error {
    Error::Internal(format!("{script}: unexpected reply {v:?}"))
}

/// A reply that is one integer.
pub(crate) fn one_int(value: Value, script: &'static str) -> Result<i64> {
    value.as_i64().ok_or_else(|| shape(script, &value))
}

#[cfg(test)]
mod tests;
