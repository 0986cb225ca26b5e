//! The Marzneshin engine: a thread-per-core proxy data plane.
//!
//! ```text
//!  clients ─► listener (SO_REUSEPORT, one per worker) ─► inbound codec (sans-IO, `proto`)
//!                                                             │ user, target
//!                 per-worker counters ◄── relay (pooled buffers, in-place AEAD) ─► outbound
//! ```
//!
//! [`Engine::start`] takes a validated [`Config`] (see [`Config::load`] /
//! [`Config::from_json`]), binds every listener on the calling thread and starts one pinned
//! glommio executor per worker. The returned [`Handle`] is cheap to clone, `Send + Sync`, and is
//! how embedders and the panel drive the engine while it carries traffic: users are added,
//! updated and removed in batches, inbounds are applied as a whole, counters are read.
//!
//! See `docs/ARCHITECTURE.md` for the code map and invariants.

pub mod buffer;
pub mod config;
mod control;
pub mod counters;
mod inbound;
pub mod links;
pub mod outbound;
pub mod quic;
pub mod rules;
pub mod runtime;
mod transport;
pub mod users;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use config::{Config, ConfigError};
use counters::Traffic;
pub use counters::TrafficStats;
use runtime::Signal;
pub use users::Limits;
use users::Registry;

/// Why the engine could not start, or a control operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A listener could not be bound.
    #[error("inbound {tag:?}: cannot bind {network} {addr}: {source}")]
    Bind {
        /// Inbound tag.
        tag: String,
        /// `tcp` or `udp`.
        network: config::Network,
        /// Address.
        addr: SocketAddr,
        /// Underlying error.
        source: io::Error,
    },
    /// The executors could not be started (io_uring unavailable, memlock limit, ...).
    #[error("cannot start workers: {0}")]
    Runtime(io::Error),
    /// A configuration (inbounds) was invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A user batch named an inbound that does not exist.
    #[error("user {user:?}: no inbound tagged {tag:?}")]
    UnknownInbound {
        /// User name.
        user: String,
        /// Inbound tag.
        tag: String,
    },
    /// A user's credential is not valid for an inbound.
    #[error("user {user:?} on inbound {tag:?}: {message}")]
    BadCredential {
        /// User name.
        user: String,
        /// Inbound tag.
        tag: String,
        /// What is wrong.
        message: String,
    },
    /// A user batch is malformed (empty or duplicate names).
    #[error("user batch: {0}")]
    BadBatch(String),
    /// The engine has been stopped.
    #[error("the engine is stopped")]
    Stopped,
    /// The counters file could not be created.
    #[error("counters file: {0}")]
    CountersFile(io::Error),
}

/// Statistics of one user, summed over every inbound and worker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserStats {
    /// User name.
    pub name: String,
    /// Bytes moved and connections open.
    #[serde(flatten)]
    pub traffic: TrafficStats,
    /// Whether the user can connect now (false once removed).
    pub active: bool,
    /// Distinct source addresses connected now.
    pub source_ips: Vec<IpAddr>,
    /// Last activity, Unix seconds.
    pub last_seen: Option<u64>,
}

/// What [`Handle::user_traffic_since`] compares with: the uplink and downlink it last
/// reported for each user the engine knows (by the engine's own user index, which never
/// changes for a run). The default has seen nothing.
#[derive(Clone, Debug, Default)]
pub struct TrafficMark {
    seen: Vec<(u64, u64)>,
}

/// Statistics of one inbound.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InboundStats {
    /// Inbound tag.
    pub tag: String,
    /// Bytes moved and connections open.
    #[serde(flatten)]
    pub traffic: TrafficStats,
}

/// One user of a batch: their credential on each inbound they may use, and their limits.
#[derive(
    Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Unique name; counters are kept per name.
    pub name: String,
    /// The inbounds the user may use (exactly these: the user is taken off any other).
    pub inbounds: Vec<UserInbound>,
    /// Limits enforced by the engine.
    #[serde(default)]
    pub limits: Limits,
}

/// A user's credential on one inbound.
#[derive(
    Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct UserInbound {
    /// Inbound tag.
    pub tag: String,
    /// Password or key, as the inbound's protocol expects it.
    pub password: String,
}

