//! `/metrics` as Prometheus reads it: every family of the catalog with
//! `# HELP` and `# TYPE`, the catalog's counters at zero before their first
//! event, and a concert's series once it sells. (One test in this binary: the
//! recorder is the process's, and every test database has a concert 1.)

mod common;

use boxoffice::telemetry::catalog::{FAMILIES, Kind};
use common::{Env, TestApp, eventually};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn every_family_has_help_and_type_and_counters_start_at_zero() {
    let mut env = Env::default();
    env.vars.insert("ADMISSION_RATE", "1000".into());
    let app = TestApp::spawn_with(env).await;
    // Before anything happened: the known counters are there, at 0.
    let text = app.metrics_text().await;
    for f in FAMILIES.iter().filter(|f| f.kind == Kind::Counter) {
        for value in f.zero {
            let series = match f.labels.first() {
                None => format!("{} 0", f.name),
                Some(label) => format!("{}{{{label}=\"{value}\"}} 0", f.name),
            };
            assert!(text.contains(&series), "{series} missing at start");
        }
    }
    assert!(
        text.contains("redis_script_errors_total{script=\"hold\"} 0"),
        "script errors start at 0"
    );

    // A sale: a fan joins, is admitted, holds, pays; another leaves.
    let (concert, schedule) = app.new_concert(3, 100).await;
    let (_, auth) = app.new_user().await;
    app.charge(&auth, 1000).await;
    let (_, joined) = app
        .post(
            "/queue/tokens",
            &[("authorization", &auth)],
            json!({"concert_id": concert}),
        )
        .await;
    let token = joined["token"].as_str().unwrap().to_owned();
    let active = eventually(Duration::from_secs(5), || async {
        let (_, t) = app
            .get(
                &format!("/queue/tokens/{token}"),
                &[("authorization", &auth)],
            )
            .await;
        (t["status"] == "ACTIVE").then_some(())
    })
    .await;
    assert!(active.is_some());
    let pass = [
        ("authorization", auth.as_str()),
        ("x-queue-token", token.as_str()),
    ];
    let (_, hold) = app
        .post(
            "/reservations",
            &pass,
            json!({"schedule_id": schedule, "seat_no": 1}),
        )
        .await;
    let (status, _) = app
        .post("/payments", &pass, json!({"reservation_id": hold["id"]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, other) = app.new_user().await;
    let (_, left) = app
        .post(
            "/queue/tokens",
            &[("authorization", &other)],
            json!({"concert_id": concert}),
        )
        .await;
    let path = format!("/queue/tokens/{}", left["token"].as_str().unwrap());
    app.call(Method::DELETE, &path, &[("authorization", &other)], None)
        .await;
    // The audit trail is written behind (200 ms), and a tick counts the seats.
    tokio::time::sleep(Duration::from_millis(600)).await;

    let text = app.metrics_text().await;
    for f in FAMILIES {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(
            text.contains(&format!("# TYPE {} {kind}\n", f.name)),
            "# TYPE of {} missing",
            f.name
        );
        assert!(
            text.contains(&format!("# HELP {} ", f.name)),
            "# HELP of {} missing",
            f.name
        );
    }
    let c = concert.to_string();
    for series in [
        format!("queue_joins_total{{concert=\"{c}\"}} 2"),
        format!("waiting_room_admitted_total{{concert=\"{c}\"}} 1"),
        format!("queue_expired_total{{concert=\"{c}\",reason=\"left\"}} 1"),
        format!("waiting_room_seats_left{{concert=\"{c}\"}} 2"),
        format!("waiting_room_state{{concert=\"{c}\",state=\"OPEN\"}} 1"),
        format!("waiting_room_state{{concert=\"{c}\",state=\"PAUSED\"}} 0"),
        format!("queue_expired_total{{concert=\"{c}\",reason=\"idle\"}} 0"),
        format!("queue_active{{concert=\"{c}\"}} 0"),
        "payments_total 1".to_owned(),
        "payments_won_total 100".to_owned(),
        "holds_total{result=\"ok\"} 1".to_owned(),
        // One server: every admission group is its own.
        "admission_leases_held 16".to_owned(),
    ] {
        assert!(text.contains(&series), "{series} missing");
    }
    // Label values are bounded: no token or user id anywhere.
    assert!(!text.contains(&token));
    assert!(!text.contains(&auth[7..]));
}
