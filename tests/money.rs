//! Users, access tokens, balances, charges, history and idempotency, with the
//! ledger invariant checked after each story: balance = sum of the history.

mod common;

use common::{AUTH_SECRET, TestApp, assert_error};
use futures::future::join_all;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;

fn token(claims: Value, secret: &str, alg: Algorithm) -> String {
    let t = jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    format!("Bearer {t}")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn new_users_start_at_zero_with_a_day_long_token() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .raw(reqwest::Method::POST, "/users", &[], Vec::new())
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "an empty body is allowed: {body}"
    );
    let (status, second) = app.post("/users", &[], json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(body["id"], second["id"]);
    let auth = format!("Bearer {}", body["access_token"].as_str().unwrap());
    let (status, balance) = app.get("/balance", &[("authorization", &auth)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(balance, json!({"user_id": body["id"], "balance": 0}));
    let claims =
        jsonwebtoken::dangerous::insecure_decode::<Value>(body["access_token"].as_str().unwrap())
            .unwrap()
            .claims;
    let lifetime = claims["exp"].as_i64().unwrap() - now();
    assert!(
        (86_000..=86_400).contains(&lifetime),
        "token lives {lifetime} s"
    );
}

/// Every way a bearer token can be wrong is a 401 `unauthorized`.
#[tokio::test]
async fn bad_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (uid, good) = app.new_user().await;
    let sub = uid.to_string();
    let unsigned = {
        use std::fmt::Write;
        let b64 = |s: &str| {
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for c in s.as_bytes().chunks(3) {
                let n = (u32::from(c[0]) << 16)
                    | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                    | u32::from(*c.get(2).unwrap_or(&0));
                for i in 0..=c.len() {
                    let _ = write!(out, "{}", A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                }
            }
            out
        };
        format!(
            "Bearer {}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(r#"{{"sub":"{sub}","exp":{}}}"#, now() + 3600))
        )
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("not bearer", Some(good.replacen("Bearer", "Basic", 1))),
        ("malformed", Some("Bearer nonsense".into())),
        ("empty", Some("Bearer ".into())),
        (
            "wrong signature",
            Some(token(
                json!({"sub": sub, "exp": now() + 3600}),
                "another-secret-0123456789",
                Algorithm::HS256,
            )),
        ),
        (
            "expired",
            Some(token(
                json!({"sub": sub, "exp": now() - 120}),
                AUTH_SECRET,
                Algorithm::HS256,
            )),
        ),
        ("alg none", Some(unsigned)),
        (
            "HS384",
            Some(token(
                json!({"sub": sub, "exp": now() + 3600}),
                AUTH_SECRET,
                Algorithm::HS384,
            )),
        ),
        (
            "no exp",
            Some(token(json!({"sub": sub}), AUTH_SECRET, Algorithm::HS256)),
        ),
        (
            "sub not a number",
            Some(token(
                json!({"sub": "alice", "exp": now() + 3600}),
                AUTH_SECRET,
                Algorithm::HS256,
            )),
        ),
        (
            "sub zero",
            Some(token(
                json!({"sub": "0", "exp": now() + 3600}),
                AUTH_SECRET,
                Algorithm::HS256,
            )),
        ),
    ];
    for (name, header) in cases {
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        for path in ["/balance", "/balance/history"] {
            let got = app.get(path, &headers).await;
            assert_eq!(
                got.0,
                StatusCode::UNAUTHORIZED,
                "{name} on {path}: {:?}",
                got.1
            );
            assert_error(&got, 401, "unauthorized");
        }
        let got = app
            .post("/balance/charge", &headers, json!({"amount": 5}))
            .await;
        assert_error(&got, 401, "unauthorized");
    }
    assert_eq!(
        app.balance(&good).await,
        0,
        "no refused request charged anything"
    );
}

/// The signature is the authority: a platform-minted token for a user boxoffice
/// has never seen works, starting at balance 0, and its first charge creates it.
#[tokio::test]
async fn platform_minted_users_are_accepted() {
    let app = TestApp::spawn().await;
    let auth = token(
        json!({"sub": "4242", "exp": now() + 3600}),
        AUTH_SECRET,
        Algorithm::HS256,
    );
    assert_eq!(
        app.get("/balance", &[("authorization", &auth)]).await.1,
        json!({"user_id": 4242, "balance": 0})
    );
    assert_eq!(
        app.table_counts().await[0],
        ("users".into(), 0),
        "reading created nothing"
    );
    assert_eq!(
        app.charge(&auth, 300).await,
        (StatusCode::OK, json!({"user_id": 4242, "balance": 300}))
    );
    // Ids of POST /users start at 10^15, clear of platform ids, and skip an id
    // that a platform user took first.
    let taken = token(
        json!({"sub": "1000000000000000", "exp": now() + 3600}),
        AUTH_SECRET,
        Algorithm::HS256,
    );
    assert_eq!(app.charge(&taken, 5).await.0, StatusCode::OK);
    let (id, _) = app.new_user().await;
    assert_eq!(id, 1_000_000_000_000_001);
    app.assert_ledger().await;
}

#[tokio::test]
async fn charges_add_up_and_are_bounded() {
    let app = TestApp::spawn().await;
    let (uid, auth) = app.new_user().await;
    assert_eq!(
        app.charge(&auth, 5000).await,
        (StatusCode::OK, json!({"user_id": uid, "balance": 5000}))
    );
    assert_eq!(
        app.charge(&auth, 1_000_000_000).await.1["balance"],
        1_000_005_000i64
    );
    let before = app.table_counts().await;
    for bad in [
        json!({"amount": 0}),
        json!({"amount": -5}),
        json!({"amount": "100"}),
        json!({"amount": 1.5}),
        json!({}),
        json!({"amount": 10_000_000_000i64}),
        json!({"amount": null}),
        json!([1]),
        serde_json::from_str::<Value>("{\"amount\": 1180591620717411303424}").unwrap(),
    ] {
        let got = app
            .post("/balance/charge", &[("authorization", &auth)], bad.clone())
            .await;
        assert_error(&got, 400, "invalid_request");
    }
    assert_eq!(
        app.table_counts().await,
        before,
        "bad charges changed nothing"
    );

    // Near the limit: 9e15 is reachable exactly, and not one won past it.
    let limit = 9_000_000_000_000_000i64;
    app.move_balance_to(uid, limit - 10).await;
    let before = app.table_counts().await;
    assert_error(&app.charge(&auth, 11).await, 400, "balance_limit");
    assert_eq!(
        app.table_counts().await,
        before,
        "a refused charge changed nothing"
    );
    assert_eq!(app.charge(&auth, 10).await.1["balance"], limit);
    assert_error(&app.charge(&auth, 1).await, 400, "balance_limit");
    app.assert_ledger().await;
}

/// 40 concurrent charges of 100: exactly +4000, 40 history rows, each with its
/// own balance_after (no lost update, no two charges seeing the same balance).
#[tokio::test]
async fn concurrent_charges_never_lose_an_update() {
    let app = TestApp::spawn().await;
    let (uid, auth) = app.new_user().await;
    app.charge(&auth, 1000).await;
    let answers = join_all((0..40).map(|_| app.charge(&auth, 100))).await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{answers:?}"
    );
    assert_eq!(app.balance(&auth).await, 5000);
    let afters: Vec<i64> = sqlx::query_scalar(
        "SELECT balance_after FROM balance_history WHERE user_id = $1 AND amount = 100 ORDER BY id",
    )
    .bind(uid)
    .fetch_all(&app.pg)
    .await
    .unwrap();
    assert_eq!(afters.len(), 40);
    assert_eq!(
        afters.iter().collect::<HashSet<_>>().len(),
        40,
        "balance_after repeats: {afters:?}"
    );
    assert_eq!(
        afters,
        (1..=40).map(|i| 1000 + 100 * i).collect::<Vec<_>>(),
        "in commit order"
    );
    let seen: HashSet<i64> = answers
        .iter()
        .map(|(_, b)| b["balance"].as_i64().unwrap())
        .collect();
    assert_eq!(seen.len(), 40, "each answer reports its own balance");
    app.assert_ledger().await;
}

/// The first charge of a platform user, 20 times at once: one user row, one
/// balance row, +20 × 50.
#[tokio::test]
async fn concurrent_first_charges_of_an_unseen_user() {
    let app = TestApp::spawn().await;
    let auth = token(
        json!({"sub": "777", "exp": now() + 3600}),
        AUTH_SECRET,
        Algorithm::HS256,
    );
    let answers = join_all((0..20).map(|_| app.charge(&auth, 50))).await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{answers:?}"
    );
    assert_eq!(app.balance(&auth).await, 1000);
    app.assert_ledger().await;
}

