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
//!   Each journey ends as one of the summary line's outcomes: paid; sold-out
//!   (the join refused `409 sold_out`, a poll showing the token WAITING in a
//!   SOLD_OUT room, or an empty seat map); lost-races (every hold taken
//!   first); gave-up (not admitted while seats remained: the token ended, an
//!   error, no answer, or no admission within `BO_WAIT_SECS`; or the seat map
//!   could not be read).

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

/// Where a fan stands after a join or poll answer (its status, 0 when no
/// answer, and its JSON body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// ACTIVE: on to the seats.
    Admitted,
    /// WAITING in a room that still has seats to sell, or told to slow down
    /// (`429`): ask again.
    Waiting,
    /// Nothing left to buy: the join was refused `409 sold_out`, or the token
    /// is WAITING and its room says SOLD_OUT (API.md: WAITING tokens stay
    /// WAITING when the last seat sells, so that their answers say so).
    SoldOut,
    /// Anything else (EXPIRED or PROCESSED while never admitted, an unknown
    /// token, another error, no answer): the fan gives up.
    Lost,
}

fn standing(status: u16, body: &Value) -> Standing {
    match status {
        200 | 201 => match (body["status"].as_str(), body["room_state"].as_str()) {
            (Some("ACTIVE"), _) => Standing::Admitted,
            (Some("WAITING"), Some("SOLD_OUT")) => Standing::SoldOut,
            (Some("WAITING"), _) => Standing::Waiting,
            _ => Standing::Lost,
        },
        409 if body["error"]["code"] == "sold_out" => Standing::SoldOut,
        429 => Standing::Waiting,
        _ => Standing::Lost,
    }
}

/// The seat numbers of an `?status=AVAILABLE` seat map answer: `None` when it
/// was not answered 200 (the fan could not see the seats), empty when every
/// seat is taken.
fn free_seats(status: u16, map: &Value) -> Option<Vec<i64>> {
    (status == 200).then(|| {
        map["seats"]
            .as_array()
            .map(|s| s.iter().filter_map(|s| s["seat_no"].as_i64()).collect())
            .unwrap_or_default()
    })
}

/// How long a fan waits to be admitted before giving up: `BO_WAIT_SECS`, 600 s
/// by default.
fn wait_limit() -> Duration {
    Duration::from_secs(fan::env_i64("BO_WAIT_SECS").map_or(600, |s| s.max(0) as u64))
}

/// Joins the target concert: where the fan stands, and its token if it got one.
async fn join(user: &mut GooseUser, auth: &str) -> Outcome<(Standing, Option<String>)> {
    let (status, body) = call(
        user,
        GooseMethod::Post,
        "/queue/tokens",
        "join",
        &[("authorization", auth)],
        Some(json!({"concert_id": target().concert})),
    )
    .await?;
    let token = (status == 201 || status == 200)
        .then(|| body["token"].as_str().map(str::to_owned))
        .flatten();
    Ok((standing(status, &body), token))
}

async fn poll(user: &mut GooseUser, auth: &str, token: &str) -> Outcome<Standing> {
    let (status, body) = call(
        user,
        GooseMethod::Get,
        &format!("/queue/tokens/{token}"),
        "poll",
        &[("authorization", auth)],
        None,
    )
    .await?;
    Ok(standing(status, &body))
}

/// Polls (every `every`) until the token is ACTIVE or its room is sold out;
/// `Lost` if neither happens within [`wait_limit`] or the token ends.
async fn wait_active(
    user: &mut GooseUser,
    auth: &str,
    token: &str,
    every: Duration,
) -> Outcome<Standing> {
    let deadline = Instant::now() + wait_limit();
    while Instant::now() < deadline {
        match poll(user, auth, token).await? {
            Standing::Waiting => tokio::time::sleep(every).await,
            done => return Ok(done),
        }
    }
    Ok(Standing::Lost)
}

/// Leaves the queue: gives the slot back, or the place in a sold-out room.
async fn leave(user: &mut GooseUser, auth: &str, token: &str) -> TransactionResult {
    call(
        user,
        GooseMethod::Delete,
        &format!("/queue/tokens/{token}"),
        "leave",
        &[("authorization", auth)],
        None,
    )
    .await?;
    Ok(())
}

