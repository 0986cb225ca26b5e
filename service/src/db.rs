//! The data layer: one pool over SQLite or PostgreSQL (sqlx `Any`), embedded migrations for
//! each, and the queries the API and background tasks use. SQL here is written once for both
//! databases: `$n` placeholders, integers for times (Unix seconds) and flags (0/1).

use std::collections::HashMap;

use anyhow::Context as _;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::error::ApiError;
use crate::model::{ExpireStrategy, ResetStrategy, User, UserStatus};

/// Which database is behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (the embedded default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The database.
#[derive(Clone)]
pub struct Db {
    /// The pool: every write, and reads that must be in a transaction with one.
    pub pool: AnyPool,
    /// For reads on their own: on SQLite, separate connections that read while the one
    /// writing connection is busy (WAL lets readers and a writer run at once); on PostgreSQL,
    /// the same pool.
    pub reader: AnyPool,
    /// Which database it is.
    pub backend: Backend,
}

/// Background jobs that one panel instance at a time runs against a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// Enforcement's database changes: activation deadlines, periodic resets, status and
    /// threshold announcements (`usage::enforce`).
    Enforcement,
    /// Webhook delivery (`webhooks::run`).
    Webhooks,
}

impl Job {
    /// The job's PostgreSQL advisory lock key ("mzn" and a number).
    pub fn lock_key(self) -> i64 {
        match self {
            Job::Enforcement => 0x6d7a_6e00_0001,
            Job::Webhooks => 0x6d7a_6e00_0002,
        }
    }
}

/// Held while this instance runs a [`Job`]. On PostgreSQL it is a transaction holding
/// `pg_try_advisory_xact_lock(job)`: the lock goes when the transaction ends, whether by
/// [`JobLock::release`], by the guard being dropped, or by this process dying (the server
/// ends its session). SQLite serves one panel process, so there the lock is always granted.
pub struct JobLock(Option<sqlx::Transaction<'static, sqlx::Any>>);

impl JobLock {
    /// The lock, or `None` when another instance holds it.
    pub async fn try_acquire(db: &Db, job: Job) -> Result<Option<JobLock>, sqlx::Error> {
        if db.backend == Backend::Sqlite {
            return Ok(Some(JobLock(None)));
        }
        let mut tx = db.pool.begin().await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(job.lock_key())
            .fetch_one(&mut *tx)
            .await?;
        Ok(got.then_some(JobLock(Some(tx))))
    }

    /// Lets another instance take the job.
    pub async fn release(self) {
        if let Some(tx) = self.0 {
            if let Err(e) = tx.rollback().await {
                tracing::debug!("releasing a job lock: {e}");
            }
        }
    }
}

/// SQLite connections that only read (each has a thread of its own in sqlx).
const SQLITE_READERS: u32 = 2;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connects (creating a SQLite file and its folder if needed) and applies migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("DATABASE_URL must start with sqlite: or postgres:");
        };
        if backend == Backend::Sqlite {
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .and_then(|p| p.split('?').next())
            {
                if let Some(dir) = std::path::Path::new(path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("create {}", dir.display()))?;
                }
            }
        }
        let max = if backend == Backend::Sqlite { 1 } else { 16 };
        let mut options = AnyPoolOptions::new().max_connections(max);
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(url)
            .await
            .context("connect to the database")?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        migrator.run(&pool).await.context("apply migrations")?;
        let reader = match backend {
            Backend::Postgres => pool.clone(),
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(SQLITE_READERS)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA query_only = ON")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
                .context("connect to the database for reading")?,
        };
        Ok(Db {
            pool,
            reader,
            backend,
        })
    }
}

/// Turns a unique-constraint violation into 409 naming the field.
pub fn conflict(e: sqlx::Error, field: &str, value: &str) -> ApiError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => ApiError::Conflict {
            field: field.into(),
            value: value.into(),
        },
        _ => e.into(),
    }
}

fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

/// An admin row.
#[derive(Clone, Debug)]
pub struct AdminRow {
    /// Id.
    pub id: i64,
    /// Login.
    pub username: String,
    /// Argon2 PHC string.
    pub password_hash: String,
    /// Sudo.
    pub is_sudo: bool,
    /// Enabled.
    pub enabled: bool,
    /// Read-only.
    pub read_only: bool,
    /// Every service.
    pub all_services_access: bool,
    /// May modify users.
    pub modify_users_access: bool,
    /// When the password last changed (tokens older than this are void).
    pub password_changed_at: i64,
}

