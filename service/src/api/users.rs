//! `/api/users`: proxy users.

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, OpenApi};
use rand::RngCore;
use sqlx::Row;

use super::ApiTags;
use crate::auth::{AdminAuth, AuthedAdmin};
use crate::db::{self, UserRow, USER_COLS};
use crate::error::{ApiError, ApiResult};
use crate::model::{
    ExpireStrategy, UsageBucket, User, UserCreate, UserModify, UserPage, UserStatus,
};
use crate::serve::{now, valid_name, AppState};
use crate::sync;
use crate::webhooks::{self, Event};

/// Sort orders for the user list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum UserOrder {
    /// Newest first.
    CreatedDesc,
    /// Oldest first.
    CreatedAsc,
    /// By name.
    Username,
    /// Most traffic first.
    UsedTrafficDesc,
}

/// User endpoints.
pub struct UserApi;

fn new_key() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Loads a user the admin may see, or 404.
async fn visible(
    state: &AppState,
    admin: &AuthedAdmin,
    username: &str,
) -> Result<UserRow, ApiError> {
    let row = db::user_by_name(&state.db, username).await?;
    row.filter(|u| admin.sees_owner(u.admin_id))
        .ok_or_else(|| ApiError::NotFound(format!("user {username:?}")))
}

async fn api_view(state: &AppState, row: UserRow) -> Result<User, ApiError> {
    let mut services = db::user_services(&state.db, &[row.id]).await?;
    let s = services.remove(&row.id).unwrap_or_default();
    Ok(row.into_api(s, now()))
}

fn check_services(admin: &AuthedAdmin, ids: &[i64]) -> Result<(), ApiError> {
    if let Some(id) = ids.iter().find(|&&id| !admin.may_use_service(id)) {
        return Err(ApiError::Forbidden(format!(
            "this admin may not use service {id}"
        )));
    }
    Ok(())
}

/// Latest time a user's dates may name: the end of year 9999, Unix seconds. Bounding the
/// dates and the duration keeps every sum and difference of them far from `i64`'s range, in
/// Rust and in SQL alike.
const MAX_TIME: i64 = 253_402_300_799;

/// What a time outside `0..=MAX_TIME` is told.
const OUT_OF_RANGE: &str = "must be a Unix time in seconds between 0 and 253402300799 (year 9999)";

/// Longest `usage_duration`: 1000 years, in seconds.
const MAX_DURATION: i64 = 1000 * 366 * 86_400;

/// Checks the fields each expire strategy needs, and that dates and durations are in range.
fn check_expiry(
    strategy: ExpireStrategy,
    expire_date: Option<i64>,
    usage_duration: Option<i64>,
    activation_deadline: Option<i64>,
    data_limit: Option<i64>,
) -> Result<(), ApiError> {
    if data_limit.is_some_and(|l| l < 0) {
        return Err(ApiError::invalid("data_limit", "must not be negative"));
    }
    if expire_date.is_some_and(|t| !(0..=MAX_TIME).contains(&t)) {
        return Err(ApiError::invalid("expire_date", OUT_OF_RANGE));
    }
    if activation_deadline.is_some_and(|t| !(0..=MAX_TIME).contains(&t)) {
        return Err(ApiError::invalid("activation_deadline", OUT_OF_RANGE));
    }
    if usage_duration.is_some_and(|d| d > MAX_DURATION) {
        return Err(ApiError::invalid(
            "usage_duration",
            "must be at most 31622400000 seconds (1000 years)",
        ));
    }
    match strategy {
        ExpireStrategy::FixedDate if expire_date.is_none() => Err(ApiError::invalid(
            "expire_date",
            "required when expire_strategy is fixed_date",
        )),
        ExpireStrategy::StartOnFirstUse if usage_duration.is_none_or(|d| d <= 0) => {
            Err(ApiError::invalid(
                "usage_duration",
                "a positive number of seconds is required for start_on_first_use",
            ))
        }
        _ => Ok(()),
    }
}

async fn push(state: &AppState, id: i64) -> Result<(), ApiError> {
    sync::user(state, id).await.map_err(ApiError::Internal)
}

