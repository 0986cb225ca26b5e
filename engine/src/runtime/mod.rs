//! The runtime glue: the only module that names glommio, and (in [`mapped`]) the memory-mapped
//! counter storage and (in [`splice`]) the pipes and `splice(2)` of the plain-TCP relay.
//! Together with these, nothing else in the engine holds `unsafe` code.
//!
//! The engine runs one glommio executor per worker, each pinned to its own CPU
//! (`PoolPlacement::MaxSpread`), each driving its own io_uring rings. Nothing on the data path
//! crosses threads: a connection is accepted, relayed and closed on the executor whose
//! `SO_REUSEPORT` listener the kernel handed it to. Everything the rest of the engine needs from
//! the runtime (sockets, spawning, timers) is re-exported or wrapped here, so a
//! different backend (tokio-uring, say) would replace this file and nothing else.
//!
//! Listening sockets are created on the thread that starts the engine, before any executor
//! exists, so that bind errors are reported synchronously and a port-0 inbound gets one port
//! shared by every worker. Each worker then adopts its own file descriptors.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use glommio::net::{TcpListener, TcpStream, UdpSocket};
pub use glommio::sync::Semaphore;

pub mod mapped;
pub mod splice;
use socket2::{Domain, Protocol, Socket, Type};

/// Locked memory each executor registers with io_uring. The engine does no DMA file I/O, so a
/// small amount keeps many workers within a default `RLIMIT_MEMLOCK`.
const IO_MEMORY: usize = 1 << 20;

/// Runs `worker(index)` on `count` pinned executors and returns a join handle.
pub fn start_workers<F, Fut>(count: usize, worker: F) -> io::Result<Workers>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(count, None))
        .io_memory(IO_MEMORY)
        .on_all_shards(move || {
            let index = next.fetch_add(1, Ordering::Relaxed);
            worker(index)
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(Workers { handles })
}

/// The running executors.
pub struct Workers {
    handles: glommio::PoolThreadHandles<()>,
}

impl Workers {
    /// Waits for every executor to finish.
    pub fn join(self) {
        for r in self.handles.join_all() {
            if let Err(e) = r {
                tracing::error!("worker ended with an error: {e}");
            }
        }
    }
}

/// Spawns a task on the current executor and lets it run to completion on its own. It is
/// counted in [`tasks`] until its future is dropped (when it finishes, or with the executor).
pub fn spawn<F: Future<Output = ()> + 'static>(fut: F) {
    glommio::spawn_local(Unit::new(fut, TaskCount::new())).detach();
}

thread_local! {
    /// Tasks spawned with [`spawn`] on this thread whose futures still exist.
    static TASKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many tasks spawned with [`spawn`] on this thread have not ended. An executor whose
/// root future returns drops nothing still pending: a task left behind then keeps what it
/// holds (a listener, a socket) open for as long as the process lives, so a worker waits for
/// this to reach zero before it returns.
pub fn tasks() -> usize {
    TASKS.with(std::cell::Cell::get)
}

/// One entry in [`TASKS`], for as long as it lives.
struct TaskCount;

impl TaskCount {
    fn new() -> TaskCount {
        TASKS.with(|t| t.set(t.get() + 1));
        TaskCount
    }
}

impl Drop for TaskCount {
    fn drop(&mut self) {
        TASKS.with(|t| t.set(t.get() - 1));
    }
}

pin_project_lite::pin_project! {
    /// `fut` with its output thrown away, keeping `keep` alive until the future itself is
    /// dropped (a task's future is dropped as soon as it finishes). Unlike an `async` block
    /// around `fut.await`, it stores `fut` once.
    pub struct Unit<F, K> {
        #[pin]
        fut: F,
        keep: K,
    }
}

impl<F, K> Unit<F, K> {
    /// `fut`, keeping `keep` until it is dropped.
    pub fn new(fut: F, keep: K) -> Self {
        Unit { fut, keep }
    }
}

impl<F: Future, K> Future for Unit<F, K> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        self.project().fut.poll(cx).map(|_| ())
    }
}

