//! Operations: liveness, readiness and metrics.

use super::openapi::errors;
use crate::AppState;
use crate::error::{Error, envelope};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The body of `GET /health`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
}

/// The body of `GET /ready` while both dependencies answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    #[schema(value_type = String, pattern = "^ok$")]
    status: &'static str,
    #[schema(value_type = String, pattern = "^ok$")]
    redis: &'static str,
    #[schema(value_type = String, pattern = "^ok$")]
    postgres: &'static str,
}

/// How long readiness waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Liveness
///
/// `200` while the process runs; touches nothing.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "The process runs", body = Health)),
)]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness
///
/// `200` when Redis and Postgres both answer, else `503 unavailable` naming which.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Redis and Postgres both answer", body = Readiness),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn ready(State(app): State<Arc<AppState>>) -> Response {
    let (redis, postgres) = tokio::join!(app.redis.ping(&app.keys, PROBE_TIMEOUT), async {
        tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(&app.pg))
            .await
            .map_err(|_| Error::Unavailable("postgres: readiness probe timed out".into()))?
            .map_err(Error::from)
    });
    let down: Vec<&str> = [("redis", redis.is_err()), ("postgres", postgres.is_err())]
        .into_iter()
        .filter_map(|(name, failed)| failed.then_some(name))
        .collect();
    if let Err(e) = redis.as_ref() {
        tracing::warn!(error = %e, "readiness: redis");
    }
    if let Err(e) = postgres.as_ref() {
        tracing::warn!(error = %e, "readiness: postgres");
    }
    if down.is_empty() {
        Json(Readiness {
            status: "ok",
            redis: "ok",
            postgres: "ok",
        })
        .into_response()
    } else {
        // Which dependency is down is for operators, and no internal detail.
        let message = format!("{} not answering", down.join(" and "));
        envelope(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &message)
    }
}

/// Metrics, in the Prometheus text exposition
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Every metric family, with `# HELP` and `# TYPE`", body = String, content_type = "text/plain")),
)]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics().render(),
    )
}
