//! Bidirectional streams: the HTTP/3 authentication request (or anything else, which gets
//! the masquerade) and, once the client has authenticated, TCP proxy requests (0x401) and
//! their relays. Also the reads and writes every task does on a QUIC stream.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use proto::hysteria2::http3;
use proto::hysteria2::tcp::{self, TcpStatus, TCP_REQUEST};
use proto::hysteria2::{masquerade, varint, MAX_ADDRESS_LEN, MAX_MESSAGE_LEN, MAX_PADDING_LEN};
use proto::Progress;
use quinn_proto::{ReadError, ReadableError, StreamId, VarInt, WriteError};
use rand::Rng;

use super::conn::{Conn, H3_GENERAL_PROTOCOL_ERROR, H3_REQUEST_CANCELLED};
use super::site::Lookup;
use super::{push_http3_head, push_http3_response, Masquerade};
use crate::buffer::SendBuffer;
use crate::inbound::relay::{self, until_idle, Meter};
use crate::inbound::{until_closed, InboundKind, InboundShared, WorkerCtx, RELAY_BUFFER};
use crate::runtime;

/// Reads from the target at least this long go to quinn without a copy (see
/// [`SendBuffer`]); at half the buffer, memory held for unacknowledged data is at most twice
/// the data.
const DOWNLINK_HAND_OVER: usize = RELAY_BUFFER / 2;

/// Most chunks (QUIC frames' data) a stream's uplink writes to the target at once.
const UPLINK_CHUNKS: usize = 64;
/// Most bytes a stream's uplink writes to the target at once.
const UPLINK_BYTES: usize = 128 * 1024;

/// Most bytes of a request stream read before its head is complete: the HEADERS frame (at
/// most [`http3::MAX_FIELD_SECTION_SIZE`]) and whatever the client sends before it.
const MAX_REQUEST_HEAD: usize = http3::MAX_FIELD_SECTION_SIZE + 64 * 1024;

/// Most bytes all of a connection's unfinished request heads hold at once: one of the largest
/// a request may have, and as much again for the others (a connection may open 1 024
/// streams).
const HEADS_BUDGET: usize = 2 * MAX_REQUEST_HEAD;

/// The bytes of an unfinished request head that a stream holds, counted in its connection's
/// `heads_held` until dropped.
struct HeldHead<'a> {
    conn: &'a Conn,
    bytes: usize,
}

impl<'a> HeldHead<'a> {
    fn new(conn: &'a Conn) -> Self {
        HeldHead { conn, bytes: 0 }
    }

    /// Counts the head as `len` bytes now; whether the connection's heads are within
    /// [`HEADS_BUDGET`].
    fn update(&mut self, len: usize) -> bool {
        let held = self.conn.heads_held.get() - self.bytes + len;
        self.conn.heads_held.set(held);
        self.bytes = len;
        held <= HEADS_BUDGET
    }
}

impl Drop for HeldHead<'_> {
    fn drop(&mut self) {
        self.conn
            .heads_held
            .set(self.conn.heads_held.get() - self.bytes);
    }
}

/// About what a parsed request head holds in memory: its fields as RFC 9114 counts them, and
/// its pseudo-headers.
fn request_size(r: &http3::RequestHead) -> usize {
    let fields: usize = r
        .fields
        .iter()
        .map(|f| f.name.len() + f.value.len() + 32)
        .sum();
    let pseudo = [&r.scheme, &r.authority, &r.path, &r.protocol]
        .iter()
        .map(|p| p.as_ref().map_or(0, String::len))
        .sum::<usize>();
    fields + pseudo + r.method.len()
}

/// Longest TCP request: frame type, address length, address, padding length and padding,
/// each varint at its widest (8 bytes).
const MAX_TCP_REQUEST: usize = 8 + 8 + MAX_ADDRESS_LEN + 8 + MAX_PADDING_LEN;

impl Conn {
    /// The next chunk of stream `id`; `None` at its end.
    /// At most `max` bytes: quinn may hold far larger chunks (a whole stream window).
    pub(super) async fn read_chunk(&self, id: StreamId, max: usize) -> io::Result<Option<Bytes>> {
        let mut got = None;
        poll_fn(|cx| {
            self.poll_chunks(cx, id, max, &mut |chunk| {
                got = Some(chunk);
                0
            })
        })
        .await?;
        Ok(got)
    }

