//! HTTP/1.1 by hand over a raw TCP socket, for the tests of what reqwest will
//! not send: requests that stop half-way, bytes that are not valid HTTP,
//! sockets held open and silent.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A socket to the app at `base` ("http://127.0.0.1:port").
pub async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("the app accepts a connection")
}

/// One answer as it came off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The head, header names lower-cased.
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The `error.code` of an enveloped answer; panics on any other body.
    pub fn error_code(&self) -> String {
        let body: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not a JSON body ({e}): {self:?}"));
        body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code: {self:?}"))
            .to_owned()
    }
}

/// Reads one answer (its body by `content-length`), waiting up to `patience`.
/// `None` if the socket closed or failed before an answer was whole.
pub async fn read_answer(socket: &mut TcpStream, patience: Duration) -> Option<Answer> {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(patience, async {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(answer) = parse(&bytes) {
                return Some(answer);
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    read.unwrap_or_else(|_| panic!("no answer within {patience:?}"))
}

fn parse(bytes: &[u8]) -> Option<Answer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head.get(9..12)?.parse().ok()?;
    let mut answer = Answer {
        status,
        head,
        body: String::new(),
    };
    let length: usize = answer
        .header("content-length")
        .map_or(Some(0), |v| v.parse().ok())?;
    let body = bytes.get(end + 4..end + 4 + length)?;
    answer.body = String::from_utf8_lossy(body).into_owned();
    Some(answer)
}

/// Waits until the server closes the socket (reading and dropping whatever
/// it sends), up to `patience`. Returns how long that took, `None` if the
/// socket was still open at the end.
pub async fn closed_within(socket: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut sink = [0u8; 8192];
    tokio::time::timeout(patience, async {
        loop {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Sends `bytes`, ignoring a failure (the server may close before it has read
/// them all, which is what some tests provoke).
pub async fn send(socket: &mut TcpStream, bytes: &[u8]) {
    let _ = socket.write_all(bytes).await;
}
