//! The panel's domain types, as the API shows them.

use poem_openapi::{Enum, Object};

/// When a user's access ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ExpireStrategy {
    /// Never.
    Never,
    /// At `expire_date`.
    FixedDate,
    /// `usage_duration` seconds after first use (or at `activation_deadline`).
    StartOnFirstUse,
}

/// When a user's used traffic is reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ResetStrategy {
    /// Never.
    NoReset,
    /// Daily.
    Day,
    /// Weekly.
    Week,
    /// Monthly.
    Month,
    /// Yearly.
    Year,
}

/// Where a user stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum UserStatus {
    /// May connect.
    Active,
    /// Disabled by an admin.
    Disabled,
    /// Data limit reached.
    Limited,
    /// Past its expiry.
    Expired,
    /// Waiting for first use (start_on_first_use).
    OnHold,
}

macro_rules! str_enum {
    ($t:ty { $($v:ident = $s:literal),* }) => {
        impl $t {
            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            /// From the stored name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
    };
}

str_enum!(ExpireStrategy { Never = "never", FixedDate = "fixed_date", StartOnFirstUse = "start_on_first_use" });
str_enum!(UserStatus { Active = "active", Disabled = "disabled", Limited = "limited", Expired = "expired", OnHold = "on_hold" });
str_enum!(ResetStrategy { NoReset = "no_reset", Day = "day", Week = "week", Month = "month", Year = "year" });

/// An admin as the API shows it.
#[derive(Clone, Debug, Object)]
pub struct Admin {
    /// Login name.
    pub username: String,
    /// May do everything.
    pub is_sudo: bool,
    /// May log in.
    pub enabled: bool,
    /// Sees, never changes.
    pub read_only: bool,
    /// May use every service.
    pub all_services_access: bool,
    /// May create and change users.
    pub modify_users_access: bool,
    /// Services this admin may use (when not `all_services_access`).
    pub service_ids: Vec<i64>,
}

/// A new admin.
#[derive(Clone, Debug, Object)]
pub struct AdminCreate {
    /// Login name: 3-32 letters, digits or underscores.
    pub username: String,
    /// At least 8 characters.
    pub password: String,
    /// May do everything.
    #[oai(default)]
    pub is_sudo: bool,
    /// Sees, never changes.
    #[oai(default)]
    pub read_only: bool,
    /// May use every service.
    #[oai(default)]
    pub all_services_access: bool,
    /// May create and change users.
    #[oai(default = "default_true")]
    pub modify_users_access: bool,
    /// Services this admin may use.
    #[oai(default)]
    pub service_ids: Vec<i64>,
}

fn default_true() -> bool {
    true
}

/// Changes to an admin (absent fields stay as they are).
#[derive(Clone, Debug, Default, Object)]
pub struct AdminModify {
    /// New password (invalidates existing tokens).
    pub password: Option<String>,
    /// May do everything.
    pub is_sudo: Option<bool>,
    /// May log in.
    pub enabled: Option<bool>,
    /// Sees, never changes.
    pub read_only: Option<bool>,
    /// May use every service.
    pub all_services_access: Option<bool>,
    /// May create and change users.
    pub modify_users_access: Option<bool>,
    /// Services this admin may use.
    pub service_ids: Option<Vec<i64>>,
}

/// An access token.
#[derive(Clone, Debug, Object)]
pub struct Token {
    /// The bearer token.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Whether the admin is sudo.
    pub is_sudo: bool,
}

/// A proxy user as the API shows it.
#[derive(Clone, Debug, Object)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Name: 3-32 letters, digits or underscores.
    pub username: String,
    /// The secret every per-protocol credential derives from.
    pub key: String,
    /// Current status.
    pub status: UserStatus,
    /// Enabled by an admin.
    pub enabled: bool,
    /// Bytes allowed per reset period (none: unlimited).
    pub data_limit: Option<i64>,
    /// Bytes used since the last reset.
    pub used_traffic: i64,
    /// Bytes used ever.
    pub lifetime_used_traffic: i64,
    /// When used traffic resets.
    pub data_limit_reset_strategy: ResetStrategy,
    /// How the user expires.
    pub expire_strategy: ExpireStrategy,
    /// Expiry (fixed_date), Unix seconds.
    pub expire_date: Option<i64>,
    /// Seconds of access after first use (start_on_first_use).
    pub usage_duration: Option<i64>,
    /// Latest start for start_on_first_use, Unix seconds.
    pub activation_deadline: Option<i64>,
    /// When a start_on_first_use user started.
    pub activated_at: Option<i64>,
    /// Free text.
    pub note: Option<String>,
    /// The owning admin.
    pub owner_username: Option<String>,
    /// Services the user belongs to.
    pub service_ids: Vec<i64>,
    /// Last traffic seen, Unix seconds.
    pub online_at: Option<i64>,
    /// Last subscription fetch, Unix seconds.
    pub sub_updated_at: Option<i64>,
    /// User agent of the last subscription fetch.
    pub sub_last_user_agent: Option<String>,
    /// Created, Unix seconds.
    pub created_at: i64,
}

