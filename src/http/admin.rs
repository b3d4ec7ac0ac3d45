//! Admin: creating concerts and schedules, and steering each concert's waiting
//! room (`X-Admin-Key`).

use super::extract::{Admin, Json, Path};
use super::openapi::errors;
use crate::AppState;
use crate::catalog::{self, NewConcert, NewSeat, SeatPlan};
use crate::error::{Error, Result};
use crate::queue::room::{self, RoomPatch, RoomView};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateConcert {
    /// Trimmed; 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    title: String,
    #[schema(max_length = 200)]
    artist: Option<String>,
    #[schema(max_length = 10_000)]
    description: Option<String>,
}

/// Creates a concert
#[utoipa::path(
    post,
    path = "/admin/concerts",
    tag = "admin",
    security(("admin_key" = [])),
    request_body = CreateConcert,
    responses(
        (status = 201, description = "The new concert", body = catalog::Concert),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 404, response = errors::AdminOff),
        (status = 503, response = errors::Unavailable),
    ),
)]
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

/// Either `seat_count` and `price`, or `seats`. Read into one struct so that a
/// bad field is named; the document shows the two shapes ([`NewSchedule`]).
#[derive(Deserialize)]
pub struct CreateSchedule {
    start_at: String,
    seat_count: Option<i64>,
    price: Option<i64>,
    seats: Option<Vec<SeatBody>>,
}

/// A new schedule: `seat_count` seats numbered from 1 at one `price`, or the
/// `seats` listed (seat numbers unique within the schedule).
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the document's view of `CreateSchedule`
pub enum NewSchedule {
    Uniform {
        start_at: chrono::DateTime<chrono::Utc>,
        #[schema(minimum = 1, maximum = 100_000)]
        seat_count: i64,
        #[schema(minimum = 1, maximum = 100_000_000)]
        price: i64,
    },
    Listed {
        start_at: chrono::DateTime<chrono::Utc>,
        #[schema(min_items = 1, max_items = 100_000)]
        seats: Vec<SeatBody>,
    },
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SeatBody {
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    seat_no: i64,
    #[schema(minimum = 1, maximum = 9_000_000_000_000_000_i64)]
    price: i64,
    #[schema(max_length = 50)]
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

/// Creates a schedule of a concert, with its seats
///
/// All the seats are written in one statement: a 100 000-seat stadium is one
/// request. The concert's waiting room counts the new seats (and is no longer
/// SOLD_OUT).
#[utoipa::path(
    post,
    path = "/admin/concerts/{concert_id}/schedules",
    tag = "admin",
    security(("admin_key" = [])),
    params(("concert_id" = i64, Path, example = 1)),
    request_body = NewSchedule,
    responses(
        (status = 201, description = "The new schedule", body = catalog::Schedule),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 404, response = errors::AdminConcertNotFound),
        (status = 503, response = errors::Unavailable),
    ),
)]
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

/// A concert's waiting room: its settings, state and counts
#[utoipa::path(
    get,
    path = "/admin/concerts/{concert_id}/waiting-room",
    tag = "admin",
    security(("admin_key" = [])),
    params(("concert_id" = i64, Path, example = 1)),
    responses(
        (status = 200, description = "The room's settings, state and counts", body = RoomView),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 404, response = errors::AdminConcertNotFound),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn waiting_room(
    _: Admin,
    State(app): State<Arc<AppState>>,
    Path(concert_id): Path<i64>,
) -> Result<axum::Json<RoomView>> {
    Ok(axum::Json(room::read(&app, concert_id).await?))
}

/// Changes a concert's waiting room, live
///
/// Any subset of the settings; a bad value, a wrong type or an unknown field
/// is a `400` and changes nothing. The change takes effect on every server
/// within one admission tick (at most 1 s); a new `hold_ttl_secs` applies to
/// holds taken after it, a new `active_ttl_secs` to tokens admitted after it.
#[utoipa::path(
    patch,
    path = "/admin/concerts/{concert_id}/waiting-room",
    tag = "admin",
    security(("admin_key" = [])),
    params(("concert_id" = i64, Path, example = 1)),
    request_body = RoomPatch,
    responses(
        (status = 200, description = "The room as changed (the same body as GET)", body = RoomView),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 404, response = errors::AdminConcertNotFound),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn change_waiting_room(
    _: Admin,
    State(app): State<Arc<AppState>>,
    Path(concert_id): Path<i64>,
    Json(patch): Json<RoomPatch>,
) -> Result<axum::Json<RoomView>> {
    let change = patch.checked()?;
    Ok(axum::Json(room::change(&app, concert_id, change).await?))
}
