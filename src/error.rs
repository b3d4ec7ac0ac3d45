//! The one error type of the service and its mapping to the API's error body,
//! `{"error": {"code": "<snake_case>", "message": "<human readable>"}}`.
//!
//! Domain code returns [`Error`]; handlers pass it up with `?`. Dependency errors
//! are logged here with their detail and reach the client only as a generic
//! `503 unavailable` or `500 internal`: no SQL, no Redis reply, no stack trace.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::borrow::Cow;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: malformed JSON, a missing field, a value out of range.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: Cow<'static, str>,
    },
    #[error("{message}")]
    Unauthorized {
        code: &'static str,
        message: Cow<'static, str>,
    },
    #[error("{message}")]
    Forbidden {
        code: &'static str,
        message: Cow<'static, str>,
    },
    #[error("{message}")]
    NotFound {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// The balance does not cover a payment.
    #[error("{message}")]
    PaymentRequired {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// What the request names existed but is over (a lapsed hold).
    #[error("{message}")]
    Gone {
        code: &'static str,
        message: Cow<'static, str>,
    },
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: Cow<'static, str>,
    },
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: Cow<'static, str>,
    },
    #[error("request body is larger than 64 KiB")]
    PayloadTooLarge,
    /// The request body did not arrive in time (`HTTP_BODY_TIMEOUT_SECS`).
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// Over a rate limit (`crate::limits`): `429` with `Retry-After`.
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Redis or Postgres did not answer, or answered that it cannot serve now.
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected dependency answer. Logged in full, shown as `internal`.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Error::BadRequest {
            code: "invalid_request",
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Error::Unauthorized {
            code: "unauthorized",
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Error::NotFound {
            code,
            message: message.into(),
        }
    }

    /// The answer for an unknown route (and for admin routes while admin is off).
    pub fn no_route() -> Self {
        Self::not_found("not_found", "no such route")
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Error::Forbidden { .. } => StatusCode::FORBIDDEN,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            Error::Gone { .. } => StatusCode::GONE,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { code, .. }
            | Error::Unauthorized { code, .. }
            | Error::Forbidden { code, .. }
            | Error::NotFound { code, .. }
            | Error::PaymentRequired { code, .. }
            | Error::Gone { code, .. }
            | Error::Conflict { code, .. }
            | Error::Unprocessable { code, .. } => code,
            Error::PayloadTooLarge => "payload_too_large",
            Error::RequestTimeout => "request_timeout",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        }
    }

    /// The message a client may see.
    fn public_message(&self) -> Cow<'static, str> {
        match self {
            Error::Unavailable(_) => "a backing service is unavailable; retry shortly".into(),
            Error::Internal(_) => "internal error".into(),
            other => other.to_string().into(),
        }
    }
}

/// Marks a response whose body is already the API's error envelope, so the
/// safety-net layer in `http` leaves it alone.
#[derive(Clone, Copy, Debug)]
pub struct Enveloped;

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

/// Builds an error response with the API's envelope.
pub fn envelope(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::to_vec(&Body {
        error: Inner { code, message },
    })
    .unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.extensions_mut().insert(Enveloped);
    response
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match &self {
            Error::Unavailable(detail) => tracing::warn!(%detail, "dependency unavailable"),
            Error::Internal(detail) => tracing::error!(%detail, "internal error"),
            _ => {}
        }
        let mut response = envelope(self.status(), self.code(), &self.public_message());
        if let Error::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::Protocol(_) => {
                Error::Unavailable(format!("postgres: {e}"))
            }
            // 22021 / 22P05: text Postgres cannot store (a NUL byte). Input
            // validation refuses it first; this keeps any path that slips a 400.
            E::Database(db) if matches!(db.code().as_deref(), Some("22021" | "22P05")) => {
                Error::bad_request("the request holds characters that cannot be stored")
            }
            E::Database(db) if db.code().is_some_and(|c| is_transient_sqlstate(&c)) => {
                Error::Unavailable(format!("postgres: {e}"))
            }
            _ => Error::Internal(format!("postgres: {e}")),
        }
    }
}

/// SQLSTATEs that mean "cannot serve now" rather than "this request is wrong":
/// connection exceptions (08), insufficient resources (53), operator intervention
/// such as a shutdown or a statement timeout (57), serialization failures and
/// deadlocks (40), a lock not obtained within `lock_timeout` (55P03).
fn is_transient_sqlstate(code: &str) -> bool {
    ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c))
        || code == "3D000"
        || code == "55P03"
}

impl From<fred::error::Error> for Error {
    fn from(e: fred::error::Error) -> Self {
        use fred::error::ErrorKind as K;
        match e.kind() {
            K::IO | K::Timeout | K::Canceled | K::Backpressure | K::Cluster | K::Routing => {
                Error::Unavailable(format!("redis: {e}"))
            }
            // BUSY, LOADING, MASTERDOWN and OOM are server states that pass.
            // "Failed to route command." is fred's answer (kind Unknown) to a
            // command sent while no connection is up, between a Redis going
            // away and the reconnection: an outage, not a bug.
            // "Too many failed write attempts." is a command redirected
            // (MOVED/ASK while a cluster's slots move or after a failover)
            // with no attempt left: it was not run, as with an IO error.
            // "channel closed" is the answer to the commands in flight when
            // fred's connection task ends (its cluster router gave up while
            // slots moved; `store::redis::supervise` starts it again): like
            // an IO error, the command may or may not have run.
            _ if [
                "Failed to route",
                "Too many failed write attempts",
                "channel closed",
                "BUSY",
                "LOADING",
                "MASTERDOWN",
                "OOM",
                "READONLY",
                "TRYAGAIN",
            ]
            .iter()
            .any(|p| e.details().starts_with(p)) =>
            {
                Error::Unavailable(format!("redis: {e}"))
            }
            _ => Error::Internal(format!("redis: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependency_details_never_reach_the_client() {
        let e = Error::Internal("postgres: relation \"users\" does not exist".into());
        assert_eq!(e.public_message(), "internal error");
        let e = Error::Unavailable("redis: connection refused 127.0.0.1:6379".into());
        assert!(!e.public_message().contains("6379"));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "unavailable");
    }

    #[test]
    fn pool_timeouts_are_unavailable() {
        assert!(matches!(
            Error::from(sqlx::Error::PoolTimedOut),
            Error::Unavailable(_)
        ));
        assert!(is_transient_sqlstate("08006"));
        assert!(is_transient_sqlstate("57P01"));
        assert!(!is_transient_sqlstate("23505"));
    }

    /// fred's answers while Redis is away are 503s; a script's own error is not.
    #[test]
    fn redis_outage_answers_are_unavailable() {
        use fred::error::{Error as Fred, ErrorKind};
        for e in [
            Fred::new(ErrorKind::Unknown, "Failed to route command."),
            Fred::new(ErrorKind::Routing, "Failed to route command."),
            Fred::new(ErrorKind::IO, "Broken pipe"),
            Fred::new(ErrorKind::Unknown, "Too many failed write attempts."),
            Fred::new(ErrorKind::Unknown, "channel closed"),
            Fred::new(ErrorKind::Cluster, "CLUSTERDOWN The cluster is down"),
            Fred::new(
                ErrorKind::Unknown,
                "LOADING Redis is loading the dataset in memory",
            ),
        ] {
            assert!(matches!(Error::from(e), Error::Unavailable(_)));
        }
        let e = Fred::new(
            ErrorKind::Unknown,
            "ERR user_script:12: attempt to index a nil value",
        );
        assert!(matches!(Error::from(e), Error::Internal(_)));
    }
}
