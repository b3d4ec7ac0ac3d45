//! The goose scenarios. Pick one with `--scenarios <name>`:
//!
//! - `joinandpoll`: new fans join (`POST /queue/tokens`) and poll their place (1:4).
//! - `browse`: admitted fans read the schedules and the seat map (1:1).
//! - `holdrandom`: admitted fans hold random seats (and cancel what they got,
//!   to stay under the hold limit).
//! - `holdhot`: the same, everyone after the same 50 seats.
//! - `journey`: the whole spike, one new fan per iteration: create user, charge,
//!   join, poll until ACTIVE, browse, hold an available seat, pay (with an
//!   `Idempotency-Key`); a fan who finds nothing left leaves the queue.

use crate::fan::{self, Target};
use goose::prelude::*;
use serde_json::{Value, json};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static TARGET: OnceLock<Target> = OnceLock::new();
static RESULTS: Mutex<Option<std::fs::File>> = Mutex::new(None);
/// Journey outcomes, printed at the end (goose's report has the per-request view).
static PAID: AtomicU64 = AtomicU64::new(0);
static SOLD_OUT: AtomicU64 = AtomicU64::new(0);
static GAVE_UP: AtomicU64 = AtomicU64::new(0);
static LOST_RACES: AtomicU64 = AtomicU64::new(0);
static SERVER_ERRORS: AtomicU64 = AtomicU64::new(0);
/// Requests that got no answer at all (connection refused, reset, timeout).
static NO_ANSWER: AtomicU64 = AtomicU64::new(0);

fn target() -> Target {
    *TARGET.get().expect("target set before the attack")
}

/// A fan's session: access token and queue pass.
#[derive(Clone)]
struct Fan {
    auth: String,
    token: Option<String>,
}

type Outcome<T> = Result<T, Box<TransactionError>>;

/// Sends one request; returns its status (0 when no answer) and JSON body.
async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Outcome<(u16, Value)> {
    let mut rb = user.get_request_builder(&method, path)?;
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(rb)
        .build();
    let response = user.request(request).await?;
    match response.response {
        Ok(r) => {
            let status = r.status().as_u16();
            if status >= 500 {
                SERVER_ERRORS.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, r.json().await.unwrap_or(Value::Null)))
        }
        Err(_) => {
            NO_ANSWER.fetch_add(1, Ordering::Relaxed);
            Ok((0, Value::Null))
        }
    }
}

async fn join(user: &mut GooseUser, auth: &str) -> Outcome<Option<String>> {
    let (status, body) = call(
        user,
        GooseMethod::Post,
        "/queue/tokens",
        "join",
        &[("authorization", auth)],
        Some(json!({"concert_id": target().concert})),
    )
    .await?;
    Ok((status == 201 || status == 200)
        .then(|| body["token"].as_str().map(str::to_owned))
        .flatten())
}

async fn poll(user: &mut GooseUser, auth: &str, token: &str) -> Outcome<String> {
    let (_, body) = call(
        user,
        GooseMethod::Get,
        &format!("/queue/tokens/{token}"),
        "poll",
        &[("authorization", auth)],
        None,
    )
    .await?;
    Ok(body["status"].as_str().unwrap_or("").to_owned())
}