    /// Takes stream `id`'s chunks into `chunks` (up to [`UPLINK_CHUNKS`] of them and `room`
    /// bytes), waiting while none has arrived: the relay then writes them to the target with
    /// one vectored send, without copying them. The byte count; `None` at the stream's end.
    /// A reset is an error of kind `ConnectionReset` (quinn drops whatever it still held of
    /// the stream when the reset arrives).
    pub(super) async fn read_chunks(
        &self,
        id: StreamId,
        chunks: &mut Vec<Bytes>,
        room: usize,
    ) -> io::Result<Option<usize>> {
        let mut n = 0;
        let more = poll_fn(|cx| {
            self.poll_chunks(cx, id, room, &mut |chunk| {
                n += chunk.len();
                chunks.push(chunk);
                if chunks.len() == UPLINK_CHUNKS {
                    0
                } else {
                    room - n
                }
            })
        })
        .await?;
        Ok(more.then_some(n))
    }

    /// Hands `take` the chunks stream `id` holds, at most `room` bytes, parking the task while
    /// it holds none. `take` answers how many more bytes it wants (0: no more). `Ok(true)` once
    /// something was taken, `Ok(false)` at the stream's end; a reset or a lost connection is
    /// an error only when nothing was taken.
    fn poll_chunks(
        &self,
        cx: &mut Context<'_>,
        id: StreamId,
        mut room: usize,
        take: &mut impl FnMut(Bytes) -> usize,
    ) -> Poll<io::Result<bool>> {
        if self.poll_lost() {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let mut q = self.quic.borrow_mut();
        let mut stream = q.recv_stream(id);
        let mut chunks = match stream.read(true) {
            Ok(c) => c,
            Err(ReadableError::ClosedStream) => return Poll::Ready(Ok(false)),
            Err(e) => return Poll::Ready(Err(io::Error::other(e))),
        };
        let mut taken = false;
        let mut last = Err(ReadError::Blocked);
        while room > 0 {
            match chunks.next(room) {
                Ok(Some(chunk)) => {
                    taken = true;
                    room = take(chunk.bytes);
                }
                other => {
                    last = other.map(|_| ());
                    break;
                }
            }
        }
        let transmit = chunks.finalize().should_transmit();
        drop(q);
        if transmit {
            self.wake.notify();
        }
        if taken {
            return Poll::Ready(Ok(true));
        }
        match last {
            Ok(()) => Poll::Ready(Ok(false)),
            Err(ReadError::Blocked) => {
                self.park(cx, id, true);
                Poll::Pending
            }
            Err(ReadError::Reset(code)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("stream reset by the client ({code})"),
            ))),
        }
    }

    /// Writes all of `data` to stream `id` (quinn copies it), waiting for flow control as
    /// needed.
    pub(super) async fn write_all(&self, id: StreamId, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.write_with(id, |s| s.write(data)).await?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Hands `data` to stream `id` as it is (quinn keeps it until the peer acknowledges it:
    /// no copy), waiting for flow control as needed.
    pub(super) async fn write_bytes(&self, id: StreamId, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            // Takes the whole chunk, or advances it past the part written.
            self.write_with(id, |s| s.write_chunks(std::slice::from_mut(&mut data)))
                .await?;
        }
        Ok(())
    }

    /// One write to stream `id` by `write`, once the stream takes data (flow control).
    async fn write_with<T>(
        &self,
        id: StreamId,
        mut write: impl FnMut(&mut quinn_proto::SendStream<'_>) -> Result<T, WriteError>,
    ) -> io::Result<T> {
        poll_fn(|cx| {
            if self.poll_lost() {
                return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
            }
            let written = write(&mut self.quic.borrow_mut().send_stream(id));
            match written {
                Ok(t) => {
                    self.wake.notify();
                    Poll::Ready(Ok(t))
                }
                Err(WriteError::Blocked) => {
                    self.park(cx, id, false);
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
            }
        })
        .await
    }

    /// Ends our side of stream `id` after what was written.
    pub(super) fn finish(&self, id: StreamId) {
        if self.quic.borrow_mut().send_stream(id).finish().is_ok() {
            self.mark_finished(id);
        }
        self.wake.notify();
    }

    /// Asks the client to stop sending on stream `id` (STOP_SENDING with `code`); what it
    /// sent is discarded.
    pub(super) fn stop_reading(&self, id: StreamId, code: u32) {
        let _ = self
            .quic
            .borrow_mut()
            .recv_stream(id)
            .stop(VarInt::from_u32(code));
        self.wake.notify();
    }

    /// Abandons stream `id` both ways with `code`.
    pub(super) fn reset(&self, id: StreamId, code: u32) {
        let code = VarInt::from_u32(code);
        {
            let mut q = self.quic.borrow_mut();
            let _ = q.send_stream(id).reset(code);
            let _ = q.recv_stream(id).stop(code);
        }
        self.wake.notify();
    }

    /// Reads more of stream `id` onto `buf` before `deadline`; `false` at the end of the
    /// stream, on an error or when the deadline passes.
    /// At most `max` bytes (at least one) are read.
    async fn read_more(
        &self,
        id: StreamId,
        buf: &mut Vec<u8>,
        deadline: Instant,
        max: usize,
    ) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match runtime::timeout(left, self.read_chunk(id, max.max(1))).await {
            Some(Ok(Some(chunk))) => {
                buf.extend_from_slice(&chunk);
                true
            }
            _ => false,
        }
    }
}

/// `message` cut to at most `max` bytes, at a character boundary (it may quote the
/// client's host name, any UTF-8).
fn clip(mut message: String, max: usize) -> String {
    if message.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|&i| message.is_char_boundary(i))
            .unwrap_or(0);
        message.truncate(cut);
    }
    message
}

