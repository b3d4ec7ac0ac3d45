//! The waiting room: joining, polling, leaving, admission at the configured rate
//! and cap (also with two servers), expiry, idle waiters, the gate, the audit.

mod common;

use boxoffice::queue::{QueueStatus, QueueToken};
use boxoffice::store::Keys;
use boxoffice::store::keys::{ADMISSION_GROUPS, admission_group};
use common::process::Process;
use common::{Env, TestApp, assert_error, eventually, expect_status};
use fred::prelude::*;
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

fn env(pairs: &[(&'static str, &str)]) -> Env {
    let mut env = Env::default();
    for (k, v) in pairs {
        env.vars.insert(k, (*v).to_owned());
    }
    env
}

async fn join(app: &TestApp, auth: &str, concert: i64) -> (StatusCode, Value) {
    app.post(
        "/queue/tokens",
        &[("authorization", auth)],
        json!({"concert_id": concert}),
    )
    .await
}

/// The token's status body, for the test to compare. A poll that fails panics
/// (see `expect_status`); tests about refused polls call `app.get` themselves.
async fn poll(app: &TestApp, auth: &str, token: &str) -> Value {
    let answer = app
        .get(
            &format!("/queue/tokens/{token}"),
            &[("authorization", auth)],
        )
        .await;
    expect_status(answer, StatusCode::OK, "polling a token")
}

/// The token's status body once it reads `want`; None if it does not within
/// `within`.
async fn wait_for_status(
    app: &TestApp,
    auth: &str,
    token: &str,
    want: &str,
    within: Duration,
) -> Option<Value> {
    eventually(within, || async {
        let body = poll(app, auth, token).await;
        (body["status"] == want).then_some(body)
    })
    .await
}

/// ACTIVE tokens of a concert, straight from Redis.
async fn active_count(app: &TestApp, concert: i64) -> i64 {
    let redis = common::redis().await;
    let n: i64 = redis
        .zcard(app.keys().queue(concert).active())
        .await
        .unwrap();
    let _ = redis.quit().await;
    n
}

/// A new user admitted to `concert`: (auth, token). Err says whether the join
/// was refused or the token not ACTIVE within 10 s.
async fn admitted(app: &TestApp, concert: i64) -> Result<(String, String), String> {
    let (_, auth) = app.new_user().await;
    let (status, body) = join(app, &auth, concert).await;
    let token = match body["token"].as_str() {
        Some(token) if status == StatusCode::CREATED => token.to_owned(),
        _ => return Err(format!("joining the queue: {status}: {body}")),
    };
    wait_for_status(app, &auth, &token, "ACTIVE", Duration::from_secs(10))
        .await
        .ok_or_else(|| format!("token {token} not ACTIVE within 10 s"))?;
    Ok((auth, token))
}

/// 200 fans join at once while no slot is free: 200 distinct tokens in places
/// 1..=200 exactly; joining again gives the same token and place, with 200.
#[tokio::test]
async fn concurrent_joins_get_distinct_tokens_and_exact_places() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "1"), ("MAX_ACTIVE", "1")])).await;
    let (concert, _) = app.new_concert(10, 100).await;
    admitted(&app, concert).await.expect("admitted"); // the one slot is taken: nobody else moves
    let users: Vec<String> = join_all((0..200).map(|_| app.new_user()))
        .await
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let joins = join_all(users.iter().map(|auth| join(&app, auth, concert))).await;
    let mut tokens = HashSet::new();
    let mut places = Vec::new();
    for (status, body) in &joins {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "WAITING");
        assert_eq!(body["concert_id"], concert);
        assert!(body["estimated_wait_seconds"].as_i64().unwrap() >= 1);
        assert_eq!(body["expires_at"], Value::Null);
        tokens.insert(body["token"].as_str().unwrap().to_owned());
        places.push(body["position"].as_i64().unwrap());
    }
    assert_eq!(tokens.len(), 200);
    places.sort();
    assert_eq!(places, (1..=200).collect::<Vec<_>>());
    // Again, the same user: the same token and place, 200.
    let (status, again) = join(&app, &users[7], concert).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["token"], joins[7].1["token"]);
    assert_eq!(again["position"], joins[7].1["position"]);
    // Polls agree with the places.
    let polled = poll(&app, &users[7], joins[7].1["token"].as_str().unwrap()).await;
    assert_eq!(polled["position"], joins[7].1["position"]);
}

