//! `/api/settings/subscription`: the panel's subscription options (docs/subscriptions.md):
//! the profile title, the update interval and the support URL every subscription carries.
//! Any admin may read them; sudo admins that are not read-only change them.

use poem_openapi::payload::Json;
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{Object, OpenApi};
use sqlx::Row;

use super::ApiTags;
use crate::auth::AdminAuth;
use crate::db::Db;
use crate::error::{ApiError, ApiResult};
use crate::serve::{now, AppState};
use crate::subscription::options::{check_interval, check_support_url, check_title};
use crate::subscription::SubscriptionOptions;

/// The `settings` key holding the subscription options (JSON).
const SETTING: &str = "subscription";

/// The stored subscription options (the defaults when none are stored).
pub async fn load_subscription_options(db: &Db) -> anyhow::Result<SubscriptionOptions> {
    let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(SETTING)
        .fetch_optional(&db.pool)
        .await?;
    Ok(match row {
        Some(r) => serde_json::from_str(&r.try_get::<String, _>("value")?)?,
        None => SubscriptionOptions::default(),
    })
}

async fn store_subscription_options(db: &Db, options: &SubscriptionOptions) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = $2",
    )
    .bind(SETTING)
    .bind(serde_json::to_string(options)?)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The subscription options as the API shows them.
#[derive(Clone, Debug, Object)]
#[oai(example)]
pub struct SubscriptionSettings {
    /// The `profile-title` clients show, with the placeholders of host remarks
    /// (`{USERNAME}`, `{DATA_LEFT}`, `{DAYS_LEFT}`...) filled per user; absent: the user's name.
    pub profile_title: Option<String>,
    /// Hours between a client's fetches (`profile-update-interval`), 1 to 168.
    pub update_interval: i64,
    /// Where users get help (`support-url`, and a link on the subscription page); absent: none.
    pub support_url: Option<String>,
}

impl Example for SubscriptionSettings {
    fn example() -> Self {
        SubscriptionSettings {
            profile_title: Some("Fast VPN · {USERNAME}".into()),
            update_interval: 12,
            support_url: Some("https://t.me/fastvpn_support".into()),
        }
    }
}

impl From<SubscriptionOptions> for SubscriptionSettings {
    fn from(o: SubscriptionOptions) -> Self {
        SubscriptionSettings {
            profile_title: o.profile_title,
            update_interval: i64::from(o.update_interval),
            support_url: o.support_url,
        }
    }
}

/// A change to the subscription options. Absent fields keep their value; `null` goes back to
/// the default (the user's name as the title; no support URL).
#[derive(Clone, Debug, Object)]
#[oai(example)]
pub struct SubscriptionSettingsInput {
    /// 1 to 128 characters without control characters (trimmed); `null`: the user's name.
    pub profile_title: MaybeUndefined<String>,
    /// Hours between fetches, 1 to 168.
    pub update_interval: Option<i64>,
    /// `http://` or `https://` URL of at most 2048 printable ASCII characters; `null`: none.
    pub support_url: MaybeUndefined<String>,
}

impl Example for SubscriptionSettingsInput {
    fn example() -> Self {
        SubscriptionSettingsInput {
            profile_title: MaybeUndefined::Value("Fast VPN · {USERNAME}".into()),
            update_interval: Some(6),
            support_url: MaybeUndefined::Value("https://t.me/fastvpn_support".into()),
        }
    }
}

/// Applies `input` to `options`, checking each field.
fn apply(
    options: &mut SubscriptionOptions,
    input: SubscriptionSettingsInput,
) -> Result<(), ApiError> {
    let invalid = |(field, message)| ApiError::invalid(field, message);
    match input.profile_title {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => options.profile_title = None,
        MaybeUndefined::Value(title) => {
            options.profile_title = Some(check_title(&title).map_err(invalid)?)
        }
    }
    if let Some(hours) = input.update_interval {
        options.update_interval = check_interval(hours).map_err(invalid)?;
    }
    match input.support_url {
        MaybeUndefined::Undefined => {}
        MaybeUndefined::Null => options.support_url = None,
        MaybeUndefined::Value(url) => {
            options.support_url = Some(check_support_url(&url).map_err(invalid)?)
        }
    }
    Ok(())
}

/// Panel settings endpoints.
pub struct SettingsApi;

#[OpenApi(prefix_path = "/settings", tag = "ApiTags::System")]
impl SettingsApi {
    /// The subscription options (any admin may read them).
    #[oai(path = "/subscription", method = "get")]
    async fn get_subscription(
        &self,
        state: poem::web::Data<&AppState>,
        _auth: AdminAuth,
    ) -> ApiResult<Json<SubscriptionSettings>> {
        let options = load_subscription_options(&state.db)
            .await
            .map_err(ApiError::from)?;
        Ok(Json(options.into()))
    }

    /// Change the subscription options (sudo admins that are not read-only). Every
    /// subscription fetched afterwards carries them.
    #[oai(path = "/subscription", method = "put")]
    async fn put_subscription(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        body: Json<SubscriptionSettingsInput>,
    ) -> ApiResult<Json<SubscriptionSettings>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        let mut options = load_subscription_options(&state.db)
            .await
            .map_err(ApiError::from)?;
        apply(&mut options, body.0)?;
        store_subscription_options(&state.db, &options)
            .await
            .map_err(ApiError::from)?;
        crate::db::audit(
            &state.db,
            &auth.0.admin.username,
            "settings.subscription.modify",
            "subscription",
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(options.into()))
    }
}
