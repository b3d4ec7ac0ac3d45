//! Request extractors that answer every rejection with the API's error body:
//! JSON bodies, path and query parameters, the user's bearer token, the admin key
//! the `Idempotency-Key` header and the client's address.

use crate::AppState;
use crate::error::Error;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// A JSON body. The content type is not insisted on (clients that forget the
/// header are common under load tools); an empty body reads as `{}`, so `POST
/// /users` may be sent with none. A body still incomplete after
/// `HTTP_BODY_TIMEOUT_SECS` is a `408` (and its connection is closed: see
/// `http::server`).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, app: &Arc<AppState>) -> Result<Self, Error> {
        let bytes =
            tokio::time::timeout(app.config.http.body_timeout, Bytes::from_request(req, app))
                .await
                .map_err(|_| Error::RequestTimeout)?
                .map_err(|e: BytesRejection| {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        Error::PayloadTooLarge
                    } else {
                        Error::bad_request("the request body could not be read")
                    }
                })?;
        parse(&bytes).map(Json)
    }
}

/// Parses a JSON body into `T`, with a message that says what was wrong.
///
/// Every body of the API is a JSON object. That is checked first because serde's
/// derived structs also accept a JSON array (`[5]` would read as `{"amount": 5}`).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let bytes: &[u8] = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => b"{}",
        Some(b'{') => bytes,
        Some(_) => return Err(Error::bad_request("the request body must be a JSON object")),
    };
    if has_escaped_nul(bytes) {
        // Postgres cannot store U+0000 in text; refuse it here as the bad input it is.
        return Err(Error::bad_request(
            "strings may not contain the NUL character",
        ));
    }
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::bad_request(format!("malformed JSON: {inner}"))
        } else {
            Error::bad_request(explain(&path, &inner.to_string()))
        }
    })?;
    json.end()
        .map_err(|e| Error::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// A JSON body kept as it came (to compare an idempotent retry with it), read
/// with the rule every other body has: a key given twice in one object is a
/// `400` (a plain `serde_json::Value` keeps the last one silently).
#[derive(Debug)]
pub struct RawBody(pub serde_json::Value);

impl<'de> serde::Deserialize<'de> for RawBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys).map(RawBody)
    }
}

struct NoDuplicateKeys;

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(RawBody(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(items.into())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate field `{key}`"
                )));
            }
            let RawBody(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(object.into())
    }
}

/// Reads an already parsed JSON body as `T` (for handlers that also keep the
/// body as it came, e.g. to compare an idempotent retry with it).
pub fn body_as<T: DeserializeOwned>(body: &serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        Error::bad_request(explain(&path, &e.into_inner().to_string()))
    })
}

/// Says in the API's words what serde found wrong with field `path`.
fn explain(path: &str, serde_message: &str) -> String {
    // serde_json ends data errors with " at line L column C": not useful here.
    let message = serde_message
        .split(" at line ")
        .next()
        .unwrap_or(serde_message);
    let field = if path.is_empty() || path == "." {
        "the body"
    } else {
        path
    };
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        return if field == "the body" {
            format!("{name} is required")
        } else {
            format!("{field}.{name} is required")
        };
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return format!("{name} is not a field of this request");
    }
    let expected = message.rsplit("expected ").next().unwrap_or("");
    let is_int = [
        "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "isize",
    ]
    .contains(&expected);
    if is_int {
        return if message.starts_with("invalid value: integer") {
            format!("{field} is out of range")
        } else {
            format!("{field} must be a whole number")
        };
    }
    match expected {
        "a string" => format!("{field} must be a string"),
        "a boolean" => format!("{field} must be true or false"),
        "a sequence" => format!("{field} must be a list"),
        "a map" | "struct" => format!("{field} must be a JSON object"),
        _ if field == "the body" => message.to_owned(),
        _ => format!("{field}: {message}"),
    }
}

/// Whether a JSON text holds `\u0000` as an escape (not as an escaped backslash
/// followed by the letters `u0000`). A raw NUL byte is invalid JSON already.
fn has_escaped_nul(bytes: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\\' {
            backslashes += 1;
            continue;
        }
        if b == b'u' && backslashes % 2 == 1 && bytes[i + 1..].starts_with(b"0000") {
            return true;
        }
        backslashes = 0;
    }
    false
}

/// Path parameters; a value that does not parse is a `400`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        let rejection = match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => return Ok(Path(v)),
            Err(rejection) => rejection,
        };
        let what = |key: &str, value: &str, expected: &str| {
            if expected.starts_with('i') || expected.starts_with('u') {
                format!("{key} must be a whole number (got {value:?})")
            } else {
                format!("{key} is not valid (got {value:?})")
            }
        };
        let message = match &rejection {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::ParseErrorAtKey {
                    key,
                    value,
                    expected_type,
                } => what(key, value, expected_type),
                ErrorKind::ParseError {
                    value,
                    expected_type,
                } => what("the path parameter", value, expected_type),
                _ => format!("invalid path parameter: {}", rejection.body_text()),
            },
            _ => format!("invalid path parameter: {}", rejection.body_text()),
        };
        Err(Error::bad_request(message))
    }
}

/// Query parameters; a value that does not parse is a `400`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or_default();
        let form = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(form)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner().to_string();
                // Numbers in a query string are parsed from text: say so plainly.
                let message = if inner.contains("invalid digit") || inner.contains("cannot parse") {
                    format!("{path} must be a whole number")
                } else if inner.contains("too large") || inner.contains("too small") {
                    format!("{path} is out of range")
                } else {
                    explain(&path, &inner)
                };
                Error::bad_request(message)
            })
    }
}

