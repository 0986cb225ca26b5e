//! `/api/system`: statistics, panel-wide hourly usage and the engine's status.

use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;
use sqlx::Row;

use super::ApiTags;
use crate::auth::AdminAuth;
use crate::db;
use crate::error::{ApiError, ApiResult};
use crate::model::{EngineStatus, InboundTraffic, SystemStats, UsageBucket, UserStatus};
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

    /// Hourly usage summed over every user this admin sees (a non-sudo admin: their own
    /// users), for the last `hours` hours including the current one (1 to 744, default 24).
    /// Hours without traffic are left out.
    #[oai(path = "/usage", method = "get")]
    async fn usage(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        hours: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<UsageBucket>>> {
        let hours = hours.0.unwrap_or(24);
        if !(1..=744).contains(&hours) {
            return Err(ApiError::invalid("hours", "must be 1 to 744").into());
        }
        let now = now();
        let start = now - now.rem_euclid(3600) - (hours - 1) * 3600;
        let sum = "SELECT h.hour AS hour, CAST(SUM(h.uplink) AS BIGINT) AS uplink, \
                   CAST(SUM(h.downlink) AS BIGINT) AS downlink \
                   FROM usage_hourly h JOIN users u ON u.id = h.user_id WHERE h.hour >= $1";
        let rows = if auth.0.admin.is_sudo {
            sqlx::query(&format!("{sum} GROUP BY h.hour ORDER BY h.hour"))
                .bind(start)
                .fetch_all(&state.db.pool)
                .await
        } else {
            sqlx::query(&format!(
                "{sum} AND u.admin_id = $2 GROUP BY h.hour ORDER BY h.hour"
            ))
            .bind(start)
            .bind(auth.0.admin.id)
            .fetch_all(&state.db.pool)
            .await
        }
        .map_err(ApiError::from)?;
        Ok(Json(UsageBucket::from_rows(&rows).map_err(ApiError::from)?))
    }

    /// The engine in this panel's process: running or stopped, this run's id and start, and
    /// each inbound's open connections and traffic since the start. Any admin may read it,
    /// as any admin may list the inbounds.
    #[oai(path = "/engine", method = "get")]
    async fn engine(
        &self,
        state: poem::web::Data<&AppState>,
        _auth: AdminAuth,
    ) -> ApiResult<Json<EngineStatus>> {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(Json(EngineStatus {
            running: !state.engine.is_stopped(),
            run_id: state.engine_run.to_string(),
            started_at: state.engine_started_at,
            uptime: (now() - state.engine_started_at).max(0),
            workers: clamp(state.engine.workers() as u64),
            inbounds: state
                .engine
                .inbound_stats()
                .into_iter()
                .map(|i| InboundTraffic {
                    tag: i.tag,
                    open: clamp(i.traffic.open),
                    uplink: clamp(i.traffic.uplink),
                    downlink: clamp(i.traffic.downlink),
                })
                .collect(),
        }))
    }
}
