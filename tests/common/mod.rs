//! The test harness: starts the real app in-process on a random port against the
//! real Redis and Postgres (from `REDIS_URL` and `DATABASE_URL`, as `make test`
//! sets them), each test in a database and a key prefix of its own, both removed
//! when the test ends, pass or fail.

#![allow(dead_code)]

pub mod process;
pub mod proxy;
pub mod raw;

use boxoffice::config::Config;
use boxoffice::store::Keys;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

pub const ADMIN_KEY: &str = "test-admin-key";
pub const AUTH_SECRET: &str = "test-auth-secret-0123456789";

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `DATABASE_URL` without its database name: the server tests make databases on.
pub fn pg_server() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/boxoffice".into());
    let url = url.split('?').next().unwrap_or(&url).to_owned();
    match url.rsplit_once('/') {
        Some((base, _)) if base.contains("://") && !base.ends_with('/') => base.to_owned(),
        _ => url,
    }
}

/// A name no other test run uses at the same time.
pub fn unique_name(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "bo_test_{kind}_{}_{:x}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// One running boxoffice with its own database and Redis prefix.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    /// A pool on the test's own database, for arranging and checking state.
    pub pg: PgPool,
    pub db_name: String,
    pub prefix: String,
    /// The server's instance id (the admission lease names its holder by it).
    pub instance_id: String,
    /// False for a sibling that shares another app's database and prefix.
    owns_storage: bool,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Overrides of the app's environment for one test.
#[derive(Default)]
pub struct Env {
    pub vars: HashMap<&'static str, String>,
    /// Replaces the Postgres server URL (e.g. a proxy in front of it).
    pub pg_server: Option<String>,
    pub redis_url: Option<String>,
    /// Share this database and key prefix (a second instance of one deployment).
    pub share: Option<(String, String)>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Env::default()).await
    }

    pub async fn spawn_with(env: Env) -> TestApp {
        static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        SWEPT.get_or_init(sweep_dead_runs).await;
        let owns_storage = env.share.is_none();
        let (db_name, prefix) = env
            .share
            .clone()
            .unwrap_or_else(|| (unique_name("db"), unique_name("keys")));
        let server = env.pg_server.clone().unwrap_or_else(pg_server);
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("DATABASE_URL", format!("{server}/{db_name}")),
            ("REDIS_URL", env.redis_url.clone().unwrap_or_else(redis_url)),
            ("REDIS_PREFIX", prefix.clone()),
            ("AUTH_SECRET", AUTH_SECRET.to_owned()),
            ("ADMIN_KEY", ADMIN_KEY.to_owned()),
            // Tests make many users from 127.0.0.1 and poll fast; the limits'
            // own tests (tests/limits.rs) switch them on.
            ("RATE_LIMITS", "off".to_owned()),
        ]);
        vars.extend(env.vars);
        let config = Config::from_lookup(|k| vars.get(k).cloned()).expect("test config");
        let app = boxoffice::App::build(config).await.expect("app starts");
        let instance_id = app.state().instance_id.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        let pg = PgPool::connect(&format!("{}/{db_name}", pg_server()))
            .await
            .unwrap();
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            pg,
            db_name,
            prefix,
            instance_id,
            owns_storage,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// A second server of the same deployment: same database, same Redis prefix.
    pub async fn sibling(&self, mut env: Env) -> TestApp {
        env.share = Some((self.db_name.clone(), self.prefix.clone()));
        Self::spawn_with(env).await
    }

    /// This app's storage served at `base` (a [`process::Process`]): the
    /// helpers then talk to that server; this app keeps owning the storage.
    pub fn at(&self, base: &str) -> TestApp {
        TestApp {
            base: base.to_owned(),
            http: self.http.clone(),
            pg: self.pg.clone(),
            db_name: self.db_name.clone(),
            prefix: self.prefix.clone(),
            instance_id: String::new(),
            owns_storage: false,
            stop: None,
            server: None,
        }
    }

    /// Stops the server gracefully (as on SIGTERM) and waits until it is done.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// Kills the server abruptly: no graceful shutdown, like a crash.
    pub fn crash(&mut self) {
        self.stop.take();
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Sends a request; `body` of `None` sends none. Returns status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        read(response).await
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        self.call(Method::GET, path, headers, None).await
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(Method::POST, path, headers, Some(body)).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    /// A new user through `POST /users`: (id, bearer header value). Arranges,
    /// so a refusal panics (see [`expect_status`]).
    pub async fn new_user(&self) -> (i64, String) {
        let answer = self.post("/users", &[], json!({})).await;
        let body = expect_status(answer, StatusCode::CREATED, "creating a user");
        let id = body["id"].as_i64().expect("a new user has an id");
        let token = body["access_token"]
            .as_str()
            .expect("a new user has a token");
        (id, format!("Bearer {token}"))
    }

    pub async fn charge(&self, auth: &str, amount: i64) -> (StatusCode, Value) {
        self.post(
            "/balance/charge",
            &[("authorization", auth)],
            json!({"amount": amount}),
        )
        .await
    }

    /// The user's balance, for the test to compare. A read that fails panics
    /// (see [`expect_status`]): a balance that cannot be read cannot be right.
    pub async fn balance(&self, auth: &str) -> i64 {
        let answer = self.get("/balance", &[("authorization", auth)]).await;
        let body = expect_status(answer, StatusCode::OK, "reading the balance");
        body["balance"].as_i64().expect("a balance is a number")
    }

    /// A concert with one schedule of `seats` seats at `price`: (concert id,
    /// schedule id). Arranges, so a refusal panics (see [`expect_status`]).
    pub async fn new_concert(&self, seats: i64, price: i64) -> (i64, i64) {
        let admin = [("x-admin-key", ADMIN_KEY)];
        let answer = self
            .post(
                "/admin/concerts",
                &admin,
                json!({"title": "Test concert", "artist": "Band"}),
            )
            .await;
        let concert = expect_status(answer, StatusCode::CREATED, "creating a concert");
        let id = concert["id"].as_i64().expect("a new concert has an id");
        let answer = self
            .post(
                &format!("/admin/concerts/{id}/schedules"),
                &admin,
                json!({"start_at": "2027-01-01T19:00:00Z", "seat_count": seats, "price": price}),
            )
            .await;
        let schedule = expect_status(answer, StatusCode::CREATED, "creating a schedule");
        (
            id,
            schedule["id"].as_i64().expect("a new schedule has an id"),
        )
    }

    /// Row counts of every table: the state a bad request must leave unchanged.
    pub async fn table_counts(&self) -> Vec<(String, i64)> {
        let mut counts = Vec::new();
        for table in [
            "users",
            "balance",
            "balance_history",
            "concert",
            "concert_schedule",
            "seat",
            "reservation",
            "payment",
            "reservation_queue",
            "idempotency_key",
        ] {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                    .fetch_one(&self.pg)
                    .await
                    .unwrap();
            counts.push((table.to_owned(), n));
        }
        let total: Option<i64> = sqlx::query_scalar("SELECT sum(balance)::bigint FROM balance")
            .fetch_one(&self.pg)
            .await
            .unwrap();
        counts.push(("sum(balance)".into(), total.unwrap_or(0)));
        counts
    }

    /// The money invariant, for every user: balance = charges - uses + refunds,
    /// the last history row's balance_after is the balance, and no balance is
    /// negative or past the limit.
    pub async fn assert_ledger(&self) {
        let broken: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT b.user_id, b.balance,
                    COALESCE(sum(CASE h.type WHEN 'USE' THEN -h.amount ELSE h.amount END), 0)::bigint
               FROM balance b LEFT JOIN balance_history h ON h.user_id = b.user_id
              GROUP BY b.user_id, b.balance
             HAVING b.balance <> COALESCE(sum(CASE h.type WHEN 'USE' THEN -h.amount ELSE h.amount END), 0)",
        )
        .fetch_all(&self.pg)
        .await
        .unwrap();
        assert!(
            broken.is_empty(),
            "balance != history sum for (user, balance, sum): {broken:?}"
        );
        let stale: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM balance b
              WHERE b.balance <> COALESCE((SELECT balance_after FROM balance_history h
                                          WHERE h.user_id = b.user_id ORDER BY id DESC LIMIT 1), 0)",
        )
        .fetch_one(&self.pg)
        .await
        .unwrap();
        assert_eq!(
            stale, 0,
            "a balance differs from its last history row's balance_after"
        );
        let orphans: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM balance_history h
              WHERE NOT EXISTS (SELECT 1 FROM balance b WHERE b.user_id = h.user_id)",
        )
        .fetch_one(&self.pg)
        .await
        .unwrap();
        assert_eq!(orphans, 0, "history rows without a balance");
        self.assert_sales().await;
    }

    /// The sales invariants: at most one CONFIRMED reservation per seat; every
    /// CONFIRMED one has exactly one payment of its price, by its buyer, with one
    /// USE history row of that amount; no payment without a CONFIRMED sale.
    pub async fn assert_sales(&self) {
        let twice: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT seat_id, count(*) FROM reservation WHERE status = 'CONFIRMED'
              GROUP BY seat_id HAVING count(*) > 1",
        )
        .fetch_all(&self.pg)
        .await
        .unwrap();
        assert!(twice.is_empty(), "seats sold twice: {twice:?}");
        let unpaid: Vec<i64> = sqlx::query_scalar(
            "SELECT r.id FROM reservation r
              WHERE r.status = 'CONFIRMED' AND NOT EXISTS (
                    SELECT 1 FROM payment p
                      JOIN balance_history h ON h.payment_id = p.id
                     WHERE p.reservation_id = r.id AND p.price = r.price
                       AND p.user_id = r.user_id AND h.type = 'USE' AND h.amount = r.price)",
        )
        .fetch_all(&self.pg)
        .await
        .unwrap();
        assert!(
            unpaid.is_empty(),
            "CONFIRMED without a matching payment: {unpaid:?}"
        );
        let strays: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM payment p
              WHERE NOT EXISTS (SELECT 1 FROM reservation r
                                 WHERE r.id = p.reservation_id AND r.status = 'CONFIRMED')
                 OR (SELECT count(*) FROM balance_history h WHERE h.payment_id = p.id) <> 1",
        )
        .fetch_one(&self.pg)
        .await
        .unwrap();
        assert_eq!(strays, 0, "payments without one sale and one history row");
    }

    /// What a Redis restart without persistence (or a flush) does to this
    /// deployment: every key under its prefix is gone. (The Redis server is
    /// shared with other tests, so not FLUSHALL.)
    pub async fn flush_redis(&self) {
        delete_keys(redis_keys(&self.prefix).await).await;
    }

    /// Sets a user's balance directly, with the CHARGE or USE history row that
    /// keeps the ledger true: for stories that need a balance no API call reaches
    /// quickly (near the 9e15 limit) or a payment that does not exist yet.
    pub async fn move_balance_to(&self, user_id: i64, amount: i64) {
        let mut tx = self.pg.begin().await.unwrap();
        let old: i64 =
            sqlx::query_scalar("SELECT balance FROM balance WHERE user_id = $1 FOR UPDATE")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        let kind = if amount >= old { "CHARGE" } else { "USE" };
        sqlx::query("UPDATE balance SET balance = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(amount)
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO balance_history (user_id, type, amount, balance_after)
             VALUES ($1, $2::balance_history_type, $3, $4)",
        )
        .bind(user_id)
        .bind(kind)
        .bind((amount - old).abs())
        .bind(amount)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }

    /// Redis keys under this test's prefix (sorted), less each concert's SOLD
    /// rebuild marker and nonce: the recovery's round sets them every 5 s for
    /// a concert new since the last, whatever a test does.
    pub async fn redis_keys(&self) -> Vec<String> {
        redis_keys(&self.prefix)
            .await
            .into_iter()
            .filter(|k| !k.ends_with(":sold:rebuilt") && !k.ends_with(":sold:rebuilding"))
            .collect()
    }

    /// The app's own key builder, for tests that arrange or read Redis state.
    pub fn keys(&self) -> Keys {
        Keys::new(&self.prefix)
    }
}

pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("response body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{status}: body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, body)
}

/// For helpers that arrange a test's scene or read a value for the test to
/// compare: the body of an answer that has the status `want`, or a panic that
/// names the step. Such a panic is a broken setup or an unreadable value, not
/// the outcome under test: where an answer's status is the point of a test, the
/// test asserts it itself.
#[track_caller]
pub fn expect_status(answer: (StatusCode, Value), want: StatusCode, step: &str) -> Value {
    let (status, body) = answer;
    if status != want {
        panic!("{step}: wanted {want}, got {status}: {body}");
    }
    body
}

/// Asserts an error answer: status, the envelope's shape, and its code.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(
        s.as_u16(),
        status,
        "wanted {status} {code}, got {s}: {body}"
    );
    assert!(
        body["error"]["message"].is_string(),
        "envelope without message: {body}"
    );
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "envelope has extra fields: {body}"
    );
}

/// A plain Redis client, for arranging and checking state.
pub async fn redis() -> fred::prelude::Client {
    use fred::prelude::*;
    let client = Builder::from_config(fred::prelude::Config::from_url(&redis_url()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    client
}

/// Whether the tests run against a Redis Cluster (`make test-cluster`).
pub fn clustered() -> bool {
    redis_url().contains("-cluster://")
}

/// For the tests that cut Redis with a proxy: on a cluster the proxy would
/// stand before one seed node only (fred then connects to every master
/// directly), so they say so and stop; `tests/cluster.rs` kills a master there.
pub fn skipped_on_a_cluster() -> bool {
    if clustered() {
        eprintln!("skipped on a Redis Cluster: a proxy cannot stand before all its nodes");
    }
    clustered()
}

/// Every key matching `prefix*`, from every master of a cluster.
async fn redis_keys(prefix: &str) -> Vec<String> {
    use fred::prelude::*;
    use futures::TryStreamExt;
    let client = Builder::from_config(fred::prelude::Config::from_url(&redis_url()).unwrap())
        .build()
        .unwrap();
    client.init().await.unwrap();
    let pattern = format!("{prefix}*");
    let keys: Vec<Key> = if client.is_clustered() {
        client
            .scan_cluster_buffered(pattern, Some(1000), None)
            .try_collect()
            .await
            .unwrap()
    } else {
        client
            .scan_buffered(pattern, Some(1000), None)
            .try_collect()
            .await
            .unwrap()
    };
    let _ = client.quit().await;
    // Sorted: a cluster's masters answer in no set order.
    let mut keys: Vec<String> = keys.into_iter().filter_map(|k| k.into_string()).collect();
    keys.sort();
    keys
}

impl Drop for TestApp {
    /// Stops the server, drops the database and deletes the test's Redis keys,
    /// on a thread of its own because `Drop` cannot await.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if !self.owns_storage {
            return;
        }
        let db_name = self.db_name.clone();
        let prefix = self.prefix.clone();
        // The pool belongs to the test's runtime, which is blocked in this drop:
        // it is not awaited here (that would deadlock); DROP ... FORCE ends its
        // connections instead.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut admin) =
                    PgConnection::connect(&format!("{}/postgres", pg_server())).await
                {
                    let sql = format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut admin)
                        .await;
                }
                delete_keys(redis_keys(&prefix).await).await;
            });
        })
        .join()
        .ok();
    }
}

