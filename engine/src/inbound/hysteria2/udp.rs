//! UDP over QUIC datagrams: one session per client session id, each with its own outbound
//! socket. Client messages are put back together ([`Reassembly`], within a memory budget per
//! connection, [`REASSEMBLY_BYTES`]) and sent to the address each names; replies come back as messages from the address they came from, cut to the
//! connection's datagram size. A session ends when idle for the UDP session timeout, when
//! its user is kicked, or with its connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use proto::hysteria2::udp::{fragment, Reassembled, Reassembly, UdpMessage};
use proto::TargetAddr;

use super::conn::{Authed, Conn};
use crate::inbound::relay::{
    udp_address_for, udp_destination, udp_route, unmap, until_idle, Meter,
};
use crate::inbound::{until_closed, InboundShared, WorkerCtx};
use crate::runtime::{self, Notify};

/// Packets waiting to go out per session; more are dropped (UDP may lose packets).
const QUEUE_LIMIT: usize = 256;
/// Bytes of packets waiting to go out in all sessions of one connection (while names are
/// resolved or a user's rate holds the uplink back); more are dropped.
const QUEUE_BYTES: usize = 4 << 20;
/// Sessions one connection may hold at once; new ones beyond are dropped.
const MAX_SESSIONS: usize = 1024;
/// What quinn's datagram send buffer charges for each datagram beyond its bytes (its own
/// record of it; 32 bytes in quinn-proto 0.11, rounded up).
const DATAGRAM_OVERHEAD: usize = 64;
/// Bytes of memory that packets being put back together may hold in all sessions of one
/// connection ([`Reassembly::held`]); a fragment beyond drops its packet.
const REASSEMBLY_BYTES: usize = 1 << 20;

/// One UDP session of a connection. It starts as a client session id with fragments in
/// flight; its task starts with its first complete packet, and its socket opens (and the
/// session counts as the user's) with the first packet the routing rules allow.
pub(super) struct Session {
    id: u32,
    reassembly: RefCell<Reassembly>,
    /// Packets from the client, with where each goes.
    queue: RefCell<VecDeque<Queued>>,
    ready: Notify,
    /// Whether the session's task has started ([`run`]).
    running: Cell<bool>,
}

/// Takes one datagram from the client (ignored before authentication, as the reference
/// server does).
pub(super) fn on_datagram(
    conn: &Rc<Conn>,
    ctx: &Rc<WorkerCtx>,
    ib: &Arc<InboundShared>,
    datagram: Bytes,
) {
    let Some(authed) = conn.authed() else { return };
    let message = match UdpMessage::parse(&datagram) {
        Ok(m) => m,
        Err(e) => {
            tracing::trace!(inbound = %ib.tag, peer = %conn.peer, "bad UDP message: {e}");
            return;
        }
    };
    // A message without a usable address opens no session (and no socket).
    let Ok(target) = message.target() else { return };
    let existing = conn.sessions.borrow().get(&message.session_id).cloned();
    let session = match existing {
        Some(s) => s,
        None => {
            if conn.sessions.borrow().len() >= MAX_SESSIONS {
                return;
            }
            let s = Rc::new(Session {
                id: message.session_id,
                reassembly: RefCell::new(Reassembly::new()),
                queue: RefCell::new(VecDeque::new()),
                ready: Notify::default(),
                running: Cell::new(false),
            });
            conn.sessions
                .borrow_mut()
                .insert(message.session_id, Rc::clone(&s));
            s
        }
    };
    // What a queued packet holds: a whole one keeps its datagram alive, a joined one its own
    // allocation; either way with its address.
    let fed = session.reassemble(conn, &message);
    let (payload, cost) = match fed {
        Reassembled::Whole(p) => (datagram.slice_ref(p), datagram.len()),
        Reassembled::Joined(p) => {
            let len = p.len();
            (Bytes::from(p), len)
        }
        Reassembled::Pending => {
            // A session without a task exists only for the packet it is putting together.
            if !session.running.get() && !session.reassembly.borrow().in_flight() {
                conn.sessions.borrow_mut().remove(&session.id);
            }
            return;
        }
    };
    let cost = cost + message.address.len();
    let queued = conn.udp_queued.get();
    if session.queue.borrow().len() < QUEUE_LIMIT && queued + cost <= QUEUE_BYTES {
        conn.udp_queued.set(queued + cost);
        session.queue.borrow_mut().push_back(Queued {
            target,
            payload,
            cost,
        });
        session.ready.notify();
    }
    if !session.running.get() {
        if session.queue.borrow().is_empty() {
            if !session.reassembly.borrow().in_flight() {
                conn.sessions.borrow_mut().remove(&session.id);
            }
            return;
        }
        session.running.set(true);
        runtime::spawn(run(
            Rc::clone(conn),
            Rc::clone(ctx),
            Arc::clone(ib),
            authed,
            session,
        ));
    }
}

