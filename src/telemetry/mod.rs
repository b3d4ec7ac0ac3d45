//! Logs (tracing) and metrics (Prometheus text at `/metrics`), set up once.
//!
//! Every request gets an id (`X-Request-Id`: the client's own when it sent a
//! usable one, else a new one), echoed on the answer and carried by every log
//! line about the request, and one line when it ends: method, route template,
//! status and latency. It is counted and timed per route template
//! (`/concerts/{concert_id}`, never the raw path: a scan of ids cannot explode
//! the label set, and a queue token in a path never reaches a log).
//!
//! Log lines go to stderr through a writer thread, so a request never waits on
//! the terminal or a log shipper; `LOG_FORMAT=json` writes one JSON object per
//! line. Crates that could print request data at debug level (the Redis and
//! Postgres clients: command arguments carry tokens) are held at `info` and
//! `warn` whatever `RUST_LOG` asks.

pub mod catalog;
pub mod process;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};
use std::time::Instant;
use tracing::Instrument;

/// Latency buckets in seconds: fine below 10 ms, where the hot paths must stay.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// How log lines are written (`LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log shippers.
    Json,
    /// For people.
    Pretty,
}

impl LogFormat {
    /// API.md's default: `pretty` on a terminal, else `json`.
    pub fn default_for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        }
    }
}

/// Directives added after `RUST_LOG`'s: the clients whose debug output holds
/// command arguments (tokens) stay quiet.
const HELD_DOWN: &[&str] = &["fred=info", "sqlx=warn", "hyper=info", "h2=info"];

/// Logs to stderr in `format`, filtered by `RUST_LOG` (default `info`). Safe to
/// call twice.
pub fn init_tracing(format: LogFormat) {
    let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut filter = tracing_subscriber::EnvFilter::try_new(&wanted)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for directive in HELD_DOWN {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LineWriter::new);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        // Colours only for a person at a terminal, never in files or log shippers.
        LogFormat::Pretty => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// What the writer thread is handed: a line, or a request to write
/// everything so far and say so (at exit).
enum ToWriter {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// Lines held at most while stderr is slow; past that a line is dropped rather
/// than make a request wait.
const LINES_BUFFERED: usize = 65_536;

fn writer() -> &'static mpsc::SyncSender<ToWriter> {
    static WRITER: OnceLock<mpsc::SyncSender<ToWriter>> = OnceLock::new();
    WRITER.get_or_init(|| {
        let (tx, rx) = mpsc::sync_channel::<ToWriter>(LINES_BUFFERED);
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                // stderr is locked per burst, never held: `eprintln!` from
                // anywhere else (main's last words) must not wait on this thread.
                let mut burst = Vec::with_capacity(64 * 1024);
                let write = |burst: &mut Vec<u8>| {
                    if !burst.is_empty() {
                        let _ = std::io::stderr().lock().write_all(burst);
                        burst.clear();
                    }
                };
                let handle = |msg: ToWriter, burst: &mut Vec<u8>| match msg {
                    ToWriter::Line(line) => burst.extend_from_slice(&line),
                    ToWriter::Flush(done) => {
                        write(burst);
                        let _ = done.send(());
                    }
                };
                while let Ok(msg) = rx.recv() {
                    handle(msg, &mut burst);
                    // Write what is queued in one syscall per burst.
                    while let Ok(msg) = rx.try_recv() {
                        handle(msg, &mut burst);
                        if burst.len() >= 64 * 1024 {
                            write(&mut burst);
                        }
                    }
                    write(&mut burst);
                }
            });
        if spawned.is_err() {
            eprintln!("boxoffice: no log writer thread; log lines are lost");
        }
        tx
    })
}

/// Waits (up to a second) until every log line so far is written: at exit.
pub fn flush_logs() {
    let (done, flushed) = mpsc::channel();
    if writer().send(ToWriter::Flush(done)).is_ok() {
        let _ = flushed.recv_timeout(std::time::Duration::from_secs(1));
    }
}

/// One line's bytes, handed to the writer thread when the line is done.
pub struct LineWriter(Vec<u8>);

