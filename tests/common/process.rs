//! The release binary as a child process, for the fault tests that need a real
//! `kill -9` (an in-process server can only be aborted, which leaves its
//! runtime, pools and tasks alive). It serves the storage of a [`TestApp`]
//! (same database, same Redis prefix), which keeps owning it and cleans up.

use super::{ADMIN_KEY, AUTH_SECRET, TestApp};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Process {
    pub base: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `boxoffice serve` on a free loopback port against `app`'s
    /// database and key prefix (and `redis_url`, or the tests' Redis), with
    /// `vars` on top, and waits until `/health` answers (30 s at most).
    pub async fn start(app: &TestApp, redis_url: &str, vars: &[(&str, &str)]) -> Process {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::env::temp_dir().join(format!("{}_{port}.log", app.prefix));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "DATABASE_URL",
                format!("{}/{}", super::pg_server(), app.db_name),
            )
            .env("REDIS_URL", redis_url)
            .env("REDIS_PREFIX", &app.prefix)
            .env("AUTH_SECRET", AUTH_SECRET)
            .env("ADMIN_KEY", ADMIN_KEY)
            .env("RATE_LIMITS", "off")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"));
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the binary starts");
        let mut process = Process {
            base: format!("http://127.0.0.1:{port}"),
            child,
            log,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = http
                .get(format!("{}/health", process.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("boxoffice exited ({status}): {}", process.log_tail());
            }
            if Instant::now() > deadline {
                process.kill9();
                panic!("boxoffice not up in 30 s: {}", process.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no shutdown, no flush, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
    }

    /// The end of the server's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text[text.floor_char_boundary(start)..].to_owned()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.log);
    }
}
