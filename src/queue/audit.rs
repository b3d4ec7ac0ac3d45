//! The queue's audit trail in Postgres (`reservation_queue`), written behind.
//!
//! Requests and the admission tick only put an event in a bounded buffer, which
//! never blocks: if Postgres is slow and the buffer fills, events are dropped and
//! counted (`queue_audit_dropped_total`), the sale goes on. A background task
//! writes the buffer in batches of up to [`BATCH`] rows, one statement each, and
//! drains it on graceful shutdown. Statuses only move forward (WAITING < ACTIVE <
//! EXPIRED < PROCESSED), so events that arrive out of order cannot undo each other.

use super::QueueStatus;
use crate::store::postgres::Deadline;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// Events held in memory at most.
pub const BUFFER: usize = 100_000;
/// Rows per statement at most.
pub const BATCH: usize = 2_000;
/// How long an event may wait for its batch to fill.
const LINGER: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub token: Uuid,
    pub user_id: i64,
    pub concert_id: i64,
    pub status: QueueStatus,
    /// The token's place in the concert's arrival order (known at the join).
    pub queue_no: Option<i64>,
    pub joined_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl AuditEvent {
    /// A token that ended (left, expired, processed) now.
    pub fn ended(token: Uuid, user_id: i64, concert_id: i64, status: QueueStatus) -> Self {
        AuditEvent {
            token,
            user_id,
            concert_id,
            status,
            queue_no: None,
            joined_at: Utc::now(),
            activated_at: None,
            expires_at: None,
        }
    }
}

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<AuditEvent>,
    closing: Arc<watch::Sender<bool>>,
}

impl Audit {
    /// Starts the writer task. It ends after [`Audit::close`], once what the
    /// buffer holds is written.
    pub fn start(pg: PgPool) -> (Audit, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(BUFFER);
        let (closing, closed) = watch::channel(false);
        let writer = tokio::spawn(write_behind(pg, rx, closed));
        (
            Audit {
                tx,
                closing: Arc::new(closing),
            },
            writer,
        )
    }

    /// Asks the writer to write what is buffered and stop (graceful shutdown).
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// Events waiting to be written.
    pub fn buffered(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn record(&self, event: AuditEvent) {
        if self.tx.try_send(event).is_err() {
            metrics::counter!("queue_audit_dropped_total").increment(1);
        }
    }
}

async fn write_behind(
    pg: PgPool,
    mut rx: mpsc::Receiver<AuditEvent>,
    mut closed: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            event = rx.recv() => event,
            _ = closed.wait_for(|c| *c) => None,
        };
        let Some(first) = first else {
            // Closing: write whatever is still buffered, then stop.
            while let Ok(event) = rx.try_recv() {
                batch.push(event);
                if batch.len() == BATCH {
                    write_with_retry(&pg, &batch).await;
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                write_with_retry(&pg, &batch).await;
            }
            return;
        };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(event)) => batch.push(event),
                Ok(None) | Err(_) => break,
            }
        }
        write_with_retry(&pg, &batch).await;
        batch.clear();
    }
}

/// How long one batch's upsert may take.
const AUDIT_DEADLINE: Duration = Duration::from_secs(10);

async fn write_with_retry(pg: &PgPool, batch: &[AuditEvent]) {
    for attempt in 1..=3 {
        let started = std::time::Instant::now();
        // A Postgres that stopped answering costs a batch its attempts, not
        // the writer for good (the buffer behind it would fill and drop).
        let written = write(pg, batch).deadline_of(AUDIT_DEADLINE).await;
        metrics::histogram!("postgres_transaction_duration_seconds", "op" => "audit")
            .record(started.elapsed().as_secs_f64());
        match written {
            Ok(()) => {
                metrics::counter!("queue_audit_written_total").increment(batch.len() as u64);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, rows = batch.len(), "queue audit write failed");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
        }
    }
    metrics::counter!("queue_audit_dropped_total").increment(batch.len() as u64);
}

/// One upsert for the whole batch. Events of one token are merged first, as
/// one statement may not touch a row twice.
async fn write(pg: &PgPool, batch: &[AuditEvent]) -> Result<(), sqlx::Error> {
    let mut merged: HashMap<Uuid, AuditEvent> = HashMap::with_capacity(batch.len());
    for e in batch {
        merged
            .entry(e.token)
            .and_modify(|m| {
                m.status = m.status.max(e.status);
                m.queue_no = m.queue_no.or(e.queue_no);
                m.joined_at = m.joined_at.min(e.joined_at);
                m.activated_at = m.activated_at.or(e.activated_at);
                m.expires_at = m.expires_at.or(e.expires_at);
            })
            .or_insert_with(|| e.clone());
    }
    // Rows in token order: concurrent batches from several servers then lock
    // shared rows in the same order and cannot deadlock each other.
    let mut rows: Vec<&AuditEvent> = merged.values().collect();
    rows.sort_unstable_by_key(|e| e.token);
    sqlx::query(
        "INSERT INTO reservation_queue (token, user_id, concert_id, status, activated_at, expires_at,
                                        created_at, queue_no)
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::queue_token_status[],
                              $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::bigint[])
         ON CONFLICT (token) DO UPDATE SET
             status = GREATEST(reservation_queue.status, EXCLUDED.status),
             queue_no = COALESCE(reservation_queue.queue_no, EXCLUDED.queue_no),
             activated_at = COALESCE(reservation_queue.activated_at, EXCLUDED.activated_at),
             expires_at = COALESCE(EXCLUDED.expires_at, reservation_queue.expires_at),
             created_at = LEAST(reservation_queue.created_at, EXCLUDED.created_at),
             updated_at = now()",
    )
    .bind(rows.iter().map(|e| e.token).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.user_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.concert_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.status).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.activated_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.expires_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.joined_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.queue_no).collect::<Vec<_>>())
    .execute(pg)
    .await?;
    Ok(())
}
