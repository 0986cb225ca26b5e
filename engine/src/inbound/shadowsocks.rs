//! Shadowsocks inbound: TCP relay and UDP sessions over the `proto::shadowsocks` codecs.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use proto::shadowsocks::replay::SaltCheck;
use proto::shadowsocks::tcp::{
    Handshake, Opened, ServerHandshake, StreamOpener, StreamSealer, HEADROOM,
};
use proto::shadowsocks::udp::{decode_client_packet, UdpResponder, UDP_HEADROOM};
use proto::shadowsocks::{SaltFilter, SlidingWindow, UserKeys, TAG_LEN};
use proto::TargetAddr;
use rand::RngCore;

use super::WorkerCtx;
use crate::runtime::{self, TcpListener, TcpStream, UdpSocket};
use crate::{outbound, unix_now, InboundKind, InboundShared};

/// Shared (read-mostly) state of one Shadowsocks inbound.
pub(crate) struct Inbound {
    pub(crate) keys: UserKeys,
    /// Replay filter shared by every worker (a replay may land on any core). Locked once per
    /// handshake, never per chunk.
    pub(crate) salts: Mutex<SaltFilter>,
}

struct SharedSalts<'a>(&'a Mutex<SaltFilter>);

impl SaltCheck for SharedSalts<'_> {
    fn check_and_insert(&mut self, salt: &[u8], now: u64) -> bool {
        self.0
            .lock()
            .expect("not poisoned")
            .check_and_insert(salt, now)
    }
}

fn inbound(ctx: &WorkerCtx, i: usize) -> (&InboundShared, &Inbound) {
    let ib = &ctx.shared.inbounds[i];
    match &ib.kind {
        InboundKind::Shadowsocks(ss) => (ib, ss),
    }
}

pub(crate) async fn serve_tcp(ctx: Rc<WorkerCtx>, index: usize, listener: TcpListener) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            ctx.shared.stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let guard = ctx.live_guard(index);
                let ctx2 = Rc::clone(&ctx);
                runtime::spawn(async move {
                    let close = ctx2.shared.close.clone();
                    futures_lite::future::or(
                        handle_tcp(Rc::clone(&ctx2), index, stream),
                        close.wait(),
                    )
                    .await;
                    drop(guard);
                });
            }
            Some(Err(e)) => {
                tracing::warn!(inbound = %ctx.shared.inbounds[index].tag, "accept failed: {e}");
                runtime::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// What a failed handshake gets: read and discard until the client gives up or the handshake
/// deadline passes, then close. Whatever was wrong and however many bytes were sent, a prober
/// sees the same thing: silence, then a close at the same time.
async fn drain(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) {
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match runtime::timeout(left, stream.read(buf)).await {
            Some(Ok(n)) if n > 0 => continue,
            _ => break,
        }
    }
}

async fn handle_tcp(ctx: Rc<WorkerCtx>, index: usize, mut client: TcpStream) {
    let peer = match client.peer_addr() {
        Ok(p) => p,
        Err(_) => return,
    };
    let _ = client.set_nodelay(true);
    let (ib, ss) = inbound(&ctx, index);
    let t = &ctx.shared.timeouts;
    let deadline = Instant::now() + t.handshake;
    let mut up = ctx.buffers.get();
    let mut len = 0;
    let mut hs = ServerHandshake::new();
    let hint = ctx.hint(index, peer.ip());
    let req = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match runtime::timeout(left, client.read(&mut up[len..])).await {
            Some(Ok(n)) if n > 0 => n,
            _ => return,
        };
        len += n;
        match hs.advance(
            &ss.keys,
            &mut up[..len],
            unix_now(),
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
    ctx.remember(index, peer.ip(), req.user);
    let user = ctx.shared.users.get(req.user);
    let _open = user.traffic.open_guard(ctx.index);
    let mut target = match outbound::connect_tcp(&req.target, ctx.shared.policy, t.connect).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(inbound = %ib.tag, %peer, user = %user.name, target = %req.target, "{e}");
            return;
        }
    };
    tracing::trace!(inbound = %ib.tag, %peer, user = %user.name, target = %req.target, "relaying");
    let w = ctx.index;
    let first = req.payload.len() as u64;
    if first > 0 {
        if target.write_all(&up[req.payload.clone()]).await.is_err() {
            return;
        }
        user.traffic.add_up(w, first);
        ib.traffic.add_up(w, first);
    }
    let mut salt = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut salt);
    let sealer = req.response_sealer(&salt);
    let _ = client.set_read_timeout(Some(t.idle));
    let _ = target.set_read_timeout(Some(t.idle));
    let activity = Rc::new(Cell::new(Instant::now()));
    let (client_r, client_w) = futures_lite::io::split(client);
    let (target_r, target_w) = futures_lite::io::split(target);
    let count = |up: bool, n: u64| {
        if up {
            user.traffic.add_up(w, n);
            ib.traffic.add_up(w, n);
        } else {
            user.traffic.add_down(w, n);
            ib.traffic.add_down(w, n);
        }
    };
    let uplink = relay_up(
        client_r,
        target_w,
        up,
        req.consumed,
        len,
        req.opener,
        &activity,
        t.idle,
        &count,
    );
    let down = ctx.buffers.get();
    let downlink = relay_down(target_r, client_w, down, sealer, &activity, t.idle, &count);
    futures_lite::future::zip(uplink, downlink).await;
}

