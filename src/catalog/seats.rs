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
//! catalog loads; a request copies those bytes and adds the statuses. A map is
//! rendered once per content of its bitmaps and shared; gzipped (for readers
//! that accept it) in pieces of [`GZIP_SEATS`] seats, each compressed again
//! only when one of its seats changed ([`super::gzip`]).

use super::gzip::{self, Piece};
use crate::error::{Error, Result};
use crate::store::postgres::Deadline;
use chrono::{DateTime, Utc};
use fred::bytes::Bytes;
use serde::Deserialize;
use sqlx::PgPool;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// Schedules whose catalog one process keeps (the largest is ~10 MB).
const CACHED_SCHEDULES: usize = 256;

/// Seats per gzip piece of a map: about 70 KB of JSON, 3 KB gzipped; a seat
/// that changes costs one piece's compression (well under a millisecond).
pub const GZIP_SEATS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, utoipa::ToSchema)]
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
    /// The last map rendered for each filter (see [`SeatCatalog::render_bits`]).
    rendered: Mutex<Vec<RenderedMap>>,
    /// The last gzip piece of each run of [`GZIP_SEATS`] seats, per filter.
    pieces: Mutex<HashMap<PieceKey, Arc<GzipPiece>>>,
}

/// A rendered map, the bitmaps and the filter it shows, and its gzip once a
/// reader asked for it. A clone shares them all.
#[derive(Clone, Debug)]
pub struct RenderedMap {
    sold: Bytes,
    held: Bytes,
    only: Option<SeatStatus>,
    pub json: Bytes,
    gzip: Arc<OnceCell<Option<Bytes>>>,
}

/// A map's filter and a run of [`GZIP_SEATS`] seats (its number).
type PieceKey = (Option<SeatStatus>, usize);

/// A gzip piece of a run of seats, and what it was made from: the run's
/// statuses, and whether a seat came before it in the map (its first seat
/// then follows a comma).
#[derive(Debug)]
struct GzipPiece {
    statuses: Vec<SeatStatus>,
    after_a_seat: bool,
    piece: Piece,
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
            pieces: Mutex::new(HashMap::new()),
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
    pub fn render_bits(&self, sold: &Bytes, held: &Bytes, only: Option<SeatStatus>) -> RenderedMap {
        let lock = || self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = lock()
            .iter()
            .find(|r| r.only == only && r.sold == sold && r.held == held)
        {
            return hit.clone();
        }
        let map = RenderedMap {
            sold: sold.clone(),
            held: held.clone(),
            only,
            json: Bytes::from(self.render(&self.statuses(sold, held), only)),
            gzip: Arc::default(),
        };
        let mut cache = lock();
        cache.retain(|r| r.only != only);
        cache.push(map.clone());
        map
    }

    /// `map`'s JSON gzipped, made once per map and shared like it (None if
    /// compression failed: the reader gets the JSON as it is). Made on the
    /// blocking pool, and its other readers wait without holding a worker:
    /// a schedule's first map is some fifty pieces to compress.
    pub async fn gzip(self: &Arc<Self>, map: &RenderedMap) -> Option<Bytes> {
        map.gzip
            .get_or_init(|| {
                let (catalog, map) = (self.clone(), map.clone());
                async move {
                    tokio::task::spawn_blocking(move || catalog.gzip_now(&map))
                        .await
                        .ok()
                        .flatten()
                }
            })
            .await
            .clone()
    }

    fn gzip_now(&self, map: &RenderedMap) -> Option<Bytes> {
        self.gzip_statuses(&self.statuses(&map.sold, &map.held), map.only)
            .map_err(|e| tracing::warn!(error = %e, "seat map: gzip failed; sending it plain"))
            .ok()
            .map(Bytes::from)
    }

