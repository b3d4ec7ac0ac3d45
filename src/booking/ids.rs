//! Reservation ids: taken in process from blocks that Postgres hands out.
//!
//! A hold must not wait on Postgres, yet its id must never be reused, even if
//! Redis loses its data (API.md). Each process takes, per concert, a block of
//! [`BLOCK_SIZE`] ids from `reservation_id_seq` (one `INSERT` per block, i.e. one
//! Postgres round trip per 16 384 holds, fetched in the background before the
//! current block runs out) and records the block's concert in
//! `reservation_block`. So an id leads back to its concert (and its Redis keys)
//! through `id >> BLOCK_BITS`, a lookup cached forever: blocks never change.

use crate::error::{Error, Result};
use crate::store::postgres::Deadline;
use sqlx::PgPool;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BLOCK_BITS: u32 = 14;
pub const BLOCK_SIZE: i64 = 1 << BLOCK_BITS;
/// Block -> concert entries kept before the lookup cache starts over.
const KNOWN_BLOCKS: usize = 100_000;

/// After a failed block fetch, holds of that concert fail at once (`503`) for
/// this long instead of each waiting on Postgres in turn.
const FAIL_FAST: Duration = Duration::from_secs(1);

/// One concert's ids in this process: the block ids are taken from, and the
/// next block, fetched in the background once half of the current one is used,
/// so a hold almost never waits on Postgres.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Taken by the one request that fetches a block inline (none was ready).
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SlotState {
    next: i64,
    end: i64,
    /// Blocks fetched and not started (normally at most one; a prefetch and an
    /// inline fetch may both land, and neither block is wasted).
    spare: VecDeque<i64>,
    prefetching: bool,
    failed_at: Option<Instant>,
}

type Known = Arc<Mutex<HashMap<i64, i64>>>;

#[derive(Default)]
pub struct ReservationIds {
    slots: Mutex<HashMap<i64, Arc<Slot>>>,
    /// Block -> concert, for every block this process met.
    concerts: Known,
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("reservation id lock poisoned".into())
}

/// The block an id belongs to (ids are positive).
pub fn block_of(id: i64) -> i64 {
    id >> BLOCK_BITS
}

async fn fetch_block(pg: &PgPool, known: &Known, concert_id: i64) -> Result<i64> {
    let block: i64 = sqlx::query_scalar(
        "INSERT INTO reservation_block (block, concert_id)
         VALUES (nextval('reservation_id_seq'), $1) RETURNING block",
    )
    .bind(concert_id)
    .fetch_one(pg)
    .deadline()
    .await?;
    remember(known, block, concert_id);
    Ok(block)
}

fn remember(known: &Known, block: i64, concert_id: i64) {
    if let Ok(mut known) = known.lock() {
        if known.len() >= KNOWN_BLOCKS {
            known.clear();
        }
        known.insert(block, concert_id);
    }
}

impl ReservationIds {
    /// A new reservation id in `concert_id`.
    pub async fn next(&self, pg: &PgPool, concert_id: i64) -> Result<i64> {
        let slot = self
            .slots
            .lock()
            .map_err(poisoned)?
            .entry(concert_id)
            .or_default()
            .clone();
        if let Some(id) = self.take(&slot, pg, concert_id)? {
            return Ok(id);
        }
        // No id ready: one request fetches a block, the others wait for it.
        let _fetching = slot.fetching.lock().await;
        if let Some(id) = self.take(&slot, pg, concert_id)? {
            return Ok(id);
        }
        let failed_recently = slot
            .state
            .lock()
            .map_err(poisoned)?
            .failed_at
            .is_some_and(|at| at.elapsed() < FAIL_FAST);
        if failed_recently {
            return Err(Error::Unavailable(
                "postgres: no reservation id block (recent failure)".into(),
            ));
        }
        match fetch_block(pg, &self.concerts, concert_id).await {
            Ok(block) => {
                let mut s = slot.state.lock().map_err(poisoned)?;
                s.failed_at = None;
                s.spare.push_back(block);
            }
            Err(e) => {
                slot.state.lock().map_err(poisoned)?.failed_at = Some(Instant::now());
                return Err(e);
            }
        }
        self.take(&slot, pg, concert_id)?
            .ok_or_else(|| Error::Internal("reservation id block used up at once".into()))
    }

    /// Takes an id if one is ready; starts fetching the next block in the
    /// background when half of the current one is used.
    fn take(&self, slot: &Arc<Slot>, pg: &PgPool, concert_id: i64) -> Result<Option<i64>> {
        let mut s = slot.state.lock().map_err(poisoned)?;
        if s.next >= s.end {
            let Some(block) = s.spare.pop_front() else {
                return Ok(None);
            };
            s.next = block << BLOCK_BITS;
            s.end = (block + 1) << BLOCK_BITS;
        }
        let id = s.next;
        s.next += 1;
        if s.end - s.next < BLOCK_SIZE / 2 && s.spare.is_empty() && !s.prefetching {
            s.prefetching = true;
            let (slot, pg, known) = (slot.clone(), pg.clone(), self.concerts.clone());
            tokio::spawn(async move {
                let fetched = fetch_block(&pg, &known, concert_id).await;
                if let Ok(mut s) = slot.state.lock() {
                    s.prefetching = false;
                    match fetched {
                        Ok(block) => s.spare.push_back(block),
                        Err(e) => tracing::warn!(error = %e, "reservation id block not prefetched"),
                    }
                }
            });
        }
        Ok(Some(id))
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
                .deadline()
                .await?;
        if let Some(c) = concert {
            remember(&self.concerts, block, c);
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
