//! Balance, charge and history of the authenticated user.

use super::extract::{AuthUser, IdempotencyKey, Json, Query, RawBody, body_as};
use super::openapi::errors;
use super::replayed;
use crate::AppState;
use crate::error::Result;
use crate::idempotency::{self, Answer};
use crate::limits::{self, Limit};
use crate::money::{self, Balance, HistoryPage};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

/// The user's balance
///
/// 0 for a user boxoffice has not seen yet.
#[utoipa::path(
    get,
    path = "/balance",
    tag = "balance",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The balance", body = Balance),
        (status = 401, response = errors::Unauthorized),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn balance(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
) -> Result<axum::Json<Balance>> {
    Ok(axum::Json(money::balance(&app.pg, user).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChargeBody {
    /// Won to add.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    amount: i64,
}

/// Charges the balance
///
/// With an `Idempotency-Key`, a retry gets the first answer again and charges
/// once.
#[utoipa::path(
    post,
    path = "/balance/charge",
    operation_id = "charge_balance",
    tag = "balance",
    security(("bearer" = [])),
    params(IdempotencyKey),
    request_body = ChargeBody,
    responses(
        (status = 200, description = "The balance after the charge (or the first answer again, for a retry with the same `Idempotency-Key`)", body = Balance),
        (status = 400, response = errors::ChargeRefused),
        (status = 401, response = errors::Unauthorized),
        (status = 409, response = errors::IdempotencyKeyInUse),
        (status = 422, response = errors::IdempotencyKeyReused),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn charge(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    Json(RawBody(raw)): Json<RawBody>,
) -> Result<Response> {
    let body: ChargeBody = body_as(&raw)?;
    money::validate_charge(body.amount)?;
    limits::check_user(&app, Limit::Charge, user).await?;
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Items per page (default 20).
    #[param(value_type = i64, required = false, minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// The `next_before_id` of the previous page: items older than it.
    #[param(value_type = i64, required = false, minimum = 1)]
    before_id: Option<i64>,
}

/// The user's balance movements, newest first
///
/// A page at a time: pass a page's `next_before_id` as `before_id` for the
/// next (older) one.
#[utoipa::path(
    get,
    path = "/balance/history",
    operation_id = "balance_history",
    tag = "balance",
    security(("bearer" = [])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "One page of the history", body = HistoryPage),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn history(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Query(q): Query<HistoryQuery>,
) -> Result<axum::Json<HistoryPage>> {
    Ok(axum::Json(
        money::history(&app.pg, user, q.limit, q.before_id).await?,
    ))
}
