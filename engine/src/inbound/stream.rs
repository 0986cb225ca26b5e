//! What VLESS, Trojan and VMess share: accepting a connection through its transport (TCP or
//! TLS, then WebSocket if configured), reading a protocol header under the handshake deadline,
//! the fallback of a connection that fails authentication, admission of an authenticated user,
//! and the TCP relay.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use proto::{Progress, TargetAddr};

use super::relay::{drain, pipe, tcp_pipe, udp_destination, until_idle, LowWater, Meter, Tally};
use super::{until_closed, InboundKind, InboundShared, Registration, WorkerCtx};
use crate::buffer::RelayBuffer;
use crate::config::WsConfig;
use crate::runtime::{self, TcpListener, TcpStream, UdpSocket};
use crate::transport::ws::WsStream;
use crate::transport::ClientStream;
use crate::users::{Admission, UserRecord};
use proto::ws::handshake::{self as ws_handshake, parse_upgrade, UpgradePolicy};

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
    until_closed(&ctx, &inbound, None, handle(&ctx, &inbound, stream)).await;
}

async fn handle(ctx: &Rc<WorkerCtx>, ib: &Arc<InboundShared>, stream: TcpStream) {
    let Ok(peer) = stream.peer_addr() else { return };
    let _ = stream.set_nodelay(true);
    let handshake = ctx.shared.timeouts.handshake;
    let deadline = Instant::now() + handshake;
    let client = match &ib.tls {
        None => ClientStream::Tcp(stream),
        Some(tls) => match runtime::timeout(handshake, tls.accept(stream, &ctx.buffers)).await {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                tracing::debug!(inbound = %ib.tag, %peer, "TLS handshake failed: {e}");
                return;
            }
            None => return,
        },
    };
    let conn = Conn {
        ctx,
        ib,
        peer,
        deadline,
    };
    let client = match &ib.ws {
        None => client,
        Some(ws) => {
            let fallback = match &ib.kind {
                InboundKind::Vless(v) => v.fallback,
                InboundKind::Trojan(t) => t.fallback,
                _ => None,
            };
            match conn.upgrade(ws, client, fallback).await {
                Some(c) => c,
                None => return,
            }
        }
    };
    match &ib.kind {
        InboundKind::Vless(v) => super::vless::handle(&conn, v, client).await,
        InboundKind::Trojan(t) => super::trojan::handle(&conn, t, client).await,
        // Boxed: VMess's state (two body ciphers and the chunk codecs) is several times the
        // others', and every connection's task would otherwise be sized for it.
        InboundKind::Vmess(v) => Box::pin(super::vmess::handle(&conn, v, client)).await,
        InboundKind::Shadowsocks(_) => unreachable!("served by inbound::shadowsocks"),
        InboundKind::Hysteria2(_) => unreachable!("served by inbound::hysteria2"),
    }
}

/// One client connection, after its transport.
pub(crate) struct Conn<'a> {
    pub(crate) ctx: &'a Rc<WorkerCtx>,
    pub(crate) ib: &'a Arc<InboundShared>,
    pub(crate) peer: SocketAddr,
    /// When the protocol handshake must be complete.
    pub(crate) deadline: Instant,
}

/// How reading a header ended.
enum Header<T> {
    /// Parsed; the buffer holds `len` bytes (header and the payload after it).
    Done(T, usize),
    /// The parser refused the bytes (the buffer holds `len` of them, untouched).
    Rejected(usize),
    /// The deadline passed, the buffer filled or the client closed before the parser decided.
    Undecided(usize),
}

/// The read-mostly state of a VLESS or Trojan inbound: its users (swapped whole when users
/// change, read once per handshake) and where connections that fail authentication go.
pub(crate) struct KeyedInbound<T> {
    pub(crate) keys: ArcSwap<T>,
    pub(crate) fallback: Option<SocketAddr>,
}

impl<T: Default> KeyedInbound<T> {
    pub(crate) fn new(fallback: Option<SocketAddr>) -> KeyedInbound<T> {
        KeyedInbound {
            keys: ArcSwap::from_pointee(T::default()),
            fallback,
        }
    }
}