/// A place is counted in three parts (whole groups of 1 048 576 arrival
/// numbers, whole blocks of 65 536 in the fan's group, then bits of its own
/// block: lua/lib.lua `w_upto`). Fans whose arrival numbers straddle those
/// borders get exact places, and keep them exact as fans ahead leave and the
/// head is admitted.
#[tokio::test]
async fn places_stay_exact_across_the_arrival_bitmaps_blocks_and_groups() {
    const BLOCK: i64 = 65_536;
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "1"), ("MAX_ACTIVE", "1")])).await;
    let (concert, _) = app.new_concert(10, 100).await;
    let (first_auth, first) = admitted(&app, concert).await.expect("admitted");
    let redis = common::redis().await;
    let arrivals = app.keys().queue(concert).arrivals();
    // (auth, token), in arrival order.
    let mut fans: Vec<(String, String)> = Vec::new();
    for next in [3, BLOCK - 2, 16 * BLOCK - 1, 19 * BLOCK + 5, 40 * BLOCK - 2] {
        let _: () = redis
            .set(&arrivals, next - 1, None, None, false)
            .await
            .unwrap();
        for _ in 0..3 {
            let (_, auth) = app.new_user().await;
            let (status, body) = join(&app, &auth, concert).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["position"], json!(fans.len() + 1), "{body}");
            fans.push((auth, body["token"].as_str().unwrap().to_owned()));
        }
    }
    let _ = redis.quit().await;
    // Every waiting fan's poll reads its rank among those still waiting.
    let check = |waiting: Vec<(String, String)>, step: &'static str| {
        let app = &app;
        async move {
            let polls = join_all(waiting.iter().map(|(auth, token)| poll(app, auth, token))).await;
            let places: Vec<Value> = polls.iter().map(|body| body["position"].clone()).collect();
            let want: Vec<Value> = (1..=waiting.len()).map(|n| json!(n)).collect();
            assert_eq!(places, want, "{step}");
        }
    };
    check(fans.clone(), "as joined").await;
    let leave = |auth: String, token: String| {
        let app = &app;
        async move {
            let path = format!("/queue/tokens/{token}");
            let (status, _) = app
                .call(Method::DELETE, &path, &[("authorization", &auth)], None)
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
        }
    };
    // The middle of the three around arrival 16 × 65 536 leaves (its block and
    // group counts drop), then the middle of the last three (index 13 before
    // the first removal).
    for i in [7, 12] {
        let (auth, token) = fans.remove(i);
        leave(auth, token).await;
    }
    check(fans.clone(), "after two left").await;
    // The ACTIVE fan leaves: the head of the queue is admitted (taken out of
    // the bitmap by the admission tick), the rest move up one.
    leave(first_auth, first).await;
    let (auth, token) = fans.remove(0);
    wait_for_status(&app, &auth, &token, "ACTIVE", Duration::from_secs(10))
        .await
        .expect("the head of the queue takes the freed slot");
    check(fans, "after the head was admitted").await;
}

