//! Harness for end-to-end and interop tests: peer binaries, loopback echo servers, a SOCKS5
//! client, and byte-exact bulk transfers.
//!
//! Peers are looked up in `$MARZNESHIN_PEERS_DIR/bin`, then `~/.cache/marzneshin/peers/bin`,
//! then `PATH`. A missing peer fails the test with the name of what to install: the interop
//! suite never skips silently.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rand::{RngCore, SeedableRng};

mod clients;
pub use clients::{vless_mux_request, vmess_request, MuxConn, MuxFrame};

/// Finds a peer binary or panics with instructions.
pub fn peer(name: &str) -> PathBuf {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("MARZNESHIN_PEERS_DIR") {
        dirs.push(PathBuf::from(d).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cache/marzneshin/peers/bin"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "peer client `{name}` is not installed; run tests/run.sh (it installs every peer) \
         or see docs/testing.md"
    );
}

/// A child process killed when dropped.
pub struct ChildGuard {
    child: Child,
    name: String,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with its stdout and stderr captured to a temporary log file, shown if the
    /// process dies early.
    pub fn spawn(name: &str, cmd: &mut Command) -> ChildGuard {
        let log = temp_file(&format!("{name}.log"), "");
        let out = std::fs::File::create(&log).expect("create the child's log file");
        let err = out.try_clone().expect("clone the child's log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ChildGuard {
            child,
            name: name.to_owned(),
            log,
        }
    }

    /// Panics, with the end of the process's output, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early: {status}; {}", self.name, self.output());
        }
    }

    /// The end of the process's output so far, for a failure message.
    pub fn output(&self) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let tail = &log[log.len().saturating_sub(4096)..];
        format!(
            "{}'s output ({}):\n{}",
            self.name,
            self.log.display(),
            String::from_utf8_lossy(tail)
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback TCP and UDP port, for a child process to bind.
///
/// The port is drawn at random from below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), so that no outgoing connection and no `bind(0)` of a
/// concurrently running test can take it between this check and the child's own bind. Tests
/// run in processes of their own (nextest), so a port handed out is also claimed for the
/// life of this process with a lock on a file named after it: another test process drawing
/// the same port moves on, instead of both starting a child on it (one of the two then fails
/// to bind, and the other test's client talks to the wrong child).
pub fn free_port() -> u16 {
    let lowest_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = if lowest_ephemeral > 11_024 {
        (
            lowest_ephemeral.min(32768) - 20_000,
            lowest_ephemeral.min(32768),
        )
    } else {
        // An unusual range: fall back to ports above the default ephemeral range.
        (61_000, 65_535)
    };
    static CLAIMED: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let claims = std::env::temp_dir().join("marzneshin-port-claims");
    std::fs::create_dir_all(&claims).expect("create the port claims folder");
    let mut rng = rand::thread_rng();
    loop {
        let port = rand::Rng::gen_range(&mut rng, low..high);
        let claim =
            std::fs::File::create(claims.join(port.to_string())).expect("create a port claim file");
        if claim.try_lock().is_err() {
            continue;
        }
        let Ok(_tcp) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            CLAIMED.lock().unwrap().push(claim);
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, child: &mut ChildGuard) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        child.assert_running();
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr} after 20 s");
}

/// A loopback TCP echo server (thread per connection).
pub fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = c.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// A loopback UDP echo server.
pub fn udp_echo() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = s.local_addr().unwrap();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    addr
}

fn socks5_greet(s: &mut TcpStream) -> io::Result<()> {
    s.write_all(&[5, 1, 0])?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r)?;
    if r != [5, 0] {
        return Err(io::Error::other(format!("SOCKS5 greeting refused: {r:?}")));
    }
    Ok(())
}

