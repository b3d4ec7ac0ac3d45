//! The seat catalog of a schedule (ids, numbers, prices), cached in process, and
//! the rendering of the live seat map from it and the schedule's state in Redis
//! (which `booking::seat_map` reads).
//!
//! Seats never change once their schedule exists, so a schedule's catalog is
//! read from Postgres once per process and kept. Each seat has an *index*: its
//! place in the schedule's seats ordered by `seat_no`. Redis knows seats only by
//! index: bit `i` of the SOLD bitmap, member `i` of the HELD set, so a 50 000-seat
//! schedule's whole state is a 6 KiB bitmap plus the live holds, read in one
//! round trip, and sparse seat numbers (1, 100, 1 000 000) cost nothing.
//!
//! The seat map's JSON is mostly the catalog, so each seat's fixed part
//! (`{"seat_id":…,"seat_no":…,"price":…,"status":"`) is rendered once when the
//! catalog loads; a request copies those bytes and adds the statuses.

use crate::error::{Error, Result};
use crate::store::postgres::Deadline;
use chrono::{DateTime, Utc};
use fred::bytes::Bytes;
use serde::Deserialize;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Schedules whose catalog one process keeps (the largest is ~10 MB).
const CACHED_SCHEDULES: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum SeatStatus {
    Available,
    Held,
    Sold,
}

