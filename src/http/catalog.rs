//! The public catalog: concerts.

use super::extract::{AuthUser, Path, QueuePass};
use crate::AppState;
use crate::catalog::{self, Concert, ConcertSummary, ScheduleAvailability};
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
    let items = catalog::list_concerts(&app.pg, &app.catalog).await?;
    Ok(Json(Items { items }))
}

pub async fn concert(
    State(app): State<Arc<AppState>>,
    Path(concert_id): Path<i64>,
) -> Result<Json<Arc<Concert>>> {
    Ok(Json(
        catalog::concert(&app.pg, &app.catalog, concert_id).await?,
    ))
}

/// A concert's schedules by start, with seats still available. Gated: user auth,
/// the concert's `404`, then the queue pass.
pub async fn schedules(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    pass: QueuePass,
    Path(concert_id): Path<i64>,
) -> Result<Json<Items<ScheduleAvailability>>> {
    catalog::concert(&app.pg, &app.catalog, concert_id).await?;
    crate::queue::check_pass(&app.redis, &app.keys, user, pass.0.as_deref(), concert_id).await?;
    let items = Arc::new(catalog::schedules(&app.pg, concert_id).await?);
    Ok(Json(Items { items }))
}