/// on_start of the scenarios that need an admitted fan.
async fn become_active(user: &mut GooseUser) -> TransactionResult {
    let (_, auth) = fan::mint();
    let (_, token) = join(user, &auth).await?;
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
    let (_, token) = join(user, &auth).await?;
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
    let every = Duration::from_millis(250);
    let (mut standing, token) = join(user, &auth).await?;
    if let (Standing::Waiting, Some(t)) = (standing, &token) {
        standing = wait_active(user, &auth, t, every).await?;
    }
    let token = match (standing, token) {
        (Standing::Admitted, Some(token)) => token,
        (Standing::SoldOut, token) => {
            // Refused at the door, or waiting when the last seat sold.
            SOLD_OUT.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = token {
                leave(user, &auth, &t).await?;
            }
            return Ok(());
        }
        // Not admitted while seats remained (the token ended, an error, or
        // the wait ran out), or a join with no token.
        (_, token) => {
            GAVE_UP.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = token {
                leave(user, &auth, &t).await?;
            }
            return Ok(());
        }
    };
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
    let mut gave_up = false;
    for _ in 0..3 {
        let path = format!("/schedules/{}/seats?status=AVAILABLE", t.schedule);
        let (status, map) = call(
            user,
            GooseMethod::Get,
            &path,
            "seat map (available)",
            &h,
            None,
        )
        .await?;
        let Some(free) = free_seats(status, &map) else {
            // The seats could not be read (the pass lapsed, an error).
            gave_up = true;
            break;
        };
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
    if gave_up {
        GAVE_UP.fetch_add(1, Ordering::Relaxed);
    } else if !paid && !sold_out {
        LOST_RACES.fetch_add(1, Ordering::Relaxed);
    }
    if !paid {
        // Give the slot back to the next fan.
        leave(user, &auth, &token).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: &str, room: &str) -> Value {
        json!({"token": "t", "status": status, "room_state": room, "position": null})
    }

    #[test]
    fn an_active_token_is_admitted_whatever_the_room_says() {
        for room in ["OPEN", "PAUSED", "SOLD_OUT"] {
            assert_eq!(standing(200, &view("ACTIVE", room)), Standing::Admitted);
        }
        assert_eq!(standing(201, &view("ACTIVE", "OPEN")), Standing::Admitted);
    }

    #[test]
    fn a_waiting_token_waits_until_its_room_is_sold_out() {
        for room in ["OPEN", "PAUSED", "SCHEDULED"] {
            assert_eq!(standing(200, &view("WAITING", room)), Standing::Waiting);
            assert_eq!(standing(201, &view("WAITING", room)), Standing::Waiting);
        }
        // A poll, or a join that returns the user's live token (both 200).
        assert_eq!(
            standing(200, &view("WAITING", "SOLD_OUT")),
            Standing::SoldOut
        );
    }

    #[test]
    fn a_join_refused_sold_out_is_sold_out_and_other_conflicts_are_not() {
        let refused =
            json!({"error": {"code": "sold_out", "message": "every seat of this concert is sold"}});
        assert_eq!(standing(409, &refused), Standing::SoldOut);
        let other = json!({"error": {"code": "idempotency_key_in_use", "message": "…"}});
        assert_eq!(standing(409, &other), Standing::Lost);
    }

    #[test]
    fn a_rate_limited_answer_means_ask_again() {
        let limited = json!({"error": {"code": "rate_limited", "message": "slow down"}});
        assert_eq!(standing(429, &limited), Standing::Waiting);
    }

    #[test]
    fn a_token_that_ended_unadmitted_or_an_error_is_a_give_up() {
        // Still counted as giving up, so the spike's check can fail.
        for status in ["EXPIRED", "PROCESSED"] {
            for room in ["OPEN", "SOLD_OUT"] {
                assert_eq!(standing(200, &view(status, room)), Standing::Lost);
            }
        }
        let gone = json!({"error": {"code": "queue_token_not_found", "message": "…"}});
        assert_eq!(standing(404, &gone), Standing::Lost);
        assert_eq!(
            standing(503, &json!({"error": {"code": "unavailable"}})),
            Standing::Lost
        );
        assert_eq!(standing(500, &Value::Null), Standing::Lost);
        assert_eq!(standing(0, &Value::Null), Standing::Lost);
        // A 200 that is not a token view.
        assert_eq!(standing(200, &Value::Null), Standing::Lost);
        assert_eq!(standing(200, &json!({"status": "NEW"})), Standing::Lost);
    }

    #[test]
    fn free_seats_reads_a_seat_map_and_tells_an_empty_one_from_an_unread_one() {
        let map = json!({"schedule_id": 1, "seats": [
            {"seat_id": 10, "seat_no": 3, "price": 1000, "status": "AVAILABLE"},
            {"seat_id": 11, "seat_no": 7, "price": 1000, "status": "AVAILABLE"}]});
        assert_eq!(free_seats(200, &map), Some(vec![3, 7]));
        assert_eq!(
            free_seats(200, &json!({"schedule_id": 1, "seats": []})),
            Some(vec![])
        );
        let expired = json!({"error": {"code": "queue_token_expired", "message": "…"}});
        assert_eq!(free_seats(401, &expired), None);
        assert_eq!(free_seats(0, &Value::Null), None);
    }
}
