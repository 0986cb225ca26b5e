//! Shadowsocks inbound: TCP relay and UDP sessions over the `proto::shadowsocks` codecs.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use proto::shadowsocks::replay::SaltCheck;
use proto::shadowsocks::tcp::{
    Handshake, Opened, ServerHandshake, StreamOpener, StreamSealer, HEADROOM, LEN_CHUNK,
};
use proto::shadowsocks::udp::{decode_client_packet, ClientPacket, UdpResponder, UDP_HEADROOM};
use proto::shadowsocks::{Key, Method, SaltFilter, SlidingWindow, UserKeys, TAG_LEN};
use proto::TargetAddr;
use rand::RngCore;

use super::relay::{
    drain, read_slots, udp_destination, unmap, until_idle, Batch, LowWater, Meter, Tally,
};
use super::{until_closed, InboundKind, InboundShared, WorkerCtx};
use crate::buffer::RelayBuffer;
use crate::config::ShadowsocksConfig;
use crate::runtime::{self, TcpListener, TcpStream, UdpSocket};
use crate::users::{Admission, UserRecord};

/// Shared (read-mostly) state of one Shadowsocks inbound.
pub(crate) struct Inbound {
    method: Method,
    /// The current key table; swapped whole when users change, read once per handshake.
    pub(crate) keys: ArcSwap<UserKeys>,
    /// Replay filter shared by every worker (a replay may land on any core). Locked once per
    /// handshake, never per chunk.
    salts: Mutex<SaltFilter>,
    /// The packet-id window of every 2022 UDP session, by user and client session id, shared
    /// by the workers holding that session: a packet replayed from another address may land
    /// on another worker (`SO_REUSEPORT` hashes the address), which then checks the same
    /// window. Locked when a worker opens or drops a session; each window is locked per packet
    /// (by one worker, unless the client's address moved or a replay came from elsewhere).
    udp_windows: Mutex<Windows>,
}

/// A 2022 UDP session across workers: the user and the client's session id.
type WindowKey = (u32, u64);

/// How long a window outlives its last session: a replay passes the ±30 s timestamp check
/// (whole seconds, against a clock read a little late) at most about 61 s after the original
/// was accepted, so it still finds the window.
const WINDOW_RETIRED: std::time::Duration = std::time::Duration::from_secs(62);

#[derive(Default)]
struct Windows {
    slots: HashMap<WindowKey, Slot>,
    /// When retired windows were last swept out.
    swept: Option<Instant>,
}

enum Slot {
    /// Held by the sessions of one or more workers.
    Live(Weak<Mutex<SlidingWindow>>),
    /// No session holds it since then; kept for [`WINDOW_RETIRED`].
    Retired(Arc<Mutex<SlidingWindow>>, Instant),
}

impl Inbound {
    pub(crate) fn new(c: &ShadowsocksConfig) -> Inbound {
        let method = c.method();
        let keys = UserKeys::new(method, c.psk.as_deref(), std::iter::empty())
            .expect("validated by Config");
        // 2022 salts carry timestamps (+-30 s), so 60 s of exact memory is complete; AEAD
        // (2017) salts have no time, so their set is capped.
        let (ttl, cap) = if method.is_2022() {
            (60, usize::MAX)
        } else {
            (300, 1 << 20)
        };
        Inbound {
            method,
            keys: ArcSwap::from_pointee(keys),
            salts: Mutex::new(SaltFilter::new(ttl, cap)),
            udp_windows: Mutex::new(Windows::default()),
        }
    }