/// A query with the list's filter arguments bound: the search pattern (if any) first, then
/// the integers.
fn bind_args<'q>(
    q: &'q str,
    text: Option<&str>,
    ints: &[i64],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query(q);
    if let Some(p) = text {
        query = query.bind(p.to_owned());
    }
    for &a in ints {
        query = query.bind(a);
    }
    query
}

#[OpenApi(prefix_path = "/users", tag = "ApiTags::Users")]
impl UserApi {
    /// Users this admin may see, filtered, sorted and paginated.
    #[oai(path = "/", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        /// Part of the name.
        username: Query<Option<String>>,
        /// Only users in this status.
        status: Query<Option<UserStatus>>,
        /// Sort order.
        order: Query<Option<UserOrder>>,
        /// Page, from 1.
        page: Query<Option<i64>>,
        /// Page size, 1 to 500 (default 50).
        size: Query<Option<i64>>,
    ) -> ApiResult<Json<UserPage>> {
        let page = page.0.unwrap_or(1);
        let size = size.0.unwrap_or(50);
        if page < 1 {
            return Err(ApiError::invalid("page", "must be at least 1").into());
        }
        if !(1..=500).contains(&size) {
            return Err(ApiError::invalid("size", "must be between 1 and 500").into());
        }
        let order_sql = match order.0.unwrap_or(UserOrder::CreatedDesc) {
            UserOrder::CreatedDesc => "u.id DESC",
            UserOrder::CreatedAsc => "u.id ASC",
            UserOrder::Username => "u.username ASC",
            UserOrder::UsedTrafficDesc => "u.used_traffic DESC, u.id DESC",
        };
        // The filter, the count, the order and the page are all done by the database.
        let now = now();
        let mut conds: Vec<String> = Vec::new();
        let mut text_arg: Option<String> = None;
        let mut int_args: Vec<i64> = Vec::new();
        let search = username.0.unwrap_or_default();
        if !search.is_empty() {
            // Case-insensitive on both databases; `%`, `_` and `\` in the search are literal.
            let mut pattern = String::from("%");
            for c in search.to_lowercase().chars() {
                if matches!(c, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            text_arg = Some(pattern);
            conds.push("LOWER(u.username) LIKE $1 ESCAPE '\\'".to_owned());
        }
        let first_int = 1 + usize::from(text_arg.is_some());
        if !auth.0.admin.is_sudo {
            int_args.push(auth.0.admin.id);
            conds.push(format!("u.admin_id = ${}", first_int + int_args.len() - 1));
        }
        if let Some(s) = status.0 {
            int_args.push(now);
            conds.push(db::status_sql(
                s,
                &format!("${}", first_int + int_args.len() - 1),
            ));
        }
        let where_sql = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let bind_all = |q| bind_args(q, text_arg.as_deref(), &int_args);
        let count_q = format!("SELECT COUNT(*) AS n FROM users u{where_sql}");
        let limit_at = first_int + int_args.len();
        // The page is cut from `users` alone; only its rows are joined with their owners.
        let page_q = format!(
            "SELECT {USER_COLS} FROM (SELECT * FROM users u{where_sql} ORDER BY {order_sql} \
             LIMIT ${limit_at} OFFSET ${}) u LEFT JOIN admins a ON a.id = u.admin_id \
             ORDER BY {order_sql}",
            limit_at + 1
        );
        // The count and the page go out at once, on two connections: one round trip of
        // waiting instead of two.
        let count = async {
            bind_all(&count_q)
                .fetch_one(&state.db.reader)
                .await
                .and_then(|r| r.try_get::<i64, _>("n"))
        };
        let rows = bind_all(&page_q)
            .bind(size)
            .bind((page - 1).saturating_mul(size))
            .fetch_all(&state.db.reader);
        let (total, rows) = tokio::try_join!(count, rows).map_err(ApiError::from)?;
        let items: Vec<UserRow> = rows
            .iter()
            .map(UserRow::from_row)
            .collect::<Result<_, _>>()
            .map_err(ApiError::from)?;
        let ids: Vec<i64> = items.iter().map(|u| u.id).collect();
        let mut services = db::user_services(&state.db, &ids)
            .await
            .map_err(ApiError::from)?;
        let items = items.into_iter().map(|u| {
            let s = services.remove(&u.id).unwrap_or_default();
            u.into_api(s, now)
        });
        Ok(Json(UserPage {
            items: items.collect(),
            total,
            page,
            size,
        }))
    }

    /// Create a user owned by this admin.
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        body: Json<UserCreate>,
    ) -> ApiResult<Json<User>> {
        auth.0.require_user_write()?;
        valid_name("username", &body.username)?;
        check_expiry(
            body.expire_strategy,
            body.expire_date,
            body.usage_duration,
            body.activation_deadline,
            body.data_limit,
        )?;
        check_services(&auth.0, &body.service_ids)?;
        let now = now();
        let mut tx = state.db.pool.begin().await.map_err(ApiError::from)?;
        let id: i64 = sqlx::query(
            "INSERT INTO users (username, key, enabled, data_limit, data_limit_reset_strategy, expire_strategy, \
             expire_date, usage_duration, activation_deadline, note, admin_id, created_at, webhook_status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(&body.username)
        .bind(new_key())
        .bind(body.enabled as i64)
        .bind(body.data_limit.filter(|&l| l > 0))
        .bind(body.data_limit_reset_strategy.as_str())
        .bind(body.expire_strategy.as_str())
        .bind(body.expire_date)
        .bind(body.usage_duration)
        .bind(body.activation_deadline)
        .bind(body.note.clone())
        .bind(auth.0.admin.id)
        .bind(now)
        .bind(initial_webhook_status(&body, now))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db::conflict(e, "username", &body.username))?
        .try_get("id")
        .map_err(ApiError::from)?;
        db::add_new_user_services(&mut tx, id, &body.service_ids).await?;
        webhooks::enqueue_for(&mut tx, Event::Created, id)
            .await
            .map_err(ApiError::from)?;
        db::audit_in(
            &mut tx,
            &auth.0.admin.username,
            "user.create",
            &body.username,
            now,
        )
        .await
        .map_err(ApiError::from)?;
        tx.commit().await.map_err(ApiError::from)?;
        pushed_view(&state, &auth.0, &body.username).await
    }

    /// One user.
    #[oai(path = "/:username", method = "get")]
    async fn get(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
    ) -> ApiResult<Json<User>> {
        let row = visible(&state, &auth.0, &username).await?;
        Ok(Json(api_view(&state, row).await?))
    }

    /// Change a user.
    #[oai(path = "/:username", method = "put")]
    async fn modify(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
        body: Json<UserModify>,
    ) -> ApiResult<Json<User>> {
        auth.0.require_user_write()?;
        // The row is read in the transaction that writes it: a change made meanwhile (a
        // disable, a delete) is neither undone by this one's unchanged fields nor a 500.
        let mut tx = state.db.pool.begin().await.map_err(ApiError::from)?;
        let row = db::user_by_name_in(&mut tx, state.db.backend, &username)
            .await
            .map_err(ApiError::from)?
            .filter(|u| auth.0.sees_owner(u.admin_id))
            .ok_or_else(|| ApiError::NotFound(format!("user {:?}", username.0)))?;
        let strategy = body.expire_strategy.unwrap_or(row.expire_strategy);
        let expire_date = body.expire_date.or(row.expire_date);
        let usage_duration = body.usage_duration.or(row.usage_duration);
        let data_limit = match body.data_limit {
            Some(0) => None,
            Some(l) => Some(l),
            None => row.data_limit,
        };
        let activation_deadline = body.activation_deadline.or(row.activation_deadline);
        check_expiry(
            strategy,
            expire_date,
            usage_duration,
            activation_deadline,
            data_limit,
        )?;
        if let Some(s) = &body.service_ids {
            check_services(&auth.0, s)?;
        }
        sqlx::query(
            "UPDATE users SET data_limit = $1, data_limit_reset_strategy = $2, expire_strategy = $3, expire_date = $4, \
             usage_duration = $5, activation_deadline = $6, note = $7, enabled = $8 WHERE id = $9",
        )
        .bind(data_limit)
        .bind(body.data_limit_reset_strategy.unwrap_or(row.reset_strategy).as_str())
        .bind(strategy.as_str())
        .bind(expire_date)
        .bind(usage_duration)
        .bind(activation_deadline)
        .bind(body.note.clone().or(row.note.clone()))
        .bind(body.enabled.unwrap_or(row.enabled) as i64)
        .bind(row.id)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::from)?;
        if let Some(s) = &body.service_ids {
            db::set_user_services(&mut tx, row.id, s).await?;
        }
        webhooks::enqueue_for(&mut tx, Event::Updated, row.id)
            .await
            .map_err(ApiError::from)?;
        tx.commit().await.map_err(ApiError::from)?;
        changed(&state, &auth.0, &username, "user.modify").await
    }

    /// Delete a user (their connections close at once).
    #[oai(path = "/:username", method = "delete")]
    async fn delete(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
    ) -> ApiResult<Json<bool>> {
        auth.0.require_user_write()?;
        // Read in the transaction and held until it ends: of two deletes at once, one finds
        // the user and announces it, the other gets 404.
        let mut tx = state.db.pool.begin().await.map_err(ApiError::from)?;
        let row = db::user_by_name_in(&mut tx, state.db.backend, &username)
            .await
            .map_err(ApiError::from)?
            .filter(|u| auth.0.sees_owner(u.admin_id))
            .ok_or_else(|| ApiError::NotFound(format!("user {:?}", *username)))?;
        webhooks::enqueue(&mut tx, Event::Deleted, &row)
            .await
            .map_err(ApiError::from)?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(row.id)
            .execute(&mut *tx)
            .await
            .map_err(ApiError::from)?;
        tx.commit().await.map_err(ApiError::from)?;
        db::audit(
            &state.db,
            &auth.0.admin.username,
            "user.delete",
            &username,
            now(),
        )
        .await
        .map_err(ApiError::from)?;
        push(&state, row.id).await?;
        Ok(Json(true))
    }

    /// Enable a user.
    #[oai(path = "/:username/enable", method = "post")]
    async fn enable(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
    ) -> ApiResult<Json<User>> {
        set_enabled(&state, &auth.0, &username, true).await
    }

    /// Disable a user (their connections close at once).
    #[oai(path = "/:username/disable", method = "post")]
    async fn disable(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
    ) -> ApiResult<Json<User>> {
        set_enabled(&state, &auth.0, &username, false).await
    }

    /// Reset a user's used traffic to zero.
    #[oai(path = "/:username/reset", method = "post")]
    async fn reset(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
    ) -> ApiResult<Json<User>> {
        auth.0.require_user_write()?;
        let row = visible(&state, &auth.0, &username).await?;
        let update =
            sqlx::query("UPDATE users SET used_traffic = 0, traffic_reset_at = $1, webhook_threshold = 0 WHERE id = $2")
                .bind(now())
                .bind(row.id);
        with_event(&state, update, Event::Reset, row.id).await?;
        changed(&state, &auth.0, &username, "user.reset").await
    }

    /// Give the user a new key: old subscription links and credentials stop working.
    #[oai(path = "/:username/revoke_sub", method = "post")]
    async fn revoke(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
    ) -> ApiResult<Json<User>> {
        auth.0.require_user_write()?;
        let row = visible(&state, &auth.0, &username).await?;
        let update = sqlx::query("UPDATE users SET key = $1, sub_revoked_at = $2 WHERE id = $3")
            .bind(new_key())
            .bind(now())
            .bind(row.id);
        with_event(&state, update, Event::Updated, row.id).await?;
        changed(&state, &auth.0, &username, "user.revoke_sub").await
    }

    /// Hourly usage of a user between two times (Unix seconds; default: the last 24 hours).
    ///
    /// `start` and `end` are from 0 to 253402300799 (the end of year 9999).
    #[oai(path = "/:username/usage", method = "get")]
    async fn usage(
        &self,
        state: poem::web::Data<&AppState>,
        auth: AdminAuth,
        username: Path<String>,
        start: Query<Option<i64>>,
        end: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<UsageBucket>>> {
        // In range, the arithmetic below cannot overflow.
        for (field, t) in [("start", start.0), ("end", end.0)] {
            if t.is_some_and(|t| !(0..=MAX_TIME).contains(&t)) {
                return Err(ApiError::invalid(field, OUT_OF_RANGE).into());
            }
        }
        let row = visible(&state, &auth.0, &username).await?;
        let end = end.0.unwrap_or_else(now);
        let start = start.0.unwrap_or(end - 86_400);
        let rows = sqlx::query(
            "SELECT hour, uplink, downlink FROM usage_hourly WHERE user_id = $1 AND hour >= $2 AND hour <= $3 ORDER BY hour",
        )
        .bind(row.id)
        .bind(start - start.rem_euclid(3600))
        .bind(end)
        .fetch_all(&state.db.pool)
        .await
        .map_err(ApiError::from)?;
        Ok(Json(UsageBucket::from_rows(&rows).map_err(ApiError::from)?))
    }
}

