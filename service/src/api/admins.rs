//! `/api/admins`: tokens and admin accounts.

use poem::web::RemoteAddr;
use poem_openapi::param::Path;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use crate::auth::{self, AdminAuth};
use crate::db::{self, AdminValues};
use crate::error::{ApiError, ApiResult};
use crate::model::{Admin, AdminCreate, AdminModify, Token};
use crate::serve::{now, valid_name, AppState};

/// The OAuth2 password form.
#[derive(Debug, Object, serde::Deserialize)]
pub struct LoginForm {
    /// Admin name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Admin endpoints.
pub struct AdminApi;

async fn view(state: &AppState, row: db::AdminRow) -> Result<Admin, ApiError> {
    let service_ids = db::admin_services(&state.db, row.id).await?;
    Ok(Admin {
        username: row.username,
        is_sudo: row.is_sudo,
        enabled: row.enabled,
        read_only: row.read_only,
        all_services_access: row.all_services_access,
        modify_users_access: row.modify_users_access,
        service_ids,
    })
}

#[OpenApi(prefix_path = "/admins", tag = "ApiTags::Admins")]
impl AdminApi {
    /// Log in: exchange a name and password for a bearer token. Failed logins are throttled
    /// per client address (an IPv6 address's /64) and admin name: 5 per 5 minutes.
    #[oai(path = "/token", method = "post")]
    async fn token(
        &self,
        state: poem::web::Data<&AppState>,
        remote: &RemoteAddr,
        form: Form<LoginForm>,
    ) -> ApiResult<Json<Token>> {
        // The connection's peer address: headers such as X-Forwarded-For are the client's to
        // choose, so trusting them would let anyone escape throttling.
        let client = remote
            .as_socket_addr()
            .map(|a| auth::client_of(a.ip()))
            .unwrap_or_default();
        let now = now();
        auth::take_attempt(&state.db, &client, &form.username, now).await?;
        let admin = db::admin_by_name(&state.db, &form.username)
            .await
            .map_err(ApiError::from)?;
        let ok = match &admin {
            Some(a) if a.enabled => {
                auth::verify_password(form.password.clone(), a.password_hash.clone()).await
            }
            _ => {
                auth::verify_decoy(form.password.clone()).await;
                false
            }
        };
        // A failure stays counted.
        let Some(admin) = admin.filter(|_| ok) else {
            return Err(ApiError::Unauthorized("incorrect username or password".into()).into());
        };
        auth::forgive(&state.db, &client, &form.username)
            .await
            .map_err(ApiError::from)?;
        let token = auth::issue_token(
            &state.jwt_secret,
            &admin,
            now,
            state.config.token_ttl.as_secs() as i64,
        )
        .map_err(ApiError::from)?;
        Ok(Json(Token {
            access_token: token,
            token_type: "bearer".into(),
            is_sudo: admin.is_sudo,
        }))
    }

    /// The admin the token belongs to.
    #[oai(path = "/current", method = "get")]
    async fn current(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
    ) -> ApiResult<Json<Admin>> {
        Ok(Json(view(&state, auth.0.admin).await?))
    }

    /// Every admin (sudo only).
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
    ) -> ApiResult<Json<Vec<Admin>>> {
        auth.0.require_sudo()?;
        let mut out = Vec::new();
        for row in db::admins(&state.db).await.map_err(ApiError::from)? {
            out.push(view(&state, row).await?);
        }
        Ok(Json(out))
    }

