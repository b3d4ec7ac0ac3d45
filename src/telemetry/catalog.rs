//! The metrics catalog: every family `/metrics` exports, with its type, labels
//! and meaning, in one table ([`FAMILIES`]; `docs/metrics.md` is its
//! reader's copy, and a test keeps the two the same).
//!
//! Every family gets `# HELP` and `# TYPE`; every counter whose labels are
//! known in advance exists from the start at zero, so an alert on its rate
//! works before its first event. Per-concert series go once their concert has
//! been idle for [`IDLE_SERIES`]; the catalog's own counters are touched
//! every few seconds so that they never do.

use metrics::{Counter, Unit};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// A series not updated for this long leaves `/metrics` (counters and
/// gauges: a concert's waiting, active, seats left, … after its room idles).
pub const IDLE_SERIES: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family.
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    /// Its labels, in the order `docs/metrics.md` lists them.
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// For a counter with one label whose values are all known: those values,
    /// each a series at zero from the start.
    pub zero: &'static [&'static str],
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        labels,
        help,
        zero: &[],
    }
}

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    zero: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        labels,
        help,
        zero,
    }
}

use Kind::{Gauge, Histogram};

/// The reasons a payment fails, as `payment_failures_total{reason}` counts them
/// (API.md's error codes, and `unavailable` for a dependency).
pub const PAYMENT_FAILURES: &[&str] = &[
    "insufficient_balance",
    "hold_expired",
    "already_paid",
    "seat_unavailable",
    "idempotency_key_in_use",
    "unavailable",
    "internal",
];

pub const FAMILIES: &[Family] = &[
    // HTTP
    counter(
        "http_requests_total",
        &["route", "method", "status"],
        &[],
        "HTTP requests answered, by route template, method and status code",
    ),
    family(
        "http_request_duration_seconds",
        Histogram,
        &["route", "method"],
        "Time from a request's arrival to its answer, by route template and method",
    ),
    family(
        "http_requests_in_flight",
        Gauge,
        &[],
        "Requests being answered now",
    ),
    family(
        "http_connections_open",
        Gauge,
        &[],
        "HTTP connections open now (at most MAX_CONNECTIONS)",
    ),
    counter(
        "http_connections_refused_total",
        &[],
        &[""],
        "Connections refused with a fast 503 because MAX_CONNECTIONS were open",
    ),
    counter(
        "http_connections_timed_out_total",
        &["reason"],
        &["idle", "header"],
        "Connections closed by the server for silence (idle: no request under way; header: a request head that did not arrive whole)",
    ),
    counter(
        "rate_limited_total",
        &["limit"],
        &["users", "join", "poll", "hold", "payment", "charge"],
        "Requests answered 429 rate_limited, by limit (users: per client address; the others per user)",
    ),
    // Waiting rooms, per concert
    family(
        "queue_waiting",
        Gauge,
        &["concert"],
        "WAITING tokens of the concert's room (placed and in pre-queues), at the last admission tick",
    ),
    family(
        "queue_active",
        Gauge,
        &["concert"],
        "Live ACTIVE tokens of the concert's room, at the last admission tick",
    ),
    family(
        "waiting_room_seats_left",
        Gauge,
        &["concert"],
        "Seats neither sold nor held over all the concert's schedules, at the last admission tick",
    ),
    family(
        "waiting_room_state",
        Gauge,
        &["concert", "state"],
        "1 for the room's state (SOLD_OUT, PAUSED, SCHEDULED, OPEN), 0 for the others",
    ),
    counter(
        "queue_joins_total",
        &["concert"],
        &[],
        "Tokens made by joins, by concert",
    ),
    counter(
        "waiting_room_admitted_total",
        &["concert"],
        &[],
        "Tokens admitted (WAITING to ACTIVE), by concert",
    ),
    counter(
        "queue_expired_total",
        &["concert", "reason"],
        &[],
        "Tokens that ended without a purchase, by concert and reason (active_ttl, idle, left)",
    ),
    counter(
        "queue_admissions_total",
        &[],
        &[""],
        "Tokens admitted, all concerts",
    ),
    counter(
        "queue_processed_total",
        &[],
        &[""],
        "Tokens that ended in a purchase (PROCESSED)",
    ),
    family(
        "queue_admission_tick_duration_seconds",
        Histogram,
        &[],
        "Time of one concert's admission tick (one Redis script)",
    ),
    family(
        "admission_leases_held",
        Gauge,
        &[],
        "Admission groups (of 16) whose lease this server holds: it ticks their concerts",
    ),
    counter(
        "waiting_room_restores_total",
        &[],
        &[""],
        "Rooms written into Redis from Postgres (a lost room, a reconcile, a new schedule)",
    ),
    // The audit trail, written behind
    family(
        "queue_audit_buffered",
        Gauge,
        &[],
        "Audit events waiting in the write-behind buffer",
    ),
    counter(
        "queue_audit_written_total",
        &[],
        &[""],
        "Audit events written to reservation_queue",
    ),
    counter(
        "queue_audit_dropped_total",
        &[],
        &[""],
        "Audit events dropped (the buffer was full, or Postgres refused a batch three times)",
    ),
    // Holds and payments
    counter(
        "holds_total",
        &["result"],
        &[
            "ok",
            "seat_unavailable",
            "hold_limit_reached",
            "gate",
            "unavailable",
            "rate_limited",
        ],
        "Hold attempts, by result",
    ),
    counter(
        "holds_released_total",
        &["reason"],
        &["cancelled", "left", "expired"],
        "Holds that ended without a sale, by reason",
    ),
    counter("payments_total", &[], &[""], "Payments that committed"),
    counter("payments_won_total", &[], &[""], "Won paid for seats"),
    counter(
        "payment_failures_total",
        &["reason"],
        PAYMENT_FAILURES,
        "Payments refused or failed, by reason (the answer's error code)",
    ),
    counter(
        "sold_seats_rebuilt_total",
        &[],
        &[""],
        "Seats marked SOLD in Redis from Postgres (after Redis lost them, or a sale Redis missed)",
    ),
    // Money
    counter(
        "balance_charges_total",
        &[],
        &[""],
        "Balance charges that committed",
    ),
    counter(
        "balance_charged_won_total",
        &[],
        &[""],
        "Won charged to balances",
    ),
    counter(
        "idempotent_replays_total",
        &["endpoint"],
        &["POST /balance/charge", "POST /payments"],
        "Answers replayed for a repeated Idempotency-Key, by endpoint",
    ),
    // Dependencies
    family(
        "redis_script_duration_seconds",
        Histogram,
        &["script"],
        "Time of one Redis script call (the round trip), by script",
    ),
    counter(
        "redis_script_errors_total",
        &["script"],
        &[],
        "Redis script calls that failed (Redis down, a timeout, an error reply), by script",
    ),
    family(
        "postgres_transaction_duration_seconds",
        Histogram,
        &["op"],
        "Time of one Postgres transaction, by operation (payment, charge, room, audit)",
    ),
    counter(
        "postgres_timeouts_total",
        &[],
        &[""],
        "Postgres work cut off by the client-side deadline (3 s for requests): each a 503",
    ),
    family(
        "postgres_pool_connections",
        Gauge,
        &["state"],
        "Postgres connections of the pool, by state (in_use, idle)",
    ),
    family(
        "postgres_pool_max_connections",
        Gauge,
        &[],
        "The pool's size: when in_use reaches it, requests wait for a connection",
    ),
    // The process
    counter(
        "process_cpu_seconds_total",
        &[],
        &[],
        "CPU time the process used (user and system)",
    ),
    family(
        "process_resident_memory_bytes",
        Gauge,
        &[],
        "Resident memory of the process",
    ),
    family(
        "process_open_fds",
        Gauge,
        &[],
        "Open file descriptors (sockets included)",
    ),
    family(
        "process_max_fds",
        Gauge,
        &[],
        "The process's limit of open file descriptors",
    ),
    family(
        "process_start_time_seconds",
        Gauge,
        &[],
        "When the process started, in seconds since the Unix epoch",
    ),
];