/// Random padding of `min..=max` printable bytes, as the reference sends.
fn padding(min: usize, max: usize) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let len = rng.gen_range(min..=max);
    (0..len)
        .map(|_| rng.sample(rand::distributions::Alphanumeric))
        .collect()
}

/// Serves one bidirectional stream the client opened.
pub(super) async fn serve(
    conn: Rc<Conn>,
    ctx: Rc<WorkerCtx>,
    ib: Arc<InboundShared>,
    id: StreamId,
) {
    let work = async {
        let deadline = Instant::now() + ctx.shared.timeouts.handshake;
        let mut head = Vec::new();
        let frame_type = loop {
            if let Progress::Done((t, _)) = varint::decode(&head) {
                break t;
            }
            // A varint is at most 8 bytes; what follows is read against the limits of the
            // request it starts.
            if !conn.read_more(id, &mut head, deadline, 64).await {
                return;
            }
        };
        // A TCP request is one only on an authenticated connection (official clients open
        // them after the 233 answer, which is sent after the connection is marked). Before
        // that, 0x401 is an HTTP/3 frame type like any unknown one, which the request
        // parser skips (RFC 9114 section 9), as an ordinary server and the reference do.
        match conn.authed() {
            Some(authed) if frame_type == TCP_REQUEST => {
                tcp_request(&conn, &ctx, &ib, id, &authed, head, deadline).await;
            }
            _ => http_request(&conn, &ctx, &ib, id, head, deadline).await,
        }
    };
    futures_lite::future::or(work, conn.lost.wait()).await;
    conn.forget(id);
}

/// Reads a unidirectional stream to its end and drops the bytes: the client's HTTP/3 control
/// and QPACK streams, which a server without a dynamic table has no use for.
pub(super) async fn discard(conn: Rc<Conn>, id: StreamId) {
    while let Ok(Some(_)) = conn.read_chunk(id, 64 * 1024).await {}
    conn.forget(id);
}