/// A read that tolerates the idle timer firing while the other direction is busy.
async fn read_active<R: futures_lite::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    activity: &Cell<Instant>,
    idle: Duration,
) -> io::Result<usize> {
    loop {
        match r.read(buf).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut && activity.get().elapsed() < idle => {
                continue
            }
            other => return other,
        }
    }
}

/// Client to destination: open chunks in place, write each payload from where it lies.
#[allow(clippy::too_many_arguments)]
async fn relay_up<R, W>(
    mut client: R,
    mut target: W,
    mut buf: crate::buffer::RelayBuffer,
    mut start: usize,
    mut end: usize,
    mut opener: StreamOpener,
    activity: &Cell<Instant>,
    idle: Duration,
    count: &impl Fn(bool, u64),
) where
    R: futures_lite::AsyncRead + Unpin,
    W: futures_lite::AsyncWrite + Unpin,
{
    loop {
        match opener.open(&mut buf[start..end], 0) {
            Ok(Opened::Chunk { payload, consumed }) => {
                if !payload.is_empty() {
                    let p = start + payload.start..start + payload.end;
                    if target.write_all(&buf[p.clone()]).await.is_err() {
                        break;
                    }
                    count(true, p.len() as u64);
                }
                start += consumed;
                if start == end {
                    start = 0;
                    end = 0;
                }
            }
            Ok(Opened::NeedMore) => {
                if buf.len() - start < opener.wanted() || end == buf.len() {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                match read_active(&mut client, &mut buf[end..], activity, idle).await {
                    Ok(n) if n > 0 => {
                        end += n;
                        activity.set(Instant::now());
                    }
                    _ => break,
                }
            }
            Err(e) => {
                tracing::debug!("request stream: {e}");
                break;
            }
        }
    }
    let _ = target.close().await;
}

/// Destination to client: read into the buffer behind the headroom, seal in place, write once.
async fn relay_down<R, W>(
    mut target: R,
    mut client: W,
    mut buf: crate::buffer::RelayBuffer,
    mut sealer: StreamSealer,
    activity: &Cell<Instant>,
    idle: Duration,
    count: &impl Fn(bool, u64),
) where
    R: futures_lite::AsyncRead + Unpin,
    W: futures_lite::AsyncWrite + Unpin,
{
    let max = sealer.max_payload().min(buf.len() - HEADROOM - TAG_LEN);
    loop {
        let n = match read_active(
            &mut target,
            &mut buf[HEADROOM..HEADROOM + max],
            activity,
            idle,
        )
        .await
        {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        activity.set(Instant::now());
        let frame = sealer.seal(&mut buf, HEADROOM..HEADROOM + n, unix_now());
        if client.write_all(&buf[frame]).await.is_err() {
            break;
        }
        count(false, n as u64);
    }
    let _ = client.close().await;
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum SessionKey {
    /// 2022: the client's session id.
    Id(u64),
    /// AEAD (2017): the client's address.
    Addr(SocketAddr),
}

struct UdpSession {
    user: u32,
    outbound: UdpSocket,
    responder: RefCell<UdpResponder>,
    window: RefCell<SlidingWindow>,
    client: Cell<SocketAddr>,
    active: Cell<Instant>,
    /// Last resolved domain target, so a session does not resolve per packet.
    resolved: RefCell<Option<(TargetAddr, SocketAddr)>>,
}

type Sessions = Rc<RefCell<HashMap<SessionKey, Rc<UdpSession>>>>;

pub(crate) async fn serve_udp(ctx: Rc<WorkerCtx>, index: usize, socket: Rc<UdpSocket>) {
    let (ib, ss) = inbound(&ctx, index);
    let sessions: Sessions = Rc::new(RefCell::new(HashMap::new()));
    let mut buf = ctx.buffers.get();
    let mut scratch = ctx.buffers.get();
    let w = ctx.index;
    loop {
        let received = futures_lite::future::or(
            async { Some(socket.recv_from(&mut buf[..]).await) },
            async {
                ctx.shared.stop.wait().await;
                None
            },
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
        let now = unix_now();
        let hint = ctx.hint(index, src.ip());
        let packet =
            match decode_client_packet(&ss.keys, &mut buf[..n], now, hint, &mut scratch[..n]) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(inbound = %ib.tag, peer = %src, "udp packet rejected: {e}");
                    continue;
                }
            };
        let key = match packet.session {
            Some((id, _)) => SessionKey::Id(id),
            None => SessionKey::Addr(src),
        };
        let existing = sessions.borrow().get(&key).cloned();
        let session = match existing {
            Some(s) if s.user == packet.user => s,
            Some(_) => continue,
            None => {
                let Some(s) = new_session(&ctx, index, &packet, src) else {
                    continue;
                };
                sessions.borrow_mut().insert(key, Rc::clone(&s));
                ctx.remember(index, src.ip(), packet.user);
                runtime::spawn(session_replies(
                    Rc::clone(&ctx),
                    index,
                    Rc::clone(&s),
                    Rc::clone(&socket),
                    Rc::clone(&sessions),
                    key,
                ));
                s
            }
        };
        if let Some((_, packet_id)) = packet.session {
            if !session.window.borrow_mut().accept(packet_id) {
                tracing::debug!(inbound = %ib.tag, peer = %src, "udp packet replayed");
                continue;
            }
        }
        session.client.set(src);
        session.active.set(Instant::now());
        let dest = match udp_destination(&ctx, &session, &packet.target).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(inbound = %ib.tag, peer = %src, target = %packet.target, "{e}");
                continue;
            }
        };
        let payload = &buf[packet.payload.clone()];
        if session.outbound.send_to(payload, dest).await.is_ok() {
            let user = ctx.shared.users.get(session.user);
            user.traffic.add_up(w, payload.len() as u64);
            ib.traffic.add_up(w, payload.len() as u64);
        }
    }
}

