//! Faults under load (issue 17): a `kill -9` in the middle of a payment burst
//! followed by a long outage; Redis shut down without saving while fans hold
//! and pay, then back empty; Postgres frozen while fans charge, hold and pay.
//! Each story drives the real service with many fans at once, counts every
//! answer, and ends with the invariants read from Postgres and the seat map:
//! the seats shown SOLD are exactly the CONFIRMED ones, every payment answered
//! `201` is a sale, and the ledger balances. A fault may cost a fan a `503`
//! (always the error envelope) or a dropped connection when the server dies,
//! never a 500, a lost sale or a lost won.
//!
//! `make chaos` runs this file alone; `make test` runs it with everything else.
//! Each story prints one line of figures (`cargo test --test chaos -- --nocapture`).

mod common;

use common::process::Process;
use common::proxy::{Proxy, host_port, through};
use common::{Env, TestApp, eventually, expect_status, redis_url};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One story at a time: each loads both cores of a small machine by itself.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PRICE: i64 = 100;

/// Admission fast and uncapped, the SOLD catch-up every second.
const VARS: [(&str, &str); 3] = [
    ("ADMISSION_RATE", "10000"),
    ("MAX_ACTIVE", "0"),
    ("SOLD_CATCH_UP_SECS", "1"),
];

fn env() -> Env {
    let mut env = Env::default();
    for (k, v) in VARS {
        env.vars.insert(k, v.to_owned());
    }
    env
}

/// What a request came back with: an answer, or no answer at all (the
/// connection refused or cut, as when the server is killed).
#[derive(Debug, Clone)]
enum Outcome {
    Answer(StatusCode, Value),
    Dropped,
}

impl Outcome {
    fn status(&self) -> Option<StatusCode> {
        match self {
            Outcome::Answer(status, _) => Some(*status),
            Outcome::Dropped => None,
        }
    }

    /// "201", "409 seat_unavailable", "503 unavailable", "dropped".
    fn label(&self) -> String {
        match self {
            Outcome::Answer(status, body) => match body["error"]["code"].as_str() {
                Some(code) => format!("{} {code}", status.as_u16()),
                None => status.as_u16().to_string(),
            },
            Outcome::Dropped => "dropped".into(),
        }
    }
}

/// Sends one request and never panics on a dead server. Every answer is
/// checked on the spot: no 5xx but `503 unavailable`, every error enveloped.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Outcome {
    let mut request = app
        .http
        .request(method.clone(), format!("{}{path}", app.base))
        .timeout(Duration::from_secs(30));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let Ok(response) = request.send().await else {
        return Outcome::Dropped;
    };
    let status = response.status();
    let Ok(bytes) = response.bytes().await else {
        return Outcome::Dropped;
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let error = &body["error"];
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "{method} {path}: {status} outside the error envelope: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert!(
        !status.is_server_error()
            || (status == StatusCode::SERVICE_UNAVAILABLE
                && body["error"]["code"] == "unavailable"),
        "{method} {path}: {status} {body}"
    );
    Outcome::Answer(status, body)
}

/// Counts of outcome labels, printed as `201×40 503 unavailable×3`.
#[derive(Default, Clone)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        *self.0.entry(outcome.label()).or_default() += 1;
    }
    fn count(&self, label: &str) -> usize {
        self.0.get(label).copied().unwrap_or(0)
    }
    fn total(&self) -> usize {
        self.0.values().sum()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{k}×{n}")).collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// A fan with a user, a balance and (once admitted) a queue token.
#[derive(Clone)]
struct Fan {
    id: i64,
    auth: String,
    token: Option<String>,
}

impl Fan {
    fn headers(&self) -> Vec<(&str, &str)> {
        let mut headers = vec![("authorization", self.auth.as_str())];
        if let Some(token) = &self.token {
            headers.push(("x-queue-token", token.as_str()));
        }
        headers
    }
}

/// `n` users charged `balance` each (arranged: a refusal panics).
async fn users(app: &TestApp, n: usize, balance: i64) -> Vec<Fan> {
    let mut fans = Vec::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        fans.extend(
            join_all(chunk.iter().map(|_| async {
                let (id, auth) = app.new_user().await;
                if balance > 0 {
                    let answer = app.charge(&auth, balance).await;
                    expect_status(answer, StatusCode::OK, "charging a fan");
                }
                Fan {
                    id,
                    auth,
                    token: None,
                }
            }))
            .await,
        );
    }
    fans
}

