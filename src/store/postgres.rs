//! The Postgres pool, database creation and migrations.
//!
//! Postgres holds what must survive anything: money, the catalog and confirmed
//! sales. Sixteen pooled connections served the same throughput as fifty here with
//! a third of the latency (STACK.md); a short acquire timeout turns an outage into
//! a quick `503` instead of a queue of stuck requests.

use crate::error::Error;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

const POOL_SIZE: u32 = 16;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a request's Postgres work may take, measured here: a Postgres that
/// stopped answering (a frozen server keeps its sockets open, so nothing
/// fails by itself) is a `503` after this, not a request hung until the
/// request timeout. Statements also carry it server side (`statement_timeout`).
pub const DEADLINE: Duration = Duration::from_secs(3);
/// The deadline of work that is large by design: an operator's 100 000-seat
/// schedule, a full SOLD rebuild, an audit batch.
pub const BULK_DEADLINE: Duration = Duration::from_secs(60);

/// A client-side deadline on Postgres work: `.deadline()` on any future of a
/// query, a transaction or a function made of them.
pub trait Deadline<T, E>: Future<Output = std::result::Result<T, E>> + Sized
where
    Error: From<E>,
{
    /// Within [`DEADLINE`], or `503 unavailable`.
    fn deadline(self) -> impl Future<Output = crate::error::Result<T>> {
        self.deadline_of(DEADLINE)
    }

    /// Within `limit`, or `503 unavailable`.
    fn deadline_of(self, limit: Duration) -> impl Future<Output = crate::error::Result<T>> {
        async move {
            match tokio::time::timeout(limit, self).await {
                Ok(done) => done.map_err(Error::from),
                Err(_) => {
                    metrics::counter!("postgres_timeouts_total").increment(1);
                    Err(Error::Unavailable(format!(
                        "postgres did not answer within {limit:?}"
                    )))
                }
            }
        }
    }
}

impl<F, T, E> Deadline<T, E> for F
where
    F: Future<Output = std::result::Result<T, E>>,
    Error: From<E>,
{
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why the database could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("DATABASE_URL is not a usable Postgres URL: {0}")]
    Url(sqlx::Error),
    #[error("Postgres did not answer: {0}")]
    Connect(sqlx::Error),
    #[error("could not create the database: {0}")]
    Create(sqlx::Error),
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Builds the pool. Connections are opened lazily, so this never blocks on Postgres.
pub fn pool(url: &str) -> Result<PgPool, SetupError> {
    let options = connect_options(url)?;
    Ok(PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .connect_lazy_with(options))
}

fn connect_options(url: &str) -> Result<PgConnectOptions, SetupError> {
    Ok(PgConnectOptions::from_str(url)
        .map_err(SetupError::Url)?
        .application_name("boxoffice")
        // The server gives up too, so a statement cut off here does not run on.
        .options([("statement_timeout", "60s")])
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// Creates the database named in `url` if it does not exist yet, then applies
/// pending migrations. Safe to run from several processes at once: `CREATE
/// DATABASE` races are tolerated and sqlx takes an advisory lock to migrate.
pub async fn prepare(url: &str) -> Result<(), SetupError> {
    let options = connect_options(url)?;
    let mut conn = match options.connect().await {
        Ok(conn) => conn,
        Err(e) if is_missing_database(&e) => {
            create_database(&options).await?;
            options.connect().await.map_err(SetupError::Connect)?
        }
        Err(e) => return Err(SetupError::Connect(e)),
    };
    MIGRATOR.run(&mut conn).await?;
    conn.close().await.ok();
    Ok(())
}

/// Like [`prepare`], retried while Postgres is not answering, up to `patience`.
pub async fn prepare_with_retry(url: &str, patience: Duration) -> Result<(), SetupError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match prepare(url).await {
            Err(SetupError::Connect(e)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "waiting for Postgres");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

fn is_missing_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

async fn create_database(options: &PgConnectOptions) -> Result<(), SetupError> {
    let name = options.get_database().unwrap_or("boxoffice").to_owned();
    let mut admin: PgConnection = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(SetupError::Connect)?;
    let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
    {
        Ok(_) => tracing::info!(database = %name, "created database"),
        // 42P04: another process created it first.
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
        Err(e) => return Err(SetupError::Create(e)),
    }
    admin.close().await.ok();
    Ok(())
}
