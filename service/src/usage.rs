//! Usage accounting and enforcement, run every few seconds.
//!
//! The engine keeps user counters in a memory-mapped file under the data directory, so they
//! survive a crash of the panel process; on start, [`recover`] adds what the previous run had
//! counted but not yet recorded.
//!
//! The engine's counters are monotonic for one engine run. Each pass reads them, and in one
//! transaction adds the deltas since the values recorded in `usage_cursor` to each user's used
//! and lifetime traffic and to the hour's bucket, and records the new values. A pass that fails
//! or is interrupted changes nothing, and the next pass computes the same deltas again: bytes
//! are counted exactly once.
//!
//! Then enforcement: users who are over their limit, expired or disabled are taken off the
//! engine (their connections close at once); start_on_first_use users start their clock on
//! first traffic or at their activation deadline; periodic resets follow each user's strategy.
//! Enforcement runs on every pass, also when recording failed or when giving the engine every
//! inbound failed (an inbound this host cannot bind): limits and expiry never wait for those.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use engine::TrafficMark;
use sqlx::Row;

use crate::db;
use crate::model::{ExpireStrategy, ResetStrategy};
use crate::serve::{now, AppState};
use crate::sync;
use crate::webhooks::{self, Event, WebhookConfig};

/// Applies the engine's counters to the database once: only the users whose counters moved
/// since `mark` last saw them (an idle user costs a few atomic loads, no query). On failure
/// `mark` starts over, so that the next pass reports every user with traffic again and
/// nothing is lost. Returns how many users had new traffic.
pub async fn record(state: &AppState, mark: &mut TrafficMark) -> anyhow::Result<usize> {
    let _turn = state.record_turn.lock().await;
    let engine = state.engine.clone();
    let mut taken = std::mem::take(mark);
    let (moved, taken) = tokio::task::spawn_blocking(move || {
        let moved = engine.user_traffic_since(&mut taken);
        (moved, taken)
    })
    .await?;
    if moved.is_empty() {
        *mark = taken;
        return Ok(0);
    }
    let counters: Vec<(String, u64, u64)> = moved
        .into_iter()
        .map(|(name, t)| (name, t.uplink, t.downlink))
        .collect();
    // Read after the counters: a name given to a new user since counted for them only from
    // then on, and what it counted before is settled by then (`settle`, same turn).
    let owners = state
        .pushed
        .owners(counters.iter().map(|(name, _, _)| name));
    let n = apply(&state.db, &state.engine_run, &counters, &owners).await?;
    *mark = taken;
    Ok(n)
}

/// Records what the engine counted under each of `reused` (name, id), names about to be given
/// to other users (the user `id` was deleted and the name taken again): against `id`'s row,
/// which is gone, so that none of it is charged to the new user. Waits (2 s at most) for the
/// old user's connections, closed when they were taken off, to be gone first: their last
/// bytes are counted by then.
pub async fn settle(state: &AppState, reused: &[(String, i64)]) -> anyhow::Result<()> {
    let _turn = state.record_turn.lock().await;
    let owners: HashMap<String, i64> = reused.iter().cloned().collect();
    let engine = state.engine.clone();
    let names: Vec<String> = owners.keys().cloned().collect();
    let counters = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let traffic = engine.traffic_of(&names);
            let closed = traffic.iter().all(|(_, t)| t.open == 0);
            if closed || std::time::Instant::now() >= deadline {
                return traffic;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    })
    .await?
    .into_iter()
    .map(|(name, t)| (name, t.uplink, t.downlink))
    .collect::<Vec<_>>();
    apply(&state.db, &state.engine_run, &counters, &owners).await?;
    Ok(())
}

