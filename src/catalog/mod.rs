//! The catalog: concerts, their schedules (performances) and the seats of each.
//!
//! Rarely written (by an operator, before a sale), read by everyone. Creating a
//! schedule writes all of its seats in one bulk statement, so a 100 000-seat
//! stadium is one request that takes well under a second. Reads go through
//! in-process caches: concerts and schedule lists for a second ([`cache`]), a
//! schedule's seats for as long as the process lives, since they never change
//! ([`seats`]). A concert's schedules with their live availability, the one
//! gated read, are [`availability`]'s.

pub mod availability;
mod cache;
mod gzip;
pub mod seats;

pub use cache::CatalogCache;
pub use seats::{RenderedMap, SeatCache, SeatCatalog, SeatStatus};

use crate::AppState;
use crate::error::{Error, Result};
use crate::store::postgres::{BULK_DEADLINE, Deadline};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;

pub const TITLE_MAX_CHARS: usize = 200;
pub const ARTIST_MAX_CHARS: usize = 200;
pub const DESCRIPTION_MAX_CHARS: usize = 10_000;
pub const SECTION_MAX_CHARS: usize = 50;
pub const MAX_SEATS: i64 = 100_000;
pub const MAX_UNIFORM_PRICE: i64 = 100_000_000;
/// A listed seat may cost anything a balance can hold.
pub const MAX_LISTED_PRICE: i64 = crate::money::BALANCE_LIMIT;

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Concert {
    pub id: i64,
    pub title: String,
    pub artist: Option<String>,
    pub description: Option<String>,
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ConcertSummary {
    pub id: i64,
    pub title: String,
    pub artist: Option<String>,
}

/// A concert as an operator describes it, before validation.
#[derive(Clone, Debug)]
pub struct NewConcert {
    pub title: String,
    pub artist: Option<String>,
    pub description: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Schedule {
    pub id: i64,
    pub concert_id: i64,
    #[serde(serialize_with = "crate::time::serialize")]
    pub start_at: DateTime<Utc>,
    pub seat_count: i32,
}

/// How the seats of a new schedule are laid out.
#[derive(Clone, Debug)]
pub enum SeatPlan {
    /// Seats 1..=count, all at one price.
    Uniform { count: i64, price: i64 },
    /// Seats listed one by one, each with its own price and optional section.
    Listed(Vec<NewSeat>),
}

#[derive(Clone, Debug)]
pub struct NewSeat {
    pub seat_no: i64,
    pub price: i64,
    pub section: Option<String>,
}

fn check_len(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(Error::bad_request(format!(
            "{field} must be {min} to {max} characters long"
        )));
    }
    Ok(())
}

impl NewConcert {
    fn validated(self) -> Result<Self> {
        let title = self.title.trim().to_owned();
        check_len("title", &title, 1, TITLE_MAX_CHARS)?;
        if let Some(artist) = &self.artist {
            check_len("artist", artist, 0, ARTIST_MAX_CHARS)?;
        }
        if let Some(description) = &self.description {
            check_len("description", description, 0, DESCRIPTION_MAX_CHARS)?;
        }
        Ok(NewConcert { title, ..self })
    }
}

impl SeatPlan {
    /// Checks every bound of API.md; returns the number of seats.
    fn validate(&self) -> Result<i64> {
        match self {
            SeatPlan::Uniform { count, price } => {
                if !(1..=MAX_SEATS).contains(count) {
                    return Err(Error::bad_request(format!(
                        "seat_count must be from 1 to {MAX_SEATS}"
                    )));
                }
                if !(1..=MAX_UNIFORM_PRICE).contains(price) {
                    return Err(Error::bad_request(format!(
                        "price must be from 1 to {MAX_UNIFORM_PRICE}"
                    )));
                }
                Ok(*count)
            }
            SeatPlan::Listed(seats) => {
                if seats.is_empty() || seats.len() as i64 > MAX_SEATS {
                    return Err(Error::bad_request(format!(
                        "seats must list 1 to {MAX_SEATS} seats"
                    )));
                }
                let mut seen = HashSet::with_capacity(seats.len());
                for seat in seats {
                    if !(1..=i64::from(i32::MAX)).contains(&seat.seat_no) {
                        return Err(Error::bad_request(format!(
                            "seat_no must be from 1 to {}",
                            i32::MAX
                        )));
                    }
                    if !(1..=MAX_LISTED_PRICE).contains(&seat.price) {
                        return Err(Error::bad_request(format!(
                            "price must be from 1 to {MAX_LISTED_PRICE}"
                        )));
                    }
                    if let Some(section) = &seat.section {
                        check_len("section", section, 0, SECTION_MAX_CHARS)?;
                    }
                    if !seen.insert(seat.seat_no) {
                        return Err(Error::bad_request(format!(
                            "seat_no {} is listed twice",
                            seat.seat_no
                        )));
                    }
                }
                Ok(seats.len() as i64)
            }
        }
    }
}

/// Creates a concert. (Catalog writes take the pool, not the service: the
/// `seed-demo` command runs them with no server around. An admin handler
/// tells the caches.)
pub async fn create_concert(pg: &PgPool, new: NewConcert) -> Result<Concert> {
    let new = new.validated()?;
    sqlx::query_as(
        "INSERT INTO concert (title, artist, description) VALUES ($1, $2, $3)
         RETURNING id, title, artist, description",
    )
    .bind(&new.title)
    .bind(&new.artist)
    .bind(&new.description)
    .fetch_one(pg)
    .deadline()
    .await
}

/// Every concert, by id; read through the cache.
pub async fn list_concerts(app: &AppState) -> Result<Arc<Vec<ConcertSummary>>> {
    let cache = &app.catalog;
    if let Some(list) = cache.list() {
        return Ok(list);
    }
    let list: Arc<Vec<ConcertSummary>> = Arc::new(
        sqlx::query_as("SELECT id, title, artist FROM concert ORDER BY id")
            .fetch_all(&app.pg)
            .deadline()
            .await?,
    );
    cache.put_list(list.clone());
    Ok(list)
}

/// One concert, or `404 concert_not_found`; read through the cache.
pub async fn concert(app: &AppState, concert_id: i64) -> Result<Arc<Concert>> {
    let cache = &app.catalog;
    if let Some(concert) = cache.concert(concert_id) {
        return Ok(concert);
    }
    let concert: Arc<Concert> = Arc::new(
        sqlx::query_as("SELECT id, title, artist, description FROM concert WHERE id = $1")
            .bind(concert_id)
            .fetch_optional(&app.pg)
            .deadline()
            .await?
            .ok_or_else(concert_not_found)?,
    );
    cache.put_concert(concert.clone());
    Ok(concert)
}

/// A concert's schedules by start; read through the cache.
pub async fn schedules(app: &AppState, concert_id: i64) -> Result<Arc<Vec<Schedule>>> {
    let (pg, cache) = (&app.pg, &app.catalog);
    if let Some(list) = cache.schedules(concert_id) {
        return Ok(list);
    }
    let rows: Vec<(i64, DateTime<Utc>, i32)> = sqlx::query_as(
        "SELECT id, start_at, seat_count FROM concert_schedule
          WHERE concert_id = $1 ORDER BY start_at, id",
    )
    .bind(concert_id)
    .fetch_all(pg)
    .deadline()
    .await?;
    let list = Arc::new(
        rows.into_iter()
            .map(|(id, start_at, seat_count)| Schedule {
                id,
                concert_id,
                start_at,
                seat_count,
            })
            .collect::<Vec<_>>(),
    );
    cache.put_schedules(concert_id, list.clone());
    Ok(list)
}

pub fn concert_not_found() -> Error {
    Error::not_found("concert_not_found", "no concert with that id")
}

/// Creates a schedule and all of its seats in one transaction: the schedule row,
/// then every seat in one bulk `INSERT … SELECT` (no per-seat round trips).
pub async fn create_schedule(
    pg: &PgPool,
    concert_id: i64,
    start_at: DateTime<Utc>,
    plan: SeatPlan,
) -> Result<Schedule> {
    insert_schedule(pg, concert_id, start_at, plan)
        .deadline_of(BULK_DEADLINE)
        .await
}

async fn insert_schedule(
    pg: &PgPool,
    concert_id: i64,
    start_at: DateTime<Utc>,
    plan: SeatPlan,
) -> Result<Schedule> {
    let seat_count = plan.validate()? as i32;
    let mut tx = pg.begin().await?;
    // No concert row, no schedule: that is the 404, checked in the same statement.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO concert_schedule (concert_id, start_at, seat_count)
         SELECT id, $2, $3 FROM concert WHERE id = $1
         RETURNING id",
    )
    .bind(concert_id)
    .bind(start_at)
    .bind(seat_count)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(concert_not_found)?;
    match &plan {
        SeatPlan::Uniform { count, price } => {
            sqlx::query(
                "INSERT INTO seat (concert_schedule_id, seat_no, price)
                 SELECT $1, n, $2 FROM generate_series(1, $3::int) AS n",
            )
            .bind(id)
            .bind(price)
            .bind(*count as i32)
            .execute(&mut *tx)
            .await?;
        }
        SeatPlan::Listed(seats) => {
            let numbers: Vec<i32> = seats.iter().map(|s| s.seat_no as i32).collect();
            let prices: Vec<i64> = seats.iter().map(|s| s.price).collect();
            let sections: Vec<Option<String>> = seats.iter().map(|s| s.section.clone()).collect();
            sqlx::query(
                "INSERT INTO seat (concert_schedule_id, seat_no, price, section)
                 SELECT $1, n, p, s FROM unnest($2::int[], $3::bigint[], $4::text[]) AS t(n, p, s)",
            )
            .bind(id)
            .bind(&numbers)
            .bind(&prices)
            .bind(&sections)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(Schedule {
        id,
        concert_id,
        start_at,
        seat_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(seat_no: i64, price: i64) -> NewSeat {
        NewSeat {
            seat_no,
            price,
            section: None,
        }
    }

    #[test]
    fn seat_plans_are_bounded() {
        let ok = |p: SeatPlan| p.validate().is_ok();
        assert!(ok(SeatPlan::Uniform { count: 1, price: 1 }));
        assert!(ok(SeatPlan::Uniform {
            count: MAX_SEATS,
            price: MAX_UNIFORM_PRICE
        }));
        assert!(!ok(SeatPlan::Uniform { count: 0, price: 1 }));
        assert!(!ok(SeatPlan::Uniform {
            count: MAX_SEATS + 1,
            price: 1
        }));
        assert!(!ok(SeatPlan::Uniform { count: 5, price: 0 }));
        assert!(!ok(SeatPlan::Uniform {
            count: 5,
            price: MAX_UNIFORM_PRICE + 1
        }));
        assert!(ok(SeatPlan::Listed(vec![seat(1, 500), seat(7, 700)])));
        assert!(!ok(SeatPlan::Listed(vec![])));
        assert!(!ok(SeatPlan::Listed(vec![seat(1, 500), seat(1, 700)])));
        assert!(!ok(SeatPlan::Listed(vec![seat(0, 500)])));
        assert!(!ok(SeatPlan::Listed(vec![seat(1, 0)])));
        assert!(!ok(SeatPlan::Listed(vec![seat(
            i64::from(i32::MAX) + 1,
            1
        )])));
        let long = NewSeat {
            section: Some("x".repeat(51)),
            ..seat(1, 1)
        };
        assert!(!ok(SeatPlan::Listed(vec![long])));
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        let c = |t: &str| {
            NewConcert {
                title: t.into(),
                artist: None,
                description: None,
            }
            .validated()
        };
        assert_eq!(c("  Show ").unwrap().title, "Show");
        assert!(c("   ").is_err());
        assert!(c(&"é".repeat(200)).is_ok());
        assert!(c(&"é".repeat(201)).is_err());
    }
}
