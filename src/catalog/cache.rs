//! An in-process read-through cache for the public catalog reads.
//!
//! When a sale opens, every fan reloads the concert page: those reads must not
//! queue on Postgres. The catalog is rarely written, so each instance keeps what
//! it read for [`TTL`]; a write through this instance clears the list at once,
//! and other instances see it within [`TTL`]. Misses (unknown ids) are not
//! cached, so the cache holds at most one entry per concert.

use super::{Concert, ConcertSummary, Schedule};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TTL: Duration = Duration::from_secs(1);

/// Entries by id, each with the moment it was read.
type Timed<T> = Mutex<HashMap<i64, (Instant, Arc<T>)>>;

#[derive(Default)]
pub struct CatalogCache {
    list: Mutex<Option<(Instant, Arc<Vec<ConcertSummary>>)>>,
    concerts: Timed<Concert>,
    schedules: Timed<Vec<Schedule>>,
}

fn fresh<T: Clone>(entry: Option<&(Instant, T)>) -> Option<T> {
    entry
        .filter(|(at, _)| at.elapsed() < TTL)
        .map(|(_, v)| v.clone())
}

impl CatalogCache {
    pub fn list(&self) -> Option<Arc<Vec<ConcertSummary>>> {
        fresh(self.list.lock().ok()?.as_ref())
    }

    pub fn put_list(&self, list: Arc<Vec<ConcertSummary>>) {
        if let Ok(mut slot) = self.list.lock() {
            *slot = Some((Instant::now(), list));
        }
    }

    pub fn concert(&self, id: i64) -> Option<Arc<Concert>> {
        fresh(self.concerts.lock().ok()?.get(&id))
    }

    pub fn put_concert(&self, concert: Arc<Concert>) {
        if let Ok(mut map) = self.concerts.lock() {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
            map.insert(concert.id, (Instant::now(), concert));
        }
    }

    pub fn schedules(&self, concert_id: i64) -> Option<Arc<Vec<Schedule>>> {
        fresh(self.schedules.lock().ok()?.get(&concert_id))
    }

    pub fn put_schedules(&self, concert_id: i64, list: Arc<Vec<Schedule>>) {
        if let Ok(mut map) = self.schedules.lock() {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
            map.insert(concert_id, (Instant::now(), list));
        }
    }

    /// Forgets a concert's schedules after a write, so this instance lists a new
    /// schedule at once.
    pub fn invalidate_schedules(&self, concert_id: i64) {
        if let Ok(mut map) = self.schedules.lock() {
            map.remove(&concert_id);
        }
    }

    /// Forgets the list after a write, so this instance shows the change at once.
    pub fn invalidate_list(&self) {
        if let Ok(mut slot) = self.list.lock() {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn concert(id: i64) -> Arc<Concert> {
        Arc::new(Concert {
            id,
            title: "t".into(),
            artist: None,
            description: None,
        })
    }

    #[test]
    fn entries_are_served_while_fresh_and_invalidated_on_write() {
        let cache = CatalogCache::default();
        assert!(cache.concert(1).is_none());
        cache.put_concert(concert(1));
        assert_eq!(cache.concert(1).map(|c| c.id), Some(1));
        assert!(cache.concert(2).is_none());
        cache.put_list(Arc::new(vec![]));
        assert!(cache.list().is_some());
        cache.invalidate_list();
        assert!(cache.list().is_none());
    }

    #[test]
    fn stale_entries_are_not_served() {
        let cache = CatalogCache::default();
        let old = Instant::now().checked_sub(TTL * 2).unwrap();
        cache.concerts.lock().unwrap().insert(1, (old, concert(1)));
        *cache.list.lock().unwrap() = Some((old, Arc::new(vec![])));
        assert!(cache.concert(1).is_none());
        assert!(cache.list().is_none());
    }
}
