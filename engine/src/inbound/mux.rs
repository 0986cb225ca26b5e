//! Mux.Cool over a VLESS stream or a VMess body (command 3), with XUDP: many TCP and UDP sessions of one
//! client over one connection, framed by `proto::mux`. Xray clients send their UDP this way
//! even with multiplexing off, and so does sing-box by default (`packet_encoding: xudp`).
//!
//! ```text
//!  client stream ──► reader (this task): parse frames ──► New TCP:  session task connects,
//!                                                          │          then relays down
//!                                                          ├► Keep:   data to the session
//!                                                          │          (TCP: written to the
//!                                                          │          destination; UDP: sent
//!                                                          │          to the frame's address)
//!                                                          └► End:    half-close / forget
//!                                                                     (with Error: both ways)
//!  client stream ◄── one writer at a time (a lock) ◄── session tasks: Keep frames (UDP: with
//!                                                      the packet's source), End at the end
//! ```
//!
//! The connection is the unit of admission, kicks and idle timeout: sessions live inside it
//! and end with it. A session's downlink reads into its own pooled buffer, writes the frame
//! header in front of the data in place and writes header and data in one call under the
//! writer lock. A session that ends (UDP: the client's End, its GlobalID taken, quiet; TCP:
//! the client's End with the error bit) stops whatever it waits for, the writer lock or a
//! client that does not read included: a frame it has begun is finished by a task of its own that holds the lock (a
//! copy of the rest; one at a time per connection), so what the session held (socket, buffer,
//! task) goes at once. [`MAX_SESSIONS`] counts session tasks, not the sessions the client can
//! still address: a session still sending its End counts until it is gone.
//!
//! Uplink data for a TCP session goes straight to its destination once connected; before
//! that it is queued (copied, at most [`MAX_QUEUED`] bytes per session and
//! [`MAX_CONNECTION_QUEUED`] for all of a connection's sessions, beyond which the reader
//! waits). A UDP session opened with an XUDP GlobalID keeps its socket across sessions and
//! connections (full-cone NAT across reconnects; see [`super::xudp`]).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use proto::mux::{self, Frame, MuxRead, Network, Status, MAX_HEADER_LEN};
use proto::TargetAddr;

use super::relay::{udp_destination, unmap, until_idle, Meter};
use super::{InboundShared, WorkerCtx};
use crate::buffer::RelayBuffer;
use crate::runtime::{self, Notify, Signal, TcpStream, UdpSocket};
use crate::users::UserRecord;

/// Session tasks one connection may have at once (Xray's clients open at most 128 sessions by
/// default). A session the client has ended counts until its task has ended too.
const MAX_SESSIONS: usize = 1024;
/// Uplink bytes queued for a TCP session that is still connecting.
const MAX_QUEUED: usize = 512 * 1024;
/// Uplink bytes queued for all of one connection's connecting sessions together: a client
/// opening many sessions to destinations that never answer holds this much, not
/// `MAX_SESSIONS` x `MAX_QUEUED`.
const MAX_CONNECTION_QUEUED: usize = 2 * 1024 * 1024;

/// An async lock for one executor: one holder at a time, the others wait their turn.
#[derive(Default)]
struct LocalLock {
    locked: Cell<bool>,
    released: event_listener::Event,
}

/// Holding the lock; dropping it lets the next waiter in.
struct LockGuard<'a> {
    lock: &'a LocalLock,
}