/// Where the routing rules read the time (Unix seconds). Tests inject their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Options beyond the configuration.
#[derive(Clone, Default)]
pub struct EngineOptions {
    /// Keep user counters in this file (memory-mapped), so that they survive a crash of the
    /// process: read what a previous run left with [`read_counters_file`] *before* starting a
    /// new engine on the same file, which starts it afresh.
    pub counters_file: Option<std::path::PathBuf>,
    /// Replaces the system clock for the routing rules' time windows (tests). Protocol
    /// timestamps always use the system clock.
    pub clock: Option<Clock>,
    /// Replaces the system resolver (`getaddrinfo`) for destination names (tests: a lookup
    /// that answers slowly, without a network). It runs on the resolver threads, under the
    /// same deadline.
    pub lookup: Option<outbound::Lookup>,
}

/// The engine entry point.
pub struct Engine;

impl Engine {
    /// Binds every inbound and starts the workers.
    pub fn start(config: Config) -> Result<Handle, EngineError> {
        Engine::start_with(config, EngineOptions::default())
    }

    /// [`Engine::start`] with options.
    pub fn start_with(config: Config, options: EngineOptions) -> Result<Handle, EngineError> {
        let workers = config.worker_count();
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| flume::unbounded()).unzip();
        let t = &config.timeouts;
        let run_id: [u8; 16] = rand::random();
        let file = match &options.counters_file {
            Some(path) => Some(Arc::new(
                runtime::mapped::CounterFile::create(path, workers, run_id)
                    .map_err(EngineError::CountersFile)?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            run_id,
            workers,
            rules: arc_swap::ArcSwap::from_pointee(config.compile_rules()?),
            policy: outbound::DestinationPolicy::from(&config.outbound),
            resolver: outbound::Resolver::new(
                Duration::from_secs(t.connect_secs),
                options.lookup.clone(),
            ),
            timeouts: RuntimeTimeouts {
                handshake: Duration::from_secs(t.handshake_secs),
                connect: Duration::from_secs(t.connect_secs),
                idle: Duration::from_secs(t.idle_secs),
                udp_session: Duration::from_secs(t.udp_session_secs),
            },
            users: Registry::new(file),
            inbounds: RwLock::new(Vec::new()),
            inbound_traffic: Mutex::new(HashMap::new()),
            control: senders,
            control_lock: Mutex::new(()),
            stop: Signal::new(),
            close: Signal::new(),
            clock: options.clock.unwrap_or_else(|| Arc::new(system_now)),
            next_id: AtomicU64::new(1),
            xudp: Default::default(),
        });
        control::apply_inbounds(&shared, config.inbounds.clone())?;
        let receivers = Arc::new(Mutex::new(
            receivers.into_iter().map(Some).collect::<Vec<_>>(),
        ));
        let s = Arc::clone(&shared);
        let pool = runtime::start_workers(workers, move |index| {
            let s = Arc::clone(&s);
            let rx = receivers.lock().expect("not poisoned")[index]
                .take()
                .expect("taken once");
            async move { inbound::run_worker(s, index, rx).await }
        })
        .map_err(EngineError::Runtime)?;
        tracing::info!(workers, inbounds = config.inbounds.len(), "engine started");
        Ok(Handle {
            shared,
            workers: Arc::new(Mutex::new(Some(pool))),
        })
    }
}

/// A running engine. Cheap to clone; every clone controls the same engine.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    workers: Arc<Mutex<Option<runtime::Workers>>>,
}

impl Handle {
    /// The address an inbound actually listens on (its port resolved when configured as 0).
    pub fn local_addr(&self, tag: &str) -> Option<SocketAddr> {
        self.shared.inbound(tag).map(|i| i.local_addr)
    }

    /// Identifies this run of the engine (counters restart from zero with each run).
    pub fn run_id(&self) -> String {
        hex(&self.shared.run_id)
    }

    /// Number of workers (executors) running.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// Adds users or updates them (credentials per inbound, limits), as one batch: either the
    /// whole batch is valid and applied, or nothing changes. A user taken off an inbound has
    /// their connections on it closed.
    pub fn upsert_users(&self, users: Vec<UserSpec>) -> Result<(), EngineError> {
        self.check_running()?;
        control::upsert_users(&self.shared, users)
    }