/// Joins `concert`'s queue and waits (10 s at most) to be admitted: the
/// token, or `None` if the service could not get the fan in (an outage).
async fn admit(app: &TestApp, fan: &Fan, concert: i64) -> Option<String> {
    let auth = [("authorization", fan.auth.as_str())];
    let joined = send(
        app,
        Method::POST,
        "/queue/tokens",
        &auth,
        Some(json!({"concert_id": concert})),
    )
    .await;
    let Outcome::Answer(StatusCode::CREATED, body) = joined else {
        return None;
    };
    let token = body["token"].as_str()?.to_owned();
    let path = format!("/queue/tokens/{token}");
    eventually(Duration::from_secs(10), || async {
        match send(app, Method::GET, &path, &auth, None).await {
            Outcome::Answer(StatusCode::OK, t) if t["status"] == "ACTIVE" => Some(()),
            _ => None,
        }
    })
    .await?;
    Some(token)
}

/// Admits every fan (arranged: one left outside panics).
async fn admit_all(app: &TestApp, fans: &mut [Fan], concert: i64) {
    for chunk in fans.chunks_mut(50) {
        let tokens = join_all(chunk.iter().map(|f| admit(app, f, concert))).await;
        for (fan, token) in chunk.iter_mut().zip(tokens) {
            fan.token = Some(token.expect("a fan admitted while nothing fails"));
        }
    }
}

async fn hold(app: &TestApp, fan: &Fan, schedule: i64, seat_no: i64) -> Outcome {
    send(
        app,
        Method::POST,
        "/reservations",
        &fan.headers(),
        Some(json!({"schedule_id": schedule, "seat_no": seat_no})),
    )
    .await
}

async fn pay(app: &TestApp, fan: &Fan, reservation: i64, key: &str) -> Outcome {
    let mut headers = fan.headers();
    headers.push(("idempotency-key", key));
    send(
        app,
        Method::POST,
        "/payments",
        &headers,
        Some(json!({"reservation_id": reservation})),
    )
    .await
}

async fn confirmed_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM reservation WHERE status = 'CONFIRMED'")
        .fetch_one(&app.pg)
        .await
        .unwrap()
}

/// The ids of the CONFIRMED reservations.
async fn sales(app: &TestApp) -> BTreeSet<i64> {
    sqlx::query_scalar("SELECT id FROM reservation WHERE status = 'CONFIRMED'")
        .fetch_all(&app.pg)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// The seat numbers of `schedule` sold in Postgres.
async fn sold_in_postgres(app: &TestApp, schedule: i64) -> BTreeSet<i64> {
    let seats: Vec<i32> = sqlx::query_scalar(
        "SELECT s.seat_no FROM reservation r JOIN seat s ON s.id = r.seat_id
          WHERE r.status = 'CONFIRMED' AND r.concert_schedule_id = $1",
    )
    .bind(schedule)
    .fetch_all(&app.pg)
    .await
    .unwrap();
    seats.into_iter().map(i64::from).collect()
}

/// The seat numbers the map shows SOLD, read by `fan` (an admitted one).
async fn sold_on_the_map(app: &TestApp, fan: &Fan, schedule: i64) -> Option<BTreeSet<i64>> {
    let path = format!("/schedules/{schedule}/seats?status=SOLD");
    let Outcome::Answer(StatusCode::OK, body) =
        send(app, Method::GET, &path, &fan.headers(), None).await
    else {
        return None;
    };
    Some(
        body["seats"]
            .as_array()?
            .iter()
            .filter_map(|s| s["seat_no"].as_i64())
            .collect(),
    )
}

/// The closing invariants: the map shows SOLD exactly the seats sold in
/// Postgres (within 15 s, the catch-up's time), every payment answered `201`
/// is a sale, every fan's balance is what they charged less what they bought,
/// and the ledger balances.
async fn assert_nothing_lost(
    app: &TestApp,
    concert: i64,
    schedule: i64,
    paid: &BTreeSet<i64>,
    charged: &BTreeMap<i64, i64>,
) {
    let mut reader = users(app, 1, 0).await.remove(0);
    reader.token = Some(
        admit(app, &reader, concert)
            .await
            .expect("a fan admitted after the fault"),
    );
    let want = sold_in_postgres(app, schedule).await;
    let shown = eventually(Duration::from_secs(15), || async {
        let shown = sold_on_the_map(app, &reader, schedule).await?;
        (shown == want).then_some(shown)
    })
    .await;
    let last = sold_on_the_map(app, &reader, schedule).await;
    assert!(
        shown.is_some(),
        "SOLD on the map is not the sales: map {last:?}, Postgres {want:?}"
    );
    let confirmed = sales(app).await;
    let lost: Vec<&i64> = paid.difference(&confirmed).collect();
    assert!(lost.is_empty(), "answered 201 but not sold: {lost:?}");
    let balances: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT b.user_id, b.balance,
                COALESCE((SELECT sum(r.price) FROM reservation r
                           WHERE r.user_id = b.user_id AND r.status = 'CONFIRMED'), 0)::bigint
           FROM balance b",
    )
    .fetch_all(&app.pg)
    .await
    .unwrap();
    for (user, balance, spent) in balances {
        if let Some(charged) = charged.get(&user) {
            assert_eq!(
                balance,
                charged - spent,
                "user {user}: charged {charged}, bought {spent}"
            );
        }
    }
    app.assert_ledger().await;
}

