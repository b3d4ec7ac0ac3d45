//! `GET /openapi.json`: API.md's contract as an OpenAPI 3.1 document.
//!
//! The document is generated: each handler carries its `#[utoipa::path]`
//! (method, path, parameters, body, answers) next to its code, the types it
//! reads and answers with derive `ToSchema`, and [`ApiDoc`] lists the handlers.
//! What API.md says once for every operation is added here, by [`conventions`]:
//! the `X-Request-Id` header on every request and answer, `429` everywhere,
//! `408` and `413` wherever a body is read.
//!
//! Every error answer has the envelope `{"error": {"code", "message"}}`. Each
//! status an operation can answer with is one of the [`errors`] below, which
//! names the `code`s it can carry three ways: in its description (for people),
//! as an `enum` on `code` (for client generators and for schemathesis, which
//! checks every answer against it) and as `x-error-codes` (for tools).
//!
//! The document is built once, on its first request, and served as is.

use super::{admin, balance, booking, catalog, json_response, ops, queue, users, web};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "boxoffice",
        description = "A waiting queue and seat booking engine for traffic-spike ticket sales.\n\n\
            JSON bodies, UTF-8. Ids and money are integers (money in the smallest currency unit: won). \
            Timestamps are RFC 3339 in UTC.\n\n\
            Every error has the body `{\"error\": {\"code\": \"<snake_case>\", \"message\": \"<human readable>\"}}`; \
            each answer of an operation lists the codes it can carry (also as `x-error-codes`). \
            Malformed JSON, a missing field, a wrong type or a value out of range is `400 invalid_request`. \
            An unknown route is `404 not_found`, a wrong method `405 method_not_allowed`.\n\n\
            A gated request (user auth + `X-Queue-Token`) is checked in this order: user auth, a body or \
            path that does not parse (`400`), the resource the request names (its `404`), then the gate \
            (`401 queue_token_required`, `401 queue_token_invalid`, `401 queue_token_expired`, \
            `403 queue_token_not_active`, `403 queue_token_wrong_concert`), then the endpoint's own rules.",
        license(name = "MIT"),
    ),
    paths(
        ops::health,
        ops::ready,
        ops::metrics,
        document,
        web::page,
        admin::create_concert,
        admin::create_schedule,
        admin::waiting_room,
        admin::change_waiting_room,
        users::create_user,
        balance::balance,
        balance::charge,
        balance::history,
        catalog::list_concerts,
        catalog::concert,
        catalog::schedules,
        booking::seats,
        queue::join,
        queue::status,
        queue::leave,
        booking::hold,
        booking::reservation,
        booking::cancel,
        booking::pay,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "operations", description = "Liveness, readiness, metrics and this document"),
        (name = "fan page", description = "The fans' web page"),
        (name = "admin", description = "Concerts, schedules and waiting rooms (`X-Admin-Key`; `404` while the server has no `ADMIN_KEY`)"),
        (name = "users", description = "New users and their access tokens"),
        (name = "balance", description = "The prepaid balance (user auth)"),
        (name = "catalog", description = "Concerts and schedules, and the live seat map"),
        (name = "queue", description = "The waiting queue (user auth)"),
        (name = "booking", description = "Holds, reservations and payments"),
    ),
)]
pub struct ApiDoc;

/// The three credentials of API.md's "Authentication".
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT signed HS256 with the server's `AUTH_SECRET`: `sub` is the user id \
                         (a positive i64 as a decimal string), `exp` is required. `POST /users` \
                         mints one for a new user. Missing, malformed, badly signed or expired: \
                         `401 unauthorized`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "queue_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Queue-Token",
                "The queue pass: an ACTIVE token (a UUID) of the authenticated user for the \
                 concert being touched, from `POST /queue/tokens`.",
            ))),
        );
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Admin-Key",
                "The server's `ADMIN_KEY`. Wrong or missing: `401 unauthorized`; while the \
                 server has none, admin endpoints answer `404 not_found`.",
            ))),
        );
    }
}

/// The document, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document_value().to_string());

/// The document as JSON: what the annotations generate, with API.md's conventions.
pub fn document_value() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    conventions(&mut doc);
    doc
}

/// This document
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "This document: OpenAPI 3.1", body = serde_json::Value)),
)]
pub async fn document() -> Response {
    json_response(StatusCode::OK, DOCUMENT.as_str())
}

