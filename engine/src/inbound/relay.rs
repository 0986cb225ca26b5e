//! What every inbound's relay shares: counting and rate-limiting relayed bytes ([`Meter`]),
//! the per-connection idle timeout ([`until_idle`]), reads that survive a per-read idle
//! timer ([`read_active`]), the drain a failed handshake gets
//! ([`drain`]) and the plain byte relay of protocols without their own framing after the
//! header (VLESS, Trojan, fallbacks): [`pipe`] through a buffer, or [`tcp_pipe`], which
//! moves bulk transfers to `splice` when both ends are plain TCP sockets.

use std::cell::{Cell, RefCell, RefMut};
use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{InboundShared, WorkerCtx};
use crate::buffer::RelayBuffer;
use crate::outbound;
use crate::runtime::splice::{self, Pipe, PipePool};
use crate::runtime::{self, TcpStream, UdpSocket};
use crate::users::UserRecord;
use proto::TargetAddr;

/// Counts relayed bytes for a user and an inbound, and applies the user's rate limits.
pub(crate) struct Meter<'a> {
    pub(crate) ctx: &'a WorkerCtx,
    pub(crate) inbound: &'a InboundShared,
    pub(crate) user: &'a UserRecord,
}

impl Meter<'_> {
    pub(crate) async fn up(&self, n: usize) {
        let w = self.ctx.index;
        self.user.traffic.add_up(w, n as u64);
        self.inbound.traffic.add_up(w, n as u64);
        self.user.seen(self.ctx.now.get());
        if self.user.uplink.is_limited() {
            let wait = self.user.uplink.take(n);
            if !wait.is_zero() {
                runtime::sleep(wait).await;
            }
        }
    }

    /// For a receive loop that several users share (a UDP inbound's), which must not wait
    /// off one user's rate: whether `n` more bytes may go up now. A user over their rate has
    /// the packet dropped (policed). Count what is then sent with [`Meter::count_up`].
    pub(crate) fn admit_up(&self, n: usize) -> bool {
        self.user.uplink.try_take(n)
    }

    /// Counts `n` bytes sent up, without waiting (after [`Meter::admit_up`]).
    pub(crate) fn count_up(&self, n: usize) {
        let w = self.ctx.index;
        self.user.traffic.add_up(w, n as u64);
        self.inbound.traffic.add_up(w, n as u64);
        self.user.seen(self.ctx.now.get());
    }

    pub(crate) async fn down(&self, n: usize) {
        let wait = self.charge_down(n);
        if !wait.is_zero() {
            runtime::sleep(wait).await;
        }
    }

    /// Counts `n` bytes sent down and charges them to the user's downlink rate, without
    /// waiting: returns how long [`Meter::down`] would have waited. For bytes that go out
    /// after their sender stopped (the charge still slows the user's next sends).
    pub(crate) fn charge_down(&self, n: usize) -> std::time::Duration {
        let w = self.ctx.index;
        self.user.traffic.add_down(w, n as u64);
        self.inbound.traffic.add_down(w, n as u64);
        self.user.seen(self.ctx.now.get());
        if self.user.downlink.is_limited() {
            self.user.downlink.take(n)
        } else {
            std::time::Duration::ZERO
        }
    }
}

/// Which way bytes go through a [`pipe`], for its [`Meter`].
#[derive(Clone, Copy)]
pub(crate) enum Tally<'a> {
    /// Client to destination.
    Up(&'a Meter<'a>),
    /// Destination to client.
    Down(&'a Meter<'a>),
    /// Not a user's traffic (a fallback).
    Nothing,
}

impl Tally<'_> {
    pub(crate) async fn count(self, n: usize) {
        match self {
            Tally::Up(m) => m.up(n).await,
            Tally::Down(m) => m.down(n).await,
            Tally::Nothing => {}
        }
    }
}

/// A read that tolerates the idle timer firing while the other direction is busy.
pub(crate) async fn read_active<R: AsyncRead + Unpin>(
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

/// Runs a TCP relay until it ends or `idle` passes with no relayed byte in either direction
/// (`activity` is stamped by the relay halves); dropping the relay then closes both sockets.
/// One timer per connection that re-arms only when it fires, instead of a socket read timeout
/// that sets and cancels a timer around every read. Not an `async fn`, so that the relay's
/// future is stored once (see [`super::until_closed`]).
pub(crate) fn until_idle<'a, T: 'a>(
    relay: impl std::future::Future<Output = T> + 'a,
    activity: &'a Cell<Instant>,
    idle: Duration,
) -> impl std::future::Future<Output = ()> + 'a {
    futures_lite::future::or(runtime::Unit::new(relay, ()), idle_watchdog(activity, idle))
}

