//! `GET /concerts/{id}/schedules`: a concert's schedules by start, each with the
//! seats neither sold nor held, read from the same Redis state as the seat map
//! with the queue pass folded in: one round trip.

use super::Schedule;
use crate::AppState;
use crate::error::Result;
use crate::queue::gate;
use crate::store::scripts::{self, Script};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A schedule as the booking pages list it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleAvailability {
    pub id: i64,
    #[serde(serialize_with = "crate::time::serialize")]
    pub start_at: DateTime<Utc>,
    pub seat_count: i32,
    pub available_seats: i64,
}

/// The concert's schedules with their live availability (gated: the concert's
/// `404` first, then the pass, API.md's order).
pub async fn schedules_available(
    app: &AppState,
    user_id: i64,
    pass: Option<&str>,
    concert_id: i64,
) -> Result<Vec<ScheduleAvailability>> {
    super::concert(app, concert_id).await?;
    let token = gate::pass_for(app, user_id, pass, concert_id).await?;
    let list = super::schedules(app, concert_id).await?;
    let ids: Vec<i64> = list.iter().map(|s| s.id).collect();
    let taken = scripts::Availability {
        keys: &app.keys.booking(concert_id),
        token: &token,
        user_id,
        schedule_ids: &ids,
    }
    .run(&app.redis)
    .await?
    .map_err(gate::refused)?;
    crate::booking::count_lapsed(taken.lapsed);
    if taken.taken.len() != list.len() {
        return Err(crate::error::Error::Internal(format!(
            "availability: {} counts for {} schedules",
            taken.taken.len(),
            list.len()
        )));
    }
    Ok(list
        .iter()
        .zip(taken.taken)
        .map(|(s, taken): (&Schedule, i64)| ScheduleAvailability {
            id: s.id,
            start_at: s.start_at,
            seat_count: s.seat_count,
            available_seats: (i64::from(s.seat_count) - taken).max(0),
        })
        .collect())
}
