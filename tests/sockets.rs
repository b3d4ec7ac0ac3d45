//! Connections as a hostile or careless client holds them (issue 17): silent,
//! trickling, never finishing a body, too many, or not HTTP at all. Each
//! test starts its own server with short limits, and talks to it over raw
//! sockets.

mod common;

use common::raw::{Answer, closed_within, connect, read_answer, send};
use common::{Env, TestApp};
use std::time::Duration;

/// A server whose HTTP limits are `vars`.
async fn app_with(vars: &[(&'static str, &str)]) -> TestApp {
    let mut env = Env::default();
    for (name, value) in vars {
        env.vars.insert(name, value.to_string());
    }
    TestApp::spawn_with(env).await
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n";
/// Long enough for any answer here, short enough to fail a test quickly.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = app_with(&[
        ("HTTP_IDLE_TIMEOUT_SECS", "1"),
        ("HTTP_HEADER_TIMEOUT_SECS", "30"),
    ])
    .await;

    // A socket that never says a word.
    let mut silent = connect(&app.base).await;
    let closed = closed_within(&mut silent, PATIENCE).await;
    assert!(
        closed.is_some(),
        "a silent socket was still open after {PATIENCE:?}"
    );
    assert!(closed.unwrap() >= Duration::from_millis(900), "{closed:?}");

    // A kept-alive socket, after its answer.
    let mut kept = connect(&app.base).await;
    send(&mut kept, HEALTH).await;
    let answer = read_answer(&mut kept, PATIENCE).await.expect("an answer");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), None, "{answer:?}");
    let closed = closed_within(&mut kept, PATIENCE).await;
    assert!(
        closed.is_some(),
        "a kept-alive socket was still open after {PATIENCE:?}"
    );

    let metrics = app.metrics_text().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("http_connections_timed_out_total{reason=\"idle\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_request_head_that_trickles_in_is_closed_after_the_header_timeout() {
    let app = app_with(&[
        ("HTTP_HEADER_TIMEOUT_SECS", "1"),
        ("HTTP_IDLE_TIMEOUT_SECS", "30"),
    ])
    .await;
    let mut slowloris = connect(&app.base).await;
    send(&mut slowloris, b"GET /health HTTP/1.1\r\nhost: x\r\n").await;
    let trickle = async {
        // A header every 200 ms: never silent for long, never done.
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let line = format!("x-slow-{i}: y\r\n");
            if tokio::io::AsyncWriteExt::write_all(&mut slowloris, line.as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let cut = tokio::time::timeout(PATIENCE, trickle).await;
    assert!(
        cut.is_ok(),
        "a trickling head was still accepted after {PATIENCE:?}"
    );

    // A socket that sends a head at a decent pace is served as ever.
    let mut fine = connect(&app.base).await;
    send(&mut fine, HEALTH).await;
    assert_eq!(read_answer(&mut fine, PATIENCE).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_body_that_never_completes_is_a_408_with_the_envelope() {
    let app = app_with(&[("HTTP_BODY_TIMEOUT_SECS", "1")]).await;
    let mut socket = connect(&app.base).await;
    send(
        &mut socket,
        b"POST /users HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n{}",
    )
    .await;
    let answer = read_answer(&mut socket, PATIENCE).await.expect("an answer");
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.error_code(), "request_timeout");
    // The rest of the body may still come: the connection cannot be reused.
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(closed_within(&mut socket, PATIENCE).await.is_some());

    // Counted as the client's error, not the server's.
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("status=\"408\""), "{metrics}");
    assert!(!metrics.contains("status=\"503\""), "{metrics}");
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_is_refused_at_once() {
    let app = app_with(&[("MAX_CONNECTIONS", "20")]).await;
    // Twenty clients hold a connection each (served, then kept alive).
    let mut hogs = Vec::new();
    for _ in 0..20 {
        let mut hog = connect(&app.base).await;
        send(&mut hog, HEALTH).await;
        assert_eq!(read_answer(&mut hog, PATIENCE).await.unwrap().status, 200);
        hogs.push(hog);
    }

    let mut late = connect(&app.base).await;
    send(&mut late, HEALTH).await;
    let refused: Answer = read_answer(&mut late, PATIENCE)
        .await
        .expect("an answer, not a hang");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.error_code(), "unavailable");
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(refused.header("retry-after").is_some(), "{refused:?}");

    // Once the hogs are gone, a fresh client is served again.
    drop(hogs);
    let mut served = None;
    for _ in 0..50 {
        let mut fresh = connect(&app.base).await;
        send(&mut fresh, HEALTH).await;
        if let Some(answer) = read_answer(&mut fresh, PATIENCE).await
            && answer.status == 200
        {
            served = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        served.is_some(),
        "GET /health was refused after the hogs left"
    );
    assert!(
        app.metrics_text()
            .await
            .lines()
            .any(|l| l.starts_with("http_connections_refused_total") && !l.ends_with(" 0"))
    );
}

#[tokio::test]
async fn requests_the_http_layer_cannot_parse_answer_with_the_envelope() {
    let app = TestApp::spawn().await;
    let many_headers: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases = [
        (
            "a control byte in a header",
            b"GET /health HTTP/1.1\r\nhost: x\r\nx-bad: a\x01b\r\n\r\n".to_vec(),
            400,
            "invalid_request",
        ),
        (
            "101 headers",
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "a 500 KB cookie",
            format!(
                "GET /health HTTP/1.1\r\nhost: x\r\ncookie: a={}\r\n\r\n",
                "c".repeat(500 * 1024)
            )
            .into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "a 70 KB URI",
            format!(
                "GET /health?q={} HTTP/1.1\r\nhost: x\r\n\r\n",
                "u".repeat(70 * 1024)
            )
            .into_bytes(),
            414,
            "uri_too_long",
        ),
    ];
    for (what, request, status, code) in cases {
        let mut socket = connect(&app.base).await;
        let (mut reading, mut writing) = socket.split();
        let (answer, ()) = tokio::join!(
            async {
                // The server answers before it has read a large request whole.
                let mut bytes = Vec::new();
                let _ = tokio::time::timeout(
                    PATIENCE,
                    tokio::io::AsyncReadExt::read_to_end(&mut reading, &mut bytes),
                )
                .await;
                bytes
            },
            async {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut writing, &request).await;
            }
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {text}"
        );
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let body: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{what}: not the envelope ({e}): {text}"));
        assert_eq!(body["error"]["code"], code, "{what}");
        assert!(body["error"]["message"].is_string(), "{what}");
    }
}

#[tokio::test]
async fn an_answer_before_the_body_is_read_says_connection_close() {
    let app = TestApp::spawn().await;

    // Requests whose bodies are read keep their connection.
    let mut kept = connect(&app.base).await;
    for _ in 0..3 {
        send(
            &mut kept,
            b"POST /users HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
        )
        .await;
        let answer = read_answer(&mut kept, PATIENCE).await.expect("an answer");
        assert_eq!(answer.status, 201, "{answer:?}");
        assert_eq!(answer.header("connection"), None, "{answer:?}");
    }

    // A 401 comes before the body is read; the body arrives after the answer.
    let body = br#"{"amount": 1000}"#;
    let mut socket = connect(&app.base).await;
    let head = format!(
        "POST /balance/charge HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    send(&mut socket, head.as_bytes()).await;
    let answer = read_answer(&mut socket, PATIENCE).await.expect("an answer");
    assert_eq!(answer.status, 401, "{answer:?}");
    assert_eq!(answer.error_code(), "unauthorized");
    assert_eq!(
        answer.header("connection"),
        Some("close"),
        "the server drops this connection, so it must say so: {answer:?}"
    );
    send(&mut socket, body).await;
    assert!(closed_within(&mut socket, PATIENCE).await.is_some());
}
