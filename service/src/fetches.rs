//! Subscription fetches (when, and with which user agent, each user last fetched), written in
//! batches off the request path.
//!
//! A fetch is recorded in memory, one entry per user (a newer fetch replaces an older one not
//! yet written), and a background task writes what is pending in one transaction per batch:
//! woken by a fetch, it lets others gather for a quarter of a second first, so a steady
//! stream of fetches costs a few write transactions a second, not one each. The panel flushes
//! what is pending before it exits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::db::{Backend, Db};

/// Fetches written in one transaction at most (so that a burst does not hold SQLite's one
/// connection for long).
const BATCH: usize = 256;

/// How long the writer lets fetches gather after the first one wakes it.
const GATHER: Duration = Duration::from_millis(250);

/// User agents longer than this are cut before they are stored.
const MAX_USER_AGENT: usize = 512;

/// One user's last fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fetch {
    at: i64,
    user_agent: String,
}

/// Fetches waiting to be written.
#[derive(Debug, Default)]
pub struct Fetches {
    pending: Mutex<HashMap<i64, Fetch>>,
    wake: Notify,
    /// Held while writing, so that a flush and the background task do not interleave.
    writing: tokio::sync::Mutex<()>,
}

impl Fetches {
    /// Records that `user_id` fetched their subscription at `at` with `user_agent`.
    pub fn record(&self, user_id: i64, at: i64, user_agent: &str) {
        let user_agent = user_agent.chars().take(MAX_USER_AGENT).collect();
        self.lock().insert(user_id, Fetch { at, user_agent });
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Fetch>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes every fetch recorded so far.
    pub async fn flush(&self, db: &Db) -> Result<(), sqlx::Error> {
        let _writing = self.writing.lock().await;
        loop {
            let batch: Vec<(i64, Fetch)> = {
                let mut pending = self.lock();
                let ids: Vec<i64> = pending.keys().take(BATCH).copied().collect();
                ids.into_iter()
                    .filter_map(|id| pending.remove(&id).map(|f| (id, f)))
                    .collect()
            };
            if batch.is_empty() {
                return Ok(());
            }
            if let Err(e) = write(db, &batch).await {
                // Back in, unless a newer fetch of the same user came in meanwhile.
                let mut pending = self.lock();
                for (id, fetch) in batch {
                    pending.entry(id).or_insert(fetch);
                }
                return Err(e);
            }
        }
    }

    /// Writes fetches as they come until the task is dropped.
    pub async fn run(&self, db: Db) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(GATHER).await;
            if let Err(e) = self.flush(&db).await {
                tracing::warn!("recording subscription fetches failed, will retry: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.wake.notify_one();
            }
        }
    }
}

async fn write(db: &Db, batch: &[(i64, Fetch)]) -> Result<(), sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    if db.backend == Backend::Postgres {
        // A record of when a client last fetched: a crash may lose the last moment's, as it
        // loses the ones still in memory; not worth waiting for the WAL flush.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
    }
    for (id, fetch) in batch {
        sqlx::query("UPDATE users SET sub_updated_at = $1, sub_last_user_agent = $2 WHERE id = $3")
            .bind(fetch.at)
            .bind(&fetch.user_agent)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_fetch_replaces_the_pending_one_and_long_agents_are_cut() {
        let f = Fetches::default();
        f.record(7, 100, "old");
        f.record(7, 200, &"x".repeat(2000));
        f.record(8, 150, "v2rayNG/1.9");
        let pending = f.lock();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[&7].at, 200);
        assert_eq!(pending[&7].user_agent.len(), MAX_USER_AGENT);
        assert_eq!(pending[&8].user_agent, "v2rayNG/1.9");
    }
}
