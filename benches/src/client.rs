//! The load generator's connections: plain TCP (to the floor relay), Shadowsocks through our
//! own client-side codecs ([`ClientRequest`], [`StreamSealer`], [`StreamOpener`]), or SOCKS5
//! to a local proxy client (the sing-box client process of VLESS, VMess, Trojan or Hysteria2,
//! which carries each connection to the server under test: as a TCP or TLS connection, or as a
//! QUIC stream).
//!
//! The same client drives every server, so differences in the figures are the servers'. Writes
//! are batched the same way for every endpoint: up to [`SEND_BATCH`] plaintext bytes per
//! `write`, as one or more sealed chunks of the method's largest size.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use proto::shadowsocks::tcp::{ClientRequest, Opened, StreamOpener, StreamSealer};
use proto::shadowsocks::{Key, Method, TAG_LEN};
use proto::TargetAddr;
use rand::RngCore;

use crate::unix_now;

/// Plaintext bytes handed to one `write` (before framing).
pub const SEND_BATCH: usize = 64 * 1024;

/// Length prefix of a sealed chunk: u16 length + tag.
const LEN_CHUNK: usize = 2 + TAG_LEN;
/// Room for the chunk framing of one batch (at most five 2017 chunks), and a request header.
const FRAMING: usize = 1024;
const READ_BUFFER: usize = 256 * 1024;

/// How to reach the target through the server under test.
#[derive(Clone)]
pub enum Endpoint {
    /// A relay that forwards every connection to the target as is (the floor).
    Plain {
        /// Relay address.
        server: SocketAddr,
    },
    /// A Shadowsocks server, single user.
    Shadowsocks {
        /// Server address.
        server: SocketAddr,
        /// Cipher.
        method: Method,
        /// The user's key.
        key: Key,
        /// Where the server is asked to connect.
        target: SocketAddr,
    },
    /// A local SOCKS5 proxy (no authentication) that carries the connection to the server
    /// under test; the connection is plain from the `CONNECT` answer on.
    Socks5 {
        /// The proxy's address.
        proxy: SocketAddr,
        /// Where the proxy (and through it the server) is asked to connect.
        target: SocketAddr,
    },
}

impl Endpoint {
    /// Connects and sends `initial` (a target command, possibly followed by data) as the first
    /// payload: for Shadowsocks inside the request header's chunk, as a client does.
    pub fn connect(&self, initial: &[u8]) -> io::Result<Conn> {
        let server = match self {
            Endpoint::Plain { server } | Endpoint::Shadowsocks { server, .. } => *server,
            Endpoint::Socks5 { proxy, .. } => *proxy,
        };
        let mut stream = TcpStream::connect(server)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut wbuf = Vec::new();
        let codec = match self {
            Endpoint::Plain { .. } => {
                stream.write_all(initial)?;
                None
            }
            Endpoint::Socks5 { target, .. } => {
                socks5_connect(&mut stream, *target)?;
                stream.write_all(initial)?;
                None
            }
            Endpoint::Shadowsocks {
                method,
                key,
                target,
                ..
            } => {
                let mut salt = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut salt);
                let target = TargetAddr::Ip(*target);
                let request = ClientRequest {
                    method: *method,
                    key,
                    identity: None,
                    salt: &salt[..method.salt_len()],
                    target: &target,
                    padding: 0,
                };
                wbuf.resize(initial.len() + FRAMING, 0);
                let (n, sealer, opener) = request.encode(initial, unix_now(), &mut wbuf);
                stream.write_all(&wbuf[..n])?;
                Some(ShadowsocksCodec { sealer, opener })
            }
        };
        Ok(Conn {
            stream,
            codec,
            wbuf,
            // Both buffers grow on first use, so that a thousand idle connections stay small.
            rbuf: Vec::new(),
            start: 0,
            end: 0,
        })
    }
}

/// The SOCKS5 handshake (RFC 1928): no authentication, `CONNECT target`, and its answer, which
/// must be success. Each step waits for the proxy's answer before the next.
fn socks5_connect(stream: &mut TcpStream, target: SocketAddr) -> io::Result<()> {
    let refused = |what: String| io::Error::new(io::ErrorKind::ConnectionRefused, what);
    stream.write_all(&[5, 1, 0])?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice)?;
    if choice != [5, 0] {
        return Err(refused(format!("SOCKS5 proxy chose method {choice:?}")));
    }
    let mut request = vec![5, 1, 0];
    match target {
        SocketAddr::V4(a) => {
            request.push(1);
            request.extend_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            request.push(4);
            request.extend_from_slice(&a.ip().octets());
        }
    }
    request.extend_from_slice(&target.port().to_be_bytes());
    stream.write_all(&request)?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head)?;
    if head[0] != 5 || head[1] != 0 {
        return Err(refused(format!(
            "SOCKS5 CONNECT {target} answered {}",
            head[1]
        )));
    }
    // The bound address: IPv4, a name (length first) or IPv6, then the port.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len)?;
            usize::from(len[0]) + 2
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("SOCKS5 answer with address type {other}"),
            ))
        }
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound)
}