/// The statement charging `$1` bytes at time `$2` to the user whose `$key` is `$3`
/// (activating a start-on-first-use user), returning the row's id.
macro_rules! charge {
    ($key:literal) => {
        concat!(
            "UPDATE users SET used_traffic = used_traffic + $1, \
             lifetime_used_traffic = lifetime_used_traffic + $1, online_at = $2, \
             activated_at = CASE WHEN expire_strategy = 'start_on_first_use' \
             AND activated_at IS NULL THEN $2 ELSE activated_at END WHERE ",
            $key,
            " = $3 RETURNING id"
        )
    };
}
const CHARGE_BY_ID: &str = charge!("id");
const CHARGE_BY_NAME: &str = charge!("username");

/// Adds the traffic in `counters` (monotonic values of engine run `run`) beyond what
/// `usage_cursor` says was already added, in one transaction: to the user `owners` names
/// for each name (by row id), or else to the user the name's cursor was last charged to
/// (after a crash, when `owners` is empty), or else to the user of that name.
pub async fn apply(
    db: &crate::db::Db,
    run: &str,
    counters: &[(String, u64, u64)],
    owners: &HashMap<String, i64>,
) -> anyhow::Result<usize> {
    let now = now();
    let hour = now - now.rem_euclid(3600);
    if counters.is_empty() {
        return Ok(0);
    }
    let mut tx = db.pool.begin().await?;
    // The cursor of these users only, a slice of names at a time.
    let mut cursor: HashMap<String, (i64, i64, Option<i64>)> = HashMap::new();
    for chunk in counters.chunks(500) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let q = format!(
            "SELECT user_name, uplink, downlink, user_id FROM usage_cursor WHERE engine_run = $1 \
             AND user_name IN ({})",
            marks.join(",")
        );
        let mut query = sqlx::query(&q).persistent(false).bind(run);
        for (name, _, _) in chunk {
            query = query.bind(name);
        }
        for r in query.fetch_all(&mut *tx).await? {
            cursor.insert(
                r.try_get("user_name")?,
                (
                    r.try_get("uplink")?,
                    r.try_get("downlink")?,
                    r.try_get("user_id")?,
                ),
            );
        }
    }
    // Rows are locked in name order: another instance's pass, on the same users (their
    // connections to its engine), then waits for this one instead of deadlocking with it.
    let mut in_order: Vec<&(String, u64, u64)> = counters.iter().collect();
    in_order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut touched = 0;
    for (name, up, down) in in_order {
        let (up, down) = (*up as i64, *down as i64);
        let (cu, cd, charged) = cursor.get(name).copied().unwrap_or((0, 0, None));
        let (du, dd) = (up - cu, down - cd);
        if du <= 0 && dd <= 0 {
            continue;
        }
        touched += 1;
        let total = du.max(0) + dd.max(0);
        // By row id where known, so that what a deleted user moved is charged to no one, not
        // to a new user of the same name.
        let by_id = owners.get(name).copied().or(charged);
        let q = if by_id.is_some() {
            CHARGE_BY_ID
        } else {
            CHARGE_BY_NAME
        };
        let query = sqlx::query(q).bind(total).bind(now);
        let query = match by_id {
            Some(id) => query.bind(id),
            None => query.bind(name),
        };
        let id: Option<i64> = query
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("id"))
            .transpose()?;
        if let Some(id) = id {
            sqlx::query(
                "INSERT INTO usage_hourly (user_id, hour, uplink, downlink) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, hour) DO UPDATE SET uplink = usage_hourly.uplink + $3, \
                 downlink = usage_hourly.downlink + $4",
            )
            .bind(id)
            .bind(hour)
            .bind(du.max(0))
            .bind(dd.max(0))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO usage_cursor (engine_run, user_name, uplink, downlink, user_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (engine_run, user_name) DO UPDATE \
             SET uplink = $3, downlink = $4, user_id = COALESCE($5, usage_cursor.user_id)",
        )
        .bind(run)
        .bind(name)
        .bind(up)
        .bind(down)
        .bind(by_id.or(id))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(touched)
}