/// An HTTP/3 request: the authentication, answered 233 when the password names a user who
/// may connect; anything else (another request, a wrong password) gets the masquerade, as
/// from an ordinary web server.
async fn http_request(
    conn: &Conn,
    ctx: &Rc<WorkerCtx>,
    ib: &InboundShared,
    id: StreamId,
    mut head: Vec<u8>,
    deadline: Instant,
) {
    let InboundKind::Hysteria2(h) = &ib.kind else {
        return;
    };
    // As the reference's HTTP/3 layer (quic-go) answers: a head over the size limit gets
    // STOP_SENDING (H3_EXCESSIVE_LOAD) and status 431, an unexpected frame closes the
    // connection, other errors reset the stream with their code, and a stream that ends (or
    // stalls past the handshake timeout) before its head is complete is reset with
    // H3_REQUEST_INCOMPLETE.
    //
    // What the request holds (its buffer while it is read, then its fields and the start of
    // its body) counts in the connection's heads until it has been answered.
    let mut held = HeldHead::new(conn);
    let parsed = loop {
        let within = held.update(head.capacity());
        match http3::parse_request_head(&head, http3::MAX_FIELD_SECTION_SIZE) {
            Ok(Progress::Done(r)) => break Ok(r),
            Ok(Progress::NeedMore) if head.len() < MAX_REQUEST_HEAD && within => {
                let room = (MAX_REQUEST_HEAD - head.len())
                    .min(HEADS_BUDGET.saturating_sub(conn.heads_held.get()));
                if !conn.read_more(id, &mut head, deadline, room).await {
                    conn.reset(id, http3::H3_REQUEST_INCOMPLETE);
                    return;
                }
            }
            // Frames the parser skips (unknown types before HEADERS) may not grow the buffer
            // without end, nor the connection's heads together.
            Ok(Progress::NeedMore) => break Err(None),
            Err(e) if e.is_too_large() => break Err(None),
            Err(e) => break Err(Some(e)),
        }
    };
    let request = match parsed {
        Ok(r) => r,
        Err(None) => {
            drop(head);
            drop(held);
            return too_large(conn, ctx, id).await;
        }
        Err(Some(e)) => {
            tracing::debug!(inbound = %ib.tag, peer = %conn.peer, "bad HTTP/3 request: {e}");
            if matches!(e, http3::H3Error::UnexpectedFrame(_)) {
                conn.close_with(e.code());
            } else {
                conn.reset(id, e.code());
            }
            return;
        }
    };
    // Only what follows the head stays (the start of a body), in a buffer of its size.
    head.drain(..request.consumed);
    head.shrink_to_fit();
    held.update(head.capacity() + request_size(&request));
    let auth = request.hysteria_auth();
    let user = auth.and_then(|a| h.keys.load().get(a.auth));
    let mut answer = Vec::new();
    // A site file's body, sent after `answer` as it is: the site's copy, not one per request.
    let mut file_body = None;
    // The reverse-proxy masquerade's turn, held until its answer is written.
    let mut _turn = None;
    match (user, auth) {
        (Some(user), Some(auth)) if conn.authenticate(ctx, ib, user) => {
            let rate = h.send_rate(auth.cc_rx);
            conn.send_rate.set(rate);
            tracing::debug!(inbound = %ib.tag, peer = %conn.peer, brutal_bytes_per_sec = rate, "authenticated");
            http3::push_auth_response(true, h.receive, &padding(256, 2048), &mut answer);
        }
        _ => {
            tracing::debug!(inbound = %ib.tag, peer = %conn.peer, "not authenticated: masquerade");
            match &h.masquerade {
                Masquerade::Fixed(fixed) => fixed.push(&request.method, &mut answer),
                Masquerade::Proxy { address, host } => {
                    let site = Site {
                        address: *address,
                        host: host.as_deref(),
                    };
                    // A few requests of a connection at once go to the site (each may buffer
                    // a body of up to 1 MiB and an answer of up to 8 MiB); the others wait
                    // their turn, their bodies unread (held by quinn within the
                    // connection's flow-control window).
                    let Ok(turn) = conn.site_turns.acquire_permit(1).await else {
                        return;
                    };
                    _turn = Some(turn);
                    // The body's own time starts with the turn.
                    let deadline = Instant::now() + ctx.shared.timeouts.handshake;
                    let body = request_body(conn, id, &request, head, deadline).await;
                    site.answer(ctx, &request, &body, &mut answer).await;
                }
                Masquerade::Site { site, not_found } => {
                    let path = request.path.as_deref().unwrap_or("/");
                    match site.lookup(path) {
                        Lookup::File(file) => {
                            let fields: [(&[u8], &[u8]); 1] =
                                [(b"content-type", file.content_type.as_bytes())];
                            push_http3_head(200, &fields, Some(file.body.len()), &mut answer);
                            if request.method != "HEAD" && !file.body.is_empty() {
                                http3::push_frame_header(http3::DATA, file.body.len(), &mut answer);
                                file_body = Some(file.body.clone());
                            }
                        }
                        Lookup::Redirect(to) => {
                            push_http3_response(
                                301,
                                &[(b"location", to.as_bytes())],
                                b"",
                                &mut answer,
                            );
                        }
                        Lookup::NotFound => not_found.push(&request.method, &mut answer),
                    }
                }
            }
        }
    }
    send_answer(conn, ctx, id, &answer, file_body).await;
}