/// Rate 5/s and cap 12: admissions never run ahead of 5 × elapsed + 5 (plus a
/// tick), reach exactly the cap and stay there; giving slots back lets the next in.
#[tokio::test]
async fn admission_keeps_the_rate_and_the_cap() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "5"), ("MAX_ACTIVE", "12")])).await;
    let (concert, _) = app.new_concert(10, 100).await;
    let users: Vec<String> = join_all((0..20).map(|_| app.new_user()))
        .await
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let started = Instant::now();
    let joins = join_all(users.iter().map(|auth| join(&app, auth, concert))).await;
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let active = active_count(&app, concert).await;
        let bound = 5.0 * started.elapsed().as_secs_f64() + 5.0 + 1.0;
        assert!(
            (active as f64) <= bound,
            "{active} active after {:?}",
            started.elapsed()
        );
        assert!(active <= 12, "past the cap: {active}");
        peak = peak.max(active);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(peak, 12, "the cap is reached");
    assert_eq!(active_count(&app, concert).await, 12);
    // The first admitted come first: arrival order.
    let mut order: Vec<(i64, usize)> = joins
        .iter()
        .enumerate()
        .map(|(i, (_, b))| (b["position"].as_i64().unwrap(), i))
        .collect();
    order.sort();
    for &(_, i) in &order[..12] {
        let body = poll(&app, &users[i], joins[i].1["token"].as_str().unwrap()).await;
        assert_eq!(body["status"], "ACTIVE", "the 12 oldest are in");
        assert_eq!(body["position"], Value::Null);
        assert_eq!(body["estimated_wait_seconds"], 0);
        assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    }
    // Three give their slots back: the next three get in, no more.
    for &(_, i) in &order[..3] {
        let path = format!("/queue/tokens/{}", joins[i].1["token"].as_str().unwrap());
        let (status, _) = app
            .call(Method::DELETE, &path, &[("authorization", &users[i])], None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (_, next) = order[14];
    wait_for_status(
        &app,
        &users[next],
        joins[next].1["token"].as_str().unwrap(),
        "ACTIVE",
        Duration::from_secs(5),
    )
    .await
    .expect("a freed slot goes to the next in line");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(active_count(&app, concert).await, 12);
    let (_, after) = order[15];
    assert_eq!(
        poll(
            &app,
            &users[after],
            joins[after].1["token"].as_str().unwrap()
        )
        .await["position"],
        1
    );
}

/// Two servers on one Redis admit at the configured rate, not twice it; when the
/// holder of the concert's group lease dies, the other takes over within the
/// API's 5 seconds.
#[tokio::test]
async fn two_servers_admit_at_one_rate_and_hand_over() {
    let settings = [("ADMISSION_RATE", "5"), ("MAX_ACTIVE", "0")];
    let mut a = TestApp::spawn_with(env(&settings)).await;
    let mut b = a.sibling(env(&settings)).await;
    let (concert, _) = a.new_concert(10, 100).await;
    let users: Vec<String> = join_all((0..60).map(|_| a.new_user()))
        .await
        .into_iter()
        .map(|(_, x)| x)
        .collect();
    let started = Instant::now();
    for (i, auth) in users.iter().enumerate() {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(join(app, auth, concert).await.0, StatusCode::CREATED);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let active = active_count(&a, concert).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        (active as f64) <= 5.0 * elapsed + 5.0 + 1.0,
        "{active} admitted in {elapsed:.1} s: more than one rate"
    );
    assert!(
        (active as f64) >= 5.0 * 2.0,
        "{active} admitted in {elapsed:.1} s: admission stalled"
    );

    let redis = common::redis().await;
    let lease = a.keys().admission_lease(admission_group(concert));
    let holder: String = redis.get(&lease).await.unwrap();
    let survivor_is_b = holder == a.instance_id;
    assert!(holder == a.instance_id || holder == b.instance_id);
    if survivor_is_b {
        a.crash()
    } else {
        b.crash()
    }
    let before = active_count(&a, concert).await;
    let took_over = eventually(Duration::from_secs(5), || async {
        (active_count(&a, concert).await > before).then_some(())
    })
    .await;
    assert!(
        took_over.is_some(),
        "nobody admitted within 5 s of the holder's death"
    );
    let holder: String = redis.get(&lease).await.unwrap();
    assert_eq!(
        holder,
        if survivor_is_b {
            b.instance_id.clone()
        } else {
            a.instance_id.clone()
        }
    );
    let _ = redis.quit().await;
}

/// Every admission group's lease holder: holder -> its groups.
async fn lease_holders(redis: &Client, keys: &Keys) -> HashMap<String, Vec<i64>> {
    let mut holders: HashMap<String, Vec<i64>> = HashMap::new();
    for group in 0..ADMISSION_GROUPS {
        let holder: Option<String> = redis.get(keys.admission_lease(group)).await.unwrap();
        if let Some(holder) = holder {
            holders.entry(holder).or_default().push(group);
        }
    }
    holders
}

/// Holders of all 16 groups, `servers` of them, each with its even share.
fn spread_over(holders: &HashMap<String, Vec<i64>>, servers: usize) -> bool {
    let per = ADMISSION_GROUPS as usize / servers;
    holders.len() == servers
        && holders.values().map(Vec::len).sum::<usize>() == ADMISSION_GROUPS as usize
        && holders.values().all(|g| (per..=per + 1).contains(&g.len()))
}

/// Three servers share the admission groups (16 over 3: 5 or 6 each) and
/// every concert is admitted, whichever server it landed on. One is killed
/// (`kill -9`: nothing handed back); within its lease time and a few ticks the
/// other two hold all 16 groups, 8 each, and admit in the dead one's groups;
/// the concert that was being admitted there keeps its rate.
#[tokio::test]
async fn three_servers_share_the_admission_groups_and_a_dead_ones_move() {
    const VARS: [(&str, &str); 2] = [("ADMISSION_RATE", "5"), ("MAX_ACTIVE", "0")];
    let a = TestApp::spawn_with(env(&VARS)).await;
    let b = a.sibling(env(&VARS)).await;
    let mut c = Process::start(&a, &common::redis_url(), &VARS).await;
    let on_c = a.at(&c.base);
    let redis = common::redis().await;
    let keys = a.keys();
    let spread = eventually(Duration::from_secs(5), || async {
        let holders = lease_holders(&redis, &keys).await;
        spread_over(&holders, 3).then_some(holders)
    })
    .await;
    let Some(spread) = spread else {
        panic!("not spread: {:?}", lease_holders(&redis, &keys).await);
    };
    assert!(spread.contains_key(&a.instance_id) && spread.contains_key(&b.instance_id));
    let (c_id, c_groups) = spread
        .iter()
        .find(|(id, _)| **id != a.instance_id && **id != b.instance_id)
        .map(|(id, groups)| (id.clone(), groups.clone()))
        .unwrap();

    // A concert in every group, each admitting a fan who joined on c.
    let mut concerts: HashMap<i64, i64> = HashMap::new();
    while concerts.len() < ADMISSION_GROUPS as usize {
        let (concert, _) = a.new_concert(10, 100).await;
        concerts.entry(admission_group(concert)).or_insert(concert);
    }
    let everyone = join_all(concerts.values().map(|&concert| admitted(&on_c, concert))).await;
    assert!(everyone.iter().all(Result::is_ok), "{everyone:?}");

    // Fans queue for a concert of c's, then c dies.
    let busy = concerts[&c_groups[0]];
    let users: Vec<String> = join_all((0..40).map(|_| a.new_user()))
        .await
        .into_iter()
        .map(|(_, x)| x)
        .collect();
    let started = Instant::now();
    for (i, auth) in users.iter().enumerate() {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(join(app, auth, busy).await.0, StatusCode::CREATED);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = active_count(&a, busy).await;
    assert!(
        before > 1,
        "c admitted its concert before it died: {before}"
    );
    let killed = Instant::now();
    c.kill9();

    let moved = eventually(Duration::from_secs(5), || async {
        let holders = lease_holders(&redis, &keys).await;
        spread_over(&holders, 2).then_some(holders)
    })
    .await;
    let Some(moved) = moved else {
        panic!("not moved: {:?}", lease_holders(&redis, &keys).await);
    };
    let took = killed.elapsed();
    println!("c's groups moved {took:?} after its death");
    assert!(!moved.contains_key(&c_id));
    // Admission goes on in every other group c had.
    let after = join_all(c_groups[1..].iter().map(|g| admitted(&a, concerts[g]))).await;
    assert!(after.iter().all(Result::is_ok), "{after:?}");
    assert!(active_count(&a, busy).await > before, "busy admits again");
    // Never more than the rate, hand-over or not (bucket: rate x t + rate,
    // and the fan admitted before).
    let active = active_count(&a, busy).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        (active as f64) <= 5.0 * elapsed + 5.0 + 2.0,
        "{active} admitted in {elapsed:.1} s: more than the rate"
    );
    let _ = redis.quit().await;
}

/// An ACTIVE token expires after ACTIVE_TTL_SECS and frees its slot; WAITING
/// tokens that stop polling drop out, and the places behind them close up.
#[tokio::test]
async fn expiry_frees_slots_and_idle_waiters_drop_out() {
    let app = TestApp::spawn_with(env(&[
        ("ADMISSION_RATE", "50"),
        ("MAX_ACTIVE", "1"),
        ("ACTIVE_TTL_SECS", "5"),
        ("WAITING_IDLE_SECS", "1"),
    ]))
    .await;
    let (concert, _) = app.new_concert(10, 100).await;
    let (first_auth, first) = admitted(&app, concert).await.expect("admitted");
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let (_, auth) = app.new_user().await;
        let (_, body) = join(&app, &auth, concert).await;
        waiting.push((auth, body["token"].as_str().unwrap().to_owned()));
    }
    // Only the last keeps polling; the two ahead of it go quiet and drop out.
    let (keen_auth, keen) = &waiting[2];
    let closed_up = eventually(Duration::from_secs(4), || async {
        let body = poll(&app, keen_auth, keen).await;
        (body["position"] == 1 || body["status"] == "ACTIVE").then_some(())
    })
    .await;
    assert!(closed_up.is_some(), "places did not close up");
    for (auth, token) in &waiting[..2] {
        assert_eq!(
            poll(&app, auth, token).await["status"],
            "EXPIRED",
            "an idle waiter dropped out"
        );
    }
    // The first token's five seconds run out: its slot goes to the keen waiter.
    let body = wait_for_status(&app, keen_auth, keen, "ACTIVE", Duration::from_secs(8))
        .await
        .expect("the expired token's slot goes to the keen waiter");
    assert_eq!(body["position"], Value::Null);
    let gone = poll(&app, &first_auth, &first).await;
    assert_eq!(gone["status"], "EXPIRED");
    assert_eq!(
        (gone["position"].clone(), gone["expires_at"].clone()),
        (Value::Null, Value::Null)
    );
    let path = format!("/concerts/{concert}/schedules");
    assert_error(
        &app.get(
            &path,
            &[("authorization", &first_auth), ("x-queue-token", &first)],
        )
        .await,
        401,
        "queue_token_expired",
    );
    // After expiry the user may join again, as a new arrival.
    let (status, again) = join(&app, &first_auth, concert).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(again["token"], first.as_str());
}