/// A small deterministic generator (xorshift): seat picks that collide.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// Moves every time the recovery reads back by ten minutes, as if ten minutes
/// had passed with no server: the SOLD catch-up's window (confirmation times
/// and its watermark) and the claims of requests the dead server held.
async fn ten_minutes_pass(app: &TestApp) {
    for sql in [
        "UPDATE reservation SET confirmed_at = confirmed_at - interval '10 minutes'
          WHERE status = 'CONFIRMED'",
        "UPDATE sold_watermark SET confirmed_at = confirmed_at - interval '10 minutes'",
        "UPDATE idempotency_key SET locked_until = locked_until - interval '10 minutes'
          WHERE status_code IS NULL",
    ] {
        sqlx::query(sql).execute(&app.pg).await.unwrap();
    }
}

/// A payment burst (one every 3 ms from `FANS` fans, each paying the seat it
/// holds) is cut by `kill -9` once a third of it is sold; ten minutes pass;
/// a new server starts and every fan retries with the same Idempotency-Key.
/// Every fan ends with exactly one sale and one debit; every `201` before
/// the kill is a sale; the map shows exactly the sales.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_in_a_payment_burst_and_a_long_outage_lose_nothing() {
    const FANS: usize = 240;
    const BALANCE: i64 = 1000;
    let _one = ONE_AT_A_TIME.lock().await;
    let mut owner = TestApp::spawn_with(env()).await;
    // More seats than fans: the room must not be sold out for the fan who
    // reads the map at the end.
    let (concert, schedule) = owner.new_concert(FANS as i64 + 10, PRICE).await;
    owner.shutdown().await;
    let mut first = Process::start(&owner, &redis_url(), &VARS).await;
    let app = owner.at(&first.base);
    let mut fans = users(&app, FANS, BALANCE).await;
    admit_all(&app, &mut fans, concert).await;
    let mut holds = Vec::new();
    for (i, fan) in fans.iter().enumerate() {
        let seat = i as i64 + 1;
        match hold(&app, fan, schedule, seat).await {
            Outcome::Answer(StatusCode::CREATED, body) => holds.push(body["id"].as_i64().unwrap()),
            other => panic!("holding seat {seat}: {other:?}"),
        }
    }

    let started = Instant::now();
    let burst: Vec<_> = fans
        .iter()
        .zip(&holds)
        .enumerate()
        .map(|(i, (fan, &reservation))| {
            let (app, fan) = (owner.at(&first.base), fan.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(3 * i as u64)).await;
                pay(&app, &fan, reservation, &format!("chaos-{i}")).await
            })
        })
        .collect();
    let sold_at_kill = loop {
        let sold = confirmed_count(&owner).await;
        if sold >= (FANS / 3) as i64 {
            first.kill9();
            break sold;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the burst stalled at {sold} sales"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let killed_after = started.elapsed();
    let before: Vec<Outcome> = join_all(burst)
        .await
        .into_iter()
        .map(|o| o.unwrap())
        .collect();
    let mut tally_before = Tally::default();
    before.iter().for_each(|o| tally_before.add(o));
    let paid: BTreeSet<i64> = before
        .iter()
        .zip(&holds)
        .filter(|(o, _)| o.status() == Some(StatusCode::CREATED))
        .map(|(_, &r)| r)
        .collect();
    let sold_by_dead_server = confirmed_count(&owner).await;
    assert!(
        tally_before.count("201") < FANS,
        "the kill came after the burst ({tally_before}): nothing was cut"
    );

    ten_minutes_pass(&owner).await;
    let second = Process::start(&owner, &redis_url(), &VARS).await;
    let app = owner.at(&second.base);
    let mut tally_retry = Tally::default();
    for (i, (fan, (&reservation, outcome))) in
        fans.iter().zip(holds.iter().zip(&before)).enumerate()
    {
        if outcome.status() == Some(StatusCode::CREATED) {
            continue;
        }
        let key = format!("chaos-{i}");
        let retried = eventually(Duration::from_secs(20), || async {
            let answer = pay(&app, fan, reservation, &key).await;
            (answer.status() != Some(StatusCode::SERVICE_UNAVAILABLE)).then_some(answer)
        })
        .await
        .expect("the retry answered within 20 s");
        tally_retry.add(&retried);
        assert_eq!(
            retried.status(),
            Some(StatusCode::CREATED),
            "fan {i}'s retry of a payment cut by the kill: {retried:?}"
        );
    }
    assert_eq!(
        confirmed_count(&owner).await,
        FANS as i64,
        "one sale per fan"
    );
    let charged = fans.iter().map(|f| (f.id, BALANCE)).collect();
    assert_nothing_lost(&app, concert, schedule, &paid, &charged).await;
    eprintln!(
        "chaos kill -9: {FANS} payments; killed after {killed_after:.1?} at {sold_at_kill} sales \
         ({sold_by_dead_server} committed by the dead server); answers before the kill: {tally_before}; \
         retries after ten minutes and a restart: {tally_retry}; all {FANS} sold once, map = sales, ledger ok"
    );
}

/// A Redis of the test's own, with no persistence, on a free port.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut redis = OwnRedis { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (empty: nothing is saved) and waits for its PING.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (make services installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.cli(&["PING"]).contains("PONG") {
            assert!(Instant::now() < deadline, "own redis-server not up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `SHUTDOWN NOSAVE`: everything in it is gone.
    fn shutdown_nosave(&mut self) {
        self.cli(&["SHUTDOWN", "NOSAVE"]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What a fan of a load did, in the order it happened.
#[derive(Default)]
struct Log {
    /// Every answer of every request.
    all: Tally,
    /// Every answer while the fault lasted, and after it.
    during: Tally,
    after: Tally,
    /// Answers to payments while the fault lasted, and after it.
    payments_during: Tally,
    payments_after: Tally,
    /// Reservations whose payment was answered `201`.
    paid: BTreeSet<i64>,
    /// The slowest answer, and the slowest `503`.
    slowest: Duration,
    slowest_503: Duration,
    /// The longest a payment's key answered `409 idempotency_key_in_use`
    /// to its retries.
    longest_in_use: Duration,
}

/// The phase of a fault, as the fans see it.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Before,
    During,
    After,
}

/// What the fans of a load shop in, and where they note what happened.
#[derive(Clone)]
struct Sale {
    concert: i64,
    schedule: i64,
    seats: u64,
    phase: Arc<Mutex<Phase>>,
    log: Arc<Mutex<Log>>,
}

/// A fan of a load: joins (again whenever its token is gone), holds a seat
/// at random, pays it with an Idempotency-Key (and retries that payment with
/// the same key until it gets an answer other than `503`), charges now and
/// then, until `stop`.
async fn shop(app: TestApp, mut fan: Fan, on: Sale, seed: u64, stop: Instant) {
    let Sale {
        concert,
        schedule,
        seats,
        phase,
        log,
    } = on;
    let mut dice = Dice(seed | 1);
    let mut n = 0;
    let record = |outcome: &Outcome, took: Duration, payment: bool| {
        let mut log = log.lock().unwrap();
        log.all.add(outcome);
        log.slowest = log.slowest.max(took);
        if outcome.status() == Some(StatusCode::SERVICE_UNAVAILABLE) {
            log.slowest_503 = log.slowest_503.max(took);
        }
        match *phase.lock().unwrap() {
            Phase::During if payment => {
                log.during.add(outcome);
                log.payments_during.add(outcome);
            }
            Phase::After if payment => {
                log.after.add(outcome);
                log.payments_after.add(outcome);
            }
            Phase::During => log.during.add(outcome),
            Phase::After => log.after.add(outcome),
            Phase::Before => {}
        }
    };
    while Instant::now() < stop {
        n += 1;
        // A fan's think time: 50 to 150 ms between steps.
        tokio::time::sleep(Duration::from_millis(50 + dice.roll(100))).await;
        if fan.token.is_none() {
            fan.token = admit(&app, &fan, concert).await;
            if fan.token.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        }
        if n % 7 == 0 {
            let t = Instant::now();
            let key = format!("charge-{}-{n}", fan.id);
            let charged = send(
                &app,
                Method::POST,
                "/balance/charge",
                &[
                    ("authorization", fan.auth.as_str()),
                    ("idempotency-key", &key),
                ],
                Some(json!({"amount": 1})),
            )
            .await;
            record(&charged, t.elapsed(), false);
            continue;
        }
        let t = Instant::now();
        let seat = dice.roll(seats) as i64 + 1;
        let held = hold(&app, &fan, schedule, seat).await;
        record(&held, t.elapsed(), false);
        let reservation = match &held {
            Outcome::Answer(StatusCode::CREATED, body) => body["id"].as_i64().unwrap(),
            Outcome::Answer(status, body) => {
                let code = body["error"]["code"].as_str().unwrap_or_default();
                if code.starts_with("queue_token") {
                    fan.token = None; // the queue was lost with Redis: join again
                }
                if *status == StatusCode::SERVICE_UNAVAILABLE {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
            Outcome::Dropped => continue,
        };
        let key = format!("pay-{reservation}");
        let mut in_use_since: Option<Instant> = None;
        loop {
            let t = Instant::now();
            let paid = pay(&app, &fan, reservation, &key).await;
            record(&paid, t.elapsed(), true);
            let in_use = paid.label() == "409 idempotency_key_in_use";
            if in_use {
                in_use_since.get_or_insert(t);
            }
            match paid.status() {
                Some(StatusCode::CREATED) => {
                    log.lock().unwrap().paid.insert(reservation);
                    break;
                }
                // Retried with the same key, as API.md allows: after a 503, or
                // while the key's earlier request still holds it.
                Some(StatusCode::SERVICE_UNAVAILABLE) if Instant::now() < stop => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some(StatusCode::CONFLICT) if in_use && Instant::now() < stop => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => {
                    // Refused (the hold lost with Redis, or lapsed): let it go,
                    // so the fan stays under the hold limit.
                    let path = format!("/reservations/{reservation}");
                    let auth = [("authorization", fan.auth.as_str())];
                    record(
                        &send(&app, Method::DELETE, &path, &auth, None).await,
                        t.elapsed(),
                        false,
                    );
                    break;
                }
            }
        }
        if let Some(since) = in_use_since {
            let mut log = log.lock().unwrap();
            log.longest_in_use = log.longest_in_use.max(since.elapsed());
        }
    }
}

/// Fans shop for `secs` seconds; `fault` runs beside them, setting the phase.
async fn load_with<F, Fut>(
    app: &TestApp,
    fans: &[Fan],
    concert: i64,
    schedule: i64,
    seats: u64,
    secs: u64,
    fault: F,
) -> Log
where
    F: FnOnce(Arc<Mutex<Phase>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let log = Arc::new(Mutex::new(Log::default()));
    let phase = Arc::new(Mutex::new(Phase::Before));
    let stop = Instant::now() + Duration::from_secs(secs);
    let shoppers: Vec<_> = fans
        .iter()
        .enumerate()
        .map(|(i, fan)| {
            let on = Sale {
                concert,
                schedule,
                seats,
                phase: phase.clone(),
                log: log.clone(),
            };
            tokio::spawn(shop(
                app.at(&app.base),
                fan.clone(),
                on,
                0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1),
                stop,
            ))
        })
        .collect();
    fault(phase).await;
    for shopper in join_all(shoppers).await {
        shopper.expect("a fan's task ended without a panic");
    }
    Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap()
}

/// Sixty fans hold and pay while Redis is shut down without saving; it comes
/// back empty (queue, holds, seat bitmaps all gone). Requests in the gap are
/// clean `503`s, fans join again, sales go on, and no seat Postgres sold is
/// offered again: the map shows exactly the sales.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_shut_down_without_saving_under_load_comes_back_empty_and_nothing_is_oversold() {
    const FANS: usize = 60;
    const SEATS: u64 = 5000;
    const BALANCE: i64 = 1_000_000;
    let _one = ONE_AT_A_TIME.lock().await;
    let _ = tracing_subscriber::fmt().with_env_filter("warn").try_init();
    let mut redis = OwnRedis::start();
    let mut env = env();
    env.redis_url = Some(redis.url());
    let app = TestApp::spawn_with(env).await;
    let (concert, schedule) = app.new_concert(SEATS as i64, PRICE).await;
    let mut fans = users(&app, FANS, BALANCE).await;
    admit_all(&app, &mut fans, concert).await;

    let mut gap = Duration::ZERO;
    let (app_, redis_, gap_) = (&app, &mut redis, &mut gap);
    let log = load_with(&app, &fans, concert, schedule, SEATS, 14, |phase| {
        let (app, redis, gap) = (app_, redis_, gap_);
        async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            *phase.lock().unwrap() = Phase::During;
            let down = Instant::now();
            redis.shutdown_nosave();
            tokio::time::sleep(Duration::from_secs(3)).await;
            redis.restart();
            // Back when the service answers a join again.
            let reader = users(app, 1, 0).await.remove(0);
            eventually(Duration::from_secs(20), || admit(app, &reader, concert)).await;
            *gap = down.elapsed();
            *phase.lock().unwrap() = Phase::After;
        }
    })
    .await;
    assert!(
        log.during.count("503 unavailable") > 0,
        "no request met the outage: {}; all answers: {}",
        log.during,
        log.all
    );
    assert!(
        log.payments_after.count("201") > 0,
        "no sale after Redis came back: {}",
        log.after
    );
    let charged = charged_by(&app, &fans).await;
    assert_nothing_lost(&app, concert, schedule, &log.paid, &charged).await;
    eprintln!(
        "chaos redis SHUTDOWN NOSAVE: {FANS} fans, {} requests ({}); answers in the {gap:.1?} gap: {}; \
         payments after it: {}; slowest answer {:.1?}; {} sold, map = sales, ledger ok",
        log.all.total(),
        log.all,
        log.during,
        log.payments_after,
        log.slowest,
        sales(&app).await.len()
    );
}

/// What each fan charged in all (the arranged balance plus the load's
/// charges), from the ledger's CHARGE rows.
async fn charged_by(app: &TestApp, fans: &[Fan]) -> BTreeMap<i64, i64> {
    let ids: Vec<i64> = fans.iter().map(|f| f.id).collect();
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT user_id, COALESCE(sum(amount), 0)::bigint FROM balance_history
          WHERE type = 'CHARGE' AND user_id = ANY($1) GROUP BY user_id",
    )
    .bind(&ids)
    .fetch_all(&app.pg)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// Sixty fans charge, hold and pay while Postgres stops answering for six
/// seconds (connections open, nothing comes back). Requests that need it
/// answer `503` within the 3 s deadline instead of hanging 30 s; holds go on;
/// once it answers again, every payment retried with its key goes through
/// (no `409 idempotency_key_in_use` left behind), and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_postgres_under_load_answers_503_quickly_and_loses_nothing() {
    const FANS: usize = 60;
    const SEATS: u64 = 5000;
    const BALANCE: i64 = 1_000_000;
    let _one = ONE_AT_A_TIME.lock().await;
    let proxy = Proxy::start(host_port(&common::pg_server())).await;
    let mut env = env();
    env.pg_server = Some(through(&common::pg_server(), &proxy));
    let app = TestApp::spawn_with(env).await;
    let (concert, schedule) = app.new_concert(SEATS as i64, PRICE).await;
    let mut fans = users(&app, FANS, BALANCE).await;
    admit_all(&app, &mut fans, concert).await;

    let proxy_ = &proxy;
    let log = load_with(
        &app,
        &fans,
        concert,
        schedule,
        SEATS,
        16,
        |phase| async move {
            let proxy = proxy_;
            tokio::time::sleep(Duration::from_secs(4)).await;
            *phase.lock().unwrap() = Phase::During;
            proxy.freeze();
            tokio::time::sleep(Duration::from_secs(6)).await;
            proxy.thaw();
            *phase.lock().unwrap() = Phase::After;
        },
    )
    .await;
    assert!(
        log.payments_during.count("503 unavailable") > 0,
        "no payment met the frozen Postgres: {}; all answers: {}",
        log.payments_during,
        log.all
    );
    assert!(
        log.during.count("201") > 0,
        "no hold while Postgres was frozen (holds need no Postgres): {}",
        log.during
    );
    assert!(
        log.payments_after.count("201") > 0,
        "no sale after Postgres came back: {}",
        log.payments_after
    );
    // A failed request's claim is released as soon as Postgres answers again
    // (before, a key stayed claimed for its whole 60 s).
    assert!(
        log.longest_in_use < Duration::from_secs(10),
        "a failed payment's key stayed claimed {:.1?}",
        log.longest_in_use
    );
    // The deadline is 3 s; before it, a frozen Postgres held requests 30 s.
    assert!(
        log.slowest_503 < Duration::from_secs(15),
        "a 503 took {:.1?}",
        log.slowest_503
    );
    let charged = charged_by(&app, &fans).await;
    assert_nothing_lost(&app, concert, schedule, &log.paid, &charged).await;
    eprintln!(
        "chaos postgres frozen 6 s: {FANS} fans, {} requests ({}); answers while frozen: {} \
         (payments: {}); payments after: {}; slowest 503 {:.1?}, slowest answer {:.1?}; \
         a key in use to its retries at most {:.1?}; \
         {} sold, map = sales, ledger ok",
        log.all.total(),
        log.all,
        log.during,
        log.payments_during,
        log.payments_after,
        log.slowest_503,
        log.slowest,
        log.longest_in_use,
        sales(&app).await.len()
    );
}

/// The port of the cluster master serving `key`'s slot, from `CLUSTER NODES`
/// of any node that answers (7000-7005).
fn master_of(key: &str) -> u16 {
    let slot = fred::util::redis_keyslot(key.as_bytes());
    for port in 7000..7006 {
        let Ok(out) = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "cluster", "nodes"])
            .output()
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
            });
            if serves {
                let port = fields[1].split(['@', ':']).nth(1).unwrap();
                return port.parse().unwrap();
            }
        }
    }
    panic!("no master serves slot {slot}");
}