impl AdminRow {
    fn from_row(r: &AnyRow) -> Result<AdminRow, sqlx::Error> {
        Ok(AdminRow {
            id: r.try_get("id")?,
            username: r.try_get("username")?,
            password_hash: r.try_get("password_hash")?,
            is_sudo: flag(r, "is_sudo")?,
            enabled: flag(r, "enabled")?,
            read_only: flag(r, "read_only")?,
            all_services_access: flag(r, "all_services_access")?,
            modify_users_access: flag(r, "modify_users_access")?,
            password_changed_at: r.try_get("password_changed_at")?,
        })
    }
}

const ADMIN_COLS: &str = "id, username, password_hash, is_sudo, enabled, read_only, all_services_access, modify_users_access, password_changed_at";

/// Admin by name.
pub async fn admin_by_name(db: &Db, username: &str) -> Result<Option<AdminRow>, sqlx::Error> {
    let q = format!("SELECT {ADMIN_COLS} FROM admins WHERE username = $1");
    sqlx::query(&q)
        .bind(username)
        .fetch_optional(&db.pool)
        .await?
        .map(|r| AdminRow::from_row(&r))
        .transpose()
}

/// Admin by name, read in `tx` and held until it ends (as [`user_by_name_in`]).
pub async fn admin_by_name_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    username: &str,
) -> Result<Option<AdminRow>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    let q = format!("SELECT {ADMIN_COLS} FROM admins WHERE username = $1{lock}");
    sqlx::query(&q)
        .bind(username)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| AdminRow::from_row(&r))
        .transpose()
}

/// Every admin.
pub async fn admins(db: &Db) -> Result<Vec<AdminRow>, sqlx::Error> {
    let q = format!("SELECT {ADMIN_COLS} FROM admins ORDER BY id");
    sqlx::query(&q)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(AdminRow::from_row)
        .collect()
}

/// Number of admins.
pub async fn admin_count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM admins")
        .fetch_one(&db.pool)
        .await?
        .try_get("n")
}

/// An admin by name with the services they may use, in one query (every API request
/// authenticates with it).
pub async fn admin_with_services(
    db: &Db,
    username: &str,
) -> Result<Option<(AdminRow, Vec<i64>)>, sqlx::Error> {
    let q = format!(
        "SELECT {ADMIN_COLS}, s.service_id FROM admins \
         LEFT JOIN admins_services s ON s.admin_id = admins.id \
         WHERE username = $1 ORDER BY s.service_id"
    );
    let rows = sqlx::query(&q).bind(username).fetch_all(&db.reader).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let services = rows
        .iter()
        .map(|r| r.try_get::<Option<i64>, _>("service_id"))
        .filter_map(Result::transpose)
        .collect::<Result<_, _>>()?;
    Ok(Some((AdminRow::from_row(first)?, services)))
}

/// Services an admin may use.
pub async fn admin_services(db: &Db, admin_id: i64) -> Result<Vec<i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT service_id FROM admins_services WHERE admin_id = $1 ORDER BY service_id",
    )
    .bind(admin_id)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(|r| r.try_get("service_id")).collect()
}

/// The values of an admin to insert or store.
pub struct AdminValues<'a> {
    /// Login.
    pub username: &'a str,
    /// Argon2 PHC string.
    pub password_hash: &'a str,
    /// Sudo.
    pub is_sudo: bool,
    /// Enabled.
    pub enabled: bool,
    /// Read-only.
    pub read_only: bool,
    /// Every service.
    pub all_services_access: bool,
    /// May modify users.
    pub modify_users_access: bool,
    /// Password change time.
    pub password_changed_at: i64,
}

/// Inserts an admin with its services; returns its id.
pub async fn insert_admin(
    db: &Db,
    a: &AdminValues<'_>,
    services: &[i64],
    now: i64,
) -> Result<i64, ApiError> {
    let mut tx = db.pool.begin().await?;
    let id: i64 = sqlx::query(
        "INSERT INTO admins (username, password_hash, is_sudo, enabled, read_only, all_services_access, \
         modify_users_access, password_changed_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(a.username)
    .bind(a.password_hash)
    .bind(a.is_sudo as i64)
    .bind(a.enabled as i64)
    .bind(a.read_only as i64)
    .bind(a.all_services_access as i64)
    .bind(a.modify_users_access as i64)
    .bind(a.password_changed_at)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| conflict(e, "username", a.username))?
    .try_get("id")?;
    set_links(&mut tx, "admins_services", "admin_id", id, services).await?;
    tx.commit().await?;
    Ok(id)
}