/// A packet waiting to go out, with the bytes it holds ([`QUEUE_BYTES`]).
struct Queued {
    target: TargetAddr,
    payload: Bytes,
    cost: usize,
}

impl Session {
    /// Feeds `message` to the session's reassembly within what is left of the connection's
    /// [`REASSEMBLY_BYTES`], and keeps the connection's count of them.
    fn reassemble<'m>(&self, conn: &Conn, message: &UdpMessage<'m>) -> Reassembled<'m> {
        let mut reassembly = self.reassembly.borrow_mut();
        let total = conn.reassembling.get();
        let before = reassembly.held();
        let fed = reassembly.feed(message, REASSEMBLY_BYTES.saturating_sub(total));
        conn.reassembling
            .set((total + reassembly.held()).saturating_sub(before));
        fed
    }

    /// Frees the packet the session was putting together (the session is going).
    fn release(&self, conn: &Conn) {
        let held = std::mem::take(&mut *self.reassembly.borrow_mut()).held();
        conn.reassembling
            .set(conn.reassembling.get().saturating_sub(held));
    }

    /// The next packet waiting to go out, no longer counted as queued.
    fn pop(&self, conn: &Conn) -> Option<(TargetAddr, Bytes)> {
        let next = self.queue.borrow_mut().pop_front()?;
        conn.udp_queued
            .set(conn.udp_queued.get().saturating_sub(next.cost));
        Some((next.target, next.payload))
    }
}

/// Drops what a session still has queued when it ends, however it ends.
struct DropQueued<'a>(&'a Conn, &'a Session);

impl Drop for DropQueued<'_> {
    fn drop(&mut self) {
        while self.1.pop(self.0).is_some() {}
    }
}

/// Runs one session: until a packet the rules allow, nothing (a session whose queued packets
/// are all refused ends without a socket); then packets out through its own socket, and
/// replies back as datagrams.
async fn run(
    conn: Rc<Conn>,
    ctx: Rc<WorkerCtx>,
    ib: Arc<InboundShared>,
    authed: Rc<Authed>,
    session: Rc<Session>,
) {
    let relay = relay(&conn, &ctx, &ib, &authed, &session);
    until_closed(&ctx, &ib, Some(&authed.registration.kill), relay).await;
    let mut sessions = conn.sessions.borrow_mut();
    if sessions
        .get(&session.id)
        .is_some_and(|s| Rc::ptr_eq(s, &session))
    {
        sessions.remove(&session.id);
    }
    session.release(&conn);
}

