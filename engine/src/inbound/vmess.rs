//! VMess AEAD inbound over the `proto::vmess` codec: TCP relay with the body opened and
//! sealed in place, UDP (one chunk per packet, to the request's target; a reply larger than a
//! chunk holds, [`MAX_CHUNK_PAYLOAD`], is dropped, as v2ray and Xray drop a packet that does
//! not fit their chunk, never cut), Mux.Cool
//! (`inbound::mux` over the body as a byte stream). A failed handshake is
//! drained; auth ids are replay-checked across every worker of the inbound.

use std::cell::{Cell, RefCell};
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use proto::shadowsocks::SaltFilter;
use proto::vmess::{
    self, BodyOpener, BodySealer, Command, Opened, ServerHandshake, VmessUsers, MAX_CHUNK_PAYLOAD,
    SEAL_HEADROOM,
};
use proto::{Progress, TargetAddr};

use super::relay::{recv_reply, refill, until_idle, Batch, LowWater, SharedRead, Tally};
use super::shadowsocks::SharedSalts;
use super::stream::{Accepted, Admitted, Conn};
use super::until_closed;
use crate::buffer::RelayBuffer;
use crate::runtime;
use crate::transport::ClientStream;

/// Shared (read-mostly) state of one VMess inbound.
pub(crate) struct Inbound {
    /// Users (auth keys); swapped whole when users change.
    pub(crate) keys: ArcSwap<VmessUsers>,
    /// Auth ids seen in the last [`vmess::AUTH_ID_TTL`] seconds, shared by every worker.
    auth_ids: Mutex<SaltFilter>,
}

impl Inbound {
    pub(crate) fn new() -> Inbound {
        Inbound {
            keys: ArcSwap::from_pointee(VmessUsers::default()),
            auth_ids: Mutex::new(SaltFilter::new(vmess::AUTH_ID_TTL, usize::MAX)),
        }
    }
}

pub(crate) async fn handle(conn: &Conn<'_>, v: &Inbound, client: ClientStream) {
    let hint = conn.ctx.hint(conn.ib.id, conn.peer.ip());
    let now = conn.ctx.shared.now();
    let mut hs = ServerHandshake::new();
    let parse = |users: &VmessUsers, b: &mut [u8]| match hs.advance(
        users,
        b,
        now,
        hint,
        &mut SharedSalts(&v.auth_ids),
    )? {
        vmess::Handshake::Done(r) => Ok(Progress::Done(r)),
        vmess::Handshake::NeedMore => Ok::<_, vmess::PeerError>(Progress::NeedMore),
    };
    let Some(Accepted {
        request: req,
        len,
        client,
        buf,
    }) = conn.authenticate(client, &v.keys, None, parse).await
    else {
        return;
    };
    let Some(admitted) = conn.admit(req.user) else {
        return;
    };
    let (opener, sealer) = (req.opener(), req.sealer());
    let relay = async {
        match req.command {
            Command::Tcp(target) => {
                relay_tcp(
                    conn,
                    &admitted,
                    client,
                    &target,
                    (opener, sealer),
                    buf,
                    req.consumed,
                    len,
                )
                .await
            }
            Command::Udp(target) => {
                relay_udp(
                    conn,
                    &admitted,
                    client,
                    &target,
                    (opener, sealer),
                    buf,
                    req.consumed,
                    len,
                )
                .await
            }
            Command::Mux => {
                let (client_r, client_w) = futures_lite::io::split(client);
                let reader = BodyReader {
                    inner: client_r,
                    opener,
                    buf,
                    start: req.consumed,
                    end: len,
                    plain: 0..0,
                    ended: false,
                };
                let writer = BodyWriter {
                    inner: client_w,
                    sealer,
                    buf: vec![0; SEAL_HEADROOM + MAX_CHUNK_PAYLOAD + vmess::SEAL_TAILROOM],
                    pending: 0..0,
                };
                let frames = conn.ctx.buffers.get();
                super::mux::relay(
                    conn.ctx,
                    conn.ib,
                    &admitted.user,
                    conn.peer,
                    reader,
                    writer,
                    frames,
                    (0, 0),
                    &[],
                )
                .await
            }
        }
    };
    until_closed(conn.ctx, conn.ib, Some(&admitted.registration.kill), relay).await;
}

