//! `/api/settings/routing`: the engine's routing rules (docs/rules.md), one JSON object kept
//! in the `settings` table and given to the engine whole.
//!
//! ```text
//!  PUT ─► parse (field paths) ─► compile (as the engine would) ─► BEGIN; store
//!        ─► engine.set_routing ─► COMMIT          (refused: ROLLBACK, 422 naming the field)
//! ```
//!
//! A change bumps `config_revision` (the `settings` trigger of migration 0005), so every other
//! panel instance on the same database gives its engine the new rules at its next usage pass
//! ([`crate::sync::full`]). Only sudo admins read or change them: rules name users of every
//! admin.

use engine::rules::{RuleSet, RulesConfig};
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;

use super::ApiTags;
use crate::auth::AdminAuth;
use crate::db::{self, Db};
use crate::error::{ApiError, ApiResult};
use crate::serve::{now, AppState};

/// The `settings` key holding the rules (JSON).
const SETTING: &str = "routing";

/// The stored rules; `None` when none were ever stored (only the engine's built-in block of
/// special ranges applies).
pub async fn load(db: &Db) -> anyhow::Result<Option<RulesConfig>> {
    match db::setting(db, SETTING).await? {
        None => Ok(None),
        Some(json) => Ok(Some(serde_json::from_str(&json).map_err(|e| {
            anyhow::anyhow!("stored routing rules do not parse: {e}")
        })?)),
    }
}

async fn store(tx: &mut sqlx::Transaction<'_, sqlx::Any>, json: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = $2",
    )
    .bind(SETTING)
    .bind(json)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Parses `value` as a rules object and compiles it as the engine would (reading the GeoIP
/// database if one is named); an error names the field, relative to the rules object.
async fn check(value: serde_json::Value) -> Result<RulesConfig, ApiError> {
    // serde would take an array for a struct: refuse anything but an object here.
    if !value.is_object() {
        return Err(ApiError::invalid("routing", "must be a JSON object"));
    }
    let rules: RulesConfig = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        let field = match path.as_str() {
            "." | "" => "routing".to_owned(),
            p => p.to_owned(),
        };
        ApiError::invalid(&field, e.inner().to_string())
    })?;
    let compiled = rules.clone();
    tokio::task::spawn_blocking(move || {
        RuleSet::compile(&compiled, engine::outbound::DestinationPolicy::default()).map(drop)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .map_err(|e| ApiError::invalid(&e.field, e.message))?;
    Ok(rules)
}

/// The rules as stored, or the defaults (no rules, `default: allow`).
async fn current(state: &AppState) -> Result<serde_json::Value, ApiError> {
    let rules = load(&state.db).await?.unwrap_or_default();
    serde_json::to_value(rules).map_err(|e| ApiError::Internal(e.into()))
}

/// Routing endpoints.
pub struct RoutingApi;

#[OpenApi(prefix_path = "/settings", tag = "ApiTags::System")]
impl RoutingApi {
    /// The routing rules (sudo admins only): the engine's rules object, as docs/rules.md
    /// describes it. `{"default": "allow"}` when none are set.
    #[oai(path = "/routing", method = "get")]
    async fn get_routing(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
    ) -> ApiResult<Json<serde_json::Value>> {
        auth.0.require_sudo()?;
        Ok(Json(current(&state).await?))
    }

    /// Replace the routing rules (sudo admins that are not read-only) with a rules object as
    /// docs/rules.md describes it (`rules`, `default`, `timezone`, `geoip_database`). New
    /// connections and every UDP packet from now on are decided by them; a TCP connection
    /// already relaying keeps its destination. Rules that do not compile get 422 naming the
    /// field (`rules[2].ports[0]`) and change nothing. `{}` removes every rule.
    #[oai(path = "/routing", method = "put")]
    async fn put_routing(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        body: Json<serde_json::Value>,
    ) -> ApiResult<Json<serde_json::Value>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        let rules = check(body.0).await?;
        let json = serde_json::to_string(&rules).map_err(|e| ApiError::Internal(e.into()))?;
        // Stored and given in one turn, so that two saves here reach the engine in the order
        // they were stored, and no full sync gives the engine the stored rules in between.
        let turn = std::sync::Arc::clone(&state.sync_turn).lock_owned().await;
        let mut tx = state.db.pool.begin().await.map_err(ApiError::from)?;
        store(&mut tx, &json).await.map_err(ApiError::from)?;
        // The engine takes the rules before they are committed, so that rules it refuses are
        // never stored; should they then not be stored after all (the commit fails, or the
        // request is dropped), the next usage pass gives it the stored ones again.
        let was = state.routing.mark_stale();
        let engine = state.engine.clone();
        let (taken, turn) =
            tokio::task::spawn_blocking(move || (engine.set_routing(Some(rules)), turn))
                .await
                .map_err(|e| ApiError::Internal(e.into()))?;
        if let Err(e) = taken {
            // Refused: the engine holds what it held; the transaction, dropped, stores nothing.
            state.routing.restore(was);
            return Err(match e {
                engine::EngineError::Config(
                    engine::ConfigError::Invalid { field, message }
                    | engine::ConfigError::Parse { field, message },
                ) => ApiError::invalid(field.trim_start_matches("routing."), message),
                other => ApiError::Internal(other.into()),
            }
            .into());
        }
        tx.commit().await.map_err(ApiError::from)?;
        state.routing.mark_current();
        drop(turn);
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "settings.routing.modify",
            "routing",
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(current(&state).await?))
    }
}
