//! Seat map, holds, reservations and payments.

use super::extract::{AuthUser, IdempotencyKey, Json, Path, Query, QueuePass, RawBody, body_as};
use super::openapi::errors;
use super::{json_response, replayed};
use crate::AppState;
use crate::booking::{self, ReservationView, payment};
use crate::catalog::SeatStatus;
use crate::error::{Error, Result};
use crate::idempotency::{self, Answer};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeatQuery {
    /// Only the seats in this state.
    #[param(value_type = SeatStatus, required = false)]
    status: Option<String>,
}

/// The seat map of `GET /schedules/{id}/seats`, as the document shows it:
/// [`crate::catalog::SeatCatalog::render`] writes it by hand, for speed.
#[derive(utoipa::ToSchema)]
#[cfg_attr(test, derive(Deserialize))]
#[cfg_attr(test, serde(deny_unknown_fields))]
#[allow(dead_code)]
pub struct SeatMap {
    schedule_id: i64,
    /// By `seat_no`.
    seats: Vec<SeatMapSeat>,
}

/// One seat of a [`SeatMap`].
#[derive(utoipa::ToSchema)]
#[cfg_attr(test, derive(Deserialize))]
#[cfg_attr(test, serde(deny_unknown_fields))]
#[allow(dead_code)]
pub struct SeatMapSeat {
    seat_id: i64,
    #[schema(minimum = 1)]
    seat_no: i64,
    #[schema(minimum = 1)]
    price: i64,
    status: SeatStatus,
}

/// A schedule's seat map, with each seat's live status
///
/// Gated: user auth, the schedule's `404`, then the queue pass for the
/// schedule's concert.
#[utoipa::path(
    get,
    path = "/schedules/{schedule_id}/seats",
    operation_id = "seat_map",
    tag = "catalog",
    security(("bearer" = [], "queue_token" = [])),
    params(("schedule_id" = i64, Path, example = 1), SeatQuery),
    responses(
        (status = 200, description = "The seat map, by `seat_no`", body = SeatMap),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::GateUnauthorized),
        (status = 403, response = errors::GateForbidden),
        (status = 404, response = errors::ScheduleNotFound),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn seats(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    pass: QueuePass,
    Path(schedule_id): Path<i64>,
    headers: HeaderMap,
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
    let rendered = map.render(only);
    let gzipped = if accepts_gzip(&headers) {
        map.gzip(&rendered).await
    } else {
        None
    };
    let mut response = match gzipped {
        Some(body) => {
            let mut response = json_response(StatusCode::OK, body);
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        }
        None => json_response(StatusCode::OK, rendered.json),
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    Ok(response)
}

/// Whether `Accept-Encoding` takes gzip: its `gzip` entry if it names one,
/// else its `*` entry, with a q-value above 0 (none given is 1).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    for coding in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
            .next()
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case("gzip") {
            gzip = Some(q > 0.0);
        } else if name == "*" {
            any = Some(q > 0.0);
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct HoldBody {
    #[schema(example = 1)]
    schedule_id: i64,
    #[schema(minimum = 1, example = 7)]
    seat_no: i64,
}

/// Holds a seat
///
/// The seat is held for the user until `expires_at` (`HOLD_TTL_SECS`, or the
/// room's `hold_ttl_secs`). Gated: user auth, the schedule's and seat's
/// `404`s, the queue pass, then the seat's `409`s.
#[utoipa::path(
    post,
    path = "/reservations",
    operation_id = "hold_seat",
    tag = "booking",
    security(("bearer" = [], "queue_token" = [])),
    request_body = HoldBody,
    responses(
        (status = 201, description = "The hold: a PENDING reservation", body = ReservationView),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::GateUnauthorized),
        (status = 403, response = errors::GateForbidden),
        (status = 404, response = errors::SeatNotFound),
        (status = 409, response = errors::HoldRefused),
        (status = 503, response = errors::Unavailable),
    ),
)]
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