    /// The gzip of `render(statuses, only)`, from a piece per [`GZIP_SEATS`]
    /// seats: a piece whose seats (and whether a seat precedes it) are as
    /// when it was last compressed is used again.
    fn gzip_statuses(
        &self,
        statuses: &[SeatStatus],
        only: Option<SeatStatus>,
    ) -> std::io::Result<Vec<u8>> {
        let lock = || self.pieces.lock().unwrap_or_else(|e| e.into_inner());
        let runs = self.seats.len().div_ceil(GZIP_SEATS);
        let mut parts = Vec::with_capacity(runs);
        let mut first = true;
        for run in 0..runs {
            let seats = run * GZIP_SEATS..((run + 1) * GZIP_SEATS).min(self.seats.len());
            let now = statuses.get(seats.clone()).unwrap_or(&[]);
            let cached = lock()
                .get(&(only, run))
                .filter(|p| p.after_a_seat != first && p.statuses == now)
                .cloned();
            let part = match cached {
                Some(part) => part,
                None => {
                    let after_a_seat = !first;
                    let mut text = Vec::new();
                    let mut none_yet = first;
                    self.render_seats(statuses, only, seats, &mut none_yet, &mut text);
                    let part = Arc::new(GzipPiece {
                        statuses: now.to_vec(),
                        after_a_seat,
                        piece: Piece::deflate(&text)?,
                    });
                    lock().insert((only, run), part.clone());
                    part
                }
            };
            first &= part.piece.text_len() == 0;
            parts.push(part);
        }
        let head = Piece::stored(self.head().as_bytes());
        let tail = Piece::stored(TAIL);
        Ok(gzip::gzip(
            std::iter::once(&head)
                .chain(parts.iter().map(|p| &p.piece))
                .chain(std::iter::once(&tail)),
        ))
    }

    /// `{"schedule_id":…,"seats":[…]}` with each seat's status, keeping only
    /// seats in `only` when given.
    pub fn render(&self, statuses: &[SeatStatus], only: Option<SeatStatus>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.json.len() + self.seats.len() * 12 + 64);
        out.extend_from_slice(self.head().as_bytes());
        let mut first = true;
        self.render_seats(statuses, only, 0..self.seats.len(), &mut first, &mut out);
        out.extend_from_slice(TAIL);
        out
    }

    fn head(&self) -> String {
        format!(r#"{{"schedule_id":{},"seats":["#, self.schedule_id)
    }

    /// Appends the seats of `range` that `only` keeps, each after a comma but
    /// the map's first (`first` is true until a seat is written).
    fn render_seats(
        &self,
        statuses: &[SeatStatus],
        only: Option<SeatStatus>,
        range: Range<usize>,
        first: &mut bool,
        out: &mut Vec<u8>,
    ) {
        let mut start = if range.start == 0 {
            0
        } else {
            self.ends[range.start - 1]
        };
        for i in range {
            let end = self.ends[i];
            let status = statuses.get(i).copied().unwrap_or(SeatStatus::Available);
            if only.is_none_or(|o| o == status) {
                if !*first {
                    out.push(b',');
                }
                *first = false;
                out.extend_from_slice(&self.json[start..end]);
                out.extend_from_slice(status.json());
            }
            start = end;
        }
    }
}

