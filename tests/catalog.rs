//! Admin and the public catalog: creating concerts and schedules, reading them.

mod common;

use common::{ADMIN_KEY, TestApp, assert_error};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Instant;

const ADMIN: [(&str, &str); 1] = [("x-admin-key", ADMIN_KEY)];

#[tokio::test]
async fn admin_key_is_required() {
    let app = TestApp::spawn().await;
    assert_error(
        &app.post("/admin/concerts", &[], json!({"title": "x"}))
            .await,
        401,
        "unauthorized",
    );
    let wrong = [("x-admin-key", "wrong")];
    assert_error(
        &app.post("/admin/concerts", &wrong, json!({"title": "x"}))
            .await,
        401,
        "unauthorized",
    );
    let almost = [("x-admin-key", &ADMIN_KEY[..ADMIN_KEY.len() - 1])];
    assert_error(
        &app.post("/admin/concerts", &almost, json!({"title": "x"}))
            .await,
        401,
        "unauthorized",
    );
    let path = "/admin/concerts/1/schedules";
    let body = json!({"start_at": "2027-01-01T19:00:00Z", "seat_count": 5, "price": 10});
    assert_error(&app.post(path, &wrong, body).await, 401, "unauthorized");
    assert_eq!(
        app.table_counts().await.iter().map(|(_, n)| n).sum::<i64>(),
        0
    );
}

#[tokio::test]
async fn concerts_are_created_listed_and_read() {
    let app = TestApp::spawn().await;
    let (status, a) = app
        .post(
            "/admin/concerts",
            &ADMIN,
            json!({"title": "  Night One ", "artist": "A", "description": "D"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = a["id"].as_i64().unwrap();
    assert_eq!(
        a,
        json!({"id": id, "title": "Night One", "artist": "A", "description": "D"})
    );
    let (_, b) = app
        .post("/admin/concerts", &ADMIN, json!({"title": "Night Two"}))
        .await;
    assert_eq!(b["artist"], serde_json::Value::Null);

    let (status, list) = app.get("/concerts", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list,
        json!({"items": [
            {"id": id, "title": "Night One", "artist": "A"},
            {"id": b["id"], "title": "Night Two", "artist": null},
        ]})
    );
    // The concert as created, and its waiting room: open, no schedule yet.
    let mut page = a.clone();
    page["waiting_room"] = json!({"state": "OPEN", "opens_at": null, "seats_left": null});
    assert_eq!(
        app.get(&format!("/concerts/{id}"), &[]).await,
        (StatusCode::OK, page)
    );
    assert_error(
        &app.get("/concerts/987654321", &[]).await,
        404,
        "concert_not_found",
    );
    assert_error(&app.get("/concerts/abc", &[]).await, 400, "invalid_request");
}

#[tokio::test]
async fn schedules_take_a_seat_count_or_a_seat_list() {
    let app = TestApp::spawn().await;
    let (_, concert) = app
        .post("/admin/concerts", &ADMIN, json!({"title": "Show"}))
        .await;
    let id = concert["id"].as_i64().unwrap();
    let path = format!("/admin/concerts/{id}/schedules");

    let (status, s) = app
        .post(
            &path,
            &ADMIN,
            json!({"start_at": "2027-01-02T04:00:00+09:00", "seat_count": 30, "price": 1500}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(s["concert_id"], id);
    assert_eq!(
        s["start_at"], "2027-01-01T19:00:00Z",
        "stored and shown in UTC"
    );
    assert_eq!(s["seat_count"], 30);
    let seats: Vec<(i32, i64, Option<String>)> = sqlx::query_as(
        "SELECT seat_no, price, section FROM seat WHERE concert_schedule_id = $1 ORDER BY seat_no",
    )
    .bind(s["id"].as_i64().unwrap())
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(seats.len(), 30);
    assert!(
        seats
            .iter()
            .enumerate()
            .all(|(i, (no, price, _))| *no == i as i32 + 1 && *price == 1500)
    );

    let listed = json!({"start_at": "2027-02-01T19:00:00Z", "seats": [
        {"seat_no": 10, "price": 500, "section": "A"}, {"seat_no": 3, "price": 700}]});
    let (status, s2) = app.post(&path, &ADMIN, listed).await;
    assert_eq!(status, StatusCode::CREATED, "{s2}");
    assert_eq!(s2["seat_count"], 2);
    let seats: Vec<(i32, i64, Option<String>)> = sqlx::query_as(
        "SELECT seat_no, price, section FROM seat WHERE concert_schedule_id = $1 ORDER BY seat_no",
    )
    .bind(s2["id"].as_i64().unwrap())
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(seats, vec![(3, 700, None), (10, 500, Some("A".into()))]);

    assert_error(
        &app.post(
            "/admin/concerts/987654321/schedules",
            &ADMIN,
            json!({"start_at": "2027-01-01T19:00:00Z", "seat_count": 5, "price": 10}),
        )
        .await,
        404,
        "concert_not_found",
    );
}

/// A stadium in one request, written by one bulk statement. The time is printed
/// for the issue note, not asserted (machines here are shared and noisy).
#[tokio::test]
async fn a_100000_seat_schedule_is_one_request() {
    let app = TestApp::spawn().await;
    let (_, concert) = app
        .post("/admin/concerts", &ADMIN, json!({"title": "Stadium"}))
        .await;
    let path = format!("/admin/concerts/{}/schedules", concert["id"]);
    let started = Instant::now();
    let (status, s) = app
        .post(
            &path,
            &ADMIN,
            json!({"start_at": "2027-01-01T19:00:00Z", "seat_count": 100000, "price": 99000}),
        )
        .await;
    let uniform = started.elapsed();
    assert_eq!(status, StatusCode::CREATED, "{s}");
    let seats: Vec<serde_json::Value> = (1..=100_000)
        .map(|n| json!({"seat_no": n, "price": 1000 + n % 7, "section": format!("S{}", n / 1000)}))
        .collect();
    let body =
        serde_json::to_vec(&json!({"start_at": "2027-01-02T19:00:00Z", "seats": seats})).unwrap();
    // A listed stadium is ~4 MB: past the 64 KiB body limit, by design.
    let (status, _) = app.raw(reqwest::Method::POST, &path, &ADMIN, body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM seat WHERE concert_schedule_id = $1")
        .bind(s["id"].as_i64().unwrap())
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(count, 100_000);
    println!("100000-seat schedule created in {uniform:?}");
}