/// The authenticated user, from `Authorization: Bearer <jwt>`.
#[derive(Clone, Copy, Debug)]
pub struct AuthUser(pub i64);

impl FromRequestParts<Arc<AppState>> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Error> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| Error::unauthorized("an Authorization: Bearer token is required"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| {
                Error::unauthorized("the Authorization header must be 'Bearer <token>'")
            })?;
        app.tokens
            .verify(token)
            .map(AuthUser)
            .map_err(|e| Error::unauthorized(e.to_string()))
    }
}

/// The client's address, for the limits of `crate::limits`: the TCP peer's,
/// or what a trusted proxy (`TRUSTED_PROXIES`) says in `X-Forwarded-For`.
/// A router served without the peer's address (an in-process test) reads as
/// the unspecified address.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::IpAddr);

impl FromRequestParts<Arc<AppState>> for ClientAddr {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Error> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientAddr(crate::limits::client_address(
            peer,
            forwarded.collect::<Vec<_>>().into_iter(),
            &app.config.limits.trusted_proxies,
        )))
    }
}

/// Proof of the admin key (`X-Admin-Key`). While `ADMIN_KEY` is unset the admin
/// endpoints do not exist: `404`.
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<AppState>) -> Result<Self, Error> {
        let Some(expected) = app.config.admin_key.as_deref() else {
            return Err(Error::no_route());
        };
        let given = parts.headers.get("x-admin-key").map(|v| v.as_bytes());
        match given {
            Some(given) if constant_time_eq(given, expected.as_bytes()) => Ok(Admin),
            _ => Err(Error::unauthorized("a valid X-Admin-Key is required")),
        }
    }
}

/// Compares secrets in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The optional `Idempotency-Key` header.
#[derive(utoipa::IntoParams)]
#[into_params(names("Idempotency-Key"), parameter_in = Header)]
pub struct IdempotencyKey(
    /// A retry with the same key (per user and endpoint, kept at least 24 h)
    /// and the same body gets the first successful answer again, with no
    /// second effect. 1 to 255 visible ASCII characters.
    #[param(value_type = String, required = false, pattern = "^[!-~]{1,255}$")]
    pub Option<String>,
);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .map_err(|_| Error::bad_request("Idempotency-Key must be visible ASCII"))?;
        crate::idempotency::validate_key(key)?;
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}

/// The `X-Queue-Token` header of a gated request, if any. The gate itself is
/// checked by the handler once it knows the concert of the resource, after the
/// resource's own `404` (API.md's order): `queue::check_pass`.
pub struct QueuePass(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for QueuePass {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        Ok(QueuePass(
            parts
                .headers
                .get("x-queue-token")
                .map(|v| v.to_str().unwrap_or("").to_owned()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Charge {
        #[allow(dead_code)]
        amount: i64,
    }

    #[test]
    fn bodies_parse_or_say_why() {
        assert!(parse::<Charge>(br#"{"amount": 5}"#).is_ok());
        for bad in [
            &b"{not json"[..],
            br#"{"amount":"5"}"#,
            br#"{"amount":1.5}"#,
            b"",
            b"[]",
        ] {
            let e = parse::<Charge>(bad).unwrap_err();
            assert_eq!(
                e.code(),
                "invalid_request",
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse::<serde_json::Value>(b"  ").is_ok());
        let nul = parse::<serde_json::Value>(br#"{"title": "a\u0000b"}"#).unwrap_err();
        assert_eq!(nul.code(), "invalid_request");
        assert!(
            parse::<serde_json::Value>(br#"{"title": "a\\u0000b"}"#).is_ok(),
            "an escaped backslash"
        );
        assert!(parse::<serde_json::Value>(br#"{"title": "a\\\u0000b"}"#).is_err());
        // One rule for a key given twice: 400, also where the body is kept raw.
        let twice = parse::<RawBody>(br#"{"amount": 1, "amount": 1000000}"#).unwrap_err();
        assert_eq!(twice.code(), "invalid_request");
        assert!(twice.to_string().contains("amount"), "{twice}");
        let nested = parse::<RawBody>(br#"{"a": [{"b": 1, "b": 2}]}"#).unwrap_err();
        assert_eq!(nested.code(), "invalid_request");
        let RawBody(kept) =
            parse::<RawBody>(br#"{"amount": 5, "x": [1, null, "s", 1.5]}"#).unwrap();
        assert_eq!(
            kept,
            serde_json::json!({"amount": 5, "x": [1, null, "s", 1.5]})
        );
    }

    #[test]
    fn messages_speak_the_apis_language() {
        let said = |body: &[u8]| parse::<Charge>(body).unwrap_err().to_string();
        assert_eq!(said(br#"{"amount":"5"}"#), "amount must be a whole number");
        assert_eq!(said(br#"{"amount":1.5}"#), "amount must be a whole number");
        assert_eq!(said(br#"{}"#), "amount is required");
        assert!(said(b"{not json").starts_with("malformed JSON"));
        assert!(said(br#"{"amount":5} x"#).starts_with("malformed JSON"));
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Schedule {
            seats: Vec<Seat>,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Seat {
            seat_no: u32,
        }
        let e = parse::<Schedule>(br#"{"seats":[{"seat_no":-1}]}"#).unwrap_err();
        assert_eq!(e.to_string(), "seats[0].seat_no is out of range");
        let e = parse::<Schedule>(br#"{"seats":5}"#).unwrap_err();
        assert_eq!(e.to_string(), "seats must be a list");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
