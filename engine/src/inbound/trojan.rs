//! Trojan inbound over the `proto::trojan` codec: CONNECT relay, UDP ASSOCIATE (each packet
//! names its destination), fallback of anything that is not Trojan or has a wrong password.

use std::cell::Cell;
use std::time::Instant;

use futures_lite::AsyncWriteExt;
use proto::trojan::{self, Command, TrojanUsers, UdpFrame};
use proto::TargetAddr;

use super::relay::{recv_reply, refill, unmap};
use super::stream::{Accepted, Admitted, Conn, KeyedInbound};
use super::until_closed;
use crate::buffer::RelayBuffer;
use crate::transport::ClientStream;

/// Shared (read-mostly) state of one Trojan inbound: users by password hash, fallback.
pub(crate) type Inbound = KeyedInbound<TrojanUsers>;

pub(crate) async fn handle(conn: &Conn<'_>, t: &Inbound, client: ClientStream) {
    let Some(Accepted {
        request: req,
        len,
        client,
        buf,
    }) = conn
        .authenticate(client, &t.keys, conn.fallback(t.fallback), |u, b| {
            trojan::parse_request(u, b)
        })
        .await
    else {
        return;
    };
    let Some(admitted) = conn.admit(req.user) else {
        return;
    };
    match req.command {
        Command::Connect => {
            conn.relay_tcp(&admitted, client, &req.target, buf, req.consumed..len, &[])
                .await
        }
        Command::UdpAssociate => {
            let relay = relay_udp(conn, &admitted, client, buf, req.consumed, len);
            until_closed(conn.ctx, conn.ib, Some(&admitted.registration.kill), relay).await;
        }
    }
}

/// UDP ASSOCIATE: packets name their destinations; replies name their sources. Ends when the
/// client closes, sends a malformed packet, or the session is idle.
async fn relay_udp(
    conn: &Conn<'_>,
    admitted: &Admitted,
    client: ClientStream,
    mut up: RelayBuffer,
    mut start: usize,
    mut end: usize,
) {
    let ctx = conn.ctx;
    let user = &admitted.user;
    let _open = user.traffic.open_guard(ctx.index);
    let ttl = ctx.shared.timeouts.udp_session;
    let Some(out) = conn.udp_out() else { return };
    let socket = &out.socket;
    let meter = conn.meter(user);
    let _ = client.set_read_timeout(Some(ttl));
    let activity = Cell::new(Instant::now());
    let (mut client_r, mut client_w) = futures_lite::io::split(client);
    let uplink = async {
        loop {
            match trojan::read_udp_packet(&up[start..end]) {
                Ok(UdpFrame::Packet {
                    target,
                    payload,
                    consumed,
                }) => {
                    let p = start + payload.start..start + payload.end;
                    start += consumed;
                    let Some(dest) = conn.udp_dest(user, &out, &target).await else {
                        continue;
                    };
                    if socket.send_to(&up[p.clone()], dest).await.is_ok() {
                        meter.up(p.len()).await;
                    }
                }
                Ok(UdpFrame::NeedMore) => {
                    if !refill(&mut client_r, &mut up, &mut start, &mut end, &activity, ttl).await {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(inbound = %conn.ib.tag, peer = %conn.peer, "udp stream: {e}");
                    break;
                }
            }
        }
    };
    let downlink = async {
        let mut down = ctx.buffers.get();
        let head = trojan::UDP_HEADROOM;
        let max = (down.len() - head).min(trojan::MAX_UDP_PAYLOAD);
        loop {
            let Some((n, from)) =
                recv_reply(socket, &mut down[head..head + max], &activity, ttl).await
            else {
                break;
            };
            let source = TargetAddr::Ip(unmap(from));
            let frame = trojan::frame_udp_packet(&mut down, head..head + n, &source);
            if client_w.write_all(&down[frame]).await.is_err() || client_w.flush().await.is_err() {
                break;
            }
            meter.down(n).await;
        }
    };
    futures_lite::future::or(uplink, downlink).await;
}