/// What API.md says once for every operation, written into each:
/// - `X-Request-Id`: a request may carry one; every answer does.
/// - `429 rate_limited` (with `Retry-After`) may answer any request.
/// - an operation that reads a body may answer `408` (it did not arrive in
///   time) and `413` (over 64 KiB).
///
/// Also: the error answers the operations refer to, and those of no operation
/// (an unknown route, a wrong method, a bug) for the record.
fn conventions(doc: &mut Value) {
    let components = &mut doc["components"];
    components["parameters"]["RequestId"] = json!({
        "name": "X-Request-Id",
        "in": "header",
        "required": false,
        "description": "The request's id, for the answer and the server's log lines. Kept when \
            it is 1 to 128 visible ASCII characters; any other value is replaced by one the \
            server makes (not refused).",
        "schema": {"type": "string"},
    });
    components["headers"]["RequestId"] = json!({
        "description": "The request's id: the client's own `X-Request-Id` when it sent a usable one, \
            else one the server made.",
        "required": true,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    });
    components["headers"]["RetryAfter"] = json!({
        "description": "Whole seconds to wait before retrying.",
        "required": true,
        "schema": {"type": "integer", "minimum": 1},
    });
    for (name, response) in errors::all() {
        components["responses"][name] = response;
    }
    components["responses"]["RateLimited"]["headers"]["Retry-After"] =
        json!({"$ref": "#/components/headers/RetryAfter"});
    let request_id = json!({"$ref": "#/components/parameters/RequestId"});
    let answer = |name: &str| json!({"$ref": format!("#/components/responses/{name}")});
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for operation in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in operation.values_mut().filter_map(Value::as_object_mut) {
            push(operation, "parameters", request_id.clone());
            let reads_body = operation.contains_key("requestBody");
            let responses = object(operation, "responses");
            responses.insert("429".into(), answer("RateLimited"));
            if reads_body {
                responses.insert("408".into(), answer("RequestTimeout"));
                responses.insert("413".into(), answer("PayloadTooLarge"));
            }
            for response in responses.values_mut() {
                with_request_id(response);
            }
        }
    }
    if let Some(responses) = doc["components"]["responses"].as_object_mut() {
        for response in responses.values_mut() {
            with_request_id(response);
        }
    }
}

/// Adds the `X-Request-Id` header to an answer (not to a reference to one).
fn with_request_id(response: &mut Value) {
    if let Some(response) = response.as_object_mut()
        && !response.contains_key("$ref")
    {
        object(response, "headers").insert(
            "X-Request-Id".into(),
            json!({"$ref": "#/components/headers/RequestId"}),
        );
    }
}

fn object<'a>(parent: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = parent.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

fn push(parent: &mut Map<String, Value>, key: &str, item: Value) {
    let slot = parent.entry(key).or_insert_with(|| json!([]));
    if let Some(list) = slot.as_array_mut() {
        list.push(item);
    }
}

/// The error answers of the document, one per status and set of codes an
/// operation can answer with. A handler's `#[utoipa::path]` names them:
/// `(status = 404, response = errors::ConcertNotFound)`.
pub mod errors {
    use serde_json::{Value, json};
    use utoipa::openapi::RefOr;
    use utoipa::openapi::response::Response;

    /// Every error code of the API: its status, and what it means.
    pub const CODES: &[(&str, u16, &str)] = &[
        (
            "invalid_request",
            400,
            "malformed JSON, a missing field, a wrong type, a value out of range, or a path or query parameter that does not parse",
        ),
        (
            "balance_limit",
            400,
            "the charge would take the balance past 9000000000000000",
        ),
        (
            "unauthorized",
            401,
            "the credentials are missing, malformed, badly signed or expired (the bearer token; `X-Admin-Key` on admin endpoints)",
        ),
        ("queue_token_required", 401, "no `X-Queue-Token`"),
        (
            "queue_token_invalid",
            401,
            "the queue token is unknown, malformed, or another user's",
        ),
        (
            "queue_token_expired",
            401,
            "the queue token expired or was already processed",
        ),
        (
            "insufficient_balance",
            402,
            "the balance does not cover the price",
        ),
        (
            "queue_token_not_active",
            403,
            "the queue token is still waiting",
        ),
        (
            "queue_token_wrong_concert",
            403,
            "the queue token is valid, but for another concert",
        ),
        (
            "not_found",
            404,
            "no such route (admin endpoints: the server has no `ADMIN_KEY`)",
        ),
        ("concert_not_found", 404, "no concert with that id"),
        ("schedule_not_found", 404, "no schedule with that id"),
        (
            "seat_not_found",
            404,
            "the schedule has no seat with that number",
        ),
        (
            "reservation_not_found",
            404,
            "no reservation of the user's with that id",
        ),
        (
            "queue_token_not_found",
            404,
            "no queue token of the user's with that id",
        ),
        (
            "method_not_allowed",
            405,
            "the route does not accept that method (`Allow` lists those it does)",
        ),
        (
            "request_timeout",
            408,
            "the request body did not arrive in time",
        ),
        ("seat_unavailable", 409, "the seat is held or sold"),
        (
            "hold_limit_reached",
            409,
            "the user already has `MAX_HOLDS_PER_USER` pending holds in that concert",
        ),
        (
            "already_confirmed",
            409,
            "the reservation is paid: it cannot be cancelled",
        ),
        (
            "payment_in_progress",
            409,
            "a payment of the reservation is in progress",
        ),
        ("already_paid", 409, "the reservation is already paid"),
        (
            "sold_out",
            409,
            "every seat of the concert is sold: no new token",
        ),
        (
            "idempotency_key_in_use",
            409,
            "the first request with this `Idempotency-Key` is still running",
        ),
        ("hold_expired", 410, "the hold expired or was cancelled"),
        (
            "payload_too_large",
            413,
            "the request body is larger than 64 KiB",
        ),
        (
            "idempotency_key_reused",
            422,
            "the same `Idempotency-Key` came with a different body",
        ),
        (
            "rate_limited",
            429,
            "too many requests from one user or one client address",
        ),
        ("internal", 500, "a bug: never the answer to bad input"),
        (
            "unavailable",
            503,
            "Redis or Postgres is not answering, or the request took too long; retry shortly",
        ),
    ];