/// Stores an admin's fields, and their services when given, in `tx`.
pub async fn update_admin(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
    a: &AdminValues<'_>,
    services: Option<&[i64]>,
) -> Result<(), ApiError> {
    sqlx::query(
        "UPDATE admins SET password_hash = $1, is_sudo = $2, enabled = $3, read_only = $4, all_services_access = $5, \
         modify_users_access = $6, password_changed_at = $7 WHERE id = $8",
    )
    .bind(a.password_hash)
    .bind(a.is_sudo as i64)
    .bind(a.enabled as i64)
    .bind(a.read_only as i64)
    .bind(a.all_services_access as i64)
    .bind(a.modify_users_access as i64)
    .bind(a.password_changed_at)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    if let Some(services) = services {
        set_links(tx, "admins_services", "admin_id", id, services).await?;
    }
    Ok(())
}

/// Deletes an admin; `false` if there was none with that id.
pub async fn delete_admin(db: &Db, id: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM admins WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces the rows of a link table for `owner`.
async fn set_links(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    owner_col: &str,
    owner: i64,
    others: &[i64],
) -> Result<(), ApiError> {
    sqlx::query(&format!("DELETE FROM {table} WHERE {owner_col} = $1"))
        .bind(owner)
        .execute(&mut **tx)
        .await?;
    insert_links(tx, table, owner_col, owner, others).await
}

/// Links `owner` to each of `others` (once each) in a link table.
async fn insert_links(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    owner_col: &str,
    owner: i64,
    others: &[i64],
) -> Result<(), ApiError> {
    let other_col = match table {
        "admins_services" | "users_services" => "service_id",
        "services_inbounds" => "inbound_id",
        _ => unreachable!("known link tables only"),
    };
    let mut seen = std::collections::HashSet::new();
    for &o in others {
        if !seen.insert(o) {
            continue;
        }
        sqlx::query(&format!(
            "INSERT INTO {table} ({owner_col}, {other_col}) VALUES ($1, $2)"
        ))
        .bind(owner)
        .bind(o)
        .execute(&mut **tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                ApiError::invalid(&format!("{other_col}s"), format!("no such id {o}"))
            }
            _ => e.into(),
        })?;
    }
    Ok(())
}

/// A setting, if set.
pub async fn setting(db: &Db, key: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(&db.pool)
        .await?;
    row.map(|r| r.try_get("value")).transpose()
}

/// Sets a setting only if it is not set yet; returns the value in force.
pub async fn setting_or_insert(db: &Db, key: &str, value: &str) -> Result<String, sqlx::Error> {
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(&db.pool)
        .await?;
    Ok(setting(db, key).await?.unwrap_or_else(|| value.to_owned()))
}

/// Records an admin action.
pub async fn audit(
    db: &Db,
    admin: &str,
    action: &str,
    target: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    audit_with(&db.pool, admin, action, target, now).await
}

/// [`audit`] inside a transaction: the entry commits with the change it records.
pub async fn audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    admin: &str,
    action: &str,
    target: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    audit_with(&mut **tx, admin, action, target, now).await
}

async fn audit_with<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    admin: &str,
    action: &str,
    target: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_log (at, admin, action, target) VALUES ($1, $2, $3, $4)")
        .bind(now)
        .bind(admin)
        .bind(action)
        .bind(target)
        .execute(executor)
        .await?;
    Ok(())
}

/// A user row (what the database stores, before status and services are attached).
#[derive(Clone, Debug)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Name.
    pub username: String,
    /// Secret.
    pub key: String,
    /// Enabled.
    pub enabled: bool,
    /// Data limit.
    pub data_limit: Option<i64>,
    /// Used since reset.
    pub used_traffic: i64,
    /// Used ever.
    pub lifetime_used_traffic: i64,
    /// Reset strategy.
    pub reset_strategy: ResetStrategy,
    /// Last reset.
    pub traffic_reset_at: Option<i64>,
    /// Expire strategy.
    pub expire_strategy: ExpireStrategy,
    /// Fixed expiry.
    pub expire_date: Option<i64>,
    /// Duration after first use.
    pub usage_duration: Option<i64>,
    /// Latest start.
    pub activation_deadline: Option<i64>,
    /// Started at.
    pub activated_at: Option<i64>,
    /// Note.
    pub note: Option<String>,
    /// Owner id.
    pub admin_id: Option<i64>,
    /// Owner name.
    pub owner_username: Option<String>,
    /// Last subscription fetch.
    pub sub_updated_at: Option<i64>,
    /// Last subscription user agent.
    pub sub_last_user_agent: Option<String>,
    /// Last traffic.
    pub online_at: Option<i64>,
    /// Created.
    pub created_at: i64,
}