async fn idle_watchdog(activity: &Cell<Instant>, idle: Duration) {
    loop {
        let quiet = activity.get().elapsed();
        if quiet >= idle {
            return;
        }
        runtime::sleep(idle - quiet).await;
    }
}

/// What a failed handshake gets: read and discard until the client gives up or the handshake
/// deadline passes, then close. Whatever was wrong and however many bytes were sent, a prober
/// sees the same thing: silence, then a close at the same time.
pub(crate) async fn drain<R: AsyncRead + Unpin>(stream: &mut R, buf: &mut [u8], deadline: Instant) {
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match runtime::timeout(left, stream.read(buf)).await {
            Some(Ok(n)) if n > 0 => continue,
            _ => break,
        }
    }
}

/// A read of at least this many bytes from a client means a bulk upload: [`LowWater`] raises
/// the socket's low-water mark.
pub(crate) const BULK_READ: usize = 8 * 1024;

/// The receive low-water mark of a client socket during a bulk upload: the kernel then wakes
/// the relay once this many bytes are queued rather than on every segment the client sends.
pub(crate) const LOW_WATER: usize = 64 * 1024;

/// How long a read waits for [`LOW_WATER`] bytes before the mark drops back to one byte and
/// the read takes what has come: the most a bulk upload's last bytes are held.
pub(crate) const LOW_WATER_HOLD: Duration = Duration::from_micros(500);

/// Fewer wake-ups for a client's bulk upload. A client writes its protocol's chunks (a VMess
/// or TLS client 8-16 KiB at a time), and the kernel wakes a reader for each: one reactor
/// turn, one read and one write per chunk. After a read of [`BULK_READ`] bytes or more, the
/// client socket's `SO_RCVLOWAT` goes up to [`LOW_WATER`], so one wake-up brings several
/// chunks. A read that does not get them within [`LOW_WATER_HOLD`] lowers the mark back to
/// one byte, which wakes it at once with whatever is queued (or, with nothing queued, on the
/// next byte); the mark stays low until the next bulk read. Small exchanges (requests, key
/// strokes) never raise it and see no delay; a bulk upload's tail waits at most the hold.
pub(crate) struct LowWater {
    /// The client's TCP socket, open for as long as the relay that owns this runs.
    fd: std::os::fd::RawFd,
    raised: bool,
    /// One timer for the connection, moved for each wait.
    hold: Option<runtime::Timer>,
}

impl LowWater {
    /// For a client's TCP socket (its mark is the default one byte), under any transport.
    pub(crate) fn new(client: &TcpStream) -> LowWater {
        use std::os::fd::AsRawFd;
        LowWater {
            fd: client.as_raw_fd(),
            raised: false,
            hold: None,
        }
    }

