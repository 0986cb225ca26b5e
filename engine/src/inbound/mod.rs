//! Inbounds: what each worker runs for each listener, and the worker itself.

pub(crate) mod hysteria2;
mod mux;
mod relay;
pub(crate) mod shadowsocks;
mod stream;
pub(crate) mod trojan;
pub(crate) mod vision;
pub(crate) mod vless;
pub(crate) mod vmess;
pub(crate) mod xudp;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buffer::BufferPool;
use crate::config::{InboundConfig, ProtocolConfig};
use crate::counters::Traffic;
use crate::rules::RuleSet;
use crate::runtime::{self, Signal};
use crate::Shared;

/// Size of relay buffers: a whole 2022 chunk (64 KiB + headers) plus room to read ahead.
pub(crate) const RELAY_BUFFER: usize = 128 * 1024;

/// One inbound, as every worker sees it. Replaced as a whole when its settings change.
pub(crate) struct InboundShared {
    /// Unique for the engine's lifetime (a replaced inbound gets a new id).
    pub(crate) id: u64,
    pub(crate) tag: String,
    pub(crate) settings_key: String,
    /// The configured listen address (port possibly 0).
    pub(crate) listen: SocketAddr,
    /// The address actually bound.
    pub(crate) local_addr: SocketAddr,
    pub(crate) traffic: Arc<Traffic>,
    /// Fired when the inbound is removed or replaced: its listeners and connections close.
    pub(crate) closed: Signal,
    /// User id to credential (control path only).
    pub(crate) credentials: std::sync::Mutex<BTreeMap<u32, String>>,
    pub(crate) kind: InboundKind,
    /// TLS in front of the protocol, if configured.
    pub(crate) tls: Option<crate::transport::TlsServer>,
    /// WebSocket in front of the protocol (inside TLS, if any), if configured.
    pub(crate) ws: Option<crate::config::WsConfig>,
}

pub(crate) enum InboundKind {
    Shadowsocks(shadowsocks::Inbound),
    Vless(vless::Inbound),
    Trojan(trojan::Inbound),
    Vmess(vmess::Inbound),
    Hysteria2(hysteria2::Inbound),
}

/// An inbound's user table: a copy of the installed one (O(1): the tables are persistent, see
/// `proto::directory`) that the control path changes and then installs.
#[derive(Clone)]
pub(crate) enum Keys {
    Shadowsocks(Box<proto::shadowsocks::UserKeys>),
    Vless(proto::vless::VlessUsers),
    Trojan(proto::trojan::TrojanUsers),
    Vmess(proto::vmess::VmessUsers),
    Hysteria2(proto::hysteria2::Hysteria2Users),
}

impl Keys {
    /// Gives user `id` the key `credential` names (replacing theirs). Fails, changing nothing,
    /// when it is not a valid credential here or another user holds the same key.
    pub(crate) fn insert(&mut self, id: u32, credential: &str) -> Result<(), String> {
        let uuid = || proto::vless::parse_user_id(credential).map_err(|e| e.to_string());
        match self {
            Keys::Shadowsocks(k) => k.insert(id, credential).map_err(|e| e.to_string()),
            Keys::Vless(k) => k.insert(id, uuid()?).map_err(|(_, e)| e.to_string()),
            Keys::Vmess(k) => k.insert(id, uuid()?).map_err(|(_, e)| e.to_string()),
            Keys::Trojan(k) => k.insert(id, credential).map_err(|(_, e)| e.to_string()),
            Keys::Hysteria2(k) => k.insert(id, credential).map_err(|(_, e)| e.to_string()),
        }
    }

    /// Removes user `id`.
    pub(crate) fn remove(&mut self, id: u32) {
        match self {
            Keys::Shadowsocks(k) => k.remove(id),
            Keys::Vless(k) => k.remove(id),
            Keys::Vmess(k) => k.remove(id),
            Keys::Trojan(k) => k.remove(id),
            Keys::Hysteria2(k) => k.remove(id),
        };
    }
}