    pub(crate) fn check_credential(&self, password: &str) -> Result<(), String> {
        Key::from_password(self.method, password)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while these are held; should it, the data is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A worker's hold on the packet-id window of a 2022 UDP session ([`Inbound::udp_windows`]);
/// the last hold dropped retires the window for [`WINDOW_RETIRED`].
struct WindowHold {
    inbound: Arc<InboundShared>,
    key: WindowKey,
    /// Taken (and dropped) only under the table's lock: see `release`.
    window: Option<Arc<Mutex<SlidingWindow>>>,
    /// Whether `take` made the window (no session had it, live or retired).
    fresh: bool,
}

impl WindowHold {
    /// The window of `key`: the one live or retired, else a new one.
    fn take(inbound: &Arc<InboundShared>, key: WindowKey) -> WindowHold {
        let mut table = lock(&settings(inbound).udp_windows);
        let now = Instant::now();
        if table
            .swept
            .is_none_or(|t| now.duration_since(t) >= WINDOW_RETIRED / 4)
        {
            table.slots.retain(|_, slot| match slot {
                Slot::Live(w) => w.strong_count() > 0,
                Slot::Retired(_, at) => now.duration_since(*at) < WINDOW_RETIRED,
            });
            table.swept = Some(now);
        }
        let found = match table.slots.get(&key) {
            Some(Slot::Live(w)) => w.upgrade(),
            Some(Slot::Retired(w, _)) => Some(Arc::clone(w)),
            None => None,
        };
        let fresh = found.is_none();
        let window = found.unwrap_or_else(|| Arc::new(Mutex::new(SlidingWindow::default())));
        table.slots.insert(key, Slot::Live(Arc::downgrade(&window)));
        WindowHold {
            inbound: Arc::clone(inbound),
            key,
            window: Some(window),
            fresh,
        }
    }

    /// Whether `packet_id` is new to the session (and now seen).
    fn accept(&self, packet_id: u64) -> bool {
        self.window
            .as_ref()
            .is_some_and(|w| lock(w).accept(packet_id))
    }

    /// Gives the window up for a session that was not opened (refused admission, say): a
    /// window this hold made goes, so that refused sessions leave nothing behind (the packet
    /// it saw was not forwarded: a replay of it is as good as the original).
    fn abandon(mut self) {
        self.release(!self.fresh);
    }

    /// Drops this hold's window under the table's lock, so that holders released at once on
    /// two workers cannot both see another holder; the last one retires the window when
    /// `retire`, else removes it.
    fn release(&mut self, retire: bool) {
        let mut table = lock(&settings(&self.inbound).udp_windows);
        // Taken after the lock, so dropped before it is released: holds are cloned and
        // dropped only under this lock, and the count is exact here.
        let Some(window) = self.window.take() else {
            return;
        };
        if Arc::strong_count(&window) == 1 {
            if retire {
                table
                    .slots
                    .insert(self.key, Slot::Retired(window, Instant::now()));
            } else {
                table.slots.remove(&self.key);
            }
        }
    }
}

impl Drop for WindowHold {
    fn drop(&mut self) {
        self.release(true);
    }
}

/// A replay filter shared by every worker of an inbound (Shadowsocks salts, VMess auth ids).
pub(crate) struct SharedSalts<'a>(pub(crate) &'a Mutex<SaltFilter>);

impl SaltCheck for SharedSalts<'_> {
    fn check_and_insert(&mut self, salt: &[u8], now: u64) -> bool {
        self.0
            .lock()
            .expect("not poisoned")
            .check_and_insert(salt, now)
    }
}

fn settings(inbound: &InboundShared) -> &Inbound {
    match &inbound.kind {
        InboundKind::Shadowsocks(ss) => ss,
        _ => unreachable!("a Shadowsocks inbound"),
    }
}

pub(crate) async fn serve_tcp(
    ctx: Rc<WorkerCtx>,
    inbound: Arc<InboundShared>,
    listener: TcpListener,
) {
    super::accept_loop(ctx, inbound, listener, connection).await;
}

/// One accepted connection from start to end: the future each connection's task holds for as
/// long as it is open (kept small: see `inbound::tests`).
pub(crate) async fn connection(ctx: Rc<WorkerCtx>, inbound: Arc<InboundShared>, stream: TcpStream) {
    until_closed(&ctx, &inbound, None, handle_tcp(&ctx, &inbound, stream)).await;
}

