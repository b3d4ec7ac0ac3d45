//! Seats, holds, reservations and payments against real Redis and Postgres:
//! never a seat sold twice, never a won lost. Every story ends with the ledger
//! and sales invariants checked in Postgres (`assert_ledger`).

mod common;

use boxoffice::booking::ReservationStatus;
use boxoffice::store::scripts::codes::reservation_field;
use chrono::{DateTime, Utc};
use common::proxy::{Proxy, host_port, through};
use common::{Env, TestApp, assert_error, eventually, expect_status};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Admission fast and uncapped, so stories do not wait in line.
fn env(pairs: &[(&'static str, &str)]) -> Env {
    let mut env = Env::default();
    env.vars.insert("ADMISSION_RATE", "10000".into());
    env.vars.insert("MAX_ACTIVE", "0".into());
    for (k, v) in pairs {
        env.vars.insert(k, (*v).to_owned());
    }
    env
}

async fn spawn(pairs: &[(&'static str, &str)]) -> TestApp {
    TestApp::spawn_with(env(pairs)).await
}

/// A fan through the front door: a user, charged `balance`, admitted to
/// `concert`. Headers carry both the access token and the queue pass.
struct Fan {
    id: i64,
    auth: String,
    token: String,
}

impl Fan {
    fn headers(&self) -> Vec<(&str, &str)> {
        vec![
            ("authorization", self.auth.as_str()),
            ("x-queue-token", self.token.as_str()),
        ]
    }
    fn auth(&self) -> Vec<(&str, &str)> {
        vec![("authorization", self.auth.as_str())]
    }
}

/// Err says which step of the fan's way in failed: the charge, the join, or
/// the wait to be admitted (10 s).
async fn fan(app: &TestApp, concert: i64, balance: i64) -> Result<Fan, String> {
    let (id, auth) = app.new_user().await;
    if balance > 0 {
        let (status, body) = app.charge(&auth, balance).await;
        if status != StatusCode::OK {
            return Err(format!("charging {balance}: {status}: {body}"));
        }
    }
    let (status, body) = app
        .post(
            "/queue/tokens",
            &[("authorization", &auth)],
            json!({"concert_id": concert}),
        )
        .await;
    let token = match body["token"].as_str() {
        Some(token) if status == StatusCode::CREATED => token.to_owned(),
        _ => return Err(format!("joining the queue: {status}: {body}")),
    };
    eventually(Duration::from_secs(10), || async {
        let (_, t) = app
            .get(
                &format!("/queue/tokens/{token}"),
                &[("authorization", &auth)],
            )
            .await;
        (t["status"] == "ACTIVE").then_some(())
    })
    .await
    .ok_or_else(|| format!("token {token} not ACTIVE within 10 s"))?;
    Ok(Fan { id, auth, token })
}

async fn hold(app: &TestApp, f: &Fan, schedule: i64, seat_no: i64) -> (StatusCode, Value) {
    app.post(
        "/reservations",
        &f.headers(),
        json!({"schedule_id": schedule, "seat_no": seat_no}),
    )
    .await
}

/// Arranges a hold: the reservation id, or a panic naming the seat. Where
/// getting the seat is what a test is about, it calls `hold` and asserts.
async fn held(app: &TestApp, f: &Fan, schedule: i64, seat_no: i64) -> i64 {
    let answer = hold(app, f, schedule, seat_no).await;
    let step = format!("holding seat {seat_no} of schedule {schedule}");
    let body = expect_status(answer, StatusCode::CREATED, &step);
    body["id"].as_i64().expect("a hold has a reservation id")
}

async fn pay(app: &TestApp, f: &Fan, reservation: i64, key: Option<&str>) -> (StatusCode, Value) {
    let mut headers = f.headers();
    if let Some(k) = key {
        headers.push(("idempotency-key", k));
    }
    app.post(
        "/payments",
        &headers,
        json!({"reservation_id": reservation}),
    )
    .await
}

/// `DELETE /reservations/{id}` as fan `f`.
async fn cancel(app: &TestApp, f: &Fan, id: i64) -> (StatusCode, Value) {
    app.call(
        Method::DELETE,
        &format!("/reservations/{id}"),
        &f.auth(),
        None,
    )
    .await
}

/// `DELETE /queue/tokens/{token}` of fan `f`'s token.
async fn leave(app: &TestApp, f: &Fan) -> (StatusCode, Value) {
    app.call(
        Method::DELETE,
        &format!("/queue/tokens/{}", f.token),
        &f.auth(),
        None,
    )
    .await
}

/// The seat numbers of the map filtered by `?status=`.
async fn seats_in(app: &TestApp, f: &Fan, schedule: i64, status: &str) -> Vec<i64> {
    let answer = app
        .get(
            &format!("/schedules/{schedule}/seats?status={status}"),
            &f.headers(),
        )
        .await;
    let body = expect_status(answer, StatusCode::OK, "reading the seat map");
    body["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seat_no"].as_i64().unwrap())
        .collect()
}

/// seat_no -> status, from the seat map.
async fn seat_states(app: &TestApp, f: &Fan, schedule: i64) -> Vec<(i64, String)> {
    let answer = app
        .get(&format!("/schedules/{schedule}/seats"), &f.headers())
        .await;
    let body = expect_status(answer, StatusCode::OK, "reading the seat map");
    body["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["seat_no"].as_i64().unwrap(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn seat_state(app: &TestApp, f: &Fan, schedule: i64, seat_no: i64) -> String {
    seat_states(app, f, schedule)
        .await
        .into_iter()
        .find(|(n, _)| *n == seat_no)
        .map(|(_, s)| s)
        .expect("seat in the map")
}

async fn available(app: &TestApp, f: &Fan, concert: i64) -> i64 {
    let answer = app
        .get(&format!("/concerts/{concert}/schedules"), &f.headers())
        .await;
    let body = expect_status(answer, StatusCode::OK, "reading the schedules");
    body["items"][0]["available_seats"].as_i64().unwrap()
}

async fn reservation(app: &TestApp, f: &Fan, id: i64) -> (StatusCode, Value) {
    app.get(&format!("/reservations/{id}"), &f.auth()).await
}

async fn token_status(app: &TestApp, f: &Fan) -> String {
    let (_, t) = app
        .get(&format!("/queue/tokens/{}", f.token), &f.auth())
        .await;
    t["status"].as_str().unwrap().to_owned()
}

async fn confirmed_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reservation WHERE status = 'CONFIRMED'")
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

#[tokio::test]
async fn fifty_fans_race_for_one_seat_and_exactly_one_gets_it() {
    let app = spawn(&[]).await;
    let (concert, schedule) = app.new_concert(10, 1000).await;
    let fans = join_all((0..50).map(|_| fan(&app, concert, 0)))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("50 fans admitted");
    let results = join_all(fans.iter().map(|f| hold(&app, f, schedule, 7))).await;
    let winners: Vec<_> = results
        .iter()
        .filter(|r| r.0 == StatusCode::CREATED)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.0 != StatusCode::CREATED) {
        assert_error(r, 409, "seat_unavailable");
    }
    let w = winners[0];
    assert_eq!(w.1["status"], "PENDING");
    assert_eq!(w.1["seat_no"], 7);
    assert_eq!(w.1["schedule_id"], schedule);
    assert_eq!(seat_state(&app, &fans[0], schedule, 7).await, "HELD");
    assert_eq!(available(&app, &fans[0], concert).await, 9);
    // Every other seat is still free for the losers.
    let again = join_all(
        fans.iter()
            .take(9)
            .zip(1..)
            .map(|(f, n)| hold(&app, f, schedule, if n >= 7 { n + 1 } else { n })),
    )
    .await;
    let created = again.iter().filter(|r| r.0 == StatusCode::CREATED).count();
    assert_eq!(created, 9, "{again:?}");
    app.assert_ledger().await;
}

#[tokio::test]
async fn hold_rules_in_the_contracts_order() {
    let app = spawn(&[("MAX_HOLDS_PER_USER", "2")]).await;
    let (concert, schedule) = app.new_concert(10, 1000).await;
    let (other_concert, other_schedule) = app.new_concert(5, 500).await;
    let a = fan(&app, concert, 0).await.expect("admitted");
    let b = fan(&app, concert, 0).await.expect("admitted");

    assert_error(
        &hold(&app, &a, 987_654_321, 1).await,
        404,
        "schedule_not_found",
    );
    assert_error(&hold(&app, &a, schedule, 11).await, 404, "seat_not_found");
    assert_error(&hold(&app, &a, schedule, 0).await, 400, "invalid_request");
    // The pass: missing, malformed, another concert's.
    let no_pass = app
        .post(
            "/reservations",
            &a.auth(),
            json!({"schedule_id": schedule, "seat_no": 1}),
        )
        .await;
    assert_error(&no_pass, 401, "queue_token_required");
    let mut bad = a.auth();
    bad.push(("x-queue-token", "not-a-token"));
    let got = app
        .post(
            "/reservations",
            &bad,
            json!({"schedule_id": schedule, "seat_no": 1}),
        )
        .await;
    assert_error(&got, 401, "queue_token_invalid");
    assert_error(
        &hold(&app, &a, other_schedule, 1).await,
        403,
        "queue_token_wrong_concert",
    );
    // Another user's pass is not a pass.
    let stolen = Fan {
        id: b.id,
        auth: b.auth.clone(),
        token: a.token.clone(),
    };
    assert_error(
        &hold(&app, &stolen, schedule, 1).await,
        401,
        "queue_token_invalid",
    );
    let _ = other_concert;

    let r1 = held(&app, &a, schedule, 1).await;
    let r2 = held(&app, &a, schedule, 2).await;
    assert_ne!(r1, r2);
    // Held beats the limit in the order of checks; the limit then applies.
    assert_error(&hold(&app, &a, schedule, 1).await, 409, "seat_unavailable");
    assert_error(
        &hold(&app, &a, schedule, 3).await,
        409,
        "hold_limit_reached",
    );
    assert_error(&hold(&app, &b, schedule, 2).await, 409, "seat_unavailable");

    // Another user's reservation does not exist for them.
    assert_error(
        &reservation(&app, &b, r1).await,
        404,
        "reservation_not_found",
    );
    let got = cancel(&app, &b, r1).await;
    assert_error(&got, 404, "reservation_not_found");
    assert_error(&pay(&app, &b, r1, None).await, 404, "reservation_not_found");
    assert_error(
        &reservation(&app, &a, 1).await,
        404,
        "reservation_not_found",
    );
    assert_error(
        &reservation(&app, &a, -5).await,
        404,
        "reservation_not_found",
    );

    // Cancel, read CANCELED, take the seat again.
    let (status, body) = reservation(&app, &a, r1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["price"], 1000);
    let got = cancel(&app, &a, r1).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT);
    let got = cancel(&app, &a, r1).await;
    assert_eq!(
        got.0,
        StatusCode::NO_CONTENT,
        "cancelling twice is harmless"
    );
    assert_eq!(reservation(&app, &a, r1).await.1["status"], "CANCELED");
    assert_eq!(seat_state(&app, &a, schedule, 1).await, "AVAILABLE");
    let got = hold(&app, &b, schedule, 1).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    let r3 = got.1["id"].as_i64().unwrap();
    assert!(r3 != r1 && r3 != r2, "ids are never reused");
    // The cancel gave a's hold back: under the limit again.
    let got = hold(&app, &a, schedule, 3).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    assert_eq!(available(&app, &a, concert).await, 7);
    let held_seats: Vec<i64> = seats_in(&app, &a, schedule, "HELD").await;
    assert_eq!(held_seats, vec![1, 2, 3]);
    // Nothing of this reached Postgres.
    assert_eq!(confirmed_count(&app).await, 0);
    app.assert_ledger().await;
}

#[tokio::test]
async fn holds_lapse_by_themselves_and_a_lapsed_hold_cannot_be_paid() {
    let app = spawn(&[("HOLD_TTL_SECS", "1")]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 5000).await.expect("admitted");
    let b = fan(&app, concert, 5000).await.expect("admitted");
    let r = held(&app, &a, schedule, 4).await;
    assert_eq!(seat_state(&app, &a, schedule, 4).await, "HELD");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(seat_state(&app, &a, schedule, 4).await, "AVAILABLE");
    assert_eq!(available(&app, &a, concert).await, 5);
    assert_eq!(reservation(&app, &a, r).await.1["status"], "CANCELED");
    assert_error(&pay(&app, &a, r, None).await, 410, "hold_expired");
    assert_eq!(app.balance(&a.auth).await, 5000, "nothing debited");
    // The seat is anyone's again, and the lapsed hold no longer counts.
    let got = hold(&app, &b, schedule, 4).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    let rb = got.1["id"].as_i64().unwrap();
    assert_error(&pay(&app, &a, r, None).await, 410, "hold_expired");
    assert_eq!(pay(&app, &b, rb, None).await.0, StatusCode::CREATED);
    assert_eq!(confirmed_count(&app).await, 1);
    assert!(
        app.metrics_text()
            .await
            .contains("holds_released_total{reason=\"expired\"}"),
        "lapsed holds are counted when tidied"
    );
    app.assert_ledger().await;
}

#[tokio::test]
async fn a_payment_from_short_balance_to_sold_seat_and_processed_token() {
    let app = spawn(&[]).await;
    let (concert, schedule) = app.new_concert(20, 1500).await;
    let a = fan(&app, concert, 1000).await.expect("admitted");
    let r = held(&app, &a, schedule, 10).await;
    assert_error(&pay(&app, &a, r, None).await, 402, "insufficient_balance");
    assert_eq!(app.balance(&a.auth).await, 1000);
    assert_eq!(reservation(&app, &a, r).await.1["status"], "PENDING");
    assert_eq!(seat_state(&app, &a, schedule, 10).await, "HELD");
    assert_eq!(app.charge(&a.auth, 1000).await.0, StatusCode::OK);

    let (status, paid) = pay(&app, &a, r, Some("pay-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    assert_eq!(paid["reservation_id"], r);
    assert_eq!(paid["amount"], 1500);
    assert_eq!(paid["status"], "PAID");
    assert_eq!(paid["balance_after"], 500);
    assert!(paid["id"].is_i64());
    // A retry with the key replays the answer, after the token was PROCESSED.
    let again = pay(&app, &a, r, Some("pay-1")).await;
    assert_eq!(again, (StatusCode::CREATED, paid.clone()));
    // Without the key: the token is processed (gate) or the seat paid.
    let other = pay(&app, &a, r, Some("pay-2")).await;
    assert!(
        [401, 409].contains(&other.0.as_u16()),
        "second payment: {other:?}"
    );
    assert_eq!(app.balance(&a.auth).await, 500);
    let (_, history) = app.get("/balance/history", &a.auth()).await;
    assert_eq!(history["items"][0]["type"], "USE");
    assert_eq!(history["items"][0]["amount"], 1500);
    assert_eq!(history["items"][0]["balance_after"], 500);
    let (_, receipt) = reservation(&app, &a, r).await;
    assert_eq!(receipt["status"], "CONFIRMED");
    assert_eq!(receipt["seat_no"], 10);
    assert_eq!(token_status(&app, &a).await, "PROCESSED");
    let got = app
        .get(&format!("/schedules/{schedule}/seats"), &a.headers())
        .await;
    assert_error(&got, 401, "queue_token_expired");
    let got = cancel(&app, &a, r).await;
    assert_error(&got, 409, "already_confirmed");

    let b = fan(&app, concert, 5000).await.expect("admitted");
    assert_eq!(seat_state(&app, &b, schedule, 10).await, "SOLD");
    assert_error(&hold(&app, &b, schedule, 10).await, 409, "seat_unavailable");
    assert_eq!(available(&app, &b, concert).await, 19);
    let sold: Vec<i64> = seats_in(&app, &b, schedule, "SOLD").await;
    assert_eq!(sold, vec![10]);
    // (The recorder is shared by every test in this binary: names, not counts.)
    let metrics = app.metrics_text().await;
    for name in [
        "payments_total ",
        "payments_won_total ",
        "payment_failures_total{reason=\"insufficient_balance\"}",
        "postgres_transaction_duration_seconds_count{op=\"payment\"}",
        "holds_total{result=\"ok\"}",
        "holds_total{result=\"seat_unavailable\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    app.assert_ledger().await;
}

#[tokio::test]
async fn eight_concurrent_payments_of_one_hold_debit_once() {
    let app = spawn(&[]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 100_000).await.expect("admitted");
    let r = held(&app, &a, schedule, 1).await;
    let results = join_all((0..8).map(|_| pay(&app, &a, r, None))).await;
    let ok = results
        .iter()
        .filter(|r| r.0 == StatusCode::CREATED)
        .count();
    assert_eq!(ok, 1, "{results:?}");
    for r in results.iter().filter(|r| r.0 != StatusCode::CREATED) {
        assert!(
            r.1["error"]["code"] == "already_paid" || r.1["error"]["code"] == "queue_token_expired",
            "{r:?}"
        );
    }
    assert_eq!(app.balance(&a.auth).await, 99_000);

    // And with one key: one payment, the others replay it or wait their turn.
    let b = fan(&app, concert, 100_000).await.expect("admitted");
    let rb = held(&app, &b, schedule, 2).await;
    let results = join_all((0..8).map(|_| pay(&app, &b, rb, Some("same-key")))).await;
    let bodies: HashSet<String> = results
        .iter()
        .filter(|r| r.0 == StatusCode::CREATED)
        .map(|r| r.1.to_string())
        .collect();
    assert_eq!(bodies.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.0 != StatusCode::CREATED) {
        assert_error(r, 409, "idempotency_key_in_use");
    }
    assert_eq!(app.balance(&b.auth).await, 99_000);
    assert_eq!(confirmed_count(&app).await, 2);
    app.assert_ledger().await;
}

#[tokio::test]
async fn the_token_is_processed_only_when_no_hold_is_left() {
    let app = spawn(&[]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 10_000).await.expect("admitted");
    let r1 = held(&app, &a, schedule, 1).await;
    let r2 = held(&app, &a, schedule, 2).await;
    assert_eq!(pay(&app, &a, r1, None).await.0, StatusCode::CREATED);
    assert_eq!(token_status(&app, &a).await, "ACTIVE");
    assert_eq!(pay(&app, &a, r2, None).await.0, StatusCode::CREATED);
    assert_eq!(token_status(&app, &a).await, "PROCESSED");
    // The receipt needs no pass.
    assert_eq!(reservation(&app, &a, r1).await.1["status"], "CONFIRMED");
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("queue_processed_total "), "{metrics}");
    app.assert_ledger().await;
}

#[tokio::test]
async fn leaving_the_queue_releases_the_holds() {
    let app = spawn(&[]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 0).await.expect("admitted");
    let b = fan(&app, concert, 0).await.expect("admitted");
    let r1 = held(&app, &a, schedule, 1).await;
    let r2 = held(&app, &a, schedule, 2).await;
    assert_eq!(available(&app, &b, concert).await, 3);
    let got = leave(&app, &a).await;
    assert_eq!(got.0, StatusCode::NO_CONTENT);
    assert_eq!(available(&app, &b, concert).await, 5);
    assert_eq!(seat_state(&app, &b, schedule, 1).await, "AVAILABLE");
    assert_eq!(reservation(&app, &a, r1).await.1["status"], "CANCELED");
    assert_eq!(reservation(&app, &a, r2).await.1["status"], "CANCELED");
    assert_error(&pay(&app, &a, r1, None).await, 401, "queue_token_expired");
    // The released seats are anyone's again.
    let got = hold(&app, &b, schedule, 1).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    app.assert_ledger().await;
}

#[tokio::test]
async fn a_hold_that_lapses_while_its_payment_runs_is_honoured_and_never_resold() {
    let app = spawn(&[("HOLD_TTL_SECS", "1")]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 5000).await.expect("admitted");
    let b = fan(&app, concert, 5000).await.expect("admitted");
    let r = held(&app, &a, schedule, 3).await;
    // Postgres is slow for this payment: its balance row is locked elsewhere.
    let mut blocker = app.pg.begin().await.unwrap();
    sqlx::query("SELECT balance FROM balance WHERE user_id = $1 FOR UPDATE")
        .bind(a.id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let payment = {
        let app = &app;
        let a = &a;
        async move { pay(app, a, r, None).await }
    };
    let racer = async {
        // Past the hold's expiry, with the payment in flight.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let tried = hold(&app, &b, schedule, 3).await;
        let state = seat_state(&app, &b, schedule, 3).await;
        // Nor can its owner cancel it, or free it by leaving the queue.
        let cancelled = cancel(&app, &a, r).await;
        let left = leave(&app, &a).await;
        let after_leave = seat_state(&app, &b, schedule, 3).await;
        blocker.rollback().await.unwrap();
        (tried, state, cancelled, left, after_leave)
    };
    let (paid, (tried, state, cancelled, left, after_leave)) = tokio::join!(payment, racer);
    assert_error(&tried, 409, "seat_unavailable");
    assert_error(&cancelled, 409, "payment_in_progress");
    assert_eq!(left.0, StatusCode::NO_CONTENT);
    assert_eq!(after_leave, "HELD");
    assert_eq!(
        state, "HELD",
        "the seat stays claimed while its payment runs"
    );
    assert_eq!(paid.0, StatusCode::CREATED, "{}", paid.1);
    assert_eq!(seat_state(&app, &b, schedule, 3).await, "SOLD");
    assert_eq!(app.balance(&a.auth).await, 4000);
    assert_eq!(app.balance(&b.auth).await, 5000);
    app.assert_ledger().await;
}

#[tokio::test]
async fn sold_seats_survive_a_redis_flush_and_a_restart() {
    let mut app = spawn(&[]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 5000).await.expect("admitted");
    let r = held(&app, &a, schedule, 2).await;
    assert_eq!(pay(&app, &a, r, None).await.0, StatusCode::CREATED);

    app.flush_redis().await;
    let restarted = app.sibling(env(&[])).await;
    app.shutdown().await;
    let b = fan(&restarted, concert, 5000)
        .await
        .expect("the restarted server admits");
    assert_eq!(seat_state(&restarted, &b, schedule, 2).await, "SOLD");
    assert_error(
        &hold(&restarted, &b, schedule, 2).await,
        409,
        "seat_unavailable",
    );
    assert_eq!(available(&restarted, &b, concert).await, 4);
    // The buyer's receipt comes from Postgres now.
    assert_eq!(
        reservation(&restarted, &a, r).await.1["status"],
        "CONFIRMED"
    );
    // New ids never repeat an old one, although Redis forgot everything.
    let rb = held(&restarted, &b, schedule, 3).await;
    assert!(rb != r);
    let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM reservation_block")
        .fetch_one(&restarted.pg)
        .await
        .unwrap();
    assert_eq!(blocks, 2, "one id block per server and concert");

    // A flush while the server runs: the missing marker brings a rebuild.
    restarted.flush_redis().await;
    let c = fan(&restarted, concert, 0)
        .await
        .expect("admitted after the flush");
    let rebuilt = eventually(Duration::from_secs(15), || async {
        (seat_state(&restarted, &c, schedule, 2).await == "SOLD").then_some(())
    })
    .await;
    assert!(rebuilt.is_some(), "SOLD seats rebuilt after a flush");
    restarted.assert_ledger().await;
}

#[tokio::test]
async fn postgres_refuses_a_second_sale_before_redis_knows_the_first() {
    let app = spawn(&[("SOLD_CATCH_UP_SECS", "1")]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 5000).await.expect("admitted");
    let b = fan(&app, concert, 5000).await.expect("admitted");
    let r = held(&app, &a, schedule, 1).await;
    assert_eq!(pay(&app, &a, r, None).await.0, StatusCode::CREATED);
    // Redis loses the SOLD bit (as in the window before a rebuild).
    let redis = common::redis().await;
    let sold = app.keys().booking(concert).sold(schedule);
    let _: i64 = fred::interfaces::KeysInterface::del(&redis, sold)
        .await
        .unwrap();
    let tried = hold(&app, &b, schedule, 1).await;
    if tried.0 == StatusCode::CREATED {
        // The catch-up has not marked it yet: Postgres is the last line.
        let rb = tried.1["id"].as_i64().unwrap();
        assert_error(&pay(&app, &b, rb, None).await, 409, "seat_unavailable");
    } else {
        assert_error(&tried, 409, "seat_unavailable");
    }
    assert_eq!(app.balance(&b.auth).await, 5000);
    assert_eq!(confirmed_count(&app).await, 1);
    // And the catch-up marks the seat SOLD again within seconds.
    let marked = eventually(Duration::from_secs(15), || async {
        (seat_state(&app, &b, schedule, 1).await == "SOLD").then_some(())
    })
    .await;
    assert!(marked.is_some());
    app.assert_ledger().await;
}

#[tokio::test]
async fn a_50000_seat_map_in_one_answer() {
    let app = spawn(&[]).await;
    let (concert, schedule) = app.new_concert(50_000, 1000).await;
    let a = fan(&app, concert, 10_000).await.expect("admitted");
    let r = held(&app, &a, schedule, 49_999).await;
    held(&app, &a, schedule, 1).await;
    assert_eq!(pay(&app, &a, r, None).await.0, StatusCode::CREATED);
    let started = std::time::Instant::now();
    let states = seat_states(&app, &a, schedule).await;
    println!("50 000-seat map: {:?} (test build)", started.elapsed());
    assert_eq!(states.len(), 50_000);
    assert!(states.windows(2).all(|w| w[0].0 < w[1].0), "by seat_no");
    assert_eq!(states[0].1, "HELD");
    assert_eq!(states[49_998].1, "SOLD");
    assert_eq!(
        states.iter().filter(|(_, s)| s == "AVAILABLE").count(),
        49_998
    );
    let (_, body) = app
        .get(
            &format!("/schedules/{schedule}/seats?status=AVAILABLE"),
            &a.headers(),
        )
        .await;
    assert_eq!(body["seats"].as_array().unwrap().len(), 49_998);
    assert_eq!(available(&app, &a, concert).await, 49_998);
    app.assert_ledger().await;
}

#[tokio::test]
async fn bad_booking_input_is_refused_and_changes_nothing() {
    let app = spawn(&[]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 5000).await.expect("admitted");
    let r = held(&app, &a, schedule, 1).await;
    // The join's audit row is written behind (within 200 ms): let it land, so
    // that what follows is compared with a settled database.
    let settled = eventually(Duration::from_secs(5), || async {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM reservation_queue")
            .fetch_one(&app.pg)
            .await
            .unwrap();
        (rows == 1).then_some(())
    })
    .await;
    assert!(settled.is_some(), "the join is audited");
    let before = app.table_counts().await;
    let keys_before: HashSet<String> = app.redis_keys().await.into_iter().collect();
    let h = a.headers();
    let cases: Vec<(Method, String, Option<Value>, u16)> = vec![
        (
            Method::GET,
            format!("/schedules/{schedule}/seats?status=FREE"),
            None,
            400,
        ),
        (
            Method::GET,
            format!("/schedules/{schedule}/seats?status="),
            None,
            400,
        ),
        (Method::GET, "/schedules/abc/seats".into(), None, 400),
        (Method::POST, "/reservations".into(), Some(json!({})), 400),
        (
            Method::POST,
            "/reservations".into(),
            Some(json!({"schedule_id": schedule})),
            400,
        ),
        (
            Method::POST,
            "/reservations".into(),
            Some(json!({"schedule_id": "1", "seat_no": 2})),
            400,
        ),
        (
            Method::POST,
            "/reservations".into(),
            Some(json!({"schedule_id": schedule, "seat_no": 2.5})),
            400,
        ),
        (
            Method::POST,
            "/reservations".into(),
            Some(json!({"schedule_id": schedule, "seat_no": -3})),
            400,
        ),
        (
            Method::POST,
            "/reservations".into(),
            Some(json!([schedule, 2])),
            400,
        ),
        (
            Method::POST,
            "/reservations".into(),
            Some(json!({"schedule_id": schedule, "seat_no": 99})),
            404,
        ),
        (Method::GET, "/reservations/abc".into(), None, 400),
        (
            Method::GET,
            "/reservations/99999999999999".into(),
            None,
            404,
        ),
        (Method::DELETE, "/reservations/0".into(), None, 404),
        (Method::POST, "/payments".into(), Some(json!({})), 400),
        (
            Method::POST,
            "/payments".into(),
            Some(json!({"reservation_id": "x"})),
            400,
        ),
        (
            Method::POST,
            "/payments".into(),
            Some(json!({"reservation_id": 1e30})),
            400,
        ),
        (
            Method::POST,
            "/payments".into(),
            Some(json!({"reservation_id": 42})),
            404,
        ),
        (
            Method::PUT,
            "/payments".into(),
            Some(json!({"reservation_id": r})),
            405,
        ),
    ];
    for (method, path, body, want) in cases {
        let got = app.call(method.clone(), &path, &h, body.clone()).await;
        assert_eq!(got.0.as_u16(), want, "{method} {path} {body:?}: {}", got.1);
        assert!(
            got.1["error"]["code"].is_string(),
            "{method} {path}: {}",
            got.1
        );
    }
    // An unparsable Idempotency-Key is refused before anything happens.
    let mut with_key = h.clone();
    with_key.push(("idempotency-key", "has space"));
    let got = app
        .call(
            Method::POST,
            "/payments",
            &with_key,
            Some(json!({"reservation_id": r})),
        )
        .await;
    assert_error(&got, 400, "invalid_request");
    // Unauthenticated: 401 on every booking route.
    for (method, path) in [
        (Method::GET, format!("/schedules/{schedule}/seats")),
        (Method::POST, "/reservations".into()),
        (Method::GET, format!("/reservations/{r}")),
        (Method::DELETE, format!("/reservations/{r}")),
        (Method::POST, "/payments".into()),
    ] {
        let got = app.call(method, &path, &[], Some(json!({}))).await;
        assert_error(&got, 401, "unauthorized");
    }
    assert_eq!(app.table_counts().await, before);
    let keys_after: HashSet<String> = app.redis_keys().await.into_iter().collect();
    assert_eq!(keys_after, keys_before);
    assert_eq!(reservation(&app, &a, r).await.1["status"], "PENDING");
    app.assert_ledger().await;
}

#[tokio::test]
async fn a_sale_redis_never_heard_of_still_reads_as_a_sale() {
    let app = spawn(&[("SOLD_CATCH_UP_SECS", "1")]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 5000).await.expect("admitted");
    let r = held(&app, &a, schedule, 2).await;
    held(&app, &a, schedule, 3).await; // keeps the token ACTIVE after the sale
    assert_eq!(pay(&app, &a, r, None).await.0, StatusCode::CREATED);
    // Redis as if the server had died between the commit and pay_finish: the
    // record still PENDING with its payment noted, the seat not SOLD, the
    // payment's claim on the seat lapsed.
    let redis = common::redis().await;
    let keys = app.keys().booking(concert);
    let _: () = fred::interfaces::HashesInterface::hset(
        &redis,
        keys.reservation(r),
        [
            (
                reservation_field::STATE,
                ReservationStatus::Pending.letter(),
            ),
            (reservation_field::PAYING, "1"),
        ],
    )
    .await
    .unwrap();
    let _: i64 = fred::interfaces::KeysInterface::del(&redis, keys.sold(schedule))
        .await
        .unwrap();
    assert_eq!(reservation(&app, &a, r).await.1["status"], "CONFIRMED");
    let got = cancel(&app, &a, r).await;
    assert_error(&got, 409, "already_confirmed");
    assert_error(&pay(&app, &a, r, None).await, 409, "already_paid");
    assert_eq!(app.balance(&a.auth).await, 4000, "debited once");
    // The catch-up marks the seat SOLD and the record CONFIRMED again.
    let marked = eventually(Duration::from_secs(15), || async {
        (seat_state(&app, &a, schedule, 2).await == "SOLD").then_some(())
    })
    .await;
    assert!(marked.is_some(), "the catch-up marks the sale SOLD");
    let st: Option<String> = fred::interfaces::HashesInterface::hget(
        &redis,
        keys.reservation(r),
        reservation_field::STATE,
    )
    .await
    .unwrap();
    assert_eq!(st.as_deref(), Some(ReservationStatus::Confirmed.letter()));
    app.assert_ledger().await;
}

/// A sale whose server died between its commit and its Redis step, with no
/// server running for ten minutes, far longer than the catch-up's window: the
/// next server to start marks it SOLD, from the durable watermark (the catch-up
/// once re-marked only the last `SOLD_CATCH_UP_SECS` + 60 s, and the seat stayed
/// AVAILABLE on the map for good).
#[tokio::test]
async fn a_sale_is_marked_sold_however_long_no_server_ran() {
    let mut app = spawn(&[("SOLD_CATCH_UP_SECS", "1")]).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 5000).await.expect("admitted");
    // An earlier sale, which the catch-up (every second) then sees.
    let r0 = held(&app, &a, schedule, 1).await;
    held(&app, &a, schedule, 3).await; // keeps the token ACTIVE after the sales
    assert_eq!(pay(&app, &a, r0, None).await.0, StatusCode::CREATED);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = held(&app, &a, schedule, 2).await;
    assert_eq!(pay(&app, &a, r, None).await.0, StatusCode::CREATED);
    app.crash();
    // Redis as the server left it had it died between the commit and
    // pay_finish: the record PENDING with its payment noted, no seat SOLD.
    let redis = common::redis().await;
    let keys = app.keys().booking(concert);
    let _: () = fred::interfaces::HashesInterface::hset(
        &redis,
        keys.reservation(r),
        [
            (
                reservation_field::STATE,
                ReservationStatus::Pending.letter(),
            ),
            (reservation_field::PAYING, "1"),
        ],
    )
    .await
    .unwrap();
    let _: i64 = fred::interfaces::KeysInterface::del(&redis, keys.sold(schedule))
        .await
        .unwrap();
    // Ten minutes pass with no server: every time in Postgres moves back.
    sqlx::query(
        "UPDATE reservation SET confirmed_at = confirmed_at - interval '10 minutes'
          WHERE status = 'CONFIRMED'",
    )
    .execute(&app.pg)
    .await
    .unwrap();
    // (Before the watermark there was no such table: then nothing to move.)
    let _ = sqlx::query(
        "UPDATE sold_watermark SET confirmed_at = confirmed_at - interval '10 minutes'",
    )
    .execute(&app.pg)
    .await;
    let restarted = app.sibling(env(&[("SOLD_CATCH_UP_SECS", "1")])).await;
    let b = fan(&restarted, concert, 5000).await.expect("admitted");
    let state = eventually(Duration::from_secs(10), || async {
        (seat_state(&restarted, &b, schedule, 2).await == "SOLD").then_some(())
    })
    .await;
    assert!(state.is_some(), "the old sale is SOLD on the map");
    assert_eq!(seat_state(&restarted, &b, schedule, 1).await, "SOLD");
    assert_error(
        &hold(&restarted, &b, schedule, 2).await,
        409,
        "seat_unavailable",
    );
    assert_eq!(confirmed_count(&restarted).await, 2);
    // The watermark is the last sale marked.
    let (watermark, last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT (SELECT confirmed_at FROM sold_watermark),
                (SELECT max(confirmed_at) FROM reservation WHERE status = 'CONFIRMED')",
    )
    .fetch_one(&restarted.pg)
    .await
    .unwrap();
    assert!(last.is_some());
    assert_eq!(watermark, last);
    restarted.assert_ledger().await;
}

#[tokio::test]
async fn holds_need_no_postgres_and_a_payment_during_an_outage_is_a_clean_503() {
    let proxy = Proxy::start(host_port(&common::pg_server())).await;
    let mut e = env(&[]);
    e.pg_server = Some(through(&common::pg_server(), &proxy));
    let app = TestApp::spawn_with(e).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 5000).await.expect("admitted");
    let r1 = held(&app, &a, schedule, 1).await;

    proxy.cut();
    // The hot paths do not touch Postgres: holds, the seat map, availability.
    let got = hold(&app, &a, schedule, 2).await;
    assert_eq!(got.0, StatusCode::CREATED, "{}", got.1);
    let r2 = got.1["id"].as_i64().unwrap();
    assert_eq!(seat_state(&app, &a, schedule, 2).await, "HELD");
    assert_error(&pay(&app, &a, r1, Some("k1")).await, 503, "unavailable");
    proxy.restore();

    let paid = eventually(Duration::from_secs(15), || async {
        let got = pay(&app, &a, r1, Some("k1")).await;
        (got.0 == StatusCode::CREATED).then_some(got)
    })
    .await
    .expect("the payment goes through once Postgres is back");
    assert_eq!(paid.1["balance_after"], 4000);
    assert_eq!(pay(&app, &a, r2, None).await.0, StatusCode::CREATED);
    assert_eq!(app.balance(&a.auth).await, 3000);
    app.assert_ledger().await;
}

#[tokio::test]
async fn a_redis_outage_gives_503s_and_changes_nothing() {
    if common::skipped_on_a_cluster() {
        return;
    }
    let proxy = Proxy::start(host_port(&common::redis_url())).await;
    let mut e = env(&[]);
    e.redis_url = Some(through(&common::redis_url(), &proxy));
    let app = TestApp::spawn_with(e).await;
    let (concert, schedule) = app.new_concert(5, 1000).await;
    let a = fan(&app, concert, 5000).await.expect("admitted");
    let r = held(&app, &a, schedule, 1).await;
    held(&app, &a, schedule, 3).await; // keeps the token ACTIVE after the sale
    // (The queue's audit is written behind, so it is left out of the comparison.)
    let counts = || async {
        let mut c = app.table_counts().await;
        c.retain(|(t, _)| t != "reservation_queue");
        c
    };
    let before = counts().await;

    proxy.cut();
    assert_error(&hold(&app, &a, schedule, 2).await, 503, "unavailable");
    let got = app
        .get(&format!("/schedules/{schedule}/seats"), &a.headers())
        .await;
    assert_error(&got, 503, "unavailable");
    assert_error(&pay(&app, &a, r, None).await, 503, "unavailable");
    assert_eq!(counts().await, before, "nothing written");
    proxy.restore();

    let back = eventually(Duration::from_secs(15), || async {
        let got = pay(&app, &a, r, None).await;
        (got.0 == StatusCode::CREATED).then_some(())
    })
    .await;
    assert!(back.is_some(), "payments work again once Redis is back");
    assert_eq!(seat_state(&app, &a, schedule, 1).await, "SOLD");
    app.assert_ledger().await;
}

/// A graceful shutdown (what SIGTERM and Ctrl-C start) lets a payment in
/// flight finish its Postgres and Redis steps, and hands its admission leases
/// to the other server at once.
#[tokio::test]
async fn a_payment_in_flight_at_shutdown_completes_and_the_other_server_takes_over() {
    let mut a = spawn(&[]).await;
    let redis = common::redis().await;
    let (concert, schedule) = a.new_concert(5, 1000).await;
    let group = boxoffice::store::keys::admission_group(concert);
    let lease = a.keys().admission_lease(group);
    let holder = |redis: fred::prelude::Client, lease: String| async move {
        let h: Option<String> = fred::interfaces::KeysInterface::get(&redis, &lease)
            .await
            .unwrap();
        h
    };
    let first = eventually(Duration::from_secs(5), || async {
        (holder(redis.clone(), lease.clone()).await.as_deref() == Some(a.instance_id.as_str()))
            .then_some(())
    })
    .await;
    assert!(first.is_some(), "a holds the concert's admission lease");
    let b = a.sibling(env(&[])).await;
    let payer = fan(&a, concert, 5000).await.expect("admitted");
    let r = held(&a, &payer, schedule, 2).await;
    // The payment waits on its balance row, which the test holds locked.
    let mut blocker = a.pg.begin().await.unwrap();
    sqlx::query("SELECT balance FROM balance WHERE user_id = $1 FOR UPDATE")
        .bind(payer.id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let payment = {
        let request = a
            .http
            .post(format!("{}/payments", a.base))
            .header("authorization", &payer.auth)
            .header("x-queue-token", &payer.token)
            .json(&json!({"reservation_id": r}));
        tokio::spawn(async move { common::read(request.send().await.unwrap()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shut = Instant::now();
    let unblock = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        blocker.commit().await.unwrap();
    };
    tokio::join!(a.shutdown(), unblock);
    assert!(
        shut.elapsed() >= Duration::from_millis(700),
        "shutdown waited for the payment"
    );
    let (status, body) = payment.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The other server holds the lease within a tick or two, not after it lapses.
    let stopped = Instant::now();
    let took_over = eventually(Duration::from_secs(1), || async {
        (holder(redis.clone(), lease.clone()).await.as_deref() == Some(b.instance_id.as_str()))
            .then_some(())
    })
    .await;
    assert!(took_over.is_some(), "b took the lease within a second");
    println!("lease handed over in {:?}", stopped.elapsed());
    // The sale is whole: CONFIRMED, the seat SOLD in Redis, the money moved once.
    assert_eq!(reservation(&b, &payer, r).await.1["status"], "CONFIRMED");
    let next = fan(&b, concert, 0).await.expect("b admits");
    assert_eq!(seat_state(&b, &next, schedule, 2).await, "SOLD");
    assert_eq!(b.balance(&payer.auth).await, 4000);
    b.assert_ledger().await;
    let _ = fred::interfaces::ClientLike::quit(&redis).await;
}

/// A reader whose Accept-Encoding takes gzip gets the seat map gzipped, the
/// same JSON once decompressed, before and after a seat changes; a reader
/// without it, or refusing gzip, gets plain JSON.
#[tokio::test]
async fn the_seat_map_is_gzipped_for_readers_that_accept_it() {
    use std::io::Read;
    let app = spawn(&[]).await;
    // More seats than one gzip piece holds (1 024).
    let (concert, schedule) = app.new_concert(2500, 100).await;
    let f = fan(&app, concert, 0).await.expect("admitted");
    let fetch = |encoding: Option<&'static str>| {
        let mut request = app
            .http
            .get(format!("{}/schedules/{schedule}/seats", app.base))
            .header("authorization", &f.auth)
            .header("x-queue-token", &f.token);
        if let Some(e) = encoding {
            request = request.header("accept-encoding", e);
        }
        async move {
            let response = request.send().await.expect("request sent");
            assert_eq!(response.status(), StatusCode::OK);
            let headers = response.headers().clone();
            assert_eq!(headers["vary"], "accept-encoding");
            let coding = headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = response.bytes().await.expect("a body").to_vec();
            (coding, body)
        }
    };
    let gunzip = |body: &[u8]| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .expect("a valid gzip body");
        serde_json::from_slice::<Value>(&out).expect("JSON inside")
    };
    for seat in [None, Some(1500), Some(2)] {
        if let Some(seat) = seat {
            held(&app, &f, schedule, seat).await;
        }
        let (coding, plain) = fetch(None).await;
        assert_eq!(coding, None);
        let plain: Value = serde_json::from_slice(&plain).expect("plain JSON");
        assert_eq!(plain["seats"].as_array().unwrap().len(), 2500);
        let (coding, zipped) = fetch(Some("gzip, deflate, br")).await;
        assert_eq!(coding.as_deref(), Some("gzip"));
        assert!(zipped.len() * 5 < serde_json::to_vec(&plain).unwrap().len());
        assert_eq!(gunzip(&zipped), plain, "after holding {seat:?}");
        let (coding, _) = fetch(Some("gzip;q=0, identity")).await;
        assert_eq!(coding, None, "gzip refused");
    }
    let (_, zipped) = fetch(Some("gzip")).await;
    let map = gunzip(&zipped);
    let status = |n: i64| {
        map["seats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["seat_no"] == n)
            .map(|s| s["status"].clone())
    };
    assert_eq!(status(2), Some(json!("HELD")));
    assert_eq!(status(1500), Some(json!("HELD")));
    assert_eq!(status(3), Some(json!("AVAILABLE")));
}