fn new_session(
    ctx: &Rc<WorkerCtx>,
    index: usize,
    packet: &proto::shadowsocks::udp::ClientPacket,
    src: SocketAddr,
) -> Option<Rc<UdpSession>> {
    let (ib, ss) = inbound(ctx, index);
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
        &ss.keys,
        packet.user,
        packet.session.map(|s| s.0),
        server_session,
    )?;
    Some(Rc::new(UdpSession {
        user: packet.user,
        outbound,
        responder: RefCell::new(responder),
        window: RefCell::new(SlidingWindow::default()),
        client: Cell::new(src),
        active: Cell::new(Instant::now()),
        resolved: RefCell::new(None),
    }))
}

async fn udp_destination(
    ctx: &WorkerCtx,
    session: &UdpSession,
    target: &TargetAddr,
) -> Result<SocketAddr, outbound::OutboundError> {
    let policy = ctx.shared.policy;
    let addr = match target {
        TargetAddr::Ip(a) => {
            if !policy.permits(a.ip()) {
                return Err(outbound::OutboundError::Blocked(*a));
            }
            *a
        }
        TargetAddr::Domain(..) => {
            if let Some((t, a)) = &*session.resolved.borrow() {
                if t == target {
                    return Ok(*a);
                }
            }
            let a = outbound::resolve(target, policy).await?[0];
            *session.resolved.borrow_mut() = Some((target.clone(), a));
            a
        }
    };
    // The outbound socket is dual-stack IPv6 where possible: address IPv4 as v4-mapped.
    Ok(match (addr, session.outbound.local_addr()) {
        (SocketAddr::V4(v4), Ok(SocketAddr::V6(_))) => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => addr,
    })
}

fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

async fn session_replies(
    ctx: Rc<WorkerCtx>,
    index: usize,
    session: Rc<UdpSession>,
    socket: Rc<UdpSocket>,
    sessions: Sessions,
    key: SessionKey,
) {
    let _guard = ctx.live_guard(index);
    let (ib, _) = inbound(&ctx, index);
    let ttl = ctx.shared.timeouts.udp_session;
    let user = ctx.shared.users.get(session.user);
    let _open = user.traffic.open_guard(ctx.index);
    let mut buf = ctx.buffers.get();
    let max = buf.len() - UDP_HEADROOM - TAG_LEN;
    let w = ctx.index;
    let mut random = [0u8; 32];
    loop {
        let received = futures_lite::future::or(
            async {
                let r = session
                    .outbound
                    .recv_from(&mut buf[UDP_HEADROOM..UDP_HEADROOM + max])
                    .await;
                Some(r.map_err(io::Error::from))
            },
            async {
                ctx.shared.close.wait().await;
                None
            },
        )
        .await;
        let (n, from) = match received {
            None => break,
            Some(Ok(r)) => r,
            Some(Err(e)) if e.kind() == io::ErrorKind::TimedOut => {
                if session.active.get().elapsed() >= ttl || ctx.shared.stop.is_fired() {
                    break;
                }
                continue;
            }
            Some(Err(_)) => break,
        };
        session.active.set(Instant::now());
        rand::thread_rng().fill_bytes(&mut random);
        let source = TargetAddr::Ip(unmap(from));
        let frame = session.responder.borrow_mut().encode(
            &mut buf,
            UDP_HEADROOM..UDP_HEADROOM + n,
            &source,
            unix_now(),
            &random,
        );
        if socket
            .send_to(&buf[frame], session.client.get())
            .await
            .is_ok()
        {
            user.traffic.add_down(w, n as u64);
            ib.traffic.add_down(w, n as u64);
        }
    }
    sessions.borrow_mut().remove(&key);
}
