//! Operations endpoints, routing errors, and what happens when Redis or Postgres
//! goes away and comes back.

mod common;

use common::proxy::{Proxy, host_port, through};
use common::{Env, TestApp, assert_error, eventually, pg_server, redis_url};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/health", &[]).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (status, body) = app.get("/ready", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");

    app.get("/concerts", &[]).await;
    let text = app.metrics_text().await;
    assert!(
        text.contains("# TYPE http_requests_total counter"),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{route="/concerts",method="GET",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains("# TYPE http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.contains(
        r#"http_request_duration_seconds_bucket{route="/concerts",method="GET",le="0.005"}"#
    ));
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_big_bodies_get_the_envelope() {
    let app = TestApp::spawn().await;
    assert_error(&app.get("/no/such/route", &[]).await, 404, "not_found");
    assert_error(&app.get("/concerts/1/nope", &[]).await, 404, "not_found");
    let response = app
        .http
        .delete(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().get("allow").is_some(),
        "405 keeps its Allow header"
    );
    assert_error(&common::read(response).await, 405, "method_not_allowed");
    assert_error(
        &app.call(Method::PUT, "/balance/charge", &[], None).await,
        405,
        "method_not_allowed",
    );

    let before = app.table_counts().await;
    let big = format!(r#"{{"title": "{}"}}"#, "x".repeat(70 * 1024)).into_bytes();
    let headers = [
        ("x-admin-key", common::ADMIN_KEY),
        ("content-type", "application/json"),
    ];
    assert_error(
        &app.raw(Method::POST, "/admin/concerts", &headers, big)
            .await,
        413,
        "payload_too_large",
    );
    assert_eq!(app.table_counts().await, before);
}

#[tokio::test]
async fn admin_endpoints_do_not_exist_without_admin_key() {
    let mut env = Env::default();
    env.vars.insert("ADMIN_KEY", String::new());
    let app = TestApp::spawn_with(env).await;
    let headers = [("x-admin-key", "")];
    assert_error(
        &app.post("/admin/concerts", &headers, json!({"title": "x"}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &app.post("/admin/concerts", &[], json!({"title": "x"}))
            .await,
        404,
        "not_found",
    );
}

/// Postgres goes down: requests that need it answer 503 quickly (no hang) and
/// `/ready` says so; when it returns, the same process serves again by itself.
#[tokio::test]
async fn postgres_outage_gives_503_and_recovers() {
    let proxy = Proxy::start(host_port(&pg_server())).await;
    let env = Env {
        pg_server: Some(through(&pg_server(), &proxy)),
        ..Env::default()
    };
    let app = TestApp::spawn_with(env).await;
    let (_, auth) = app.new_user().await;
    assert_eq!(app.charge(&auth, 100).await.0, StatusCode::OK);

    proxy.cut();
    let started = tokio::time::Instant::now();
    assert_error(
        &app.get("/balance", &[("authorization", &auth)]).await,
        503,
        "unavailable",
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 took {:?}",
        started.elapsed()
    );
    let before = app.table_counts().await;
    assert_error(&app.charge(&auth, 100).await, 503, "unavailable");
    assert_error(
        &app.post("/users", &[], json!({})).await,
        503,
        "unavailable",
    );
    let (status, body) = app.get("/ready", &[]).await;
    assert_error(&(status, body.clone()), 503, "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("postgres"),
        "{body}"
    );
    assert_eq!(
        app.get("/health", &[]).await.0,
        StatusCode::OK,
        "liveness does not depend on Postgres"
    );

    proxy.restore();
    let recovered = eventually(Duration::from_secs(15), || async {
        (app.get("/balance", &[("authorization", &auth)]).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert!(
        recovered.is_some(),
        "did not recover after Postgres returned"
    );
    assert_eq!(
        app.table_counts().await,
        before,
        "the failed requests changed nothing"
    );
    assert_eq!(app.balance(&auth).await, 100);
    assert_eq!(app.get("/ready", &[]).await.0, StatusCode::OK);
    app.assert_ledger().await;
}

#[tokio::test]
async fn redis_outage_makes_ready_503_and_recovers() {
    if common::skipped_on_a_cluster() {
        return;
    }
    let proxy = Proxy::start(host_port(&redis_url())).await;
    let env = Env {
        redis_url: Some(through(&redis_url(), &proxy)),
        ..Env::default()
    };
    let app = TestApp::spawn_with(env).await;
    assert_eq!(app.get("/ready", &[]).await.0, StatusCode::OK);

    proxy.cut();
    let started = tokio::time::Instant::now();
    let (status, body) = app.get("/ready", &[]).await;
    assert_error(&(status, body.clone()), 503, "unavailable");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("redis"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "503 took {:?}",
        started.elapsed()
    );
    assert_eq!(app.get("/health", &[]).await.0, StatusCode::OK);

    proxy.restore();
    let recovered = eventually(Duration::from_secs(15), || async {
        (app.get("/ready", &[]).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert!(recovered.is_some(), "did not recover after Redis returned");
}

/// A server that starts while Redis is down still starts, says it is not ready,
/// and becomes ready when Redis appears, loading its scripts then.
#[tokio::test]
async fn starts_without_redis_and_becomes_ready_when_it_appears() {
    if common::skipped_on_a_cluster() {
        return;
    }
    let proxy = Proxy::start(host_port(&redis_url())).await;
    proxy.cut();
    let env = Env {
        redis_url: Some(through(&redis_url(), &proxy)),
        ..Env::default()
    };
    let app = TestApp::spawn_with(env).await;
    assert_error(&app.get("/ready", &[]).await, 503, "unavailable");
    proxy.restore();
    let ready = eventually(Duration::from_secs(15), || async {
        (app.get("/ready", &[]).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    assert!(ready.is_some());
}
