//! Waiting rooms: per-concert settings changed live, the scheduled opening and
//! its shuffled pre-queue, pause and resume, inventory-aware admission and sold
//! out, estimates, and rooms that survive a restart and a Redis flush.

mod common;

use chrono::{Duration as TimeDelta, SecondsFormat, Utc};
use common::{ADMIN_KEY, Env, TestApp, assert_error, eventually, expect_status};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const ADMIN: [(&str, &str); 1] = [("x-admin-key", ADMIN_KEY)];

fn env(pairs: &[(&'static str, &str)]) -> Env {
    let mut env = Env::default();
    for (k, v) in pairs {
        env.vars.insert(k, (*v).to_owned());
    }
    env
}

fn room_path(concert: i64) -> String {
    format!("/admin/concerts/{concert}/waiting-room")
}

async fn room(app: &TestApp, concert: i64) -> Value {
    expect_status(
        app.get(&room_path(concert), &ADMIN).await,
        StatusCode::OK,
        "reading the room",
    )
}

async fn patch(app: &TestApp, concert: i64, body: Value) -> (StatusCode, Value) {
    app.call(Method::PATCH, &room_path(concert), &ADMIN, Some(body))
        .await
}

async fn patched(app: &TestApp, concert: i64, body: Value) -> Value {
    expect_status(
        patch(app, concert, body).await,
        StatusCode::OK,
        "changing the room",
    )
}

/// A fan who joined: their auth and the join's answer.
struct Fan {
    auth: String,
    token: String,
    joined: Value,
}

async fn join(app: &TestApp, auth: &str, concert: i64) -> (StatusCode, Value) {
    app.post(
        "/queue/tokens",
        &[("authorization", auth)],
        json!({"concert_id": concert}),
    )
    .await
}

async fn fan(app: &TestApp, concert: i64) -> Fan {
    let (_, auth) = app.new_user().await;
    let (status, joined) = join(app, &auth, concert).await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "join: {status} {joined}"
    );
    Fan {
        token: joined["token"].as_str().expect("a token").to_owned(),
        auth,
        joined,
    }
}

async fn fans(app: &TestApp, concert: i64, n: usize) -> Vec<Fan> {
    let mut out = Vec::with_capacity(n);
    // In order, so that arrival order is known.
    for _ in 0..n {
        out.push(fan(app, concert).await);
    }
    out
}

async fn poll(app: &TestApp, f: &Fan) -> Value {
    expect_status(
        app.get(
            &format!("/queue/tokens/{}", f.token),
            &[("authorization", &f.auth)],
        )
        .await,
        StatusCode::OK,
        "polling",
    )
}

async fn polls(app: &TestApp, fans: &[Fan]) -> Vec<Value> {
    join_all(fans.iter().map(|f| poll(app, f))).await
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Spearman's rank correlation of two rankings of 0..n (no ties).
fn rank_correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let d2: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[tokio::test]
async fn rooms_start_from_the_defaults_and_change_live() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "40"), ("MAX_ACTIVE", "9")])).await;
    let (concert, _) = app.new_concert(10, 100).await;
    let r = room(&app, concert).await;
    assert_eq!(
        r,
        json!({
            "concert_id": concert, "admission_rate": 40, "max_active": 9,
            "active_ttl_secs": 600, "waiting_idle_secs": 300, "hold_ttl_secs": 300,
            "max_holds_per_user": 4, "opens_at": null, "paused": false, "message": null,
            "state": "OPEN", "waiting": 0, "active": 0, "seats_left": 10,
        })
    );
    // Admin only; unknown concerts are 404.
    assert_error(
        &app.get(&room_path(concert), &[]).await,
        401,
        "unauthorized",
    );
    assert_error(
        &app.get(&room_path(987654321), &ADMIN).await,
        404,
        "concert_not_found",
    );
    assert_error(
        &patch(&app, 987654321, json!({"paused": true})).await,
        404,
        "concert_not_found",
    );
    // Every bad PATCH is a 400 and changes nothing, in Postgres or Redis.
    let before = app.table_counts().await;
    let keys_before = app.redis_keys().await;
    for bad in [
        json!({"admission_rate": 0}),
        json!({"admission_rate": 100001}),
        json!({"admission_rate": "5"}),
        json!({"admission_rate": 2.5}),
        json!({"max_active": -1}),
        json!({"max_active": 1000001}),
        json!({"active_ttl_secs": 9}),
        json!({"waiting_idle_secs": 86401}),
        json!({"hold_ttl_secs": 0}),
        json!({"max_holds_per_user": 101}),
        json!({"opens_at": "tomorrow"}),
        json!({"opens_at": 5}),
        json!({"paused": "yes"}),
        json!({"message": "x".repeat(501)}),
        json!({"message": 5}),
        json!({"admision_rate": 5}),
        json!({"admission_rate": 7, "paused": "yes"}),
        json!({"paused": true, "max_active": -1}),
        json!([]),
    ] {
        let got = patch(&app, concert, bad.clone()).await;
        assert_error(&got, 400, "invalid_request");
        if bad.get("admision_rate").is_some() {
            let message = got.1["error"]["message"].as_str().unwrap();
            assert!(message.contains("admision_rate"), "{message}");
        }
    }
    assert_eq!(app.table_counts().await, before);
    assert_eq!(app.redis_keys().await, keys_before);
    assert_eq!(room(&app, concert).await, r, "nothing changed");
    // A change applies to what it names; the rest stays.
    let changed = patched(
        &app,
        concert,
        json!({"admission_rate": 7, "max_active": 0, "message": "Doors at 7", "hold_ttl_secs": 2}),
    )
    .await;
    assert_eq!(
        (
            &changed["admission_rate"],
            &changed["max_active"],
            &changed["message"],
            &changed["hold_ttl_secs"],
            &changed["active_ttl_secs"]
        ),
        (
            &json!(7),
            &json!(0),
            &json!("Doors at 7"),
            &json!(2),
            &json!(600)
        )
    );
    assert_eq!(room(&app, concert).await, changed);
    // Every token answer carries the room; the message reaches every poll.
    let f = fan(&app, concert).await;
    assert_eq!(f.joined["message"], "Doors at 7");
    assert_eq!(f.joined["room_state"], "OPEN");
    assert_eq!(f.joined["opens_at"], Value::Null);
    patched(&app, concert, json!({"message": "Now at 8"})).await;
    assert_eq!(poll(&app, &f).await["message"], "Now at 8");
    assert_eq!(
        patched(&app, concert, json!({"message": ""})).await["message"],
        Value::Null
    );
    // The new hold time applies to the next hold.
    let admitted = eventually(Duration::from_secs(5), || async {
        (poll(&app, &f).await["status"] == "ACTIVE").then_some(())
    })
    .await;
    assert!(admitted.is_some(), "admitted");
    let (status, hold) = app
        .post(
            "/reservations",
            &[("authorization", &f.auth), ("x-queue-token", &f.token)],
            json!({"schedule_id": room_schedule(&app, concert).await, "seat_no": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let expires = chrono::DateTime::parse_from_rfc3339(hold["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    let left = expires - Utc::now();
    assert!(
        left <= TimeDelta::seconds(2) && left > TimeDelta::zero(),
        "a 2 s hold: {left}"
    );
    // The public concert page shows the room too.
    let (_, page) = app.get(&format!("/concerts/{concert}"), &[]).await;
    assert_eq!(page["waiting_room"]["state"], "OPEN");
    assert_eq!(page["waiting_room"]["seats_left"], 9);
    // Durable: in Postgres, under the seed's table.
    let rate: i32 =
        sqlx::query_scalar("SELECT admission_rate FROM waiting_room WHERE concert_id = $1")
            .bind(concert)
            .fetch_one(&app.pg)
            .await
            .unwrap();
    assert_eq!(rate, 7);
}

async fn room_schedule(app: &TestApp, concert: i64) -> i64 {
    sqlx::query_scalar("SELECT id FROM concert_schedule WHERE concert_id = $1 ORDER BY id LIMIT 1")
        .bind(concert)
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

/// SCHEDULED, then OPEN at opens_at: the pre-queue has no positions and
/// counts down; at the opening every pre-queue token gets a uniformly random
/// place ahead of later joins, and tokens placed before keep theirs.
#[tokio::test]
async fn the_pre_queue_is_shuffled_at_the_opening() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "1"), ("MAX_ACTIVE", "1")])).await;
    let (concert, _) = app.new_concert(10, 100).await;
    // Two placed before any opening is set: one admitted, one waiting at 1.
    let early = fans(&app, concert, 2).await;
    eventually(Duration::from_secs(5), || async {
        (poll(&app, &early[0]).await["status"] == "ACTIVE").then_some(())
    })
    .await
    .expect("the first is admitted");
    let opens = Utc::now() + TimeDelta::hours(1);
    let r = patched(&app, concert, json!({"opens_at": rfc3339(opens)})).await;
    assert_eq!(r["state"], "SCHEDULED");
    let n = 300;
    let pre = fans(&app, concert, n).await;
    for f in &pre {
        assert_eq!(f.joined["status"], "WAITING");
        assert_eq!(
            f.joined["position"],
            Value::Null,
            "no place before the opening"
        );
        assert_eq!(f.joined["room_state"], "SCHEDULED");
        let wait = f.joined["estimated_wait_seconds"].as_i64().unwrap();
        assert!(wait >= 3590, "counts down to the opening: {wait}");
    }
    assert_eq!(
        poll(&app, &early[1]).await["position"],
        1,
        "placed before the opening keeps its place"
    );
    let r = room(&app, concert).await;
    assert_eq!(
        (r["waiting"].as_i64(), r["active"].as_i64()),
        (Some(301), Some(1))
    );
    // Nobody is admitted while scheduled.
    patched(&app, concert, json!({"max_active": 5})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(poll(&app, &early[1]).await["status"], "WAITING");
    // Opening now; the admission is held back (paused) to read the order.
    patched(&app, concert, json!({"paused": true, "opens_at": null})).await;
    let after = fan(&app, concert).await; // joins after the opening: last
    let seen = polls(&app, &pre).await;
    let places: Vec<i64> = seen
        .iter()
        .map(|b| b["position"].as_i64().expect("a place after the opening"))
        .collect();
    let distinct: HashSet<i64> = places.iter().copied().collect();
    assert_eq!(distinct.len(), n, "every place once");
    assert_eq!(
        *places.iter().min().unwrap(),
        2,
        "behind the one placed before"
    );
    assert_eq!(*places.iter().max().unwrap(), n as i64 + 1);
    assert_eq!(poll(&app, &after).await["position"], n as i64 + 2);
    assert_eq!(poll(&app, &early[1]).await["position"], 1);
    // Arriving early in the pre-queue gives nothing: arrival order and place
    // are not correlated (for 300 fans, |rho| > 0.25 by chance is ~4 sigma).
    let arrival: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let place: Vec<f64> = places.iter().map(|&p| (p - 2) as f64).collect();
    let rho = rank_correlation(&arrival, &place);
    println!("rank correlation of arrival and place over {n} fans: {rho:.3}");
    assert!(rho.abs() < 0.25, "rank correlation {rho}");
    // The first half of arrivals does not hold the first half of places.
    let early_half_in_front = places[..n / 2]
        .iter()
        .filter(|&&p| p <= (n / 2) as i64 + 1)
        .count();
    assert!(
        (50..=100).contains(&early_half_in_front),
        "{early_half_in_front} of the first 150 in the front half"
    );
    // Resumed, the room admits in the drawn order.
    patched(
        &app,
        concert,
        json!({"paused": false, "admission_rate": 50}),
    )
    .await;
    let first = pre
        .iter()
        .zip(&places)
        .min_by_key(|(_, p)| **p)
        .map(|(f, _)| f)
        .unwrap();
    let last = pre
        .iter()
        .zip(&places)
        .max_by_key(|(_, p)| **p)
        .map(|(f, _)| f)
        .unwrap();
    eventually(Duration::from_secs(5), || async {
        (poll(&app, first).await["status"] == "ACTIVE").then_some(())
    })
    .await
    .expect("the first drawn is admitted");
    assert_eq!(poll(&app, &early[1]).await["status"], "ACTIVE");
    assert_eq!(poll(&app, last).await["status"], "WAITING");
}

/// A real scheduled opening, reached by the clock, with two servers: the
/// pre-queue closes exactly once (one closed pre-queue, every place once),
/// and the admission carries on after its lease moves.
#[tokio::test]
async fn the_opening_happens_once_with_two_servers() {
    let a = TestApp::spawn_with(env(&[("ADMISSION_RATE", "5"), ("MAX_ACTIVE", "0")])).await;
    let b = a
        .sibling(env(&[("ADMISSION_RATE", "5"), ("MAX_ACTIVE", "0")]))
        .await;
    let (concert, _) = a.new_concert(10, 100).await;
    let opens = Utc::now() + TimeDelta::seconds(4);
    patched(&a, concert, json!({"opens_at": rfc3339(opens)})).await;
    let pre = fans(&b, concert, 30).await;
    assert!(pre.iter().all(|f| f.joined["position"].is_null()));
    // Both servers poll through the opening.
    let until = Instant::now() + Duration::from_secs(7);
    let mut seen_places = Vec::new();
    while Instant::now() < until {
        let (x, y) = tokio::join!(polls(&a, &pre), polls(&b, &pre));
        if x.iter()
            .chain(&y)
            .all(|p| !p["position"].is_null() || p["status"] == "ACTIVE")
        {
            seen_places = x;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!seen_places.is_empty(), "the room opened");
    let redis = common::redis().await;
    let segments: Option<String> = fred::interfaces::HashesInterface::hget(
        &redis,
        a.keys().queue(concert).room(),
        boxoffice::store::scripts::codes::room_field::SEGMENTS,
    )
    .await
    .unwrap();
    let bases: Vec<&str> = segments
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    assert!(bases.len() <= 1, "closed once: {bases:?}");
    // The server that admits this concert dies: the other takes over and
    // everyone is admitted once.
    let group = boxoffice::store::keys::admission_group(concert);
    let leader: Option<String> =
        fred::interfaces::KeysInterface::get(&redis, a.keys().admission_lease(group))
            .await
            .unwrap();
    let (mut dead, alive) = if leader.as_deref() == Some(a.instance_id.as_str()) {
        (a, b)
    } else {
        (b, a)
    };
    dead.crash();
    let mid = polls(&alive, &pre).await;
    assert!(
        mid.iter().any(|p| p["status"] == "WAITING"),
        "some are still waiting at the hand-over"
    );
    let all_in = eventually(Duration::from_secs(15), || async {
        let s = polls(&alive, &pre).await;
        s.iter().all(|p| p["status"] == "ACTIVE").then_some(())
    })
    .await;
    assert!(all_in.is_some(), "all admitted after the hand-over");
    let took_over: Option<String> =
        fred::interfaces::KeysInterface::get(&redis, alive.keys().admission_lease(group))
            .await
            .unwrap();
    assert_eq!(took_over.as_deref(), Some(alive.instance_id.as_str()));
    let _ = fred::interfaces::ClientLike::quit(&redis).await;
}

/// Every row of API.md's table: OPEN admits, PAUSED keeps places and admits
/// nobody, SOLD_OUT refuses new joins (but returns a live token) and shows on
/// every poll, a new schedule reopens the room.
#[tokio::test]
async fn pause_sold_out_and_reopening() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "20"), ("MAX_ACTIVE", "1")])).await;
    let (concert, schedule) = app.new_concert(1, 100).await;
    assert_eq!(
        patched(&app, concert, json!({"paused": true})).await["state"],
        "PAUSED"
    );
    let queue = fans(&app, concert, 3).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = polls(&app, &queue).await;
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s["status"], "WAITING");
        assert_eq!(s["room_state"], "PAUSED");
        assert_eq!(s["position"], i as i64 + 1, "places kept while paused");
    }
    patched(&app, concert, json!({"paused": false})).await;
    let buyer = &queue[0];
    eventually(Duration::from_secs(5), || async {
        (poll(&app, buyer).await["status"] == "ACTIVE").then_some(())
    })
    .await
    .expect("resumed: the first is admitted");
    assert_eq!(poll(&app, &queue[1]).await["position"], 1);
    // The one seat is bought.
    app.charge(&buyer.auth, 1000).await;
    let pass = [
        ("authorization", buyer.auth.as_str()),
        ("x-queue-token", buyer.token.as_str()),
    ];
    let (status, hold) = app
        .post(
            "/reservations",
            &pass,
            json!({"schedule_id": schedule, "seat_no": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hold}");
    let (status, paid) = app
        .post("/payments", &pass, json!({"reservation_id": hold["id"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    // Sold out: waiters see it on their next poll, stay WAITING, nobody new joins.
    let sold_out = eventually(Duration::from_secs(3), || async {
        let s = poll(&app, &queue[1]).await;
        (s["room_state"] == "SOLD_OUT").then_some(s)
    })
    .await
    .expect("waiters see SOLD_OUT");
    assert_eq!(sold_out["status"], "WAITING");
    assert_eq!(sold_out["seats_left"], 0);
    let (_, late) = app.new_user().await;
    assert_error(&join(&app, &late, concert).await, 409, "sold_out");
    let (status, again) = join(&app, &queue[2].auth, concert).await;
    assert_eq!(status, StatusCode::OK, "a live token is still returned");
    assert_eq!(again["room_state"], "SOLD_OUT");
    assert_eq!(room(&app, concert).await["state"], "SOLD_OUT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        poll(&app, &queue[1]).await["status"],
        "WAITING",
        "nobody admitted"
    );
    // A new schedule reopens the room.
    let (status, _) = app
        .post(
            &format!("/admin/concerts/{concert}/schedules"),
            &ADMIN,
            json!({"start_at": "2027-02-01T19:00:00Z", "seat_count": 5, "price": 100}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let r = room(&app, concert).await;
    assert_eq!((&r["state"], &r["seats_left"]), (&json!("OPEN"), &json!(5)));
    assert_eq!(join(&app, &late, concert).await.0, StatusCode::CREATED);
    eventually(Duration::from_secs(5), || async {
        (poll(&app, &queue[1]).await["status"] == "ACTIVE").then_some(())
    })
    .await
    .expect("admission resumes");
}

/// While every seat left is HELD nobody is admitted; a hold that is given
/// back lets the next fan in.
#[tokio::test]
async fn nobody_is_admitted_while_every_seat_is_held() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "20"), ("MAX_ACTIVE", "0")])).await;
    let (concert, schedule) = app.new_concert(2, 100).await;
    let holder = fan(&app, concert).await;
    eventually(Duration::from_secs(5), || async {
        (poll(&app, &holder).await["status"] == "ACTIVE").then_some(())
    })
    .await
    .expect("admitted");
    let pass = [
        ("authorization", holder.auth.as_str()),
        ("x-queue-token", holder.token.as_str()),
    ];
    let mut holds = Vec::new();
    for seat in 1..=2 {
        let (status, hold) = app
            .post(
                "/reservations",
                &pass,
                json!({"schedule_id": schedule, "seat_no": seat}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{hold}");
        holds.push(hold["id"].as_i64().unwrap());
    }
    let waiter = fan(&app, concert).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let w = poll(&app, &waiter).await;
    assert_eq!(
        w["status"], "WAITING",
        "no seat is available: nobody is admitted"
    );
    assert_eq!(w["seats_left"], 0);
    assert_eq!(w["room_state"], "OPEN", "held is not sold: not SOLD_OUT");
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/reservations/{}", holds[0]),
            &[("authorization", &holder.auth)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let admitted = eventually(Duration::from_secs(5), || async {
        let w = poll(&app, &waiter).await;
        (w["status"] == "ACTIVE").then_some(w)
    })
    .await
    .expect("a seat came back: admitted");
    assert_eq!(admitted["seats_left"], 1);
}

/// Each concert keeps its own rate and cap, and a live rate change holds the
/// new bound from the tick it lands.
#[tokio::test]
async fn rooms_keep_their_own_rates_and_a_change_applies_live() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "2"), ("MAX_ACTIVE", "0")])).await;
    let (slow, _) = app.new_concert(10, 100).await;
    let (capped, _) = app.new_concert(10, 100).await;
    patched(&app, slow, json!({"paused": true})).await;
    patched(
        &app,
        capped,
        json!({"admission_rate": 50, "max_active": 3, "paused": true}),
    )
    .await;
    let slow_fans = fans(&app, slow, 40).await;
    let capped_fans = fans(&app, capped, 10).await;
    patched(&app, slow, json!({"paused": false})).await;
    patched(&app, capped, json!({"paused": false})).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let active = |fans: Vec<Value>| fans.iter().filter(|s| s["status"] == "ACTIVE").count();
    let slow_in = active(polls(&app, &slow_fans).await);
    let capped_in = active(polls(&app, &capped_fans).await);
    let bound = 2.0 * started.elapsed().as_secs_f64() + 2.0 + 1.0;
    assert!(
        (slow_in as f64) <= bound,
        "{slow_in} in at 2/s after {:?}",
        started.elapsed()
    );
    assert_eq!(capped_in, 3, "the other room fills its own cap at once");
    // The slow room's rate goes to 20: within the new bound from the change.
    let before = slow_in;
    patched(&app, slow, json!({"admission_rate": 20})).await;
    let changed = Instant::now();
    let mut reached = 0;
    while changed.elapsed() < Duration::from_millis(1200) {
        let now_in = active(polls(&app, &slow_fans).await);
        let bound = before as f64 + 20.0 * changed.elapsed().as_secs_f64() + 20.0 + 2.0;
        assert!(
            (now_in as f64) <= bound,
            "{now_in} after {:?}",
            changed.elapsed()
        );
        reached = now_in;
    }
    assert!(
        reached >= before + 15,
        "the new rate is used: {before} -> {reached}"
    );
}