/// Writes `answer` (and `body` after it, when given) on stream `id` and finishes the stream.
async fn send_answer(
    conn: &Conn,
    ctx: &WorkerCtx,
    id: StreamId,
    answer: &[u8],
    body: Option<Bytes>,
) {
    let write = async {
        conn.write_all(id, answer).await?;
        if let Some(body) = body {
            conn.write_bytes(id, body).await?;
        }
        io::Result::Ok(())
    };
    // A client that does not take its answer may not keep it (and the stream) for long; the
    // stream is then reset (`Conn::forget`).
    if let Some(Ok(())) = runtime::timeout(ctx.shared.timeouts.idle, write).await {
        conn.finish(id);
    }
}

/// Refuses a request head over the size limit as the reference's HTTP/3 layer does: the rest
/// of the request unread (STOP_SENDING with H3_EXCESSIVE_LOAD), then status 431 (Request
/// Header Fields Too Large) with no body.
async fn too_large(conn: &Conn, ctx: &WorkerCtx, id: StreamId) {
    tracing::debug!(peer = %conn.peer, "HTTP/3 request head too large: 431");
    conn.stop_reading(id, http3::H3_EXCESSIVE_LOAD);
    let mut answer = Vec::new();
    push_http3_head(431, &[], None, &mut answer);
    send_answer(conn, ctx, id, &answer, None).await;
}

