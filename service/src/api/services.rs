//! `/api/services`: groups of inbounds that users are given together.

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;
use sqlx::Row;

use super::ApiTags;
use crate::auth::AdminAuth;
use crate::db;
use crate::error::{ApiError, ApiResult};
use crate::model::{Service, ServiceInput};
use crate::serve::{now, AppState};
use crate::sync;

/// Service endpoints.
pub struct ServiceApi;

async fn load(state: &AppState, id: i64) -> Result<Service, ApiError> {
    let row = sqlx::query("SELECT id, name FROM services WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("service {id}")))?;
    let inbounds = sqlx::query(
        "SELECT inbound_id FROM services_inbounds WHERE service_id = $1 ORDER BY inbound_id",
    )
    .bind(id)
    .fetch_all(&state.db.pool)
    .await?;
    Ok(Service {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        inbound_ids: inbounds
            .iter()
            .map(|r| r.try_get("inbound_id"))
            .collect::<Result<_, _>>()?,
    })
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 64 {
        return Err(ApiError::invalid("name", "must be 1 to 64 characters"));
    }
    Ok(())
}

#[OpenApi(prefix_path = "/services", tag = "ApiTags::Services")]
impl ServiceApi {
    /// Services this admin may use.
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
    ) -> ApiResult<Json<Vec<Service>>> {
        let ids = sqlx::query("SELECT id FROM services ORDER BY id")
            .fetch_all(&state.db.pool)
            .await
            .map_err(ApiError::from)?;
        let mut out = Vec::new();
        for r in ids {
            let id: i64 = r.try_get("id").map_err(ApiError::from)?;
            if auth.0.may_use_service(id) {
                out.push(load(&state, id).await?);
            }
        }
        Ok(Json(out))
    }

    /// One service.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        id: Path<i64>,
    ) -> ApiResult<Json<Service>> {
        if !auth.0.may_use_service(*id) {
            return Err(ApiError::NotFound(format!("service {}", *id)).into());
        }
        Ok(Json(load(&state, *id).await?))
    }

    /// Create a service (sudo only).
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        body: Json<ServiceInput>,
    ) -> ApiResult<Json<Service>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        check_name(&body.name)?;
        let mut tx = state.db.pool.begin().await.map_err(ApiError::from)?;
        let id: i64 = sqlx::query("INSERT INTO services (name) VALUES ($1) RETURNING id")
            .bind(&body.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db::conflict(e, "name", &body.name))?
            .try_get("id")
            .map_err(ApiError::from)?;
        db::set_service_inbounds(&mut tx, id, &body.inbound_ids).await?;
        tx.commit().await.map_err(ApiError::from)?;
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "service.create",
            &body.name,
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        sync::full(&state).await.map_err(ApiError::Internal)?;
        Ok(Json(load(&state, id).await?))
    }

    /// Change a service (sudo only). Its users get or lose the inbounds at once.
    #[oai(path = "/:id", method = "put")]
    async fn modify(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        id: Path<i64>,
        body: Json<ServiceInput>,
    ) -> ApiResult<Json<Service>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        check_name(&body.name)?;
        load(&state, *id).await?;
        let mut tx = state.db.pool.begin().await.map_err(ApiError::from)?;
        sqlx::query("UPDATE services SET name = $1 WHERE id = $2")
            .bind(&body.name)
            .bind(*id)
            .execute(&mut *tx)
            .await
            .map_err(|e| db::conflict(e, "name", &body.name))?;
        db::set_service_inbounds(&mut tx, *id, &body.inbound_ids).await?;
        tx.commit().await.map_err(ApiError::from)?;
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "service.modify",
            &body.name,
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        sync::full(&state).await.map_err(ApiError::Internal)?;
        Ok(Json(load(&state, *id).await?))
    }

    /// Delete a service (sudo only).
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        id: Path<i64>,
    ) -> ApiResult<Json<bool>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        let s = load(&state, *id).await?;
        sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(*id)
            .execute(&state.db.pool)
            .await
            .map_err(ApiError::from)?;
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "service.delete",
            &s.name,
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        sync::full(&state).await.map_err(ApiError::Internal)?;
        Ok(Json(true))
    }
}
