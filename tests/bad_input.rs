//! Bad input, endpoint by endpoint: each gets its 4xx with the API's error body,
//! never a 5xx, and changes nothing in Postgres or Redis.

mod common;

use common::{ADMIN_KEY, TestApp, assert_error};
use reqwest::Method;

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: &str,
    headers: &[(&'static str, &str)],
    body: &str,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body: body.as_bytes().to_vec(),
        status,
        code,
    }
}

#[tokio::test]
async fn every_bad_input_is_a_clear_4xx_that_changes_nothing() {
    let app = TestApp::spawn().await;
    let (concert_id, _) = app.new_concert(5, 100).await;
    let (_, user) = app.new_user().await;
    app.charge(&user, 1000).await;
    let u = ("authorization", user.as_str());
    let a = ("x-admin-key", ADMIN_KEY);
    let schedules = format!("/admin/concerts/{concert_id}/schedules");
    let s = schedules.as_str();
    let big_title = format!(r#"{{"title":"{}"}}"#, "t".repeat(201));
    let long_artist = format!(r#"{{"title":"ok","artist":"{}"}}"#, "a".repeat(201));
    let long_section = format!(
        r#"{{"start_at":"2027-01-01T19:00:00Z","seats":[{{"seat_no":1,"price":5,"section":"{}"}}]}}"#,
        "s".repeat(51)
    );
    let long_key = "k".repeat(256);
    use Method as M;
    let cases = vec![
        // POST /admin/concerts
        case(
            "concert: malformed json",
            M::POST,
            "/admin/concerts",
            &[a],
            "{title",
            400,
            "invalid_request",
        ),
        case(
            "concert: no title",
            M::POST,
            "/admin/concerts",
            &[a],
            "{}",
            400,
            "invalid_request",
        ),
        case(
            "concert: empty title",
            M::POST,
            "/admin/concerts",
            &[a],
            r#"{"title":""}"#,
            400,
            "invalid_request",
        ),
        case(
            "concert: blank title",
            M::POST,
            "/admin/concerts",
            &[a],
            r#"{"title":"   "}"#,
            400,
            "invalid_request",
        ),
        case(
            "concert: title too long",
            M::POST,
            "/admin/concerts",
            &[a],
            &big_title,
            400,
            "invalid_request",
        ),
        case(
            "concert: title a number",
            M::POST,
            "/admin/concerts",
            &[a],
            r#"{"title":5}"#,
            400,
            "invalid_request",
        ),
        case(
            "concert: artist too long",
            M::POST,
            "/admin/concerts",
            &[a],
            &long_artist,
            400,
            "invalid_request",
        ),
        case(
            "concert: artist a list",
            M::POST,
            "/admin/concerts",
            &[a],
            r#"{"title":"x","artist":["a"]}"#,
            400,
            "invalid_request",
        ),
        case(
            "concert: body an array",
            M::POST,
            "/admin/concerts",
            &[a],
            r#"[{"title":"x"}]"#,
            400,
            "invalid_request",
        ),
        case(
            "concert: no admin key",
            M::POST,
            "/admin/concerts",
            &[],
            r#"{"title":"x"}"#,
            401,
            "unauthorized",
        ),
        // POST /admin/concerts/{id}/schedules
        case(
            "schedule: bad date",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"tomorrow","seat_count":5,"price":10}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: date only",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01","seat_count":5,"price":10}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: no start",
            M::POST,
            s,
            &[a],
            r#"{"seat_count":5,"price":10}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: zero seats",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":0,"price":10}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: too many seats",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":100001,"price":10}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: zero price",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":0}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: price too high",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":100000001}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: count without price",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: both forms",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":1,"price":5,"seats":[{"seat_no":1,"price":5}]}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: neither form",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z"}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: empty seat list",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seats":[]}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: duplicate seat",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":1,"price":5},{"seat_no":1,"price":7}]}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: seat no zero",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":0,"price":5}]}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: seat no huge",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":4294967296,"price":5}]}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: seat price zero",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":1,"price":0}]}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: seat without price",
            M::POST,
            s,
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seats":[{"seat_no":1}]}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: section too long",
            M::POST,
            s,
            &[a],
            &long_section,
            400,
            "invalid_request",
        ),
        case(
            "schedule: concert id not a number",
            M::POST,
            "/admin/concerts/abc/schedules",
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":10}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: concert id overflows",
            M::POST,
            "/admin/concerts/99999999999999999999/schedules",
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":10}"#,
            400,
            "invalid_request",
        ),
        case(
            "schedule: unknown concert",
            M::POST,
            "/admin/concerts/987654321/schedules",
            &[a],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":10}"#,
            404,
            "concert_not_found",
        ),
        case(
            "schedule: no admin key",
            M::POST,
            s,
            &[],
            r#"{"start_at":"2027-01-01T19:00:00Z","seat_count":5,"price":10}"#,
            401,
            "unauthorized",
        ),
        // GET /concerts/{id}
        case(
            "concert read: id not a number",
            M::GET,
            "/concerts/x1",
            &[],
            "",
            400,
            "invalid_request",
        ),
        case(
            "concert read: unknown",
            M::GET,
            "/concerts/0",
            &[],
            "",
            404,
            "concert_not_found",
        ),
        case(
            "concert read: negative",
            M::GET,
            "/concerts/-5",
            &[],
            "",
            404,
            "concert_not_found",
        ),
        // POST /users
        case(
            "users: malformed json",
            M::POST,
            "/users",
            &[],
            "{",
            400,
            "invalid_request",
        ),
        case(
            "users: not an object",
            M::POST,
            "/users",
            &[],
            "[]",
            400,
            "invalid_request",
        ),
        // GET /balance
        case(
            "balance: no token",
            M::GET,
            "/balance",
            &[],
            "",
            401,
            "unauthorized",
        ),
        // POST /balance/charge
        case(
            "charge: malformed json",
            M::POST,
            "/balance/charge",
            &[u],
            "{not json",
            400,
            "invalid_request",
        ),
        case(
            "charge: no amount",
            M::POST,
            "/balance/charge",
            &[u],
            "{}",
            400,
            "invalid_request",
        ),
        case(
            "charge: empty body",
            M::POST,
            "/balance/charge",
            &[u],
            "",
            400,
            "invalid_request",
        ),
        case(
            "charge: amount a string",
            M::POST,
            "/balance/charge",
            &[u],
            r#"{"amount":"100"}"#,
            400,
            "invalid_request",
        ),
        case(
            "charge: amount a float",
            M::POST,
            "/balance/charge",
            &[u],
            r#"{"amount":1.5}"#,
            400,
            "invalid_request",
        ),
        case(
            "charge: amount zero",
            M::POST,
            "/balance/charge",
            &[u],
            r#"{"amount":0}"#,
            400,
            "invalid_request",
        ),
        case(
            "charge: amount negative",
            M::POST,
            "/balance/charge",
            &[u],
            r#"{"amount":-5}"#,
            400,
            "invalid_request",
        ),
        case(
            "charge: amount over a billion",
            M::POST,
            "/balance/charge",
            &[u],
            r#"{"amount":1000000001}"#,
            400,
            "invalid_request",
        ),
        case(
            "charge: amount past i64",
            M::POST,
            "/balance/charge",
            &[u],
            r#"{"amount":1180591620717411303424}"#,
            400,
            "invalid_request",
        ),
        case(
            "charge: amount in an array",
            M::POST,
            "/balance/charge",
            &[u],
            "[100]",
            400,
            "invalid_request",
        ),
        case(
            "charge: bad idempotency key",
            M::POST,
            "/balance/charge",
            &[u, ("idempotency-key", &long_key)],
            r#"{"amount":5}"#,
            400,
            "invalid_request",
        ),
        case(
            "charge: no token",
            M::POST,
            "/balance/charge",
            &[],
            r#"{"amount":5}"#,
            401,
            "unauthorized",
        ),
        // GET /balance/history
        case(
            "history: limit zero",
            M::GET,
            "/balance/history?limit=0",
            &[u],
            "",
            400,
            "invalid_request",
        ),
        case(
            "history: limit 101",
            M::GET,
            "/balance/history?limit=101",
            &[u],
            "",
            400,
            "invalid_request",
        ),
        case(
            "history: limit a word",
            M::GET,
            "/balance/history?limit=ten",
            &[u],
            "",
            400,
            "invalid_request",
        ),
        case(
            "history: before_id a word",
            M::GET,
            "/balance/history?before_id=x",
            &[u],
            "",
            400,
            "invalid_request",
        ),
        case(
            "history: before_id zero",
            M::GET,
            "/balance/history?before_id=0",
            &[u],
            "",
            400,
            "invalid_request",
        ),
        case(
            "history: no token",
            M::GET,
            "/balance/history",
            &[],
            "",
            401,
            "unauthorized",
        ),
        // Anywhere
        case(
            "unknown route",
            M::GET,
            "/nowhere",
            &[],
            "",
            404,
            "not_found",
        ),
        case(
            "wrong method",
            M::PATCH,
            "/concerts",
            &[],
            "",
            405,
            "method_not_allowed",
        ),
    ];
    let before = (app.table_counts().await, app.redis_keys().await.len());
    for c in &cases {
        let headers: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain([("content-type", "application/json")])
            .collect();
        let got = app
            .raw(c.method.clone(), &c.path, &headers, c.body.clone())
            .await;
        assert!(
            got.0.as_u16() < 500,
            "{}: a 5xx for bad input: {:?}",
            c.name,
            got
        );
        assert_eq!(got.0.as_u16(), c.status, "{}: {}", c.name, got.1);
        assert_error(&got, c.status, c.code);
    }
    let after = (app.table_counts().await, app.redis_keys().await.len());
    assert_eq!(before, after, "bad input changed state");
    app.assert_ledger().await;
}
