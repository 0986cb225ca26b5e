//! One QUIC connection: its quinn-proto state, the driver task that feeds it and sends what
//! it yields, and the wake-ups between the driver and the connection's stream and session
//! tasks.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Instant;

use bytes::Bytes;
use quinn_proto::{
    Connection, ConnectionEvent, ConnectionHandle, Dir, Event, StreamEvent, StreamId, VarInt,
};

use super::brutal::SendRate;
use super::udp::Session;
use super::Endpoint;
use crate::inbound::{InboundShared, LiveGuard, Registration, WorkerCtx};
use crate::runtime::{self, Notify, Semaphore, Signal};
use crate::users::{Admission, UserRecord};

/// HTTP/3's "no error" code, which the reference server closes connections with.
pub(super) const H3_NO_ERROR: u32 = 0x100;
/// HTTP/3's general protocol error, for streams that break the protocol.
pub(super) const H3_GENERAL_PROTOCOL_ERROR: u32 = 0x101;
/// HTTP/3's "request cancelled", for relays that end without a clean close.
pub(super) const H3_REQUEST_CANCELLED: u32 = 0x10c;

/// Our HTTP/3 control stream: stream type 0x00, then a SETTINGS frame (type 0x04, 7 bytes)
/// with what the reference server's HTTP/3 layer (quic-go's) sends: the largest request
/// field section it takes (0x06, [`proto::hysteria2::http3::MAX_FIELD_SECTION_SIZE`] as a
/// 4-byte varint) and extended CONNECT (0x08, 1). No dynamic QPACK table (capacity 0 by
/// default), like it.
const CONTROL_STREAM: [u8; 10] = [0x00, 0x04, 0x07, 0x06, 0x80, 0x10, 0x00, 0x00, 0x08, 0x01];

/// Requests of one connection that the reverse-proxy masquerade forwards to the site at once
/// (each may hold an answer of up to 8 MiB until the client has taken it).
const SITE_TURNS: u64 = 4;

/// An authenticated client: the user, admitted (limits) and registered (kicks).
pub(super) struct Authed {
    id: u32,
    pub(super) user: Arc<UserRecord>,
    pub(super) registration: Registration,
    _admission: Admission,
}

/// Tasks waiting on one stream.
#[derive(Default)]
struct Waiters {
    read: Option<Waker>,
    write: Option<Waker>,
}

pub(super) struct Conn {
    ep: Rc<Endpoint>,
    handle: ConnectionHandle,
    pub(super) quic: RefCell<Connection>,
    /// Events the endpoint routed here, not yet handed to the connection.
    inbox: RefCell<VecDeque<ConnectionEvent>>,
    /// Wakes the driver: an event arrived or a task read or wrote.
    pub(super) wake: Notify,
    waiters: RefCell<HashMap<StreamId, Waiters>>,
    /// Streams whose send half we finished cleanly (the others are reset when forgotten).
    finished: RefCell<HashSet<StreamId>>,
    /// Turns for the reverse-proxy masquerade: requests of this connection that may be at
    /// the operator's site at once.
    pub(super) site_turns: Semaphore,
    pub(super) peer: SocketAddr,
    auth: RefCell<Option<Rc<Authed>>>,
    /// Fires once the client has authenticated.
    pub(super) authenticated: Signal,
    /// Fires once the connection is gone: every task of it ends.
    pub(super) lost: Signal,
    /// UDP sessions by the client's session id.
    pub(super) sessions: RefCell<HashMap<u32, Rc<Session>>>,
    /// Bytes of UDP packets waiting in this connection's sessions' queues.
    pub(super) udp_queued: Cell<usize>,
    /// Bytes of memory held by UDP packets its sessions are putting together.
    pub(super) reassembling: Cell<usize>,
    /// Bytes held by request heads its streams are still reading.
    pub(super) heads_held: Cell<usize>,
    /// Whether we have closed the connection (it drains, then the driver ends).
    closing: Cell<bool>,
    /// Whether its handshake is still counted in the endpoint's `handshaking`.
    handshaking: Cell<bool>,
    /// The congestion controller's rate (Brutal), set at authentication.
    pub(super) send_rate: SendRate,
}

impl Conn {
    pub(super) fn new(
        ep: Rc<Endpoint>,
        handle: ConnectionHandle,
        quic: Connection,
        peer: SocketAddr,
        send_rate: SendRate,
    ) -> Rc<Conn> {
        Rc::new(Conn {
            ep,
            handle,
            quic: RefCell::new(quic),
            inbox: RefCell::new(VecDeque::new()),
            wake: Notify::default(),
            waiters: RefCell::new(HashMap::new()),
            finished: RefCell::new(HashSet::new()),
            site_turns: Semaphore::new(SITE_TURNS),
            peer,
            auth: RefCell::new(None),
            authenticated: Signal::new(),
            lost: Signal::new(),
            sessions: RefCell::new(HashMap::new()),
            udp_queued: Cell::new(0),
            reassembling: Cell::new(0),
            heads_held: Cell::new(0),
            closing: Cell::new(false),
            handshaking: Cell::new(true),
            send_rate,
        })
    }

