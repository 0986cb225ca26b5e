//! Panel configuration from the environment (documented in docs/configuration.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `marzneshin serve` reads from its environment.
#[derive(Clone, Debug)]
pub struct PanelConfig {
    /// `MARZNESHIN_LISTEN`: the panel's HTTP address (default 127.0.0.1:8000).
    pub listen: SocketAddr,
    /// `DATABASE_URL`: `sqlite://...` or `postgres://...` (default: SQLite under the data dir).
    pub database_url: String,
    /// `MARZNESHIN_DATA_DIR`: where the SQLite database lives (default ./data).
    pub data_dir: PathBuf,
    /// `MARZNESHIN_ADMIN_USERNAME` / `MARZNESHIN_ADMIN_PASSWORD`: the first sudo admin,
    /// created when no admin exists (a password is generated and printed once if unset).
    pub admin_username: String,
    /// See `admin_username`.
    pub admin_password: Option<String>,
    /// `MARZNESHIN_TOKEN_HOURS`: lifetime of admin tokens (default 24).
    pub token_ttl: Duration,
    /// `MARZNESHIN_USAGE_INTERVAL_SECS`: how often usage is recorded (default 5).
    pub usage_interval: Duration,
    /// `MARZNESHIN_ENGINE_WORKERS`: engine executors (default: every CPU).
    pub engine_workers: Option<usize>,
    /// `MARZNESHIN_ALLOW_LOOPBACK`: let users relay to loopback (testing only).
    pub allow_loopback: bool,
    /// `MARZNESHIN_WEBHOOK_RETRY_BASE_MS`: wait after a webhook's first failure, doubled after
    /// each further one up to an hour (default 1000).
    pub webhook_retry_base: Duration,
    /// `MARZNESHIN_WEBHOOK_POLL_MS`: how often the outbox is checked when idle (default 1000).
    pub webhook_poll_interval: Duration,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    var(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}"))
        })
        .transpose()
}

impl PanelConfig {
    /// Reads the environment; an invalid value names the variable.
    pub fn from_env() -> anyhow::Result<PanelConfig> {
        let data_dir = PathBuf::from(var("MARZNESHIN_DATA_DIR").unwrap_or_else(|| "data".into()));
        let database_url = var("DATABASE_URL").unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("marzneshin.db").display()
            )
        });
        Ok(PanelConfig {
            listen: parse("MARZNESHIN_LISTEN")?.unwrap_or_else(|| ([127, 0, 0, 1], 8000).into()),
            database_url,
            data_dir,
            admin_username: var("MARZNESHIN_ADMIN_USERNAME").unwrap_or_else(|| "admin".into()),
            admin_password: var("MARZNESHIN_ADMIN_PASSWORD"),
            token_ttl: Duration::from_secs(
                3600 * parse::<u64>("MARZNESHIN_TOKEN_HOURS")?.unwrap_or(24),
            ),
            usage_interval: Duration::from_secs(
                parse::<u64>("MARZNESHIN_USAGE_INTERVAL_SECS")?
                    .unwrap_or(5)
                    .max(1),
            ),
            engine_workers: parse("MARZNESHIN_ENGINE_WORKERS")?,
            allow_loopback: parse::<bool>("MARZNESHIN_ALLOW_LOOPBACK")?.unwrap_or(false),
            webhook_retry_base: Duration::from_millis(
                parse::<u64>("MARZNESHIN_WEBHOOK_RETRY_BASE_MS")?
                    .unwrap_or(1000)
                    .max(1),
            ),
            webhook_poll_interval: Duration::from_millis(
                parse::<u64>("MARZNESHIN_WEBHOOK_POLL_MS")?
                    .unwrap_or(1000)
                    .max(10),
            ),
        })
    }
}