/// A new user.
#[derive(Clone, Debug, Object)]
pub struct UserCreate {
    /// Name: 3-32 letters, digits or underscores.
    pub username: String,
    /// Bytes allowed per reset period (absent or 0: unlimited).
    pub data_limit: Option<i64>,
    /// When used traffic resets.
    #[oai(default = "default_reset")]
    pub data_limit_reset_strategy: ResetStrategy,
    /// How the user expires.
    #[oai(default = "default_expire")]
    pub expire_strategy: ExpireStrategy,
    /// Expiry for fixed_date, Unix seconds.
    pub expire_date: Option<i64>,
    /// Seconds of access after first use, for start_on_first_use.
    pub usage_duration: Option<i64>,
    /// Latest start for start_on_first_use, Unix seconds.
    pub activation_deadline: Option<i64>,
    /// Free text.
    pub note: Option<String>,
    /// Services the user belongs to.
    #[oai(default)]
    pub service_ids: Vec<i64>,
    /// Enabled (default true).
    #[oai(default = "default_true")]
    pub enabled: bool,
}

fn default_reset() -> ResetStrategy {
    ResetStrategy::NoReset
}

fn default_expire() -> ExpireStrategy {
    ExpireStrategy::Never
}

/// Changes to a user (absent fields stay as they are; `null` clears optional ones where
/// noted).
#[derive(Clone, Debug, Default, Object)]
pub struct UserModify {
    /// Bytes allowed (0 clears the limit).
    pub data_limit: Option<i64>,
    /// When used traffic resets.
    pub data_limit_reset_strategy: Option<ResetStrategy>,
    /// How the user expires.
    pub expire_strategy: Option<ExpireStrategy>,
    /// Expiry for fixed_date.
    pub expire_date: Option<i64>,
    /// Seconds of access after first use.
    pub usage_duration: Option<i64>,
    /// Latest start for start_on_first_use.
    pub activation_deadline: Option<i64>,
    /// Free text.
    pub note: Option<String>,
    /// Services the user belongs to.
    pub service_ids: Option<Vec<i64>>,
    /// Enabled.
    pub enabled: Option<bool>,
}

/// A page of users.
#[derive(Clone, Debug, Object)]
pub struct UserPage {
    /// The users on this page.
    pub items: Vec<User>,
    /// Users matching the filter, on every page.
    pub total: i64,
    /// Page number, from 1.
    pub page: i64,
    /// Page size.
    pub size: i64,
}

/// Hourly usage of a user, or of every user an admin sees.
#[derive(Clone, Debug, Object)]
#[oai(example)]
pub struct UsageBucket {
    /// Start of the hour, Unix seconds.
    pub hour: i64,
    /// Bytes from the user.
    pub uplink: i64,
    /// Bytes to the user.
    pub downlink: i64,
}