/// A request whose header was read and accepted.
pub(crate) struct Accepted<T> {
    pub(crate) request: T,
    /// Bytes in `buf`: the header, then payload already read.
    pub(crate) len: usize,
    pub(crate) client: ClientStream,
    pub(crate) buf: RelayBuffer,
}

/// An authenticated user, admitted: dropping it releases the connection's slots.
pub(crate) struct Admitted {
    pub(crate) user: Arc<UserRecord>,
    pub(crate) registration: Registration,
    _admission: Admission,
}

impl Conn<'_> {
    /// Reads into `buf` until `parse` decides or the deadline passes.
    async fn read_header<T, E: std::fmt::Display>(
        &self,
        client: &mut ClientStream,
        buf: &mut [u8],
        mut parse: impl FnMut(&mut [u8]) -> Result<Progress<T>, E>,
    ) -> Header<T> {
        let mut len = 0;
        loop {
            let Some(left) = self.deadline.checked_duration_since(Instant::now()) else {
                return Header::Undecided(len);
            };
            if len == buf.len() {
                return Header::Undecided(len);
            }
            match runtime::timeout(left, client.read(&mut buf[len..])).await {
                Some(Ok(n)) if n > 0 => len += n,
                _ => return Header::Undecided(len),
            }
            match parse(&mut buf[..len]) {
                Ok(Progress::Done(t)) => return Header::Done(t, len),
                Ok(Progress::NeedMore) => continue,
                Err(e) => {
                    tracing::debug!(inbound = %self.ib.tag, peer = %self.peer, "handshake rejected: {e}");
                    return Header::Rejected(len);
                }
            }
        }
    }

    /// The WebSocket upgrade: reads the request head under the handshake deadline and answers
    /// `101`, then the stream carries frames. A request for another path or host, or one that
    /// is not an upgrade, goes to `fallback` with every byte read (a web site answers it), or
    /// gets the answer an ordinary web server would give (`404`, `400`) and is closed.
    async fn upgrade(
        &self,
        ws: &WsConfig,
        mut client: ClientStream,
        fallback: Option<SocketAddr>,
    ) -> Option<ClientStream> {
        let policy = UpgradePolicy {
            path: &ws.path,
            host: ws.host.as_deref(),
            early_data: ws.max_early_data > 0,
        };
        let mut buf = self.ctx.buffers.get();
        let mut refused = None;
        let header = self
            .read_header(&mut client, &mut buf, |b| {
                parse_upgrade(&policy, b).inspect_err(|e| refused = Some(e.response()))
            })
            .await;
        match header {
            Header::Done(up, len) => {
                let mut response = Vec::with_capacity(256);
                up.write_response(&buf[..len], &mut response);
                if client.write_all(&response).await.is_err() || client.flush().await.is_err() {
                    return None;
                }
                let early = up.decode_early_data(&buf[..len]);
                let pending = buf[up.consumed..len].to_vec();
                Some(ClientStream::Ws(Box::new(WsStream::new(
                    client, early, pending,
                ))))
            }
            Header::Rejected(_) if fallback.is_none() => {
                let answer = refused.unwrap_or(ws_handshake::BAD_REQUEST);
                if client.write_all(answer).await.is_ok() {
                    let _ = client.close().await;
                    // Read what the client still sends until it closes (or the deadline), so
                    // that the answer is not lost to a reset.
                    drain(&mut client, &mut buf, self.deadline).await;
                }
                None
            }
            Header::Rejected(len) | Header::Undecided(len) => {
                self.reject(client, buf, len, fallback).await;
                None
            }
        }
    }

    /// Where a connection that fails the protocol's handshake goes: `fallback`, unless the
    /// protocol runs inside WebSocket (a web site cannot answer bytes inside frames; the
    /// connection is drained).
    pub(crate) fn fallback(&self, fallback: Option<SocketAddr>) -> Option<SocketAddr> {
        if self.ib.ws.is_some() {
            None
        } else {
            fallback
        }
    }

    /// Reads the request header and parses it with `parse` against the current user table. A
    /// connection whose header fails (or does not complete by the deadline) goes to `fallback`
    /// with every byte read, or is drained; `None` then.
    pub(crate) async fn authenticate<K, T, E: std::fmt::Display>(
        &self,
        mut client: ClientStream,
        keys: &ArcSwap<K>,
        fallback: Option<SocketAddr>,
        mut parse: impl FnMut(&K, &mut [u8]) -> Result<Progress<T>, E>,
    ) -> Option<Accepted<T>> {
        let mut buf = self.ctx.buffers.get();
        let keys = keys.load_full();
        let header = self
            .read_header(&mut client, &mut buf, |b| parse(&keys, b))
            .await;
        drop(keys);
        match header {
            Header::Done(request, len) => Some(Accepted {
                request,
                len,
                client,
                buf,
            }),
            Header::Rejected(len) | Header::Undecided(len) => {
                self.reject(client, buf, len, fallback).await;
                None
            }
        }
    }

    /// A connection that failed authentication: to the fallback with the `len` bytes read so
    /// far, or drained when there is none.
    pub(crate) async fn reject(
        &self,
        mut client: ClientStream,
        mut buf: RelayBuffer,
        len: usize,
        fallback: Option<SocketAddr>,
    ) {
        let Some(addr) = fallback else {
            drain(&mut client, &mut buf, self.deadline).await;
            return;
        };
        let t = &self.ctx.shared.timeouts;
        // The fallback is the operator's own site: the destination rules do not apply.
        let mut target = match TcpStream::connect_timeout(addr, t.connect).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(inbound = %self.ib.tag, fallback = %addr, "fallback unreachable: {e}");
                drain(&mut client, &mut buf, self.deadline).await;
                return;
            }
        };
        let _ = target.set_nodelay(true);
        if target.write_all(&buf[..len]).await.is_err() {
            return;
        }
        tracing::debug!(inbound = %self.ib.tag, peer = %self.peer, "fallback");
        plain_relay(self.ctx, client, target, buf, &[], None).await;
    }

    /// Admits `user` (limits) and registers the connection (so that a kick closes it).
    pub(crate) fn admit(&self, user: u32) -> Option<Admitted> {
        self.ctx.remember(self.ib.id, self.peer.ip(), user);
        let record = self.ctx.shared.users.get(user);
        let admission = match record.admit(self.peer.ip(), self.ctx.now.get()) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(inbound = %self.ib.tag, peer = %self.peer, user = %record.name, "refused: {e}");
                return None;
            }
        };
        let registration = self.ctx.register(user, self.ib)?;
        Some(Admitted {
            user: record,
            registration,
            _admission: admission,
        })
    }

    /// The outbound side of a UDP session carried on this connection (logged when the socket
    /// cannot be opened).
    pub(crate) fn udp_out(&self) -> Option<UdpOut> {
        match runtime::outbound_udp_socket() {
            Ok(socket) => {
                let _ = socket.set_read_timeout(Some(self.ctx.shared.timeouts.udp_session));
                Some(UdpOut {
                    socket,
                    resolved: RefCell::new(None),
                })
            }
            Err(e) => {
                tracing::warn!(inbound = %self.ib.tag, "cannot open an outbound UDP socket: {e}");
                None
            }
        }
    }

    /// Where `user`'s packets for `target` go (`None`, logged, when the rules refuse it or it
    /// does not resolve).
    pub(crate) async fn udp_dest(
        &self,
        user: &UserRecord,
        out: &UdpOut,
        target: &TargetAddr,
    ) -> Option<SocketAddr> {
        let found = udp_destination(
            self.ctx,
            self.ib,
            &user.name,
            &out.socket,
            &out.resolved,
            target,
            self.peer.ip(),
        )
        .await;
        found
            .map_err(|e| {
                tracing::debug!(inbound = %self.ib.tag, peer = %self.peer, %target, "{e}");
            })
            .ok()
    }

    /// Counts `user`'s bytes on this connection.
    pub(crate) fn meter<'m>(&'m self, user: &'m UserRecord) -> Meter<'m> {
        Meter {
            ctx: self.ctx,
            inbound: self.ib,
            user,
        }
    }

    /// Connects to `user`'s TCP destination (`None`, logged, when refused or unreachable).
    pub(crate) async fn connect(
        &self,
        user: &UserRecord,
        target: &TargetAddr,
    ) -> Option<TcpStream> {
        match super::relay::connect_tcp(self.ctx, self.ib, &user.name, self.peer.ip(), target).await
        {
            Ok(s) => {
                tracing::trace!(inbound = %self.ib.tag, peer = %self.peer, user = %user.name, %target, "relaying");
                Some(s)
            }
            Err(e) => {
                tracing::debug!(inbound = %self.ib.tag, peer = %self.peer, user = %user.name, %target, "{e}");
                None
            }
        }
    }

    /// [`Conn::connect`], then sends `payload` (what came with the request header), counted
    /// by `meter`. `None` when either fails.
    pub(crate) async fn connect_with(
        &self,
        meter: &Meter<'_>,
        target: &TargetAddr,
        payload: &[u8],
    ) -> Option<TcpStream> {
        let mut dest = self.connect(meter.user, target).await?;
        if !payload.is_empty() {
            dest.write_all(payload).await.ok()?;
            meter.up(payload.len()).await;
        }
        Some(dest)
    }

    /// Relays a TCP stream for an admitted user: connects to `target`, sends the payload
    /// already read (`up[payload]`), then copies both ways, `response` going out in front of
    /// the first bytes back. Returns when both directions are done or the user is kicked.
    pub(crate) async fn relay_tcp(
        &self,
        admitted: &Admitted,
        client: ClientStream,
        target: &TargetAddr,
        up: RelayBuffer,
        payload: Range<usize>,
        response: &[u8],
    ) {
        let user = &admitted.user;
        let _open = user.traffic.open_guard(self.ctx.index);
        let relay = async {
            let meter = self.meter(user);
            let Some(dest) = self
                .connect_with(&meter, target, &up[payload.clone()])
                .await
            else {
                return;
            };
            plain_relay(self.ctx, client, dest, up, response, Some(&meter)).await;
        };
        until_closed(self.ctx, self.ib, Some(&admitted.registration.kill), relay).await;
    }
}

