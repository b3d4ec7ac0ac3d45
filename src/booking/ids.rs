//! Reservation ids: taken in process from blocks that Postgres hands out.
//!
//! A hold must not wait on Postgres, yet its id must never be reused, even if
//! Redis loses its data (API.md). Each process takes, per concert, a block of
//! [`BLOCK_SIZE`] ids from `reservation_id_seq` (one `INSERT` per block, i.e. one
//! Postgres round trip per 16 384 holds) and records the block's concert in
//! `reservation_block`. So an id leads back to its concert (and its Redis keys)
//! through `id >> BLOCK_BITS`, a lookup cached forever: blocks never change.

use crate::error::{Error, Result};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const BLOCK_BITS: u32 = 14;
pub const BLOCK_SIZE: i64 = 1 << BLOCK_BITS;
/// Block -> concert entries kept before the lookup cache starts over.
const KNOWN_BLOCKS: usize = 100_000;

/// The ids of one block not handed out yet.
#[derive(Default)]
struct Block {
    next: i64,
    end: i64,
}

#[derive(Default)]
pub struct ReservationIds {
    /// Per concert, the block ids are taken from. The async mutex lets one
    /// request fetch the next block while the others of that concert wait for it,
    /// instead of each fetching its own.
    current: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Block>>>>,
    concerts: Mutex<HashMap<i64, i64>>,
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("reservation id lock poisoned".into())
}

/// The block an id belongs to (ids are positive).
pub fn block_of(id: i64) -> i64 {
    id >> BLOCK_BITS
}

impl ReservationIds {
    /// A new reservation id in `concert_id`.
    pub async fn next(&self, pg: &PgPool, concert_id: i64) -> Result<i64> {
        let slot = self
            .current
            .lock()
            .map_err(poisoned)?
            .entry(concert_id)
            .or_default()
            .clone();
        let mut block = slot.lock().await;
        if block.next >= block.end {
            let b: i64 = sqlx::query_scalar(
                "INSERT INTO reservation_block (block, concert_id)
                 VALUES (nextval('reservation_id_seq'), $1) RETURNING block",
            )
            .bind(concert_id)
            .fetch_one(pg)
            .await?;
            self.remember(b, concert_id);
            *block = Block {
                next: b << BLOCK_BITS,
                end: (b + 1) << BLOCK_BITS,
            };
        }
        let id = block.next;
        block.next += 1;
        Ok(id)
    }

    fn remember(&self, block: i64, concert_id: i64) {
        if let Ok(mut known) = self.concerts.lock() {
            if known.len() >= KNOWN_BLOCKS {
                known.clear();
            }
            known.insert(block, concert_id);
        }
    }

    /// The concert a reservation id was handed out for; `None` for an id that no
    /// block holds (it was never handed out).
    pub async fn concert_of(&self, pg: &PgPool, id: i64) -> Result<Option<i64>> {
        if id <= 0 {
            return Ok(None);
        }
        let block = block_of(id);
        if let Some(&c) = self.concerts.lock().map_err(poisoned)?.get(&block) {
            return Ok(Some(c));
        }
        let concert: Option<i64> =
            sqlx::query_scalar("SELECT concert_id FROM reservation_block WHERE block = $1")
                .bind(block)
                .fetch_optional(pg)
                .await?;
        if let Some(c) = concert {
            self.remember(block, c);
        }
        Ok(concert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_a_block_lead_back_to_it() {
        assert_eq!(block_of(7 << BLOCK_BITS), 7);
        assert_eq!(block_of((8 << BLOCK_BITS) - 1), 7);
        assert_eq!(block_of(8 << BLOCK_BITS), 8);
        // Ids stay exact in JavaScript for 2^39 blocks.
        const { assert!(((1i64 << 39) << BLOCK_BITS) <= 1 << 53) };
    }
}