/// What closes a map's JSON.
const TAIL: &[u8] = b"]}";

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
    use crate::catalog::gzip::tests::gunzip;

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
        let a = c.render_bits(&none, &none, None).json;
        let b = c.render_bits(&Bytes::new(), &Bytes::new(), None).json;
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bitmaps share one body");
        assert_eq!(a, c.render(&c.statuses(&none, &none), None));
        // A seat sold: a new body, right; the filtered map is its own entry.
        let sold = c.render_bits(&first, &none, None).json;
        assert_ne!(sold.as_ptr(), a.as_ptr());
        assert!(
            std::str::from_utf8(&sold)
                .unwrap()
                .contains(r#""seat_no":1,"price":1000,"status":"SOLD""#)
        );
        let only = c.render_bits(&first, &none, Some(SeatStatus::Sold)).json;
        assert_eq!(
            only,
            c.render(&c.statuses(&first, &none), Some(SeatStatus::Sold))
        );
        assert_eq!(
            c.render_bits(&first, &none, None).json.as_ptr(),
            sold.as_ptr(),
            "each filter keeps its own last map"
        );
        // Held instead of sold is another content.
        let held = c.render_bits(&none, &first, None).json;
        assert!(
            std::str::from_utf8(&held)
                .unwrap()
                .contains(r#""seat_no":1,"price":1000,"status":"HELD""#)
        );
    }

    /// Bitmaps from a seed: each seat sold, held or neither.
    fn bits(seats: usize, seed: u64) -> (Bytes, Bytes) {
        let (mut sold, mut held) = (vec![0u8; seats.div_ceil(8)], vec![0u8; seats.div_ceil(8)]);
        let mut x = seed | 1;
        for i in 0..seats {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 7 {
                0 => sold[i / 8] |= 0x80 >> (i % 8),
                1 => held[i / 8] |= 0x80 >> (i % 8),
                _ => {}
            }
        }
        (Bytes::from(sold), Bytes::from(held))
    }

    #[tokio::test]
    async fn the_gzipped_map_is_the_map_and_only_changed_pieces_are_compressed_again() {
        // Three pieces and a bit (GZIP_SEATS a piece), sparse seat numbers.
        let n = 3 * GZIP_SEATS + 5;
        let numbers: Vec<i32> = (0..n as i32).map(|i| i * 3 + 1).collect();
        let c = Arc::new(catalog(&numbers));
        for seed in [1, 2, 99] {
            let (sold, held) = bits(n, seed);
            for only in [
                None,
                Some(SeatStatus::Available),
                Some(SeatStatus::Held),
                Some(SeatStatus::Sold),
            ] {
                let map = c.render_bits(&sold, &held, only);
                let gz = c.gzip(&map).await.expect("compressed");
                assert_eq!(gunzip(&gz), map.json, "seed {seed}, {only:?}");
                assert!(gz.len() * 4 < map.json.len() || map.json.len() < 100);
                assert_eq!(
                    c.gzip(&map).await.unwrap().as_ptr(),
                    gz.as_ptr(),
                    "made once per map"
                );
            }
        }
        // One seat of the second piece sold: only that piece is made again.
        let (sold, held) = bits(n, 5);
        let before = c.render_bits(&sold, &held, None);
        c.gzip(&before).await.unwrap();
        let piece = |run: usize| c.pieces.lock().unwrap()[&(None, run)].clone();
        let kept = [piece(0), piece(1), piece(2), piece(3)];
        let mut changed = sold.to_vec();
        changed[(GZIP_SEATS + 3) / 8] ^= 0x80 >> ((GZIP_SEATS + 3) % 8);
        let changed = Bytes::from(changed);
        let after = c.render_bits(&changed, &held, None);
        assert_eq!(gunzip(&c.gzip(&after).await.unwrap()), after.json);
        for (run, kept) in kept.iter().enumerate() {
            assert_eq!(Arc::ptr_eq(&piece(run), kept), run != 1, "piece {run}");
        }
        // A filtered map whose first seats all left it: the next piece's first
        // seat loses its comma, so that piece is made again too.
        let everything_held = Bytes::from(vec![0xffu8; n.div_ceil(8)]);
        let none = Bytes::new();
        let all = c.render_bits(&none, &everything_held, Some(SeatStatus::Held));
        assert_eq!(gunzip(&c.gzip(&all).await.unwrap()), all.json);
        let mut fewer = everything_held.to_vec();
        fewer[..GZIP_SEATS / 8].fill(0);
        let fewer = c.render_bits(&none, &Bytes::from(fewer), Some(SeatStatus::Held));
        assert_eq!(gunzip(&c.gzip(&fewer).await.unwrap()), fewer.json);
        serde_json::from_slice::<serde_json::Value>(&gunzip(&c.gzip(&fewer).await.unwrap()))
            .expect("valid JSON");
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
