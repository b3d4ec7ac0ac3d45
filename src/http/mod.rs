//! The HTTP surface: the routes of API.md and the layers every request passes.
//!
//! Handlers are thin: parse, call one domain function, map the result. Whatever
//! fails (a handler, an extractor, an unknown route, a wrong method, a body that
//! is too large, a timeout, a panic) answers with the API's error envelope.

mod admin;
mod balance;
mod booking;
mod catalog;
pub mod extract;
pub mod openapi;
mod ops;
mod queue;
pub mod server;
mod users;
mod web;

use crate::AppState;
use crate::config::REQUEST_TIMEOUT;
use crate::error::{Enveloped, Error, envelope};
use crate::idempotency::StoredAnswer;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{from_fn, map_response};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::any::Any;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// Request bodies over this size are refused with `413` (API.md).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(app: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/", get(web::page))
        .route("/assets/app.js", get(web::app_js))
        .route("/assets/app.css", get(web::app_css))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/admin/concerts", post(admin::create_concert))
        .route(
            "/admin/concerts/{concert_id}/schedules",
            post(admin::create_schedule),
        )
        .route(
            "/admin/concerts/{concert_id}/waiting-room",
            get(admin::waiting_room).patch(admin::change_waiting_room),
        )
        .route("/concerts", get(catalog::list_concerts))
        .route("/concerts/{concert_id}", get(catalog::concert))
        .route("/concerts/{concert_id}/schedules", get(catalog::schedules))
        .route("/schedules/{schedule_id}/seats", get(booking::seats))
        .route("/reservations", post(booking::hold))
        .route(
            "/reservations/{reservation_id}",
            get(booking::reservation).delete(booking::cancel),
        )
        .route("/payments", post(booking::pay))
        .route("/queue/tokens", post(queue::join))
        .route(
            "/queue/tokens/{token}",
            get(queue::status).delete(queue::leave),
        )
        .route("/users", post(users::create_user))
        .route("/balance", get(balance::balance))
        .route("/balance/charge", post(balance::charge))
        .route("/balance/history", get(balance::history))
        .fallback(|| async { Error::no_route() })
        .method_not_allowed_fallback(|| async {
            envelope(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not accept that method",
            )
        });
    with_layers(routes).with_state(app)
}

/// The layers every route passes, innermost first. `Router::layer` wraps each
/// route on its own, so every layer sees the matched route template. They go
/// on as two stacks, not five layers: each `Router::layer` boxes the route and
/// every request's future once more. (tower-http's three answer with bodies of
/// their own, the axum middleware wants axum's `Response`: the box between the
/// two stacks turns one into the other.)
fn with_layers<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(
            tower::ServiceBuilder::new()
                .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    REQUEST_TIMEOUT,
                ))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .layer(
            tower::ServiceBuilder::new()
                // Outermost, so it counts the status the client finally gets.
                .layer(from_fn(crate::telemetry::track_request))
                // Outside everything that may answer with a bare error body.
                .layer(map_response(envelope_bare_errors)),
        )
}

/// The safety net: an error response that some layer or library produced with a
/// bare body (a `413` from the body limit, a `503` from the timeout) gets the
/// API's envelope. Responses built by [`Error`] are marked and pass untouched.
async fn envelope_bare_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<Enveloped>().is_some()
    {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not accept that method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "request body is larger than 64 KiB")
        }
        StatusCode::REQUEST_TIMEOUT => {
            ("request_timeout", "the request body did not arrive in time")
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            ("unavailable", "the request took too long; retry shortly")
        }
        StatusCode::UNAUTHORIZED => ("unauthorized", "authentication is required"),
        s if s.is_server_error() => ("internal", "internal error"),
        _ => ("invalid_request", "the request could not be processed"),
    };
    let mut enveloped = envelope(status, code, message);
    // Keep what the original answer said beyond its body, e.g. `Allow` on a 405.
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            enveloped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    enveloped
}

/// A response whose body is JSON already rendered.
fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = (status, body.into()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The first answer to an idempotent request, sent again.
fn replayed(answer: StoredAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, answer.body);
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %detail, "request handler panicked");
    Error::Internal("handler panicked".into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(router: Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_panic_is_a_500_with_the_envelope() {
        let router = with_layers(Router::new().route(
            "/boom",
            get(|| async {
                if true {
                    panic!("secret detail");
                }
            }),
        ));
        let (status, body) = call(router, Request::get("/boom").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("secret detail"));
    }

    #[tokio::test]
    async fn bare_library_errors_get_the_envelope() {
        let router = with_layers(Router::new().route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        ));
        let big = vec![b'a'; MAX_BODY_BYTES + 1];
        let request = Request::post("/echo")
            .header(header::CONTENT_LENGTH, big.len())
            .body(Body::from(big))
            .unwrap();
        let (status, body) = call(router, request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "payload_too_large");
    }
}