/// A TCP proxy request of an authenticated client: connect to the target, answer, and
/// relay.
async fn tcp_request(
    conn: &Conn,
    ctx: &Rc<WorkerCtx>,
    ib: &InboundShared,
    id: StreamId,
    authed: &super::conn::Authed,
    mut head: Vec<u8>,
    deadline: Instant,
) {
    let request = loop {
        match tcp::parse_request(&head) {
            Ok(Progress::Done(r)) => break r,
            Ok(Progress::NeedMore) if head.len() < MAX_TCP_REQUEST => {
                let room = MAX_TCP_REQUEST - head.len();
                if !conn.read_more(id, &mut head, deadline, room).await {
                    return;
                }
            }
            Ok(Progress::NeedMore) => return conn.reset(id, H3_GENERAL_PROTOCOL_ERROR),
            Err(e) => {
                tracing::debug!(inbound = %ib.tag, peer = %conn.peer, "bad TCP request: {e}");
                return conn.reset(id, H3_GENERAL_PROTOCOL_ERROR);
            }
        }
    };
    let user = &authed.user;
    let _open = user.traffic.open_guard(ctx.index);
    // Whether our side of the stream ended cleanly (then a reset would drop unsent data).
    let finished = Cell::new(false);
    let relay = async {
        let t = &ctx.shared.timeouts;
        let target = &request.target;
        let mut answer = Vec::new();
        let connected = relay::connect_tcp(ctx, ib, &user.name, conn.peer.ip(), target).await;
        let mut dest = match connected {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(inbound = %ib.tag, peer = %conn.peer, user = %user.name, %target, "{e}");
                let message = clip(e.to_string(), MAX_MESSAGE_LEN);
                tcp::encode_response(
                    TcpStatus::Error,
                    message.as_bytes(),
                    &padding(64, 512),
                    &mut answer,
                );
                if conn.write_all(id, &answer).await.is_ok() {
                    conn.finish(id);
                    finished.set(true);
                }
                return;
            }
        };
        let _ = dest.set_nodelay(true);
        tcp::encode_response(TcpStatus::Ok, b"", &padding(64, 512), &mut answer);
        if conn.write_all(id, &answer).await.is_err() {
            return;
        }
        let meter = Meter {
            ctx,
            inbound: ib,
            user,
        };
        let early = &head[request.consumed..];
        if !early.is_empty() {
            if dest.write_all(early).await.is_err() {
                return;
            }
            meter.up(early.len()).await;
        }
        let activity = Cell::new(Instant::now());
        let dest = RefCell::new(dest);
        // Whether the upload ended without the client finishing it (a reset, a lost
        // connection): the target then gets a reset, not a clean end of the upload.
        let aborted = Cell::new(false);
        let up = async {
            // quinn's chunks go to the target as they are: no copy into a buffer of ours.
            let mut chunks = Vec::with_capacity(UPLINK_CHUNKS);
            loop {
                let n = match conn.read_chunks(id, &mut chunks, UPLINK_BYTES).await {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => {
                        aborted.set(true);
                        return Err(e);
                    }
                };
                activity.set(Instant::now());
                let sent = relay::send_parts(&dest, &chunks).await;
                chunks.clear();
                if !sent {
                    break;
                }
                meter.up(n).await;
            }
            let _ = runtime::shutdown_write(&dest.borrow());
            Ok(())
        };
        let down = async {
            // A large read goes to quinn as the buffer it was read into (quinn keeps it until
            // acknowledged); a small one is copied, so that it does not hold a whole buffer.
            let mut buf = SendBuffer::take(RELAY_BUFFER);
            let mut dest_r = relay::SharedRead(&dest);
            loop {
                let n = match dest_r.read(&mut buf).await {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                activity.set(Instant::now());
                let written = if n >= DOWNLINK_HAND_OVER {
                    let full = std::mem::replace(&mut buf, SendBuffer::take(RELAY_BUFFER));
                    conn.write_bytes(id, full.freeze(n)).await
                } else {
                    conn.write_all(id, &buf[..n]).await
                };
                if written.is_err() {
                    return Ok(());
                }
                meter.down(n).await;
            }
            conn.finish(id);
            finished.set(true);
            Ok(())
        };
        // An aborted upload stops the downlink at once (and the stream is reset below).
        let both = futures_lite::future::try_zip(up, down);
        until_idle(both, &activity, t.idle).await;
        if aborted.get() {
            let _ = runtime::reset_on_close(&dest.borrow());
        }
    };
    until_closed(ctx, ib, Some(&authed.registration.kill), relay).await;
    if !finished.get() {
        // Idle, kicked, closing or failed: the client learns the stream is over.
        conn.reset(id, H3_REQUEST_CANCELLED);
    }
}

/// The body of an HTTP/3 request whose stream continues with `head` (what was read past the
/// request's head): its DATA frames, read to the end of the stream when the request declares
/// a length (a request that does not is answered without waiting), at most
/// [`MAX_REQUEST_BODY`] bytes.
async fn request_body(
    conn: &Conn,
    id: StreamId,
    request: &http3::RequestHead,
    mut head: Vec<u8>,
    deadline: Instant,
) -> Vec<u8> {
    let declared = request
        .field("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST_BODY);
    let mut body = Vec::new();
    // Where the next frame starts: each frame is read once, however the reads split it.
    let mut at = 0;
    loop {
        // DATA frames are the body; anything else (trailers, unknown frames) is skipped.
        while let Progress::Done((kind, n)) = varint::decode(&head[at..]) {
            let Progress::Done((len, m)) = varint::decode(&head[at + n..]) else {
                break;
            };
            let start = at + n + m;
            let Some(end) = usize::try_from(len).ok().and_then(|l| start.checked_add(l)) else {
                break;
            };
            if end > head.len() {
                break;
            }
            if kind == http3::DATA && body.len() < MAX_REQUEST_BODY {
                body.extend_from_slice(&head[start..end]);
            }
            at = end;
        }
        if body.len() >= declared
            || head.len() > MAX_REQUEST_BODY + 64 * 1024
            || !conn.read_more(id, &mut head, deadline, 64 * 1024).await
        {
            body.truncate(MAX_REQUEST_BODY);
            return body;
        }
    }
}

/// Largest request body the reverse-proxy masquerade forwards.
const MAX_REQUEST_BODY: usize = 1 << 20;

/// The operator's site behind the reverse-proxy masquerade.
struct Site<'a> {
    address: std::net::SocketAddr,
    host: Option<&'a str>,
}

