//! VLESS inbound over the `proto::vless` codec: TCP relay, UDP (length-prefixed packets to the
//! request's target), Mux.Cool with XUDP (`inbound::mux`), fallback of anything that is not
//! VLESS or names no user.

use std::cell::Cell;
use std::time::Instant;

use futures_lite::AsyncWriteExt;
use proto::vless::{self, Command, Flow, UdpFrame, VlessUsers};
use proto::TargetAddr;

use super::relay::{recv_reply, refill};
use super::stream::{Accepted, Admitted, Conn, KeyedInbound};
use super::until_closed;
use crate::buffer::RelayBuffer;
use crate::transport::ClientStream;

/// Shared (read-mostly) state of one VLESS inbound: users by UUID, fallback.
pub(crate) type Inbound = KeyedInbound<VlessUsers>;

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
    if req.flow != Flow::None {
        tracing::debug!(inbound = %conn.ib.tag, peer = %conn.peer, "flow not supported");
        return conn.reject(client, buf, len, None).await;
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

/// UDP over the stream: every packet goes to the request's target; replies come back
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
    let Some(dest) = conn.udp_dest(user, &out, &target).await else {
        return;
    };
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
                    if !p.is_empty() && socket.send_to(&up[p.clone()], dest).await.is_ok() {
                        meter.up(p.len()).await;
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