impl LocalLock {
    async fn lock(&self) -> LockGuard<'_> {
        loop {
            if !self.locked.replace(true) {
                return LockGuard { lock: self };
            }
            let listener = self.released.listen();
            if !self.locked.get() {
                continue;
            }
            listener.await;
        }
    }

    /// Lets the next waiter in: a [`LockGuard`] dropped, or a frame's finisher done (see
    /// [`finish_frame`]), which holds the lock without a guard.
    fn unlock(&self) {
        self.locked.set(false);
        self.released.notify(1);
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

/// One session task counted in [`Shared::live`] for as long as it lives.
struct LiveSession(Rc<Cell<usize>>);

impl LiveSession {
    fn new(live: &Rc<Cell<usize>>) -> LiveSession {
        live.set(live.get() + 1);
        LiveSession(Rc::clone(live))
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// What every session task of one connection shares.
struct Shared<W> {
    ctx: Rc<WorkerCtx>,
    ib: Arc<InboundShared>,
    user: Arc<UserRecord>,
    peer: SocketAddr,
    /// The client stream's write half: taken by the lock holder while it writes (a writer
    /// cancelled in the middle of a frame takes it with it, and the connection can only end).
    writer: RefCell<Option<W>>,
    write_turn: LocalLock,
    /// Fires when the connection ends: every session task stops.
    closed: Signal,
    activity: Cell<Instant>,
    /// The sessions the client can address.
    sessions: RefCell<HashMap<u16, Rc<Session>>>,
    /// Session tasks not yet ended, ended sessions' included ([`MAX_SESSIONS`]).
    live: Rc<Cell<usize>>,
    /// Uplink bytes queued in all sessions ([`MAX_CONNECTION_QUEUED`]).
    queued: Cell<usize>,
    /// Wakes the reader: some session's queue drained, or a session with a queue ended.
    drained: Notify,
}

impl<W: AsyncWrite + Unpin> Shared<W> {
    fn meter(&self) -> Meter<'_> {
        Meter {
            ctx: &self.ctx,
            inbound: &self.ib,
            user: &self.user,
        }
    }

    /// Writes `bytes` (whole frames) to the client under the lock. A send cancelled while
    /// it writes leaves part of a frame on the connection and takes the writer with it: the
    /// connection then ends (`closed`), rather than leave every session without a downlink.
    async fn send(&self, bytes: &[u8]) -> bool {
        let _turn = self.write_turn.lock().await;
        let Some(mut w) = self.writer.borrow_mut().take() else {
            return false;
        };
        let mut unfinished = FireOnDrop(Some(&self.closed));
        let ok = w.write_all(bytes).await.is_ok() && w.flush().await.is_ok();
        unfinished.0 = None;
        *self.writer.borrow_mut() = Some(w);
        if ok {
            self.activity.set(Instant::now());
        }
        ok
    }

    /// Forgets session `id` if it is still `session` (the id may have been reused since).
    fn forget(&self, id: u16, session: &Rc<Session>) {
        let mut sessions = self.sessions.borrow_mut();
        if sessions.get(&id).is_some_and(|s| Rc::ptr_eq(s, session)) {
            sessions.remove(&id);
        }
    }

    /// Sends an End frame for `session`.
    async fn end(&self, session: u16, error: bool) {
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = Frame::end(session, error).write(&mut header, None);
        self.send(&header[..n]).await;
    }
}

impl<W: AsyncWrite + Unpin + 'static> Shared<W> {
    /// [`Shared::send`] for a session, which gives way to its `interrupt` (polled first, so
    /// an interrupted session sends nothing more): waiting for the lock or for a client that
    /// does not read, it stops at once. A frame begun is finished by [`finish_frame`], which
    /// holds the lock until then, and meters its `payload` bytes of data once it is out (the
    /// caller, interrupted, does not). `Err` carries the interrupt's output.
    async fn send_or<T>(
        self: &Rc<Self>,
        bytes: &[u8],
        payload: usize,
        mut interrupt: Pin<&mut impl Future<Output = T>>,
    ) -> Result<bool, T> {
        let turn = futures_lite::future::or(async { Err(interrupt.as_mut().await) }, async {
            Ok(self.write_turn.lock().await)
        })
        .await?;
        let Some(mut w) = self.writer.borrow_mut().take() else {
            return Ok(false);
        };
        // Dropped half way (the connection is over): as in `send`.
        let mut unfinished = FireOnDrop(Some(&self.closed));
        let mut written = 0;
        let outcome = std::future::poll_fn(|cx| {
            if let Poll::Ready(t) = interrupt.as_mut().poll(cx) {
                return Poll::Ready(Err(t));
            }
            while written < bytes.len() {
                match Pin::new(&mut w).poll_write(cx, &bytes[written..]) {
                    Poll::Ready(Ok(n)) if n > 0 => written += n,
                    Poll::Ready(_) => return Poll::Ready(Ok(false)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            Pin::new(&mut w).poll_flush(cx).map(|r| Ok(r.is_ok()))
        })
        .await;
        unfinished.0 = None;
        match outcome {
            Ok(ok) => {
                *self.writer.borrow_mut() = Some(w);
                if ok {
                    self.activity.set(Instant::now());
                }
                Ok(ok)
            }
            Err(t) if written == 0 => {
                *self.writer.borrow_mut() = Some(w);
                Err(t)
            }
            Err(t) => {
                // The lock stays held (without its guard) until the frame is out.
                std::mem::forget(turn);
                let tail = bytes[written..].to_vec();
                runtime::spawn(finish_frame(Rc::clone(self), w, tail, payload));
                Err(t)
            }
        }
    }

    /// [`Shared::send_or`] of `frame` with the `n` bytes of data at `buf[MAX_HEADER_LEN..]`,
    /// its header written in place right in front of them.
    async fn send_framed_or<T>(
        self: &Rc<Self>,
        frame: Frame,
        buf: &mut [u8],
        n: usize,
        interrupt: Pin<&mut impl Future<Output = T>>,
    ) -> Result<bool, T> {
        let head = frame.header_len(Some(n as u16));
        let at = MAX_HEADER_LEN - head;
        frame.write(&mut buf[at..MAX_HEADER_LEN], Some(n as u16));
        self.send_or(&buf[at..MAX_HEADER_LEN + n], n, interrupt)
            .await
    }

    /// [`Shared::send_or`] of an End frame for `session`.
    async fn end_or<T>(
        self: &Rc<Self>,
        session: u16,
        error: bool,
        interrupt: Pin<&mut impl Future<Output = T>>,
    ) -> Result<bool, T> {
        let mut header = [0u8; MAX_HEADER_LEN];
        let n = Frame::end(session, error).write(&mut header, None);
        self.send_or(&header[..n], 0, interrupt).await
    }
}

/// Writes `tail`, the rest of a frame whose session stopped while sending it, then counts the
/// frame's `payload` bytes of data (charged to the user's rate without waiting: the session
/// is gone), gives the writer back and the lock up (held since that send took it). A client
/// that never reads it keeps this task until the connection ends (idle, kicked, closed).
async fn finish_frame<W: AsyncWrite + Unpin + 'static>(
    shared: Rc<Shared<W>>,
    mut w: W,
    tail: Vec<u8>,
    payload: usize,
) {
    let finish = async { w.write_all(&tail).await.is_ok() && w.flush().await.is_ok() };
    let closed = async {
        shared.closed.wait().await;
        false
    };
    if futures_lite::future::or(finish, closed).await {
        shared.meter().charge_down(payload);
        *shared.writer.borrow_mut() = Some(w);
        shared.activity.set(Instant::now());
    } else {
        // Part of a frame went out and the rest cannot: the connection is over.
        shared.closed.fire();
    }
    shared.write_turn.unlock();
}

enum Kind {
    Tcp(TcpSession),
    Udp(UdpSession),
}

struct Session {
    kind: Kind,
}

/// The uplink side of a TCP session.
#[derive(Default)]
struct TcpSession {
    /// The client ended the session with an error: it stops both ways.
    stop: Signal,
    /// Data that arrived before the destination was connected.
    queue: RefCell<VecDeque<Vec<u8>>>,
    queued: Cell<usize>,
    /// The destination's write half, once connected and the queue is drained.
    dest: RefCell<Option<futures_lite::io::WriteHalf<TcpStream>>>,
    /// The client ended its side (End frame), or the session is over.
    ended: Cell<bool>,
    /// Wakes the reader: the queue drained, or the session is over.
    drained: Notify,
}

/// The uplink side of a UDP session.
struct UdpSession {
    socket: Rc<UdpSocket>,
    target: TargetAddr,
    resolved: RefCell<Option<(TargetAddr, SocketAddr)>>,
    stop: Signal,
    /// The last packet either way: a session quiet for `timeouts.udp_session` ends (with an
    /// End frame), as Xray's do, instead of holding its socket as long as the connection.
    active: Rc<Cell<Instant>>,
}

/// Fires the connection's `closed` signal when dropped, unless disarmed (set to `None`): the
/// relay however it ends, and a send dropped in the middle of a frame.
struct FireOnDrop<'a>(Option<&'a Signal>);

impl Drop for FireOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(closed) = self.0 {
            closed.fire();
        }
    }
}