/// A service: a group of inbounds users are given together.
#[derive(Clone, Debug, Object)]
pub struct Service {
    /// Id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Inbounds in the service.
    pub inbound_ids: Vec<i64>,
}

/// A new or changed service.
#[derive(Clone, Debug, Object)]
pub struct ServiceInput {
    /// Unique name.
    pub name: String,
    /// Inbounds in the service.
    #[oai(default)]
    pub inbound_ids: Vec<i64>,
}

/// An inbound: a listener of the engine.
#[derive(Clone, Debug, Object)]
pub struct Inbound {
    /// Id.
    pub id: i64,
    /// Unique tag.
    pub tag: String,
    /// Protocol (`shadowsocks`, ...).
    pub protocol: String,
    /// The engine inbound configuration (docs/engine-config.md), without users.
    pub config: serde_json::Value,
}

/// A new or changed inbound.
#[derive(Clone, Debug, Object)]
pub struct InboundInput {
    /// The engine inbound configuration (docs/engine-config.md); `settings.users` must be
    /// empty or absent: users come from services.
    pub config: serde_json::Value,
}

impl UsageBucket {
    /// Buckets from rows with the columns `hour`, `uplink` and `downlink`.
    pub fn from_rows(rows: &[sqlx::any::AnyRow]) -> Result<Vec<UsageBucket>, sqlx::Error> {
        use sqlx::Row;
        rows.iter()
            .map(|r| {
                Ok(UsageBucket {
                    hour: r.try_get("hour")?,
                    uplink: r.try_get("uplink")?,
                    downlink: r.try_get("downlink")?,
                })
            })
            .collect()
    }
}

impl poem_openapi::types::Example for UsageBucket {
    fn example() -> Self {
        UsageBucket {
            hour: 1_767_222_000,
            uplink: 1_048_576,
            downlink: 52_428_800,
        }
    }
}

/// The engine in this panel's process.
#[derive(Clone, Debug, Object)]
#[oai(example)]
pub struct EngineStatus {
    /// Whether the engine serves connections (false once it has been stopped).
    pub running: bool,
    /// Identifies this engine run (counters restart with each run).
    pub run_id: String,
    /// When this run started, Unix seconds.
    pub started_at: i64,
    /// Seconds since the start.
    pub uptime: i64,
    /// Worker threads.
    pub workers: i64,
    /// Every inbound the engine serves, by tag.
    pub inbounds: Vec<InboundTraffic>,
}

impl poem_openapi::types::Example for EngineStatus {
    fn example() -> Self {
        EngineStatus {
            running: true,
            run_id: "5f0c9a3e1b7d4c22".into(),
            started_at: 1_767_222_000,
            uptime: 3600,
            workers: 2,
            inbounds: vec![InboundTraffic {
                tag: "vless-ws".into(),
                open: 12,
                uplink: 1_048_576,
                downlink: 52_428_800,
            }],
        }
    }
}

/// One inbound's traffic in this engine run.
#[derive(Clone, Debug, Object)]
pub struct InboundTraffic {
    /// Inbound tag.
    pub tag: String,
    /// Connections (TCP) and sessions (UDP) open now.
    pub open: i64,
    /// Bytes from clients in this run.
    pub uplink: i64,
    /// Bytes to clients in this run.
    pub downlink: i64,
}

/// Users by status and traffic totals.
#[derive(Clone, Debug, Object)]
pub struct SystemStats {
    /// Every user.
    pub total_users: i64,
    /// Active users.
    pub active_users: i64,
    /// Disabled users.
    pub disabled_users: i64,
    /// Users over their data limit.
    pub limited_users: i64,
    /// Expired users.
    pub expired_users: i64,
    /// Users waiting for first use.
    pub on_hold_users: i64,
    /// Users with traffic in the last 5 minutes.
    pub online_users: i64,
    /// Bytes from users, ever.
    pub total_uplink: i64,
    /// Bytes to users, ever.
    pub total_downlink: i64,
}