async fn handle_tcp(ctx: &Rc<WorkerCtx>, ib: &InboundShared, mut client: TcpStream) {
    let Ok(peer) = client.peer_addr() else { return };
    let _ = client.set_nodelay(true);
    let ss = settings(ib);
    let t = &ctx.shared.timeouts;
    let deadline = Instant::now() + t.handshake;
    let mut up = ctx.buffers.get();
    let mut len = 0;
    let mut hs = ServerHandshake::new();
    let hint = ctx.hint(ib.id, peer.ip());
    let req = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match runtime::timeout(left, client.read(&mut up[len..])).await {
            Some(Ok(n)) if n > 0 => n,
            _ => return,
        };
        len += n;
        // The keys as they are now: a client that connected before a user's password
        // changed (whose kick found nothing to close) is identified with the new ones.
        let keys = ss.keys.load_full();
        match hs.advance(
            &keys,
            &mut up[..len],
            ctx.shared.now(),
            hint,
            &mut SharedSalts(&ss.salts),
        ) {
            Ok(Handshake::Done(req)) => break req,
            Ok(Handshake::NeedMore) if len < up.len() => continue,
            Ok(Handshake::NeedMore) => {
                tracing::debug!(inbound = %ib.tag, %peer, "handshake larger than the buffer");
                drain(&mut client, &mut up, deadline).await;
                return;
            }
            Err(e) => {
                tracing::debug!(inbound = %ib.tag, %peer, "handshake rejected: {e}");
                drain(&mut client, &mut up, deadline).await;
                return;
            }
        }
    };
    ctx.remember(ib.id, peer.ip(), req.user);
    let user = ctx.shared.users.get(req.user);
    let _admission = match user.admit(peer.ip(), ctx.now.get()) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(inbound = %ib.tag, %peer, user = %user.name, "refused: {e}");
            return;
        }
    };
    let Some(registration) = ctx.register(req.user, ib) else {
        return;
    };
    let _open = user.traffic.open_guard(ctx.index);
    let relay = async {
        let connected =
            super::relay::connect_tcp(ctx, ib, &user.name, peer.ip(), &req.target).await;
        let mut target = match connected {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(inbound = %ib.tag, %peer, user = %user.name, target = %req.target, "{e}");
                return;
            }
        };
        tracing::trace!(inbound = %ib.tag, %peer, user = %user.name, target = %req.target, "relaying");
        let meter = Meter {
            ctx,
            inbound: ib,
            user: &user,
        };
        if !req.payload.is_empty() {
            if target.write_all(&up[req.payload.clone()]).await.is_err() {
                return;
            }
            meter.up(req.payload.len()).await;
        }
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        let sealer = req.response_sealer(&salt);
        let activity = Cell::new(Instant::now());
        let low = LowWater::new(&client);
        let (client_r, client_w) = futures_lite::io::split(client);
        let target = RefCell::new(target);
        let uplink = Uplink {
            client: client_r,
            low,
            target: &target,
            opener: req.opener,
            activity: &activity,
        };
        let downlink = Downlink {
            target: &target,
            client: client_w,
            sealer,
            activity: &activity,
        };
        let down_buf = ctx.buffers.get();
        let both = futures_lite::future::zip(
            uplink.run(up, req.consumed, len, &meter),
            downlink.run(down_buf, &meter),
        );
        until_idle(both, &activity, t.idle).await;
    };
    until_closed(ctx, ib, Some(&registration.kill), relay).await;
}

/// Client to destination: open chunks in place, write the payloads from where they lie, all
/// those one read brought in one `sendmsg` ([`Batch`]). A bulk upload raises the client
/// socket's [`LowWater`] mark, so that one read brings several chunks.
struct Uplink<'a, R> {
    client: R,
    low: LowWater,
    target: &'a RefCell<TcpStream>,
    opener: StreamOpener,
    activity: &'a Cell<Instant>,
}

impl<R> Uplink<'_, R>
where
    R: futures_lite::AsyncRead + Unpin,
{
    async fn run(
        mut self,
        mut buf: RelayBuffer,
        mut start: usize,
        mut end: usize,
        meter: &Meter<'_>,
    ) {
        let mut batch = Batch::new();
        loop {
            match self.opener.open(&mut buf[start..end], 0) {
                Ok(Opened::Chunk { payload, consumed }) => {
                    let full = batch.push(start + payload.start..start + payload.end);
                    start += consumed;
                    if full && !batch.flush(self.target, &buf, Tally::Up(meter)).await {
                        break;
                    }
                }
                Ok(Opened::NeedMore) => {
                    // The buffer is about to be reused: what was opened goes out first.
                    if !batch.flush(self.target, &buf, Tally::Up(meter)).await {
                        break;
                    }
                    if start == end {
                        start = 0;
                        end = 0;
                    }
                    if buf.len() - start < self.opener.wanted() || end == buf.len() {
                        buf.copy_within(start..end, 0);
                        end -= start;
                        start = 0;
                    }
                    match self.low.read(self.client.read(&mut buf[end..])).await {
                        Ok(n) if n > 0 => {
                            end += n;
                            self.low.after_read(n);
                            self.activity.set(Instant::now());
                        }
                        _ => break,
                    }
                }
                Err(e) => {
                    tracing::debug!("request stream: {e}");
                    // The chunks before the bad one were authentic.
                    batch.flush(self.target, &buf, Tally::Up(meter)).await;
                    break;
                }
            }
        }
        let _ = runtime::shutdown_write(&self.target.borrow());
    }
}