/// `scripts/cluster.sh` with `args`; panics with its output if it fails.
fn cluster_sh(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
    let out = Command::new(script)
        .args(args)
        .output()
        .expect("cluster.sh runs");
    assert!(
        out.status.success(),
        "cluster.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The fans and seats of the cluster stories below.
const CLUSTER_FANS: usize = 60;
const CLUSTER_SEATS: u64 = 5000;
const CLUSTER_BALANCE: i64 = 1_000_000;

/// A cluster story's sale: on a Redis Cluster only (else `None`, said on
/// stderr), one story at a time (the guard), a server that logs its errors to
/// the test's output (a 500's detail is only there), a concert of `CLUSTER_SEATS`
/// seats and `CLUSTER_FANS` fans with `CLUSTER_BALANCE` each, admitted.
async fn cluster_sale() -> Option<(
    tokio::sync::MutexGuard<'static, ()>,
    TestApp,
    i64,
    i64,
    Vec<Fan>,
)> {
    if !common::clustered() {
        eprintln!("runs on a Redis Cluster only (make test-cluster)");
        return None;
    }
    let one = ONE_AT_A_TIME.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("error")
        .with_test_writer()
        .try_init();
    let app = TestApp::spawn_with(env()).await;
    let (concert, schedule) = app.new_concert(CLUSTER_SEATS as i64, PRICE).await;
    let mut fans = users(&app, CLUSTER_FANS, CLUSTER_BALANCE).await;
    admit_all(&app, &mut fans, concert).await;
    Some((one, app, concert, schedule, fans))
}

/// On a Redis Cluster only (`make test-cluster`): the slot of the concert
/// sixty fans are holding and paying in moves to another master under them,
/// as a reshard does (`scripts/cluster.sh move`: IMPORTING and MIGRATING, its
/// keys over with MIGRATE, SETSLOT NODE everywhere). fred follows the ASK and
/// MOVED answers, and its router is started again if it gives up (`supervise`
/// in src/store/redis.rs: a 30-slot move once left every later command
/// failing). Every answer is a success, a refusal of the sale's own (a seat
/// taken) or a clean `503`; sales go on after the move; the map shows exactly
/// the sales and the ledger balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_slot_moved_under_load_loses_nothing() {
    let Some((_one, app, concert, schedule, fans)) = cluster_sale().await else {
        return;
    };
    let tag = app.keys().concert_tag(concert);
    let master = master_of(&tag);

    let mut took = Duration::ZERO;
    let took_ = &mut took;
    let log = load_with(
        &app,
        &fans,
        concert,
        schedule,
        CLUSTER_SEATS,
        12,
        |phase| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            *phase.lock().unwrap() = Phase::During;
            let started = Instant::now();
            let id = concert.to_string();
            tokio::task::spawn_blocking(move || cluster_sh(&["move", &id]))
                .await
                .unwrap();
            *took_ = started.elapsed();
            *phase.lock().unwrap() = Phase::After;
        },
    )
    .await;
    let now = master_of(&tag);
    assert_ne!(now, master, "the concert's slot moved");
    assert!(
        log.payments_after.count("201") > 0,
        "no sale after the move: {}; all answers: {}",
        log.after,
        log.all
    );
    let charged = charged_by(&app, &fans).await;
    assert_nothing_lost(&app, concert, schedule, &log.paid, &charged).await;
    eprintln!(
        "chaos cluster reshard: slot of {tag} moved from {master} to {now} in {took:.1?} under {CLUSTER_FANS} fans; \
         {} requests ({}); answers during the move: {}; payments after it: {}; slowest answer {:.1?}; \
         {} sold, map = sales, ledger ok",
        log.all.total(),
        log.all,
        log.during,
        log.payments_after,
        log.slowest,
        sales(&app).await.len()
    );
}

