//! Balance, charge and history of the authenticated user.

use super::extract::{AuthUser, IdempotencyKey, Json, Query, body_as};
use super::replayed;
use crate::AppState;
use crate::error::Result;
use crate::idempotency::{self, Answer};
use crate::money::{self, Balance, HistoryPage};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

pub async fn balance(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
) -> Result<axum::Json<Balance>> {
    Ok(axum::Json(money::balance(&app.pg, user).await?))
}

#[derive(Deserialize)]
pub struct ChargeBody {
    amount: i64,
}

/// `POST /balance/charge` (optional `Idempotency-Key`).
pub async fn charge(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    Json(raw): Json<serde_json::Value>,
) -> Result<Response> {
    let body: ChargeBody = body_as(&raw)?;
    money::validate_charge(body.amount)?;
    let request = idempotency::Request {
        user_id: user,
        endpoint: "POST /balance/charge",
        body: &raw,
        success_status: axum::http::StatusCode::OK.as_u16(),
    };
    let pg = app.pg.clone();
    match idempotency::once(&app.pg, &app.inflight, request, key.as_deref(), |claim| {
        money::charge(pg, user, body.amount, claim)
    })
    .await?
    {
        Answer::Fresh(balance) => Ok(axum::Json(balance).into_response()),
        Answer::Replay(answer) => Ok(replayed(answer)),
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
    before_id: Option<i64>,
}

pub async fn history(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<HistoryPage>> {
    Ok(axum::Json(
        money::history(&app.pg, user, q.limit, q.before_id).await?,
    ))
}