/// Serves Mux.Cool on a client connection until it ends or is idle for `idle`: `prefix`
/// (the protocol's response header) goes out first; `buf[start..end]` holds what was read
/// after the request header.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn relay<R, W>(
    ctx: &Rc<WorkerCtx>,
    ib: &Arc<InboundShared>,
    user: &Arc<UserRecord>,
    peer: SocketAddr,
    mut reader: R,
    writer: W,
    mut buf: RelayBuffer,
    (mut start, mut end): (usize, usize),
    prefix: &[u8],
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    let shared = Rc::new(Shared {
        ctx: Rc::clone(ctx),
        ib: Arc::clone(ib),
        user: Arc::clone(user),
        peer,
        writer: RefCell::new(Some(writer)),
        write_turn: LocalLock::default(),
        closed: Signal::new(),
        activity: Cell::new(Instant::now()),
        sessions: RefCell::new(HashMap::new()),
        live: Rc::default(),
        queued: Cell::new(0),
        drained: Notify::default(),
    });
    let _close = FireOnDrop(Some(&shared.closed));
    let _open = user.traffic.open_guard(ctx.index);
    if !shared.send(prefix).await {
        return;
    }
    let idle = ctx.shared.timeouts.idle;
    let frames = async {
        loop {
            match mux::parse_frame(&buf[start..end]) {
                Ok(MuxRead::Frame {
                    frame,
                    data,
                    consumed,
                }) => {
                    let data = start + data.start..start + data.end;
                    if !on_frame(&shared, frame, &buf[data]).await {
                        return;
                    }
                    start += consumed;
                }
                Ok(MuxRead::NeedMore) => {
                    if start == end || end == buf.len() {
                        buf.copy_within(start..end, 0);
                        end -= start;
                        start = 0;
                    }
                    match reader.read(&mut buf[end..]).await {
                        Ok(n) if n > 0 => {
                            end += n;
                            shared.activity.set(Instant::now());
                        }
                        _ => return,
                    }
                }
                Err(e) => {
                    tracing::debug!(inbound = %ib.tag, %peer, "bad Mux.Cool frame: {e}");
                    return;
                }
            }
        }
    };
    // The reader stops too when the connection is over for the sessions (a write to the
    // client failed half way).
    let frames = futures_lite::future::or(frames, shared.closed.wait());
    until_idle(frames, &shared.activity, idle).await;
}