/// Every row of API.md's gate table, in its order.
#[tokio::test]
async fn the_gate_checks_every_row_in_order() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "50"), ("MAX_ACTIVE", "2")])).await;
    let (concert, schedule) = app.new_concert(7, 100).await;
    let (other_concert, _) = app.new_concert(3, 100).await;
    let path = format!("/concerts/{concert}/schedules");
    let (_, stranger) = app.new_user().await;
    let get = |auth: String, token: Option<String>| {
        let path = path.clone();
        let app = &app;
        async move {
            let mut headers = vec![("authorization", auth)];
            if let Some(t) = token {
                headers.push(("x-queue-token", t));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.get(&path, &headers).await
        }
    };
    assert_error(&app.get(&path, &[]).await, 401, "unauthorized");
    assert_error(
        &get(stranger.clone(), None).await,
        401,
        "queue_token_required",
    );
    assert_error(
        &get(stranger.clone(), Some("not-a-uuid".into())).await,
        401,
        "queue_token_invalid",
    );
    assert_error(
        &get(stranger.clone(), Some(uuid::Uuid::new_v4().to_string())).await,
        401,
        "queue_token_invalid",
    );
    let (auth, token) = admitted(&app, concert).await.expect("admitted");
    assert_error(
        &get(stranger.clone(), Some(token.clone())).await,
        401,
        "queue_token_invalid",
    );
    // The resource's 404 comes before the gate.
    assert_error(
        &app.get(
            "/concerts/987654321/schedules",
            &[("authorization", &auth), ("x-queue-token", &token)],
        )
        .await,
        404,
        "concert_not_found",
    );
    // Valid, ACTIVE, right concert: the schedules, with seat counts.
    let (status, body) = get(auth.clone(), Some(token.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["items"],
        json!([{"id": schedule, "start_at": "2027-01-01T19:00:00Z", "seat_count": 7, "available_seats": 7}])
    );
    // A valid token of another concert.
    let (o_auth, o_token) = admitted(&app, other_concert).await.expect("admitted");
    assert_error(
        &get(o_auth.clone(), Some(o_token.clone())).await,
        403,
        "queue_token_wrong_concert",
    );
    // Still waiting: the cap (2) is full.
    admitted(&app, concert).await.expect("admitted");
    let (_, w_auth) = app.new_user().await;
    let w_token = join(&app, &w_auth, concert).await.1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_error(
        &get(w_auth.clone(), Some(w_token.clone())).await,
        403,
        "queue_token_not_active",
    );
    // Another user's waiting token is invalid before it is "waiting".
    assert_error(
        &get(stranger.clone(), Some(w_token.clone())).await,
        401,
        "queue_token_invalid",
    );
    // Processed (set by hand: a paid user, without the payment) and left tokens.
    let redis = common::redis().await;
    let (bucket, field) = app
        .keys()
        .queue(other_concert)
        .token_record(&QueueToken::parse(&o_token).unwrap());
    let record: String = redis.hget(&bucket, &field).await.unwrap();
    let processed = format!("{}{}", QueueStatus::Processed.letter(), &record[1..]);
    let _: () = redis.hset(&bucket, (field, processed)).await.unwrap();
    let _ = redis.quit().await;
    assert_error(
        &get(o_auth.clone(), Some(o_token.clone())).await,
        401,
        "queue_token_expired",
    );
    assert_eq!(poll(&app, &o_auth, &o_token).await["status"], "PROCESSED");
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/queue/tokens/{token}"),
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &get(auth.clone(), Some(token.clone())).await,
        401,
        "queue_token_expired",
    );
    assert_eq!(poll(&app, &auth, &token).await["status"], "EXPIRED");
}

