//! `marzneshin serve`: open the database, make sure there is an admin, start the engine with
//! the stored inbounds and users, serve the API, record usage; stop cleanly on a signal.

use std::sync::Arc;
use std::time::Duration;

use poem::listener::TcpListener;
use poem::{EndpointExt, IntoEndpoint, IntoResponse, Route};
use rand::RngCore;

use crate::access_log::AccessLog;
use crate::config::PanelConfig;
use crate::db::{self, AdminValues, Db};
use crate::error::ApiError;
use crate::{api, auth, sync, usage, webhooks};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The engine in this process.
    pub engine: engine::Handle,
    /// Secret that signs admin tokens (shared by every panel instance through the database).
    pub jwt_secret: Arc<str>,
    /// The configuration.
    pub config: Arc<PanelConfig>,
    /// Identifies this engine run in `usage_cursor` (counters restart with each run).
    pub engine_run: Arc<str>,
    /// When this engine run started, Unix seconds.
    pub engine_started_at: i64,
    /// The users the engine was last given as allowed to connect.
    pub pushed: Arc<crate::sync::Pushed>,
    /// The `config_revision` the engine was last given every inbound and user at
    /// ([`crate::sync::full`]).
    pub synced_config: Arc<std::sync::atomic::AtomicI64>,
    /// Held while the engine is given inbounds, users or routing rules read from the database
    /// (by `sync` and the users and routing APIs), so that what was read last is what the
    /// engine holds.
    pub sync_turn: Arc<tokio::sync::Mutex<()>>,
    /// Taken to record the engine's counters (`usage::record`, `usage::settle`): one
    /// `usage_cursor` update at a time.
    pub record_turn: Arc<tokio::sync::Mutex<()>>,
    /// Whether the engine holds the stored routing rules ([`crate::sync::RoutingState`]).
    pub routing: Arc<crate::sync::RoutingState>,
    /// Inbounds, hosts and settings as subscriptions read them.
    pub catalog: Arc<crate::catalog::CatalogCache>,
    /// Subscription fetches not yet written.
    pub fetches: Arc<crate::fetches::Fetches>,
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Names of users and admins: 3 to 32 letters, digits or underscores.
pub fn valid_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = (3..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(ApiError::invalid(
            field,
            "must be 3 to 32 letters, digits or underscores",
        ));
    }
    Ok(())
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates the first sudo admin when there is none. A generated password is printed once.
async fn ensure_admin(db: &Db, config: &PanelConfig) -> anyhow::Result<()> {
    if db::admin_count(db).await? > 0 {
        return Ok(());
    }
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.clone(), false),
        None => (random_hex(12), true),
    };
    valid_name("MARZNESHIN_ADMIN_USERNAME", &config.admin_username)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = auth::hash_password(password.clone()).await?;
    let now = now();
    let values = AdminValues {
        username: &config.admin_username,
        password_hash: &hash,
        is_sudo: true,
        enabled: true,
        read_only: false,
        all_services_access: true,
        modify_users_access: true,
        password_changed_at: now,
    };
    match db::insert_admin(db, &values, &[], now).await {
        Ok(_) => {}
        // Another panel instance created it first.
        Err(ApiError::Conflict { .. }) => return Ok(()),
        Err(e) => anyhow::bail!("create the first admin: {e}"),
    }
    if generated {
        println!(
            "Created sudo admin {:?} with password {password}",
            config.admin_username
        );
        println!("(shown once; set MARZNESHIN_ADMIN_PASSWORD to choose it)");
    } else {
        tracing::info!(username = %config.admin_username, "created sudo admin");
    }
    Ok(())
}

/// The HTTP application.
pub fn app(state: AppState) -> impl poem::Endpoint {
    let api = api::service();
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    crate::dashboard::mount(Route::new())
        .nest("/api", api.into_endpoint().catch_all_error(error_body))
        .nest_no_strip(
            "/sub",
            api::subscription::service()
                .into_endpoint()
                .catch_all_error(error_body),
        )
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .data(state)
        .around(limit_body)
        .with(AccessLog)
}

/// The most a request body may hold, bytes: far beyond any request of the API (a routing
/// rules object with thousands of domains included).
const MAX_BODY: usize = 8 << 20;
/// The most a login form may hold, bytes: it is read before anyone has authenticated.
const MAX_LOGIN_BODY: usize = 16 << 10;

/// Bounds what a request body can make the panel hold: a `Content-Length` over the limit
/// gets 413 before anything is read; a body sent without one fails to read once it runs
/// past the limit (400 from the handler that reads it).
async fn limit_body<E: poem::Endpoint>(
    next: E,
    mut req: poem::Request,
) -> poem::Result<poem::Response> {
    use futures_lite::StreamExt;
    use poem::web::headers::{ContentLength, HeaderMapExt};
    let limit = if req.uri().path() == "/api/admins/token" {
        MAX_LOGIN_BODY
    } else {
        MAX_BODY
    };
    let too_large = move || format!("request body too large (at most {limit} bytes)");
    if let Some(ContentLength(length)) = req.headers().typed_get::<ContentLength>() {
        if length > limit as u64 {
            return Ok(
                poem::web::Json(serde_json::json!({ "detail": too_large() }))
                    .with_status(poem::http::StatusCode::PAYLOAD_TOO_LARGE)
                    .into_response(),
            );
        }
    }
    let mut seen = 0usize;
    let body = req.take_body().into_bytes_stream().map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len();
        if seen > limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                too_large(),
            ));
        }
        Ok(chunk)
    });
    req.set_body(poem::Body::from_bytes_stream(body));
    Ok(next.call(req).await?.into_response())
}