/// On a Redis Cluster only (`make test-cluster`): sixty fans hold and pay
/// while the master holding their concert is killed (SIGKILL); its replica is
/// promoted and boxoffice finds it by itself. Requests in the gap are clean
/// `503`s; sales go on after it; holds and SOLD bits the old master had not
/// yet replicated are lost with it, and the new master's run id makes the
/// concert's SOLD seats rebuilt from Postgres: the map shows exactly the sales,
/// nothing is sold twice (Postgres's unique index is the last line) and the
/// ledger balances. The killed node comes back as a replica afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_under_load_fails_over_and_nothing_is_sold_twice() {
    let Some((_one, app, concert, schedule, fans)) = cluster_sale().await else {
        return;
    };
    let master = master_of(&app.keys().concert_tag(concert));

    let mut promoted = String::new();
    let mut gap = Duration::ZERO;
    let (app_, promoted_, gap_) = (&app, &mut promoted, &mut gap);
    let log = load_with(&app, &fans, concert, schedule, CLUSTER_SEATS, 16, |phase| {
        let (app, promoted, gap) = (app_, promoted_, gap_);
        async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            *phase.lock().unwrap() = Phase::During;
            let down = Instant::now();
            let port = master.to_string();
            *promoted = tokio::task::spawn_blocking(move || cluster_sh(&["failover-kill", &port]))
                .await
                .unwrap();
            // Back when the service answers a join again.
            let reader = users(app, 1, 0).await.remove(0);
            eventually(Duration::from_secs(20), || admit(app, &reader, concert)).await;
            *gap = down.elapsed();
            *phase.lock().unwrap() = Phase::After;
        }
    })
    .await;
    // The killed node rejoins as a replica, for the tests after this one.
    tokio::task::spawn_blocking(|| cluster_sh(&[]))
        .await
        .unwrap();
    assert!(
        log.payments_after.count("201") > 0,
        "no sale after the failover: {}; all answers: {}",
        log.after,
        log.all
    );
    let charged = charged_by(&app, &fans).await;
    assert_nothing_lost(&app, concert, schedule, &log.paid, &charged).await;
    eprintln!(
        "chaos cluster failover: master {master} killed, replica {} promoted; {CLUSTER_FANS} fans, {} requests ({}); \
         answers in the {gap:.1?} gap: {}; payments after it: {}; slowest answer {:.1?}; \
         {} sold, map = sales, ledger ok",
        promoted.trim(),
        log.all.total(),
        log.all,
        log.during,
        log.payments_after,
        log.slowest,
        sales(&app).await.len()
    );
}