/// The pid in a test name (`bo_test_<kind>_<pid>_<nanos>`).
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix("bo_test_")?
        .split('_')
        .nth(1)?
        .parse()
        .ok()
}

fn is_dead(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes databases and keys left by test processes that were killed before
/// their cleanup ran. Only on a loopback server: there a dead pid means a dead run.
async fn sweep_dead_runs() {
    let server = pg_server();
    if !(server.contains("@127.") || server.contains("@localhost") || server.contains("://127.")) {
        return;
    }
    let Ok(mut admin) = PgConnection::connect(&format!("{server}/postgres")).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'bo\\_test\\_%'")
            .fetch_all(&mut admin)
            .await
            .unwrap_or_default();
    for name in names
        .into_iter()
        .filter(|n| owner_pid(n).is_some_and(is_dead))
    {
        let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await;
    }
    let dead_keys: Vec<String> = redis_keys("bo_test_keys_")
        .await
        .into_iter()
        .filter(|k| owner_pid(k).is_some_and(is_dead))
        .collect();
    delete_keys(dead_keys).await;
}

async fn delete_keys(keys: Vec<String>) {
    use fred::prelude::*;
    if keys.is_empty() {
        return;
    }
    let client = Builder::from_config(fred::prelude::Config::from_url(&redis_url()).unwrap())
        .build()
        .unwrap();
    if client.init().await.is_ok() {
        // One DEL per hash slot: a cluster refuses a DEL across slots.
        for (_, slot) in fred::util::group_by_hash_slot(keys).unwrap_or_default() {
            let slot: Vec<Key> = slot.into_iter().collect();
            for chunk in slot.chunks(500) {
                let _: Result<i64, _> = client.del(chunk.to_vec()).await;
            }
        }
        let _ = client.quit().await;
    }
}

/// Polls `f` until it returns `Some`, up to `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
