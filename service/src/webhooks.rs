//! Webhooks (docs/webhooks.md): user events POSTed as signed JSON to one configured URL.
//!
//! ```text
//!  API change / enforcement pass ──(same transaction)──► webhook_outbox row
//!                                                              │ in id order
//!  delivery task (one per database: advisory lock) ──► POST url, X-Marzneshin-Signature
//!      2xx: row deleted        error: attempts+1, next try after base·2^(attempts-1)
//! ```
//!
//! An event is written to the outbox in the transaction of the change that caused it, so it
//! exists exactly when the change does, survives restarts, and is never sent from inside an
//! API request. The delivery task sends the oldest pending event first and does not skip
//! ahead while it is waiting to retry, so the receiver sees events in the order they were
//! made. After [`MAX_ATTEMPTS`] failures an event is marked failed and kept for inspection.
//!
//! The secret signs the body (HMAC-SHA256, hex, `sha256=` prefix, in
//! `X-Marzneshin-Signature`). It is stored in the `settings` table, never returned by the API
//! beyond its last four characters, and never logged; neither is the URL (it may carry a
//! token).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use sqlx::Row;

use crate::db::{self, Db, UserRow, USER_COLS};
use crate::model::UserStatus;
use crate::serve::{now, AppState};

/// The `settings` key holding the webhook configuration (JSON).
const SETTING: &str = "webhook";

/// Failures after which an event is given up on.
pub const MAX_ATTEMPTS: i64 = 16;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-marzneshin-signature";
/// Header carrying the event name.
pub const EVENT_HEADER: &str = "x-marzneshin-event";
/// Header carrying the event's id (increasing; the same on every retry of one event).
pub const DELIVERY_HEADER: &str = "x-marzneshin-delivery";

/// Usage thresholds (percent of the data limit) announced when none are configured.
pub const DEFAULT_THRESHOLDS: [u8; 2] = [80, 100];

/// Where and how events are sent, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Receiver; none: webhooks are off (no events are recorded).
    pub url: Option<String>,
    /// The HMAC key.
    pub secret: Option<String>,
    /// Percentages of the data limit that send `user.usage_threshold` when crossed.
    pub thresholds: Vec<u8>,
}

impl WebhookConfig {
    /// The stored configuration (the default, webhooks off, when none is stored).
    pub async fn load<'e, E>(executor: E) -> anyhow::Result<WebhookConfig>
    where
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(SETTING)
            .fetch_optional(executor)
            .await?;
        Ok(match row {
            Some(r) => serde_json::from_str(&r.try_get::<String, _>("value")?)?,
            None => WebhookConfig {
                thresholds: DEFAULT_THRESHOLDS.to_vec(),
                ..WebhookConfig::default()
            },
        })
    }

    /// Stores the configuration.
    pub async fn store(&self, db: &Db) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = $2",
        )
        .bind(SETTING)
        .bind(serde_json::to_string(self)?)
        .execute(&db.pool)
        .await?;
        Ok(())
    }

    /// Whether events are recorded and sent.
    pub fn enabled(&self) -> bool {
        self.url.is_some() && self.secret.is_some()
    }

    /// The highest configured threshold that `used` of `limit` has reached (0: none).
    pub fn reached_threshold(&self, used: i64, limit: Option<i64>) -> i64 {
        let Some(limit) = limit.filter(|&l| l > 0) else {
            return 0;
        };
        self.thresholds
            .iter()
            .map(|&t| i64::from(t))
            .filter(|&t| i128::from(used) * 100 >= i128::from(t) * i128::from(limit))
            .max()
            .unwrap_or(0)
    }
}

/// What happened to a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Created by an admin.
    Created,
    /// Changed by an admin (including a new subscription key).
    Updated,
    /// Deleted by an admin.
    Deleted,
    /// Enabled by an admin.
    Enabled,
    /// Disabled by an admin.
    Disabled,
    /// Reached their data limit.
    Limited,
    /// Reached their expiry.
    Expired,
    /// Used traffic reset to zero (by an admin or by the reset strategy).
    Reset,
    /// Used traffic crossed a configured percentage of the data limit.
    UsageThreshold(i64),
}

impl Event {
    /// The event's name in the body and the `X-Marzneshin-Event` header.
    pub fn name(self) -> &'static str {
        match self {
            Event::Created => "user.created",
            Event::Updated => "user.updated",
            Event::Deleted => "user.deleted",
            Event::Enabled => "user.enabled",
            Event::Disabled => "user.disabled",
            Event::Limited => "user.limited",
            Event::Expired => "user.expired",
            Event::Reset => "user.reset",
            Event::UsageThreshold(_) => "user.usage_threshold",
        }
    }
}