/// Caps glibc's malloc at `arenas` arenas (its default is eight per CPU, one per thread that
/// meets contention), for a process that must stay small: each arena keeps memory freed in it
/// for reuse by that arena only. With the panel's dozen threads (tokio workers and blocking
/// threads, the SQLite worker, the engine's executors) two arenas peaked about 9 MB lower at
/// 10 000 users (docs/benchmarks.md, "Panel load"). Call before other threads start. Does
/// nothing on other C libraries.
pub fn limit_malloc_arenas(arenas: i32) {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only sets a tunable of glibc's allocator; `M_ARENA_MAX` with a
    // positive value is a documented use, and no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = arenas;
}

/// Sleeps on the current executor.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// A timer that is moved rather than replaced: for a loop whose deadline changes often (a
/// QUIC connection's driver), one registration with the reactor for its whole life. Ready
/// whenever its deadline has passed, however often it is polled.
pub struct Timer {
    inner: glommio::timer::Timer,
    at: std::time::Instant,
}

impl Timer {
    /// A timer for `at`.
    pub fn new(at: std::time::Instant) -> Timer {
        Timer {
            inner: glommio::timer::Timer::new(
                at.saturating_duration_since(std::time::Instant::now()),
            ),
            at,
        }
    }

    /// Moves the deadline to `at` (nothing to do when it is already there).
    pub fn reset(&mut self, at: std::time::Instant) {
        if at != self.at {
            self.inner
                .reset(at.saturating_duration_since(std::time::Instant::now()));
            self.at = at;
        }
    }
}

impl Future for Timer {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.inner).poll(cx).map(|_| ())
    }
}

/// Resolves with `None` if `fut` does not finish within `d`.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        sleep(d).await;
        None
    })
    .await
}

/// Creates a listening TCP socket with `SO_REUSEPORT`, so that every worker can bind one.
pub fn tcp_listener_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Creates a UDP socket with `SO_REUSEPORT` bound to `addr`.
pub fn udp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// An unconnected outbound UDP socket that can reach IPv4 and IPv6 destinations (dual-stack
/// where the host has IPv6, plain IPv4 otherwise).
pub fn outbound_udp_socket() -> io::Result<UdpSocket> {
    let fd: OwnedFd = match Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)) {
        Ok(s) => {
            s.set_only_v6(false)?;
            s.set_nonblocking(true)?;
            s.bind(&SocketAddr::from(([0u16; 8], 0)).into())?;
            s.into()
        }
        Err(_) => udp_socket(SocketAddr::from(([0, 0, 0, 0], 0)))?,
    };
    Ok(adopt_udp(fd))
}

/// Hands a listening socket to the current executor.
pub fn adopt_listener(fd: OwnedFd) -> TcpListener {
    // SAFETY: `fd` is an open, listening TCP socket that we own; ownership moves into the
    // listener, which closes it on drop.
    unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) }
}

/// Hands a UDP socket to the current executor.
pub fn adopt_udp(fd: OwnedFd) -> UdpSocket {
    // SAFETY: `fd` is an open, bound UDP socket that we own; ownership moves into the socket,
    // which closes it on drop.
    unsafe { UdpSocket::from_raw_fd(fd.into_raw_fd()) }
}

/// A second descriptor for `socket`'s UDP socket: the socket stays open, wherever the
/// duplicate goes, until both are closed (an XUDP session's socket parked beyond it).
pub fn duplicate_udp(socket: &UdpSocket) -> io::Result<OwnedFd> {
    borrow_fd(socket).try_clone_to_owned()
}

