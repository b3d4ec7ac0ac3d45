//! The HTTP server: accepts connections and serves each with hyper's HTTP/1.1,
//! under the limits `axum::serve` does not have (issue 17).
//!
//! - A connection with no request under way is closed after
//!   `HTTP_IDLE_TIMEOUT_SECS`; once a request's first byte has arrived, its head
//!   must be whole within `HTTP_HEADER_TIMEOUT_SECS` (a slowloris is closed).
//!   A body that stalls is the JSON extractor's `408` (`extract::Json`).
//! - At most `MAX_CONNECTIONS` are open (lowered to fit the file limit, which
//!   is raised to its hard limit first). Past the cap a new connection gets a
//!   fast `503` envelope with `Connection: close`, so one client holding
//!   thousands of sockets cannot lock everyone else out of `accept`.
//! - The answer to a request whose body was not read whole (a `401` before the
//!   body, a `408`, a `413`) says `Connection: close`. hyper closes such a
//!   connection after answering; unwarned, a client sends its next request
//!   into the closed socket.
//! - hyper answers the requests it cannot parse (a control byte in a header,
//!   over 100 headers, a head over ~400 KB, a URI over 64 KB) by itself, with
//!   an empty body and no hook to change it. Those few bytes are rewritten on
//!   their way to the socket into the API's envelope ([`Watched`]).
//!
//! Graceful shutdown: stop accepting; a connection answering a request
//! finishes it and closes, an idle one closes at once.

use crate::config::HttpLimits;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, header};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::Service;

/// File descriptors kept free of connections: the Postgres and Redis clients,
/// refusals being written, the log, the odd file.
const RESERVED_FILES: u64 = 256;
/// Refusals being written at once; past it a connection over the cap is
/// closed without a word.
const MAX_REFUSALS: usize = 64;
/// How long a refusal may take: writing it, then reading what the client sent
/// until it closes (closing with unread bytes would reset the connection, and
/// the client might lose the answer).
const REFUSAL_PATIENCE: Duration = Duration::from_secs(1);

static OPEN: LazyLock<metrics::Gauge> = LazyLock::new(|| metrics::gauge!("http_connections_open"));
static REFUSED: LazyLock<metrics::Counter> =
    LazyLock::new(|| metrics::counter!("http_connections_refused_total"));

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and resolves once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let cap = connection_cap(limits.max_connections);
    tracing::info!(
        max_connections = cap,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        body_timeout = ?limits.body_timeout,
        "serving HTTP"
    );
    let slots = Arc::new(Semaphore::new(cap));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let limits = Arc::new(limits);
    let (stop, stopped) = watch::channel(false);
    // Each connection holds a receiver; `closed()` says they are all gone.
    let (alive, connections) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Most likely out of file descriptors: wait for some to close.
                tracing::error!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(connection(
                    stream,
                    peer,
                    router.clone(),
                    limits.clone(),
                    (slot, connections.clone()),
                    stopped.clone(),
                ));
            }
            Err(_) => {
                REFUSED.increment(1);
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, permit));
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    drop(connections);
    alive.closed().await;
}

/// The connection cap in force: `MAX_CONNECTIONS`, lowered to what the file
/// limit (raised first) leaves once [`RESERVED_FILES`] are kept aside.
fn connection_cap(configured: u32) -> usize {
    let configured = configured as usize;
    let Some(files) = raise_file_limit() else {
        return configured;
    };
    let fits = usize::try_from(files.saturating_sub(RESERVED_FILES))
        .unwrap_or(usize::MAX)
        .max(1);
    if configured > fits {
        tracing::warn!(
            max_connections = configured,
            file_limit = files,
            using = fits,
            "MAX_CONNECTIONS does not fit the open-file limit; lowered"
        );
        return fits;
    }
    configured
}