    /// Awaits `read`, a read of the client socket; while the mark is raised, lowers it once
    /// the read has waited [`LOW_WATER_HOLD`].
    pub(crate) async fn read<T>(&mut self, read: impl Future<Output = T>) -> T {
        if !self.raised {
            return read.await;
        }
        let at = Instant::now() + LOW_WATER_HOLD;
        let hold = match &mut self.hold {
            Some(t) => {
                t.reset(at);
                t
            }
            None => self.hold.insert(runtime::Timer::new(at)),
        };
        let mut read = std::pin::pin!(read);
        let (fd, raised) = (self.fd, &mut self.raised);
        poll_fn(|cx| {
            if let std::task::Poll::Ready(v) = read.as_mut().poll(cx) {
                return std::task::Poll::Ready(v);
            }
            if *raised && Pin::new(&mut *hold).poll(cx).is_ready() {
                // The kernel wakes the read's readiness poll if bytes are queued.
                let _ = runtime::set_recv_lowat(fd, 1);
                *raised = false;
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// After a read of `n` bytes: a bulk read raises the mark.
    pub(crate) fn after_read(&mut self, n: usize) {
        if n >= BULK_READ && !self.raised {
            self.raised = runtime::set_recv_lowat(self.fd, LOW_WATER).is_ok();
        }
    }
}

/// Room a [`pipe`] that gathers leaves for each further read: a whole TLS record's plaintext.
pub(crate) const GATHER_ROOM: usize = 16 * 1024;

/// Copies `from` to `to` through `buf` until end of stream or an error, then closes `to`
/// (a half-close: the other direction goes on); stamps `activity` for [`until_idle`].
/// `prefix` goes out in front of the first bytes (or alone, at end of stream, if none came):
/// a protocol's response header. With `client` (`from` is the client, through TLS or
/// WebSocket), a read is followed by more reads for as long as they complete at once, and
/// everything goes out in one write: for a source that hands out one record at a time when
/// several have arrived; and a bulk upload raises the client socket's [`LowWater`] mark.
pub(crate) async fn pipe<R, W>(
    mut from: R,
    mut to: W,
    buf: &mut [u8],
    prefix: &[u8],
    activity: &Cell<Instant>,
    tally: Tally<'_>,
    mut client: Option<&mut LowWater>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut head = prefix.len();
    buf[..head].copy_from_slice(prefix);
    loop {
        let read = from.read(&mut buf[head..]);
        let read = match client.as_deref_mut() {
            Some(low) => low.read(read).await,
            None => read.await,
        };
        let mut n = match read {
            Ok(n) if n > 0 => n,
            _ => {
                if head > 0 {
                    let _ = to.write_all(&buf[..head]).await;
                }
                break;
            }
        };
        while client.is_some() && head + n + GATHER_ROOM <= buf.len() {
            match futures_lite::future::poll_once(from.read(&mut buf[head + n..])).await {
                Some(Ok(more)) if more > 0 => n += more,
                // Nothing more yet; an end or an error shows again on the next read.
                _ => break,
            }
        }
        if let Some(low) = client.as_deref_mut() {
            low.after_read(n);
        }
        activity.set(Instant::now());
        if to.write_all(&buf[..head + n]).await.is_err() || to.flush().await.is_err() {
            break;
        }
        head = 0;
        tally.count(n).await;
    }
    let _ = to.close().await;
}

/// A TCP socket that a relay's two directions share, borrowed for one call at a time (never
/// across a wait).
pub(crate) trait SharedSocket {
    fn socket(&self) -> RefMut<'_, TcpStream>;
}

impl SharedSocket for RefCell<TcpStream> {
    fn socket(&self) -> RefMut<'_, TcpStream> {
        self.borrow_mut()
    }
}

/// A read of at least this many bytes means a bulk transfer: the direction moves from its
/// buffer to `splice`. Interactive traffic (requests, small messages) stays on the buffer,
/// which costs fewer system calls per exchange than the splice pair.
pub(crate) const SPLICE_AFTER: usize = 32 * 1024;

/// Copies `from` to `to` until end of stream or an error, then half-closes `to`, like
/// [`pipe`], for two plain TCP sockets: through `buf` at first, then, once a single read
/// brings [`SPLICE_AFTER`] bytes or more, with `splice(2)` (see [`runtime::splice`]) so that
/// the bulk of a transfer never enters user space, and `buf` goes back to the pool. `prefix`
/// goes out in front of the first bytes (or alone at end of stream). The streams are shared
/// with the other direction, which uses the other half of each: borrows last one call, never
/// across a wait.
pub(crate) async fn tcp_pipe(
    from: &RefCell<TcpStream>,
    to: &RefCell<TcpStream>,
    mut buf: RelayBuffer,
    pipes: &PipePool,
    prefix: &[u8],
    activity: &Cell<Instant>,
    tally: Tally<'_>,
) {
    let mut head = prefix.len();
    buf[..head].copy_from_slice(prefix);
    loop {
        let n = match SharedRead(from).read(&mut buf[head..]).await {
            Ok(n) if n > 0 => n,
            _ => {
                if head > 0 {
                    write_all(to, &buf[..head]).await;
                }
                let _ = runtime::shutdown_write(&to.borrow());
                return;
            }
        };
        activity.set(Instant::now());
        if !write_all(to, &buf[..head + n]).await {
            let _ = runtime::shutdown_write(&to.borrow());
            return;
        }
        head = 0;
        tally.count(n).await;
        if n >= SPLICE_AFTER && splice_ready(from, to) {
            break;
        }
    }
    drop(buf);
    splice_pipe(from, to, pipes, activity, tally).await;
    let _ = runtime::shutdown_write(&to.borrow());
}

/// Waits until `socket` is (or recently was) readable: a non-blocking call may still find
/// nothing and must come back. The borrow lasts one poll.
async fn readable<S: SharedSocket + ?Sized>(socket: &S) -> io::Result<()> {
    poll_fn(|cx| socket.socket().poll_readable(cx)).await
}

/// The write side of [`readable`].
pub(crate) async fn writable<S: SharedSocket + ?Sized>(socket: &S) -> io::Result<()> {
    poll_fn(|cx| socket.socket().poll_writable(cx)).await
}

/// Writes all of `buf` to `to`; `false` on an error.
pub(crate) async fn write_all(to: &RefCell<TcpStream>, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match poll_fn(|cx| Pin::new(&mut *to.borrow_mut()).poll_write(cx, buf)).await {
            Ok(n) if n > 0 => buf = &buf[n..],
            _ => return false,
        }
    }
    true
}

/// Puts both sockets in non-blocking mode for [`splice_pipe`]; `false` if either refuses.
pub(crate) fn splice_ready<F, T>(from: &F, to: &T) -> bool
where
    F: SharedSocket + ?Sized,
    T: SharedSocket + ?Sized,
{
    splice::set_nonblocking(&from.socket()).is_ok() && splice::set_nonblocking(&to.socket()).is_ok()
}

/// The spliced part of [`tcp_pipe`] (and of XTLS Vision's direct copy): until end of stream
/// or an error. Both sockets must be non-blocking ([`splice_ready`]).
pub(crate) async fn splice_pipe<F, T>(
    from: &F,
    to: &T,
    pipes: &PipePool,
    activity: &Cell<Instant>,
    tally: Tally<'_>,
) where
    F: SharedSocket + ?Sized,
    T: SharedSocket + ?Sized,
{
    // Held only while bytes are in flight; dropped (closed), not given back, if it may still
    // hold some.
    let mut pipe: Option<Pipe> = None;
    loop {
        let held = match pipe.take() {
            Some(p) => p,
            None => match pipes.take() {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("cannot open a pipe for splicing: {e}");
                    return;
                }
            },
        };
        let spliced = splice::splice_in(&from.socket(), &held, splice::MAX_SPLICE);
        let n = match spliced {
            Ok(0) => {
                pipes.give(held);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing queued: the pipe is empty, give it back while waiting.
                pipes.give(held);
                if readable(from).await.is_err() {
                    return;
                }
                continue;
            }
            Err(_) => {
                pipes.give(held);
                return;
            }
        };
        activity.set(Instant::now());
        let mut left = n;
        while left > 0 {
            let spliced = splice::splice_out(&held, &to.socket(), left);
            match spliced {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if writable(to).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        pipe = Some(held);
        tally.count(n).await;
    }
}

/// Reads through a destination socket that a relay's two directions share: the uplink
/// writes with [`Batch::flush`], the downlink reads through this. Borrows last one call.
pub(crate) struct SharedRead<'a>(pub(crate) &'a RefCell<TcpStream>);

impl AsyncRead for SharedRead<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(cx, buf)
    }
}

