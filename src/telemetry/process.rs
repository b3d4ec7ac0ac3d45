//! Gauges read every few seconds rather than counted as things happen: the
//! process (CPU, memory, file descriptors, from `/proc/self` on Linux), the
//! Postgres pool's saturation, the audit buffer's depth.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Clock ticks per second of `/proc/self/stat`'s CPU times: 100 on every
/// Linux this runs on (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_BYTES: f64 = 4096.0;

static STARTED: LazyLock<f64> = LazyLock::new(|| {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
});

/// Reads what the process costs now. Quietly does nothing where `/proc` is not.
pub fn sample_process() {
    metrics::gauge!("process_start_time_seconds").set(*STARTED);
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) ends with ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
            metrics::counter!("process_cpu_seconds_total")
                .absolute(((user + system) / TICKS_PER_SECOND) as u64);
        }
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(pages) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<f64>().ok())
    {
        metrics::gauge!("process_resident_memory_bytes").set(pages * PAGE_BYTES);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(max) = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<f64>().ok())
    {
        metrics::gauge!("process_max_fds").set(max);
    }
}

/// The Postgres pool: connections in use and idle, and its size.
pub fn sample_pool(pg: &sqlx::PgPool) {
    let size = f64::from(pg.size());
    let idle = pg.num_idle() as f64;
    metrics::gauge!("postgres_pool_connections", "state" => "in_use").set(size - idle);
    metrics::gauge!("postgres_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("postgres_pool_max_connections")
        .set(f64::from(pg.options().get_max_connections()));
}