impl InboundShared {
    pub(crate) fn new(
        id: u64,
        c: &InboundConfig,
        settings_key: String,
        local_addr: SocketAddr,
        traffic: Arc<Traffic>,
    ) -> Result<InboundShared, crate::ConfigError> {
        let kind = match &c.protocol {
            ProtocolConfig::Shadowsocks(ss) => {
                InboundKind::Shadowsocks(shadowsocks::Inbound::new(ss))
            }
            ProtocolConfig::Vless(v) => {
                InboundKind::Vless(vless::Inbound::new(v.fallback, v.flow.is_some()))
            }
            ProtocolConfig::Trojan(t) => InboundKind::Trojan(trojan::Inbound::new(t.fallback)),
            ProtocolConfig::Vmess(_) => InboundKind::Vmess(vmess::Inbound::new()),
            ProtocolConfig::Hysteria2(h) => {
                let at = format!("inbound {:?}", c.tag);
                let tls = c.tls.as_ref().ok_or_else(|| crate::ConfigError::Invalid {
                    field: format!("{at}.tls"),
                    message: "required".into(),
                })?;
                InboundKind::Hysteria2(hysteria2::Inbound::new(h, tls, &at)?)
            }
        };
        let tls = match &c.tls {
            // Hysteria2's TLS is QUIC's, inside its own inbound.
            Some(_) if matches!(kind, InboundKind::Hysteria2(_)) => None,
            Some(t) => Some(crate::transport::TlsServer::new(
                t,
                &format!("inbound {:?} tls", c.tag),
            )?),
            None => None,
        };
        Ok(InboundShared {
            id,
            tag: c.tag.clone(),
            settings_key,
            listen: c.listen,
            local_addr,
            traffic,
            closed: Signal::new(),
            credentials: std::sync::Mutex::new(BTreeMap::new()),
            kind,
            tls,
            ws: c.ws.clone(),
        })
    }

    /// Checks one credential against this inbound's protocol.
    pub(crate) fn check_credential(&self, password: &str) -> Result<(), String> {
        match &self.kind {
            InboundKind::Shadowsocks(ss) => ss.check_credential(password),
            InboundKind::Vless(_) | InboundKind::Vmess(_) => proto::vless::parse_user_id(password)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            InboundKind::Trojan(_) | InboundKind::Hysteria2(_) if password.is_empty() => {
                Err("password is empty".into())
            }
            InboundKind::Trojan(_) | InboundKind::Hysteria2(_) => Ok(()),
        }
    }

    /// A copy of the installed user table, to change and install.
    pub(crate) fn keys(&self) -> Keys {
        match &self.kind {
            InboundKind::Shadowsocks(ss) => {
                Keys::Shadowsocks(Box::new(ss.keys.load().as_ref().clone()))
            }
            InboundKind::Vless(v) => Keys::Vless(v.keys.load().as_ref().clone()),
            InboundKind::Trojan(t) => Keys::Trojan(t.keys.load().as_ref().clone()),
            InboundKind::Vmess(v) => Keys::Vmess(v.keys.load().as_ref().clone()),
            InboundKind::Hysteria2(h) => Keys::Hysteria2(h.keys.load().as_ref().clone()),
        }
    }

    pub(crate) fn install_keys(&self, keys: Keys) {
        match (&self.kind, keys) {
            (InboundKind::Shadowsocks(ss), Keys::Shadowsocks(k)) => ss.keys.store(Arc::new(*k)),
            (InboundKind::Vless(v), Keys::Vless(k)) => v.keys.store(Arc::new(k)),
            (InboundKind::Trojan(t), Keys::Trojan(k)) => t.keys.store(Arc::new(k)),
            (InboundKind::Vmess(v), Keys::Vmess(k)) => v.keys.store(Arc::new(k)),
            (InboundKind::Hysteria2(h), Keys::Hysteria2(k)) => h.keys.store(Arc::new(k)),
            _ => unreachable!("keys are copied from the same inbound"),
        }
    }

