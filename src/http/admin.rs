//! Admin: creating concerts and schedules, and steering each concert's waiting
//! room (`X-Admin-Key`).

use super::extract::{Admin, Json, Path};
use crate::AppState;
use crate::catalog::{self, NewConcert, NewSeat, SeatPlan};
use crate::error::{Error, Result};
use crate::queue::room::{self, RoomPatch, RoomView};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct CreateConcert {
    title: String,
    artist: Option<String>,
    description: Option<String>,
}

pub async fn create_concert(
    _: Admin,
    State(app): State<Arc<AppState>>,
    Json(body): Json<CreateConcert>,
) -> Result<(StatusCode, axum::Json<catalog::Concert>)> {
    let concert = catalog::create_concert(
        &app.pg,
        NewConcert {
            title: body.title,
            artist: body.artist,
            description: body.description,
        },
    )
    .await?;
    app.catalog.invalidate_list();
    Ok((StatusCode::CREATED, axum::Json(concert)))
}

/// Either `seat_count` and `price`, or `seats`.
#[derive(Deserialize)]
pub struct CreateSchedule {
    start_at: String,
    seat_count: Option<i64>,
    price: Option<i64>,
    seats: Option<Vec<SeatBody>>,
}

#[derive(Deserialize)]
pub struct SeatBody {
    seat_no: i64,
    price: i64,
    section: Option<String>,
}

impl CreateSchedule {
    fn plan(self) -> Result<SeatPlan> {
        match (self.seat_count, self.price, self.seats) {
            (Some(count), Some(price), None) => Ok(SeatPlan::Uniform { count, price }),
            (None, None, Some(seats)) => Ok(SeatPlan::Listed(
                seats
                    .into_iter()
                    .map(|s| NewSeat {
                        seat_no: s.seat_no,
                        price: s.price,
                        section: s.section,
                    })
                    .collect(),
            )),
            _ => Err(Error::bad_request(
                "give either seat_count and price, or seats (not both)",
            )),
        }
    }
}

pub async fn create_schedule(
    _: Admin,
    State(app): State<Arc<AppState>>,
    Path(concert_id): Path<i64>,
    Json(body): Json<CreateSchedule>,
) -> Result<(StatusCode, axum::Json<catalog::Schedule>)> {
    let start_at = crate::time::parse(&body.start_at)
        .ok_or_else(|| Error::bad_request("start_at must be an RFC 3339 timestamp"))?;
    let schedule = catalog::create_schedule(&app.pg, concert_id, start_at, body.plan()?).await?;
    app.catalog.invalidate_schedules(concert_id);
    // The room counts the new seats (and is no longer SOLD_OUT).
    room::schedules_changed(&app, concert_id).await;
    Ok((StatusCode::CREATED, axum::Json(schedule)))
}

/// `GET /admin/concerts/{id}/waiting-room`.
pub async fn waiting_room(
    _: Admin,
    State(app): State<Arc<AppState>>,
    Path(concert_id): Path<i64>,
) -> Result<axum::Json<RoomView>> {
    Ok(axum::Json(room::read(&app, concert_id).await?))
}

/// `PATCH /admin/concerts/{id}/waiting-room`: any subset of the settings; a
/// bad value, a wrong type or an unknown field is a `400` and changes nothing.
pub async fn change_waiting_room(
    _: Admin,
    State(app): State<Arc<AppState>>,
    Path(concert_id): Path<i64>,
    Json(patch): Json<RoomPatch>,
) -> Result<axum::Json<RoomView>> {
    let change = patch.checked()?;
    Ok(axum::Json(room::change(&app, concert_id, change).await?))
}
