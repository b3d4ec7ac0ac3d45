//! The demo concert that `make run` seeds into an empty database.

use crate::catalog::{self, NewConcert, SeatPlan};
use crate::error::Result;
use chrono::{Duration, Utc};
use sqlx::PgPool;

/// What the seed did.
pub enum Seeded {
    Created {
        concert_id: i64,
        schedule_ids: Vec<i64>,
    },
    AlreadyHadConcerts,
}

/// Creates one concert with two schedules of 50 seats each, unless the database
/// already holds a concert.
pub async fn seed_demo(pg: &PgPool) -> Result<Seeded> {
    let any: Option<i64> = sqlx::query_scalar("SELECT id FROM concert LIMIT 1")
        .fetch_optional(pg)
        .await?;
    if any.is_some() {
        return Ok(Seeded::AlreadyHadConcerts);
    }
    let concert = catalog::create_concert(
        pg,
        NewConcert {
            title: "boxoffice demo night".into(),
            artist: Some("The Queue Jumpers".into()),
            description: Some(
                "A demo concert seeded by `make run`: two evenings, 50 seats each.".into(),
            ),
        },
    )
    .await?;
    let first = (Utc::now() + Duration::days(30))
        .date_naive()
        .and_hms_opt(19, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let mut schedule_ids = Vec::new();
    for day in 0..2 {
        let schedule = catalog::create_schedule(
            pg,
            concert.id,
            first + Duration::days(day),
            SeatPlan::Uniform {
                count: 50,
                price: 50_000,
            },
        )
        .await?;
        schedule_ids.push(schedule.id);
    }
    Ok(Seeded::Created {
        concert_id: concert.id,
        schedule_ids,
    })
}
