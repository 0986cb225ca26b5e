//! VLESS inbound over the `proto::vless` codec: TCP relay, UDP (length-prefixed packets to the
//! request's target), Mux.Cool with XUDP (`inbound::mux`), fallback of anything that is not
//! VLESS or names no user.

use std::cell::Cell;
use std::time::Instant;

use futures_lite::AsyncWriteExt;
use proto::vless::{self, Command, Flow, UdpFrame, VlessUsers};
use proto::TargetAddr;

use super::relay::{recv_reply, refill, until_idle};
use super::stream::{Accepted, Admitted, Conn, KeyedInbound};
use super::until_closed;
use super::vision::{VisionRead, VisionWrite};
use crate::buffer::RelayBuffer;
use crate::transport::ClientStream;

/// Shared (read-mostly) state of one VLESS inbound: users by UUID, fallback, flow.
pub(crate) struct Inbound {
    keyed: KeyedInbound<VlessUsers>,
    /// Every user uses XTLS Vision (`flow: xtls-rprx-vision`).
    vision: bool,
}

impl Inbound {
    pub(crate) fn new(fallback: Option<std::net::SocketAddr>, vision: bool) -> Inbound {
        Inbound {
            keyed: KeyedInbound::new(fallback),
            vision,
        }
    }
}

impl std::ops::Deref for Inbound {
    type Target = KeyedInbound<VlessUsers>;

    fn deref(&self) -> &KeyedInbound<VlessUsers> {
        &self.keyed
    }
}

/// How a request's flow fits the inbound's (Xray's rules for an account with or without
/// `flow`): `Ok(true)` for Vision, `Ok(false)` for none, `Err` with the reason to refuse.
fn flow_allowed(
    inbound_vision: bool,
    req: &vless::Request,
    payload: &[u8],
) -> Result<bool, &'static str> {
    match (&req.flow, inbound_vision) {
        (Flow::None, false) => Ok(false),
        (Flow::Vision, true) if matches!(req.command, Command::Udp(_)) => {
            Err("xtls-rprx-vision does not carry UDP (use XUDP)")
        }
        (Flow::Vision, true) => Ok(true),
        // A Vision user without the flow: only UDP, plainly or as XUDP (not TLS in TLS).
        (Flow::None, true) => match req.command {
            Command::Udp(_) => Ok(false),
            Command::Mux if proto::mux::opens_xudp_session(payload) => Ok(false),
            _ => Err("the inbound requires flow xtls-rprx-vision"),
        },
        (Flow::Vision, false) => Err("flow xtls-rprx-vision is not enabled on this inbound"),
        (Flow::Other(_), _) => Err("unknown flow"),
    }
}

pub(crate) async fn handle(conn: &Conn<'_>, v: &Inbound, client: ClientStream) {
    let Some(Accepted {
        request: req,
        len,
        client,
        buf,
    }) = conn
        .authenticate(client, &v.keys, conn.fallback(v.fallback), |u, b| {
            vless::parse_request(u, b)
        })
        .await
    else {
        return;
    };
    let vision = match flow_allowed(v.vision, &req, &buf[req.consumed..len]) {
        Ok(vision) => vision,
        Err(why) => {
            tracing::debug!(inbound = %conn.ib.tag, peer = %conn.peer, "request refused: {why}");
            return conn.reject(client, buf, len, None).await;
        }
    };
    if vision {
        let client = match client {
            ClientStream::Tls(tls) if tls.is_tls13() => tls,
            client => {
                tracing::debug!(inbound = %conn.ib.tag, peer = %conn.peer,
                    "request refused: xtls-rprx-vision needs TLS 1.3");
                return conn.reject(client, buf, len, None).await;
            }
        };
        let Some(admitted) = conn.admit(req.user) else {
            return;
        };
        let uuid: [u8; 16] = buf[1..17].try_into().expect("the header holds the UUID");
        let (reader, writer) = super::vision::split(client, uuid);
        let relay = relay_vision(
            conn,
            &admitted,
            req.command,
            reader,
            writer,
            buf,
            req.consumed..len,
        );
        return until_closed(conn.ctx, conn.ib, Some(&admitted.registration.kill), relay).await;
    }
    let Some(admitted) = conn.admit(req.user) else {
        return;
    };
    match req.command {
        Command::Tcp(target) => {
            conn.relay_tcp(
                &admitted,
                client,
                &target,
                buf,
                req.consumed..len,
                &vless::RESPONSE_HEADER,
            )
            .await
        }
        Command::Udp(target) => {
            let relay = relay_udp(conn, &admitted, client, target, buf, req.consumed, len);
            until_closed(conn.ctx, conn.ib, Some(&admitted.registration.kill), relay).await;
        }
        Command::Mux => {
            let (reader, writer) = futures_lite::io::split(client);
            let relay = super::mux::relay(
                conn.ctx,
                conn.ib,
                &admitted.user,
                conn.peer,
                reader,
                writer,
                buf,
                (req.consumed, len),
                &vless::RESPONSE_HEADER,
            );
            until_closed(conn.ctx, conn.ib, Some(&admitted.registration.kill), relay).await;
        }
    }
}

