//! `/api/webhook`: where user events are sent (docs/webhooks.md), and the events waiting in
//! the outbox or given up on, which an admin can send again. Sudo admins only; the secret is
//! write-only (its last four characters are shown so an admin can tell which one is set).

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{Enum, Object, OpenApi};
use sqlx::Row;

use super::ApiTags;
use crate::auth::AdminAuth;
use crate::error::{ApiError, ApiResult};
use crate::serve::{now, AppState};
use crate::webhooks::{self, WebhookConfig};

/// The webhook configuration as the API shows it.
#[derive(Clone, Debug, Object)]
#[oai(example)]
pub struct WebhookSettings {
    /// Receiver of the events (absent: webhooks are off and no events are recorded).
    pub url: Option<String>,
    /// Whether a secret is set (events are only recorded and sent with one).
    pub secret_set: bool,
    /// The secret's last four characters, to tell which one is set.
    pub secret_hint: Option<String>,
    /// Percentages of a user's data limit that send `user.usage_threshold` when crossed.
    pub thresholds: Vec<u8>,
    /// Events waiting to be sent.
    pub pending: i64,
    /// Events given up on after repeated failures (kept in the outbox).
    pub failed: i64,
}

impl Example for WebhookSettings {
    fn example() -> Self {
        WebhookSettings {
            url: Some("https://hooks.example.com/marzneshin".into()),
            secret_set: true,
            secret_hint: Some("…k3Yq".into()),
            thresholds: vec![80, 100],
            pending: 0,
            failed: 0,
        }
    }
}

/// A change to the webhook configuration. Absent fields keep their value; `url: null` turns
/// webhooks off.
#[derive(Clone, Debug, Object)]
#[oai(example)]
pub struct WebhookSettingsInput {
    /// `http://` or `https://` URL of the receiver, at most 2048 characters; `null`: off.
    pub url: MaybeUndefined<String>,
    /// HMAC-SHA256 key, 16 to 256 characters. Required when a URL is set and no secret is
    /// stored yet.
    pub secret: Option<String>,
    /// Percentages (1 to 100) of the data limit that send `user.usage_threshold`, at most 10.
    pub thresholds: Option<Vec<u8>>,
}

impl Example for WebhookSettingsInput {
    fn example() -> Self {
        WebhookSettingsInput {
            url: MaybeUndefined::Value("https://hooks.example.com/marzneshin".into()),
            secret: Some("a-long-random-secret-k3Yq".into()),
            thresholds: Some(vec![80, 100]),
        }
    }
}

/// Applies `input` to `config`, checking each field.
fn apply(config: &mut WebhookConfig, input: WebhookSettingsInput) -> Result<(), ApiError> {
    match input.url {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => config.url = None,
        MaybeUndefined::Value(url) => {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.len() > 2048 || url.chars().any(char::is_whitespace) {
                return Err(ApiError::invalid(
                    "url",
                    "must be an http:// or https:// URL of at most 2048 characters",
                ));
            }
            config.url = Some(url);
        }
    }
    if let Some(secret) = input.secret {
        if !(16..=256).contains(&secret.chars().count()) {
            return Err(ApiError::invalid("secret", "must be 16 to 256 characters"));
        }
        config.secret = Some(secret);
    }
    if let Some(mut thresholds) = input.thresholds {
        if thresholds.len() > 10 || thresholds.iter().any(|t| !(1..=100).contains(t)) {
            return Err(ApiError::invalid(
                "thresholds",
                "at most 10 percentages, each 1 to 100",
            ));
        }
        thresholds.sort_unstable();
        thresholds.dedup();
        config.thresholds = thresholds;
    }
    if config.url.is_some() && config.secret.is_none() {
        return Err(ApiError::invalid("secret", "required with a url"));
    }
    Ok(())
}

async fn view(state: &AppState, config: WebhookConfig) -> Result<WebhookSettings, ApiError> {
    let counts = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT) AS total, \
         CAST(COALESCE(SUM(CASE WHEN failed_at IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS failed \
         FROM webhook_outbox",
    )
    .fetch_one(&state.db.pool)
    .await?;
    let (total, failed): (i64, i64) = (counts.try_get("total")?, counts.try_get("failed")?);
    let secret_hint = config.secret.as_deref().map(|s| {
        let tail: String = s
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    });
    Ok(WebhookSettings {
        url: config.url,
        secret_set: config.secret.is_some(),
        secret_hint,
        thresholds: config.thresholds,
        pending: total - failed,
        failed,
    })
}

/// Where an event of the outbox stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum WebhookEventStatus {
    /// Waiting to be sent, or to be retried after a failed attempt.
    Pending,
    /// Given up on after the maximum number of attempts; kept until retried.
    Failed,
}