#[tokio::test]
async fn queue_bad_input_and_other_users_tokens() {
    // The one slot is taken, so the token under test stays WAITING throughout.
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "50"), ("MAX_ACTIVE", "1")])).await;
    let (concert, _) = app.new_concert(5, 100).await;
    admitted(&app, concert).await.expect("admitted");
    let (_, auth) = app.new_user().await;
    let (_, other) = app.new_user().await;
    let (status, body) = join(&app, &auth, concert).await;
    assert_eq!(status, StatusCode::CREATED);
    let token = body["token"].as_str().unwrap().to_owned();
    let keys_before: HashSet<String> = app.redis_keys().await.into_iter().collect();
    let a = [("authorization", auth.as_str())];
    let o = [("authorization", other.as_str())];
    let bad = [
        (
            app.post("/queue/tokens", &a, json!({"concert_id": "x"}))
                .await,
            400,
            "invalid_request",
        ),
        (
            app.post("/queue/tokens", &a, json!({})).await,
            400,
            "invalid_request",
        ),
        (
            app.post("/queue/tokens", &a, json!({"concert_id": 987654321}))
                .await,
            404,
            "concert_not_found",
        ),
        (
            app.post("/queue/tokens", &[], json!({"concert_id": concert}))
                .await,
            401,
            "unauthorized",
        ),
        (
            app.get(&format!("/queue/tokens/{}", uuid::Uuid::new_v4()), &a)
                .await,
            404,
            "queue_token_not_found",
        ),
        (
            app.get("/queue/tokens/nonsense", &a).await,
            404,
            "queue_token_not_found",
        ),
        (
            app.get(&format!("/queue/tokens/{token}"), &o).await,
            404,
            "queue_token_not_found",
        ),
        (
            app.call(Method::DELETE, &format!("/queue/tokens/{token}"), &o, None)
                .await,
            404,
            "queue_token_not_found",
        ),
        (
            app.call(Method::DELETE, "/queue/tokens/nonsense", &a, None)
                .await,
            404,
            "queue_token_not_found",
        ),
        (
            app.get(&format!("/queue/tokens/{token}"), &[]).await,
            401,
            "unauthorized",
        ),
    ];
    for (got, status, code) in &bad {
        assert_error(got, *status, code);
    }
    let keys_after: HashSet<String> = app.redis_keys().await.into_iter().collect();
    assert_eq!(
        keys_before, keys_after,
        "bad input added or removed no Redis key"
    );
    let body = poll(&app, &auth, &token).await;
    assert_eq!(
        (body["status"].as_str(), body["position"].as_i64()),
        (Some("WAITING"), Some(1)),
        "the token is untouched"
    );
}