fn socks5_request(s: &mut TcpStream, cmd: u8, target: SocketAddr) -> io::Result<SocketAddr> {
    let mut req = vec![5, cmd, 0];
    let mut a = [0u8; 19];
    let n = proto::TargetAddr::Ip(target).write(&mut a);
    req.extend_from_slice(&a[..n]);
    s.write_all(&req)?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head)?;
    if head[1] != 0 {
        return Err(io::Error::other(format!(
            "SOCKS5 request failed with reply {}",
            head[1]
        )));
    }
    let len = match head[3] {
        1 => 4,
        4 => 16,
        t => return Err(io::Error::other(format!("SOCKS5 reply address type {t}"))),
    };
    let mut rest = vec![0u8; len + 2];
    s.read_exact(&mut rest)?;
    let mut full = vec![head[3]];
    full.extend_from_slice(&rest);
    match proto::TargetAddr::parse(&full) {
        Ok(proto::address::Parsed::Done(proto::TargetAddr::Ip(a), _)) => Ok(a),
        other => Err(io::Error::other(format!("SOCKS5 reply address {other:?}"))),
    }
}

/// Opens a TCP connection to `target` through the SOCKS5 proxy at `proxy`.
pub fn socks5_connect(proxy: SocketAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let mut s = TcpStream::connect(proxy)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    socks5_greet(&mut s)?;
    socks5_request(&mut s, 1, target)?;
    Ok(s)
}

/// A SOCKS5 UDP association: keep `control` open while using `socket` with `relay`.
pub struct UdpAssociation {
    /// The TCP connection that keeps the association alive.
    pub control: TcpStream,
    /// Our UDP socket.
    pub socket: UdpSocket,
    /// The proxy's UDP relay address.
    pub relay: SocketAddr,
}

/// Sets up a SOCKS5 UDP ASSOCIATE through `proxy`.
pub fn socks5_udp(proxy: SocketAddr) -> io::Result<UdpAssociation> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let mut control = TcpStream::connect(proxy)?;
    control.set_read_timeout(Some(Duration::from_secs(30)))?;
    socks5_greet(&mut control)?;
    let mut relay = socks5_request(&mut control, 3, socket.local_addr()?)?;
    if relay.ip().is_unspecified() {
        relay.set_ip(proxy.ip());
    }
    Ok(UdpAssociation {
        control,
        socket,
        relay,
    })
}

/// A reproducible pseudo-random byte stream, addressable by offset (64 KiB blocks, each
/// generated from the seed and its index), so writer and reader agree however reads split.
pub struct Pattern {
    seed: u64,
    block_index: u64,
    block: Vec<u8>,
}

impl Pattern {
    const BLOCK: usize = 64 * 1024;

    /// The stream for `seed`.
    pub fn new(seed: u64) -> Pattern {
        let mut p = Pattern {
            seed,
            block_index: u64::MAX,
            block: vec![0; Self::BLOCK],
        };
        p.load(0);
        p
    }

    fn load(&mut self, index: u64) {
        if self.block_index != index {
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            rng.fill_bytes(&mut self.block);
            self.block_index = index;
        }
    }

    /// The bytes at `offset..offset + out.len()`.
    pub fn fill(&mut self, mut offset: usize, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            self.load((offset / Self::BLOCK) as u64);
            let at = offset % Self::BLOCK;
            let n = (Self::BLOCK - at).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.block[at..at + n]);
            done += n;
            offset += n;
        }
    }
}

/// How the client side ends an echo transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Shut down our write half as soon as everything is sent, then read the rest: checks that
    /// the proxy carries half-closes (shadowsocks-rust does).
    HalfClose,
    /// Shut down only after everything came back (for clients such as shadowsocks-libev that
    /// tear the whole connection down on the first FIN).
    AfterEcho,
}