/// Errors raised before a handler runs (no or bad token, a malformed parameter or body) get
/// the same JSON body as the handlers' own errors.
async fn error_body(e: poem::Error) -> poem::Response {
    if e.is_from_response() {
        return e.into_response();
    }
    let status = e.status();
    let detail = if status.is_server_error() {
        tracing::error!("internal error: {e}");
        "internal error".to_owned()
    } else {
        e.to_string()
    };
    poem::web::Json(serde_json::json!({ "detail": detail }))
        .with_status(status)
        .into_response()
}

/// Runs the panel until SIGINT or SIGTERM.
pub async fn run(config: PanelConfig) -> anyhow::Result<()> {
    // One panel per data directory, held until the engine has stopped: a second one would
    // recover the live run's counters file and start its engine on it (truncated under the
    // running engine's mapping). Taken before anything reads or writes there.
    std::fs::create_dir_all(&config.data_dir)?;
    let _data_dir = lock_data_dir(&config.data_dir)?;
    let db = Db::connect(&config.database_url).await?;
    tracing::info!(backend = ?db.backend, "database ready");
    ensure_admin(&db, &config).await?;
    let jwt_secret = db::setting_or_insert(&db, "jwt_secret", &random_hex(32)).await?;
    let engine_config = engine::Config {
        workers: config.engine_workers,
        outbound: engine::config::OutboundConfig {
            allow_loopback: config.allow_loopback,
            allow_private: false,
        },
        ..engine::Config::default()
    };
    let counters_file = config.data_dir.join("counters");
    let recovered = usage::recover(&db, &counters_file).await?;
    let options = engine::EngineOptions {
        counters_file: Some(counters_file),
        ..Default::default()
    };
    let engine =
        tokio::task::spawn_blocking(move || engine::Engine::start_with(engine_config, options))
            .await??;
    if let Some(run) = recovered {
        usage::forget_run(&db, &run).await?;
    }
    let state = AppState {
        db,
        engine: engine.clone(),
        jwt_secret: jwt_secret.into(),
        config: Arc::new(config.clone()),
        engine_run: engine.run_id().into(),
        engine_started_at: now(),
        pushed: Default::default(),
        synced_config: Default::default(),
        sync_turn: Default::default(),
        record_turn: Default::default(),
        routing: Default::default(),
        catalog: Default::default(),
        fetches: Default::default(),
    };
    // The enforcement passes start from what this read.
    let pushed_from = sync::full(&state).await?;
    let usage_task = tokio::spawn(usage::run(state.clone(), pushed_from));
    let webhook_task = tokio::spawn(webhooks::run(state.clone()));
    let fetches_task = {
        let (fetches, db) = (state.fetches.clone(), state.db.clone());
        tokio::spawn(async move { fetches.run(db).await })
    };
    let listener = TcpListener::bind(config.listen);
    tracing::info!(listen = %config.listen, "panel listening; API docs at /docs");
    let server = poem::Server::new(listener).run_with_graceful_shutdown(
        app(state.clone()),
        shutdown_signal(),
        Some(Duration::from_secs(5)),
    );
    server.await?;
    // Stopped, and waited for: a pass still writing could otherwise commit after the final
    // record below read the cursor, and its bytes would be added twice.
    usage_task.abort();
    let _ = usage_task.await;
    webhook_task.abort();
    // Flushed before the task is stopped: the flush waits for a batch the task is writing,
    // which stopping the task would roll back.
    if let Err(e) = state.fetches.flush(&state.db).await {
        tracing::warn!("recording the last subscription fetches failed: {e}");
    }
    fetches_task.abort();
    // Record what moved until now, then stop the engine.
    // A fresh mark: every user with traffic, whatever the loop had recorded.
    if let Err(e) = usage::record(&state, &mut Default::default()).await {
        tracing::warn!("final usage record failed: {e:#}");
    }
    tokio::task::spawn_blocking(move || engine.stop(Duration::from_secs(5))).await?;
    Ok(())
}

/// The data directory's lock (`DATA_DIR/marzneshin.lock`), or an error naming the directory
/// when another process holds it.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<engine::runtime::mapped::FileLock> {
    let path = dir.join("marzneshin.lock");
    engine::runtime::mapped::FileLock::try_acquire(&path)
        .map_err(|e| anyhow::anyhow!("lock {}: {e}", path.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "another marzneshin is using the data directory {} (MARZNESHIN_DATA_DIR); \
                 each panel needs its own",
                dir.display()
            )
        })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
}