/// One event in the outbox (sent events are deleted, so they are not listed).
#[derive(Clone, Debug, Object)]
#[oai(example)]
pub struct WebhookEvent {
    /// Event id (also the `X-Marzneshin-Delivery` header of each attempt).
    pub id: i64,
    /// Event name, such as `user.created`.
    pub event: String,
    /// Pending or failed.
    pub status: WebhookEventStatus,
    /// The body that is sent, as recorded when the event happened.
    pub payload: serde_json::Value,
    /// When the event happened (Unix seconds).
    pub created_at: i64,
    /// Failed attempts so far (0 again after a retry).
    pub attempts: i64,
    /// Why the last attempt failed (the receiver's status or the connection error).
    pub last_error: Option<String>,
    /// When the next attempt is due (Unix seconds, rounded up); none for a failed event.
    pub next_attempt_at: Option<i64>,
    /// When the last attempt failed and the event was given up on (Unix seconds).
    pub failed_at: Option<i64>,
}

impl Example for WebhookEvent {
    fn example() -> Self {
        WebhookEvent {
            id: 42,
            event: "user.limited".into(),
            status: WebhookEventStatus::Failed,
            payload: serde_json::json!({
                "event": "user.limited",
                "at": 1767225600,
                "user": {"username": "alice", "status": "limited", "used_traffic": 10737418240i64,
                         "data_limit": 10737418240i64}
            }),
            created_at: 1767225600,
            attempts: webhooks::MAX_ATTEMPTS,
            last_error: Some("receiver answered 503 Service Unavailable".into()),
            next_attempt_at: None,
            failed_at: Some(1767283200),
        }
    }
}

/// A page of outbox events, newest first.
#[derive(Clone, Debug, Object)]
#[oai(example)]
pub struct WebhookEventPage {
    /// The events of this page.
    pub items: Vec<WebhookEvent>,
    /// Events matching the filter, on all pages.
    pub total: i64,
    /// This page, from 1.
    pub page: i64,
    /// Page size.
    pub size: i64,
}

impl Example for WebhookEventPage {
    fn example() -> Self {
        WebhookEventPage {
            items: vec![WebhookEvent::example()],
            total: 1,
            page: 1,
            size: 50,
        }
    }
}

const EVENT_COLS: &str =
    "id, event, payload, created_at, attempts, next_attempt_at, last_error, failed_at";

fn event_from_row(row: &sqlx::any::AnyRow) -> Result<WebhookEvent, ApiError> {
    let failed_at: Option<i64> = row.try_get("failed_at")?;
    let next_ms: i64 = row.try_get("next_attempt_at")?;
    let payload: String = row.try_get("payload")?;
    Ok(WebhookEvent {
        id: row.try_get("id")?,
        event: row.try_get("event")?,
        status: if failed_at.is_some() {
            WebhookEventStatus::Failed
        } else {
            WebhookEventStatus::Pending
        },
        payload: serde_json::from_str(&payload).map_err(|e| ApiError::Internal(e.into()))?,
        created_at: row.try_get("created_at")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        next_attempt_at: failed_at.is_none().then(|| ceil_seconds(next_ms)),
        failed_at,
    })
}

/// Unix milliseconds as Unix seconds, rounded up (the attempt is not due before then).
fn ceil_seconds(ms: i64) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) > 0)
}

async fn event_by_id(state: &AppState, id: i64) -> Result<Option<WebhookEvent>, ApiError> {
    let q = format!("SELECT {EVENT_COLS} FROM webhook_outbox WHERE id = $1");
    let row = sqlx::query(&q)
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?;
    row.as_ref().map(event_from_row).transpose()
}

/// Webhook endpoints.
pub struct WebhookApi;

