//! `/api/system`: statistics.

use poem_openapi::payload::Json;
use poem_openapi::OpenApi;

use super::ApiTags;
use crate::auth::AdminAuth;
use crate::db;
use crate::error::{ApiError, ApiResult};
use crate::model::{SystemStats, UserStatus};
use crate::serve::{now, AppState};

/// System endpoints.
pub struct SystemApi;

#[OpenApi(prefix_path = "/system", tag = "ApiTags::System")]
impl SystemApi {
    /// Users by status and traffic totals (over the users this admin sees).
    #[oai(path = "/stats", method = "get")]
    async fn stats(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
    ) -> ApiResult<Json<SystemStats>> {
        let now = now();
        let users = db::all_users(&state.db).await.map_err(ApiError::from)?;
        let mut s = SystemStats {
            total_users: 0,
            active_users: 0,
            disabled_users: 0,
            limited_users: 0,
            expired_users: 0,
            on_hold_users: 0,
            online_users: 0,
            total_uplink: 0,
            total_downlink: 0,
        };
        let visible: Vec<_> = users
            .iter()
            .filter(|u| auth.0.sees_owner(u.admin_id))
            .collect();
        for u in &visible {
            s.total_users += 1;
            match u.status(now) {
                UserStatus::Active => s.active_users += 1,
                UserStatus::Disabled => s.disabled_users += 1,
                UserStatus::Limited => s.limited_users += 1,
                UserStatus::Expired => s.expired_users += 1,
                UserStatus::OnHold => s.on_hold_users += 1,
            }
            if u.online_at.is_some_and(|t| t >= now - 300) {
                s.online_users += 1;
            }
        }
        let ids: Vec<i64> = visible.iter().map(|u| u.id).collect();
        if !ids.is_empty() {
            use sqlx::Row;
            let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let q = format!(
                "SELECT CAST(COALESCE(SUM(uplink), 0) AS BIGINT) AS up, CAST(COALESCE(SUM(downlink), 0) AS BIGINT) AS down \
                 FROM usage_hourly WHERE user_id IN ({list})"
            );
            let r = sqlx::query(&q)
                .fetch_one(&state.db.pool)
                .await
                .map_err(ApiError::from)?;
            s.total_uplink = r.try_get("up").map_err(ApiError::from)?;
            s.total_downlink = r.try_get("down").map_err(ApiError::from)?;
        }
        Ok(Json(s))
    }
}