impl Site<'_> {
    /// Appends the site's answer to `request` as an HTTP/3 response; `502` when the site
    /// cannot be reached or answers something that is not HTTP, as a reverse proxy would.
    async fn answer(
        &self,
        ctx: &WorkerCtx,
        request: &http3::RequestHead,
        body: &[u8],
        out: &mut Vec<u8>,
    ) {
        match self.fetch(ctx, request, body).await {
            Ok(r) => {
                let fields: Vec<(&[u8], &[u8])> = r
                    .fields
                    .iter()
                    .map(|(k, v)| (k.as_bytes(), v.as_slice()))
                    .collect();
                if request.method == "HEAD" || r.status == 304 {
                    // No body, and the site's own content-length: what a GET would have.
                    push_http3_head(r.status, &fields, r.length, out);
                } else {
                    push_http3_response(r.status, &fields, &r.body, out);
                }
            }
            Err(e) => {
                tracing::debug!(site = %self.address, "masquerade site: {e}");
                push_http3_response(502, &[], b"", out);
            }
        }
    }

    async fn fetch(
        &self,
        ctx: &WorkerCtx,
        request: &http3::RequestHead,
        body: &[u8],
    ) -> io::Result<masquerade::Response> {
        let host = self
            .host
            .or(request.authority.as_deref())
            .unwrap_or("localhost");
        let mut wire = Vec::new();
        masquerade::encode_request(
            &request.method,
            request.path.as_deref().unwrap_or("/"),
            host,
            &request.fields,
            body,
            &mut wire,
        )
        .map_err(io::Error::other)?;
        let t = &ctx.shared.timeouts;
        // The operator's own site: the destination rules do not apply.
        let mut site = runtime::TcpStream::connect_timeout(self.address, t.connect).await?;
        site.write_all(&wire).await?;
        site.flush().await?;
        let mut got = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let head_request = request.method == "HEAD";
        loop {
            let n = runtime::timeout(t.handshake, site.read(&mut buf))
                .await
                .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))??;
            got.extend_from_slice(&buf[..n]);
            match masquerade::parse_response(&got, n == 0, head_request) {
                Ok(Progress::Done(r)) => return Ok(r),
                Ok(Progress::NeedMore) if n > 0 => continue,
                Ok(Progress::NeedMore) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{clip, MAX_TCP_REQUEST};
    use proto::hysteria2::tcp::{self, TCP_REQUEST};
    use proto::hysteria2::{MAX_ADDRESS_LEN, MAX_PADDING_LEN};
    use proto::Progress;

    /// `v` as an 8-byte QUIC varint, the widest a client may use for any value.
    fn widest(v: u64) -> [u8; 8] {
        (v | 0xc000_0000_0000_0000).to_be_bytes()
    }

    #[test]
    fn the_longest_valid_tcp_request_fits() {
        let host = "a".repeat(MAX_ADDRESS_LEN - ":443".len());
        let mut request = Vec::new();
        request.extend_from_slice(&widest(TCP_REQUEST));
        request.extend_from_slice(&widest(MAX_ADDRESS_LEN as u64));
        request.extend_from_slice(format!("{host}:443").as_bytes());
        request.extend_from_slice(&widest(MAX_PADDING_LEN as u64));
        request.resize(request.len() + MAX_PADDING_LEN, b'p');
        let Ok(Progress::Done(parsed)) = tcp::parse_request(&request) else {
            panic!("a valid request");
        };
        assert_eq!(parsed.consumed, request.len());
        assert!(request.len() <= MAX_TCP_REQUEST);
    }

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        // Byte 5 is inside the second "é" (bytes 4 and 5).
        assert_eq!(clip("abéé".to_owned(), 5), "abé");
        assert_eq!(clip("abéé".to_owned(), 6), "abéé");
        assert_eq!(clip("abc".to_owned(), 2048), "abc");
        assert_eq!(clip("ééé".to_owned(), 0), "");
    }
}
