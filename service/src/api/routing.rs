//! `/api/settings/routing`: the engine's routing rules (docs/rules.md), one JSON object kept
//! in the `settings` table and given to the engine whole.
//!
//! ```text
//!  PUT ─► parse (field paths) ─► compile (as the engine would) ─► store ─► engine.set_routing
//!                                                                   ▲            │ refused
//!                                                                   └─ restore ◄─┘
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

async fn store(db: &Db, json: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = $2",
    )
    .bind(SETTING)
    .bind(json)
    .execute(&db.pool)
    .await
    .map(drop)
}

/// Puts `previous` back in place of `ours`, if `ours` is still what is stored.
async fn restore(db: &Db, ours: &str, previous: Option<&str>) -> Result<(), sqlx::Error> {
    match previous {
        Some(previous) => {
            sqlx::query("UPDATE settings SET value = $1 WHERE key = $2 AND value = $3")
                .bind(previous)
                .bind(SETTING)
                .bind(ours)
                .execute(&db.pool)
                .await
                .map(drop)
        }
        None => sqlx::query("DELETE FROM settings WHERE key = $1 AND value = $2")
            .bind(SETTING)
            .bind(ours)
            .execute(&db.pool)
            .await
            .map(drop),
    }
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
        // Store and apply in one turn, so that two saves here reach the engine in the order
        // they were stored.
        let _turn = state.sync_turn.lock().await;
        let previous = db::setting(&state.db, SETTING)
            .await
            .map_err(ApiError::from)?;
        store(&state.db, &json).await.map_err(ApiError::from)?;
        if let Err(e) = crate::sync::apply_routing(&state).await {
            // Put the previous rules back, unless another instance stored others meanwhile.
            restore(&state.db, &json, previous.as_deref())
                .await
                .map_err(ApiError::from)?;
            return Err(match e.downcast::<engine::EngineError>() {
                Ok(engine::EngineError::Config(
                    engine::ConfigError::Invalid { field, message }
                    | engine::ConfigError::Parse { field, message },
                )) => ApiError::invalid(field.trim_start_matches("routing."), message),
                Ok(other) => ApiError::Internal(other.into()),
                Err(e) => ApiError::Internal(e),
            }
            .into());
        }
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
