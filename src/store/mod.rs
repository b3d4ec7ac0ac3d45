//! The two backing stores: Redis for everything hot (queues, holds, seat state),
//! Postgres for everything durable (money, catalog, confirmed sales).
//!
//! Both clients are built so that an outage surfaces as a quick error (and so a
//! `503`) rather than a hang, and both reconnect by themselves when the server
//! comes back. Redis is reached only through [`Redis`]: its scripts, one type
//! each in [`scripts`], and a few plain commands named for what they do.

pub mod keys;
pub mod postgres;
pub mod redis;
pub mod scripts;

pub use keys::Keys;
pub use redis::Redis;
