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
        // Counted by the database: one pass over the users, one over their hourly usage.
        let now = now();
        let owner = if auth.0.admin.is_sudo {
            ""
        } else {
            " WHERE u.admin_id = $2"
        };
        let count = |status: UserStatus| {
            format!(
                "CAST(COALESCE(SUM(CASE WHEN {} THEN 1 ELSE 0 END), 0) AS BIGINT)",
                db::status_sql(status, "$1")
            )
        };
        let q = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS total, {} AS active, {} AS disabled, {} AS limited, \
             {} AS expired, {} AS on_hold, \
             CAST(COALESCE(SUM(CASE WHEN u.online_at IS NOT NULL AND u.online_at >= $1 - 300 \
             THEN 1 ELSE 0 END), 0) AS BIGINT) AS online FROM users u{owner}",
            count(UserStatus::Active),
            count(UserStatus::Disabled),
            count(UserStatus::Limited),
            count(UserStatus::Expired),
            count(UserStatus::OnHold),
        );
        let mut query = sqlx::query(&q).bind(now);
        if !auth.0.admin.is_sudo {
            query = query.bind(auth.0.admin.id);
        }
        let r = query
            .fetch_one(&state.db.reader)
            .await
            .map_err(ApiError::from)?;
        let get = |col: &str| r.try_get::<i64, _>(col).map_err(ApiError::from);
        let mut s = SystemStats {
            total_users: get("total")?,
            active_users: get("active")?,
            disabled_users: get("disabled")?,
            limited_users: get("limited")?,
            expired_users: get("expired")?,
            on_hold_users: get("on_hold")?,
            online_users: get("online")?,
            total_uplink: 0,
            total_downlink: 0,
        };
        let traffic = "SELECT CAST(COALESCE(SUM(h.uplink), 0) AS BIGINT) AS up, \
                       CAST(COALESCE(SUM(h.downlink), 0) AS BIGINT) AS down \
                       FROM usage_hourly h JOIN users u ON u.id = h.user_id";
        let r = if auth.0.admin.is_sudo {
            sqlx::query(traffic).fetch_one(&state.db.reader).await
        } else {
            sqlx::query(&format!("{traffic} WHERE u.admin_id = $1"))
                .bind(auth.0.admin.id)
                .fetch_one(&state.db.reader)
                .await
        }
        .map_err(ApiError::from)?;
        s.total_uplink = r.try_get("up").map_err(ApiError::from)?;
        s.total_downlink = r.try_get("down").map_err(ApiError::from)?;
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
                .fetch_all(&state.db.reader)
                .await
        } else {
            sqlx::query(&format!(
                "{sum} AND u.admin_id = $2 GROUP BY h.hour ORDER BY h.hour"
            ))
            .bind(start)
            .bind(auth.0.admin.id)
            .fetch_all(&state.db.reader)
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