/// Reads into the `slots` of `buf` in one system call (see [`runtime::try_recv_slots`]),
/// waiting until something arrives: the count, 0 at end of stream.
pub(crate) async fn read_slots(
    from: &RefCell<TcpStream>,
    buf: &mut [u8],
    slots: &[Range<usize>],
) -> io::Result<usize> {
    loop {
        let got = runtime::try_recv_slots(&from.borrow(), buf, slots);
        match got {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                readable(from).await?;
            }
            other => return other,
        }
    }
}

/// Most payloads one [`Batch`] holds.
const MAX_BATCH: usize = 16;

/// Payloads opened in place in a relay buffer (an AEAD stream's chunks), to go out to the
/// destination together: one `sendmsg` for all the chunks one read brought, where a write per
/// chunk would be a system call (and a wake-up of the receiver) each.
pub(crate) struct Batch {
    ranges: [Range<usize>; MAX_BATCH],
    len: usize,
    bytes: usize,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            ranges: Default::default(),
            len: 0,
            bytes: 0,
        }
    }

    /// Adds the payload at `range` of the buffer; `true` when the batch is now full.
    pub(crate) fn push(&mut self, range: Range<usize>) -> bool {
        if !range.is_empty() {
            self.bytes += range.len();
            self.ranges[self.len] = range;
            self.len += 1;
        }
        self.len == MAX_BATCH
    }

    /// Sends every payload, in order, from `buf` to `to` and counts them as `tally` says;
    /// empties the batch. `false` on an error.
    pub(crate) async fn flush(
        &mut self,
        to: &RefCell<TcpStream>,
        buf: &[u8],
        tally: Tally<'_>,
    ) -> bool {
        let mut parts: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        for (part, r) in parts.iter_mut().zip(&self.ranges[..self.len]) {
            *part = &buf[r.clone()];
        }
        if !send_parts(to, &parts[..self.len]).await {
            return false;
        }
        let bytes = self.bytes;
        (self.len, self.bytes) = (0, 0);
        tally.count(bytes).await;
        true
    }
}

