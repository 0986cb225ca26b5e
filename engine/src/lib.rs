//! The Marzneshin engine: a thread-per-core proxy data plane.
//!
//! ```text
//!  clients ─► listener (SO_REUSEPORT, one per worker) ─► inbound codec (sans-IO, `proto`)
//!                                                             │ user, target
//!                 per-worker counters ◄── relay (pooled buffers, in-place AEAD) ─► outbound
//! ```
//!
//! [`Engine::start`] validates nothing itself (a [`Config`] is valid by construction through
//! [`Config::load`] / [`Config::from_json`]), binds every listener on the calling thread and
//! starts one pinned glommio executor per worker. The returned [`Handle`] is cheap to clone,
//! `Send + Sync`, and is how embedders and the panel talk to the engine.
//!
//! See `docs/ARCHITECTURE.md` for the code map and invariants.

pub mod buffer;
pub mod config;
pub mod counters;
mod inbound;
pub mod links;
pub mod outbound;
pub mod runtime;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use config::{Config, ConfigError};
use counters::Traffic;
pub use counters::TrafficStats;
use outbound::DestinationPolicy;
use proto::shadowsocks::{SaltFilter, UserKeys};
use runtime::Signal;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
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
}

/// Statistics of one user, summed over every inbound and worker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UserStats {
    /// User name.
    pub name: String,
    /// Bytes moved.
    #[serde(flatten)]
    pub traffic: TrafficStats,
}

/// Statistics of one inbound.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InboundStats {
    /// Inbound tag.
    pub tag: String,
    /// Bytes moved.
    #[serde(flatten)]
    pub traffic: TrafficStats,
}

/// The engine entry point.
pub struct Engine;

impl Engine {
    /// Binds every inbound and starts the workers.
    pub fn start(config: Config) -> Result<Handle, StartError> {
        let workers = config.worker_count();
        let mut users = UserRegistry::default();
        let mut inbounds = Vec::new();
        let mut sockets: Vec<Vec<InboundSockets>> = (0..workers).map(|_| Vec::new()).collect();
        for ib in &config.inbounds {
            let (tcp, udp, local_addr) = bind_inbound(ib, workers)?;
            for (w, (t, u)) in tcp.into_iter().zip(udp).enumerate() {
                sockets[w].push(InboundSockets { tcp: t, udp: u });
            }
            let kind = match &ib.protocol {
                config::ProtocolConfig::Shadowsocks(ss) => {
                    let method = ss.method();
                    let ids: Vec<u32> = ss
                        .users
                        .iter()
                        .map(|u| users.intern(&u.name, workers))
                        .collect();
                    let keys = UserKeys::new(
                        method,
                        ss.psk.as_deref(),
                        ids.iter()
                            .zip(&ss.users)
                            .map(|(&id, u)| (id, u.password.as_str())),
                    )
                    .expect("validated by Config");
                    // 2022 salts carry timestamps (+-30 s), so 60 s of exact memory is complete;
                    // AEAD (2017) salts have no time, so their set is capped.
                    let (ttl, cap) = if method.is_2022() {
                        (60, usize::MAX)
                    } else {
                        (300, 1 << 20)
                    };
                    InboundKind::Shadowsocks(inbound::shadowsocks::Inbound {
                        keys,
                        salts: Mutex::new(SaltFilter::new(ttl, cap)),
                    })
                }
            };
            inbounds.push(InboundShared {
                tag: ib.tag.clone(),
                local_addr,
                traffic: Traffic::new(workers),
                kind,
            });
        }
        let t = &config.timeouts;
        let shared = Arc::new(Shared {
            workers,
            policy: DestinationPolicy::from(&config.outbound),
            timeouts: RuntimeTimeouts {
                handshake: Duration::from_secs(t.handshake_secs),
                connect: Duration::from_secs(t.connect_secs),
                idle: Duration::from_secs(t.idle_secs),
                udp_session: Duration::from_secs(t.udp_session_secs),
            },
            inbounds,
            users,
            stop: Signal::new(),
            close: Signal::new(),
            sockets: Mutex::new(sockets.into_iter().map(Some).collect()),
        });
        let s = Arc::clone(&shared);
        let pool = runtime::start_workers(workers, move |index| {
            let s = Arc::clone(&s);
            async move { inbound::run_worker(s, index).await }
        })
        .map_err(StartError::Runtime)?;
        tracing::info!(workers, inbounds = shared.inbounds.len(), "engine started");
        Ok(Handle {
            shared,
            workers: Arc::new(Mutex::new(Some(pool))),
        })
    }
}