/// Acts on one frame from the client; `false` ends the connection.
async fn on_frame<W: AsyncWrite + Unpin + 'static>(
    shared: &Rc<Shared<W>>,
    frame: Frame,
    data: &[u8],
) -> bool {
    let id = frame.session;
    match frame.status {
        Status::KeepAlive => true,
        Status::New => {
            let Some((network, target)) = frame.target else {
                return false;
            };
            let taken = shared.sessions.borrow().contains_key(&id);
            if taken || shared.live.get() >= MAX_SESSIONS {
                shared.end(id, true).await;
                return true;
            }
            match network {
                Network::Tcp => open_tcp(shared, id, target),
                Network::Udp => open_udp(shared, id, target, frame.global_id).await,
            }
            if !data.is_empty() {
                // The first packet of a UDP session goes to the session's target.
                forward(shared, id, None, data).await;
            }
            true
        }
        Status::Keep => {
            if !shared.sessions.borrow().contains_key(&id) {
                // Xray answers data for a session it does not know with End.
                shared.end(id, false).await;
                return true;
            }
            if !data.is_empty() {
                forward(shared, id, frame.target_of_packet(), data).await;
            }
            true
        }
        Status::End => {
            let session = shared.sessions.borrow().get(&id).cloned();
            if let Some(session) = session {
                match &session.kind {
                    // With the error bit both ways at once, as Xray does: the destination is
                    // closed and nothing more comes down (not even an End).
                    Kind::Tcp(t) if frame.options & mux::OPTION_ERROR != 0 => {
                        t.ended.set(true);
                        drop(t.dest.borrow_mut().take());
                        t.stop.fire();
                        shared.forget(id, &session);
                    }
                    // A half-close: replies go on until the destination closes.
                    Kind::Tcp(t) => {
                        t.ended.set(true);
                        let dest = t.dest.borrow_mut().take();
                        if let Some(mut dest) = dest {
                            let _ = dest.close().await;
                        }
                    }
                    Kind::Udp(u) => {
                        u.stop.fire();
                        shared.forget(id, &session);
                    }
                }
            }
            true
        }
    }
}