struct ShadowsocksCodec {
    sealer: StreamSealer,
    opener: StreamOpener,
}

/// One connection of the load generator.
pub struct Conn {
    stream: TcpStream,
    codec: Option<ShadowsocksCodec>,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    /// Unconsumed received bytes are `rbuf[start..end]` (Shadowsocks only).
    start: usize,
    end: usize,
}

impl Conn {
    /// Sends `len` (at most [`SEND_BATCH`]) plaintext bytes in one write; `fill` is called
    /// with consecutive pieces of the plaintext, in order, to write them in place.
    pub fn send(&mut self, len: usize, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<()> {
        assert!(len <= SEND_BATCH, "a batch is at most {SEND_BATCH} bytes");
        if self.wbuf.len() < SEND_BATCH + FRAMING {
            self.wbuf.resize(SEND_BATCH + FRAMING, 0);
        }
        let Some(codec) = &mut self.codec else {
            fill(&mut self.wbuf[..len]);
            return self.stream.write_all(&self.wbuf[..len]);
        };
        let max = codec.sealer.max_payload();
        let mut at = 0;
        let mut left = len;
        while left > 0 {
            let n = left.min(max);
            let payload = at + LEN_CHUNK..at + LEN_CHUNK + n;
            fill(&mut self.wbuf[payload.clone()]);
            let frame = codec.sealer.seal(&mut self.wbuf, payload, unix_now());
            debug_assert_eq!(frame.start, at);
            at = frame.end;
            left -= n;
        }
        self.stream.write_all(&self.wbuf[..at])
    }

    /// Receives the next plaintext bytes and hands them to `sink`; returns how many (0 at end
    /// of stream).
    pub fn recv(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        if self.rbuf.is_empty() {
            self.rbuf.resize(READ_BUFFER, 0);
        }
        let Some(codec) = &mut self.codec else {
            let n = self.stream.read(&mut self.rbuf)?;
            sink(&self.rbuf[..n]);
            return Ok(n);
        };
        loop {
            match codec
                .opener
                .open(&mut self.rbuf[self.start..self.end], unix_now())
            {
                Ok(Opened::Chunk { payload, consumed }) => {
                    let p = self.start + payload.start..self.start + payload.end;
                    self.start += consumed;
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                    }
                    if !p.is_empty() {
                        sink(&self.rbuf[p.clone()]);
                        return Ok(p.len());
                    }
                }
                Ok(Opened::NeedMore) => {
                    if self.rbuf.len() - self.start < codec.opener.wanted()
                        || self.end == self.rbuf.len()
                    {
                        self.rbuf.copy_within(self.start..self.end, 0);
                        self.end -= self.start;
                        self.start = 0;
                    }
                    let n = self.stream.read(&mut self.rbuf[self.end..])?;
                    if n == 0 {
                        return if self.start == self.end {
                            Ok(0)
                        } else {
                            Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "stream ended inside a chunk",
                            ))
                        };
                    }
                    self.end += n;
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }

    /// Sends `data` in batches of at most [`SEND_BATCH`] bytes.
    pub fn send_all(&mut self, data: &[u8]) -> io::Result<()> {
        for batch in data.chunks(SEND_BATCH) {
            let mut at = 0;
            self.send(batch.len(), &mut |piece: &mut [u8]| {
                piece.copy_from_slice(&batch[at..at + piece.len()]);
                at += piece.len();
            })?;
        }
        Ok(())
    }

    /// Receives exactly `out.len()` bytes; more (in one chunk) or fewer is an error.
    pub fn recv_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut got = 0;
        let mut overflow = false;
        while got < out.len() {
            let n = self.recv(&mut |data: &[u8]| {
                let take = data.len().min(out.len() - got);
                out[got..got + take].copy_from_slice(&data[..take]);
                overflow |= take < data.len();
            })?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stream ended after {got} of {} bytes", out.len()),
                ));
            }
            if overflow {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "more bytes than expected",
                ));
            }
            got += n;
        }
        Ok(())
    }

    /// Half-closes the sending side.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }
}