async fn set_enabled(
    state: &AppState,
    admin: &AuthedAdmin,
    username: &str,
    enabled: bool,
) -> ApiResult<Json<User>> {
    admin.require_user_write()?;
    let row = visible(state, admin, username).await?;
    let update = sqlx::query("UPDATE users SET enabled = $1 WHERE id = $2")
        .bind(enabled as i64)
        .bind(row.id);
    let (action, event) = if enabled {
        ("user.enable", Event::Enabled)
    } else {
        ("user.disable", Event::Disabled)
    };
    with_event(state, update, event, row.id).await?;
    changed(state, admin, username, action).await
}

/// Runs `update` on user `user_id` and records `event` about them, in one transaction.
async fn with_event<'q>(
    state: &AppState,
    update: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    event: Event,
    user_id: i64,
) -> Result<(), ApiError> {
    let mut tx = state.db.pool.begin().await?;
    update.execute(&mut *tx).await?;
    webhooks::enqueue_for(&mut tx, event, user_id).await?;
    tx.commit().await?;
    Ok(())
}

/// After a change to `username`: audit it, push the user to the engine, return the new view.
async fn changed(
    state: &AppState,
    admin: &AuthedAdmin,
    username: &str,
    action: &str,
) -> ApiResult<Json<User>> {
    db::audit(&state.db, &admin.admin.username, action, username, now())
        .await
        .map_err(ApiError::from)?;
    pushed_view(state, admin, username).await
}

