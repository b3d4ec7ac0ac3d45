//! The public catalog: concerts.

use super::extract::{AuthUser, Path, QueuePass};
use crate::AppState;
use crate::catalog::availability::{self, ScheduleAvailability};
use crate::catalog::{self, Concert, ConcertSummary};
use crate::error::Result;
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

pub async fn concert(
    State(app): State<Arc<AppState>>,
    Path(concert_id): Path<i64>,
) -> Result<Json<Arc<Concert>>> {
    Ok(Json(catalog::concert(&app, concert_id).await?))
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