/// The body of [`run`], cut short when the user is kicked or the inbound closes.
async fn relay(
    conn: &Rc<Conn>,
    ctx: &Rc<WorkerCtx>,
    ib: &Arc<InboundShared>,
    authed: &Authed,
    session: &Session,
) {
    let _queued = DropQueued(conn, session);
    let user = &authed.user;
    let resolved = RefCell::new(None);
    // The first packet the rules allow; refused ones are dropped and do not keep the session.
    let first = async {
        while let Some((target, payload)) = session.pop(conn) {
            let route = udp_route(ctx, ib, &user.name, &resolved, &target, conn.peer.ip());
            match route.await {
                Ok(dest) => return Some((dest, payload)),
                Err(e) => {
                    tracing::debug!(inbound = %ib.tag, peer = %conn.peer, %target, "{e}");
                }
            }
        }
        None
    };
    let first = futures_lite::future::or(first, async {
        conn.lost.wait().await;
        None
    });
    let Some((dest, payload)) = first.await else {
        return;
    };
    let _open = user.traffic.open_guard(ctx.index);
    let socket = match runtime::outbound_udp_socket() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(inbound = %ib.tag, "cannot open an outbound UDP socket: {e}");
            return;
        }
    };
    let meter = Meter {
        ctx,
        inbound: ib,
        user,
    };
    let activity = Cell::new(Instant::now());
    if socket
        .send_to(&payload, udp_address_for(dest, &socket))
        .await
        .is_ok()
    {
        meter.up(payload.len()).await;
    }
    let uplink = async {
        loop {
            session.ready.notified().await;
            loop {
                let Some((target, payload)) = session.pop(conn) else {
                    break;
                };
                let dest = udp_destination(
                    ctx,
                    ib,
                    &user.name,
                    &socket,
                    &resolved,
                    &target,
                    conn.peer.ip(),
                )
                .await;
                // A packet the rules refuse is not activity: it keeps no session alive.
                match dest {
                    Ok(dest) => {
                        activity.set(Instant::now());
                        if socket.send_to(&payload, dest).await.is_ok() {
                            meter.up(payload.len()).await;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(inbound = %ib.tag, peer = %conn.peer, %target, "{e}");
                    }
                }
            }
        }
    };
    let downlink = async {
        let mut buf = ctx.buffers.get();
        let mut address = String::new();
        let mut packet_id: u16 = 0;
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                break;
            };
            activity.set(Instant::now());
            address.clear();
            let _ = write!(address, "{}", unmap(from));
            let message = UdpMessage {
                session_id: session.id,
                packet_id,
                frag_id: 0,
                frag_count: 1,
                address: address.as_bytes(),
                payload: &buf[..n],
            };
            packet_id = packet_id.wrapping_add(1);
            let max = conn.quic.borrow_mut().datagrams().max_size();
            let Some(max) = max else { break };
            let pieces = match fragment(&message, max) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(inbound = %ib.tag, peer = %conn.peer, "reply dropped: {e}");
                    continue;
                }
            };
            // Only a reply quinn queues whole is counted (and charged to the user's rate): one
            // that does not fit its datagram send buffer is dropped here, uncounted. (Sent
            // with `drop = true`, quinn would make room by dropping older replies, which were
            // counted already.)
            let need: usize = pieces
                .clone()
                .map(|p| p.encoded_len() + DATAGRAM_OVERHEAD)
                .sum();
            if need > conn.quic.borrow_mut().datagrams().send_buffer_space() + DATAGRAM_OVERHEAD {
                tracing::trace!(inbound = %ib.tag, peer = %conn.peer, "reply dropped: datagram send buffer full");
                continue;
            }
            let mut queued = true;
            for piece in pieces {
                let mut datagram = Vec::with_capacity(piece.encoded_len());
                piece.encode(&mut datagram);
                let sent = conn
                    .quic
                    .borrow_mut()
                    .datagrams()
                    .send(Bytes::from(datagram), false);
                if let Err(e) = sent {
                    tracing::debug!(inbound = %ib.tag, peer = %conn.peer, "reply dropped: {e}");
                    queued = false;
                    break;
                }
            }
            conn.wake.notify();
            if queued {
                meter.down(n).await;
            }
        }
    };
    let relay = until_idle(
        futures_lite::future::or(uplink, downlink),
        &activity,
        ctx.shared.timeouts.udp_session,
    );
    futures_lite::future::or(relay, conn.lost.wait()).await;
}