/// Binds one inbound's sockets for every worker: the first bind picks the port (when the
/// configured port is 0) and the rest reuse it.
#[allow(clippy::type_complexity)]
fn bind_inbound(
    ib: &config::InboundConfig,
    workers: usize,
) -> Result<(Vec<Option<OwnedFd>>, Vec<Option<OwnedFd>>, SocketAddr), StartError> {
    use config::Network;
    let mut addr = ib.listen;
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let err = |network, addr, source| StartError::Bind {
        tag: ib.tag.clone(),
        network,
        addr,
        source,
    };
    for _ in 0..workers {
        if ib.network.contains(&Network::Tcp) {
            let fd = runtime::tcp_listener_socket(addr).map_err(|e| err(Network::Tcp, addr, e))?;
            if addr.port() == 0 {
                addr = socket2::SockRef::from(&fd)
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(addr);
            }
            tcp.push(Some(fd));
        } else {
            tcp.push(None);
        }
        if ib.network.contains(&Network::Udp) {
            let fd = runtime::udp_socket(addr).map_err(|e| err(Network::Udp, addr, e))?;
            if addr.port() == 0 {
                addr = socket2::SockRef::from(&fd)
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(addr);
            }
            udp.push(Some(fd));
        } else {
            udp.push(None);
        }
    }
    Ok((tcp, udp, addr))
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
        self.shared
            .inbounds
            .iter()
            .find(|i| i.tag == tag)
            .map(|i| i.local_addr)
    }

    /// Number of workers (executors) running.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// Monotonic traffic of every user since the engine started.
    pub fn user_stats(&self) -> Vec<UserStats> {
        self.shared
            .users
            .list
            .iter()
            .map(|u| UserStats {
                name: u.name.clone(),
                traffic: u.traffic.read(),
            })
            .collect()
    }

    /// Monotonic traffic of every inbound since the engine started.
    pub fn inbound_stats(&self) -> Vec<InboundStats> {
        self.shared
            .inbounds
            .iter()
            .map(|i| InboundStats {
                tag: i.tag.clone(),
                traffic: i.traffic.read(),
            })
            .collect()
    }

    /// Stops gracefully: listeners close at once, live connections get `grace` to finish and
    /// are then closed. Returns when every worker has exited. Calling it again is a no-op.
    pub fn stop(&self, grace: Duration) {
        let Some(workers) = self.workers.lock().expect("not poisoned").take() else {
            return;
        };
        tracing::info!(?grace, "engine stopping");
        self.shared.stop.fire();
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
        tracing::info!("engine stopped");
    }
}

struct InboundSockets {
    tcp: Option<OwnedFd>,
    udp: Option<OwnedFd>,
}

pub(crate) struct RuntimeTimeouts {
    handshake: Duration,
    connect: Duration,
    idle: Duration,
    udp_session: Duration,
}

/// State every worker can read. Written only at start (and by control messages later).
pub(crate) struct Shared {
    workers: usize,
    policy: DestinationPolicy,
    timeouts: RuntimeTimeouts,
    inbounds: Vec<InboundShared>,
    users: UserRegistry,
    /// Fired to stop accepting.
    stop: Signal,
    /// Fired when the grace period is over: live connections close.
    close: Signal,
    /// Each worker takes its listening sockets once.
    sockets: Mutex<Vec<Option<Vec<InboundSockets>>>>,
}

pub(crate) struct InboundShared {
    tag: String,
    local_addr: SocketAddr,
    traffic: Traffic,
    kind: InboundKind,
}

pub(crate) enum InboundKind {
    Shadowsocks(inbound::shadowsocks::Inbound),
}

/// Users by engine-assigned id (the codecs' `UserId`).
#[derive(Default)]
pub(crate) struct UserRegistry {
    list: Vec<UserRecord>,
    by_name: HashMap<String, u32>,
}

pub(crate) struct UserRecord {
    name: String,
    traffic: Traffic,
}

impl UserRegistry {
    fn intern(&mut self, name: &str, workers: usize) -> u32 {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = self.list.len() as u32;
        self.list.push(UserRecord {
            name: name.to_owned(),
            traffic: Traffic::new(workers),
        });
        self.by_name.insert(name.to_owned(), id);
        id
    }

    fn get(&self, id: u32) -> &UserRecord {
        &self.list[id as usize]
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