/// The columns [`UserRow::from_row`] reads, from `users u LEFT JOIN admins a`.
pub const USER_COLS: &str = "u.id, u.username, u.key, u.enabled, u.data_limit, u.used_traffic, u.lifetime_used_traffic, \
    u.data_limit_reset_strategy, u.traffic_reset_at, u.expire_strategy, u.expire_date, u.usage_duration, \
    u.activation_deadline, u.activated_at, u.note, u.admin_id, a.username AS owner_username, u.sub_updated_at, \
    u.sub_last_user_agent, u.online_at, u.created_at";

impl UserRow {
    /// Reads a row selected with [`USER_COLS`].
    pub fn from_row(r: &AnyRow) -> Result<UserRow, sqlx::Error> {
        let reset: String = r.try_get("data_limit_reset_strategy")?;
        let expire: String = r.try_get("expire_strategy")?;
        Ok(UserRow {
            id: r.try_get("id")?,
            username: r.try_get("username")?,
            key: r.try_get("key")?,
            enabled: flag(r, "enabled")?,
            data_limit: r.try_get("data_limit")?,
            used_traffic: r.try_get("used_traffic")?,
            lifetime_used_traffic: r.try_get("lifetime_used_traffic")?,
            reset_strategy: ResetStrategy::parse(&reset).unwrap_or(ResetStrategy::NoReset),
            traffic_reset_at: r.try_get("traffic_reset_at")?,
            expire_strategy: ExpireStrategy::parse(&expire).unwrap_or(ExpireStrategy::Never),
            expire_date: r.try_get("expire_date")?,
            usage_duration: r.try_get("usage_duration")?,
            activation_deadline: r.try_get("activation_deadline")?,
            activated_at: r.try_get("activated_at")?,
            note: r.try_get("note")?,
            admin_id: r.try_get("admin_id")?,
            owner_username: r.try_get("owner_username")?,
            sub_updated_at: r.try_get("sub_updated_at")?,
            sub_last_user_agent: r.try_get("sub_last_user_agent")?,
            online_at: r.try_get("online_at")?,
            created_at: r.try_get("created_at")?,
        })
    }

    /// The user's status at `now`.
    pub fn status(&self, now: i64) -> UserStatus {
        if !self.enabled {
            return UserStatus::Disabled;
        }
        let expired = match self.expire_strategy {
            ExpireStrategy::Never => false,
            ExpireStrategy::FixedDate => self.expire_date.is_some_and(|d| d <= now),
            ExpireStrategy::StartOnFirstUse => match self.activated_at {
                Some(at) => self
                    .usage_duration
                    .is_some_and(|d| at.saturating_add(d) <= now),
                None => false,
            },
        };
        if expired {
            return UserStatus::Expired;
        }
        if self
            .data_limit
            .is_some_and(|l| l > 0 && self.used_traffic >= l)
        {
            return UserStatus::Limited;
        }
        if self.expire_strategy == ExpireStrategy::StartOnFirstUse && self.activated_at.is_none() {
            return UserStatus::OnHold;
        }
        UserStatus::Active
    }

    /// Whether the engine should let the user connect.
    pub fn may_connect(&self, now: i64) -> bool {
        matches!(self.status(now), UserStatus::Active | UserStatus::OnHold)
    }

    /// The API view, with its services.
    pub fn into_api(self, services: Vec<i64>, now: i64) -> User {
        User {
            status: self.status(now),
            id: self.id,
            username: self.username,
            key: self.key,
            enabled: self.enabled,
            data_limit: self.data_limit,
            used_traffic: self.used_traffic,
            lifetime_used_traffic: self.lifetime_used_traffic,
            data_limit_reset_strategy: self.reset_strategy,
            expire_strategy: self.expire_strategy,
            expire_date: self.expire_date,
            usage_duration: self.usage_duration,
            activation_deadline: self.activation_deadline,
            activated_at: self.activated_at,
            note: self.note,
            owner_username: self.owner_username,
            service_ids: services,
            online_at: self.online_at,
            sub_updated_at: self.sub_updated_at,
            sub_last_user_agent: self.sub_last_user_agent,
            created_at: self.created_at,
        }
    }
}