/// After a crash: adds what the previous engine run counted but the panel had not recorded
/// yet, from the counters file it left. Must run before a new engine reuses the file.
/// Returns that run's id, whose cursor is to be forgotten ([`forget_run`]) once the new
/// engine has taken the file over, not before: should the panel stop in between, the next
/// start finds the same file and the cursor already at its values, and adds nothing twice.
pub async fn recover(
    db: &crate::db::Db,
    counters_file: &std::path::Path,
) -> anyhow::Result<Option<String>> {
    let Some(previous) = engine::read_counters_file(counters_file)? else {
        return Ok(None);
    };
    // A previous run's names: the users their cursors were last charged to (who may be gone
    // since: then no one), else the users of those names.
    let n = apply(db, &previous.run_id, &previous.users, &HashMap::new()).await?;
    if n > 0 {
        tracing::info!(
            users = n,
            "recorded traffic left over from the previous run"
        );
    }
    Ok(Some(previous.run_id))
}

/// Forgets the cursor of engine run `run`, whose counters file a new engine has started
/// afresh. (Only that run's: other panel instances on the database have runs of their own.)
pub async fn forget_run(db: &crate::db::Db, run: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM usage_cursor WHERE engine_run = $1")
        .bind(run)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Length of a reset period, for `strategy`.
fn reset_period(strategy: ResetStrategy) -> Option<i64> {
    const DAY: i64 = 86_400;
    match strategy {
        ResetStrategy::NoReset => None,
        ResetStrategy::Day => Some(DAY),
        ResetStrategy::Week => Some(7 * DAY),
        ResetStrategy::Month => Some(30 * DAY),
        ResetStrategy::Year => Some(365 * DAY),
    }
}

/// Where each part of the periodic pass resumes: what the last pass saw.
#[derive(Default)]
pub struct Marks {
    /// The engine counters last recorded.
    traffic: TrafficMark,
    /// Announcements: the change mark and the thresholds they were decided with.
    announced: Option<(db::Since, Vec<u8>)>,
    /// This instance's engine access (`sync::changed_users`).
    pushed: Option<db::Since>,
    /// When this instance last pruned old deletions (Unix seconds).
    pruned_at: Option<i64>,
}

/// How often old deletions (kept a day) and spent login-attempt counts are pruned: an hour
/// late is no matter.
const PRUNE_EVERY: i64 = 3600;

/// Activation deadlines, periodic resets and webhook announcements (by one panel instance at a
/// time: see [`db::Job::Enforcement`]); then the engine is brought in step with every user's
/// status (by every instance: each drives its own engine). Each reads only the users who can
/// have changed since the pass that left `marks` (everyone on the first pass).
pub async fn enforce(state: &AppState, marks: &mut Marks) -> anyhow::Result<()> {
    if let Some(lock) = db::JobLock::try_acquire(&state.db, db::Job::Enforcement).await? {
        let result = update_users(&state.db, &mut marks.announced, &mut marks.pruned_at).await;
        lock.release().await;
        // Logged, and the engine is still kept in step below: an expired or over-limit user
        // needs nothing from this part to be taken off.
        if let Err(e) = result {
            tracing::warn!("enforcement's database changes failed (will retry): {e:#}");
        }
    }
    // Inbounds or services changed through another instance (or by hand) since this engine
    // was given them: every inbound and user is given again. Rare, and only then does a pass
    // read every user.
    let config = crate::catalog::revision(&state.db).await?;
    if config != state.synced_config.load(Ordering::Acquire) {
        // Failing (an inbound this host cannot bind, say) must not stop limits and expiry
        // from being enforced: the users are kept in step below regardless, and the full
        // sync is tried again next pass.
        if let Err(e) = sync::full(state).await {
            tracing::warn!("giving the engine every inbound and user failed (will retry): {e:#}");
        }
    } else if !state.routing.is_current() {
        // Logged by `sync::routing`; users are kept in step regardless.
        let _ = sync::routing(state).await;
    }
    sync::changed_users(state, &mut marks.pushed).await
}

/// The database side of enforcement.
async fn update_users(
    db: &db::Db,
    announced: &mut Option<(db::Since, Vec<u8>)>,
    pruned_at: &mut Option<i64>,
) -> anyhow::Result<()> {
    let now = now();
    // Before any scan: what changes after this is found by the next pass.
    let mark = db::change_mark(db).await?;
    // Activation deadlines and due resets are found through indexes (migration 0004).
    sqlx::query(
        "UPDATE users SET activated_at = activation_deadline WHERE expire_strategy = $1 \
         AND activated_at IS NULL AND activation_deadline IS NOT NULL AND activation_deadline <= $2",
    )
    .bind(ExpireStrategy::StartOnFirstUse.as_str())
    .bind(now)
    .execute(&db.pool)
    .await?;
    // Only the users with something to do are read: those whose reset is due, then those
    // whose announced status or threshold is behind (decided in SQL, exactly as
    // `UserRow::status` and `WebhookConfig::reached_threshold` decide).
    for u in db::users_due_for_reset(db, now, reset_period).await? {
        let mut tx = db.pool.begin().await?;
        // Only if no other pass reset it meanwhile.
        let reset = sqlx::query(
            "UPDATE users SET used_traffic = 0, traffic_reset_at = $1, webhook_threshold = 0 WHERE id = $2 \
             AND (traffic_reset_at = $3 OR (traffic_reset_at IS NULL AND $3 IS NULL))",
        )
        .bind(now)
        .bind(u.id)
        .bind(u.traffic_reset_at)
        .execute(&mut *tx)
        .await?;
        if reset.rows_affected() == 1 {
            webhooks::enqueue_for(&mut tx, Event::Reset, u.id).await?;
        }
        tx.commit().await?;
    }
    if pruned_at.is_none_or(|at| now - at >= PRUNE_EVERY) {
        db::prune_deleted(db, now - db::Since::DELETIONS_KEPT).await?;
        crate::auth::prune_attempts(db, now).await?;
        *pruned_at = Some(now);
    }
    let config = WebhookConfig::load(&db.pool).await?;
    // Announcements can only be behind for users whose row changed (this pass's activations
    // and resets included) or whose expiry came since the last pass; other thresholds mean
    // everyone again. A pass that fails keeps the mark it started from.
    let since = announced
        .as_ref()
        .filter(|(_, thresholds)| *thresholds == config.thresholds)
        .and_then(|(since, _)| db::Since::fresh(Some(*since), now));
    for (u, status, threshold) in db::users_to_announce(db, now, &config.thresholds, since).await? {
        webhooks::announce_status(db, &config, &u, status.as_deref(), threshold, now).await?;
    }
    *announced = Some((
        db::Since {
            revision: mark,
            at: now,
        },
        config.thresholds,
    ));
    Ok(())
}

/// The background loop: record, enforce, sleep. Engine access passes start from
/// `pushed_from`, the mark of the full sync made at start ([`sync::full`]).
pub async fn run(state: AppState, pushed_from: db::Since) {
    let mut tick = tokio::time::interval(state.config.usage_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut marks = Marks {
        pushed: Some(pushed_from),
        ..Marks::default()
    };
    loop {
        tick.tick().await;
        let t0 = std::time::Instant::now();
        // Enforcement runs either way: limits, expiry and changes made meanwhile do not wait
        // for recording to work again.
        if let Err(e) = record(&state, &mut marks.traffic).await {
            tracing::warn!("recording usage failed (will retry): {e:#}");
        }
        let t1 = t0.elapsed();
        if let Err(e) = enforce(&state, &mut marks).await {
            tracing::warn!("enforcement failed (will retry): {e:#}");
        }
        tracing::debug!(record = ?t1, total = ?t0.elapsed(), "usage pass");
    }
}