/// Destination to client: one read fills several chunk payloads laid out with room for their
/// headers and tags between them (as many as the buffer holds); each is sealed in place, and
/// the frames, now back to back, go out in one write.
struct Downlink<'a, W> {
    target: &'a RefCell<TcpStream>,
    client: W,
    sealer: StreamSealer,
    activity: &'a Cell<Instant>,
}

impl<W> Downlink<'_, W>
where
    W: futures_lite::AsyncWrite + Unpin,
{
    async fn run(mut self, mut buf: RelayBuffer, meter: &Meter<'_>) {
        let max = self
            .sealer
            .max_payload()
            .min(buf.len() - HEADROOM - TAG_LEN);
        // The first payload behind the headroom (the first frame's prefix is the longest);
        // each next one where the previous full frame ends, plus a length chunk.
        let mut slots: [std::ops::Range<usize>; runtime::MAX_SLOTS] = Default::default();
        let mut count = 0;
        let mut at = HEADROOM;
        while count < slots.len() && at + max + TAG_LEN <= buf.len() {
            slots[count] = at..at + max;
            count += 1;
            at += max + TAG_LEN + LEN_CHUNK;
        }
        let slots = &slots[..count];
        loop {
            let n = match read_slots(self.target, &mut buf, slots).await {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            self.activity.set(Instant::now());
            let now = meter.ctx.now.get();
            // Only the first frame's start matters: the others follow it back to back.
            let mut frames: Option<std::ops::Range<usize>> = None;
            let mut left = n;
            for slot in slots {
                if left == 0 {
                    break;
                }
                let m = left.min(slot.len());
                let frame = self.sealer.seal(&mut buf, slot.start..slot.start + m, now);
                frames = Some(frames.map_or(frame.start, |f| f.start)..frame.end);
                left -= m;
            }
            let Some(frames) = frames else { break };
            if self.client.write_all(&buf[frames]).await.is_err() {
                break;
            }
            meter.down(n).await;
        }
        let _ = self.client.close().await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum SessionKey {
    /// 2022: the client's session id.
    Id(u64),
    /// AEAD (2017): the client's address.
    Addr(SocketAddr),
}

struct UdpSession {
    user: Arc<UserRecord>,
    user_id: u32,
    outbound: UdpSocket,
    responder: RefCell<UdpResponder>,
    /// 2022: the session's packet-id window, shared across workers.
    window: Option<WindowHold>,
    client: Cell<SocketAddr>,
    active: Cell<Instant>,
    /// Last resolved domain target, so a session does not resolve per packet.
    resolved: RefCell<Option<(TargetAddr, SocketAddr)>>,
    /// Packets for names not resolved yet, copied, waiting for the session's resolver task
    /// (off the receive loop); at most [`MAX_RESOLVING`], beyond which they are dropped.
    /// Empty, with no task running, when nothing is being resolved.
    resolving: RefCell<std::collections::VecDeque<(TargetAddr, Vec<u8>)>>,
    _admission: Admission,
}

type Sessions = Rc<RefCell<HashMap<SessionKey, Rc<UdpSession>>>>;

/// Packets of one session that may wait for names being resolved.
const MAX_RESOLVING: usize = 16;

pub(crate) async fn serve_udp(ctx: Rc<WorkerCtx>, ib: Arc<InboundShared>, socket: Rc<UdpSocket>) {
    let ss = settings(&ib);
    let sessions: Sessions = Rc::new(RefCell::new(HashMap::new()));
    let mut buf = ctx.buffers.get();
    let mut scratch = ctx.buffers.get();
    // Made once and polled with every packet (not rebuilt, with its listeners, per packet).
    let stop = async {
        futures_lite::future::or(ctx.shared.stop.wait(), ib.closed.wait()).await;
        None
    };
    let mut stop = std::pin::pin!(stop);
    loop {
        let received = futures_lite::future::or(
            async { Some(socket.recv_from(&mut buf[..]).await) },
            stop.as_mut(),
        )
        .await;
        let (n, src) = match received {
            None => break,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                tracing::debug!(inbound = %ib.tag, "udp receive: {e}");
                continue;
            }
        };
        let now = ctx.now.get();
        let hint = ctx.hint(ib.id, src.ip());
        let keys = ss.keys.load();
        let packet = match decode_client_packet(&keys, &mut buf[..n], now, hint, &mut scratch[..n])
        {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(inbound = %ib.tag, peer = %src, "udp packet rejected: {e}");
                continue;
            }
        };
        drop(keys);
        let key = match packet.session {
            Some((id, _)) => SessionKey::Id(id),
            None => SessionKey::Addr(src),
        };
        let existing = sessions.borrow().get(&key).cloned();
        let replayed = || tracing::debug!(inbound = %ib.tag, peer = %src, "udp packet replayed");
        let session = match existing {
            Some(s) if s.user_id == packet.user => {
                if let Some((_, packet_id)) = packet.session {
                    if !s.window.as_ref().is_some_and(|w| w.accept(packet_id)) {
                        replayed();
                        continue;
                    }
                }
                s
            }
            Some(_) => continue,
            None => {
                // 2022: the window first, so that a replay opens nothing.
                let mut window = match packet.session {
                    Some((id, packet_id)) => {
                        let hold = WindowHold::take(&ib, (packet.user, id));
                        if !hold.accept(packet_id) {
                            replayed();
                            continue;
                        }
                        Some(hold)
                    }
                    None => None,
                };
                let Some((s, registration)) = new_session(&ctx, &ib, &packet, src, &mut window)
                else {
                    if let Some(hold) = window {
                        hold.abandon();
                    }
                    continue;
                };
                sessions.borrow_mut().insert(key, Rc::clone(&s));
                ctx.remember(ib.id, src.ip(), packet.user);
                let guard = ctx.live_guard(&ib);
                let (c, i, so, se, s2) = (
                    Rc::clone(&ctx),
                    Arc::clone(&ib),
                    Rc::clone(&socket),
                    Rc::clone(&sessions),
                    Rc::clone(&s),
                );
                runtime::spawn(async move {
                    let replies = session_replies(&c, &i, &s2, &so);
                    until_closed(&c, &i, Some(&registration.kill), replies).await;
                    se.borrow_mut().remove(&key);
                    drop(guard);
                });
                s
            }
        };
        session.client.set(src);
        session.active.set(Instant::now());
        let payload = &buf[packet.payload.clone()];
        // This loop receives every user's packets: nothing in it waits on one user. A name
        // not resolved yet is resolved by a task of its own, with a copy of the packet.
        let cached = match &packet.target {
            TargetAddr::Ip(_) => true,
            name => session
                .resolved
                .borrow()
                .as_ref()
                .is_some_and(|(t, _)| t == name),
        };
        if !cached {
            let mut waiting = session.resolving.borrow_mut();
            if waiting.len() >= MAX_RESOLVING {
                tracing::debug!(inbound = %ib.tag, peer = %src, target = %packet.target, "udp packet dropped: too many waiting for names");
                continue;
            }
            let start = waiting.is_empty();
            waiting.push_back((packet.target.clone(), payload.to_vec()));
            drop(waiting);
            if start {
                let (c, i, s) = (Rc::clone(&ctx), Arc::clone(&ib), Rc::clone(&session));
                runtime::spawn(async move {
                    // In order; the first of a name resolves it, the others find it cached.
                    let resolve = async {
                        loop {
                            let next = s.resolving.borrow().front().cloned();
                            let Some((target, payload)) = next else { break };
                            send_up(&c, &i, &s, &target, &payload, src).await;
                            s.resolving.borrow_mut().pop_front();
                        }
                    };
                    // A resolver that does not answer holds nothing past the grace period.
                    futures_lite::future::or(resolve, c.shared.close.wait()).await;
                    // Cut short, what waited is dropped (a task starts with the next packet).
                    s.resolving.borrow_mut().clear();
                });
            }
            continue;
        }
        send_up(&ctx, &ib, &session, &packet.target, payload, src).await;
    }
}

/// Sends one packet of `session` to `target` (checked by the rules; resolved unless it is the
/// session's cached name) and counts it; a user over their uplink rate has it dropped.
async fn send_up(
    ctx: &WorkerCtx,
    ib: &InboundShared,
    session: &UdpSession,
    target: &TargetAddr,
    payload: &[u8],
    src: SocketAddr,
) {
    let dest = match udp_destination(
        ctx,
        ib,
        &session.user.name,
        &session.outbound,
        &session.resolved,
        target,
        src.ip(),
    )
    .await
    {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(inbound = %ib.tag, peer = %src, %target, "{e}");
            return;
        }
    };
    let meter = Meter {
        ctx,
        inbound: ib,
        user: &session.user,
    };
    if !meter.admit_up(payload.len()) {
        return;
    }
    if session.outbound.send_to(payload, dest).await.is_ok() {
        meter.count_up(payload.len());
    }
}