    /// Removes users: they can no longer connect and their open connections and UDP sessions
    /// close at once. Their counters stay readable. Returns how many of the names were known.
    pub fn remove_users(&self, names: &[String]) -> Result<usize, EngineError> {
        self.check_running()?;
        Ok(control::remove_users(&self.shared, names))
    }

    /// Makes the set of inbounds equal to `inbounds`: new tags are bound, missing tags are
    /// closed (with their connections), tags whose settings changed are rebound. Inbounds whose
    /// settings are unchanged keep their listeners and connections. Users listed in an
    /// inbound's settings are added to it; users added through [`Handle::upsert_users`] keep
    /// their place on inbounds that remain.
    pub fn apply_inbounds(&self, inbounds: Vec<config::InboundConfig>) -> Result<(), EngineError> {
        self.check_running()?;
        let candidate = Config {
            inbounds: inbounds.clone(),
            ..Config::default()
        };
        candidate.validate()?;
        control::apply_inbounds(&self.shared, inbounds)
    }

    /// Monotonic traffic and online state of every user the engine has known.
    pub fn user_stats(&self) -> Vec<UserStats> {
        self.shared
            .users
            .all()
            .iter()
            .map(|u| UserStats {
                name: u.name.clone(),
                traffic: u.traffic.read(),
                active: u.is_active(),
                source_ips: u.source_ips(),
                last_seen: u.last_seen(),
            })
            .collect()
    }

    /// Monotonic traffic of the named users the engine has known (others are left out),
    /// without walking every user as [`Handle::user_stats`] does.
    pub fn traffic_of(&self, names: &[String]) -> Vec<(String, TrafficStats)> {
        let users = &self.shared.users;
        names
            .iter()
            .filter_map(|n| {
                let u = users.get(users.id(n)?);
                Some((n.clone(), u.traffic.read()))
            })
            .collect()
    }

    /// The users whose uplink or downlink moved since `mark` last saw them, each with their
    /// monotonic totals; advances `mark` to what it returns. An idle user costs a few atomic
    /// loads and no allocation, so a caller can poll often with many users.
    ///
    /// Lossless: counters are monotonic and a user left out has exactly the totals `mark`
    /// holds, so a caller that records every returned total misses nothing. A caller that
    /// fails to record them must start over from `TrafficMark::default()`, which reports
    /// every user with traffic again. A mark belongs to one engine run (one `Handle`'s
    /// engine): counters restart from zero with each run.
    pub fn user_traffic_since(&self, mark: &mut TrafficMark) -> Vec<(String, TrafficStats)> {
        let users = self.shared.users.all();
        mark.seen.resize(users.len().max(mark.seen.len()), (0, 0));
        let mut moved = Vec::new();
        for (u, seen) in users.iter().zip(mark.seen.iter_mut()) {
            let t = u.traffic.read();
            if (t.uplink, t.downlink) != *seen {
                *seen = (t.uplink, t.downlink);
                moved.push((u.name.clone(), t));
            }
        }
        moved
    }