/// An SQL condition on `users u` that holds exactly when [`UserRow::status`] at `now` is
/// `status`; `now` is the placeholder (e.g. `$3`) the current time is bound to. Never NULL,
/// so it may be negated or summed.
pub fn status_sql(status: UserStatus, now: &str) -> String {
    let enabled = "u.enabled <> 0";
    // `activated_at + usage_duration <= now`, written so that no sum can overflow.
    let expired = format!(
        "((u.expire_strategy = 'fixed_date' AND u.expire_date IS NOT NULL AND u.expire_date <= {now}) \
         OR (u.expire_strategy = 'start_on_first_use' AND u.activated_at IS NOT NULL \
         AND u.usage_duration IS NOT NULL AND u.usage_duration <= {now} - u.activated_at))"
    );
    let limited =
        "(u.data_limit IS NOT NULL AND u.data_limit > 0 AND u.used_traffic >= u.data_limit)";
    let on_hold = "(u.expire_strategy = 'start_on_first_use' AND u.activated_at IS NULL)";
    match status {
        UserStatus::Disabled => "(u.enabled = 0)".to_owned(),
        UserStatus::Expired => format!("({enabled} AND {expired})"),
        UserStatus::Limited => format!("({enabled} AND NOT {expired} AND {limited})"),
        UserStatus::OnHold => {
            format!("({enabled} AND NOT {expired} AND NOT {limited} AND {on_hold})")
        }
        UserStatus::Active => {
            format!("({enabled} AND NOT {expired} AND NOT {limited} AND NOT {on_hold})")
        }
    }
}

/// An SQL condition on `users u` that holds exactly when [`UserRow::may_connect`] at `now` (a
/// parameter such as `$1`) does: active or on hold.
pub fn may_connect_sql(now: &str) -> String {
    format!(
        "({} OR {})",
        status_sql(UserStatus::Active, now),
        status_sql(UserStatus::OnHold, now)
    )
}

/// The status a user has at `now` (a parameter such as `$1`), as one SQL expression giving
/// [`UserStatus::as_str`]: the [`status_sql`] conditions are exclusive and cover every user.
pub fn status_case_sql(now: &str) -> String {
    let mut case = String::from("CASE");
    for s in [
        UserStatus::Disabled,
        UserStatus::Expired,
        UserStatus::Limited,
        UserStatus::OnHold,
    ] {
        case.push_str(&format!(
            " WHEN {} THEN '{}'",
            status_sql(s, now),
            s.as_str()
        ));
    }
    case.push_str(&format!(" ELSE '{}' END", UserStatus::Active.as_str()));
    case
}

/// The highest of `thresholds` (percent of the data limit) that a user's usage has reached, 0
/// for none or no limit, as one SQL expression: exactly `used * 100 >= t * limit`, in integer
/// arithmetic that cannot overflow (`used >= ceil(t * limit / 100)`).
pub fn threshold_case_sql(thresholds: &[u8]) -> String {
    let mut sorted = thresholds.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut case = String::from("CASE WHEN u.data_limit IS NULL OR u.data_limit <= 0 THEN 0");
    for t in sorted {
        case.push_str(&format!(
            " WHEN u.used_traffic >= (u.data_limit / 100) * {t} + ((u.data_limit % 100) * {t} + 99) / 100 THEN {t}"
        ));
    }
    case.push_str(" ELSE 0 END");
    case
}

/// Users whose webhook announcements are behind at `now`: their status, or the highest of
/// `thresholds` their usage reached, differs from what was last announced. Each comes with
/// the announced status and threshold.
///
/// With `since`, only the users who can have changed since that pass are considered
/// ([`CHANGED_IDS`]); `None` considers everyone.
pub async fn users_to_announce(
    db: &Db,
    now: i64,
    thresholds: &[u8],
    since: Option<Since>,
) -> Result<Vec<(UserRow, Option<String>, i64)>, sqlx::Error> {
    let only = match since {
        None => String::new(),
        Some(_) => format!("u.id IN ({CHANGED_IDS}) AND "),
    };
    let q = format!(
        "SELECT {USER_COLS}, u.webhook_status, u.webhook_threshold FROM users u \
         LEFT JOIN admins a ON a.id = u.admin_id \
         WHERE {only}(u.webhook_status IS NULL OR u.webhook_status <> {} OR u.webhook_threshold <> {}) \
         ORDER BY u.id",
        status_case_sql("$1"),
        threshold_case_sql(thresholds)
    );
    let mut query = sqlx::query(&q).bind(now);
    if let Some(s) = since {
        query = query
            .bind(s.revision)
            .bind(s.at.min(now))
            .bind(s.at.max(now));
    }
    query
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                UserRow::from_row(r)?,
                r.try_get("webhook_status")?,
                r.try_get("webhook_threshold")?,
            ))
        })
        .collect()
}

