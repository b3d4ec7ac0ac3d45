//! Bad input, endpoint by endpoint: each gets its 4xx with the API's error body,
//! never a 5xx, and changes nothing in Postgres or Redis.

mod common;

use common::{ADMIN_KEY, TestApp, assert_error};
use reqwest::Method;

/// name, method, path, headers, then the answer it must get (status, error
/// code), then the body.
type Case<'a> = (
    &'a str,
    Method,
    &'a str,
    &'a [(&'a str, &'a str)],
    u16,
    &'a str,
    &'a str,
);

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

#[tokio::test]
async fn every_bad_input_is_a_clear_4xx_that_changes_nothing() {
    let app = TestApp::spawn().await;
    let (concert_id, _) = app.new_concert(5, 100).await;
    let (_, user) = app.new_user().await;
    app.charge(&user, 1000).await;
    let u = ("authorization", user.as_str());
    let a = ("x-admin-key", ADMIN_KEY);
    let key_256 = "k".repeat(256);
    let long_key = ("idempotency-key", key_256.as_str());
    let nul_key = ("idempotency-key", "nul");
    let schedules = format!("/admin/concerts/{concert_id}/schedules");
    let s = schedules.as_str();
    let big_title = format!(r#"{{"title":"{}"}}"#, "t".repeat(201));
    let long_artist = format!(r#"{{"title":"ok","artist":"{}"}}"#, "a".repeat(201));
    let long_section = format!(
        r#"{{"start_at":"2027-01-01T19:00:00Z","seats":[{{"seat_no":1,"price":5,"section":"{}"}}]}}"#,
        "s".repeat(51)
    );
    // One case a line: name, method, path, headers, then the answer it must get
    // (status, error code), then the body (last, as bodies vary most in width).
    #[rustfmt::skip]
    let cases: &[Case] = &[
        // POST /admin/concerts
        ("concert: malformed json",     POST, "/admin/concerts", &[a], 400, "invalid_request", "{title"),
        ("concert: no title",           POST, "/admin/concerts", &[a], 400, "invalid_request", "{}"),
        ("concert: empty title",        POST, "/admin/concerts", &[a], 400, "invalid_request", r#"{"title":""}"#),
        ("concert: blank title",        POST, "/admin/concerts", &[a], 400, "invalid_request", r#"{"title":"   "}"#),
        ("concert: title too long",     POST, "/admin/concerts", &[a], 400, "invalid_request", &big_title),
        ("concert: title a number",     POST, "/admin/concerts", &[a], 400, "invalid_request", r#"{"title":5}"#),
        ("concert: artist too long",    POST, "/admin/concerts", &[a], 400, "invalid_request", &long_artist),
        ("concert: artist a list",      POST, "/admin/concerts", &[a], 400, "invalid_request", r#"{"title":"x","artist":["a"]}"#),
        ("concert: body an array",      POST, "/admin/concerts", &[a], 400, "invalid_request", r#"[{"title":"x"}]"#),
        ("concert: no admin key",       POST, "/admin/concerts", &[],  401, "unauthorized",    r#"{"title":"x"}"#),
        ("concert: NUL in title",       POST, "/admin/concerts", &[a], 400, "invalid_request", r#"{"title":"a\u0000b"}"#),
        ("concert: NUL in description", POST, "/admin/concerts", &[a], 400, "invalid_request", r#"{"title":"ok","description":"\u0000"}"#),
        // POST /admin/concerts/{id}/schedules
        ("schedule: NUL in section",          POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":1,"price":5,"section":"\u0000"}]}"#),
        ("schedule: bad date",                POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"tomorrow","seat_count":5,"price":10}"#),
        ("schedule: a leap second",           POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-06-30T23:59:60Z","seat_count":5,"price":10}"#),
        ("schedule: year -1 in UTC",          POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"0000-01-01T00:00:00+01:00","seat_count":5,"price":10}"#),
        ("schedule: year 10000 in UTC",       POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"9999-12-31T23:30:00-01:00","seat_count":5,"price":10}"#),
        ("schedule: date only",               POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01","seat_count":5,"price":10}"#),
        ("schedule: no start",                POST, s,                                                &[a], 400, "invalid_request",   r#"{"seat_count":5,"price":10}"#),
        ("schedule: zero seats",              POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":0,"price":10}"#),
        ("schedule: too many seats",          POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":100001,"price":10}"#),
        ("schedule: zero price",              POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":0}"#),
        ("schedule: price too high",          POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":100000001}"#),
        ("schedule: count without price",     POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5}"#),
        ("schedule: both forms",              POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":1,"price":5,"seats":[{"seat_no":1,"price":5}]}"#),
        ("schedule: neither form",            POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z"}"#),
        ("schedule: empty seat list",         POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seats":[]}"#),
        ("schedule: duplicate seat",          POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":1,"price":5},{"seat_no":1,"price":7}]}"#),
        ("schedule: seat no zero",            POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":0,"price":5}]}"#),
        ("schedule: seat no huge",            POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":4294967296,"price":5}]}"#),
        ("schedule: seat price zero",         POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":1,"price":0}]}"#),
        ("schedule: seat without price",      POST, s,                                                &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":1}]}"#),
        ("schedule: section too long",        POST, s,                                                &[a], 400, "invalid_request",   &long_section),
        ("schedule: concert id not a number", POST, "/admin/concerts/abc/schedules",                  &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":10}"#),
        ("schedule: concert id overflows",    POST, "/admin/concerts/99999999999999999999/schedules", &[a], 400, "invalid_request",   r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":10}"#),
        ("schedule: unknown concert",         POST, "/admin/concerts/987654321/schedules",            &[a], 404, "concert_not_found", r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":10}"#),
        ("schedule: no admin key",            POST, s,                                                &[],  401, "unauthorized",      r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":10}"#),
        // GET /concerts/{id}
        ("concert read: id not a number", GET, "/concerts/x1", &[], 400, "invalid_request",   ""),
        ("concert read: unknown",         GET, "/concerts/0",  &[], 404, "concert_not_found", ""),
        ("concert read: negative",        GET, "/concerts/-5", &[], 404, "concert_not_found", ""),
        // POST /users
        ("users: malformed json", POST, "/users", &[], 400, "invalid_request", "{"),
        ("users: not an object",  POST, "/users", &[], 400, "invalid_request", "[]"),
        // GET, DELETE /queue/tokens/{token}: a token that is not UTF-8 once decoded
        ("queue token read: not UTF-8",  GET,    "/queue/tokens/%FF", &[u], 400, "invalid_request", ""),
        ("queue token leave: not UTF-8", DELETE, "/queue/tokens/%FF", &[u], 400, "invalid_request", ""),
        // GET /balance
        ("balance: no token", GET, "/balance", &[], 401, "unauthorized", ""),
        // POST /balance/charge
        ("charge: malformed json",                      POST, "/balance/charge", &[u],           400, "invalid_request", "{not json"),
        ("charge: amount given twice",                  POST, "/balance/charge", &[u],           400, "invalid_request", r#"{"amount":1,"amount":1000}"#),
        ("payment: reservation given twice",            POST, "/payments",       &[u],           400, "invalid_request", r#"{"reservation_id":1,"reservation_id":2}"#),
        ("charge: no amount",                           POST, "/balance/charge", &[u],           400, "invalid_request", "{}"),
        ("charge: empty body",                          POST, "/balance/charge", &[u],           400, "invalid_request", ""),
        ("charge: amount a string",                     POST, "/balance/charge", &[u],           400, "invalid_request", r#"{"amount":"100"}"#),
        ("charge: amount a float",                      POST, "/balance/charge", &[u],           400, "invalid_request", r#"{"amount":1.5}"#),
        ("charge: amount zero",                         POST, "/balance/charge", &[u],           400, "invalid_request", r#"{"amount":0}"#),
        ("charge: amount negative",                     POST, "/balance/charge", &[u],           400, "invalid_request", r#"{"amount":-5}"#),
        ("charge: amount over a billion",               POST, "/balance/charge", &[u],           400, "invalid_request", r#"{"amount":1000000001}"#),
        ("charge: amount past i64",                     POST, "/balance/charge", &[u],           400, "invalid_request", r#"{"amount":1180591620717411303424}"#),
        ("charge: amount in an array",                  POST, "/balance/charge", &[u],           400, "invalid_request", "[100]"),
        ("charge: bad idempotency key",                 POST, "/balance/charge", &[u, long_key], 400, "invalid_request", r#"{"amount":5}"#),
        ("charge: NUL in an unknown field, with a key", POST, "/balance/charge", &[u, nul_key],  400, "invalid_request", r#"{"amount":5,"x":"\u0000"}"#),
        ("charge: no token",                            POST, "/balance/charge", &[],            401, "unauthorized",    r#"{"amount":5}"#),
        // GET /balance/history
        ("history: limit zero",       GET, "/balance/history?limit=0",     &[u], 400, "invalid_request", ""),
        ("history: limit 101",        GET, "/balance/history?limit=101",   &[u], 400, "invalid_request", ""),
        ("history: limit a word",     GET, "/balance/history?limit=ten",   &[u], 400, "invalid_request", ""),
        ("history: before_id a word", GET, "/balance/history?before_id=x", &[u], 400, "invalid_request", ""),
        ("history: before_id zero",   GET, "/balance/history?before_id=0", &[u], 400, "invalid_request", ""),
        ("history: no token",         GET, "/balance/history",             &[],  401, "unauthorized",    ""),
        // Anywhere
        ("unknown route", GET,   "/nowhere",  &[], 404, "not_found",          ""),
        ("wrong method",  PATCH, "/concerts", &[], 405, "method_not_allowed", ""),
    ];
    let before = (app.table_counts().await, app.redis_keys().await.len());
    for (name, method, path, headers, status, code, body) in cases {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .copied()
            .chain([("content-type", "application/json")])
            .collect();
        let got = app
            .raw(method.clone(), path, &headers, body.as_bytes().to_vec())
            .await;
        assert!(got.0.as_u16() < 500, "{name}: a 5xx for bad input: {got:?}");
        assert_eq!(got.0.as_u16(), *status, "{name}: {}", got.1);
        assert_error(&got, *status, code);
    }
    let after = (app.table_counts().await, app.redis_keys().await.len());
    assert_eq!(before, after, "bad input changed state");
    app.assert_ledger().await;
}