    /// Takes an event the endpoint routed to this connection.
    pub(super) fn deliver(&self, event: ConnectionEvent) {
        self.inbox.borrow_mut().push_back(event);
        self.wake.notify();
    }

    /// The authenticated client, if it has authenticated.
    pub(super) fn authed(&self) -> Option<Rc<Authed>> {
        self.auth.borrow().clone()
    }

    /// Authenticates the client as `user` if nobody has yet: admits it (limits) and registers
    /// the connection (kicks). `false` when the user is refused.
    pub(super) fn authenticate(&self, ctx: &Rc<WorkerCtx>, ib: &InboundShared, user: u32) -> bool {
        if let Some(a) = self.authed() {
            return a.id == user;
        }
        let record = ctx.shared.users.get(user);
        let admission = match record.admit(self.peer.ip(), ctx.now.get()) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(inbound = %ib.tag, peer = %self.peer, user = %record.name, "refused: {e}");
                return false;
            }
        };
        let Some(registration) = ctx.register(user, ib) else {
            return false;
        };
        *self.auth.borrow_mut() = Some(Rc::new(Authed {
            id: user,
            user: record,
            registration,
            _admission: admission,
        }));
        // The watcher now also waits for the registration's kick signal.
        self.authenticated.fire();
        true
    }

    /// Closes the connection (once): quinn sends CONNECTION_CLOSE, drains, and the driver ends.
    pub(super) fn close(&self) {
        self.close_with(H3_NO_ERROR);
    }

    /// Closes the connection with the HTTP/3 error `code`.
    pub(super) fn close_with(&self, code: u32) {
        if !self.closing.replace(true) {
            self.quic
                .borrow_mut()
                .close(Instant::now(), VarInt::from_u32(code), Bytes::new());
            self.wake.notify();
        }
    }

    /// Runs the connection until it is drained: feeds it events and timeouts, hands
    /// application events to tasks, and sends every packet it yields.
    pub(super) async fn drive(
        self: Rc<Self>,
        ctx: Rc<WorkerCtx>,
        ib: Arc<InboundShared>,
        _live: LiveGuard,
    ) {
        let mut buf = Vec::with_capacity(super::SEND_BATCH * 1500);
        let mut scratch = Vec::new();
        runtime::spawn(Rc::clone(&self).watch(Rc::clone(&ctx), Arc::clone(&ib)));
        let mut timer: Option<runtime::Timer> = None;
        loop {
            self.process(&ctx, &ib);
            loop {
                buf.clear();
                let batch = self.ep.batch();
                let transmit =
                    self.quic
                        .borrow_mut()
                        .poll_transmit(Instant::now(), batch, &mut buf);
                let Some(t) = transmit else { break };
                self.ep.send(&t, &buf, &mut scratch).await;
            }
            if self.quic.borrow().is_drained() {
                break;
            }
            if !self.inbox.borrow().is_empty() {
                continue;
            }
            // One timer for the connection's life, moved to each new deadline.
            let deadline = self.quic.borrow_mut().poll_timeout();
            match (deadline, &mut timer) {
                (Some(at), Some(t)) => t.reset(at),
                (Some(at), None) => timer = Some(runtime::Timer::new(at)),
                (None, _) => {}
            }
            let due = async {
                match (deadline, &mut timer) {
                    (Some(_), Some(t)) => t.await,
                    _ => std::future::pending().await,
                }
            };
            futures_lite::future::or(self.wake.notified(), due).await;
        }
        self.handshake_over();
        self.ep.conns.borrow_mut().remove(&self.handle);
        self.lost.fire();
        self.wake_all();
        // Sessions hold the connection; they end on `lost`, and this drops what is left.
        self.sessions.borrow_mut().clear();
        self.auth.borrow_mut().take();
    }

    /// Closes the connection when the engine stops, the inbound goes, or (once the client has
    /// authenticated) the user is kicked; ends with the connection. A task of its own, so that
    /// the driver's loop waits on nothing but its wake-ups and its timer.
    async fn watch(self: Rc<Self>, ctx: Rc<WorkerCtx>, ib: Arc<InboundShared>) {
        let kicked = async {
            self.authenticated.wait().await;
            match self.authed().map(|a| a.registration.kill.clone()) {
                Some(kill) => kill.wait().await,
                None => std::future::pending().await,
            }
        };
        let close = async {
            futures_lite::future::or(
                futures_lite::future::or(ctx.shared.close.wait(), ib.closed.wait()),
                kicked,
            )
            .await;
            true
        };
        let lost = async {
            self.lost.wait().await;
            false
        };
        if futures_lite::future::or(lost, close).await {
            self.close();
        }
    }

    /// Hands the connection what arrived, runs due timers, settles endpoint events, then
    /// dispatches the connection's application events.
    fn process(self: &Rc<Self>, ctx: &Rc<WorkerCtx>, ib: &Arc<InboundShared>) {
        let now = Instant::now();
        {
            let mut q = self.quic.borrow_mut();
            loop {
                let event = self.inbox.borrow_mut().pop_front();
                match event {
                    Some(e) => q.handle_event(e),
                    None => break,
                }
            }
            if q.poll_timeout().is_some_and(|t| t <= now) {
                q.handle_timeout(now);
            }
            while let Some(e) = q.poll_endpoint_events() {
                let back = self.ep.quic.borrow_mut().handle_event(self.handle, e);
                if let Some(back) = back {
                    q.handle_event(back);
                }
            }
        }
        loop {
            let event = self.quic.borrow_mut().poll();
            let Some(event) = event else { break };
            self.on_event(event, ctx, ib);
        }
    }

    fn on_event(self: &Rc<Self>, event: Event, ctx: &Rc<WorkerCtx>, ib: &Arc<InboundShared>) {
        match event {
            Event::Connected => {
                self.handshake_over();
                self.open_control_stream();
            }
            Event::Stream(StreamEvent::Opened { dir }) => loop {
                let id = self.quic.borrow_mut().streams().accept(dir);
                let Some(id) = id else { break };
                match dir {
                    Dir::Bi => runtime::spawn(super::stream::serve(
                        Rc::clone(self),
                        Rc::clone(ctx),
                        Arc::clone(ib),
                        id,
                    )),
                    Dir::Uni => runtime::spawn(super::stream::discard(Rc::clone(self), id)),
                }
            },
            Event::Stream(StreamEvent::Readable { id }) => self.wake_stream(id, true),
            Event::Stream(StreamEvent::Writable { id } | StreamEvent::Stopped { id, .. }) => {
                self.wake_stream(id, false)
            }
            Event::Stream(StreamEvent::Finished { .. } | StreamEvent::Available { .. }) => {}
            Event::DatagramReceived => loop {
                let datagram = self.quic.borrow_mut().datagrams().recv();
                let Some(d) = datagram else { break };
                super::udp::on_datagram(self, ctx, ib, d);
            },
            Event::DatagramsUnblocked | Event::HandshakeDataReady => {}
            Event::ConnectionLost { reason } => {
                tracing::debug!(inbound = %ib.tag, peer = %self.peer, "QUIC connection closed: {reason}");
                self.lost.fire();
                self.wake_all();
            }
        }
    }

    /// The handshake has completed or the connection ended: it no longer counts in the
    /// endpoint's handshakes in progress.
    fn handshake_over(&self) {
        if self.handshaking.replace(false) {
            self.ep.handshaking.set(self.ep.handshaking.get() - 1);
        }
    }

    /// Opens our HTTP/3 control stream and sends SETTINGS, as an HTTP/3 server does.
    fn open_control_stream(&self) {
        let mut q = self.quic.borrow_mut();
        if let Some(id) = q.streams().open(Dir::Uni) {
            let _ = q.send_stream(id).write(&CONTROL_STREAM);
        }
    }

    fn wake_stream(&self, id: StreamId, read: bool) {
        if let Some(w) = self.waiters.borrow_mut().get_mut(&id) {
            let waker = if read { w.read.take() } else { w.write.take() };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    fn wake_all(&self) {
        for (_, w) in self.waiters.borrow_mut().drain() {
            for waker in [w.read, w.write].into_iter().flatten() {
                waker.wake();
            }
        }
    }

    /// Parks the current task until stream `id` is readable (or writable).
    pub(super) fn park(&self, cx: &mut Context<'_>, id: StreamId, read: bool) {
        let mut waiters = self.waiters.borrow_mut();
        let w = waiters.entry(id).or_default();
        let slot = if read { &mut w.read } else { &mut w.write };
        *slot = Some(cx.waker().clone());
    }

    /// Records that our side of stream `id` ended cleanly ([`Conn::finish`]).
    pub(super) fn mark_finished(&self, id: StreamId) {
        self.finished.borrow_mut().insert(id);
    }

    /// Forgets stream `id` (its task is done with it): its waiters go, and both halves are
    /// closed so that quinn frees the stream and grants the client a new one. A receive half
    /// not read to its end is stopped. A send half not finished (the task gave up: a
    /// malformed or unfinished request, a timeout) is reset; so is one the client stopped
    /// (quinn frees a stopped send half only once it is reset). A cleanly finished send half
    /// is left to deliver what it holds.
    pub(super) fn forget(&self, id: StreamId) {
        self.waiters.borrow_mut().remove(&id);
        let finished = self.finished.borrow_mut().remove(&id);
        {
            let mut q = self.quic.borrow_mut();
            // Fails harmlessly when the half is already closed.
            let _ = q.recv_stream(id).stop(VarInt::from_u32(H3_NO_ERROR));
            // The client's unidirectional streams have no send half (quinn asserts as much).
            if id.dir() == Dir::Bi {
                if !finished {
                    // Fails harmlessly when the half was reset already.
                    let _ = q
                        .send_stream(id)
                        .reset(VarInt::from_u32(H3_REQUEST_CANCELLED));
                } else if let Ok(Some(code)) = q.send_stream(id).stopped() {
                    let _ = q.send_stream(id).reset(code);
                }
            }
        }
        self.wake.notify();
    }

    pub(super) fn poll_lost(&self) -> bool {
        self.lost.is_fired()
    }
}