/// Sends `bufs` on `stream` at once, in one `sendmsg`, without waiting: `WouldBlock` when the
/// socket buffer is full (then wait through the stream's own `poll_write`). glommio's socket
/// has no vectored write; the WebSocket transport sends a frame header and its payload this
/// way in one system call.
pub fn try_send_vectored(stream: &TcpStream, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    socket2::SockRef::from(&borrow_fd(stream))
        .send_vectored_with_flags(bufs, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
}

/// Most slots one [`try_recv_slots`] fills.
pub const MAX_SLOTS: usize = 16;

/// Receives into the `slots` of `buf` (ordered, disjoint ranges; each is filled before the
/// next) in one `recvmsg`, without waiting: the count (0 at end of stream), or `WouldBlock`
/// when nothing is queued (then wait with `TcpStream::poll_readable`). For a codec that needs
/// room between payloads (an AEAD stream's chunk headers and tags): one system call for many
/// chunks. glommio's socket has no vectored read.
///
/// # Panics
/// With more than [`MAX_SLOTS`] slots, or slots out of order, overlapping or outside `buf`.
pub fn try_recv_slots(
    stream: &TcpStream,
    buf: &mut [u8],
    slots: &[std::ops::Range<usize>],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    assert!(slots.len() <= MAX_SLOTS, "{} slots", slots.len());
    let base = buf.as_mut_ptr();
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_SLOTS];
    let mut free_from = 0;
    for (v, r) in iov.iter_mut().zip(slots) {
        assert!(
            free_from <= r.start && r.start <= r.end && r.end <= buf.len(),
            "slot {r:?} out of order or outside the buffer"
        );
        free_from = r.end;
        // SAFETY: `r.start <= buf.len()` (checked), so the offset stays inside the buffer.
        v.iov_base = unsafe { base.add(r.start) }.cast();
        v.iov_len = r.len();
    }
    // SAFETY: a zeroed `msghdr` is valid (no address, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = slots.len() as _;
    // SAFETY: every iovec describes a disjoint range inside `buf` (checked above), which is
    // borrowed mutably for the call; the descriptor is `stream`'s, open while it is borrowed.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Closes the sending side of `stream` at once (a half-close: the peer reads end of stream).
pub fn shutdown_write(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(&borrow_fd(stream)).shutdown(std::net::Shutdown::Write)
}

/// Makes closing `stream` abort the connection: the peer gets a reset (`RST`), not a clean end
/// of stream, and unsent data is dropped (`SO_LINGER` with a zero timeout).
pub fn reset_on_close(stream: &TcpStream) -> io::Result<()> {
    socket2::SockRef::from(&borrow_fd(stream)).set_linger(Some(Duration::ZERO))
}

/// Accepts a connection, its descriptor close-on-exec. glommio takes a connection that is
/// already waiting with a plain `accept(2)`, which does not set `SOCK_CLOEXEC` (only its
/// io_uring path does); an inherited client socket would stay open in any child process the
/// embedding program starts, so closing a connection (a kicked user's, say) would not reach
/// the client until that child exits. A fork between the accept and the flag can still
/// inherit it; only an accept of our own (`accept4`) would close that window.
pub async fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    let stream = listener.accept().await.map_err(io::Error::from)?;
    socket2::SockRef::from(&borrow_fd(&stream)).set_cloexec(true)?;
    Ok(stream)
}

/// The descriptor of `stream`, borrowed for as long as `stream` is.
fn borrow_fd<S: std::os::fd::AsRawFd>(socket: &S) -> std::os::fd::BorrowedFd<'_> {
    use std::os::fd::BorrowedFd;
    // SAFETY: the descriptor belongs to `socket`, which outlives the borrow (the lifetime ties
    // them), so it stays open throughout.
    unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) }
}