/// Raises this process's open-file limit to its hard limit (every connection
/// is a file descriptor, and the usual soft limit of 1 024 is far below a
/// sale's traffic). Returns the limit now in force, `None` if unknown.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere
pub fn raise_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                from = limit.rlim_cur as u64,
                to = raised.rlim_cur as u64,
                "open-file limit raised"
            );
            limit.rlim_cur = raised.rlim_cur;
        } else {
            tracing::warn!(
                limit = limit.rlim_cur as u64,
                error = %io::Error::last_os_error(),
                "open-file limit could not be raised"
            );
        }
    }
    Some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn raise_file_limit() -> Option<u64> {
    None
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The answer to a connection over the cap, sent without reading its request.
static REFUSAL: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = envelope_body(
        "unavailable",
        "the server has too many connections open; retry shortly",
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let _ = tokio::time::timeout(REFUSAL_PATIENCE, async {
        stream.write_all(&REFUSAL).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

fn envelope_body(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

/// Serves one connection until it ends, falls silent, or the server stops.
/// `_held` is its place under the cap and its share of "connections alive".
async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    router: Router,
    limits: Arc<HttpLimits>,
    _held: (OwnedSemaphorePermit, watch::Receiver<()>),
    mut stopped: watch::Receiver<bool>,
) {
    OPEN.increment(1.0);
    let _open = OnDrop(|| OPEN.decrement(1.0));
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched {
        stream,
        clock: clock.clone(),
        rewritten: Vec::new(),
        written: 0,
    });
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            // The peer's address, as axum's `ConnectInfo` gives it: the rate
            // limit of `POST /users` is per client.
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            answer(router.clone(), clock.clone(), request)
        })
    };
    let mut builder = http1::Builder::new();
    // hyper's own header timeout runs from the end of the last answer, so it
    // would also be the idle timeout; the clock times the two apart.
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut silence = pin!(clock.silence(&limits));
    let mut stopping = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            reason = &mut silence => {
                metrics::counter!("http_connections_timed_out_total", "reason" => reason)
                    .increment(1);
                tracing::debug!(reason, "closing a silent connection");
                break;
            }
            _ = stopped.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// One request through the router, with the connection's clock stopped while
/// it runs, and `Connection: close` on the answer if its body was not read whole.
async fn answer(
    mut router: Router,
    clock: Arc<Clock>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let _busy = clock.request_started();
    let read_whole = Arc::new(AtomicBool::new(request.body().is_end_stream()));
    let request = request.map(|incoming| {
        Body::new(Tracked {
            incoming,
            read_whole: read_whole.clone(),
        })
    });
    let Ok(mut response) = router.call(request).await;
    if !read_whole.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// A request body that notes when it has been read to its end.
struct Tracked {
    incoming: Incoming,
    read_whole: Arc<AtomicBool>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.incoming).poll_frame(cx));
        let ended = match &frame {
            None => true,
            Some(Ok(_)) => self.incoming.is_end_stream(),
            Some(Err(_)) => false,
        };
        if ended {
            self.read_whole.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// Where a connection is, for its timeouts.
#[derive(Clone, Copy)]
enum Phase {
    /// No request under way, nothing of the next one yet: since when.
    Idle(Instant),
    /// Bytes of the next request have arrived, its head is not whole: since when.
    Head(Instant),
    /// A request is being answered (the request timeout and the body timeout
    /// bound it).
    Busy,
}

/// A connection's clock: the I/O and the service move it between phases; the
/// connection's task checks, now and then, whether a phase has outlasted its
/// limit.
///
/// A phase change wakes nothing and arms no timer: the watch ([`Clock::silence`])
/// sleeps on one timer that it re-arms each time it fires, never later than the
/// deadline of the phase it saw and never more than the shorter of the two
/// limits ahead. Any phase that starts meanwhile has a deadline at least that
/// far ahead, so the timer can only fire early (the watch then looks again),
/// never late. A connection answering requests back to back costs no timer
/// work per request: at most one wake per limit.
struct Clock {
    phase: Mutex<Phase>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            phase: Mutex::new(Phase::Idle(Instant::now())),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    fn bytes_arrived(&self) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
        }
    }

    fn request_started(self: &Arc<Self>) -> impl Drop {
        self.set(Phase::Busy);
        let clock = self.clone();
        OnDrop(move || clock.set(Phase::Idle(Instant::now())))
    }

    /// Resolves with the reason (`idle`, `header`) once the connection has
    /// been silent past its limit.
    async fn silence(&self, limits: &HttpLimits) -> &'static str {
        let step = limits.idle_timeout.min(limits.header_timeout);
        let mut timer = pin!(tokio::time::sleep(step));
        loop {
            let now = Instant::now();
            let deadline = match self.phase() {
                Phase::Busy => None,
                Phase::Idle(since) => Some((since + limits.idle_timeout, "idle")),
                Phase::Head(since) => Some((since + limits.header_timeout, "header")),
            };
            let next = match deadline {
                Some((at, reason)) if at <= now => return reason,
                Some((at, _)) => at.min(now + step),
                None => now + step,
            };
            timer.as_mut().reset(next);
            timer.as_mut().await;
        }
    }
}