fn new_session(
    ctx: &Rc<WorkerCtx>,
    ib: &Arc<InboundShared>,
    packet: &ClientPacket,
    src: SocketAddr,
    window: &mut Option<WindowHold>,
) -> Option<(Rc<UdpSession>, super::Registration)> {
    let ss = settings(ib);
    let user = ctx.shared.users.get(packet.user);
    let admission = match user.admit(src.ip(), ctx.now.get()) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(inbound = %ib.tag, peer = %src, user = %user.name, "udp session refused: {e}");
            return None;
        }
    };
    let registration = ctx.register(packet.user, ib)?;
    let outbound = match runtime::outbound_udp_socket() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(inbound = %ib.tag, "cannot open an outbound UDP socket: {e}");
            return None;
        }
    };
    let _ = outbound.set_read_timeout(Some(ctx.shared.timeouts.udp_session));
    let server_session = rand::thread_rng().next_u64();
    let responder = UdpResponder::new(
        &ss.keys.load(),
        packet.user,
        packet.session.map(|s| s.0),
        server_session,
    )?;
    let session = Rc::new(UdpSession {
        user,
        user_id: packet.user,
        outbound,
        responder: RefCell::new(responder),
        // Taken last: on a refusal above the caller still has it.
        window: window.take(),
        client: Cell::new(src),
        active: Cell::new(Instant::now()),
        resolved: RefCell::new(None),
        resolving: RefCell::new(std::collections::VecDeque::new()),
        _admission: admission,
    });
    Some((session, registration))
}

