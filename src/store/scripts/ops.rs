//! The readiness probe's script.

use super::{KeyCount, Lua, Script, lua, shape};
use crate::error::Result;
use crate::store::keys::Keys;
use fred::types::Value;

/// `ready.lua`: writes a value and reads it back (a replica, a full disk or a
/// Redis that cannot run scripts fails here).
pub struct Ready<'a> {
    pub keys: &'a Keys,
    pub value: &'a str,
}

impl Script for Ready<'_> {
    /// The value read back.
    type Reply = String;

    fn lua() -> &'static Lua {
        lua!("ready.lua", KeyCount::Exactly(1))
    }

    fn keys(&self) -> Vec<String> {
        vec![self.keys.ready_probe()]
    }

    fn args(&self) -> Vec<String> {
        vec![self.value.to_owned()]
    }

    fn reply(value: Value) -> Result<String> {
        value.as_string().ok_or_else(|| shape("ready", &value))
    }
}