    /// Whether `user` may use this inbound now.
    pub(crate) fn has_user(&self, user: u32) -> bool {
        match &self.kind {
            InboundKind::Shadowsocks(ss) => ss.keys.load().contains(user),
            InboundKind::Vless(v) => v.keys.load().contains(user),
            InboundKind::Trojan(t) => t.keys.load().contains(user),
            InboundKind::Vmess(v) => v.keys.load().contains(user),
            InboundKind::Hysteria2(h) => h.keys.load().contains(user),
        }
    }
}

/// One worker's listening sockets for one inbound.
#[derive(Default)]
pub(crate) struct InboundSockets {
    pub(crate) tcp: Option<OwnedFd>,
    pub(crate) udp: Option<OwnedFd>,
}

/// Messages from control operations to each worker.
pub(crate) enum Control {
    /// Start serving an inbound on these sockets.
    Serve {
        inbound: Arc<InboundShared>,
        sockets: InboundSockets,
    },
    /// Close `user`'s connections (on one inbound, or everywhere).
    Kick { user: u32, inbound: Option<u64> },
}

struct ConnEntry {
    user: u32,
    inbound: u64,
    kill: Signal,
}

/// Per-worker state: owned by one executor, never shared.
pub(crate) struct WorkerCtx {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) buffers: Rc<BufferPool>,
    /// Pipes for relaying between plain TCP sockets with `splice`.
    pub(crate) pipes: crate::runtime::splice::PipePool,
    /// Unix seconds, refreshed by a ticker (cheap to read per chunk).
    pub(crate) now: Cell<u64>,
    /// The user last authenticated from each source address, per inbound: tried first.
    hints: RefCell<HashMap<(u64, IpAddr), u32>>,
    /// Authenticated connections and sessions, so that a kick can close them.
    conns: RefCell<HashMap<u64, ConnEntry>>,
    next_conn: Cell<u64>,
    /// The routing rules as this worker last saw them: handed out by [`WorkerCtx::rules`]
    /// without touching the shared reference count.
    rules: RefCell<LocalRules>,
}

const MAX_HINTS: usize = 1 << 16;

/// The engine's current rule set as one worker holds it: the `Rc` is the worker's own count,
/// so handing the rules to a connection touches no count that other cores share.
pub(crate) type LocalRules = Rc<Arc<RuleSet>>;

impl WorkerCtx {
    /// The current routing rules (replaced whole by `Handle::set_routing`). A new set is
    /// picked up on the first call after it is stored; otherwise only this worker's count
    /// changes.
    pub(crate) fn rules(&self) -> LocalRules {
        let current = self.shared.rules.load();
        let mut cached = self.rules.borrow_mut();
        if !Arc::ptr_eq(&cached, &current) {
            *cached = Rc::new(arc_swap::Guard::into_inner(current));
        }
        Rc::clone(&cached)
    }

    pub(crate) fn hint(&self, inbound: u64, ip: IpAddr) -> Option<u32> {
        self.hints.borrow().get(&(inbound, ip)).copied()
    }

    pub(crate) fn remember(&self, inbound: u64, ip: IpAddr, user: u32) {
        let mut h = self.hints.borrow_mut();
        if h.len() >= MAX_HINTS {
            h.clear();
        }
        h.insert((inbound, ip), user);
    }

    /// Counts a connection or session of `inbound` as open until the guard drops.
    pub(crate) fn live_guard(&self, inbound: &Arc<InboundShared>) -> LiveGuard {
        inbound.traffic.opened(self.index);
        LiveGuard {
            worker: self.index,
            inbound: Arc::clone(inbound),
        }
    }

    /// Registers an authenticated connection of `user` on `inbound`; the returned guard's
    /// signal fires when the user is kicked. `None` if the user lost access meanwhile.
    pub(crate) fn register(
        self: &Rc<Self>,
        user: u32,
        inbound: &InboundShared,
    ) -> Option<Registration> {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        let kill = Signal::new();
        self.conns.borrow_mut().insert(
            id,
            ConnEntry {
                user,
                inbound: inbound.id,
                kill: kill.clone(),
            },
        );
        let reg = Registration {
            ctx: Rc::clone(self),
            id,
            kill,
        };
        // A kick processed before the insert above found nothing to close: re-check access.
        if !self.shared.users.get(user).is_active() || !inbound.has_user(user) {
            return None;
        }
        Some(reg)
    }