#[OpenApi(prefix_path = "/webhook", tag = "ApiTags::System")]
impl WebhookApi {
    /// The webhook configuration (sudo only; the secret is never returned).
    #[oai(path = "/", method = "get")]
    async fn get(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
    ) -> ApiResult<Json<WebhookSettings>> {
        auth.0.require_sudo()?;
        let config = WebhookConfig::load(&state.db.pool)
            .await
            .map_err(ApiError::from)?;
        Ok(Json(view(&state, config).await?))
    }

    /// Change the webhook configuration (sudo admins that are not read-only). Events are recorded from now on while a
    /// URL and a secret are set; events already recorded are sent to the current URL.
    #[oai(path = "/", method = "put")]
    async fn put(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        body: Json<WebhookSettingsInput>,
    ) -> ApiResult<Json<WebhookSettings>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        let mut config = WebhookConfig::load(&state.db.pool)
            .await
            .map_err(ApiError::from)?;
        apply(&mut config, body.0)?;
        config.store(&state.db).await.map_err(ApiError::from)?;
        crate::db::audit(
            &state.db,
            &auth.0.admin.username,
            "webhook.modify",
            "webhook",
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(view(&state, config).await?))
    }

    /// Events in the outbox, newest first: pending ones and those given up on after repeated
    /// failures (sudo only). Sent events are deleted and not listed.
    #[oai(path = "/events", method = "get")]
    async fn events(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        /// Only events in this status (absent: both).
        status: Query<Option<WebhookEventStatus>>,
        /// Page, from 1.
        page: Query<Option<i64>>,
        /// Page size, 1 to 500 (default 50).
        size: Query<Option<i64>>,
    ) -> ApiResult<Json<WebhookEventPage>> {
        auth.0.require_sudo()?;
        let page = page.0.unwrap_or(1);
        let size = size.0.unwrap_or(50);
        if page < 1 {
            return Err(ApiError::invalid("page", "must be at least 1").into());
        }
        if !(1..=500).contains(&size) {
            return Err(ApiError::invalid("size", "must be between 1 and 500").into());
        }
        let filter = match status.0 {
            None => "",
            Some(WebhookEventStatus::Pending) => " WHERE failed_at IS NULL",
            Some(WebhookEventStatus::Failed) => " WHERE failed_at IS NOT NULL",
        };
        let total: i64 = sqlx::query(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS total FROM webhook_outbox{filter}"
        ))
        .fetch_one(&state.db.pool)
        .await
        .map_err(ApiError::from)?
        .try_get("total")
        .map_err(ApiError::from)?;
        let q = format!(
            "SELECT {EVENT_COLS} FROM webhook_outbox{filter} ORDER BY id DESC LIMIT $1 OFFSET $2"
        );
        let items = sqlx::query(&q)
            .bind(size)
            .bind((page - 1).saturating_mul(size))
            .fetch_all(&state.db.pool)
            .await
            .map_err(ApiError::from)?
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Json(WebhookEventPage {
            items,
            total,
            page,
            size,
        }))
    }

    /// Send a failed event again (sudo admins that are not read-only): its attempts start
    /// over and it is due now. Events are delivered oldest first, so it goes before any
    /// newer pending event. 409 when the event is not failed (it is still being tried).
    #[oai(path = "/events/:id/retry", method = "post")]
    async fn retry(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        /// Event id.
        id: Path<i64>,
    ) -> ApiResult<Json<WebhookEvent>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        let mut event = event_by_id(&state, id.0)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("webhook event {}", id.0)))?;
        let due = webhooks::now_ms();
        let reset = sqlx::query(
            "UPDATE webhook_outbox SET failed_at = NULL, attempts = 0, next_attempt_at = $1 \
             WHERE id = $2 AND failed_at IS NOT NULL",
        )
        .bind(due)
        .bind(id.0)
        .execute(&state.db.pool)
        .await
        .map_err(ApiError::from)?;
        if reset.rows_affected() == 0 {
            return Err(ApiError::WrongState(format!(
                "webhook event {} is not failed: it is still pending delivery",
                id.0
            ))
            .into());
        }
        event.status = WebhookEventStatus::Pending;
        event.attempts = 0;
        event.failed_at = None;
        event.next_attempt_at = Some(ceil_seconds(due));
        crate::db::audit(
            &state.db,
            &auth.0.admin.username,
            "webhook.retry",
            &format!("webhook event {}", id.0),
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(event))
    }
}
