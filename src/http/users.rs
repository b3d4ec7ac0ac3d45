//! `POST /users`: a new user with a zero balance and an access token.

use super::extract::Json;
use crate::AppState;
use crate::auth::ACCESS_TOKEN_LIFETIME;
use crate::error::Result;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize)]
pub struct NewUser {
    id: i64,
    access_token: String,
    #[serde(serialize_with = "crate::time::serialize")]
    expires_at: DateTime<Utc>,
}

/// The body may be empty or `{}`; any JSON object is accepted and ignored.
pub async fn create_user(
    State(app): State<Arc<AppState>>,
    Json(_): Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, axum::Json<NewUser>)> {
    let id = crate::users::create_user(&app.pg).await?;
    let (access_token, expires_at) = app.tokens.mint(id, ACCESS_TOKEN_LIFETIME);
    Ok((
        StatusCode::CREATED,
        axum::Json(NewUser {
            id,
            access_token,
            expires_at,
        }),
    ))
}