/// Resolves once `active` is `ttl` in the past.
async fn quiet(active: &Cell<Instant>, ttl: std::time::Duration) {
    loop {
        let left = ttl.saturating_sub(active.get().elapsed());
        if left.is_zero() {
            return;
        }
        runtime::sleep(left).await;
    }
}

/// Helpers on frames the reader needs.
trait PacketTarget {
    /// The address a UDP packet in this frame goes to, when the frame names one.
    fn target_of_packet(&self) -> Option<TargetAddr>;
}

impl PacketTarget for Frame {
    fn target_of_packet(&self) -> Option<TargetAddr> {
        match &self.target {
            Some((Network::Udp, t)) => Some(t.clone()),
            _ => None,
        }
    }
}

/// Hands uplink `data` to session `id`.
async fn forward<W: AsyncWrite + Unpin + 'static>(
    shared: &Rc<Shared<W>>,
    id: u16,
    packet_target: Option<TargetAddr>,
    data: &[u8],
) {
    let Some(session) = shared.sessions.borrow().get(&id).cloned() else {
        return;
    };
    match &session.kind {
        Kind::Tcp(t) => loop {
            if t.ended.get() {
                return;
            }
            let dest = t.dest.borrow_mut().take();
            if let Some(mut dest) = dest {
                if dest.write_all(data).await.is_ok() && dest.flush().await.is_ok() {
                    *t.dest.borrow_mut() = Some(dest);
                    shared.meter().up(data.len()).await;
                }
                return;
            }
            if t.queued.get() >= MAX_QUEUED {
                // The session task may install the destination meanwhile: look again.
                t.drained.notified().await;
                continue;
            }
            if shared.queued.get() >= MAX_CONNECTION_QUEUED {
                futures_lite::future::or(t.drained.notified(), shared.drained.notified()).await;
                continue;
            }
            t.queue.borrow_mut().push_back(data.to_vec());
            t.queued.set(t.queued.get() + data.len());
            shared.queued.set(shared.queued.get() + data.len());
            return;
        },
        Kind::Udp(u) => {
            let target = packet_target.unwrap_or_else(|| u.target.clone());
            let dest = udp_destination(
                &shared.ctx,
                &shared.ib,
                &shared.user.name,
                &u.socket,
                &u.resolved,
                &target,
                shared.peer.ip(),
            )
            .await;
            u.active.set(Instant::now());
            match dest {
                Ok(dest) => {
                    if u.socket.send_to(data, dest).await.is_ok() {
                        shared.meter().up(data.len()).await;
                    }
                }
                Err(e) => {
                    tracing::debug!(inbound = %shared.ib.tag, peer = %shared.peer, %target, "{e}")
                }
            }
        }
    }
}

fn open_tcp<W: AsyncWrite + Unpin + 'static>(shared: &Rc<Shared<W>>, id: u16, target: TargetAddr) {
    let session = Rc::new(Session {
        kind: Kind::Tcp(TcpSession::default()),
    });
    shared.sessions.borrow_mut().insert(id, Rc::clone(&session));
    let live = LiveSession::new(&shared.live);
    let shared = Rc::clone(shared);
    runtime::spawn(async move {
        let _live = live;
        let closed = shared.closed.clone();
        let Kind::Tcp(t) = &session.kind else {
            return;
        };
        // An errored End stops the session wherever it waits. Its sends heed `stop` themselves
        // (`Shared::send_or`), and `or` polls the session first, so a send under way sees the
        // stop (and leaves its frame whole) before the session is dropped.
        let session_or_stop =
            futures_lite::future::or(tcp_session(&shared, id, &session, target), t.stop.wait());
        futures_lite::future::or(session_or_stop, closed.wait()).await;
        // A reader waiting for the queue to drain stops waiting; what is still queued will not
        // be sent.
        t.ended.set(true);
        t.queue.borrow_mut().clear();
        shared.queued.set(shared.queued.get() - t.queued.replace(0));
        t.drained.notify();
        shared.drained.notify();
        shared.forget(id, &session);
    });
}