/// The client's request body as a byte stream (for Mux.Cool, which reads frames from it):
/// chunks are opened in place in `buf` and their plaintext handed out.
struct BodyReader<R> {
    inner: R,
    opener: BodyOpener,
    buf: RelayBuffer,
    /// Unopened bytes.
    start: usize,
    end: usize,
    /// Opened plaintext not yet handed out.
    plain: std::ops::Range<usize>,
    ended: bool,
}

impl<R: AsyncRead + Unpin> AsyncRead for BodyReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if !this.plain.is_empty() {
                let n = out.len().min(this.plain.len());
                out[..n].copy_from_slice(&this.buf[this.plain.start..this.plain.start + n]);
                this.plain.start += n;
                return Poll::Ready(Ok(n));
            }
            if this.ended {
                return Poll::Ready(Ok(0));
            }
            match this.opener.open(&mut this.buf[this.start..this.end]) {
                Ok(Opened::Chunk { payload, consumed }) => {
                    this.plain = this.start + payload.start..this.start + payload.end;
                    this.start += consumed;
                }
                Ok(Opened::End { .. }) => this.ended = true,
                Ok(Opened::NeedMore) => {
                    if this.start == this.end || this.end == this.buf.len() {
                        this.buf.copy_within(this.start..this.end, 0);
                        this.end -= this.start;
                        this.start = 0;
                    }
                    let end = this.end;
                    let n = ready!(Pin::new(&mut this.inner).poll_read(cx, &mut this.buf[end..]))?;
                    if n == 0 {
                        return Poll::Ready(Ok(0));
                    }
                    this.end += n;
                }
                Err(e) => {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
            }
        }
    }
}

/// The response body as a byte sink (for Mux.Cool): what is written is sealed in chunks, one
/// at a time in `buf`, and sent before the next is taken.
struct BodyWriter<W> {
    inner: W,
    sealer: BodySealer,
    buf: Vec<u8>,
    /// Sealed bytes not yet sent.
    pending: std::ops::Range<usize>,
}

impl<W: AsyncWrite + Unpin> BodyWriter<W> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.pending.clone()]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.start += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for BodyWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let n = data.len().min(MAX_CHUNK_PAYLOAD);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        this.buf[SEAL_HEADROOM..SEAL_HEADROOM + n].copy_from_slice(&data[..n]);
        this.pending = this
            .sealer
            .seal(&mut this.buf, SEAL_HEADROOM..SEAL_HEADROOM + n);
        // The chunk is ours now; what does not go out at once goes before the next one.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

