//! The public catalog: concerts.

use super::extract::Path;
use crate::AppState;
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