/// Asks the kernel to coalesce datagrams queued on `socket` from one sender into one buffer
/// (Linux UDP generic receive offload, `UDP_GRO`); [`try_recv_gro`] splits them again. An error
/// means the kernel cannot, and receives stay one datagram each.
pub fn enable_gro(socket: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    set_int_option(socket.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Asks the kernel to report, with each datagram [`try_recv_gro`] receives on `socket`, the
/// local address it was sent to (`IP_PKTINFO`, and `IPV6_RECVPKTINFO` on an IPv6 socket): on a
/// socket bound to a wildcard address of a host with several addresses, replies must leave
/// from the address the peer sent to ([`try_send_msg`]'s `from`), or a peer that checks it
/// (a QUIC client does) drops them.
pub fn enable_destination_info(socket: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    // On an IPv6 socket the IPv6 option alone: it reports IPv4 datagrams of a dual-stack
    // socket too (as v4-mapped addresses); the IPv4 one as well would add a second message.
    if socket.local_addr()?.is_ipv6() {
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// Makes the kernel send every datagram of `socket` whole or not at all, as a QUIC stack that
/// discovers the path MTU itself needs (quinn-udp sets the same): `IP_PMTUDISC_PROBE` sets
/// the don't-fragment bit and ignores the kernel's own path MTU guess, so a datagram larger
/// than the interface fails at once (`EMSGSIZE`) instead of leaving in fragments, and a probe
/// too large for a router is lost, as QUIC expects. On an IPv6 socket the same for IPv6
/// (`IPV6_MTU_DISCOVER`) plus `IPV6_DONTFRAG`, without which Linux still fragments locally;
/// the IPv4 option covers v4-mapped peers there too.
pub fn forbid_fragmentation(socket: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let v4 = set_int_option(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_PROBE,
    );
    if socket.local_addr()?.is_ipv6() {
        set_int_option(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        )?;
        set_int_option(fd, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)?;
        // A v6-only socket may refuse the IPv4 option; it has no IPv4 peers to fragment for.
        return Ok(());
    }
    v4
}

/// `setsockopt` of an `int` option.
fn set_int_option(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a live `c_int` of the length given, the only memory of ours
    // the call reads. On a descriptor that is not (or no longer) a socket it fails.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the receive low-water mark (`SO_RCVLOWAT`) of the TCP socket `fd`: the socket reports
/// readable, and wakes its waiter, only once this many bytes are queued (or at end of stream
/// or on an error); a non-blocking read still returns whatever is there. Lowering it wakes a
/// waiter at once when enough is queued for the new mark (Linux checks on the change).
pub fn set_recv_lowat(fd: std::os::fd::RawFd, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, v)
}

/// The receive low-water mark of the TCP socket `fd` (see [`set_recv_lowat`]), for tests.
#[cfg(test)]
pub(crate) fn recv_lowat(fd: std::os::fd::RawFd) -> io::Result<usize> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and `len` holds `v`'s size; the kernel writes at most
    // that many bytes. On a descriptor that is not a socket the call fails.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(usize::try_from(v).unwrap_or(0))
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What one [`try_recv_gro`] brought: `len` bytes from `from`, datagrams of `stride` bytes each
/// (the last may be shorter; `stride == len` for a single datagram), sent to the local address
/// `to` when the socket reports it ([`enable_destination_info`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Coalesced {
    pub len: usize,
    pub from: SocketAddr,
    pub stride: usize,
    pub to: Option<IpAddr>,
}

/// Receives one datagram queued on `socket` into `buf`, without waiting: `WouldBlock` when
/// none is queued (then wait with `socket.readable()`). Unlike glommio's `recv_from`, which
/// leaves a receive in the ring, a reader dropped while it waits has taken nothing: a socket
/// that moves to another reader (an XUDP session's) loses no datagram on the way.
pub fn try_recv_from(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    let fd = borrow_fd(socket);
    let sock = socket2::SockRef::from(&fd);
    // SAFETY: initialised bytes are valid `MaybeUninit<u8>`, and the receive only writes
    // initialised bytes into them, so `buf` stays initialised.
    let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
    let (n, from) = sock.recv_from_with_flags(uninit, libc::MSG_DONTWAIT)?;
    let from = from
        .as_socket()
        .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
    Ok((n, from))
}

/// Receives what is queued on `socket` (several datagrams when the kernel coalesced them, see
/// [`enable_gro`]) into the spare capacity of `buf`, without waiting: `WouldBlock` when nothing
/// is queued. The bytes are appended to `buf`; keep at least 64 KiB spare so that no datagram is
/// cut.
pub fn try_recv_gro(socket: &UdpSocket, buf: &mut bytes::BytesMut) -> io::Result<Coalesced> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    let mut iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: spare.len(),
    };
    // SAFETY: an all-zero `sockaddr_storage` is a valid (unspecified) address.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    // Room for the GRO segment size (CMSG_SPACE(4) = 24), an `in6_pktinfo` (CMSG_SPACE(20) =
    // 40) and an `in_pktinfo` (CMSG_SPACE(12) = 32), aligned as a `cmsghdr`: more than the
    // options set here make the kernel send. A message that does not fit arrives cut short
    // (`MSG_CTRUNC`); each is read only when whole.
    let mut control = [0u64; 16];
    // SAFETY: a zeroed `msghdr` is valid (no address, no buffers, no control data yet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `msg` points at a local or at `buf`'s spare capacity, all alive
    // and exclusively borrowed for the call, with the lengths given; the descriptor is
    // `socket`'s, open while it is borrowed.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = n as usize;
    // SAFETY: the kernel wrote `len` bytes (at most the spare capacity it was given) at the
    // start of the spare capacity.
    unsafe { buf.set_len(buf.len() + len) };
    let mut stride = len;
    let mut to = None;
    // Whether the message's control data holds `T` whole (a cut one is shorter).
    fn holds<T>(cmsg: &libc::cmsghdr) -> bool {
        // SAFETY: `CMSG_LEN` only computes a length.
        cmsg.cmsg_len >= unsafe { libc::CMSG_LEN(std::mem::size_of::<T>() as u32) } as _
    }
    // SAFETY: `msg` is the header the kernel filled in; the CMSG macros walk its control
    // buffer within `msg_controllen`, and each header they return lies inside it. A message's
    // data is read only when its length says it holds the whole value (`holds`), which then
    // lies inside the buffer too (the kernel never reports more than it wrote).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let whole = match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_UDP, libc::UDP_GRO) => holds::<libc::c_int>(&*cmsg),
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => holds::<libc::in_pktinfo>(&*cmsg),
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => holds::<libc::in6_pktinfo>(&*cmsg),
                _ => false,
            };
            if !whole {
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
                continue;
            }
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_UDP, libc::UDP_GRO) => {
                    let size = libc::CMSG_DATA(cmsg).cast::<libc::c_int>().read_unaligned();
                    if size > 0 {
                        stride = size as usize;
                    }
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info = libc::CMSG_DATA(cmsg)
                        .cast::<libc::in_pktinfo>()
                        .read_unaligned();
                    let octets = info.ipi_addr.s_addr.to_ne_bytes();
                    to = Some(IpAddr::from(octets));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                    let info = libc::CMSG_DATA(cmsg)
                        .cast::<libc::in6_pktinfo>()
                        .read_unaligned();
                    to = Some(IpAddr::from(info.ipi6_addr.s6_addr));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes into `addr`.
    let from = unsafe { socket2::SockAddr::new(addr, msg.msg_namelen) }
        .as_socket()
        .ok_or_else(|| io::Error::other("a datagram from a non-IP address"))?;
    Ok(Coalesced {
        len,
        from,
        stride,
        to,
    })
}