#[tokio::test]
async fn history_pages_newest_first() {
    let app = TestApp::spawn().await;
    let (_, auth) = app.new_user().await;
    let h = [("authorization", auth.as_str())];
    assert_eq!(
        app.get("/balance/history", &h).await.1,
        json!({"items": [], "next_before_id": null})
    );
    for amount in 1..=25 {
        assert_eq!(app.charge(&auth, amount).await.0, StatusCode::OK);
    }
    let (mut seen, mut before, mut pages) = (Vec::new(), None::<i64>, 0);
    loop {
        let path = match before {
            Some(id) => format!("/balance/history?limit=10&before_id={id}"),
            None => "/balance/history?limit=10".into(),
        };
        let (status, page) = app.get(&path, &h).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        let items = page["items"].as_array().unwrap().clone();
        before = page["next_before_id"].as_i64();
        if before.is_some() {
            assert_eq!(
                before,
                items.last().unwrap()["id"].as_i64(),
                "next_before_id is the last id shown"
            );
        }
        seen.extend(items);
        if before.is_none() || pages > 5 {
            break;
        }
    }
    assert_eq!(pages, 3);
    let amounts: Vec<i64> = seen.iter().map(|i| i["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts, (1..=25).rev().collect::<Vec<_>>());
    assert_eq!(seen[0]["balance_after"], 325);
    assert_eq!(seen[0]["type"], "CHARGE");
    assert!(seen[0]["created_at"].as_str().unwrap().ends_with('Z'));
    // A page that ends exactly at the oldest row says there is no more.
    let (_, exact) = app.get("/balance/history?limit=25", &h).await;
    assert_eq!(exact["items"].as_array().unwrap().len(), 25);
    assert_eq!(exact["next_before_id"], Value::Null);
    let (_, default) = app.get("/balance/history", &h).await;
    assert_eq!(
        default["items"].as_array().unwrap().len(),
        20,
        "limit defaults to 20"
    );
    // Another user's history is not visible.
    let (_, other) = app.new_user().await;
    assert_eq!(
        app.get("/balance/history", &[("authorization", &other)])
            .await
            .1["items"],
        json!([])
    );
}

#[tokio::test]
async fn an_idempotent_charge_happens_once() {
    let app = TestApp::spawn().await;
    let (uid, auth) = app.new_user().await;
    let key = [
        ("authorization", auth.as_str()),
        ("idempotency-key", "charge-1"),
    ];
    let first = app
        .post("/balance/charge", &key, json!({"amount": 700}))
        .await;
    assert_eq!(
        first,
        (StatusCode::OK, json!({"user_id": uid, "balance": 700}))
    );
    // Same key, same JSON (spacing and key order do not matter): the first answer.
    let again = app
        .raw(
            reqwest::Method::POST,
            "/balance/charge",
            &key,
            br#"{ "amount" :700 }"#.to_vec(),
        )
        .await;
    assert_eq!(again, first);
    assert_eq!(app.balance(&auth).await, 700);
    // Same key, another body: refused, nothing charged.
    assert_error(
        &app.post("/balance/charge", &key, json!({"amount": 800}))
            .await,
        422,
        "idempotency_key_reused",
    );
    assert_eq!(app.balance(&auth).await, 700);
    // Keys are per user.
    let (uid2, auth2) = app.new_user().await;
    let key2 = [
        ("authorization", auth2.as_str()),
        ("idempotency-key", "charge-1"),
    ];
    assert_eq!(
        app.post("/balance/charge", &key2, json!({"amount": 700}))
            .await
            .1,
        json!({"user_id": uid2, "balance": 700})
    );
    // Without a key, every request is a new charge.
    app.charge(&auth, 1).await;
    app.charge(&auth, 1).await;
    assert_eq!(app.balance(&auth).await, 702);
    // Bad keys are bad input.
    let long = "k".repeat(256);
    for bad in ["", long.as_str(), "has space"] {
        let h = [("authorization", auth.as_str()), ("idempotency-key", bad)];
        assert_error(
            &app.post("/balance/charge", &h, json!({"amount": 5})).await,
            400,
            "invalid_request",
        );
    }
    assert_eq!(app.balance(&auth).await, 702);
    app.assert_ledger().await;
}

/// The same key sent 12 times at once: one charge, and every answer is either
/// that charge's answer or `409 idempotency_key_in_use`.
#[tokio::test]
async fn concurrent_retries_with_one_key_charge_once() {
    let app = TestApp::spawn().await;
    let (uid, auth) = app.new_user().await;
    let key = [
        ("authorization", auth.as_str()),
        ("idempotency-key", "burst"),
    ];
    let answers =
        join_all((0..12).map(|_| app.post("/balance/charge", &key, json!({"amount": 250})))).await;
    let expected = json!({"user_id": uid, "balance": 250});
    for answer in &answers {
        match answer.0.as_u16() {
            200 => assert_eq!(answer.1, expected),
            409 => assert_error(answer, 409, "idempotency_key_in_use"),
            other => panic!("unexpected {other}: {}", answer.1),
        }
    }
    assert!(answers.iter().any(|a| a.0 == StatusCode::OK));
    assert_eq!(app.balance(&auth).await, 250);
    assert_eq!(
        app.post("/balance/charge", &key, json!({"amount": 250}))
            .await
            .1,
        expected
    );
    app.assert_ledger().await;
}

/// Only successes are kept: a charge refused with a key may be retried with the
/// same key once the reason is gone, and then it happens.
#[tokio::test]
async fn a_failed_idempotent_request_may_be_retried() {
    let app = TestApp::spawn().await;
    let (uid, auth) = app.new_user().await;
    let limit = 9_000_000_000_000_000i64;
    app.charge(&auth, 100).await;
    app.move_balance_to(uid, limit).await;
    let key = [
        ("authorization", auth.as_str()),
        ("idempotency-key", "retry-me"),
    ];
    assert_error(
        &app.post("/balance/charge", &key, json!({"amount": 40}))
            .await,
        400,
        "balance_limit",
    );
    // The balance drops (as a payment would make it), and the retry goes through.
    app.move_balance_to(uid, limit - 1000).await;
    let (status, body) = app
        .post("/balance/charge", &key, json!({"amount": 40}))
        .await;
    assert_eq!(
        (status, body["balance"].as_i64()),
        (StatusCode::OK, Some(limit - 960))
    );
    app.assert_ledger().await;
}

/// A claim that expired and was taken over belongs to the new request: the old
/// request can neither store its answer (its charge rolls back) nor free the key.
#[tokio::test]
async fn a_taken_over_claim_cannot_complete_or_release() {
    use boxoffice::idempotency::{self, Begin};
    let app = TestApp::spawn().await;
    let body = json!({"amount": 5});
    let request = idempotency::Request {
        user_id: 1,
        endpoint: "test",
        body: &body,
        success_status: 200,
    };
    let Begin::Proceed(first) = idempotency::begin(&app.pg, &request, "k").await.unwrap() else {
        panic!("a new key is claimed");
    };
    assert!(
        matches!(idempotency::begin(&app.pg, &request, "k").await, Err(e) if e.code() == "idempotency_key_in_use")
    );
    // The first request's process stalls past its claim.
    sqlx::query("UPDATE idempotency_key SET locked_until = now() - interval '1 second'")
        .execute(&app.pg)
        .await
        .unwrap();
    let Begin::Proceed(second) = idempotency::begin(&app.pg, &request, "k").await.unwrap() else {
        panic!("an expired claim is taken over");
    };
    let mut tx = app.pg.begin().await.unwrap();
    let late = first.complete(&mut tx, &json!({})).await;
    assert_eq!(late.unwrap_err().code(), "idempotency_key_in_use");
    drop(tx);
    first.release(app.pg.clone()).await;
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_key")
        .fetch_one(&app.pg)
        .await
        .unwrap();
    assert_eq!(held, 1, "the stale request did not free the new claim");
    let mut tx = app.pg.begin().await.unwrap();
    second
        .complete(&mut tx, &json!({"ok": true}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    match idempotency::begin(&app.pg, &request, "k").await.unwrap() {
        Begin::Replay(answer) => {
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (200, r#"{"ok":true}"#)
            )
        }
        Begin::Proceed(_) => panic!("an answered key replays"),
    }
}

/// A Postgres that stops answering (its sockets open, nothing coming back) is a
/// `503` within seconds for every request that needs it, not a request hung for
/// the 30 s request timeout; and the `Idempotency-Key` of a charge it cut off is
/// free again as soon as Postgres answers (it answered `409
/// idempotency_key_in_use` for a minute), so the client's retry goes through,
/// once.
#[tokio::test]
async fn a_frozen_postgres_is_a_quick_503_and_frees_the_key_when_it_wakes() {
    use common::proxy::{Proxy, host_port, through};
    use std::time::{Duration, Instant};
    let proxy = Proxy::start(host_port(&common::pg_server())).await;
    let env = common::Env {
        pg_server: Some(through(&common::pg_server(), &proxy)),
        ..Default::default()
    };
    let app = TestApp::spawn_with(env).await;
    let (_, auth) = app.new_user().await;
    assert_eq!(app.charge(&auth, 1000).await.0, StatusCode::OK);
    let key = [
        ("authorization", auth.as_str()),
        ("idempotency-key", "frozen-charge"),
    ];
    let charge = || app.post("/balance/charge", &key, json!({"amount": 500}));

    proxy.freeze();
    let started = Instant::now();
    assert_error(&charge().await, 503, "unavailable");
    let charge_wait = started.elapsed();
    let started = Instant::now();
    assert_error(
        &app.get("/balance", &[("authorization", auth.as_str())])
            .await,
        503,
        "unavailable",
    );
    let read_wait = started.elapsed();
    let started = Instant::now();
    assert_error(
        &app.post("/users", &[], json!({})).await,
        503,
        "unavailable",
    );
    let mint_wait = started.elapsed();
    println!(
        "frozen Postgres: charge {charge_wait:?}, balance {read_wait:?}, new user {mint_wait:?}"
    );
    for waited in [charge_wait, read_wait, mint_wait] {
        // The deadline is 3 s; the request timeout, what it was, is 30 s.
        assert!(waited < Duration::from_secs(10), "{waited:?}");
    }

    proxy.thaw();
    let started = Instant::now();
    let answers = std::sync::Mutex::new(Vec::new());
    let retried = common::eventually(Duration::from_secs(15), || async {
        let got = charge().await;
        answers.lock().unwrap().push(got.0.as_u16());
        (got.0 == StatusCode::OK).then_some(got.1)
    })
    .await;
    let answers = answers.into_inner().unwrap();
    println!(
        "after the thaw: the retry went through in {:?} ({answers:?})",
        started.elapsed()
    );
    let body = retried.expect("the retry with the key goes through once Postgres answers");
    assert_eq!(body["balance"], 1500);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the key was held {:?}",
        started.elapsed()
    );
    // A second retry replays the answer; the charge happened once.
    let (status, again) = charge().await;
    assert_eq!((status, &again), (StatusCode::OK, &body));
    assert_eq!(app.balance(&auth).await, 1500);
    app.assert_ledger().await;
}
