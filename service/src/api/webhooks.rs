//! `/api/webhook`: where user events are sent (docs/webhooks.md). Sudo admins only; the
//! secret is write-only (its last four characters are shown so an admin can tell which one is
//! set).

use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{Object, OpenApi};
use sqlx::Row;

use super::ApiTags;
use crate::auth::AdminAuth;
use crate::error::{ApiError, ApiResult};
use crate::serve::{now, AppState};
use crate::webhooks::WebhookConfig;

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
}