impl SeatStatus {
    fn json(self) -> &'static [u8] {
        match self {
            SeatStatus::Available => b"AVAILABLE\"}",
            SeatStatus::Held => b"HELD\"}",
            SeatStatus::Sold => b"SOLD\"}",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seat {
    pub id: i64,
    pub seat_no: i32,
    pub price: i64,
}

/// One schedule and its seats, by `seat_no`.
#[derive(Debug)]
pub struct SeatCatalog {
    pub schedule_id: i64,
    pub concert_id: i64,
    pub start_at: DateTime<Utc>,
    seats: Vec<Seat>,
    /// Each seat's rendered fixed part, back to back; seat `i`'s ends at `ends[i]`.
    json: Vec<u8>,
    ends: Vec<usize>,
    /// The last map rendered for each filter, with the bitmaps it was
    /// rendered from (see [`SeatCatalog::render_bits`]).
    rendered: Mutex<Vec<Rendered>>,
}

/// A rendered map and what it shows.
#[derive(Debug)]
struct Rendered {
    sold: Bytes,
    held: Bytes,
    only: Option<SeatStatus>,
    body: Bytes,
}

impl SeatCatalog {
    pub fn new(
        schedule_id: i64,
        concert_id: i64,
        start_at: DateTime<Utc>,
        mut seats: Vec<Seat>,
    ) -> Self {
        seats.sort_unstable_by_key(|s| s.seat_no);
        let mut json = Vec::with_capacity(seats.len() * 56);
        let mut ends = Vec::with_capacity(seats.len());
        for s in &seats {
            use std::io::Write;
            // Writing to a Vec cannot fail.
            let _ = write!(
                json,
                r#"{{"seat_id":{},"seat_no":{},"price":{},"status":""#,
                s.id, s.seat_no, s.price
            );
            ends.push(json.len());
        }
        SeatCatalog {
            schedule_id,
            concert_id,
            start_at,
            seats,
            json,
            ends,
            rendered: Mutex::new(Vec::new()),
        }
    }

    /// The index of seat `seat_no`, if the schedule has it.
    pub fn index_of(&self, seat_no: i64) -> Option<usize> {
        let seat_no = i32::try_from(seat_no).ok()?;
        self.seats
            .binary_search_by_key(&seat_no, |s| s.seat_no)
            .ok()
    }

    pub fn seat(&self, index: usize) -> Option<&Seat> {
        self.seats.get(index)
    }

    /// The statuses of every seat from the SOLD and HELD bitmaps (bit 0 is the
    /// high bit of byte 0, as `SETBIT` counts). SOLD wins over HELD.
    pub fn statuses(&self, sold: &[u8], held: &[u8]) -> Vec<SeatStatus> {
        let bit = |map: &[u8], i: usize| map.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
        (0..self.seats.len())
            .map(|i| {
                if bit(sold, i) {
                    SeatStatus::Sold
                } else if bit(held, i) {
                    SeatStatus::Held
                } else {
                    SeatStatus::Available
                }
            })
            .collect()
    }

    /// The map of the seats as the SOLD and HELD bitmaps `sold` and `held`
    /// show them (keeping only seats in `only` when given), rendered once per
    /// distinct content: during a sale fifty fans read the same schedule
    /// between two changes of its seats, and a 50 000-seat map is 3.4 MB of
    /// JSON, so they share one body (a clone of [`Bytes`] is a reference
    /// count) and a read costs the two 6 KB compares.
    pub fn render_bits(&self, sold: &Bytes, held: &Bytes, only: Option<SeatStatus>) -> Bytes {
        let lock = || self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = lock()
            .iter()
            .find(|r| r.only == only && r.sold == sold && r.held == held)
        {
            return hit.body.clone();
        }
        let body = Bytes::from(self.render(&self.statuses(sold, held), only));
        let mut cache = lock();
        cache.retain(|r| r.only != only);
        cache.push(Rendered {
            sold: sold.clone(),
            held: held.clone(),
            only,
            body: body.clone(),
        });
        body
    }

    /// `{"schedule_id":…,"seats":[…]}` with each seat's status, keeping only
    /// seats in `only` when given.
    pub fn render(&self, statuses: &[SeatStatus], only: Option<SeatStatus>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json.len() + self.seats.len() * 12 + 64);
        out.extend_from_slice(
            format!(r#"{{"schedule_id":{},"seats":["#, self.schedule_id).as_bytes(),
        );
        let mut first = true;
        let mut start = 0;
        for (i, &end) in self.ends.iter().enumerate() {
            let status = statuses.get(i).copied().unwrap_or(SeatStatus::Available);
            if only.is_none_or(|o| o == status) {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&self.json[start..end]);
                out.extend_from_slice(status.json());
            }
            start = end;
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// The per-process cache of seat catalogs. Concurrent first reads of one
/// schedule share one Postgres load (a sale's first second must not load a
/// 50 000-seat catalog once per request).
#[derive(Default)]
pub struct SeatCache {
    entries: Mutex<HashMap<i64, Arc<OnceCell<Arc<SeatCatalog>>>>>,
}

pub fn schedule_not_found() -> Error {
    Error::not_found("schedule_not_found", "no schedule with that id")
}

impl SeatCache {
    /// The catalog of `schedule_id`, or `404 schedule_not_found`.
    pub async fn get(&self, pg: &PgPool, schedule_id: i64) -> Result<Arc<SeatCatalog>> {
        let cell = {
            let mut entries = self.entries.lock().map_err(poisoned)?;
            if let Some(cell) = entries.get(&schedule_id) {
                cell.clone()
            } else {
                if entries.len() >= CACHED_SCHEDULES {
                    // Seats never change: any entry can go; it reloads if needed.
                    if let Some(k) = entries.keys().next().copied() {
                        entries.remove(&k);
                    }
                }
                entries.entry(schedule_id).or_default().clone()
            }
        };
        let loaded = cell
            .get_or_try_init(|| async { load(pg, schedule_id).await.map(Arc::new) })
            .await;
        match loaded {
            Ok(catalog) => Ok(catalog.clone()),
            Err(e) => {
                // Unknown ids are not kept: the cache holds real schedules only.
                if let Ok(mut entries) = self.entries.lock()
                    && entries
                        .get(&schedule_id)
                        .is_some_and(|c| Arc::ptr_eq(c, &cell) && c.get().is_none())
                {
                    entries.remove(&schedule_id);
                }
                Err(e)
            }
        }
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("seat cache lock poisoned".into())
}

async fn load(pg: &PgPool, schedule_id: i64) -> Result<SeatCatalog> {
    let (concert_id, start_at): (i64, DateTime<Utc>) =
        sqlx::query_as("SELECT concert_id, start_at FROM concert_schedule WHERE id = $1")
            .bind(schedule_id)
            .fetch_optional(pg)
            .deadline()
            .await?
            .ok_or_else(schedule_not_found)?;
    let rows: Vec<(i64, i32, i64)> = sqlx::query_as(
        "SELECT id, seat_no, price FROM seat WHERE concert_schedule_id = $1 ORDER BY seat_no",
    )
    .bind(schedule_id)
    .fetch_all(pg)
    .deadline()
    .await?;
    let seats = rows
        .into_iter()
        .map(|(id, seat_no, price)| Seat { id, seat_no, price })
        .collect();
    Ok(SeatCatalog::new(schedule_id, concert_id, start_at, seats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(numbers: &[i32]) -> SeatCatalog {
        let seats = numbers
            .iter()
            .map(|&n| Seat {
                id: 100 + i64::from(n),
                seat_no: n,
                price: 1000,
            })
            .collect();
        SeatCatalog::new(7, 1, Utc::now(), seats)
    }

    #[test]
    fn seats_are_indexed_by_number_order() {
        let c = catalog(&[30, 1, 1_000_000, 2]);
        assert_eq!(c.index_of(1), Some(0));
        assert_eq!(c.index_of(2), Some(1));
        assert_eq!(c.index_of(30), Some(2));
        assert_eq!(c.index_of(1_000_000), Some(3));
        assert_eq!(c.index_of(3), None);
        assert_eq!(c.index_of(-1), None);
        assert_eq!(c.index_of(i64::MAX), None);
        assert_eq!(c.seat(2).map(|s| s.id), Some(130));
    }

    #[test]
    fn a_map_is_rendered_once_per_content_of_its_bitmaps() {
        let c = catalog(&[1, 2, 3]);
        let (none, first) = (Bytes::new(), Bytes::from_static(&[0x80]));
        let a = c.render_bits(&none, &none, None);
        let b = c.render_bits(&Bytes::new(), &Bytes::new(), None);
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bitmaps share one body");
        assert_eq!(a, c.render(&c.statuses(&none, &none), None));
        // A seat sold: a new body, right; the filtered map is its own entry.
        let sold = c.render_bits(&first, &none, None);
        assert_ne!(sold.as_ptr(), a.as_ptr());
        assert!(
            std::str::from_utf8(&sold)
                .unwrap()
                .contains(r#""seat_no":1,"price":1000,"status":"SOLD""#)
        );
        let only = c.render_bits(&first, &none, Some(SeatStatus::Sold));
        assert_eq!(
            only,
            c.render(&c.statuses(&first, &none), Some(SeatStatus::Sold))
        );
        assert_eq!(
            c.render_bits(&first, &none, None).as_ptr(),
            sold.as_ptr(),
            "each filter keeps its own last map"
        );
        // Held instead of sold is another content.
        let held = c.render_bits(&none, &first, None);
        assert!(
            std::str::from_utf8(&held)
                .unwrap()
                .contains(r#""seat_no":1,"price":1000,"status":"HELD""#)
        );
    }

    #[test]
    fn sold_bits_count_from_the_high_bit_and_win_over_holds() {
        let c = catalog(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        // SETBIT 0 and SETBIT 9: bytes 0x80, 0x40; held 0 and 3: 0x90; 42 is past the end.
        let s = c.statuses(&[0x80, 0x40], &[0x90, 0, 0, 0, 0, 0x20]);
        use SeatStatus::*;
        assert_eq!(
            s,
            vec![
                Sold, Available, Available, Held, Available, Available, Available, Available,
                Available, Sold
            ]
        );
    }

    #[test]
    fn the_map_is_valid_json_and_filters() {
        let c = catalog(&[1, 2, 3]);
        let statuses = c.statuses(&[0x20], &[0x80]);
        let all: serde_json::Value = serde_json::from_slice(&c.render(&statuses, None)).unwrap();
        assert_eq!(all["schedule_id"], 7);
        let seats = all["seats"].as_array().unwrap();
        assert_eq!(seats.len(), 3);
        assert_eq!(seats[0]["status"], "HELD");
        assert_eq!(seats[0]["seat_id"], 101);
        assert_eq!(seats[1]["status"], "AVAILABLE");
        assert_eq!(seats[2]["status"], "SOLD");
        assert_eq!(seats[2]["price"], 1000);
        let sold: serde_json::Value =
            serde_json::from_slice(&c.render(&statuses, Some(SeatStatus::Sold))).unwrap();
        assert_eq!(sold["seats"].as_array().unwrap().len(), 1);
        assert_eq!(sold["seats"][0]["seat_no"], 3);
        let held: serde_json::Value =
            serde_json::from_slice(&c.render(&statuses, Some(SeatStatus::Held))).unwrap();
        assert_eq!(held["seats"][0]["seat_no"], 1);
        let empty = c.render(&c.statuses(&[0xE0], &[]), Some(SeatStatus::Available));
        assert_eq!(c.statuses(&[], &[]), vec![SeatStatus::Available; 3]);
        assert_eq!(empty, br#"{"schedule_id":7,"seats":[]}"#);
    }
}