/// One TCP session: connect, send what was queued, then relay the destination's bytes back
/// as Keep frames; End when the destination closes.
async fn tcp_session<W: AsyncWrite + Unpin + 'static>(
    shared: &Rc<Shared<W>>,
    id: u16,
    session: &Session,
    target: TargetAddr,
) {
    let Kind::Tcp(t) = &session.kind else {
        return;
    };
    // One wait for the whole session (a wait registers a listener when first polled).
    let mut stopped = pin!(t.stop.wait());
    let connected = super::relay::connect_tcp(
        &shared.ctx,
        &shared.ib,
        &shared.user.name,
        shared.peer.ip(),
        &target,
    )
    .await;
    let dest = match connected {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(inbound = %shared.ib.tag, peer = %shared.peer, %target, "{e}");
            let _ = shared.end_or(id, true, stopped.as_mut()).await;
            return;
        }
    };
    let _ = dest.set_nodelay(true);
    let (mut dest_r, mut dest_w) = futures_lite::io::split(dest);
    let meter = shared.meter();
    // Send what came before the connection, then let the reader write directly.
    loop {
        let next = t.queue.borrow_mut().pop_front();
        match next {
            Some(data) => {
                t.queued.set(t.queued.get() - data.len());
                shared.queued.set(shared.queued.get() - data.len());
                t.drained.notify();
                shared.drained.notify();
                if dest_w.write_all(&data).await.is_err() || dest_w.flush().await.is_err() {
                    let _ = shared.end_or(id, true, stopped.as_mut()).await;
                    return;
                }
                meter.up(data.len()).await;
            }
            None if t.ended.get() => {
                let _ = dest_w.close().await;
                break;
            }
            None => {
                *t.dest.borrow_mut() = Some(dest_w);
                // A reader waiting on the queues may now write to this session directly.
                t.drained.notify();
                break;
            }
        }
    }
    let mut buf = shared.ctx.buffers.get();
    let room = buf.len() - MAX_HEADER_LEN;
    let max = room.min(u16::MAX as usize);
    loop {
        let n = match dest_r
            .read(&mut buf[MAX_HEADER_LEN..MAX_HEADER_LEN + max])
            .await
        {
            Ok(n) if n > 0 => n,
            Ok(_) => break,
            Err(_) => {
                let _ = shared.end_or(id, true, stopped.as_mut()).await;
                return;
            }
        };
        let keep = Frame::keep(id, None);
        if shared
            .send_framed_or(keep, &mut buf, n, stopped.as_mut())
            .await
            != Ok(true)
        {
            return;
        }
        meter.down(n).await;
    }
    let _ = shared.end_or(id, false, stopped.as_mut()).await;
}