/// The body of an event about `user`.
pub fn payload(event: Event, user: &UserRow, now: i64) -> serde_json::Value {
    let mut body = json!({
        "event": event.name(),
        "at": now,
        "user": {
            "username": user.username,
            "status": user.status(now).as_str(),
            "enabled": user.enabled,
            "used_traffic": user.used_traffic,
            "lifetime_used_traffic": user.lifetime_used_traffic,
            "data_limit": user.data_limit,
            "data_limit_reset_strategy": user.reset_strategy.as_str(),
            "expire_strategy": user.expire_strategy.as_str(),
            "expire_date": user.expire_date,
            "owner_username": user.owner_username,
        },
    });
    if let Event::UsageThreshold(t) = event {
        body["threshold"] = t.into();
    }
    body
}

/// Records `event` about `user` in the outbox, inside the caller's transaction, if webhooks
/// are on.
pub async fn enqueue(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    event: Event,
    user: &UserRow,
) -> anyhow::Result<()> {
    if !WebhookConfig::load(&mut **tx).await?.enabled() {
        return Ok(());
    }
    let now = now();
    sqlx::query(
        "INSERT INTO webhook_outbox (event, payload, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(event.name())
    .bind(payload(event, user, now).to_string())
    .bind(now)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records `event` about the user with id `user_id` as the transaction sees them now.
pub async fn enqueue_for(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    event: Event,
    user_id: i64,
) -> anyhow::Result<()> {
    // The user is read only when there is somewhere to send them.
    if !WebhookConfig::load(&mut **tx).await?.enabled() {
        return Ok(());
    }
    let q = format!(
        "SELECT {USER_COLS} FROM users u LEFT JOIN admins a ON a.id = u.admin_id WHERE u.id = $1"
    );
    let row = sqlx::query(&q).bind(user_id).fetch_one(&mut **tx).await?;
    enqueue(tx, event, &UserRow::from_row(&row)?).await
}

/// Announces what enforcement found about `user`: a new `limited` or `expired` status, or a
/// newly reached usage threshold. Each is a compare-and-set on the user's row in the same
/// transaction as the event, so several panels on one database announce it once.
pub async fn announce_status(
    db: &Db,
    config: &WebhookConfig,
    user: &UserRow,
    stored_status: Option<&str>,
    stored_threshold: i64,
    now: i64,
) -> anyhow::Result<()> {
    let status = user.status(now).as_str();
    let threshold = config.reached_threshold(user.used_traffic, user.data_limit);
    if stored_status == Some(status) && stored_threshold == threshold {
        return Ok(());
    }
    let mut tx = db.pool.begin().await?;
    if stored_status != Some(status) {
        let set = sqlx::query(
            "UPDATE users SET webhook_status = $1 WHERE id = $2 \
             AND (webhook_status = $3 OR (webhook_status IS NULL AND $3 IS NULL))",
        )
        .bind(status)
        .bind(user.id)
        .bind(stored_status)
        .execute(&mut *tx)
        .await?;
        if set.rows_affected() == 1 {
            match user.status(now) {
                UserStatus::Limited => enqueue(&mut tx, Event::Limited, user).await?,
                UserStatus::Expired => enqueue(&mut tx, Event::Expired, user).await?,
                _ => {}
            }
        }
    }
    if stored_threshold != threshold {
        let set = sqlx::query(
            "UPDATE users SET webhook_threshold = $1 WHERE id = $2 AND webhook_threshold = $3",
        )
        .bind(threshold)
        .bind(user.id)
        .bind(stored_threshold)
        .execute(&mut *tx)
        .await?;
        // Only upwards: a reset or a higher limit lowers it silently.
        if set.rows_affected() == 1 && threshold > stored_threshold {
            enqueue(&mut tx, Event::UsageThreshold(threshold), user).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The wait before attempt `attempts + 1`, after `attempts` failures.
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(1 << exponent).min(MAX_BACKOFF)
}

/// Unix time in milliseconds (the outbox's `next_attempt_at`).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Why one delivery failed (shown in `last_error`; never holds the URL or the secret).
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    /// The receiver answered with a status outside 2xx.
    #[error("receiver answered {0}")]
    Status(reqwest::StatusCode),
    /// No answer: connection refused, timeout, TLS failure...
    #[error("{0}")]
    Transport(reqwest::Error),
}

/// Sends the oldest pending event if it is due. Returns whether one was sent, so the caller
/// can go on at once.
pub async fn deliver_next(
    db: &Db,
    client: &reqwest::Client,
    retry_base: Duration,
) -> anyhow::Result<bool> {
    let config = WebhookConfig::load(&db.pool).await?;
    let (Some(url), Some(secret)) = (&config.url, &config.secret) else {
        return Ok(false);
    };
    let row = sqlx::query(
        "SELECT id, event, payload, attempts, next_attempt_at FROM webhook_outbox \
         WHERE failed_at IS NULL ORDER BY id LIMIT 1",
    )
    .fetch_optional(&db.pool)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let id: i64 = row.try_get("id")?;
    let next_attempt_at: i64 = row.try_get("next_attempt_at")?;
    if next_attempt_at > now_ms() {
        // The oldest event waits for its retry; later ones wait behind it (order).
        return Ok(false);
    }
    let event: String = row.try_get("event")?;
    let body: String = row.try_get("payload")?;
    let attempts: i64 = row.try_get::<i64, _>("attempts")? + 1;
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature(secret, body.as_bytes()))
        .header(EVENT_HEADER, &event)
        .header(DELIVERY_HEADER, id.to_string())
        .body(body)
        .timeout(DELIVERY_TIMEOUT)
        .send()
        .await
        .map_err(|e| DeliveryError::Transport(e.without_url()))
        .and_then(|r| match r.status() {
            s if s.is_success() => Ok(()),
            s => Err(DeliveryError::Status(s)),
        });
    match sent {
        Ok(()) => {
            sqlx::query("DELETE FROM webhook_outbox WHERE id = $1")
                .bind(id)
                .execute(&db.pool)
                .await?;
            Ok(true)
        }
        Err(e) => {
            let error = e.to_string();
            if attempts >= MAX_ATTEMPTS {
                tracing::warn!(id, event, attempts, "webhook given up: {error}");
                sqlx::query(
                    "UPDATE webhook_outbox SET attempts = $1, last_error = $2, failed_at = $3 \
                     WHERE id = $4",
                )
                .bind(attempts)
                .bind(&error)
                .bind(now())
                .bind(id)
                .execute(&db.pool)
                .await?;
                return Ok(true);
            }
            let wait = backoff(retry_base, attempts);
            tracing::info!(
                id,
                event,
                attempts,
                ?wait,
                "webhook failed, will retry: {error}"
            );
            sqlx::query(
                "UPDATE webhook_outbox SET attempts = $1, last_error = $2, next_attempt_at = $3 \
                 WHERE id = $4",
            )
            .bind(attempts)
            .bind(&error)
            .bind(now_ms() + wait.as_millis() as i64)
            .bind(id)
            .execute(&db.pool)
            .await?;
            Ok(false)
        }
    }
}

/// The delivery loop: one instance per database delivers (PostgreSQL advisory lock), the
/// others stand by.
pub async fn run(state: AppState) {
    let client = match reqwest::Client::builder()
        .user_agent(concat!("marzneshin/", env!("CARGO_PKG_VERSION")))
        // A redirect would turn the POST into a GET elsewhere: it counts as a failure.
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhooks off: cannot build an HTTP client: {e}");
            return;
        }
    };
    let idle = state.config.webhook_poll_interval;
    loop {
        let lock = match db::JobLock::try_acquire(&state.db, db::Job::Webhooks).await {
            Ok(lock) => lock,
            Err(e) => {
                tracing::warn!("webhook lock failed (will retry): {e:#}");
                None
            }
        };
        let Some(lock) = lock else {
            tokio::time::sleep(idle).await;
            continue;
        };
        // Deliver while there is work, then release the lock and idle.
        loop {
            match deliver_next(&state.db, &client, state.config.webhook_retry_base).await {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!("webhook delivery failed (will retry): {e:#}");
                    break;
                }
            }
        }
        lock.release().await;
        tokio::time::sleep(idle).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let base = Duration::from_secs(1);
        let waits: Vec<u64> = (1..=5).map(|a| backoff(base, a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16]);
        assert_eq!(backoff(base, 13), MAX_BACKOFF);
        assert_eq!(backoff(base, 1000), MAX_BACKOFF);
    }

    #[test]
    fn thresholds_reached() {
        let c = WebhookConfig {
            thresholds: vec![50, 80, 100],
            ..WebhookConfig::default()
        };
        assert_eq!(c.reached_threshold(10, None), 0);
        assert_eq!(c.reached_threshold(10, Some(0)), 0);
        assert_eq!(c.reached_threshold(49, Some(100)), 0);
        assert_eq!(c.reached_threshold(50, Some(100)), 50);
        assert_eq!(c.reached_threshold(99, Some(100)), 80);
        assert_eq!(c.reached_threshold(250, Some(100)), 100);
        assert_eq!(c.reached_threshold(i64::MAX, Some(i64::MAX)), 100);
    }
}
