//! The public catalog: concerts.

use super::extract::{AuthUser, Path, QueuePass};
use super::openapi::errors;
use crate::AppState;
use crate::catalog::availability::{self, ScheduleAvailability};
use crate::catalog::{self, Concert, ConcertSummary};
use crate::error::Result;
use crate::queue::room::{self, RoomSummary};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Items<T: utoipa::ToSchema> {
    items: Arc<Vec<T>>,
}

/// Every concert, by id
#[utoipa::path(
    get,
    path = "/concerts",
    operation_id = "concerts",
    tag = "catalog",
    responses(
        (status = 200, description = "Every concert", body = Items<ConcertSummary>),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn list_concerts(
    State(app): State<Arc<AppState>>,
) -> Result<Json<Items<ConcertSummary>>> {
    let items = catalog::list_concerts(&app).await?;
    Ok(Json(Items { items }))
}

/// A concert and the state of its waiting room, at most about a second old.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConcertPage {
    #[serde(flatten)]
    concert: Arc<Concert>,
    waiting_room: RoomSummary,
}

/// A concert, with its waiting room's state
#[utoipa::path(
    get,
    path = "/concerts/{concert_id}",
    operation_id = "concert",
    tag = "catalog",
    params(("concert_id" = i64, Path, example = 1)),
    responses(
        (status = 200, description = "The concert; `waiting_room` is at most about a second old", body = ConcertPage),
        (status = 400, response = errors::InvalidRequest),
        (status = 404, response = errors::ConcertNotFound),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn concert(
    State(app): State<Arc<AppState>>,
    Path(concert_id): Path<i64>,
) -> Result<Json<ConcertPage>> {
    let concert = catalog::concert(&app, concert_id).await?;
    let waiting_room = room::summary(&app, concert_id).await?;
    Ok(Json(ConcertPage {
        concert,
        waiting_room,
    }))
}

/// A concert's schedules, with the seats still available
///
/// By start, each with its seats neither sold nor held. Gated: user auth, the
/// concert's `404`, then the queue pass (in the same Redis round trip as the
/// availability).
#[utoipa::path(
    get,
    path = "/concerts/{concert_id}/schedules",
    tag = "catalog",
    operation_id = "concert_schedules",
    security(("bearer" = [], "queue_token" = [])),
    params(("concert_id" = i64, Path, example = 1)),
    responses(
        (status = 200, description = "The schedules, by `start_at`", body = Items<ScheduleAvailability>),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::GateUnauthorized),
        (status = 403, response = errors::GateForbidden),
        (status = 404, response = errors::ConcertNotFound),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn schedules(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    pass: QueuePass,
    Path(concert_id): Path<i64>,
) -> Result<Json<Items<ScheduleAvailability>>> {
    let items =
        availability::schedules_available(&app, user, pass.0.as_deref(), concert_id).await?;
    Ok(Json(Items {
        items: Arc::new(items),
    }))
}
