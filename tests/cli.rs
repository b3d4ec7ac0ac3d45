//! The binary itself: bad configuration stops it with one line naming the
//! variable; `migrate` creates and migrates a database.

mod common;

use std::process::Command;

fn boxoffice(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
    cmd.args(args).env("RUST_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

#[test]
fn a_bad_variable_stops_the_process_with_one_clear_line() {
    for (var, value) in [
        ("ADMISSION_RATE", "fast"),
        ("HTTP_ADDR", "nowhere"),
        ("MAX_ACTIVE", "-1"),
    ] {
        let out = boxoffice(&["serve"], &[(var, value)]);
        assert_eq!(out.status.code(), Some(2), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(var) && lines[0].contains(value),
            "{stderr}"
        );
    }
}

#[test]
fn unknown_commands_are_refused() {
    let out = boxoffice(&["dance"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}

#[tokio::test]
async fn migrate_creates_the_database_and_is_repeatable() {
    let name = common::unique_name("cli");
    let url = format!("{}/{name}", common::pg_server());
    for _ in 0..2 {
        let out = boxoffice(&["migrate"], &[("DATABASE_URL", &url)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pg = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'
            AND table_name IN ('users','balance','balance_history','reservation_queue','concert',
                               'concert_schedule','seat','reservation','payment')",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(tables, 9);
    // The seed's own column names, for outside tools that read the database.
    let columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'
            AND (table_name, column_name) IN (('balance', 'balance'), ('payment', 'price'),
                                              ('reservation_queue', 'queue_no'))",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(columns, 3);
    pg.close().await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&format!(
        "{}/postgres",
        common::pg_server()
    ))
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}
