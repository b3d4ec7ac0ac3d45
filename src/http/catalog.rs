//! The public catalog: concerts.

use super::extract::{AuthUser, Path, QueuePass};
use crate::AppState;
use crate::catalog::availability::{self, ScheduleAvailability};
use crate::catalog::{self, Concert, ConcertSummary};
use crate::error::Result;
use crate::queue::room::{self, RoomSummary};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize)]
pub struct Items<T> {
    items: Arc<Vec<T>>,
}

pub async fn list_concerts(
    State(app): State<Arc<AppState>>,
) -> Result<Json<Items<ConcertSummary>>> {
    let items = catalog::list_concerts(&app).await?;
    Ok(Json(Items { items }))
}

/// A concert and the state of its waiting room, at most about a second old.
#[derive(Serialize)]
pub struct ConcertPage {
    #[serde(flatten)]
    concert: Arc<Concert>,
    waiting_room: RoomSummary,
}

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

/// A concert's schedules by start, with seats neither sold nor held. Gated:
/// user auth, the concert's `404`, then the queue pass (in the same Redis round
/// trip as the availability).
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