/// Users whose periodic usage reset is due at `now`: a period (`period` gives each
/// strategy's, in seconds) has passed since the last reset, or since creation.
pub async fn users_due_for_reset(
    db: &Db,
    now: i64,
    period: impl Fn(ResetStrategy) -> Option<i64>,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let due: Vec<String> = [
        ResetStrategy::Day,
        ResetStrategy::Week,
        ResetStrategy::Month,
        ResetStrategy::Year,
    ]
    .into_iter()
    .filter_map(|s| {
        let p = period(s)?;
        Some(format!(
            "(u.data_limit_reset_strategy = '{}' AND COALESCE(u.traffic_reset_at, u.created_at) <= $1 - {p})",
            s.as_str()
        ))
    })
    .collect();
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let q = format!(
        "SELECT {USER_COLS} FROM users u LEFT JOIN admins a ON a.id = u.admin_id \
         WHERE {} ORDER BY u.id",
        due.join(" OR ")
    );
    sqlx::query(&q)
        .bind(now)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(UserRow::from_row)
        .collect()
}

/// Services of each of `user_ids`.
pub async fn user_services(
    db: &Db,
    user_ids: &[i64],
) -> Result<HashMap<i64, Vec<i64>>, sqlx::Error> {
    let mut out: HashMap<i64, Vec<i64>> = user_ids.iter().map(|&id| (id, Vec::new())).collect();
    if user_ids.is_empty() {
        return Ok(out);
    }
    // The range repeats what the list says: it lets PostgreSQL see that few rows match and
    // read them through the primary key instead of scanning the table.
    let (min, max) = user_ids.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &id| {
        (lo.min(id), hi.max(id))
    });
    let q = format!(
        "SELECT user_id, service_id FROM users_services WHERE user_id >= {min} AND user_id <= {max} \
         AND user_id IN ({}) ORDER BY service_id",
        id_list(user_ids)
    );
    // Sent as plain text (the ids are integers): a statement whose text changes with every
    // page is not worth preparing, nor keeping in each connection's statement cache.
    for r in sqlx::Executor::fetch_all(&db.reader, q.as_str()).await? {
        out.entry(r.try_get("user_id")?)
            .or_default()
            .push(r.try_get("service_id")?);
    }
    Ok(out)
}

/// One user by name.
pub async fn user_by_name(db: &Db, username: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let q = format!("SELECT {USER_COLS} FROM users u LEFT JOIN admins a ON a.id = u.admin_id WHERE u.username = $1");
    sqlx::query(&q)
        .bind(username)
        .fetch_optional(&db.reader)
        .await?
        .map(|r| UserRow::from_row(&r))
        .transpose()
}

/// One user by name, read in `tx` and held until it ends (PostgreSQL locks the row; SQLite's
/// one writer connection serializes every write transaction already): for a change decided
/// from what the row holds, which a concurrent change must neither undo nor see undone.
pub async fn user_by_name_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    username: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE OF u",
        Backend::Sqlite => "",
    };
    let q = format!(
        "SELECT {USER_COLS} FROM users u LEFT JOIN admins a ON a.id = u.admin_id \
         WHERE u.username = $1{lock}"
    );
    sqlx::query(&q)
        .bind(username)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| UserRow::from_row(&r))
        .transpose()
}

/// A user as their subscription needs them: the row, their services, and the configuration
/// revision subscriptions are built at ([`crate::catalog`]), all from one query.
#[derive(Debug)]
pub struct SubscriptionUserRow {
    /// The user.
    pub user: UserRow,
    /// Ids of the user's services.
    pub services: Vec<i64>,
    /// `config_revision` when the row was read.
    pub config_revision: i64,
}