/// The outbound socket of a UDP session carried on a stream, and the last name it resolved.
pub(crate) struct UdpOut {
    pub(crate) socket: UdpSocket,
    resolved: RefCell<Option<(TargetAddr, SocketAddr)>>,
}

/// Copies both ways between a client and a destination until both directions end, through
/// `up` and a second buffer; between plain TCP sockets a bulk transfer moves on to `splice`
/// (see [`tcp_pipe`]).
async fn plain_relay(
    ctx: &WorkerCtx,
    client: ClientStream,
    dest: TcpStream,
    mut up: RelayBuffer,
    response: &[u8],
    meter: Option<&Meter<'_>>,
) {
    let idle = ctx.shared.timeouts.idle;
    let activity = Cell::new(Instant::now());
    let (tally_up, tally_down) = match meter {
        Some(m) => (Tally::Up(m), Tally::Down(m)),
        None => (Tally::Nothing, Tally::Nothing),
    };
    let down = ctx.buffers.get();
    let client = match client {
        ClientStream::Tcp(c) => {
            let (client, dest) = (RefCell::new(c), RefCell::new(dest));
            let pipes = &ctx.pipes;
            let both = futures_lite::future::zip(
                tcp_pipe(&client, &dest, up, pipes, &[], &activity, tally_up),
                tcp_pipe(&dest, &client, down, pipes, response, &activity, tally_down),
            );
            return until_idle(both, &activity, idle).await;
        }
        other => other,
    };
    let mut down = down;
    let mut low = LowWater::new(client.tcp());
    let (client_r, client_w) = futures_lite::io::split(client);
    let (dest_r, dest_w) = futures_lite::io::split(dest);
    let both = futures_lite::future::zip(
        pipe(
            client_r,
            dest_w,
            &mut up,
            &[],
            &activity,
            tally_up,
            Some(&mut low),
        ),
        pipe(
            dest_r, client_w, &mut down, response, &activity, tally_down, None,
        ),
    );
    until_idle(both, &activity, idle).await;
}