/// Sends `buf` to `to` in one `sendmsg`, without waiting: `WouldBlock` when the socket
/// buffer is full (wait with `socket.writable()` and send again).
///
/// - `segment`: `buf` holds datagrams of that many bytes each (the last may be shorter),
///   segmented by the kernel (Linux UDP generic segmentation offload, `UDP_SEGMENT`); `None`
///   sends `buf` as one datagram. An error other than `WouldBlock` may mean that the kernel
///   or the route cannot segment: send one datagram at a time then.
/// - `from`: the local address to send from (`IP_PKTINFO` / `IPV6_PKTINFO`), for a socket
///   bound to a wildcard address whose peer expects replies from the address it sent to (see
///   [`enable_destination_info`]); `None` lets the kernel choose.
///
/// glommio's `send_to` is an io_uring operation awaited to completion; a QUIC sender writing
/// packet after packet would otherwise wait a round trip through the ring for each.
pub fn try_send_msg(
    socket: &UdpSocket,
    buf: &[u8],
    to: SocketAddr,
    segment: Option<u16>,
    from: Option<IpAddr>,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // Room for the segment size (CMSG_SPACE(2) = 24) and an `in6_pktinfo` (CMSG_SPACE(20) =
    // 40), aligned as a `cmsghdr`.
    let mut control = [0u64; 8];
    let addr = socket2::SockAddr::from(to);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed `msghdr` is valid (no address, no buffers, no control data yet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let mut used = 0;
    // SAFETY: `msg_control` points at `control`, whose length `msg_controllen` gives; the CMSG
    // macros return headers inside it (`CMSG_NXTHDR` returns null past its end, checked), and
    // each value written is at most what the header's `CMSG_LEN` announces, which the two
    // `CMSG_SPACE` sizes above leave room for.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        if let Some(segment) = segment {
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
            libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(segment);
            used += libc::CMSG_SPACE(2) as usize;
            // `CMSG_NXTHDR` reads the next header's length, so it must see the full
            // buffer (zeroed) rather than just what is used.
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        if let (Some(from), false) = (from, cmsg.is_null()) {
            match (from.to_canonical(), to.ip().to_canonical()) {
                (IpAddr::V4(from), IpAddr::V4(_)) => {
                    let info = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr {
                            s_addr: u32::from_ne_bytes(from.octets()),
                        },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    let len = std::mem::size_of::<libc::in_pktinfo>() as u32;
                    (*cmsg).cmsg_level = libc::IPPROTO_IP;
                    (*cmsg).cmsg_type = libc::IP_PKTINFO;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(len) as _;
                    libc::CMSG_DATA(cmsg)
                        .cast::<libc::in_pktinfo>()
                        .write_unaligned(info);
                    used += libc::CMSG_SPACE(len) as usize;
                }
                (IpAddr::V6(from), IpAddr::V6(_)) => {
                    let info = libc::in6_pktinfo {
                        ipi6_addr: libc::in6_addr {
                            s6_addr: from.octets(),
                        },
                        ipi6_ifindex: 0,
                    };
                    let len = std::mem::size_of::<libc::in6_pktinfo>() as u32;
                    (*cmsg).cmsg_level = libc::IPPROTO_IPV6;
                    (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(len) as _;
                    libc::CMSG_DATA(cmsg)
                        .cast::<libc::in6_pktinfo>()
                        .write_unaligned(info);
                    used += libc::CMSG_SPACE(len) as usize;
                }
                // A local address of the other family than the peer's cannot be its source.
                _ => {}
            }
        }
    }
    if used == 0 {
        msg.msg_control = std::ptr::null_mut();
    }
    msg.msg_controllen = used as _;
    // SAFETY: every pointer in `msg` points at a local or at `buf`, alive for the call, with
    // the lengths given; the kernel only reads them. The descriptor is `socket`'s, open while
    // it is borrowed.
    let n = unsafe {
        libc::sendmsg(
            socket.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// A wake-up flag for one task on one executor: [`Notify::notify`] sets it and wakes the task
/// waiting in [`Notify::notified`], which clears it. A notification sent while nobody waits is
/// kept for the next wait, so none is lost between a check and the wait.
#[derive(Default)]
pub struct Notify {
    set: std::cell::Cell<bool>,
    waker: std::cell::RefCell<Option<std::task::Waker>>,
}

impl Notify {
    /// Sets the flag and wakes the waiting task, if any.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once the flag is set (at once if it already is), clearing it.
    pub async fn notified(&self) {
        std::future::poll_fn(|cx| {
            if self.set.replace(false) {
                std::task::Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// A one-shot, cross-thread broadcast: once fired, every present and future waiter wakes.
#[derive(Clone, Default)]
pub struct Signal {
    inner: Arc<SignalInner>,
}

#[derive(Default)]
struct SignalInner {
    fired: AtomicBool,
    event: event_listener::Event,
}

impl Signal {
    /// A signal not yet fired.
    pub fn new() -> Signal {
        Signal::default()
    }

    /// Fires the signal (idempotent).
    pub fn fire(&self) {
        self.inner.fired.store(true, Ordering::SeqCst);
        self.inner.event.notify(usize::MAX);
    }

    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// Resolves once the signal fires.
    pub async fn wait(&self) {
        loop {
            if self.is_fired() {
                return;
            }
            let listener = self.inner.event.listen();
            if self.is_fired() {
                return;
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams sent in one segmented `sendmsg` come out of [`try_recv_gro`] as the same
    /// datagrams, with the same boundaries, whether or not the kernel coalesced them.
    #[test]
    fn segmented_datagrams_come_back_with_their_boundaries() {
        glommio::LocalExecutor::default().run(async {
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            enable_gro(&rx).unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = rx.local_addr().unwrap();
            // Ten full datagrams of 1200 bytes and a short last one, each byte naming its
            // datagram and position.
            let sent: Vec<Vec<u8>> = (0..11u8)
                .map(|i| {
                    let len = if i == 10 { 300 } else { 1200 };
                    (0..len)
                        .map(|j| i.wrapping_mul(31).wrapping_add(j as u8))
                        .collect()
                })
                .collect();
            try_send_msg(&tx, &sent.concat(), to, Some(1200), None).unwrap();
            let mut got = Vec::new();
            let mut receives = 0;
            let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
            while got.len() < sent.len() {
                let c = match try_recv_gro(&rx, &mut buf) {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        rx.readable().await.unwrap();
                        continue;
                    }
                    Err(e) => panic!("receive: {e}"),
                };
                receives += 1;
                assert_eq!(c.from, tx.local_addr().unwrap());
                let mut data = buf.split_to(c.len);
                while !data.is_empty() {
                    got.push(data.split_to(c.stride.min(data.len())).to_vec());
                }
                buf.reserve(64 * 1024);
            }
            assert_eq!(got, sent);
            // On loopback, Linux hands a segmented send to a GRO socket in one piece.
            assert!(
                receives < sent.len(),
                "{receives} receives for {} datagrams",
                sent.len()
            );
        });
    }

    /// A socket on a wildcard address learns which local address each datagram came to, and a
    /// reply sent from it leaves from that address, not from the one the route would pick;
    /// on an IPv6 wildcard (dual-stack) for IPv4 clients too.
    #[test]
    fn replies_leave_from_the_address_a_datagram_came_to() {
        for wildcard in ["0.0.0.0:0", "[::]:0"] {
            glommio::LocalExecutor::default().run(async {
                let server = UdpSocket::bind(wildcard).unwrap();
                enable_destination_info(&server).unwrap();
                let port = server.local_addr().unwrap().port();
                let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let target: IpAddr = [127, 0, 0, 3].into();
                client.send_to(b"hello", (target, port)).unwrap();
                let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
                let c = loop {
                    match try_recv_gro(&server, &mut buf) {
                        Ok(c) => break c,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            server.readable().await.unwrap()
                        }
                        Err(e) => panic!("receive: {e}"),
                    }
                };
                let to = c.to.map(|a| a.to_canonical());
                assert_eq!(
                    (&buf[..c.len], to),
                    (&b"hello"[..], Some(target)),
                    "{wildcard}"
                );
                try_send_msg(&server, b"reply", c.from, None, c.to).unwrap();
                let mut back = [0u8; 16];
                let (n, from) = client.recv_from(&mut back).unwrap();
                assert_eq!((&back[..n], from), (&b"reply"[..], (target, port).into()));
                // Without a source the kernel picks the route's own.
                try_send_msg(&server, b"again", c.from, None, None).unwrap();
                let (_, from) = client.recv_from(&mut back).unwrap();
                assert_eq!(from.ip(), IpAddr::from([127, 0, 0, 1]), "{wildcard}");
            });
        }
    }
}

/// Timers that fire while tasks run (`vendor/glommio/PATCHES.md`, patch 10): an executor that
/// lost such a wake-up slept with a runnable task, until unrelated I/O came.
#[cfg(test)]
mod timer_wakeups {
    use std::sync::mpsc;
    use std::time::Duration;

    use futures_lite::AsyncReadExt;

    /// Reports progress every 1000 rounds; fails when none comes for ten seconds.
    fn expect_progress(rx: mpsc::Receiver<u32>, last: u32) {
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(i) if i == last => return,
                Ok(_) => {}
                Err(e) => panic!("the executor stopped making progress: {e}"),
            }
        }
    }

    #[test]
    fn short_sleeps_between_reads_all_wake() {
        const ROUNDS: u32 = 100_000;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A writer that keeps the socket readable, so every read completes at once.
        std::thread::spawn(move || {
            use std::io::Write;
            let (mut s, _) = listener.accept().unwrap();
            let chunk = vec![7u8; 16384];
            while s.write_all(&chunk).is_ok() {}
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            glommio::LocalExecutor::default().run(async {
                let mut s = glommio::net::TcpStream::connect(addr).await.unwrap();
                let mut buf = vec![0u8; 128 * 1024];
                for i in 1..=ROUNDS {
                    assert!(s.read(&mut buf).await.unwrap() > 0);
                    // 0-39 µs: short enough that the timer often fires while tasks run.
                    super::sleep(Duration::from_micros(u64::from(i % 40))).await;
                    if i % 1000 == 0 {
                        tx.send(i).unwrap();
                    }
                }
            })
        });
        expect_progress(rx, ROUNDS);
    }

    /// Wake-ups from other threads (a control message, the stop signal) reach an executor
    /// whether it is asleep, about to sleep or running: for the first half of the rounds
    /// while timers fire around them, for the second half with no timer at all, so that a
    /// lost wake-up leaves the executor asleep for good (a timer would cover it up).
    #[test]
    fn wakes_from_other_threads_all_arrive() {
        const ROUNDS: u32 = 50_000;
        let (to_exec, from_main) = flume::bounded::<u32>(1);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            glommio::LocalExecutor::default().run(async move {
                // Timers that fire now and then, as the engine's ticker and idle checks do.
                let ticker = glommio::spawn_local(async {
                    for i in 0u64.. {
                        super::sleep(Duration::from_micros(i % 300)).await;
                    }
                });
                let mut ticker = Some(ticker);
                while let Ok(i) = from_main.recv_async().await {
                    if i == ROUNDS / 2 + 1 {
                        // Dropping the task cancels it and its timer.
                        ticker.take();
                    }
                    tx.send(i).unwrap();
                }
            })
        });
        for i in 1..=ROUNDS {
            to_exec.send(i).unwrap();
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(got) => assert_eq!(got, i),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("round {i}: the executor missed a wake-up")
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("round {i}: the executor's thread ended")
                }
            }
            // 0-63 µs between rounds: the next message finds the executor in every state.
            let until = std::time::Instant::now() + Duration::from_micros(u64::from(i % 64));
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
}