/// Pushes a changed user to the engine and answers with their view, reading their row once.
async fn pushed_view(
    state: &AppState,
    admin: &AuthedAdmin,
    username: &str,
) -> ApiResult<Json<User>> {
    let row = {
        // Read and pushed in one turn (`AppState::sync_turn`).
        let _turn = state.sync_turn.lock().await;
        let row = visible(state, admin, username).await?;
        let tags = db::inbound_tags_of_users(&state.db, &[row.id])
            .await
            .map_err(ApiError::from)?;
        sync::apply_users(state, std::slice::from_ref(&row), &tags)
            .await
            .map_err(ApiError::Internal)?;
        row
    };
    Ok(Json(api_view(state, row).await?))
}

/// What enforcement's announcements would record for a user created from `body` at `now`
/// (`webhooks::announce_status`): a status with no event of its own (active, on hold,
/// disabled) is stored with the new row, so the next pass has nothing to do for them; limited
/// or expired stays unset, for that pass to announce. The threshold stays 0: nothing is used.
fn initial_webhook_status(body: &UserCreate, now: i64) -> Option<&'static str> {
    let row = UserRow {
        id: 0,
        username: String::new(),
        key: String::new(),
        enabled: body.enabled,
        data_limit: body.data_limit.filter(|&l| l > 0),
        used_traffic: 0,
        lifetime_used_traffic: 0,
        reset_strategy: body.data_limit_reset_strategy,
        traffic_reset_at: None,
        expire_strategy: body.expire_strategy,
        expire_date: body.expire_date,
        usage_duration: body.usage_duration,
        activation_deadline: body.activation_deadline,
        activated_at: None,
        note: None,
        admin_id: None,
        owner_username: None,
        sub_updated_at: None,
        sub_last_user_agent: None,
        online_at: None,
        created_at: now,
    };
    match row.status(now) {
        s @ (UserStatus::Active | UserStatus::OnHold | UserStatus::Disabled) => Some(s.as_str()),
        UserStatus::Limited | UserStatus::Expired => None,
    }
}