    /// Monotonic traffic of every inbound the engine has had, by tag.
    pub fn inbound_stats(&self) -> Vec<InboundStats> {
        let mut v: Vec<InboundStats> = self
            .shared
            .inbound_traffic
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(tag, t)| InboundStats {
                tag: tag.clone(),
                traffic: t.read(),
            })
            .collect();
        v.sort_by(|a, b| a.tag.cmp(&b.tag));
        v
    }

    /// Stops gracefully: TCP listeners close at once and new QUIC connections are refused;
    /// live connections and UDP sessions get `grace` to finish and are then closed. Returns
    /// when every worker has exited, with every port the engine bound free again (a task
    /// still running five seconds after the grace period is logged and left behind, with
    /// what it holds). Calling it again is a no-op.
    pub fn stop(&self, grace: Duration) {
        let Some(workers) = self.workers.lock().expect("not poisoned").take() else {
            return;
        };
        tracing::info!(?grace, "engine stopping");
        {
            // Fired under the control lock: inbounds being applied are handed to the workers
            // before they can see the signal, and none are bound after it.
            let _lock = self.shared.control_lock.lock().expect("not poisoned");
            self.shared.stop.fire();
        }
        let close = self.shared.close.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let timer = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(grace) {
                close.fire();
            }
        });
        workers.join();
        drop(done_tx);
        let _ = timer.join();
        // Every session is over: the sockets parked for XUDP GlobalIDs close now.
        self.shared.xudp.clear();
        tracing::info!("engine stopped");
    }

    /// Replaces the routing rules (`None`: no rules, only the built-in block of special
    /// ranges). New connections, and every UDP packet from now on, are decided by the new
    /// rules; a TCP connection already relaying keeps its destination. Rules that do not
    /// compile (the error names the field under `routing`) leave the current ones in place.
    pub fn set_routing(&self, routing: Option<rules::RulesConfig>) -> Result<(), EngineError> {
        self.check_running()?;
        let compiled = config::compile_routing(routing.as_ref(), self.shared.policy)?;
        tracing::info!(rules = compiled.len(), "routing rules replaced");
        self.shared.rules.store(Arc::new(compiled));
        Ok(())
    }

    /// Whether [`Handle::stop`] has been called.
    pub fn is_stopped(&self) -> bool {
        self.shared.stop.is_fired()
    }

    fn check_running(&self) -> Result<(), EngineError> {
        if self.shared.stop.is_fired() {
            return Err(EngineError::Stopped);
        }
        Ok(())
    }
}

pub(crate) struct RuntimeTimeouts {
    handshake: Duration,
    connect: Duration,
    idle: Duration,
    udp_session: Duration,
}

/// State every worker can read. Changed only by control operations.
pub(crate) struct Shared {
    run_id: [u8; 16],
    workers: usize,
    /// Routing rules (with the private-range block built in), replaced whole by
    /// [`Handle::set_routing`]; each worker keeps the current set at hand (`WorkerCtx::rules`).
    rules: arc_swap::ArcSwap<rules::RuleSet>,
    /// Which special destination ranges the outbound allows (fixed at start): every rule set
    /// is compiled with it.
    policy: outbound::DestinationPolicy,
    /// Destination names are resolved through it, each within `timeouts.connect`.
    resolver: outbound::Resolver,
    timeouts: RuntimeTimeouts,
    users: Registry,
    /// The current inbounds.
    inbounds: RwLock<Vec<Arc<inbound::InboundShared>>>,
    /// Counters by inbound tag, kept across replacement and removal (monotonic).
    inbound_traffic: Mutex<HashMap<String, Arc<Traffic>>>,
    /// One control channel per worker.
    control: Vec<flume::Sender<inbound::Control>>,
    /// Serialises control operations.
    control_lock: Mutex<()>,
    /// Fired to stop accepting.
    stop: Signal,
    /// Fired when the grace period is over: live connections close.
    close: Signal,
    clock: Clock,
    next_id: AtomicU64,
    /// XUDP sessions by GlobalID (held, or parked with their sockets).
    xudp: inbound::xudp::Registry,
}

impl Shared {
    fn inbound(&self, tag: &str) -> Option<Arc<inbound::InboundShared>> {
        self.inbounds
            .read()
            .expect("not poisoned")
            .iter()
            .find(|i| i.tag == tag)
            .cloned()
    }

    /// Unix seconds (system time: protocols check client timestamps against it).
    pub(crate) fn now(&self) -> u64 {
        system_now()
    }

    /// Unix seconds as the routing rules see them (injectable for tests).
    pub(crate) fn rules_now(&self) -> u64 {
        (self.clock)()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a previous run left in a counters file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousRun {
    /// Its run id, as [`Handle::run_id`] gave it.
    pub run_id: String,
    /// Each user's final uplink and downlink.
    pub users: Vec<(String, u64, u64)>,
}

/// The user counters a previous run left in a counters file (see
/// [`EngineOptions::counters_file`]); `None` if the file does not exist.
pub fn read_counters_file(path: &std::path::Path) -> io::Result<Option<PreviousRun>> {
    Ok(runtime::mapped::read(path)?.map(|s| PreviousRun {
        run_id: hex(&s.run_id),
        users: s.users,
    }))
}

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