/// One user by name, with what their subscription needs.
pub async fn user_for_subscription(
    db: &Db,
    username: &str,
) -> Result<Option<SubscriptionUserRow>, sqlx::Error> {
    let services = match db.backend {
        Backend::Sqlite => "group_concat(service_id)",
        Backend::Postgres => "string_agg(service_id::text, ',')",
    };
    let q = format!(
        "SELECT {USER_COLS}, (SELECT value FROM config_revision) AS config_revision, \
         (SELECT {services} FROM users_services s WHERE s.user_id = u.id) AS service_ids \
         FROM users u LEFT JOIN admins a ON a.id = u.admin_id WHERE u.username = $1"
    );
    let Some(r) = sqlx::query(&q)
        .bind(username)
        .fetch_optional(&db.reader)
        .await?
    else {
        return Ok(None);
    };
    let ids: Option<String> = r.try_get("service_ids")?;
    let services = ids
        .iter()
        .flat_map(|ids| ids.split(','))
        .map(|id| {
            id.trim()
                .parse()
                .map_err(|e| sqlx::Error::Decode(format!("service id {id:?}: {e}").into()))
        })
        .collect::<Result<_, _>>()?;
    Ok(Some(SubscriptionUserRow {
        user: UserRow::from_row(&r)?,
        services,
        config_revision: r.try_get("config_revision")?,
    }))
}

/// Users by id (those that exist), plain text like [`user_services`].
pub async fn users_by_ids(db: &Db, ids: &[i64]) -> Result<Vec<UserRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let q = format!(
        "SELECT {USER_COLS} FROM users u LEFT JOIN admins a ON a.id = u.admin_id \
         WHERE u.id IN ({}) ORDER BY u.id",
        id_list(ids)
    );
    sqlx::Executor::fetch_all(&db.pool, q.as_str())
        .await?
        .iter()
        .map(UserRow::from_row)
        .collect()
}

/// Id and name of every user who may connect now (status active or on hold): as
/// [`UserRow::may_connect`] decides, in SQL.
pub async fn connectable_users(db: &Db, now: i64) -> Result<HashMap<i64, String>, sqlx::Error> {
    let q = format!(
        "SELECT u.id, u.username FROM users u WHERE {}",
        may_connect_sql("$1")
    );
    sqlx::query(&q)
        .bind(now)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("username")?)))
        .collect()
}

/// Where a periodic pass's next scan for changed users starts: the mark the last pass took
/// ([`change_mark`], before its own scan) and the time it decided statuses at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Since {
    /// The change mark.
    pub revision: i64,
    /// Unix seconds.
    pub at: i64,
}

impl Since {
    /// Seconds a mark is trusted for; an older one (passes failed for that long, or the clock
    /// jumped) means a full scan instead. Well under the day deletions are kept for.
    pub const MAX_AGE: i64 = 600;
    /// Deletions are kept this long (seconds) for [`users_deleted_since`].
    pub const DELETIONS_KEPT: i64 = 86_400;

    /// The mark, if it is recent enough at `now` to scan from.
    pub fn fresh(mark: Option<Since>, now: i64) -> Option<Since> {
        mark.filter(|m| (0..=Since::MAX_AGE).contains(&(now - m.at)))
    }
}

/// Where the next scan for changed users starts (see migration 0004): a change committed
/// after this call has `revision >= ` the value returned. Take it before the scan it follows.
pub async fn change_mark(db: &Db) -> Result<i64, sqlx::Error> {
    let q = match db.backend {
        // One writer at a time: the next revision handed out.
        Backend::Sqlite => "SELECT value + 1 FROM revision_counter",
        // Every transaction below the snapshot's xmin has ended.
        Backend::Postgres => "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    };
    sqlx::query_scalar(q).fetch_one(&db.pool).await
}

/// The ids of the users whose status, announced threshold or engine access can have changed
/// since a pass that took mark `$2` (with [`change_mark`]) at time `$3`, by time `$4`: those
/// whose deciding columns changed (`revision >= $2`) and those whose expiry time came in
/// between. Both through indexes; the other ways time changes a status (activation
/// deadlines, periodic resets) write the row, so they show up as changes.
pub const CHANGED_IDS: &str = "SELECT id FROM users WHERE revision >= $2 \
     UNION SELECT id FROM users WHERE expires_at > $3 AND expires_at <= $4";

/// Each user who can have changed since `since` (see [`CHANGED_IDS`]) by `now`: id, name and
/// whether they may connect at `now` (as [`UserRow::may_connect`] decides, in SQL).
pub async fn users_changed(
    db: &Db,
    since: Since,
    now: i64,
) -> Result<Vec<(i64, String, bool)>, sqlx::Error> {
    let q = format!(
        "SELECT u.id, u.username, CAST(CASE WHEN {} THEN 1 ELSE 0 END AS BIGINT) AS ok FROM users u \
         WHERE u.id IN ({CHANGED_IDS})",
        may_connect_sql("$1")
    );
    sqlx::query(&q)
        .bind(now)
        .bind(since.revision)
        .bind(since.at.min(now))
        .bind(since.at.max(now))
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("username")?, flag(r, "ok")?)))
        .collect()
}

