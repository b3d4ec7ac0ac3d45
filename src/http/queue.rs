//! The waiting queue: join, poll, leave.

use super::extract::{AuthUser, Json, Path};
use crate::AppState;
use crate::error::Result;
use crate::queue::{self, TokenView};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct JoinBody {
    concert_id: i64,
}

/// `201` with a new token, or `200` with the user's live one.
pub async fn join(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Json(body): Json<JoinBody>,
) -> Result<(StatusCode, axum::Json<TokenView>)> {
    // The concert must exist (a cached read, so a spike of joins stays off Postgres).
    crate::catalog::concert(&app, body.concert_id).await?;
    let joined = queue::join(&app, user, body.concert_id).await?;
    let status = if joined.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(joined.view)))
}

pub async fn status(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(token): Path<String>,
) -> Result<axum::Json<TokenView>> {
    Ok(axum::Json(queue::status(&app, user, &token).await?))
}

pub async fn leave(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(token): Path<String>,
) -> Result<StatusCode> {
    queue::leave(&app, user, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
