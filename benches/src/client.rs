//! The load generator's connections: plain TCP (to the floor relay) or Shadowsocks through our
//! own client-side codecs ([`ClientRequest`], [`StreamSealer`], [`StreamOpener`]).
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
}

impl Endpoint {
    /// Connects and sends `initial` (a target command, possibly followed by data) as the first
    /// payload: for Shadowsocks inside the request header's chunk, as a client does.
    pub fn connect(&self, initial: &[u8]) -> io::Result<Conn> {
        let server = match self {
            Endpoint::Plain { server } | Endpoint::Shadowsocks { server, .. } => *server,
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