/// Sends `total` pseudo-random bytes (from `seed`) over `stream` while reading them back,
/// and checks every byte. Returns when all bytes came back and the echo closed.
pub fn echo_transfer(stream: TcpStream, total: usize, seed: u64, ending: Ending) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let sender = thread::spawn(move || -> io::Result<()> {
        let mut pattern = Pattern::new(seed);
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let n = (total - sent).min(buf.len());
            pattern.fill(sent, &mut buf[..n]);
            writer.write_all(&buf[..n])?;
            sent += n;
        }
        if ending == Ending::HalfClose {
            writer.shutdown(Shutdown::Write)?;
        }
        Ok(())
    });
    let mut reader = stream;
    let mut pattern = Pattern::new(seed);
    let mut got = vec![0u8; 64 * 1024];
    let mut want = vec![0u8; 64 * 1024];
    let mut seen = 0usize;
    while seen < total {
        let n = reader.read(&mut got)?;
        if n == 0 {
            return Err(io::Error::other(format!(
                "stream closed after {seen} of {total} bytes"
            )));
        }
        if seen + n > total {
            return Err(io::Error::other(format!(
                "{} bytes more than were sent",
                seen + n - total
            )));
        }
        pattern.fill(seen, &mut want[..n]);
        if got[..n] != want[..n] {
            let at = got[..n]
                .iter()
                .zip(&want[..n])
                .position(|(a, b)| a != b)
                .unwrap();
            return Err(io::Error::other(format!(
                "corrupted byte at offset {}",
                seen + at
            )));
        }
        seen += n;
    }
    sender.join().expect("sender thread")?;
    if ending == Ending::AfterEcho {
        reader.shutdown(Shutdown::Write)?;
    }
    // The echo closes after our FIN; the proxy must carry that close back.
    let n = reader.read(&mut got)?;
    if n != 0 {
        return Err(io::Error::other(format!(
            "{n} unexpected bytes after the echo"
        )));
    }
    Ok(())
}

