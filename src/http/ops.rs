//! Operations: liveness, readiness and metrics.

use crate::AppState;
use crate::error::{Error, envelope};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long readiness waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `200` while the process runs; touches nothing.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `200` when Redis and Postgres both answer, else `503 unavailable` naming which.
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
        Json(json!({"status": "ok", "redis": "ok", "postgres": "ok"})).into_response()
    } else {
        // Which dependency is down is for operators, and no internal detail.
        let message = format!("{} not answering", down.join(" and "));
        envelope(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &message)
    }
}

/// Prometheus text exposition.
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics().render(),
    )
}
