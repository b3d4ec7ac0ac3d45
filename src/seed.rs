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

/// The demo's title: how a later `seed-demo` finds it again.
pub const DEMO_TITLE: &str = "boxoffice demo night";

/// How long after `seed-demo` the demo's waiting room opens: long enough to
/// join its pre-queue and watch the countdown, the shuffle and the admission.
pub const DEMO_OPENS_IN: Duration = Duration::seconds(60);

/// Creates one concert with two schedules of 50 seats each, unless the database
/// already holds a concert; either way the demo concert's room (if there is
/// one) opens [`DEMO_OPENS_IN`] from now.
pub async fn seed_demo(pg: &PgPool) -> Result<Seeded> {
    let any: Option<i64> = sqlx::query_scalar("SELECT id FROM concert LIMIT 1")
        .fetch_optional(pg)
        .await?;
    if any.is_some() {
        schedule_demo_opening(pg).await?;
        return Ok(Seeded::AlreadyHadConcerts);
    }
    let concert = catalog::create_concert(
        pg,
        NewConcert {
            title: DEMO_TITLE.into(),
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
    schedule_demo_opening(pg).await?;
    Ok(Seeded::Created {
        concert_id: concert.id,
        schedule_ids,
    })
}

/// Sets the demo concert's room to open [`DEMO_OPENS_IN`] from now (a running
/// server picks the change up within seconds, a starting one at once).
async fn schedule_demo_opening(pg: &PgPool) -> Result<()> {
    sqlx::query(
        "INSERT INTO waiting_room (concert_id, opens_at)
         SELECT id, now() + $2 * interval '1 second' FROM concert WHERE title = $1
         ON CONFLICT (concert_id) DO UPDATE
             SET opens_at = EXCLUDED.opens_at, version = waiting_room.version + 1,
                 updated_at = now()",
    )
    .bind(DEMO_TITLE)
    .bind(DEMO_OPENS_IN.num_seconds())
    .execute(pg)
    .await?;
    Ok(())
}