#[allow(clippy::too_many_arguments)]
async fn relay_tcp(
    conn: &Conn<'_>,
    admitted: &Admitted,
    client: ClientStream,
    target: &TargetAddr,
    (mut opener, mut sealer): (BodyOpener, BodySealer),
    mut up: RelayBuffer,
    mut start: usize,
    mut end: usize,
) {
    let ctx = conn.ctx;
    let user = &admitted.user;
    let _open = user.traffic.open_guard(ctx.index);
    let t = &ctx.shared.timeouts;
    let Some(dest) = conn.connect(user, target).await else {
        return;
    };
    let meter = conn.meter(user);
    let activity = Cell::new(Instant::now());
    let mut low = LowWater::new(client.tcp());
    let (mut client_r, mut client_w) = futures_lite::io::split(client);
    let dest = RefCell::new(dest);
    let mut dest_r = SharedRead(&dest);
    // Chunks are opened in place; those one read brought go out in one `sendmsg` (`Batch`).
    let uplink = async {
        let mut batch = Batch::new();
        loop {
            match opener.open(&mut up[start..end]) {
                Ok(Opened::Chunk { payload, consumed }) => {
                    let full = batch.push(start + payload.start..start + payload.end);
                    start += consumed;
                    if full && !batch.flush(&dest, &up, Tally::Up(&meter)).await {
                        break;
                    }
                }
                Ok(Opened::NeedMore) => {
                    // The buffer is about to be reused: what was opened goes out first.
                    if !batch.flush(&dest, &up, Tally::Up(&meter)).await {
                        break;
                    }
                    let queued = end - start;
                    let read = refill(
                        &mut client_r,
                        &mut up,
                        &mut start,
                        &mut end,
                        &activity,
                        t.idle,
                    );
                    if !low.read(read).await {
                        break;
                    }
                    low.after_read(end - start - queued);
                }
                Ok(Opened::End { .. }) => {
                    batch.flush(&dest, &up, Tally::Up(&meter)).await;
                    break;
                }
                Err(e) => {
                    tracing::debug!(inbound = %conn.ib.tag, peer = %conn.peer, "request body: {e}");
                    // The chunks before the bad one were authentic.
                    batch.flush(&dest, &up, Tally::Up(&meter)).await;
                    break;
                }
            }
        }
        let _ = runtime::shutdown_write(&dest.borrow());
    };
    let downlink = async {
        let mut down = ctx.buffers.get();
        let head = SEAL_HEADROOM;
        loop {
            let n = match dest_r.read(&mut down[head..head + MAX_CHUNK_PAYLOAD]).await {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            activity.set(Instant::now());
            let frame = sealer.seal(&mut down, head..head + n);
            if client_w.write_all(&down[frame]).await.is_err() || client_w.flush().await.is_err() {
                return;
            }
            meter.down(n).await;
        }
        // The end marker (an empty chunk), then a half-close.
        let frame = sealer.seal(&mut down, head..head);
        let _ = client_w.write_all(&down[frame]).await;
        let _ = client_w.close().await;
    };
    until_idle(
        futures_lite::future::zip(uplink, downlink),
        &activity,
        t.idle,
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn relay_udp(
    conn: &Conn<'_>,
    admitted: &Admitted,
    client: ClientStream,
    target: &TargetAddr,
    (mut opener, mut sealer): (BodyOpener, BodySealer),
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
    if conn.udp_dest(user, &out, target).await.is_none() {
        return;
    }
    let socket = &out.socket;
    let meter = conn.meter(user);
    let _ = client.set_read_timeout(Some(ttl));
    let activity = Cell::new(Instant::now());
    let (mut client_r, mut client_w) = futures_lite::io::split(client);
    let uplink = async {
        loop {
            match opener.open(&mut up[start..end]) {
                Ok(Opened::Chunk { payload, consumed }) => {
                    let p = start + payload.start..start + payload.end;
                    // Checked per packet, as every UDP path is: the rules may have been
                    // replaced (the name's resolution is cached by the session).
                    if let Some(dest) = conn.udp_dest(user, &out, target).await {
                        if socket.send_to(&up[p.clone()], dest).await.is_ok() {
                            meter.up(p.len()).await;
                        }
                    }
                    start += consumed;
                }
                Ok(Opened::NeedMore) => {
                    if !refill(&mut client_r, &mut up, &mut start, &mut end, &activity, ttl).await {
                        break;
                    }
                }
                Ok(Opened::End { .. }) => break,
                Err(e) => {
                    tracing::debug!(inbound = %conn.ib.tag, peer = %conn.peer, "udp body: {e}");
                    break;
                }
            }
        }
    };
    let downlink = async {
        let mut down = ctx.buffers.get();
        let head = SEAL_HEADROOM;
        loop {
            // Received whole (a relay buffer holds any datagram), so that one too large for a
            // chunk is seen as such and dropped, not cut to the chunk's size.
            let Some((n, from)) = recv_reply(socket, &mut down[head..], &activity, ttl).await
            else {
                break;
            };
            if n > MAX_CHUNK_PAYLOAD {
                tracing::debug!(inbound = %conn.ib.tag, peer = %conn.peer, %from, "UDP reply of {n} bytes dropped: more than one VMess chunk holds");
                continue;
            }
            let frame = sealer.seal(&mut down, head..head + n);
            if client_w.write_all(&down[frame]).await.is_err() || client_w.flush().await.is_err() {
                break;
            }
            meter.down(n).await;
        }
    };
    futures_lite::future::or(uplink, downlink).await;
}