/// If adding a concert to the worker's list was lost (a timeout, a crash between
/// the join and the listing), the next poll lists it again: no queue stalls.
#[tokio::test]
async fn a_lost_listing_heals_on_the_next_poll() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "50"), ("MAX_ACTIVE", "1")])).await;
    let (concert, _) = app.new_concert(5, 100).await;
    let (first_auth, first) = admitted(&app, concert).await.expect("admitted"); // holds the one slot
    let (_, auth) = app.new_user().await;
    let token = join(&app, &auth, concert).await.1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The state a failed listing leaves once its marker lapsed: the queue is not
    // on the worker's list and nothing says it should be.
    let redis = common::redis().await;
    let _: i64 = redis
        .srem(
            app.keys().queued_concerts(admission_group(concert)),
            concert,
        )
        .await
        .unwrap();
    let _: i64 = redis.del(app.keys().queue(concert).listed()).await.unwrap();
    // The slot frees, but nobody visits the queue: the waiter stays WAITING.
    let path = format!("/queue/tokens/{first}");
    app.call(
        Method::DELETE,
        &path,
        &[("authorization", &first_auth)],
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (bucket, field) = app
        .keys()
        .queue(concert)
        .token_record(&QueueToken::parse(&token).unwrap());
    let record: String = redis.hget(&bucket, &field).await.unwrap();
    assert_eq!(
        &record[..1],
        QueueStatus::Waiting.letter(),
        "an unlisted queue is not visited"
    );
    // Its next poll lists the queue again, and it is admitted.
    wait_for_status(&app, &auth, &token, "ACTIVE", Duration::from_secs(3))
        .await
        .expect("the poll relisted the queue and the waiter was admitted");
    let _ = redis.quit().await;
}