/// A reservation of the user's
///
/// No queue pass needed, so a buyer can read a receipt after the token is
/// processed. A hold that was cancelled, released or expired reads as
/// CANCELED for at least 24 hours.
#[utoipa::path(
    get,
    path = "/reservations/{reservation_id}",
    operation_id = "reservation",
    tag = "booking",
    security(("bearer" = [])),
    params(("reservation_id" = i64, Path, example = 1)),
    responses(
        (status = 200, description = "The reservation", body = ReservationView),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 404, response = errors::ReservationNotFound),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn reservation(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> Result<axum::Json<ReservationView>> {
    Ok(axum::Json(booking::reservation(&app, user, id).await?))
}

/// Releases a hold
///
/// A PENDING hold of the user's; one that already ended answers `204` too.
#[utoipa::path(
    delete,
    path = "/reservations/{reservation_id}",
    operation_id = "cancel_reservation",
    tag = "booking",
    security(("bearer" = [])),
    params(("reservation_id" = i64, Path, example = 1)),
    responses(
        (status = 204, description = "Released (or already ended)"),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::Unauthorized),
        (status = 404, response = errors::ReservationNotFound),
        (status = 409, response = errors::CancelRefused),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn cancel(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    Path(id): Path<i64>,
) -> Result<StatusCode> {
    booking::cancel(&app, user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PayBody {
    #[schema(example = 1)]
    reservation_id: i64,
}

/// Pays a hold from the balance
///
/// The seat becomes SOLD, the reservation CONFIRMED and the balance is reduced
/// by the price, in one transaction; when the user has no pending hold left in
/// the concert, the queue token becomes PROCESSED. With an `Idempotency-Key`,
/// a retry gets the first answer again, before the gate: a client that retries
/// after a lost answer gets its receipt though its token is PROCESSED.
#[utoipa::path(
    post,
    path = "/payments",
    operation_id = "pay",
    tag = "booking",
    security(("bearer" = [], "queue_token" = [])),
    params(IdempotencyKey),
    request_body = PayBody,
    responses(
        (status = 201, description = "Paid: the seat is SOLD, the reservation CONFIRMED (or the first answer again, for a retry with the same `Idempotency-Key`)", body = payment::Paid),
        (status = 400, response = errors::InvalidRequest),
        (status = 401, response = errors::GateUnauthorized),
        (status = 402, response = errors::InsufficientBalance),
        (status = 403, response = errors::GateForbidden),
        (status = 404, response = errors::ReservationNotFound),
        (status = 409, response = errors::PaymentConflict),
        (status = 410, response = errors::HoldExpired),
        (status = 422, response = errors::IdempotencyKeyReused),
        (status = 503, response = errors::Unavailable),
    ),
)]
pub async fn pay(
    State(app): State<Arc<AppState>>,
    AuthUser(user): AuthUser,
    pass: QueuePass,
    IdempotencyKey(key): IdempotencyKey,
    Json(RawBody(raw)): Json<RawBody>,
) -> Result<Response> {
    let body: PayBody = body_as(&raw)?;
    crate::limits::check_user(&app, crate::limits::Limit::Payment, user).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::SeatCatalog;
    use crate::catalog::seats::Seat;

    #[test]
    fn gzip_is_taken_when_accepted_and_not_refused() {
        let accepts = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            accepts_gzip(&headers)
        };
        assert!(accepts(&["gzip, deflate, br"]));
        assert!(accepts(&["br", "GZip;q=0.5"]));
        assert!(accepts(&["*"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["deflate, br"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip; q=0.000"]));
        assert!(!accepts(&["gzip;q=x"]));
        assert!(!accepts(&["xgzip"]));
        assert!(!accepts(&["gzip;q=0, *"]), "gzip named and refused");
        assert!(accepts(&["*;q=0.1, identity"]));
    }

    /// The seat map is rendered by hand: it must read as the document's [`SeatMap`].
    #[test]
    fn the_rendered_seat_map_is_the_documented_one() {
        let seats = (1..=3)
            .map(|n| Seat {
                id: 100 + n,
                seat_no: n as i32,
                price: 5000,
            })
            .collect();
        let catalog = SeatCatalog::new(7, 1, chrono::Utc::now(), seats);
        let statuses = [SeatStatus::Available, SeatStatus::Held, SeatStatus::Sold];
        for only in [None, Some(SeatStatus::Held)] {
            let map: SeatMap = serde_json::from_slice(&catalog.render(&statuses, only)).unwrap();
            assert_eq!(map.schedule_id, 7);
            assert_eq!(map.seats.len(), if only.is_some() { 1 } else { 3 });
        }
    }
}