    fn kick(&self, user: u32, inbound: Option<u64>) {
        for c in self.conns.borrow().values() {
            if c.user == user && inbound.is_none_or(|i| i == c.inbound) {
                c.kill.fire();
            }
        }
    }
}

pub(crate) struct LiveGuard {
    worker: usize,
    inbound: Arc<InboundShared>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.inbound.traffic.closed(self.worker);
    }
}

/// An authenticated connection's entry in the worker's table.
pub(crate) struct Registration {
    ctx: Rc<WorkerCtx>,
    id: u64,
    /// Fires when the connection must close (user removed or taken off the inbound).
    pub(crate) kill: Signal,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.ctx.conns.borrow_mut().remove(&self.id);
    }
}

/// Runs `fut` until it finishes or any of the connection's end conditions fires: the engine's
/// grace period ends, the inbound closes, or (when given) the connection is killed.
///
/// A plain function building a combinator, not an `async fn`: an `async fn` keeps a future it
/// takes by value twice in its own state (as its argument and again while awaiting it), and a
/// connection's future is kilobytes, nested several of these layers deep.
pub(crate) fn until_closed<'a, F: std::future::Future<Output = ()> + 'a>(
    ctx: &'a WorkerCtx,
    inbound: &'a InboundShared,
    kill: Option<&'a Signal>,
    fut: F,
) -> impl std::future::Future<Output = ()> + 'a {
    let ends = async move {
        let ends = futures_lite::future::or(ctx.shared.close.wait(), inbound.closed.wait());
        match kill {
            Some(k) => futures_lite::future::or(ends, k.wait()).await,
            None => ends.await,
        }
    };
    futures_lite::future::or(fut, ends)
}