/// The room is durable: a Redis flush and a restart keep its settings, and it
/// is back before anyone is admitted.
#[tokio::test]
async fn rooms_survive_a_redis_flush_and_a_restart() {
    let mut app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "20")])).await;
    let (concert, _) = app.new_concert(5, 100).await;
    patched(
        &app,
        concert,
        json!({"paused": true, "message": "Back soon", "admission_rate": 9}),
    )
    .await;
    app.flush_redis().await;
    let f = fan(&app, concert).await;
    assert_eq!(f.joined["room_state"], "PAUSED", "restored before the join");
    assert_eq!(f.joined["message"], "Back soon");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(poll(&app, &f).await["status"], "WAITING", "still paused");
    app.shutdown().await;
    app.flush_redis().await;
    let again = app.sibling(env(&[("ADMISSION_RATE", "20")])).await;
    let r = room(&again, concert).await;
    assert_eq!(
        (&r["paused"], &r["message"], &r["admission_rate"]),
        (&json!(true), &json!("Back soon"), &json!(9))
    );
}

/// At a steady rate with no cap, the first estimate a fan gets is within 30 %
/// + 2 s of the wait that follows (API.md).
#[tokio::test]
async fn first_estimates_are_close_to_the_wait() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "4"), ("MAX_ACTIVE", "0")])).await;
    let (concert, _) = app.new_concert(10, 100).await;
    patched(&app, concert, json!({"paused": true})).await;
    let queue = fans(&app, concert, 24).await;
    // Wait until the bucket is full as it would be in a steady room, then go.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let first: Vec<i64> = polls(&app, &queue)
        .await
        .iter()
        .map(|s| s["estimated_wait_seconds"].as_i64().unwrap())
        .collect();
    patched(&app, concert, json!({"paused": false})).await;
    let started = Instant::now();
    let mut admitted_at: Vec<Option<f64>> = vec![None; queue.len()];
    while admitted_at.iter().any(Option::is_none) && started.elapsed() < Duration::from_secs(20) {
        for (i, s) in polls(&app, &queue).await.iter().enumerate() {
            if admitted_at[i].is_none() && s["status"] == "ACTIVE" {
                admitted_at[i] = Some(started.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut worst = 0.0f64;
    for (i, (&estimate, waited)) in first.iter().zip(&admitted_at).enumerate() {
        let waited = waited.expect("everyone is admitted");
        let error = (waited - estimate as f64).abs();
        let allowed = 0.3 * estimate as f64 + 2.0;
        worst = worst.max(error / allowed);
        assert!(
            error <= allowed,
            "fan {i}: estimated {estimate} s, waited {waited:.1} s"
        );
    }
    println!(
        "estimate error at worst {:.0} % of what API.md allows",
        worst * 100.0
    );
}

/// An opening far in the future (any RFC 3339 year up to 9999 is accepted)
/// is written into the room's view as a whole number: Lua once wrote
/// `2.2573710039044e+14`, and every join of that room was a 500 (schemathesis
/// found it).
#[tokio::test]
async fn an_opening_in_a_far_year_still_serves_joins() {
    let app = TestApp::spawn_with(env(&[])).await;
    let (concert, _) = app.new_concert(5, 100).await;
    patched(&app, concert, json!({"opens_at": "9123-01-01T00:00:00Z"})).await;
    let (_, auth) = app.new_user().await;
    let (status, joined) = join(&app, &auth, concert).await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    assert_eq!(joined["room_state"], "SCHEDULED");
    assert_eq!(joined["opens_at"], "9123-01-01T00:00:00Z");
}

/// An operator lengthens a live room's idle window. Poll marks are kept per
/// epoch, a quarter of the window, so the marks made before the change are
/// under the old length: until every waiter has had a whole new window to poll,
/// none may be judged idle by them. A waiter who polled just before the change
/// and reaches the head just after it is admitted, not dropped (the tick after
/// the change once dropped such waiters).
#[tokio::test]
async fn a_waiter_is_not_judged_idle_by_marks_of_an_old_idle_window() {
    let app = TestApp::spawn_with(env(&[
        ("ADMISSION_RATE", "50"),
        ("MAX_ACTIVE", "1"),
        ("WAITING_IDLE_SECS", "10"),
    ]))
    .await;
    let (concert, _) = app.new_concert(10, 100).await;
    let first = fan(&app, concert).await;
    let active = eventually(Duration::from_secs(5), || async {
        (poll(&app, &first).await["status"] == "ACTIVE").then_some(())
    })
    .await;
    assert!(active.is_some(), "the first fan is admitted");
    // Two waiters behind the cap; their joins are their only marks.
    let queue = fans(&app, concert, 2).await;
    assert_eq!(queue[0].joined["position"], 1, "{}", queue[0].joined);
    patched(&app, concert, json!({"waiting_idle_secs": 20})).await;
    // Some ticks under the new length, then the slot frees.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let left = app
        .call(
            Method::DELETE,
            &format!("/queue/tokens/{}", first.token),
            &[("authorization", &first.auth)],
            None,
        )
        .await;
    assert_eq!(left.0, StatusCode::NO_CONTENT, "{}", left.1);
    // Read through the room (a poll would leave a mark): the head waiter is
    // admitted, the other still waits.
    let settled = eventually(Duration::from_secs(5), || async {
        let r = room(&app, concert).await;
        (r["active"] == 1).then_some(r)
    })
    .await
    .expect("the freed slot is taken");
    assert_eq!(settled["waiting"], 1, "nobody was dropped: {settled}");
    assert_eq!(poll(&app, &queue[0]).await["status"], "ACTIVE");
    let second = poll(&app, &queue[1]).await;
    assert_eq!(
        (second["status"].clone(), second["position"].clone()),
        (json!("WAITING"), json!(1))
    );
}
