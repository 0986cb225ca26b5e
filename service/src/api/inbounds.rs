//! `/api/inbounds`: the engine's listeners, stored as engine inbound configurations.

use engine::config::InboundConfig;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;
use sqlx::Row;

use super::ApiTags;
use crate::auth::AdminAuth;
use crate::db;
use crate::error::{ApiError, ApiResult};
use crate::model::{Inbound, InboundInput};
use crate::serve::{now, AppState};
use crate::sync;

/// Inbound endpoints.
pub struct InboundApi;

/// Parses and checks an inbound configuration as the engine would.
fn parse(value: &serde_json::Value) -> Result<InboundConfig, ApiError> {
    // Users come from services: `settings.users` may be left out.
    let mut value = value.clone();
    if let Some(settings) = value
        .get_mut("settings")
        .and_then(serde_json::Value::as_object_mut)
    {
        settings
            .entry("users")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    }
    let c: InboundConfig = serde_path_to_error::deserialize(&value).map_err(|e| {
        // Inside the flattened protocol settings the path is lost (".").
        let path = e.path().to_string();
        let field = match path.as_str() {
            "." | "" => "config".to_owned(),
            p => format!("config.{p}"),
        };
        ApiError::invalid(&field, e.inner().to_string())
    })?;
    if !c.protocol.users().is_empty() {
        return Err(ApiError::invalid(
            "config.settings.users",
            "must be empty: users come from services",
        ));
    }
    let candidate = engine::Config {
        inbounds: vec![c.clone()],
        ..engine::Config::default()
    };
    candidate.validate().map_err(|e| match e {
        engine::ConfigError::Invalid { field, message }
        | engine::ConfigError::Parse { field, message } => ApiError::invalid(
            &format!("config.{}", field.trim_start_matches("inbounds[0].")),
            message,
        ),
        other => ApiError::invalid("config", other.to_string()),
    })?;
    Ok(c)
}

fn protocol(c: &InboundConfig) -> &'static str {
    c.protocol.name()
}

fn row_to_inbound(r: &sqlx::any::AnyRow) -> Result<Inbound, ApiError> {
    let config: String = r.try_get("config")?;
    Ok(Inbound {
        id: r.try_get("id")?,
        tag: r.try_get("tag")?,
        protocol: r.try_get("protocol")?,
        config: serde_json::from_str(&config).map_err(|e| ApiError::Internal(e.into()))?,
    })
}