    /// Create an admin (sudo only).
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        body: Json<AdminCreate>,
    ) -> ApiResult<Json<Admin>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        valid_name("username", &body.username)?;
        auth::check_password_strength(&body.password)?;
        let hash = auth::hash_password(body.password.clone())
            .await
            .map_err(ApiError::from)?;
        let now = now();
        let values = AdminValues {
            username: &body.username,
            password_hash: &hash,
            is_sudo: body.is_sudo,
            enabled: true,
            read_only: body.read_only,
            all_services_access: body.all_services_access,
            modify_users_access: body.modify_users_access,
            password_changed_at: now,
        };
        db::insert_admin(&state.db, &values, &body.service_ids, now).await?;
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "admin.create",
            &body.username,
            now,
        )
        .await
        .map_err(ApiError::from)?;
        let row = db::admin_by_name(&state.db, &body.username)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("admin {:?}", body.username)))?;
        Ok(Json(view(&state, row).await?))
    }

    /// Change an admin (sudo; any admin may change their own password).
    #[oai(path = "/:username", method = "put")]
    async fn modify(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
        body: Json<AdminModify>,
    ) -> ApiResult<Json<Admin>> {
        let me = &auth.0.admin;
        let only_own_password = me.username == *username
            && body.is_sudo.is_none()
            && body.enabled.is_none()
            && body.read_only.is_none()
            && body.all_services_access.is_none()
            && body.modify_users_access.is_none()
            && body.service_ids.is_none();
        if !only_own_password {
            auth.0.require_sudo()?;
            auth.0.require_write()?;
        }
        // Hashing is slow: done before the row is read and held.
        let new_hash = match &body.password {
            Some(p) => {
                auth::check_password_strength(p)?;
                Some(
                    auth::hash_password(p.clone())
                        .await
                        .map_err(ApiError::from)?,
                )
            }
            None => None,
        };
        let now = now();
        // Decided from the row as it is in the transaction (held until it ends), so that a
        // concurrent change (a sudo disabling the admin, say) is neither undone nor lost.
        let mut tx = state.db.pool.begin().await.map_err(ApiError::from)?;
        let row = db::admin_by_name_in(&mut tx, state.db.backend, &username)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("admin {:?}", *username)))?;
        // A new password, or the admin disabled: every token issued before is void (also
        // once the admin is enabled again). Strictly later than before, so that tokens issued
        // in the same second as the previous change are void too.
        let voids = new_hash.is_some() || (body.enabled == Some(false) && row.enabled);
        let changed_at = if voids {
            now.max(row.password_changed_at + 1)
        } else {
            row.password_changed_at
        };
        let values = AdminValues {
            username: &row.username,
            password_hash: new_hash.as_deref().unwrap_or(&row.password_hash),
            is_sudo: body.is_sudo.unwrap_or(row.is_sudo),
            enabled: body.enabled.unwrap_or(row.enabled),
            read_only: body.read_only.unwrap_or(row.read_only),
            all_services_access: body.all_services_access.unwrap_or(row.all_services_access),
            modify_users_access: body.modify_users_access.unwrap_or(row.modify_users_access),
            password_changed_at: changed_at,
        };
        db::update_admin(&mut tx, row.id, &values, body.service_ids.as_deref()).await?;
        tx.commit().await.map_err(ApiError::from)?;
        db::audit(&state.db, &me.username, "admin.modify", &username, now)
            .await
            .map_err(ApiError::from)?;
        let row = db::admin_by_name(&state.db, &username)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("admin {:?}", *username)))?;
        Ok(Json(view(&state, row).await?))
    }

    /// Delete an admin (sudo only; not yourself). Their users stay, without an owner.
    #[oai(path = "/:username", method = "delete")]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
    ) -> ApiResult<Json<bool>> {
        auth.0.require_sudo()?;
        auth.0.require_write()?;
        if auth.0.admin.username == *username {
            return Err(ApiError::invalid("username", "an admin cannot delete themselves").into());
        }
        let row = db::admin_by_name(&state.db, &username)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("admin {:?}", *username)))?;
        if !db::delete_admin(&state.db, row.id)
            .await
            .map_err(ApiError::from)?
        {
            // Deleted meanwhile.
            return Err(ApiError::NotFound(format!("admin {:?}", *username)).into());
        }
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "admin.delete",
            &username,
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Json(true))
    }
}
