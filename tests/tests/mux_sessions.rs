//! Mux.Cool sessions that end while the client does not read, and UDP over VMess, with clients
//! of our own (`proto`'s codecs): an ended session frees its socket, task and buffer at once
//! even when the downlink is blocked, and its XUDP GlobalID moves without waiting; an End with
//! the error bit closes a TCP session both ways; a UDP session that gets no socket is ended; a
//! VMess UDP reply too large for a chunk is dropped, never cut; the rest of a reply an ended
//! session leaves is counted.
//!
//! The tests take turns (`serial`): they count the process's open descriptors or use them up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use e2e::*;
use proto::mux::{Network, Status, OPTION_ERROR};
use proto::TargetAddr;
use serde_json::json;

const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";

fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Descriptors this process (the engine's included) has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn vless_engine() -> (engine::Handle, SocketAddr) {
    engine_with_inbound(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        false,
    )
}

/// A loopback UDP server answering each datagram with the port it came from (2 bytes) and the
/// datagram itself; it counts its answers and keeps the last port.
struct PortEcho {
    addr: SocketAddr,
    answers: Arc<AtomicUsize>,
    last_port: Arc<AtomicUsize>,
}

impl PortEcho {
    fn start() -> PortEcho {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let answers = Arc::new(AtomicUsize::new(0));
        let last_port = Arc::new(AtomicUsize::new(0));
        let (a, p) = (Arc::clone(&answers), Arc::clone(&last_port));
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf[2..]) {
                buf[..2].copy_from_slice(&from.port().to_be_bytes());
                p.store(from.port().into(), Ordering::SeqCst);
                let _ = socket.send_to(&buf[..2 + n], from);
                a.fetch_add(1, Ordering::SeqCst);
            }
        });
        PortEcho {
            addr,
            answers,
            last_port,
        }
    }

    fn answers(&self) -> usize {
        self.answers.load(Ordering::SeqCst)
    }

    fn wait_answers(&self, at_least: usize) {
        let deadline = Instant::now() + RELAYED;
        while self.answers() < at_least {
            assert!(Instant::now() < deadline, "the UDP echo got nothing");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Sends 32 KiB packets on UDP session `session` (open, to the echo) until the engine's
/// downlink to this client, which does not read, stands still: user `u`'s downlink
/// counter stops moving while the echo keeps answering.
fn block_downlink(c: &mut MuxConn, handle: &engine::Handle, session: u16) {
    let packet = vec![7u8; 32 * 1024];
    let mut last = 0;
    for _ in 0..500 {
        for _ in 0..8 {
            c.keep(session, &packet);
        }
        thread::sleep(Duration::from_millis(100));
        let down = user_traffic(handle, "u").downlink;
        if down > 0 && down == last {
            // A few more, so that the session has replies waiting to go down.
            for _ in 0..4 {
                c.keep(session, &packet);
            }
            return;
        }
        last = down;
    }
    panic!("the downlink never filled up");
}

/// A test's start: its turn, an engine with a VLESS inbound, a UDP echo, and a Mux.Cool
/// connection to the engine (`small_window`: see [`MuxConn::connect`]) with UDP session 1
/// open to the echo and `first` sent on it.
fn udp_start(
    small_window: bool,
    first: &[u8],
) -> (MutexGuard<'static, ()>, engine::Handle, PortEcho, MuxConn) {
    let turn = serial();
    let (handle, server) = vless_engine();
    let echo = PortEcho::start();
    let mut c = MuxConn::connect(server, UUID, small_window);
    c.open(1, Network::Udp, echo.addr, None, first);
    (turn, handle, echo, c)
}

/// A client that stops reading and then opens, uses and ends UDP session after UDP session:
/// each ended session's socket, task and buffer go at once (they used to wait for the writer
/// lock, held by the session whose frame the client does not take, for as long as the
/// connection lived, no longer counted against the session limit), so the engine's open
/// descriptors stay where they were.
#[test]
fn ended_udp_sessions_free_their_sockets_while_the_client_does_not_read() {
    const CYCLES: u16 = 300;
    let (_turn, handle, echo, mut c) = udp_start(true, b"first");
    block_downlink(&mut c, &handle, 1);
    let before = open_fds();
    for i in 0..CYCLES {
        let id = 2 + i;
        let answered = echo.answers();
        c.open(id, Network::Udp, echo.addr, None, b"query");
        // The reply reaches the session, which then waits to send it down.
        echo.wait_answers(answered + 1);
        thread::sleep(Duration::from_millis(5));
        c.end(id, false);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = open_fds();
        if now <= before + 16 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} descriptors more after {CYCLES} ended sessions",
            now - before
        );
        thread::sleep(Duration::from_millis(50));
    }
    drop(c);
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

/// A session whose GlobalID is claimed from another connection gives its socket up at once,
/// even while it is stuck sending down to a client that does not read (the claim used to wait
/// its 2 s out and get a fresh socket: another public port). Its frame under way is finished
/// without it.
#[test]
fn a_global_id_moves_from_a_session_stuck_on_a_blocked_downlink() {
    let _turn = serial();
    let (handle, server) = vless_engine();
    let echo = PortEcho::start();
    let g = Some(*b"stuck-gl");
    let mut a = MuxConn::connect(server, UUID, true);
    a.open(1, Network::Udp, echo.addr, g, &[7u8; 32 * 1024]);
    block_downlink(&mut a, &handle, 1);
    let port = echo.last_port.load(Ordering::SeqCst) as u16;

    let mut b = MuxConn::connect(server, UUID, false);
    b.open(5, Network::Udp, echo.addr, g, b"again");
    let (session, status, _, data) = b.next_frame();
    assert_eq!((session, status), (5, Status::Keep));
    assert_eq!(
        u16::from_be_bytes([data[0], data[1]]),
        port,
        "the socket moved with its GlobalID"
    );
    // The old connection's stream is whole: its client, reading now, finds every reply that
    // went down complete, then the session's End.
    loop {
        let (session, status, _, data) = a.next_frame();
        assert_eq!(session, 1);
        if status == Status::End {
            break;
        }
        assert_eq!(data.len(), 2 + 32 * 1024, "a whole reply");
    }
    drop((a, b));
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

/// Every byte of data that comes down is counted, once: also the rest of a reply a session was
/// sending when the client ended it, which goes out after the session (it used to go down
/// uncounted).
#[test]
fn the_rest_of_a_reply_sent_after_its_session_ended_is_counted() {
    let (_turn, handle, echo, mut c) = udp_start(true, b"first");
    block_downlink(&mut c, &handle, 1);
    c.end(1, false);
    // Session 2's reply comes down after whatever session 1 left on the way.
    c.open(2, Network::Udp, echo.addr, None, b"last");
    let mut received = 0u64;
    loop {
        let (session, status, _, data) = c.next_frame();
        received += data.len() as u64;
        if (session, status) == (2, Status::Keep) {
            break;
        }
    }
    let deadline = Instant::now() + RELAYED;
    loop {
        let counted = user_traffic(&handle, "u").downlink;
        if counted == received {
            break;
        }
        assert!(
            counted < received && Instant::now() < deadline,
            "{counted} bytes counted down, {received} received"
        );
        thread::sleep(Duration::from_millis(10));
    }
    drop(c);
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

/// A TCP server that reads one connection to its end, then writes `late` and tells.
fn talker() -> (SocketAddr, std::sync::mpsc::Receiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = s.write_all(b"late");
        let _ = tx.send(());
        thread::sleep(Duration::from_secs(1));
    });
    (addr, rx)
}

/// End with the error bit closes a TCP session both ways, as Xray does: what its destination
/// sends after it never comes down, not even an End. A plain End only half-closes: the
/// destination's answer still comes, then End.
#[test]
fn an_errored_end_closes_a_tcp_session_both_ways() {
    let _turn = serial();
    let (handle, server) = vless_engine();
    let (errored, errored_done) = talker();
    let (plain, plain_done) = talker();
    let echo = tcp_echo();
    let mut c = MuxConn::connect(server, UUID, false);
    c.open(1, Network::Tcp, errored, None, b"hi");
    c.open(2, Network::Tcp, plain, None, b"hi");
    // Both connected: each session answers a probe through an echo session behind it.
    c.open(3, Network::Tcp, echo, None, b"connected?");
    assert_eq!(c.until(3).last().unwrap().3, b"connected?");
    c.end(1, true);
    c.end(2, false);
    for done in [&errored_done, &plain_done] {
        done.recv_timeout(RELAYED)
            .expect("the destination saw the end");
    }
    let frames = c.until(2);
    let (_, status, _, data) = frames.last().unwrap();
    assert_eq!((*status, data.as_slice()), (Status::Keep, &b"late"[..]));
    let (_, status, _, _) = c.next_frame();
    assert_eq!(status, Status::End, "then the plain session ends");
    // Time for anything session 1 would still send, then a probe: nothing came for session 1.
    thread::sleep(SILENT);
    c.open(4, Network::Tcp, echo, None, b"probe");
    let mut seen = frames;
    seen.extend(c.until(4));
    let for_errored: Vec<_> = seen.iter().filter(|f| f.0 == 1).collect();
    assert!(
        for_errored.is_empty(),
        "frames for the session ended with an error: {for_errored:?}"
    );
    drop(c);
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

/// Every descriptor this process may open, used up (under a lowered soft limit, so that it
/// takes few) until dropped, which gives them back and the limit as it was, also when a check
/// fails in between.
struct NoDescriptorsLeft {
    held: Vec<std::fs::File>,
    soft: u64,
}

impl NoDescriptorsLeft {
    fn new() -> NoDescriptorsLeft {
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("a descriptor limit");
        set_soft_fd_limit(open_fds() as u64 + 64);
        let mut all = NoDescriptorsLeft {
            held: Vec::new(),
            soft,
        };
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => all.held.push(f),
                Err(e) if e.raw_os_error() == Some(24) => return all, // EMFILE
                Err(e) => panic!("{e}"),
            }
            assert!(all.held.len() < 10_000, "the limit did not hold");
        }
    }
}