    /// The status and meaning of `code`.
    pub fn code(code: &str) -> Option<(u16, &'static str)> {
        CODES
            .iter()
            .find(|(c, _, _)| *c == code)
            .map(|&(_, status, meaning)| (status, meaning))
    }

    /// An error answer: the envelope with `code` limited to `codes`.
    pub fn answer(summary: &str, codes: &[&str]) -> Value {
        let lines: Vec<String> = codes
            .iter()
            .map(|c| format!("- `{c}`: {}", code(c).map_or("", |(_, meaning)| meaning)))
            .collect();
        json!({
            "description": format!("{summary}\n\n{}", lines.join("\n")),
            "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": codes},
                        "message": {"type": "string", "description": "For people; never internals"},
                    },
                }},
            }}},
            "x-error-codes": codes,
        })
    }

    macro_rules! error_answers {
        ($($(#[$doc:meta])* $name:ident: $summary:literal => [$($code:literal),+ $(,)?];)+) => {
            $(
                $(#[$doc])*
                pub struct $name;

                impl<'r> utoipa::ToResponse<'r> for $name {
                    fn response() -> (&'r str, RefOr<Response>) {
                        // Only the reference is used: [`all`] puts the answer itself in the document.
                        (stringify!($name), RefOr::T(Response::new($summary)))
                    }
                }
            )+

            /// Every error answer: its name and the answer itself.
            pub fn all() -> Vec<(&'static str, Value)> {
                vec![$((stringify!($name), answer($summary, &[$($code),+]))),+]
            }
        };
    }

    error_answers! {
        InvalidRequest: "The request does not parse or is out of range" => ["invalid_request"];
        ChargeRefused: "The charge is refused" => ["invalid_request", "balance_limit"];
        Unauthorized: "Not authenticated" => ["unauthorized"];
        /// A gated request's `401`s: user auth, then the queue pass.
        GateUnauthorized: "Not authenticated, or no valid queue pass" => [
            "unauthorized", "queue_token_required", "queue_token_invalid", "queue_token_expired",
        ];
        GateForbidden: "The queue pass does not admit this request" => [
            "queue_token_not_active", "queue_token_wrong_concert",
        ];
        InsufficientBalance: "The balance does not cover the payment" => ["insufficient_balance"];
        /// Admin endpoints while the server has no `ADMIN_KEY`.
        AdminOff: "Admin is off" => ["not_found"];
        AdminConcertNotFound: "No such concert (or admin is off)" => ["not_found", "concert_not_found"];
        ConcertNotFound: "No such concert" => ["concert_not_found"];
        ScheduleNotFound: "No such schedule" => ["schedule_not_found"];
        SeatNotFound: "No such schedule or seat (checked in this order)" => [
            "schedule_not_found", "seat_not_found",
        ];
        ReservationNotFound: "No such reservation of the user's" => ["reservation_not_found"];
        QueueTokenNotFound: "No such token of the user's" => ["queue_token_not_found"];
        HoldRefused: "The seat cannot be held (checked in this order)" => [
            "seat_unavailable", "hold_limit_reached",
        ];
        CancelRefused: "The reservation cannot be released" => [
            "already_confirmed", "payment_in_progress",
        ];
        PaymentConflict: "The reservation cannot be paid now" => [
            "already_paid", "seat_unavailable", "idempotency_key_in_use",
        ];
        SoldOut: "Sold out" => ["sold_out"];
        IdempotencyKeyInUse: "A request with this key is still running" => ["idempotency_key_in_use"];
        IdempotencyKeyReused: "The key was used with another body" => ["idempotency_key_reused"];
        HoldExpired: "The hold is over" => ["hold_expired"];
        RequestTimeout: "The body did not arrive in time" => ["request_timeout"];
        PayloadTooLarge: "The body is too large" => ["payload_too_large"];
        RateLimited: "Too many requests: retry after `Retry-After` seconds" => ["rate_limited"];
        Unavailable: "A backing service is unavailable" => ["unavailable"];
        /// Of no operation: any path that is not one of the document's.
        UnknownRoute: "An unknown route (any path not in this document)" => ["not_found"];
        /// Of no operation: a method a path does not have.
        MethodNotAllowed: "A method the path does not have" => ["method_not_allowed"];
        /// Of no operation: a bug.
        Internal: "A bug" => ["internal"];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operations(doc: &Value) -> Vec<(String, &Map<String, Value>)> {
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                found.push((
                    format!("{} {path}", method.to_uppercase()),
                    operation.as_object().unwrap(),
                ));
            }
        }
        found
    }

    /// Follows a local `$ref` ("#/components/…").
    fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(to) => doc
                .pointer(to.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{to} does not resolve")),
            None => value,
        }
    }

    #[test]
    fn every_error_answer_carries_codes_of_its_own_status() {
        let doc = document_value();
        for (name, operation) in operations(&doc) {
            for (status, response) in operation["responses"].as_object().unwrap() {
                let response = resolve(&doc, response);
                let Some(codes) = response["x-error-codes"].as_array() else {
                    assert!(
                        status.starts_with('2'),
                        "{name} {status}: an error answer without codes"
                    );
                    continue;
                };
                let schema = &response["content"]["application/json"]["schema"];
                assert_eq!(
                    &schema["properties"]["error"]["properties"]["code"]["enum"],
                    &Value::from(codes.clone())
                );
                for code in codes {
                    let code = code.as_str().unwrap();
                    let (own, _) =
                        errors::code(code).unwrap_or_else(|| panic!("{code} is not in CODES"));
                    assert_eq!(status, &own.to_string(), "{name}: {code} under {status}");
                }
            }
        }
    }

    /// A path parameter that does not decode is a `400` from the extractor,
    /// whatever the parameter's type: `/queue/tokens/%FF` is not UTF-8.
    #[test]
    fn every_operation_with_a_path_parameter_lists_400() {
        let doc = document_value();
        for (name, operation) in operations(&doc) {
            let has_path_parameter = operation
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"));
            if has_path_parameter {
                let bad_request = &operation["responses"]["400"];
                let codes = &resolve(&doc, bad_request)["x-error-codes"];
                assert!(
                    codes
                        .as_array()
                        .is_some_and(|c| c.contains(&"invalid_request".into())),
                    "{name}: a path parameter, but no 400 invalid_request"
                );
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(to)) = map.get("$ref") {
                        refs.push(to);
                    }
                    map.values().for_each(|v| walk(v, refs));
                }
                Value::Array(list) => list.iter().for_each(|v| walk(v, refs)),
                _ => {}
            }
        }
        let doc = document_value();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(refs.len() > 50);
        for to in refs {
            assert!(doc.pointer(to.trim_start_matches('#')).is_some(), "{to}");
        }
    }

    #[test]
    fn the_waiting_room_ranges_are_the_servers() {
        use crate::queue::room::*;
        let doc = document_value();
        let fields = &doc["components"]["schemas"]["RoomPatch"]["properties"];
        for (field, (min, max)) in [
            ("admission_rate", RATE_RANGE),
            ("max_active", MAX_ACTIVE_RANGE),
            ("active_ttl_secs", ACTIVE_TTL_RANGE),
            ("waiting_idle_secs", IDLE_RANGE),
            ("hold_ttl_secs", HOLD_TTL_RANGE),
            ("max_holds_per_user", MAX_HOLDS_RANGE),
        ] {
            assert_eq!(fields[field]["minimum"], min, "{field}");
            assert_eq!(fields[field]["maximum"], max, "{field}");
        }
        assert_eq!(fields["message"]["maxLength"], MESSAGE_MAX_CHARS);
    }
}