async fn session_replies(
    ctx: &WorkerCtx,
    ib: &InboundShared,
    session: &UdpSession,
    socket: &UdpSocket,
) {
    let ttl = ctx.shared.timeouts.udp_session;
    let _open = session.user.traffic.open_guard(ctx.index);
    let mut buf = ctx.buffers.get();
    let max = buf.len() - UDP_HEADROOM - TAG_LEN;
    let mut random = [0u8; 32];
    let meter = Meter {
        ctx,
        inbound: ib,
        user: &session.user,
    };
    loop {
        let received = session
            .outbound
            .recv_from(&mut buf[UDP_HEADROOM..UDP_HEADROOM + max])
            .await;
        let (n, from) = match received.map_err(io::Error::from) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if session.active.get().elapsed() >= ttl || ctx.shared.stop.is_fired() {
                    break;
                }
                continue;
            }
            Err(_) => break,
        };
        session.active.set(Instant::now());
        rand::thread_rng().fill_bytes(&mut random);
        let source = TargetAddr::Ip(unmap(from));
        let frame = session.responder.borrow_mut().encode(
            &mut buf,
            UDP_HEADROOM..UDP_HEADROOM + n,
            &source,
            ctx.now.get(),
            &random,
        );
        if socket
            .send_to(&buf[frame], session.client.get())
            .await
            .is_ok()
        {
            meter.down(n).await;
        }
    }
}
