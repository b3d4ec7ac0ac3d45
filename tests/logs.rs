//! The binary's logs, as an operator reads them: one JSON line per request
//! with its id, method, route, status and latency; never a secret, even at
//! debug level; and a clean exit on SIGTERM.

mod common;

use common::{ADMIN_KEY, AUTH_SECRET, TestApp, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn request_logs_carry_the_request_id_and_never_a_secret() {
    // The in-process app owns the database and key prefix (and removes them);
    // the binary under test serves the same deployment with debug logs.
    let owner = TestApp::spawn().await;
    let port = free_port();
    let log_path = std::env::temp_dir().join(format!("{}.log", common::unique_name("log")));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .arg("serve")
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("{}/{}", common::pg_server(), owner.db_name),
        )
        .env("REDIS_URL", common::redis_url())
        .env("REDIS_PREFIX", &owner.prefix)
        .env("AUTH_SECRET", AUTH_SECRET)
        .env("ADMIN_KEY", ADMIN_KEY)
        .env("ADMISSION_RATE", "1000")
        .env("RUST_LOG", "debug")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let up = eventually(Duration::from_secs(20), || async {
        let r = http.get(format!("{base}/health")).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    assert!(up.is_some(), "the server starts");

    // A fan's whole journey through the binary, secrets and tokens included.
    let call = |method: reqwest::Method, path: &str| http.request(method, format!("{base}{path}"));
    let user: Value = call(reqwest::Method::POST, "/users")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwt = user["access_token"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {jwt}");
    let concert: Value = call(reqwest::Method::POST, "/admin/concerts")
        .header("x-admin-key", ADMIN_KEY)
        .json(&json!({"title": "Logged"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let concert = concert["id"].as_i64().unwrap();
    let schedule: Value = call(
        reqwest::Method::POST,
        &format!("/admin/concerts/{concert}/schedules"),
    )
    .header("x-admin-key", ADMIN_KEY)
    .json(&json!({"start_at": "2027-01-01T19:00:00Z", "seat_count": 5, "price": 100}))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let schedule = schedule["id"].as_i64().unwrap();
    call(reqwest::Method::POST, "/balance/charge")
        .header("authorization", &auth)
        .json(&json!({"amount": 1000}))
        .send()
        .await
        .unwrap();
    let joined: Value = call(reqwest::Method::POST, "/queue/tokens")
        .header("authorization", &auth)
        .json(&json!({"concert_id": concert}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let queue_token = joined["token"].as_str().unwrap().to_owned();
    let active = eventually(Duration::from_secs(10), || async {
        let t: Value = call(
            reqwest::Method::GET,
            &format!("/queue/tokens/{queue_token}"),
        )
        .header("authorization", &auth)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
        (t["status"] == "ACTIVE").then_some(())
    })
    .await;
    assert!(active.is_some(), "admitted");
    let hold: Value = call(reqwest::Method::POST, "/reservations")
        .header("authorization", &auth)
        .header("x-queue-token", &queue_token)
        .json(&json!({"schedule_id": schedule, "seat_no": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paid = call(reqwest::Method::POST, "/payments")
        .header("authorization", &auth)
        .header("x-queue-token", &queue_token)
        .header("idempotency-key", "pay-once")
        .json(&json!({"reservation_id": hold["id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), StatusCode::CREATED);
    // The client's own request id is echoed and logged; a made one otherwise.
    let traced = call(reqwest::Method::GET, "/balance")
        .header("authorization", &auth)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.headers()["x-request-id"], "trace-me-42");
    let refused = call(reqwest::Method::GET, "/balance")
        .header("authorization", "Bearer not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let made = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 32, "{made}");

    // SIGTERM: a clean stop.
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server stops after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.success(), "exit status {exited:?}");

    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 10, "{text}");
    // One line per request, with what an operator traces a fan by.
    let line = lines
        .iter()
        .find(|l| l["span"]["request_id"] == "trace-me-42")
        .unwrap_or_else(|| panic!("no line with the request id:\n{text}"));
    assert_eq!(line["span"]["method"], "GET");
    assert_eq!(line["span"]["route"], "/balance");
    assert_eq!(line["fields"]["status"], 200);
    assert!(line["fields"]["latency_ms"].as_f64().is_some(), "{line}");
    let refusal = lines
        .iter()
        .find(|l| l["span"]["request_id"] == made.as_str())
        .expect("the refused request is logged");
    assert_eq!(refusal["fields"]["status"], 401);
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["route"] == "/payments" && l["fields"]["status"] == 201),
        "the payment is logged"
    );
    assert!(text.contains("shutting down"), "the shutdown is logged");
    // Never a secret, whatever the level.
    for (what, secret) in [
        ("the access token", jwt.as_str()),
        ("the queue token", queue_token.as_str()),
        ("AUTH_SECRET", AUTH_SECRET),
        ("ADMIN_KEY", ADMIN_KEY),
    ] {
        assert!(!text.contains(secret), "{what} is in the log");
    }
    drop(owner);
}
