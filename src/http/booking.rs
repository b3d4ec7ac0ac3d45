//! Seat map, holds, reservations and payments.

use super::extract::{AuthUser, IdempotencyKey, Json, Path, Query, QueuePass, body_as};
use super::{json_response, replayed};
use crate::AppState;
use crate::booking::{self, ReservationView, payment};
use crate::catalog::SeatStatus;
use crate::error::{Error, Result};
use crate::idempotency::{self, Answer};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct SeatQuery {
    status: Option<String>,
}

/// `GET /schedules/{id}/seats[?status=AVAILABLE|HELD|SOLD]` (gated).
pub async fn seats(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    pass: QueuePass,
    Path(schedule_id): Path<i64>,
    Query(q): Query<SeatQuery>,
) -> Result<Response> {
    let only = match q.status.as_deref() {
        None => None,
        Some("AVAILABLE") => Some(SeatStatus::Available),
        Some("HELD") => Some(SeatStatus::Held),
        Some("SOLD") => Some(SeatStatus::Sold),
        Some(_) => {
            return Err(Error::bad_request("status must be AVAILABLE, HELD or SOLD"));
        }
    };
    let map = booking::seat_map(&app, user, pass.0.as_deref(), schedule_id).await?;
    Ok(json_response(StatusCode::OK, map.render(only)))
}

#[derive(Deserialize)]
pub struct HoldBody {
    schedule_id: i64,
    seat_no: i64,
}

/// `POST /reservations` (gated): holds a seat.
pub async fn hold(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    pass: QueuePass,
    Json(body): Json<HoldBody>,
) -> Result<(StatusCode, axum::Json<ReservationView>)> {
    if body.seat_no < 1 {
        return Err(Error::bad_request("seat_no must be a positive number"));
    }
    let view = booking::hold(
        &app,
        user,
        pass.0.as_deref(),
        body.schedule_id,
        body.seat_no,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// `GET /reservations/{id}` (owner only; no pass needed, so a receipt stays readable).
pub async fn reservation(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> Result<axum::Json<ReservationView>> {
    Ok(axum::Json(booking::reservation(&app, user, id).await?))
}

/// `DELETE /reservations/{id}` (owner only): releases a pending hold.
pub async fn cancel(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> Result<StatusCode> {
    booking::cancel(&app, user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct PayBody {
    reservation_id: i64,
}

/// `POST /payments` (gated, optional `Idempotency-Key`). A replay is answered
/// before the gate (API.md), so a retry after a lost answer gets its receipt
/// although the payment made its queue token PROCESSED.
pub async fn pay(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    pass: QueuePass,
    IdempotencyKey(key): IdempotencyKey,
    Json(raw): Json<serde_json::Value>,
) -> Result<Response> {
    let body: PayBody = body_as(&raw)?;
    let request = idempotency::Request {
        user_id: user,
        endpoint: "POST /payments",
        body: &raw,
        success_status: StatusCode::CREATED.as_u16(),
    };
    let paying = app.clone();
    match idempotency::once(&app.pg, &app.inflight, request, key.as_deref(), |claim| {
        payment::pay(paying, user, pass.0, body.reservation_id, claim)
    })
    .await?
    {
        Answer::Fresh(paid) => Ok((StatusCode::CREATED, axum::Json(paid)).into_response()),
        Answer::Replay(answer) => Ok(replayed(answer)),
    }
}