/// Polls (every `every`) until the token is ACTIVE; `false` if it never is.
async fn wait_active(
    user: &mut GooseUser,
    auth: &str,
    token: &str,
    every: Duration,
) -> Outcome<bool> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        match poll(user, auth, token).await?.as_str() {
            "ACTIVE" => return Ok(true),
            "WAITING" => tokio::time::sleep(every).await,
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// on_start of the scenarios that need an admitted fan.
async fn become_active(user: &mut GooseUser) -> TransactionResult {
    let (_, auth) = fan::mint();
    let token = join(user, &auth).await?;
    if let Some(t) = &token {
        wait_active(user, &auth, t, Duration::from_millis(100)).await?;
    }
    user.set_session_data(Fan { auth, token });
    Ok(())
}

fn pass(user: &GooseUser) -> (String, String) {
    let f = user.get_session_data_unchecked::<Fan>();
    (f.auth.clone(), f.token.clone().unwrap_or_default())
}

async fn join_new(user: &mut GooseUser) -> TransactionResult {
    let (_, auth) = fan::mint();
    let token = join(user, &auth).await?;
    user.set_session_data(Fan { auth, token });
    Ok(())
}

async fn poll_mine(user: &mut GooseUser) -> TransactionResult {
    if user.get_session_data::<Fan>().is_none() {
        return join_new(user).await;
    }
    let (auth, token) = pass(user);
    poll(user, &auth, &token).await?;
    Ok(())
}

/// A gated GET with the admitted fan's pass.
async fn gated_get(user: &mut GooseUser, path: &str, name: &str) -> TransactionResult {
    let (auth, token) = pass(user);
    let headers = [
        ("authorization", auth.as_str()),
        ("x-queue-token", token.as_str()),
    ];
    call(user, GooseMethod::Get, path, name, &headers, None).await?;
    Ok(())
}

async fn schedules(user: &mut GooseUser) -> TransactionResult {
    gated_get(
        user,
        &format!("/concerts/{}/schedules", target().concert),
        "schedules",
    )
    .await
}

async fn seat_map(user: &mut GooseUser) -> TransactionResult {
    gated_get(
        user,
        &format!("/schedules/{}/seats", target().schedule),
        "seat map",
    )
    .await
}

async fn hold_in(user: &mut GooseUser, seats: i64) -> TransactionResult {
    let (auth, token) = pass(user);
    let h = [
        ("authorization", auth.as_str()),
        ("x-queue-token", token.as_str()),
    ];
    let seat_no = fastrand::i64(1..=seats);
    let body = json!({"schedule_id": target().schedule, "seat_no": seat_no});
    let (status, held) = call(
        user,
        GooseMethod::Post,
        "/reservations",
        "hold",
        &h,
        Some(body),
    )
    .await?;
    if status == 201
        && let Some(id) = held["id"].as_i64()
    {
        let path = format!("/reservations/{id}");
        call(user, GooseMethod::Delete, &path, "cancel", &h[..1], None).await?;
    }
    Ok(())
}

async fn hold_random(user: &mut GooseUser) -> TransactionResult {
    hold_in(user, target().seats).await
}

async fn hold_hot(user: &mut GooseUser) -> TransactionResult {
    hold_in(user, 50.min(target().seats)).await
}

/// One fan's whole visit, through the public API only.
async fn journey(user: &mut GooseUser) -> TransactionResult {
    let (status, created) = call(
        user,
        GooseMethod::Post,
        "/users",
        "create user",
        &[],
        Some(json!({})),
    )
    .await?;
    let (Some(user_id), Some(access)) = (created["id"].as_i64(), created["access_token"].as_str())
    else {
        let _ = status;
        GAVE_UP.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    let auth = format!("Bearer {access}");
    let price = fan::env_i64("BO_PRICE").unwrap_or(1000);
    call(
        user,
        GooseMethod::Post,
        "/balance/charge",
        "charge",
        &[("authorization", &auth)],
        Some(json!({"amount": price * 2})),
    )
    .await?;
    let Some(token) = join(user, &auth).await? else {
        GAVE_UP.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    };
    if !wait_active(user, &auth, &token, Duration::from_millis(250)).await? {
        GAVE_UP.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let h = [
        ("authorization", auth.as_str()),
        ("x-queue-token", token.as_str()),
    ];
    let t = target();
    call(
        user,
        GooseMethod::Get,
        &format!("/concerts/{}/schedules", t.concert),
        "schedules",
        &h,
        None,
    )
    .await?;
    let mut paid = false;
    let mut sold_out = false;
    for _ in 0..3 {
        let path = format!("/schedules/{}/seats?status=AVAILABLE", t.schedule);
        let (_, map) = call(
            user,
            GooseMethod::Get,
            &path,
            "seat map (available)",
            &h,
            None,
        )
        .await?;
        let free: Vec<i64> = map["seats"]
            .as_array()
            .map(|s| s.iter().filter_map(|s| s["seat_no"].as_i64()).collect())
            .unwrap_or_default();
        if free.is_empty() {
            SOLD_OUT.fetch_add(1, Ordering::Relaxed);
            sold_out = true;
            break;
        }
        let seat_no = free[fastrand::usize(..free.len())];
        let body = json!({"schedule_id": t.schedule, "seat_no": seat_no});
        let (status, held) = call(
            user,
            GooseMethod::Post,
            "/reservations",
            "hold",
            &h,
            Some(body),
        )
        .await?;
        if status != 201 {
            continue;
        }
        let rid = held["id"].as_i64().unwrap_or(0);
        let key = uuid::Uuid::new_v4().to_string();
        let mut ph = h.to_vec();
        ph.push(("idempotency-key", key.as_str()));
        let (status, payment) = call(
            user,
            GooseMethod::Post,
            "/payments",
            "pay",
            &ph,
            Some(json!({"reservation_id": rid})),
        )
        .await?;
        if status == 201 {
            paid = true;
            PAID.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut file) = RESULTS.lock()
                && let Some(f) = file.as_mut()
            {
                let _ = writeln!(
                    f,
                    "{} {} {}",
                    payment["id"].as_i64().unwrap_or(0),
                    rid,
                    user_id
                );
            }
        }
        break;
    }
    if !paid && !sold_out {
        LOST_RACES.fetch_add(1, Ordering::Relaxed);
    }
    if !paid {
        // Give the slot back to the next fan.
        call(
            user,
            GooseMethod::Delete,
            &format!("/queue/tokens/{token}"),
            "leave",
            &[("authorization", &auth)],
            None,
        )
        .await?;
    }
    Ok(())
}

/// The host goose will load, read from the command line as goose does.
fn host() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--host" || a == "-H")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix("--host=").map(str::to_owned))
        })
        .unwrap_or_else(|| fan::env("BO_HOST", "http://127.0.0.1:8080"))
        .trim_end_matches('/')
        .to_owned()
}

