//! `POST /users`: a new user with a zero balance and an access token.

use super::extract::{ClientAddr, Json};
use super::openapi::errors;
use crate::AppState;
use crate::auth::ACCESS_TOKEN_LIFETIME;
use crate::error::Result;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize, utoipa::ToSchema)]
pub struct NewUser {
    id: i64,
    /// Send as `Authorization: Bearer <access_token>`; valid for 24 hours.
    access_token: String,
    #[serde(serialize_with = "crate::time::serialize")]
    expires_at: DateTime<Utc>,
}

/// Creates a user, with an access token
///
/// A new user with balance 0; the access token is valid for 24 hours. The body
/// may be empty or `{}`; any JSON object is accepted and ignored. At most
/// `USERS_PER_ADDRESS_PER_MIN` (burst `USERS_PER_ADDRESS_BURST`) per client
/// address.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body(
        content = std::collections::HashMap<String, serde_json::Value>,
        description = "`{}` or any JSON object (ignored); an empty body is read as `{}`",
    ),
    responses(
        (status = 201, description = "The new user and its access token", body = NewUser),
        (status = 400, response = errors::InvalidRequest),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn create_user(
    State(app): State<Arc<AppState>>,
    ClientAddr(client): ClientAddr,
    Json(_): Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<(StatusCode, axum::Json<NewUser>)> {
    crate::limits::check_address(&app, client).await?;
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
