//! Graceful shutdown's bookkeeping: work that must run to its end even when
//! the server is asked to stop, such as a payment between its Postgres commit
//! and its Redis step. Such work holds an [`Inflight`] guard; at shutdown the
//! server waits (bounded) until none is held.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Counts work in flight that shutdown must wait for.
#[derive(Default)]
pub struct Inflight {
    running: AtomicUsize,
    idle: Notify,
}

/// Held while one piece of work runs; dropping it ends it.
pub struct Running(Arc<Inflight>);

impl Inflight {
    pub fn enter(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::SeqCst);
        Running(self.clone())
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Waits until nothing runs, up to `within`; `false` if something still does.
    pub async fn wait_idle(&self, within: Duration) -> bool {
        let waited = tokio::time::timeout(within, async {
            loop {
                let idle = self.idle.notified();
                if self.running() == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
        waited.is_ok()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_work_in_flight_and_no_longer() {
        let inflight = Arc::new(Inflight::default());
        assert!(inflight.wait_idle(Duration::from_millis(10)).await);
        let running = inflight.enter();
        assert!(!inflight.wait_idle(Duration::from_millis(30)).await);
        let waiter = {
            let inflight = inflight.clone();
            tokio::spawn(async move { inflight.wait_idle(Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(running);
        assert!(waiter.await.unwrap(), "woken when the work ends");
    }
}