/// The connection's socket, as hyper sees it: reads move the clock, and the
/// bare error answers hyper writes for requests it cannot parse are rewritten
/// into the API's envelope.
struct Watched {
    stream: TcpStream,
    clock: Arc<Clock>,
    /// A rewritten answer, and how much of it is on the socket.
    rewritten: Vec<u8>,
    written: usize,
}

impl Watched {
    /// Writes what is left of a rewritten answer.
    fn poll_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.rewritten.len() {
            let n =
                ready!(Pin::new(&mut self.stream).poll_write(cx, &self.rewritten[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        if !self.rewritten.is_empty() {
            self.rewritten = Vec::new();
            self.written = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// If `bytes` is hyper's own answer to a request it could not parse,
    /// takes it (sending the enveloped one instead) and says how much it took.
    fn take_parse_error(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Option<io::Result<usize>> {
        if !bytes.starts_with(b"HTTP/1.1 4") || matches!(self.clock.phase(), Phase::Busy) {
            return None;
        }
        self.rewritten = enveloped_parse_error(bytes)?;
        self.written = 0;
        if let Poll::Ready(Err(e)) = self.poll_rewritten(cx) {
            return Some(Err(e));
        }
        Some(Ok(bytes.len()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.clock.bytes_arrived();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_rewritten(cx))?;
        if let Some(taken) = this.take_parse_error(cx, buf) {
            return Poll::Ready(taken);
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_rewritten(cx))?;
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next())
            && let Some(taken) = this.take_parse_error(cx, only)
        {
            return Poll::Ready(taken);
        }
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_rewritten(cx))?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_rewritten(cx))?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// hyper's answer to a request it could not parse is a bare head,
/// `HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate:
/// …\r\n\r\n`; the service's own error answers always have a JSON body. This
/// is that head with the API's envelope as its body, and `Connection: close`
/// (hyper closes the connection after it).
fn enveloped_parse_error(bytes: &[u8]) -> Option<Vec<u8>> {
    let head = bytes.strip_suffix(b"\r\n\r\n")?;
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    let headers: Vec<&str> = lines.collect();
    let named = |h: &str, name: &str| {
        h.len() > name.len()
            && h.as_bytes()[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && h.as_bytes()[name.len()] == b':'
    };
    let empty = headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("content-length: 0"));
    if !(400..500).contains(&status) || !empty || headers.iter().any(|h| named(h, "content-type")) {
        return None;
    }
    let (code, message) = match status {
        414 => ("uri_too_long", "the request's URI is too long"),
        431 => (
            "headers_too_large",
            "the request has too many headers, or they are too large",
        ),
        _ => ("invalid_request", "the request is not valid HTTP/1.1"),
    };
    let body = envelope_body(code, message);
    let mut answer = format!("{status_line}\r\n");
    for h in headers
        .iter()
        .filter(|h| !named(h, "content-length") && !named(h, "connection"))
    {
        answer.push_str(h);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(answer.into_bytes())
}

/// Runs a closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bare_parse_errors_get_the_envelope() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 06:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(enveloped_parse_error(bare).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("\r\ndate: Wed"), "{head}");
        assert!(head.contains("\r\nconnection: close"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "headers_too_large");
    }

    #[test]
    fn the_services_own_answers_are_left_alone() {
        for answer in [
            &b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 57\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
        ] {
            assert!(enveloped_parse_error(answer).is_none());
        }
    }
}
