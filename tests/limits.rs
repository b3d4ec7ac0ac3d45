//! Rate limits (issue 17): one address cannot mint users by the thousand, one
//! user cannot join, poll or hold faster than a person, and a fan at the fan
//! page's pace never meets a limit. Every refusal is `429 rate_limited` with
//! `Retry-After`, changes nothing, and holds across servers sharing Redis.

mod common;

use common::{ADMIN_KEY, Env, TestApp, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// Limits on (the harness switches them off), with these settings.
fn env(pairs: &[(&'static str, &str)]) -> Env {
    let mut env = Env::default();
    env.vars.insert("RATE_LIMITS", "on".into());
    env.vars.insert("ADMISSION_RATE", "10000".into());
    env.vars.insert("MAX_ACTIVE", "0".into());
    for (k, v) in pairs {
        env.vars.insert(k, (*v).to_owned());
    }
    env
}

/// An answer with its `Retry-After`.
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    body: Value,
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut request = app.http.request(method, format!("{}{path}", app.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|v| {
        v.to_str()
            .unwrap()
            .parse()
            .expect("Retry-After is whole seconds")
    });
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

/// `POST /users`, from the client `X-Forwarded-For` names (if any).
async fn mint(app: &TestApp, forwarded_for: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = forwarded_for
        .map(|f| vec![("x-forwarded-for", f)])
        .unwrap_or_default();
    send(app, Method::POST, "/users", &headers, Some(json!({}))).await
}

fn bearer(answer: &Answer) -> String {
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    format!("Bearer {}", answer.body["access_token"].as_str().unwrap())
}

/// A refusal as API.md words it: 429, the envelope, Retry-After of at least 1 s.
fn assert_limited(answer: &Answer, what: &str) -> u64 {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: {}",
        answer.body
    );
    assert_eq!(answer.body["error"]["code"], "rate_limited", "{what}");
    assert!(answer.body["error"]["message"].is_string(), "{what}");
    let secs = answer.retry_after.expect("a 429 carries Retry-After");
    assert!(secs >= 1, "{what}: Retry-After {secs}");
    secs
}

async fn users(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

async fn join(app: &TestApp, auth: &str, concert: i64) -> Answer {
    send(
        app,
        Method::POST,
        "/queue/tokens",
        &[("authorization", auth)],
        Some(json!({"concert_id": concert})),
    )
    .await
}

async fn poll(app: &TestApp, auth: &str, token: &str) -> Answer {
    send(
        app,
        Method::GET,
        &format!("/queue/tokens/{token}"),
        &[("authorization", auth)],
        None,
    )
    .await
}

/// A concert whose room admits nobody: places stay put.
async fn paused_concert(app: &TestApp) -> i64 {
    let (concert, _) = app.new_concert(10, 1000).await;
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/admin/concerts/{concert}/waiting-room"),
            &[("x-admin-key", ADMIN_KEY)],
            Some(json!({"paused": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    concert
}

#[tokio::test]
async fn an_address_minting_users_past_its_burst_gets_429_and_no_user() {
    // The test's peer is the loopback: as a trusted proxy, it names the client.
    let app = TestApp::spawn_with(env(&[
        ("USERS_PER_ADDRESS_PER_MIN", "20"),
        ("USERS_PER_ADDRESS_BURST", "3"),
        ("TRUSTED_PROXIES", "127.0.0.0/8, ::1"),
    ]))
    .await;
    let client = Some("203.0.113.7");
    for i in 0..3 {
        assert_eq!(
            mint(&app, client).await.status,
            StatusCode::CREATED,
            "user {i}"
        );
    }
    let refused = mint(&app, client).await;
    let secs = assert_limited(&refused, "the 4th user from one address");
    assert!(secs <= 3, "one user every 3 s: Retry-After {secs}");
    assert_eq!(users(&app).await, 3, "a refused mint makes no user");
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("rate_limited_total{limit=\"users\"}") && !l.ends_with(" 0")),
        "rate_limited_total counts the refusal"
    );
    // After Retry-After, the address may mint again.
    tokio::time::sleep(Duration::from_secs(secs)).await;
    assert_eq!(mint(&app, client).await.status, StatusCode::CREATED);
    assert_eq!(users(&app).await, 4);
    // A tool on the server's own host (a loopback client) is not limited.
    for i in 0..5 {
        assert_eq!(
            mint(&app, None).await.status,
            StatusCode::CREATED,
            "loopback {i}"
        );
    }
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let limits = [
        ("USERS_PER_ADDRESS_PER_MIN", "1"),
        ("USERS_PER_ADDRESS_BURST", "2"),
    ];
    // Not a trusted proxy: whatever the header says, the client is the peer
    // (127.0.0.1, a loopback client, not limited): no address of the header
    // is counted.
    let mut pairs = limits.to_vec();
    pairs.push(("TRUSTED_PROXIES", "10.0.0.0/8"));
    let direct = TestApp::spawn_with(env(&pairs)).await;
    for _ in 0..3 {
        assert_eq!(
            mint(&direct, Some("203.0.113.1")).await.status,
            StatusCode::CREATED
        );
    }
    let keys = direct.redis_keys().await;
    assert!(
        !keys.iter().any(|k| k.contains("203.0.113")),
        "a forged header was believed: {keys:?}"
    );

    // Behind a trusted proxy: the rightmost entry it did not add itself.
    let mut pairs = limits.to_vec();
    pairs.push(("TRUSTED_PROXIES", "127.0.0.0/8, ::1"));
    let proxied = TestApp::spawn_with(env(&pairs)).await;
    let a = Some("203.0.113.1");
    assert_eq!(mint(&proxied, a).await.status, StatusCode::CREATED);
    assert_eq!(mint(&proxied, a).await.status, StatusCode::CREATED);
    assert_limited(&mint(&proxied, a).await, "a third user from one address");
    // Entries left of the client's are the client's own words: not believed.
    assert_limited(
        &mint(&proxied, Some("198.51.100.9, 203.0.113.1")).await,
        "a client prepending another address",
    );
    // Another address is not bothered by the first one's limit.
    for i in 0..2 {
        let other = mint(&proxied, Some("203.0.113.2")).await;
        assert_eq!(
            other.status,
            StatusCode::CREATED,
            "second address, user {i}"
        );
    }
    // Nor is the proxy itself (no header).
    assert_eq!(mint(&proxied, None).await.status, StatusCode::CREATED);
    assert_eq!(users(&proxied).await, 5);
}

#[tokio::test]
async fn a_user_over_its_join_rate_gets_429_and_keeps_its_place() {
    let app = TestApp::spawn_with(env(&[
        ("JOINS_PER_USER_PER_MIN", "60"),
        ("JOINS_PER_USER_BURST", "2"),
    ]))
    .await;
    let concert = paused_concert(&app).await;
    let first = bearer(&mint(&app, None).await);
    let joined = join(&app, &first, concert).await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.body);
    let token = joined.body["token"].as_str().unwrap().to_owned();
    let second = bearer(&mint(&app, None).await);
    assert_eq!(
        join(&app, &second, concert).await.status,
        StatusCode::CREATED
    );

    assert_eq!(join(&app, &first, concert).await.status, StatusCode::OK);
    let refused = join(&app, &first, concert).await;
    let secs = assert_limited(&refused, "a third join within a second");
    assert_eq!(secs, 1, "one join a second");
    // Nothing changed: the same token, the same place, no new arrival.
    let polled = poll(&app, &first, &token).await;
    assert_eq!(polled.status, StatusCode::OK, "{}", polled.body);
    assert_eq!(polled.body["position"], 1);
    assert_eq!(
        app.get(
            &format!("/admin/concerts/{concert}/waiting-room"),
            &[("x-admin-key", ADMIN_KEY)]
        )
        .await
        .1["waiting"],
        2
    );

    tokio::time::sleep(Duration::from_secs(secs)).await;
    let again = join(&app, &first, concert).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["token"], token.as_str());
    assert_eq!(again.body["position"], 1);
}

#[tokio::test]
async fn a_user_over_its_poll_rate_gets_429_and_nothing_changes() {
    let app = TestApp::spawn_with(env(&[
        ("POLLS_PER_USER_PER_MIN", "60"),
        ("POLLS_PER_USER_BURST", "3"),
    ]))
    .await;
    let concert = paused_concert(&app).await;
    let auth = bearer(&mint(&app, None).await);
    let token = join(&app, &auth, concert).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..3 {
        let polled = poll(&app, &auth, &token).await;
        assert_eq!(polled.status, StatusCode::OK, "poll {i}: {}", polled.body);
    }
    let secs = assert_limited(&poll(&app, &auth, &token).await, "a fourth poll at once");
    // Another user is not bothered.
    let other = bearer(&mint(&app, None).await);
    let other_token = join(&app, &other, concert).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        poll(&app, &other, &other_token).await.status,
        StatusCode::OK
    );

    tokio::time::sleep(Duration::from_secs(secs)).await;
    let polled = poll(&app, &auth, &token).await;
    assert_eq!(polled.status, StatusCode::OK, "{}", polled.body);
    assert_eq!(polled.body["status"], "WAITING");
    assert_eq!(polled.body["position"], 1);
}

#[tokio::test]
async fn a_user_over_its_hold_rate_gets_429_and_holds_nothing() {
    let app = TestApp::spawn_with(env(&[
        ("HOLDS_PER_USER_PER_MIN", "60"),
        ("HOLDS_PER_USER_BURST", "1"),
    ]))
    .await;
    let (concert, schedule) = app.new_concert(10, 1000).await;
    let auth = bearer(&mint(&app, None).await);
    let token = join(&app, &auth, concert).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(Duration::from_secs(10), || async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        (poll(&app, &auth, &token).await.body["status"] == "ACTIVE").then_some(())
    })
    .await
    .expect("admitted within 10 s");
    let headers = [
        ("authorization", auth.as_str()),
        ("x-queue-token", token.as_str()),
    ];
    let hold = |seat_no: i64| {
        send(
            &app,
            Method::POST,
            "/reservations",
            &headers,
            Some(json!({"schedule_id": schedule, "seat_no": seat_no})),
        )
    };
    assert_eq!(hold(1).await.status, StatusCode::CREATED);
    let secs = assert_limited(&hold(2).await, "a second hold at once");
    let held = app
        .get(
            &format!("/schedules/{schedule}/seats?status=HELD"),
            &headers,
        )
        .await;
    let held: Vec<i64> = held.1["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seat_no"].as_i64().unwrap())
        .collect();
    assert_eq!(held, vec![1], "the refused hold took nothing");

    tokio::time::sleep(Duration::from_secs(secs)).await;
    assert_eq!(hold(2).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn limits_hold_across_two_servers_sharing_redis() {
    let pairs = [
        ("USERS_PER_ADDRESS_PER_MIN", "1"),
        ("USERS_PER_ADDRESS_BURST", "2"),
        ("JOINS_PER_USER_PER_MIN", "1"),
        ("JOINS_PER_USER_BURST", "1"),
    ];
    let pairs = [pairs.as_slice(), &[("TRUSTED_PROXIES", "127.0.0.0/8, ::1")]].concat();
    let a = TestApp::spawn_with(env(&pairs)).await;
    let b = a.sibling(env(&pairs)).await;
    let client = Some("203.0.113.8");
    let auth = bearer(&mint(&a, client).await);
    assert_eq!(mint(&b, client).await.status, StatusCode::CREATED);
    assert_limited(
        &mint(&a, client).await,
        "a third user, via the first server",
    );
    assert_limited(
        &mint(&b, client).await,
        "a third user, via the second server",
    );

    let concert = paused_concert(&a).await;
    assert_eq!(join(&a, &auth, concert).await.status, StatusCode::CREATED);
    let secs = assert_limited(
        &join(&b, &auth, concert).await,
        "a join via the other server",
    );
    assert!(secs > 50, "one join a minute: Retry-After {secs}");
}

#[tokio::test]
async fn a_fan_at_the_pages_pace_never_meets_the_default_limits() {
    // The defaults, on: the fan page's way through, with two tabs open.
    let app = TestApp::spawn_with(env(&[])).await;
    let concert = paused_concert(&app).await;
    let auth = bearer(&mint(&app, None).await);
    let token = join(&app, &auth, concert).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // API.md: a waiting page polls at least every 2 s (here: as often as it
    // may, in two tabs), and a reload joins again.
    for round in 0..6 {
        for tab in 0..2 {
            let polled = poll(&app, &auth, &token).await;
            assert_eq!(polled.status, StatusCode::OK, "round {round}, tab {tab}");
        }
        if round % 3 == 2 {
            assert_eq!(join(&app, &auth, concert).await.status, StatusCode::OK);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // A household behind one address: a few fans mint their users at once.
    for i in 0..5 {
        assert_eq!(
            mint(&app, None).await.status,
            StatusCode::CREATED,
            "fan {i}"
        );
    }
}