/// Counters touched every few seconds so that they never leave `/metrics`.
static KEPT: LazyLock<Mutex<Vec<Counter>>> = LazyLock::new(Default::default);

/// Keeps `c` in `/metrics` for as long as the process runs.
pub fn keep(c: Counter) {
    if let Ok(mut kept) = KEPT.lock() {
        kept.push(c);
    }
}

/// Gives every family its HELP (and unit) and puts the known counters at 0.
pub fn describe() {
    for f in FAMILIES {
        let unit = f
            .name
            .ends_with("_seconds")
            .then_some(Unit::Seconds)
            .or(f.name.ends_with("_bytes").then_some(Unit::Bytes));
        match (f.kind, unit) {
            (Kind::Counter, _) => metrics::describe_counter!(f.name, f.help),
            (Kind::Gauge, Some(u)) => metrics::describe_gauge!(f.name, u, f.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(f.name, f.help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(f.name, u, f.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(f.name, f.help),
        }
        if f.kind != Kind::Counter {
            continue;
        }
        for value in f.zero {
            let c = match f.labels.first() {
                None => metrics::counter!(f.name),
                Some(label) => metrics::counter!(f.name, *label => *value),
            };
            c.increment(0);
            keep(c);
        }
    }
}

/// Marks every kept counter as alive (see [`IDLE_SERIES`]).
pub fn touch() {
    if let Ok(kept) = KEPT.lock() {
        for c in kept.iter() {
            c.increment(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_and_its_document_list_the_same_families() {
        let doc = include_str!("../../docs/metrics.md");
        for f in FAMILIES {
            let kind = match f.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let labels = if f.labels.is_empty() {
                "–".to_owned()
            } else {
                f.labels.join(", ")
            };
            let row = format!("| `{}` | {kind} | {labels} |", f.name);
            assert!(doc.contains(&row), "docs/metrics.md lacks: {row}");
        }
        let rows = doc.lines().filter(|l| l.starts_with("| `")).count();
        assert_eq!(rows, FAMILIES.len(), "docs/metrics.md has other rows");
    }

    #[test]
    fn counters_are_named_total_and_zeroed_labels_fit() {
        for f in FAMILIES {
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            assert!(f.zero.is_empty() || f.kind == Kind::Counter);
            assert!(f.zero.len() <= 1 || f.labels.len() == 1, "{}", f.name);
        }
    }
}