impl Drop for NoDescriptorsLeft {
    fn drop(&mut self) {
        self.held.clear();
        set_soft_fd_limit(self.soft);
    }
}

fn set_soft_fd_limit(soft: u64) {
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("a descriptor limit");
    rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard).expect("the soft limit set");
}

/// A UDP session whose socket cannot be opened (no descriptor left) gets End with the error
/// bit at once, instead of nothing until the client's own timeout; the connection goes on.
#[test]
fn a_udp_session_without_a_socket_is_ended() {
    let (_turn, handle, echo, mut c) = udp_start(false, b"works");
    assert_eq!(c.until(1).last().unwrap().1, Status::Keep);

    let none_left = NoDescriptorsLeft::new();
    c.open(2, Network::Udp, echo.addr, None, b"no socket");
    let (session, status, options, _) = c.next_frame();
    drop(none_left);
    assert_eq!((session, status), (2, Status::End));
    assert_ne!(options & OPTION_ERROR, 0, "with the error bit");

    c.open(3, Network::Udp, echo.addr, None, b"again");
    assert_eq!(c.until(3).last().unwrap().1, Status::Keep);
    drop(c);
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

/// A loopback UDP server answering `fit` with 12 KiB and `big` with 30 KiB and then `after`.
fn sizes_echo() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            match &buf[..n] {
                b"fit" => drop(socket.send_to(&pattern(12 * 1024), from)),
                b"big" => {
                    let _ = socket.send_to(&pattern(30 * 1024), from);
                    let _ = socket.send_to(b"after", from);
                }
                _ => {}
            }
        }
    });
    addr
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// UDP over VMess, one chunk per datagram: a reply that fits a chunk comes whole; one larger
/// than a chunk holds is dropped (as v2ray and Xray drop it), not cut to the chunk's size and
/// passed on corrupt; the next reply comes as usual.
#[test]
fn vmess_udp_replies_too_large_for_a_chunk_are_dropped_whole() {
    use proto::vmess::{option, Opened, SEAL_TAILROOM};
    let _turn = serial();
    let (handle, server) = engine_with_inbound(
        "vmess",
        json!({"users": [{"name": "u", "id": UUID}]}),
        false,
    );
    let echo = sizes_echo();
    let command = proto::vless::Command::Udp(TargetAddr::Ip(echo));
    let (header, mut sealer, mut opener) = vmess_request(
        UUID,
        &command,
        option::CHUNK_STREAM | option::CHUNK_MASKING | option::GLOBAL_PADDING,
    );
    let mut c = TcpStream::connect(server).unwrap();
    c.set_read_timeout(Some(RELAYED)).unwrap();
    c.write_all(&header).unwrap();
    let mut packet = |data: &[u8], c: &mut TcpStream| {
        let head = sealer.prefix_len();
        let mut chunk = vec![0u8; head + data.len() + SEAL_TAILROOM];
        chunk[head..head + data.len()].copy_from_slice(data);
        let frame = sealer.seal(&mut chunk, head..head + data.len());
        c.write_all(&chunk[frame]).unwrap();
    };
    let mut buf = vec![0u8; 256 * 1024];
    let (mut start, mut end) = (0, 0);
    let mut next_packet = |c: &mut TcpStream| loop {
        match opener.open(&mut buf[start..end]) {
            Ok(Opened::Chunk { payload, consumed }) => {
                let p = buf[start + payload.start..start + payload.end].to_vec();
                start += consumed;
                return p;
            }
            Ok(Opened::NeedMore) => read_more(c, &mut buf, &mut start, &mut end),
            other => panic!("{other:?}"),
        }
    };
    packet(b"fit", &mut c);
    assert_eq!(next_packet(&mut c), pattern(12 * 1024), "a reply that fits");
    packet(b"big", &mut c);
    let got = next_packet(&mut c);
    assert_eq!(
        got.len(),
        5,
        "the 30 KiB reply went out as {} bytes",
        got.len()
    );
    assert_eq!(got, b"after");
    drop(c);
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}