impl LineWriter {
    fn new() -> Self {
        LineWriter(Vec::with_capacity(256))
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = writer().try_send(ToWriter::Line(std::mem::take(&mut self.0)));
        }
    }
}

/// The process-wide Prometheus recorder. Installed on first use, so several apps
/// in one process (the integration tests) share it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), LATENCY_BUCKETS)
            .expect("latency buckets are a non-empty constant")
            // A concert's series go once it idles; histograms (by route and
            // script, a bounded set) stay.
            .idle_timeout(
                MetricKindMask::COUNTER | MetricKindMask::GAUGE,
                Some(catalog::IDLE_SERIES),
            )
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    catalog::describe();
}

/// The longest client-sent request id kept (API.md: 1 to 128 visible ASCII).
const MAX_REQUEST_ID: usize = 128;

/// The request's id: the client's own `X-Request-Id` when it is 1 to 128
/// visible ASCII characters, else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-request-id")
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
        })
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        })
}

/// A route's metric handles, made once: a request records without building
/// a label or allocating.
#[derive(Default)]
struct RouteMetrics {
    answered: Mutex<Vec<(Method, u16, Counter)>>,
    durations: Mutex<Vec<(Method, Histogram)>>,
}

impl RouteMetrics {
    fn of(route: &str) -> Arc<RouteMetrics> {
        static ROUTES: LazyLock<RwLock<HashMap<String, Arc<RouteMetrics>>>> =
            LazyLock::new(Default::default);
        if let Some(m) = ROUTES.read().ok().and_then(|r| r.get(route).cloned()) {
            return m;
        }
        let mut routes = match ROUTES.write() {
            Ok(routes) => routes,
            Err(_) => return Arc::default(),
        };
        routes.entry(route.to_owned()).or_default().clone()
    }

    fn record(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        if let Ok(mut answered) = self.answered.lock() {
            match answered
                .iter()
                .find(|(m, s, _)| m == method && *s == status)
            {
                Some((_, _, c)) => c.increment(1),
                None => {
                    let c = metrics::counter!("http_requests_total", "route" => route.to_owned(),
                        "method" => method.as_str().to_owned(), "status" => status.to_string());
                    c.increment(1);
                    catalog::keep(c.clone());
                    answered.push((method.clone(), status, c));
                }
            }
        }
        if let Ok(mut durations) = self.durations.lock() {
            match durations.iter().find(|(m, _)| m == method) {
                Some((_, h)) => h.record(seconds),
                None => {
                    let h = metrics::histogram!("http_request_duration_seconds",
                        "route" => route.to_owned(), "method" => method.as_str().to_owned());
                    h.record(seconds);
                    durations.push((method.clone(), h));
                }
            }
        }
    }
}

/// Middleware, outermost: the request id, a span that every log line of the
/// request carries, one line when it ends, and its metrics.
pub async fn track_request(request: Request, next: Next) -> Response {
    static IN_FLIGHT: LazyLock<metrics::Gauge> =
        LazyLock::new(|| metrics::gauge!("http_requests_in_flight"));
    let started = Instant::now();
    IN_FLIGHT.increment(1.0);
    let id = request_id(request.headers());
    let method = request.method().clone();
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", |p| p.as_str());
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or(""),
        method = method.as_str(),
        route = route,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    IN_FLIGHT.decrement(1.0);
    let status = response.status();
    let latency = started.elapsed();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms, "request failed");
        } else if status.is_client_error() {
            tracing::info!(status = status.as_u16(), latency_ms, "request refused");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, "request");
        }
    });
    response.headers_mut().insert("x-request-id", id);
    RouteMetrics::of(route).record(route, &method, status.as_u16(), latency.as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_request_id_is_kept_only_when_usable() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("fan-42.retry/1"));
        assert_eq!(request_id(&h), "fan-42.retry/1");
        for bad in ["", "has space", &"x".repeat(129)] {
            h.insert("x-request-id", HeaderValue::from_str(bad).unwrap());
            let made = request_id(&h);
            assert_ne!(made, bad);
            assert_eq!(made.len(), 32, "a new one");
        }
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"x".repeat(128)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 128);
        assert_eq!(request_id(&HeaderMap::new()).len(), 32);
    }
}