/// Every token and status change reaches `reservation_queue`, written behind;
/// a graceful shutdown writes what is still buffered.
#[tokio::test]
async fn the_audit_trail_follows_each_token() {
    let mut app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "50"), ("MAX_ACTIVE", "1")])).await;
    let (concert, _) = app.new_concert(5, 100).await;
    let (auth, active) = admitted(&app, concert).await.expect("admitted");
    let (_, w_auth) = app.new_user().await;
    let waiting = join(&app, &w_auth, concert).await.1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call(
        Method::DELETE,
        &format!("/queue/tokens/{active}"),
        &[("authorization", &auth)],
        None,
    )
    .await;
    wait_for_status(&app, &w_auth, &waiting, "ACTIVE", Duration::from_secs(5))
        .await
        .expect("the waiter takes the freed slot");
    let (_, late_auth) = app.new_user().await;
    let late = join(&app, &late_auth, concert).await.1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    app.shutdown().await;
    let rows: Vec<(String, String, bool, Option<i64>)> = sqlx::query_as(
        "SELECT token::text, status::text, activated_at IS NOT NULL, queue_no
           FROM reservation_queue ORDER BY id",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    let find = |t: &str| {
        rows.iter()
            .find(|r| r.0 == t)
            .map(|r| (r.1.as_str(), r.2, r.3))
    };
    // queue_no: each token's place in the concert's arrival order.
    assert_eq!(find(&active), Some(("EXPIRED", true, Some(1))), "{rows:?}");
    assert_eq!(find(&waiting), Some(("ACTIVE", true, Some(2))), "{rows:?}");
    assert_eq!(
        find(&late),
        Some(("WAITING", false, Some(3))),
        "written at shutdown: {rows:?}"
    );
}

#[tokio::test]
async fn queue_metrics_are_exposed() {
    let app = TestApp::spawn_with(env(&[("ADMISSION_RATE", "50")])).await;
    let (concert, _) = app.new_concert(5, 100).await;
    admitted(&app, concert).await.expect("admitted");
    let text = app.metrics_text().await;
    for name in [
        "queue_joins_total",
        "queue_admissions_total",
        "queue_admission_tick_duration_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    assert!(
        text.contains(&format!("queue_active{{concert=\"{concert}\"}}")),
        "per-concert gauge missing"
    );
}