/// Accepts connections until the engine stops or the inbound closes, running `handle` on
/// each in its own task (counted live while it runs).
pub(crate) async fn accept_loop<F, Fut>(
    ctx: Rc<WorkerCtx>,
    inbound: Arc<InboundShared>,
    listener: runtime::TcpListener,
    handle: F,
) where
    F: Fn(Rc<WorkerCtx>, Arc<InboundShared>, runtime::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    // Made once and polled with every accept (not rebuilt, with its listeners, per accept).
    let stop = async {
        futures_lite::future::or(ctx.shared.stop.wait(), inbound.closed.wait()).await;
        None
    };
    let mut stop = std::pin::pin!(stop);
    loop {
        // The stop first: a listener with connections queued always has one to accept.
        let accepted = futures_lite::future::or(stop.as_mut(), async {
            Some(runtime::accept(&listener).await)
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let guard = ctx.live_guard(&inbound);
                let task = handle(Rc::clone(&ctx), Arc::clone(&inbound), stream);
                runtime::spawn(runtime::Unit::new(task, guard));
            }
            Some(Err(e)) => {
                tracing::warn!(inbound = %inbound.tag, "accept failed: {e}");
                runtime::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The body of one worker: serve inbounds as control messages arrive, stop when told, drain.
pub(crate) async fn run_worker(
    shared: Arc<Shared>,
    index: usize,
    control: flume::Receiver<Control>,
) {
    let ctx = Rc::new(WorkerCtx {
        index,
        shared: Arc::clone(&shared),
        buffers: BufferPool::new(RELAY_BUFFER, 1024),
        pipes: Default::default(),
        now: Cell::new(shared.now()),
        hints: RefCell::new(HashMap::new()),
        conns: RefCell::new(HashMap::new()),
        next_conn: Cell::new(0),
        rules: RefCell::new(Rc::new(shared.rules.load_full())),
    });
    let ticker = Rc::clone(&ctx);
    runtime::spawn(async move {
        // One timer moved forward each tick: a new one per tick is an allocation.
        let mut tick = runtime::Timer::new(Instant::now());
        while !ticker.shared.stop.is_fired() {
            ticker.now.set(ticker.shared.now());
            if ticker.index == 0 {
                ticker.shared.xudp.sweep(Instant::now());
            }
            tick.reset(Instant::now() + Duration::from_millis(250));
            futures_lite::future::or(&mut tick, ticker.shared.stop.wait()).await;
        }
    });
    loop {
        let msg = futures_lite::future::or(async { control.recv_async().await.ok() }, async {
            shared.stop.wait().await;
            None
        })
        .await;
        match msg {
            None => break,
            Some(Control::Serve { inbound, sockets }) => match &inbound.kind {
                InboundKind::Hysteria2(_) => {
                    if let Some(fd) = sockets.udp {
                        let s = runtime::adopt_udp(fd);
                        runtime::spawn(hysteria2::serve(Rc::clone(&ctx), Arc::clone(&inbound), s));
                    }
                }
                InboundKind::Vless(_) | InboundKind::Trojan(_) | InboundKind::Vmess(_) => {
                    if let Some(fd) = sockets.tcp {
                        let l = runtime::adopt_listener(fd);
                        runtime::spawn(stream::serve_tcp(Rc::clone(&ctx), Arc::clone(&inbound), l));
                    }
                }
                InboundKind::Shadowsocks(_) => {
                    if let Some(fd) = sockets.tcp {
                        let l = runtime::adopt_listener(fd);
                        runtime::spawn(shadowsocks::serve_tcp(
                            Rc::clone(&ctx),
                            Arc::clone(&inbound),
                            l,
                        ));
                    }
                    if let Some(fd) = sockets.udp {
                        let s = Rc::new(runtime::adopt_udp(fd));
                        runtime::spawn(shadowsocks::serve_udp(
                            Rc::clone(&ctx),
                            Arc::clone(&inbound),
                            s,
                        ));
                    }
                }
            },
            Some(Control::Kick { user, inbound }) => ctx.kick(user, inbound),
        }
    }
    // Listeners close as their loops see the stop signal; live connections finish or are
    // closed when the grace period ends (the `close` signal). The worker returns only once
    // every task it spawned has ended (each connection and session is one): its executor
    // would drop nothing still pending, and a listener loop not yet woken by the stop signal
    // would keep its port open for as long as the process lives. Every task ends by the
    // close signal; one that has not a few seconds after it is reported, not waited for
    // forever.
    let mut closed_at = None;
    while runtime::tasks() > 0 {
        // The ticker has stopped; connections still relaying need the clock (Shadowsocks 2022
        // timestamps, last-seen times).
        ctx.now.set(shared.now());
        if shared.close.is_fired() {
            let since = *closed_at.get_or_insert_with(Instant::now);
            if since.elapsed() >= LEFT_BEHIND_AFTER_CLOSE {
                tracing::warn!(
                    worker = index,
                    tasks = runtime::tasks(),
                    "tasks still running after the grace period; left behind"
                );
                break;
            }
        }
        runtime::sleep(Duration::from_millis(20)).await;
    }
    // One more turn of the reactor: operations the last tasks left in the kernel (an accept,
    // a receive) hold their sockets open until they are cancelled, and the cancellations go
    // in with the reactor's next submission.
    runtime::sleep(Duration::from_millis(1)).await;
    tracing::debug!(worker = index, "worker drained");
}

/// How long after the grace period a stopping worker still waits for its tasks to end.
const LEFT_BEHIND_AFTER_CLOSE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, R: std::future::Future>(_: impl Fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every open connection keeps its task's future in memory, so its size is memory per
    /// idle connection. Nesting `async fn` wrappers that take a future by value once made a
    /// stream connection's future 146 KiB (each layer stores the future twice); it is about
    /// 5 KiB.
    #[test]
    fn connection_futures_stay_small() {
        const LIMIT: usize = 12 * 1024;
        let stream = future_size(super::stream::connection);
        let shadowsocks = future_size(super::shadowsocks::connection);
        assert!(
            stream <= LIMIT,
            "a stream connection's future is {stream} bytes"
        );
        assert!(
            shadowsocks <= LIMIT,
            "a Shadowsocks connection's future is {shadowsocks} bytes"
        );
    }
}