pub async fn run() -> Result<(), String> {
    let host = host();
    let wants_help = std::env::args().any(|a| a == "-h" || a == "--help");
    if !wants_help {
        let t = fan::target(&reqwest::Client::new(), &host).await?;
        eprintln!(
            "boxoffice-load: concert {} schedule {} ({} seats) on {host}",
            t.concert, t.schedule, t.seats
        );
        let _ = TARGET.set(t);
        if let Ok(path) = std::env::var("BO_RESULTS") {
            let file = std::fs::File::create(&path).map_err(|e| format!("{path}: {e}"))?;
            *RESULTS.lock().map_err(|e| e.to_string())? = Some(file);
        }
    }
    let metrics = GooseAttack::initialize()
        .map_err(|e| e.to_string())?
        .set_default(GooseDefault::Host, host.as_str())
        .map_err(|e| e.to_string())?
        .set_default(GooseDefault::IncreaseRate, "500")
        .map_err(|e| e.to_string())?
        .register_scenario(
            scenario!("JoinAndPoll")
                .register_transaction(
                    transaction!(join_new)
                        .set_name("join")
                        .set_weight(1)
                        .map_err(|e| e.to_string())?,
                )
                .register_transaction(
                    transaction!(poll_mine)
                        .set_name("poll")
                        .set_weight(4)
                        .map_err(|e| e.to_string())?,
                ),
        )
        .register_scenario(
            scenario!("Browse")
                .register_transaction(transaction!(become_active).set_on_start())
                .register_transaction(transaction!(schedules))
                .register_transaction(transaction!(seat_map)),
        )
        .register_scenario(
            scenario!("HoldRandom")
                .register_transaction(transaction!(become_active).set_on_start())
                .register_transaction(transaction!(hold_random)),
        )
        .register_scenario(
            scenario!("HoldHot")
                .register_transaction(transaction!(become_active).set_on_start())
                .register_transaction(transaction!(hold_hot)),
        )
        .register_scenario(scenario!("Journey").register_transaction(transaction!(journey)))
        .execute()
        .await
        .map_err(|e| e.to_string())?;
    let _ = metrics;
    if let Ok(mut file) = RESULTS.lock()
        && let Some(f) = file.as_mut()
    {
        let _ = f.flush();
    }
    if TARGET.get().is_some() {
        println!(
            "journeys: paid {} sold-out {} lost-races {} gave-up {}; no answer: {}; 5xx answers: {}",
            PAID.load(Ordering::Relaxed),
            SOLD_OUT.load(Ordering::Relaxed),
            LOST_RACES.load(Ordering::Relaxed),
            GAVE_UP.load(Ordering::Relaxed),
            NO_ANSWER.load(Ordering::Relaxed),
            SERVER_ERRORS.load(Ordering::Relaxed)
        );
    }
    Ok(())
}