/// Opens UDP session `id`. With a GlobalID, the session takes the socket the GlobalID had
/// (see [`super::xudp`]) and leaves it parked when it ends.
async fn open_udp<W: AsyncWrite + Unpin + 'static>(
    shared: &Rc<Shared<W>>,
    id: u16,
    target: TargetAddr,
    global_id: Option<[u8; 8]>,
) {
    let registry = &shared.ctx.shared.xudp;
    let (hold, kept) = match global_id {
        Some(g) => match registry.claim(&shared.user.name, g).await {
            Some((hold, kept)) => (Some(hold), kept),
            None => (None, None),
        },
        None => (None, None),
    };
    let reattached = kept.is_some();
    let socket = match kept.map_or_else(runtime::outbound_udp_socket, |fd| {
        Ok(runtime::adopt_udp(fd))
    }) {
        Ok(s) => Rc::new(s),
        Err(e) => {
            tracing::warn!(inbound = %shared.ib.tag, "cannot open an outbound UDP socket: {e}");
            if let Some(hold) = hold {
                registry.release(hold, None, Instant::now());
            }
            // The client learns at once, instead of waiting out its own timeout.
            shared.end(id, true).await;
            return;
        }
    };
    if reattached {
        tracing::debug!(inbound = %shared.ib.tag, peer = %shared.peer, user = %shared.user.name, "XUDP session re-attached by its GlobalID");
    }
    let stop = Signal::new();
    let active = Rc::new(Cell::new(Instant::now()));
    let session = Rc::new(Session {
        kind: Kind::Udp(UdpSession {
            socket: Rc::clone(&socket),
            target,
            resolved: RefCell::new(None),
            stop: stop.clone(),
            active: Rc::clone(&active),
        }),
    });
    shared.sessions.borrow_mut().insert(id, Rc::clone(&session));
    let live = LiveSession::new(&shared.live);
    let shared = Rc::clone(shared);
    runtime::spawn(async move {
        let _live = live;
        // The client's End, or (`true`: we send End) another session taking the GlobalID or
        // the session going quiet: they stop the replies wherever they wait, a frame begun
        // being finished without the session (see `Shared::send_or`).
        let ttl = shared.ctx.shared.timeouts.udp_session;
        let interrupt = async {
            let taken_or_quiet = async {
                match &hold {
                    Some(hold) => {
                        futures_lite::future::or(hold.wanted(), quiet(&active, ttl)).await
                    }
                    None => quiet(&active, ttl).await,
                }
                true
            };
            futures_lite::future::or(
                async {
                    stop.wait().await;
                    false
                },
                taken_or_quiet,
            )
            .await
        };
        let relay = udp_replies(&shared, id, &socket, &active, interrupt);
        // `true` when another session took the GlobalID (and so this socket).
        let taken = futures_lite::future::or(relay, async {
            shared.closed.wait().await;
            false
        })
        .await;
        shared.forget(id, &session);
        drop(session);
        if let Some(hold) = hold {
            // The socket outlives this session: parked, or handed to the session that took
            // its GlobalID.
            let kept = runtime::duplicate_udp(&socket).ok();
            shared.ctx.shared.xudp.release(hold, kept, Instant::now());
        }
        // Closed now, not after an End that may wait for the client.
        drop(socket);
        if taken {
            // The client moved the session elsewhere: end it here (unless this connection
            // is over too).
            futures_lite::future::or(shared.end(id, false), shared.closed.wait()).await;
        }
    });
}

/// A UDP session's replies: each a Keep frame naming the packet's source (XUDP), until
/// `interrupt` ends them, wherever they wait (a datagram received but not yet sent is
/// dropped); its answer is returned (`false` when the socket failed or the client stopped
/// taking frames).
async fn udp_replies<W: AsyncWrite + Unpin + 'static>(
    shared: &Rc<Shared<W>>,
    id: u16,
    socket: &UdpSocket,
    active: &Cell<Instant>,
    interrupt: impl std::future::Future<Output = bool>,
) -> bool {
    let mut interrupt = std::pin::pin!(interrupt);
    let mut buf = shared.ctx.buffers.get();
    let max = (buf.len() - MAX_HEADER_LEN).min(u16::MAX as usize);
    let meter = shared.meter();
    loop {
        // Readiness, then a receive of our own: interrupted while it waits (the session
        // ends, its socket parks or moves), it has taken no datagram.
        let (n, from) =
            match runtime::try_recv_from(socket, &mut buf[MAX_HEADER_LEN..MAX_HEADER_LEN + max]) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let ready = async { Ok(socket.readable().await.is_ok()) };
                    let interrupted = async { Err(interrupt.as_mut().await) };
                    match futures_lite::future::or(ready, interrupted).await {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(taken) => return taken,
                    }
                }
                Err(_) => break,
            };
        active.set(Instant::now());
        let frame = Frame::keep(id, Some(TargetAddr::Ip(unmap(from))));
        match shared
            .send_framed_or(frame, &mut buf, n, interrupt.as_mut())
            .await
        {
            Ok(true) => {}
            Ok(false) => return false,
            Err(taken) => return taken,
        }
        let metered = async {
            meter.down(n).await;
            None
        };
        if let Some(taken) =
            futures_lite::future::or(metered, async { Some(interrupt.as_mut().await) }).await
        {
            return taken;
        }
    }
    let _ = shared.end_or(id, true, interrupt.as_mut()).await;
    false
}
