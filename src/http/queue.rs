//! The waiting queue: join, poll, leave.

use super::extract::{AuthUser, Json, Path};
use super::openapi::errors;
use crate::AppState;
use crate::error::Result;
use crate::queue::{self, TokenView};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct JoinBody {
    #[schema(example = 1)]
    concert_id: i64,
}

/// Joins a concert's waiting room
///
/// `201` with a new token, or `200` with the user's live (WAITING or ACTIVE)
/// token for that concert. Joining again counts as a poll.
#[utoipa::path(
    post,
    path = "/queue/tokens",
    operation_id = "join_queue",
    tag = "queue",
    security(("bearer" = [])),
    request_body = JoinBody,
    responses(
        (status = 201, description = "A new token", body = TokenView),
        (status = 200, description = "The user's live token for that concert", body = TokenView),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 404, response = errors::ConcertNotFound),
        (status = 409, response = errors::SoldOut),
        (status = 503, response = errors::Unavailable),
    ),
)]
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

/// A token of the user's: its place, estimate and room
///
/// Reading a WAITING token counts as a poll (`WAITING_IDLE_SECS`).
#[utoipa::path(
    get,
    path = "/queue/tokens/{token}",
    operation_id = "queue_token",
    tag = "queue",
    security(("bearer" = [])),
    params(("token" = String, Path, format = "uuid")),
    responses(
        (status = 200, description = "The token", body = TokenView),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 404, response = errors::QueueTokenNotFound),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn status(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(token): Path<String>,
) -> Result<axum::Json<TokenView>> {
    Ok(axum::Json(queue::status(&app, user, &token).await?))
}

/// Leaves the queue or gives up the active slot
///
/// The user's pending holds for that concert are released; the token then
/// reads as EXPIRED.
#[utoipa::path(
    delete,
    path = "/queue/tokens/{token}",
    operation_id = "leave_queue",
    tag = "queue",
    security(("bearer" = [])),
    params(("token" = String, Path, format = "uuid")),
    responses(
        (status = 204, description = "Left"),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 404, response = errors::QueueTokenNotFound),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn leave(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(token): Path<String>,
) -> Result<StatusCode> {
    queue::leave(&app, user, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