async fn load(state: &AppState, id: i64) -> Result<Inbound, ApiError> {
    let r = sqlx::query("SELECT id, tag, protocol, config FROM inbounds WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db.pool)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("inbound {id}")))?;
    row_to_inbound(&r)
}

/// Gives the engine the inbounds as `tx` has them, the caller's change made: a refusal (a port
/// in use, two inbounds on one port) is returned, and the caller's transaction, dropped,
/// stores nothing, so that no panel instance ever sees an inbound this engine refused. The
/// caller holds [`AppState::sync_turn`] (taken before the transaction began), so that no
/// full sync gives the engine the stored inbounds in between; the engine call takes the turn
/// with it and gives it back, so that a request dropped meanwhile still holds it until the
/// engine is done.
async fn engine_takes(
    state: &AppState,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    turn: tokio::sync::OwnedMutexGuard<()>,
) -> Result<tokio::sync::OwnedMutexGuard<()>, ApiError> {
    use std::sync::atomic::Ordering;
    // Should the change not be stored after all (the commit fails, or the request is dropped
    // before it), the next enforcement pass gives the engine the stored inbounds again.
    let synced = state.synced_config.swap(i64::MIN, Ordering::AcqRel);
    let configs: Vec<String> = sqlx::query_scalar("SELECT config FROM inbounds ORDER BY id")
        .fetch_all(&mut **tx)
        .await?;
    let inbounds = configs
        .iter()
        .map(|c| sync::parse_inbound(c))
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(ApiError::Internal)?;
    let engine = state.engine.clone();
    let (taken, turn) =
        tokio::task::spawn_blocking(move || (engine.apply_inbounds(inbounds), turn))
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
    if taken.is_err() {
        // Refused: the engine holds what it held.
        let _ = state.synced_config.compare_exchange(
            i64::MIN,
            synced,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }
    taken.map(|()| turn).map_err(|e| engine_error(e.into()))
}

/// Gives the engine every stored inbound and user again, once a change is stored.
async fn apply(state: &AppState) -> Result<(), ApiError> {
    sync::full(state).await.map(|_| ()).map_err(engine_error)
}

/// What the engine's refusal of the inbounds means for the request.
fn engine_error(e: anyhow::Error) -> ApiError {
    match e.downcast::<engine::EngineError>() {
        Ok(engine::EngineError::Bind {
            tag, addr, source, ..
        }) => ApiError::invalid(
            "config.listen",
            format!("inbound {tag:?} cannot listen on {addr}: {source}"),
        ),
        // The inbounds together are invalid (two on one port, say): name the field.
        Ok(engine::EngineError::Config(
            engine::ConfigError::Invalid { field, message }
            | engine::ConfigError::Parse { field, message },
        )) => {
            let field = match field.split_once("].") {
                Some((_, rest)) => format!("config.{rest}"),
                None => "config".to_owned(),
            };
            ApiError::invalid(&field, message)
        }
        Ok(other) => ApiError::Internal(other.into()),
        Err(e) => ApiError::Internal(e),
    }
}

#[OpenApi(prefix_path = "/inbounds", tag = "ApiTags::Inbounds")]
impl InboundApi {
    /// Every inbound.
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        _auth: AdminAuth,
    ) -> ApiResult<Json<Vec<Inbound>>> {
        let rows = sqlx::query("SELECT id, tag, protocol, config FROM inbounds ORDER BY id")
            .fetch_all(&state.db.pool)
            .await
            .map_err(ApiError::from)?;
        Ok(Json(
            rows.iter().map(row_to_inbound).collect::<Result<_, _>>()?,
        ))
    }

    /// One inbound.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        state: poem::web::Data<&AppState>,
        _auth: AdminAuth,
        id: Path<i64>,
    ) -> ApiResult<Json<Inbound>> {
        Ok(Json(load(&state, *id).await?))
    }

    /// Create an inbound (sudo only); the engine starts listening at once.
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        body: Json<InboundInput>,
    ) -> ApiResult<Json<Inbound>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        let c = parse(&body.config)?;
        let json = serde_json::to_string(&c).map_err(|e| ApiError::Internal(e.into()))?;
        let turn = std::sync::Arc::clone(&state.sync_turn).lock_owned().await;
        let mut tx = state.db.pool.begin().await.map_err(ApiError::from)?;
        let id: i64 = sqlx::query(
            "INSERT INTO inbounds (tag, protocol, config) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(&c.tag)
        .bind(protocol(&c))
        .bind(&json)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db::conflict(e, "config.tag", &c.tag))?
        .try_get("id")
        .map_err(ApiError::from)?;
        let turn = engine_takes(&state, &mut tx, turn).await?;
        tx.commit().await.map_err(ApiError::from)?;
        drop(turn);
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "inbound.create",
            &c.tag,
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        // Stored: the users on it, and those of other instances' changes, are given again.
        apply(&state).await?;
        Ok(Json(load(&state, id).await?))
    }

    /// Replace an inbound's configuration (sudo only). Connections on it are closed if its
    /// listener or protocol settings change.
    #[oai(path = "/:id", method = "put")]
    async fn modify(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        id: Path<i64>,
        body: Json<InboundInput>,
    ) -> ApiResult<Json<Inbound>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        load(&state, *id).await?;
        let c = parse(&body.config)?;
        let json = serde_json::to_string(&c).map_err(|e| ApiError::Internal(e.into()))?;
        let turn = std::sync::Arc::clone(&state.sync_turn).lock_owned().await;
        let mut tx = state.db.pool.begin().await.map_err(ApiError::from)?;
        let found =
            sqlx::query("UPDATE inbounds SET tag = $1, protocol = $2, config = $3 WHERE id = $4")
                .bind(&c.tag)
                .bind(protocol(&c))
                .bind(&json)
                .bind(*id)
                .execute(&mut *tx)
                .await
                .map_err(|e| db::conflict(e, "config.tag", &c.tag))?
                .rows_affected();
        if found == 0 {
            return Err(ApiError::NotFound(format!("inbound {}", *id)).into());
        }
        let turn = engine_takes(&state, &mut tx, turn).await?;
        tx.commit().await.map_err(ApiError::from)?;
        drop(turn);
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "inbound.modify",
            &c.tag,
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        // Stored: the users on it, and those of other instances' changes, are given again.
        apply(&state).await?;
        Ok(Json(load(&state, *id).await?))
    }

    /// Delete an inbound (sudo only); its listener and connections close.
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        id: Path<i64>,
    ) -> ApiResult<Json<bool>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        let old = load(&state, *id).await?;
        sqlx::query("DELETE FROM inbounds WHERE id = $1")
            .bind(*id)
            .execute(&state.db.pool)
            .await
            .map_err(ApiError::from)?;
        apply(&state).await?;
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "inbound.delete",
            &old.tag,
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(true))
    }
}