/// Sends `total` bytes as datagrams of `size` bytes to the UDP echo at `target` through a
/// SOCKS5 association, with a sliding window and retransmission, and checks every datagram.
/// Returns the number of payload bytes sent (retransmissions included).
pub fn udp_echo_transfer(
    assoc: &UdpAssociation,
    target: SocketAddr,
    total: usize,
    size: usize,
    seed: u64,
) -> io::Result<u64> {
    const WINDOW: u64 = 16;
    let count = total.div_ceil(size) as u64;
    let mut header = [0u8; 22];
    let hlen = 3 + proto::TargetAddr::Ip(target).write(&mut header[3..]);
    let make = |seq: u64, out: &mut Vec<u8>| {
        out.clear();
        out.extend_from_slice(&header[..hlen]);
        out.extend_from_slice(&seq.to_be_bytes());
        let start = out.len();
        out.resize(start + size - 8, 0);
        Pattern::new(seed ^ seq).fill(0, &mut out[start..]);
    };
    assoc
        .socket
        .set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut acked = vec![false; count as usize];
    let mut base = 0u64;
    let mut next = 0u64;
    let mut sent_bytes = 0u64;
    let mut packet = Vec::with_capacity(size + 32);
    let mut expected = Vec::with_capacity(size + 32);
    let mut recv = vec![0u8; 65536];
    let mut idle_rounds = 0;
    while base < count {
        while next < count && next < base + WINDOW {
            make(next, &mut packet);
            assoc.socket.send_to(&packet, assoc.relay)?;
            sent_bytes += (size) as u64;
            next += 1;
        }
        match assoc.socket.recv_from(&mut recv) {
            Ok((n, _)) => {
                idle_rounds = 0;
                if n < hlen + 8 {
                    return Err(io::Error::other("short datagram back"));
                }
                let body = &recv[..n];
                // The SOCKS5 UDP header names the source; our payload follows.
                let alen = match proto::TargetAddr::parse(&body[3..]) {
                    Ok(proto::address::Parsed::Done(_, l)) => l,
                    _ => return Err(io::Error::other("bad SOCKS5 UDP header back")),
                };
                let payload = &body[3 + alen..];
                let seq = u64::from_be_bytes(payload[..8].try_into().unwrap());
                if seq >= count {
                    return Err(io::Error::other(format!("unknown sequence {seq}")));
                }
                make(seq, &mut expected);
                if payload != &expected[hlen..] {
                    return Err(io::Error::other(format!("datagram {seq} corrupted")));
                }
                acked[seq as usize] = true;
                while base < count && acked[base as usize] {
                    base += 1;
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                idle_rounds += 1;
                if idle_rounds > 50 {
                    return Err(io::Error::other(format!(
                        "no progress: {base} of {count} datagrams echoed"
                    )));
                }
                // Retransmit what is outstanding in the window.
                for seq in base..next {
                    if !acked[seq as usize] {
                        make(seq, &mut packet);
                        assoc.socket.send_to(&packet, assoc.relay)?;
                        sent_bytes += size as u64;
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(sent_bytes)
}

/// Starts our engine in this process from a JSON config.
pub fn start_engine(config: serde_json::Value) -> engine::Handle {
    let config = engine::Config::from_json(&config.to_string()).expect("valid test config");
    engine::Engine::start(config).expect("engine starts")
}

/// Traffic of user `name` now.
pub fn user_traffic(handle: &engine::Handle, name: &str) -> engine::TrafficStats {
    handle
        .user_stats()
        .into_iter()
        .find(|u| u.name == name)
        .map(|u| u.traffic)
        .unwrap_or_default()
}

/// How long a test waits for a UDP reply it expects: as long as a loaded machine may need.
pub const RELAYED: Duration = Duration::from_secs(10);
/// How long a test waits before it takes a missing UDP reply for "not relayed". A reply that
/// was due only comes later on a loaded machine, so this can only make such a check pass
/// wrongly, never fail wrongly; the check that follows it waits [`RELAYED`].
pub const SILENT: Duration = Duration::from_millis(500);

/// One Shadowsocks UDP round trip of 64 bytes from `sock` through `server` to the UDP echo at
/// `echo`, with our own codec (`client`): whether the reply came back and opened. `sock`'s
/// read timeout bounds the wait.
pub fn ss_udp_roundtrip(
    server: SocketAddr,
    sock: &UdpSocket,
    client: &mut proto::shadowsocks::udp::UdpClient,
    echo: SocketAddr,
) -> bool {
    use proto::shadowsocks::udp::UDP_HEADROOM;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut buf = vec![0u8; UDP_HEADROOM + 64 + proto::shadowsocks::TAG_LEN];
    buf[UDP_HEADROOM..UDP_HEADROOM + 64].fill(5);
    let frame = client.encode(
        &mut buf,
        UDP_HEADROOM..UDP_HEADROOM + 64,
        &proto::TargetAddr::Ip(echo),
        now,
        &rand::random(),
    );
    sock.send_to(&buf[frame], server).unwrap();
    let mut r = vec![0u8; 2048];
    match sock.recv_from(&mut r) {
        Ok((n, _)) => client.decode(&mut r[..n], now).is_ok(),
        Err(_) => false,
    }
}

/// A Shadowsocks TCP client built on our own codecs, for engine-behaviour tests (interop is
/// proven with third-party clients elsewhere).
pub struct SsClient {
    stream: TcpStream,
    sealer: proto::shadowsocks::tcp::StreamSealer,
    opener: proto::shadowsocks::tcp::StreamOpener,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl SsClient {
    /// Connects to `server` and asks for `target`, sending `first` as the initial payload.
    pub fn connect(
        server: SocketAddr,
        method: proto::shadowsocks::Method,
        user_key: &str,
        psk: Option<&str>,
        target: SocketAddr,
        first: &[u8],
    ) -> io::Result<SsClient> {
        Self::connect_from(None, server, method, user_key, psk, target, first)
    }

    /// [`SsClient::connect`] from a chosen local address (e.g. 127.0.0.2).
    pub fn connect_from(
        local: Option<std::net::IpAddr>,
        server: SocketAddr,
        method: proto::shadowsocks::Method,
        user_key: &str,
        psk: Option<&str>,
        target: SocketAddr,
        first: &[u8],
    ) -> io::Result<SsClient> {
        let stream = match local {
            None => TcpStream::connect(server)?,
            Some(ip) => {
                let s = socket2::Socket::new(
                    socket2::Domain::for_address(server),
                    socket2::Type::STREAM,
                    None,
                )?;
                s.bind(&SocketAddr::new(ip, 0).into())?;
                s.connect(&server.into())?;
                s.into()
            }
        };
        Self::over(stream, method, user_key, psk, target, first)
    }

    /// [`SsClient::connect`] over a connection already open (say, one left silent for a while).
    pub fn over(
        mut stream: TcpStream,
        method: proto::shadowsocks::Method,
        user_key: &str,
        psk: Option<&str>,
        target: SocketAddr,
        first: &[u8],
    ) -> io::Result<SsClient> {
        use proto::shadowsocks::{tcp::ClientRequest, Key};
        let key = Key::from_password(method, user_key).expect("valid key");
        let identity = psk.map(|p| Key::from_password(method, p).expect("valid psk"));
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let req = ClientRequest {
            method,
            key: &key,
            identity: identity.as_ref(),
            salt: &salt[..method.salt_len()],
            target: &proto::TargetAddr::Ip(target),
            padding: if first.is_empty() { 16 } else { 0 },
        };
        let mut out = vec![0u8; first.len() + 1024];
        let (n, sealer, opener) = req.encode(first, now, &mut out);
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(&out[..n])?;
        Ok(SsClient {
            stream,
            sealer,
            opener,
            buf: vec![0u8; 256 * 1024],
            start: 0,
            end: 0,
        })
    }

    /// Sends one chunk.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        use proto::shadowsocks::tcp::HEADROOM;
        let mut b = vec![0u8; HEADROOM + data.len() + proto::shadowsocks::TAG_LEN];
        b[HEADROOM..HEADROOM + data.len()].copy_from_slice(data);
        let frame = self.sealer.seal(&mut b, HEADROOM..HEADROOM + data.len(), 0);
        self.stream.write_all(&b[frame])
    }

    /// Receives exactly `n` payload bytes, or fails (EOF, timeout, bad data).
    pub fn recv_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        use proto::shadowsocks::tcp::Opened;
        let mut out = Vec::with_capacity(n);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        while out.len() < n {
            match self
                .opener
                .open(&mut self.buf[self.start..self.end], now)
                .map_err(io::Error::other)?
            {
                Opened::Chunk { payload, consumed } => {
                    out.extend_from_slice(
                        &self.buf[self.start + payload.start..self.start + payload.end],
                    );
                    self.start += consumed;
                }
                Opened::NeedMore => {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    let r = self.stream.read(&mut self.buf[self.end..])?;
                    if r == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
                    }
                    self.end += r;
                }
            }
        }
        Ok(out)
    }

    /// Waits for the server to close: `Ok(())` on EOF or reset, an error if data arrives or
    /// nothing happens within the read timeout.
    pub fn expect_closed(&mut self) -> io::Result<()> {
        let mut b = [0u8; 1024];
        match self.stream.read(&mut b) {
            Ok(0) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Ok(n) => Err(io::Error::other(format!("{n} bytes instead of a close"))),
            Err(e) => Err(e),
        }
    }

    /// A second handle that reads and opens the response stream on its own thread.
    pub fn try_clone_reader(&mut self) -> SsReader {
        let opener = std::mem::replace(&mut self.opener, dead_opener());
        SsReader {
            stream: self.stream.try_clone().expect("clone"),
            opener,
            buf: vec![0u8; 256 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// The underlying stream (for timeouts).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }
}

/// Waits (up to 5 s) until user `name`'s traffic is `(uplink, downlink)`; returns what it saw
/// last. Counters are updated right after each write completes, so a client can see its bytes
/// a moment before the counter does.
pub fn settled_traffic(handle: &engine::Handle, name: &str, want: (u64, u64)) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = user_traffic(handle, name);
        if (t.uplink, t.downlink) == want || Instant::now() > deadline {
            return (t.uplink, t.downlink);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// An opener that will never be used (the real one moved to an [`SsReader`]).
fn dead_opener() -> proto::shadowsocks::tcp::StreamOpener {
    use proto::shadowsocks::{tcp::ClientRequest, Key, Method};
    let key = Key::from_bytes(&[0; 16]);
    let req = ClientRequest {
        method: Method::Aes128Gcm,
        key: &key,
        identity: None,
        salt: &[0; 16],
        target: &proto::TargetAddr::Ip(([127, 0, 0, 1], 9).into()),
        padding: 0,
    };
    req.encode(b"", 0, &mut [0u8; 128]).2
}

/// The receiving half of an [`SsClient`].
pub struct SsReader {
    stream: TcpStream,
    opener: proto::shadowsocks::tcp::StreamOpener,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl SsReader {
    /// Receives the next chunk's payload; returns its length (0 is never returned: EOF is an
    /// error).
    pub fn recv_some(&mut self) -> io::Result<usize> {
        use proto::shadowsocks::tcp::Opened;
        loop {
            match self
                .opener
                .open(&mut self.buf[self.start..self.end], 0)
                .map_err(io::Error::other)?
            {
                Opened::Chunk { payload, consumed } => {
                    self.start += consumed;
                    if !payload.is_empty() {
                        return Ok(payload.len());
                    }
                }
                Opened::NeedMore => {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                    let r = self.stream.read(&mut self.buf[self.end..])?;
                    if r == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
                    }
                    self.end += r;
                }
            }
        }
    }
}

/// Starts our engine in this process from a JSON config, with options (an injected clock).
pub fn start_engine_with(
    config: serde_json::Value,
    options: engine::EngineOptions,
) -> engine::Handle {
    let config = engine::Config::from_json(&config.to_string()).expect("valid test config");
    engine::Engine::start_with(config, options).expect("engine starts")
}

/// The request header of a plain TCP connection to `target` through a VLESS (`credential` is
/// the user's id) or Trojan (`credential` is the password) inbound, written by our codecs.
pub fn stream_request_header(protocol: &str, credential: &str, target: SocketAddr) -> Vec<u8> {
    let target = proto::TargetAddr::Ip(target);
    let mut wire = vec![0u8; 512];
    let n = match protocol {
        "vless" => proto::vless::ClientRequest {
            uuid: proto::vless::parse_user_id(credential).expect("a VLESS user id"),
            flow: "",
            command: &proto::vless::Command::Tcp(target),
        }
        .encode(&mut wire),
        "trojan" => proto::trojan::encode_request(
            &proto::trojan::password_hash(credential),
            proto::trojan::Command::Connect,
            &target,
            &mut wire,
        ),
        other => panic!("no request header for {other}"),
    };
    wire.truncate(n);
    wire
}

/// A fresh self-signed certificate for `localhost`: its PEM certificate and key files for a
/// server (under names that start with `name`), and its DER for a client to trust.
pub fn localhost_certificate(name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = temp_file(&format!("{name}-cert.pem"), &generated.cert.pem());
    let key = temp_file(
        &format!("{name}-key.pem"),
        &generated.key_pair.serialize_pem(),
    );
    (cert, key, generated.cert.der().to_vec())
}

/// Writes `contents` to a fresh file under the system temporary directory; returns its path.
///
/// The folders are named after the test process (`marzneshin-e2e-<pid>-<n>`) and kept while it
/// runs (a failed test's files stay to be read); the first call in a process removes those of
/// processes that have ended.
pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_temp_files_of_ended_processes);
    let dir = std::env::temp_dir().join(format!(
        "marzneshin-e2e-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// Removes the [`temp_file`] folders of test processes that are no longer running.
fn remove_temp_files_of_ended_processes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("marzneshin-e2e-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Starts Debian's v2ray (4.34) as a client: a SOCKS5 inbound (TCP and UDP) on a free
/// loopback port, and `outbound` (a v2ray outbound object) as its only outbound. Returns the
/// process and the SOCKS5 address.
pub fn v2ray_client(outbound: serde_json::Value) -> (ChildGuard, SocketAddr) {
    let port = free_port();
    let config = serde_json::json!({
        "log": {"loglevel": "warning"},
        "inbounds": [{
            "listen": "127.0.0.1", "port": port, "protocol": "socks",
            "settings": {"auth": "noauth", "udp": true, "ip": "127.0.0.1"},
        }],
        "outbounds": [outbound],
    });
    let path = temp_file("v2ray.json", &config.to_string());
    let mut child = ChildGuard::spawn(
        "v2ray",
        Command::new(peer("v2ray")).arg("-config").arg(&path),
    );
    let socks: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for_port(socks, &mut child);
    (child, socks)
}

/// Starts sing-box as a client: a SOCKS5 inbound on a free loopback port and `outbound` (a
/// sing-box outbound object) as its only outbound. Returns the process and the SOCKS5 address.
pub fn sing_box_client(outbound: serde_json::Value) -> (ChildGuard, SocketAddr) {
    let port = free_port();
    let config = serde_json::json!({
        "log": {"level": "warn"},
        "inbounds": [{"type": "socks", "listen": "127.0.0.1", "listen_port": port}],
        "outbounds": [outbound],
    });
    let path = temp_file("sing-box.json", &config.to_string());
    let mut child = ChildGuard::spawn(
        "sing-box",
        Command::new(peer("sing-box"))
            .arg("run")
            .arg("-c")
            .arg(&path),
    );
    let socks: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for_port(socks, &mut child);
    (child, socks)
}

/// v2ray `streamSettings` for raw TCP, or TLS that accepts our self-signed certificate.
pub fn v2ray_stream(tls: bool) -> serde_json::Value {
    if tls {
        serde_json::json!({"network": "tcp", "security": "tls",
            "tlsSettings": {"serverName": "localhost", "allowInsecure": true}})
    } else {
        serde_json::json!({"network": "tcp", "security": "none"})
    }
}

/// An engine with one inbound `tag` of `protocol` (`settings` as in the config) on a free
/// loopback port, TLS with a self-signed certificate for `localhost` when `tls`; loopback
/// destinations allowed. Returns the handle and the inbound's address.
pub fn engine_with_inbound(
    protocol: &str,
    settings: serde_json::Value,
    tls: bool,
) -> (engine::Handle, SocketAddr) {
    engine_with_transport(protocol, settings, tls, None)
}

/// [`engine_with_inbound`], with WebSocket (`ws`, the inbound's `ws` object) when given.
pub fn engine_with_transport(
    protocol: &str,
    settings: serde_json::Value,
    tls: bool,
    ws: Option<serde_json::Value>,
) -> (engine::Handle, SocketAddr) {
    let mut inbound = serde_json::json!({
        "tag": "in", "listen": "127.0.0.1:0", "network": ["tcp"],
        "protocol": protocol, "settings": settings,
    });
    if tls {
        inbound["tls"] = serde_json::json!({"self_signed": ["localhost"]});
    }
    if let Some(ws) = ws {
        inbound["ws"] = ws;
    }
    let handle = start_engine(serde_json::json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "inbounds": [inbound],
    }));
    let addr = handle.local_addr("in").unwrap();
    (handle, addr)
}

/// A TCP echo server that counts the connections it accepted (to prove nothing was forwarded).
pub fn counting_echo() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let c = std::sync::Arc::clone(&count);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, count)
}

/// Sends `bytes` to `addr`, keeps the connection open, and checks that a prober learns
/// nothing: no byte back, no close before `deadline` (the engine's handshake timeout), a close
/// soon after it.
pub fn assert_silent_until(addr: SocketAddr, bytes: &[u8], deadline: Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    s.set_read_timeout(Some(deadline - Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        Ok(0) => panic!("closed early, after {:?}", start.elapsed()),
        Ok(n) => panic!("server answered {n} bytes to a bad handshake"),
        Err(e) => panic!("unexpected error before the deadline: {e}"),
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("server answered {n} bytes to a bad handshake"),
        Err(e) => panic!("no close after the deadline: {e}"),
    }
    let took = start.elapsed();
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(2),
        "closed after {took:?}"
    );
}

/// Waits (up to 3 s) until `handle` holds no connection on any inbound.
pub fn assert_connections_freed(handle: &engine::Handle) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while handle
        .inbound_stats()
        .iter()
        .map(|i| i.traffic.open)
        .sum::<u64>()
        > 0
    {
        assert!(Instant::now() < deadline, "connection state not freed");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback HTTP/1.1 server answering every request with `200 OK` and `body`, then closing.
/// Returns its address and what it received, request by request.
pub fn http_site(
    body: &'static str,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = std::sync::Arc::clone(&seen);
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let seen = std::sync::Arc::clone(&s2);
            thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                seen.lock().unwrap().push(req);
                let _ = write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (addr, seen)
}

/// Waits (up to 5 s) until user `name` has moved at least `up` and `down` bytes; panics with
/// what it saw otherwise. For UDP, where retransmissions make exact totals unknowable.
pub fn assert_traffic_at_least(handle: &engine::Handle, name: &str, up: u64, down: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = user_traffic(handle, name);
        if t.uplink >= up && t.downlink >= down {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {} up, {} down; wanted at least {up} and {down}",
            t.uplink,
            t.downlink
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// For a receive loop over one reused buffer: moves the unread bytes `buf[*start..*end]` to the
/// front and reads more behind them (panics if the stream closed).
pub fn read_more(stream: &mut TcpStream, buf: &mut [u8], start: &mut usize, end: &mut usize) {
    buf.copy_within(*start..*end, 0);
    *end -= *start;
    *start = 0;
    let n = stream.read(&mut buf[*end..]).unwrap();
    assert!(n > 0, "stream closed");
    *end += n;
}

/// The allocation tests' relay check: fewer than one heap allocation (all threads) per 64
/// chunks relayed, so nothing allocates per chunk, per wait for a socket or per sleep of the
/// executor (`vendor/glommio/PATCHES.md`, patches 9-11: before patch 11 a run in which the
/// executor often ran dry counted 170-270 here). A 100 MiB run shows 0-15.
pub fn assert_far_fewer_allocations_than_chunks(what: &str, allocations: u64, chunks: u64) {
    eprintln!("{what}: {allocations} allocations for {chunks} chunks relayed (both ways)");
    assert!(
        allocations * 64 < chunks,
        "{what}: {allocations} heap allocations for {chunks} relayed chunks: something allocates per chunk"
    );
}

/// Through a client with Mux.Cool on (its SOCKS5 at `socks`), user `u` on `handle`: four
/// streams held open at once must be sessions of one connection to the engine; then four
/// parallel TCP transfers of `total / 4` bytes each way and `total` bytes of UDP, every byte
/// checked, the TCP counters exact.
pub fn multiplexed_transfers(handle: &engine::Handle, socks: SocketAddr, total: usize) {
    let echo = tcp_echo();
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
            s.write_all(b"ping").unwrap();
            let mut back = [0u8; 4];
            s.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"ping");
            s
        })
        .collect();
    let open: u64 = handle.inbound_stats().iter().map(|i| i.traffic.open).sum();
    assert_eq!(open, 1, "four streams should be sessions of one connection");
    drop(held);
    let transfers: Vec<_> = (0..4u64)
        .map(|seed| {
            thread::spawn(move || {
                let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
                echo_transfer(stream, total / 4, seed, Ending::AfterEcho)
            })
        })
        .collect();
    for t in transfers {
        t.join()
            .unwrap()
            .unwrap_or_else(|e| panic!("TCP over Mux.Cool: {e}"));
    }
    let want = (total / 4 * 4 + 4 * 4) as u64;
    assert_eq!(
        settled_traffic(handle, "u", (want, want)),
        (want, want),
        "TCP counters"
    );
    let uecho = udp_echo();
    let assoc = socks5_udp(socks).expect("SOCKS5 UDP ASSOCIATE");
    udp_echo_transfer(&assoc, uecho, total, 1200, 2)
        .unwrap_or_else(|e| panic!("UDP over Mux.Cool: {e}"));
    assert_traffic_at_least(handle, "u", 2 * total as u64, 2 * total as u64);
}

/// Starts shoes with a SOCKS5 server on a free loopback port that sends everything through
/// `proxy` (a shoes client protocol, YAML). Returns the process and the SOCKS5 address.
pub fn shoes_client(
    server: std::net::SocketAddr,
    proxy: &str,
) -> (ChildGuard, std::net::SocketAddr) {
    let port = free_port();
    let config = format!(
        r#"- address: "127.0.0.1:{port}"
  protocol:
    type: socks
  rules:
    - masks: "0.0.0.0/0"
      action: allow
      client_proxy:
        address: "{server}"
        protocol:
{proxy}
"#
    );
    let path = temp_file("shoes.yaml", &config);
    let mut child = ChildGuard::spawn(
        "shoes",
        std::process::Command::new(peer("shoes")).arg(&path),
    );
    let socks: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for_port(socks, &mut child);
    (child, socks)
}

/// `inner` (YAML lines of a shoes protocol, indented for `protocol:`) wrapped in TLS that
/// accepts our self-signed certificate.
pub fn over_tls(inner: &str) -> String {
    let inner: String = inner.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "          type: tls\n          verify: false\n          sni_hostname: localhost\n          protocol:\n{inner}"
    )
}