/// The ids of the users whose key or services changed since mark `since` (migration 0006):
/// their engine credentials are to be given again, whether or not their access flipped.
pub async fn users_access_changed(db: &Db, since: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE access_revision >= $1")
        .bind(since)
        .fetch_all(&db.pool)
        .await
}

/// Users deleted since mark `since`: (id, name).
pub async fn users_deleted_since(db: &Db, since: i64) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query("SELECT user_id, username FROM users_deleted WHERE revision >= $1")
        .bind(since)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("user_id")?, r.try_get("username")?)))
        .collect()
}

/// Forgets deletions older than `before` (Unix seconds).
pub async fn prune_deleted(db: &Db, before: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM users_deleted WHERE deleted_at < $1")
        .bind(before)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Every user.
pub async fn all_users(db: &Db) -> Result<Vec<UserRow>, sqlx::Error> {
    let q = format!(
        "SELECT {USER_COLS} FROM users u LEFT JOIN admins a ON a.id = u.admin_id ORDER BY u.id"
    );
    sqlx::query(&q)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(UserRow::from_row)
        .collect()
}

/// Replaces a user's services.
pub async fn set_user_services(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    services: &[i64],
) -> Result<(), ApiError> {
    set_links(tx, "users_services", "user_id", user_id, services).await
}

/// Links a user created in this transaction to `services` (nothing to replace yet).
pub async fn add_new_user_services(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: i64,
    services: &[i64],
) -> Result<(), ApiError> {
    insert_links(tx, "users_services", "user_id", user_id, services).await
}

/// Replaces a service's inbounds.
pub async fn set_service_inbounds(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    service_id: i64,
    inbounds: &[i64],
) -> Result<(), ApiError> {
    set_links(tx, "services_inbounds", "service_id", service_id, inbounds).await
}

/// Comma-separated ids, for an `IN (...)` list sent as plain text (integers only).
fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// The inbound tags each of `user_ids` may use (through their services), with each inbound's
/// config JSON: what [`user_inbound_tags`] gives for these users, without reading everyone's.
pub async fn inbound_tags_of_users(
    db: &Db,
    user_ids: &[i64],
) -> Result<HashMap<i64, Vec<(String, String)>>, sqlx::Error> {
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    inbound_tags_where(db, &format!(" WHERE us.user_id IN ({})", id_list(user_ids))).await
}

/// The inbound tags each user may use (through their services), by user id.
pub async fn user_inbound_tags(
    db: &Db,
) -> Result<HashMap<i64, Vec<(String, String)>>, sqlx::Error> {
    inbound_tags_where(db, "").await
}

async fn inbound_tags_where(
    db: &Db,
    where_sql: &str,
) -> Result<HashMap<i64, Vec<(String, String)>>, sqlx::Error> {
    let q = format!(
        "SELECT DISTINCT us.user_id, i.tag, i.config FROM users_services us \
         JOIN services_inbounds si ON si.service_id = us.service_id \
         JOIN inbounds i ON i.id = si.inbound_id{where_sql}"
    );
    // Plain text when it names ids: not worth preparing and caching per id list.
    let rows = if where_sql.is_empty() {
        sqlx::query(&q).fetch_all(&db.reader).await?
    } else {
        sqlx::Executor::fetch_all(&db.reader, q.as_str()).await?
    };
    let mut out: HashMap<i64, Vec<(String, String)>> = HashMap::new();
    for r in rows {
        out.entry(r.try_get("user_id")?)
            .or_default()
            .push((r.try_get("tag")?, r.try_get("config")?));
    }
    Ok(out)
}

/// Every inbound: (id, tag, protocol, config JSON).
pub async fn inbounds(db: &Db) -> Result<Vec<(i64, String, String, String)>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, tag, protocol, config FROM inbounds ORDER BY id")
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("tag")?,
                r.try_get("protocol")?,
                r.try_get("config")?,
            ))
        })
        .collect()
}