/// UDP over the stream: every packet goes to the request's target, checked by the routing
/// rules as they are when it is sent (a packet they deny is dropped); replies come back
/// length-prefixed. Ends when the client closes or the session is idle.
async fn relay_udp(
    conn: &Conn<'_>,
    admitted: &Admitted,
    client: ClientStream,
    target: TargetAddr,
    mut up: RelayBuffer,
    mut start: usize,
    mut end: usize,
) {
    let ctx = conn.ctx;
    let user = &admitted.user;
    let _open = user.traffic.open_guard(ctx.index);
    let ttl = ctx.shared.timeouts.udp_session;
    let Some(out) = conn.udp_out() else { return };
    // Refused from the start: the stream ends at once.
    if conn.udp_dest(user, &out, &target).await.is_none() {
        return;
    }
    let socket = &out.socket;
    let meter = conn.meter(user);
    let _ = client.set_read_timeout(Some(ttl));
    let activity = Cell::new(Instant::now());
    let (mut client_r, mut client_w) = futures_lite::io::split(client);
    let uplink = async {
        loop {
            match vless::read_udp_packet(&up[start..end]) {
                UdpFrame::Packet { payload, consumed } => {
                    let p = start + payload.start..start + payload.end;
                    // Checked per packet, as every UDP path is: the rules may have been
                    // replaced (the name's resolution is cached by the session).
                    if !p.is_empty() {
                        if let Some(dest) = conn.udp_dest(user, &out, &target).await {
                            if socket.send_to(&up[p.clone()], dest).await.is_ok() {
                                meter.up(p.len()).await;
                            }
                        }
                    }
                    start += consumed;
                }
                UdpFrame::NeedMore => {
                    if !refill(&mut client_r, &mut up, &mut start, &mut end, &activity, ttl).await {
                        break;
                    }
                }
            }
        }
    };
    let downlink = async {
        if client_w.write_all(&vless::RESPONSE_HEADER).await.is_err() {
            return;
        }
        let _ = client_w.flush().await;
        let mut down = ctx.buffers.get();
        let head = vless::UDP_PREFIX;
        let max = (down.len() - head).min(vless::MAX_UDP_PAYLOAD);
        loop {
            let Some((n, _)) =
                recv_reply(socket, &mut down[head..head + max], &activity, ttl).await
            else {
                break;
            };
            let frame = vless::frame_udp_packet(&mut down, head..head + n);
            if client_w.write_all(&down[frame]).await.is_err() || client_w.flush().await.is_err() {
                break;
            }
            meter.down(n).await;
        }
    };
    futures_lite::future::or(uplink, downlink).await;
}

/// A Vision connection (TCP or Mux.Cool): the payload read with the header is unpadded
/// first, then both ways go through the Vision reader and writer.
async fn relay_vision(
    conn: &Conn<'_>,
    admitted: &Admitted,
    command: Command,
    mut reader: VisionRead,
    writer: VisionWrite,
    mut up: RelayBuffer,
    payload: std::ops::Range<usize>,
) {
    let ctx = conn.ctx;
    let user = &admitted.user;
    let n = match reader.unpad(&mut up[payload.clone()]) {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(inbound = %conn.ib.tag, peer = %conn.peer, "vision: {e}");
            return;
        }
    };
    let payload = payload.start..payload.start + n;
    match command {
        Command::Tcp(target) => {
            let _open = user.traffic.open_guard(ctx.index);
            let meter = conn.meter(user);
            let Some(dest) = conn
                .connect_with(&meter, &target, &up[payload.clone()])
                .await
            else {
                return;
            };
            let activity = Cell::new(Instant::now());
            let buffers = (up, ctx.buffers.get());
            let relay = super::vision::relay_tcp(
                reader, writer, dest, buffers, &ctx.pipes, &activity, &meter,
            );
            until_idle(relay, &activity, ctx.shared.timeouts.idle).await;
        }
        Command::Mux => {
            // The response header goes with the writer's first block.
            super::mux::relay(
                ctx,
                conn.ib,
                user,
                conn.peer,
                reader,
                writer,
                up,
                (payload.start, payload.end),
                &[],
            )
            .await
        }
        Command::Udp(_) => unreachable!("refused in flow_allowed"),
    }
}