/// Sends every one of `parts`, in order, to `to` with vectored sends (as many parts per
/// `sendmsg` as the kernel takes), waiting for room when the socket is full. `false` on an
/// error.
pub(crate) async fn send_parts<P: AsRef<[u8]>>(to: &RefCell<TcpStream>, parts: &[P]) -> bool {
    const PER_SEND: usize = 64;
    let (mut first, mut skip) = (0, 0);
    while first < parts.len() {
        let mut slices = [io::IoSlice::new(&[]); PER_SEND];
        let mut count = 0;
        for (i, part) in parts[first..].iter().take(PER_SEND).enumerate() {
            let from = if i == 0 { skip } else { 0 };
            slices[i] = io::IoSlice::new(&part.as_ref()[from..]);
            count += 1;
        }
        let sent = runtime::try_send_vectored(&to.borrow(), &slices[..count]);
        match sent {
            Ok(0) => return false,
            Ok(mut n) => {
                while n > 0 {
                    let left = parts[first].as_ref().len() - skip;
                    if n >= left {
                        n -= left;
                        first += 1;
                        skip = 0;
                    } else {
                        skip += n;
                        n = 0;
                    }
                }
                // Parts that were empty to begin with.
                while first < parts.len() && parts[first].as_ref().len() == skip {
                    first += 1;
                    skip = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if writable(to).await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Reads more of a stream behind `buf[start..end]`, first moving the unread bytes to the front
/// when there are none or the buffer is full; `false` at end of stream or on an error.
pub(crate) async fn refill<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    start: &mut usize,
    end: &mut usize,
    activity: &Cell<Instant>,
    idle: Duration,
) -> bool {
    if *start == *end || *end == buf.len() {
        buf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
    }
    match read_active(r, &mut buf[*end..], activity, idle).await {
        Ok(n) if n > 0 => {
            *end += n;
            activity.set(Instant::now());
            true
        }
        _ => false,
    }
}

/// Receives the next reply of a UDP session into `buf`: its length and source, or `None` once
/// the session has been idle for `ttl` (the socket's read timeout) or on an error.
pub(crate) async fn recv_reply(
    socket: &UdpSocket,
    buf: &mut [u8],
    activity: &Cell<Instant>,
    ttl: Duration,
) -> Option<(usize, SocketAddr)> {
    loop {
        match socket.recv_from(buf).await.map_err(io::Error::from) {
            Ok(r) => {
                activity.set(Instant::now());
                return Some(r);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut && activity.get().elapsed() < ttl => {
                continue
            }
            Err(_) => return None,
        }
    }
}

/// Connects to `user`'s TCP destination `target` (a client at `source` on inbound `ib`),
/// checked by the routing rules as they are now; the rules are held for the connect only,
/// not for the life of the relay that follows.
pub(crate) async fn connect_tcp(
    ctx: &WorkerCtx,
    ib: &InboundShared,
    user: &str,
    source: IpAddr,
    target: &TargetAddr,
) -> Result<TcpStream, outbound::OutboundError> {
    let rules = ctx.rules();
    let route = outbound::Route {
        rules: &rules,
        user,
        inbound: &ib.tag,
        network: crate::config::Network::Tcp,
        source,
        now: ctx.shared.rules_now(),
    };
    let resolver = &ctx.shared.resolver;
    outbound::connect_tcp(target, route, resolver, ctx.shared.timeouts.connect).await
}

/// Where a UDP packet for `target` goes: checked by the routing rules, resolved (a session
/// remembers its last resolved name in `resolved`), and v4-mapped when `outbound` is an IPv6
/// socket.
pub(crate) async fn udp_destination(
    ctx: &WorkerCtx,
    ib: &InboundShared,
    user: &str,
    outbound: &UdpSocket,
    resolved: &RefCell<Option<(TargetAddr, SocketAddr)>>,
    target: &TargetAddr,
    source: IpAddr,
) -> Result<SocketAddr, outbound::OutboundError> {
    let addr = udp_route(ctx, ib, user, resolved, target, source).await?;
    Ok(udp_address_for(addr, outbound))
}

/// Where a UDP packet for `target` goes, checked by the routing rules and resolved (a session
/// remembers its last resolved name in `resolved`), before any socket is chosen: a session
/// that opens its socket only for an allowed packet asks this first.
pub(crate) async fn udp_route(
    ctx: &WorkerCtx,
    ib: &InboundShared,
    user: &str,
    resolved: &RefCell<Option<(TargetAddr, SocketAddr)>>,
    target: &TargetAddr,
    source: IpAddr,
) -> Result<SocketAddr, outbound::OutboundError> {
    let route = outbound::Route {
        rules: &ctx.rules(),
        user,
        inbound: &ib.tag,
        network: crate::config::Network::Udp,
        source,
        now: ctx.shared.rules_now(),
    };
    Ok(match target {
        TargetAddr::Ip(a) => {
            route.check(None, *a)?;
            *a
        }
        TargetAddr::Domain(host, _) => {
            let cached = resolved
                .borrow()
                .as_ref()
                .filter(|(t, _)| t == target)
                .map(|(_, a)| *a);
            match cached {
                Some(a) => {
                    route.check(Some(host), a)?;
                    a
                }
                None => {
                    let a = outbound::resolve(target, route, &ctx.shared.resolver).await?[0];
                    *resolved.borrow_mut() = Some((target.clone(), a));
                    a
                }
            }
        }
    })
}

/// `addr` as `outbound` sends to it: the outbound socket is dual-stack IPv6 where possible,
/// so IPv4 is addressed as v4-mapped.
pub(crate) fn udp_address_for(addr: SocketAddr, outbound: &UdpSocket) -> SocketAddr {
    match (addr, outbound.local_addr()) {
        (SocketAddr::V4(v4), Ok(SocketAddr::V6(_))) => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => addr,
    }
}

pub(crate) fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::mpsc;

    use futures_lite::AsyncReadExt;

    use super::*;

    /// A bulk read raises the client socket's mark; a read that then gets a short tail (fewer
    /// bytes than the mark) still completes, with those bytes, and the mark is back at one.
    #[test]
    fn a_raised_low_water_mark_drops_for_a_short_tail() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (go, wait) = mpsc::channel::<()>();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&[1u8; BULK_READ]).unwrap();
            wait.recv().unwrap();
            s.write_all(b"tail").unwrap();
            // Held open until the other side is done: no end of stream wakes the read.
            wait.recv().ok();
        });
        glommio::LocalExecutor::default().run(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut low = LowWater::new(&s);
            let mut buf = vec![0u8; LOW_WATER];
            let mut got = 0;
            while got < BULK_READ {
                got += low.read(s.read(&mut buf[got..])).await.unwrap();
            }
            low.after_read(got);
            assert_eq!(runtime::recv_lowat(low.fd).unwrap(), LOW_WATER);
            go.send(()).unwrap();
            // Without the drop the read would wait for the end of the stream: a stall, not a
            // slow answer, so a generous deadline.
            let tail = runtime::timeout(Duration::from_secs(10), low.read(s.read(&mut buf)));
            let n = tail.await.expect("the tail is read").unwrap();
            assert_eq!(&buf[..n], b"tail");
            assert_eq!(runtime::recv_lowat(low.fd).unwrap(), 1);
            assert!(!low.raised);
            drop(go);
        });
        peer.join().unwrap();
    }

    /// Reads under this many bytes leave the mark alone.
    #[test]
    fn small_reads_do_not_raise_the_mark() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || listener.accept().unwrap());
        glommio::LocalExecutor::default().run(async move {
            let client = TcpStream::connect(addr).await.unwrap();
            let mut low = LowWater::new(&client);
            low.after_read(BULK_READ - 1);
            assert!(!low.raised);
            assert_eq!(runtime::recv_lowat(low.fd).unwrap(), 1);
        });
        drop(peer.join().unwrap());
    }
}
