//! Balance, charge and history of the authenticated user.

use super::extract::{AuthUser, IdempotencyKey, Json, Query};
use crate::AppState;
use crate::error::{Error, Result};
use crate::idempotency::{self, Begin};
use crate::money::{self, Balance, HistoryPage};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

const CHARGE_ENDPOINT: &str = "POST /balance/charge";

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

/// Charges the balance. With an `Idempotency-Key`, the charge and its stored
/// answer commit together, so a retry never charges twice.
pub async fn charge(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    Json(raw): Json<serde_json::Value>,
) -> Result<Response> {
    let body: ChargeBody = serde_json::from_value(raw.clone())
        .map_err(|e| Error::bad_request(format!("invalid request body: {e}")))?;
    money::validate_charge(body.amount)?;
    let Some(key) = key else {
        let balance = money::charge(&app.pg, user, body.amount).await?;
        record_charge(body.amount);
        return Ok(axum::Json(balance).into_response());
    };
    let claim = match idempotency::begin(&app.pg, user, CHARGE_ENDPOINT, &key, &raw).await? {
        Begin::Replay(answer) => {
            metrics::counter!("idempotent_replays_total", "endpoint" => CHARGE_ENDPOINT)
                .increment(1);
            return Ok(answer.into_response());
        }
        Begin::Proceed(claim) => claim,
    };
    let charged = async {
        let mut tx = app.pg.begin().await?;
        let balance = money::charge(&mut *tx, user, body.amount).await?;
        let answer = serde_json::to_string(&balance).map_err(|e| Error::Internal(e.to_string()))?;
        claim.complete(&mut tx, StatusCode::OK, &answer).await?;
        tx.commit().await?;
        Ok::<_, Error>(answer)
    }
    .await;
    match charged {
        Ok(answer) => {
            record_charge(body.amount);
            let mut response = (StatusCode::OK, answer).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        Err(e) => {
            claim.release(&app.pg).await;
            Err(e)
        }
    }
}

fn record_charge(amount: i64) {
    metrics::counter!("balance_charges_total").increment(1);
    metrics::counter!("balance_charged_won_total").increment(amount as u64);
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
