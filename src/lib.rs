//! boxoffice: a Redis-centric waiting-queue and seat-booking engine for
//! traffic-spike ticket sales.
//!
//! One binary in front of Redis (everything hot: queues, holds, the live seat
//! map) and Postgres (everything durable: money, the catalog, confirmed sales).
//! [`App`] wires the two stores, the HTTP routes and the background tasks; `main`
//! and the integration tests both start the service through it.

pub mod auth;
pub mod booking;
pub mod catalog;
pub mod config;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod limits;
pub mod money;
pub mod queue;
pub mod seed;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod users;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::store::{Keys, Redis};
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// How long `serve` waits for Postgres at start before giving up.
const POSTGRES_START_PATIENCE: Duration = Duration::from_secs(30);
/// At shutdown: how long requests in flight may still run once the server
/// stops accepting (past it, their connections are closed), and then how long
/// work that must finish (a payment's Redis step) may take.
pub const SHUTDOWN_REQUESTS_GRACE: Duration = Duration::from_secs(20);
pub const SHUTDOWN_WORK_GRACE: Duration = Duration::from_secs(15);

/// The running service: its stores, caches and settings.
///
/// Domain operations (what a handler calls) take `&AppState`, and reach for
/// the parts they need. The one exception is a Postgres-only operation that
/// must also run without a service (the catalog writes of `seed-demo`) or
/// inside a caller's transaction: it takes a Postgres executor.
pub struct AppState {
    pub config: Config,
    pub pg: PgPool,
    pub redis: Redis,
    pub keys: Keys,
    pub tokens: TokenKeys,
    /// Concerts and schedule lists, kept for a second.
    pub catalog: catalog::CatalogCache,
    /// Each schedule's seats, kept while the process lives.
    pub seats: catalog::SeatCache,
    /// Room summaries of the public concert page, kept for a second.
    pub rooms: queue::room::Summaries,
    pub audit: queue::audit::Audit,
    pub booking: booking::Booking,
    /// This process's id: its name on the roll of admitting servers and as
    /// the holder of admission leases.
    pub instance_id: String,
    /// Work a graceful shutdown waits for.
    pub inflight: Arc<shutdown::Inflight>,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Postgres(#[from] store::postgres::SetupError),
    #[error("REDIS_URL is not usable: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A ready-to-serve boxoffice: stores connected, database migrated.
pub struct App {
    state: Arc<AppState>,
    audit_writer: tokio::task::JoinHandle<()>,
    /// The SOLD rebuild could not run at start: the background task does it.
    rebuild_pending: bool,
}

impl App {
    /// Prepares the database (creating it and migrating if needed; waits for
    /// Postgres up to 30 s), connects to Redis (without waiting for it) and loads
    /// the Lua scripts.
    pub async fn build(config: Config) -> Result<App, StartError> {
        if config.auth_secret_is_default {
            tracing::warn!(
                "AUTH_SECRET is unset: using the built-in development secret. Anyone can mint \
                 access tokens for this server. Set AUTH_SECRET before real use."
            );
        }
        store::postgres::prepare_with_retry(&config.database_url, POSTGRES_START_PATIENCE).await?;
        let pg = store::postgres::pool(&config.database_url)?;
        telemetry::metrics();
        store::scripts::zero_metrics();
        let redis = Redis::connect(&config.redis_url)?;
        redis.load_scripts(Duration::from_secs(2)).await;
        let (audit, audit_writer) = queue::audit::Audit::start(pg.clone());
        let state = Arc::new(AppState {
            rooms: Default::default(),
            inflight: Default::default(),
            booking: booking::Booking::default(),
            audit,
            instance_id: uuid::Uuid::new_v4().to_string(),
            keys: Keys::new(config.redis_prefix.clone()),
            tokens: TokenKeys::new(&config.auth_secret),
            catalog: catalog::CatalogCache::default(),
            seats: catalog::SeatCache::default(),
            config,
            pg,
            redis,
        });
        // Sold seats are in Redis before the first request (if Redis is up).
        let rebuild_pending = booking::recovery::at_start(&state, Duration::from_secs(10)).await;
        match tokio::time::timeout(
            Duration::from_secs(10),
            queue::room::restore_changed(&state),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "waiting rooms not restored at start; they are as they are used")
            }
            Err(_) => tracing::warn!(
                "waiting rooms not restored at start in time; they are as they are used"
            ),
        }
        Ok(App {
            audit_writer,
            state,
            rebuild_pending,
        })
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Binds `HTTP_ADDR` and serves until `shutdown` resolves.
    pub async fn serve_on_config_addr(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let addr = self.state.config.http_addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        tracing::info!(%addr, "boxoffice listening");
        self.serve(listener, shutdown).await;
        Ok(())
    }

    /// Serves on `listener` with the background tasks running, until `shutdown`
    /// resolves. Then, in order: stop accepting and let requests in flight end
    /// (bounded by [`SHUTDOWN_REQUESTS_GRACE`]); let work that must finish end
    /// (payments between commit and Redis, [`SHUTDOWN_WORK_GRACE`]); stop the
    /// admission worker, which hands its lease back so another server admits
    /// at its next tick; stop the other tasks; write the buffered audit trail.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let mut tasks = JoinSet::new();
        tasks.spawn(metrics_upkeep(self.state.clone()));
        tasks.spawn(idempotency_sweeper(self.state.pg.clone()));
        let (stop_admission, admission_stop) = tokio::sync::watch::channel(false);
        let admission = tokio::spawn(queue::admission::run(
            self.state.clone(),
            admission_stop.clone(),
        ));
        tasks.spawn(booking::recovery::run(
            self.state.clone(),
            admission_stop,
            self.rebuild_pending,
        ));
        let (signalled, mut on_signal) = tokio::sync::watch::channel(false);
        let served = http::server::serve(
            listener,
            self.router(),
            self.state.config.http.clone(),
            async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections; finishing requests in flight");
                let _ = signalled.send(true);
            },
        );
        let grace_over = async move {
            let _ = on_signal.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_REQUESTS_GRACE).await;
        };
        tokio::select! {
            () = served => {}
            () = grace_over => {
                tracing::warn!(grace = ?SHUTDOWN_REQUESTS_GRACE, "requests still running at the end of the grace; closing them");
            }
        }
        let running = self.state.inflight.running();
        if running > 0 {
            tracing::info!(running, "waiting for payments in flight to finish");
        }
        if !self.state.inflight.wait_idle(SHUTDOWN_WORK_GRACE).await {
            tracing::warn!(
                running = self.state.inflight.running(),
                "work still running at the end of the grace"
            );
        }
        // Let the admission worker finish its tick, so what it did is audited.
        let _ = stop_admission.send(true);
        if tokio::time::timeout(Duration::from_secs(5), admission)
            .await
            .is_err()
        {
            tracing::warn!("admission worker did not stop in time");
        }
        tasks.shutdown().await;
        // The queue's audit trail is written behind: write what is buffered.
        self.state.audit.close();
        if tokio::time::timeout(Duration::from_secs(10), self.audit_writer)
            .await
            .is_err()
        {
            tracing::warn!("queue audit not fully written at shutdown");
        }
        self.state.redis.quit().await;
        self.state.pg.close().await;
    }
}

/// Every few seconds: the exporter's upkeep (histograms' memory, idle
/// series), the catalog's counters kept alive, and the sampled gauges.
async fn metrics_upkeep(app: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        telemetry::catalog::touch();
        telemetry::process::sample_process();
        telemetry::process::sample_pool(&app.pg);
        metrics::gauge!("queue_audit_buffered").set(app.audit.buffered() as f64);
        telemetry::metrics().run_upkeep();
    }
}

/// Deletes stored idempotent answers past their retention, hourly.
async fn idempotency_sweeper(pg: PgPool) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match idempotency::sweep(&pg).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "swept old idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "idempotency sweep failed; will retry"),
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
