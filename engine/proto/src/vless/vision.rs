//! XTLS Vision (flow `xtls-rprx-vision`): padding of the first packets of a VLESS stream run
//! inside TLS, and the switch to "direct" copy once the proxied traffic is itself TLS 1.3.
//!
//! A VLESS client proxying a TLS connection sends TLS inside TLS, and the sizes of the inner
//! handshake's records show through the outer layer. Vision hides them: each direction wraps
//! its first packets in blocks with random padding. When a direction sees the inner TLS 1.3
//! handshake end (its first application data record), it sends that record in a block with
//! the `Direct` command and from then on writes the inner records straight to the TCP
//! socket, outside the outer TLS (they are encrypted already). Traffic that is not TLS 1.3
//! ends the padding with `End` and stays inside the outer TLS.
//!
//! ```text
//! The first block of each direction:        Every later block:
//! +----------+-----+---------+---------+    +-----+---------+---------+---------+---------+
//! | UUID     | cmd | content | padding |    | cmd | content | padding | content | padding |
//! | 16 bytes | u8  | u16 BE  | u16 BE  |    | u8  | u16 BE  | u16 BE  | bytes   | bytes   |
//! +----------+-----+---------+---------+    +-----+---------+---------+---------+---------+
//!   (then content bytes and padding bytes)
//!   cmd 0 = Continue (another block follows), 1 = End (plain stream follows),
//!       2 = Direct (raw TCP follows, outside the outer TLS)
//! ```
//!
//! The UUID is the user's VLESS id, in the first block that direction sends. A block is at
//! most [`MAX_BLOCK`] bytes (Xray's buffer size; sing-box reads blocks in chunks of that
//! size), each in a record of its own.
//!
//! Which packets count as TLS is decided by [`TlsFilter`], fed the payload of both directions:
//! a ClientHello or ServerHello among the first eight packets, TLS 1.3 when the ServerHello
//! carries the `supported_versions` extension for 1.3 and a cipher suite other than
//! TLS_AES_128_CCM_8_SHA256. Sources: Xray-core's `proxy/proxy.go` (the reference) and
//! sing-box's `vless/vision.go`, read for facts.

use thiserror::Error;

/// Bytes of the user id in front of the first block.
pub const UUID_LEN: usize = 16;
/// Bytes of a block header: command, content length, padding length.
pub const BLOCK_HEADER: usize = 5;
/// Largest block, UUID and header included.
pub const MAX_BLOCK: usize = 8192;
/// Largest content of one block (room for the UUID and the header in [`MAX_BLOCK`]).
pub const MAX_CONTENT: usize = MAX_BLOCK - UUID_LEN - BLOCK_HEADER;
/// Packets (reads or writes, either direction) the filter looks at before giving up.
pub const PACKETS_TO_FILTER: u8 = 8;

/// What follows a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Another block.
    Continue = 0,
    /// The plain stream, still inside the outer TLS.
    End = 1,
    /// Raw bytes on the TCP connection, outside the outer TLS.
    Direct = 2,
}

/// What a peer did wrong.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum VisionError {
    /// A block with a command other than 0, 1 or 2.
    #[error("unknown Vision command {0}")]
    UnknownCommand(u8),
}

/// What [`Unpadder::unpad`] made of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unpadded {
    /// The payload is now the first `len` bytes of the buffer.
    pub len: usize,
    /// The padding ended in this read, with [`Command::End`] or [`Command::Direct`]: bytes
    /// after the last block (payload) are at the end of those `len`, and everything after
    /// this read is not padded.
    pub ended: Option<Command>,
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Waiting for the UUID that opens the first block; data without it passes as is.
    Start,
    /// Reading a block header: `have` of its bytes so far.
    Header {
        have: usize,
        bytes: [u8; BLOCK_HEADER],
    },
    /// Inside a block.
    Body {
        command: Command,
        content: usize,
        padding: usize,
    },
    /// The padding is over: everything passes.
    Done,
}

/// Removes the padding of one direction, in place, across reads of any size.
#[derive(Clone, Debug)]
pub struct Unpadder {
    uuid: [u8; UUID_LEN],
    state: State,
}

impl Unpadder {
    /// An unpadder for a stream whose first block carries `uuid`.
    pub fn new(uuid: [u8; UUID_LEN]) -> Unpadder {
        Unpadder {
            uuid,
            state: State::Start,
        }
    }

    /// True once a block with `End` or `Direct` has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Removes block headers, the UUID and padding from `buf` (the next bytes of the
    /// stream), moving the payload to its front.
    ///
    /// As Xray does, a read that does not start with the UUID while the first block is
    /// awaited (fewer than 21 bytes, or other bytes) passes unchanged.
    pub fn unpad(&mut self, buf: &mut [u8]) -> Result<Unpadded, VisionError> {
        let mut at = 0;
        let mut out = 0;
        let mut ended = None;
        if let State::Start = self.state {
            if buf.len() < UUID_LEN + BLOCK_HEADER || buf[..UUID_LEN] != self.uuid {
                return Ok(Unpadded {
                    len: buf.len(),
                    ended: None,
                });
            }
            at = UUID_LEN;
            self.state = State::Header {
                have: 0,
                bytes: [0; BLOCK_HEADER],
            };
        }
        while at < buf.len() {
            match &mut self.state {
                State::Start => unreachable!("left above"),
                State::Done => {
                    buf.copy_within(at.., out);
                    out += buf.len() - at;
                    at = buf.len();
                }
                State::Header { have, bytes } => {
                    let n = (BLOCK_HEADER - *have).min(buf.len() - at);
                    bytes[*have..*have + n].copy_from_slice(&buf[at..at + n]);
                    *have += n;
                    at += n;
                    if *have == BLOCK_HEADER {
                        let command = match bytes[0] {
                            0 => Command::Continue,
                            1 => Command::End,
                            2 => Command::Direct,
                            other => return Err(VisionError::UnknownCommand(other)),
                        };
                        self.state = State::Body {
                            command,
                            content: usize::from(u16::from_be_bytes([bytes[1], bytes[2]])),
                            padding: usize::from(u16::from_be_bytes([bytes[3], bytes[4]])),
                        };
                    }
                }
                State::Body {
                    content, padding, ..
                } => {
                    let n = (*content).min(buf.len() - at);
                    buf.copy_within(at..at + n, out);
                    (out, at, *content) = (out + n, at + n, *content - n);
                    let skip = (*padding).min(buf.len() - at);
                    (at, *padding) = (at + skip, *padding - skip);
                }
            }
            if let State::Body {
                command,
                content: 0,
                padding: 0,
            } = self.state
            {
                if command == Command::Continue {
                    self.state = State::Header {
                        have: 0,
                        bytes: [0; BLOCK_HEADER],
                    };
                } else {
                    self.state = State::Done;
                    ended = Some(command);
                }
            }
        }
        // A block may end exactly at the end of the read.
        if let State::Body {
            command,
            content: 0,
            padding: 0,
        } = self.state
        {
            if command != Command::Continue {
                self.state = State::Done;
                ended = Some(command);
            }
        }
        Ok(Unpadded { len: out, ended })
    }
}

/// Padding for a block of `content` bytes: with `long` (the traffic is TLS, or the block
/// hides the end of the inner handshake), short content is padded to 900-1399 bytes; else
/// 0-255 bytes. `random` is any uniformly random number. Never more than fits in
/// [`MAX_BLOCK`].
pub fn padding_len(content: usize, long: bool, random: u32) -> usize {
    let padding = if content < 900 && long {
        (random % 500) as usize + 900 - content
    } else {
        (random % 256) as usize
    };
    padding.min(MAX_BLOCK - UUID_LEN - BLOCK_HEADER - content.min(MAX_CONTENT))
}

/// Writes one block into `out`: the UUID if given (the direction's first block), the header,
/// `content` (at most [`MAX_CONTENT`] bytes) and `padding` zero bytes. Returns its length.
///
/// # Panics
///
/// If `out` is shorter than the block, or `content` or `padding` does not fit the u16 fields.
pub fn write_block(
    out: &mut [u8],
    uuid: Option<&[u8; UUID_LEN]>,
    command: Command,
    content: &[u8],
    padding: usize,
) -> usize {
    let mut at = 0;
    if let Some(uuid) = uuid {
        out[..UUID_LEN].copy_from_slice(uuid);
        at = UUID_LEN;
    }
    let content_len = u16::try_from(content.len()).expect("content fits a block");
    let padding_len = u16::try_from(padding).expect("padding fits a block");
    out[at] = command as u8;
    out[at + 1..at + 3].copy_from_slice(&content_len.to_be_bytes());
    out[at + 3..at + 5].copy_from_slice(&padding_len.to_be_bytes());
    at += BLOCK_HEADER;
    out[at..at + content.len()].copy_from_slice(content);
    at += content.len();
    out[at..at + padding].fill(0);
    at + padding
}

/// Bytes of the block [`write_block`] makes.
pub fn block_len(first: bool, content: usize, padding: usize) -> usize {
    let uuid = if first { UUID_LEN } else { 0 };
    uuid + BLOCK_HEADER + content + padding
}

const HANDSHAKE: u8 = 0x16;
const APPLICATION_DATA: u8 = 0x17;
const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
/// The `supported_versions` extension of a ServerHello selecting TLS 1.3.
const TLS13_SUPPORTED_VERSIONS: [u8; 6] = [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04];
const TLS_AES_128_CCM_8_SHA256: u16 = 0x1305;

/// True when `data` starts a TLS 1.2/1.3 application data record.
pub fn starts_application_data(data: &[u8]) -> bool {
    data.len() >= 6 && data[..3] == [APPLICATION_DATA, 3, 3]
}

/// True when `data` is a whole number of complete TLS application data records, nothing else.
pub fn is_complete_records(data: &[u8]) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        if rest.len() < 5 || rest[..3] != [APPLICATION_DATA, 3, 3] {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || rest.len() < 5 + len {
            return false;
        }
        rest = &rest[5 + len..];
    }
    !data.is_empty()
}

/// What one connection learned about the traffic it carries, from the first packets of both
/// directions (Xray's `TrafficState`, the filter part).
#[derive(Clone, Debug)]
pub struct TlsFilter {
    packets_left: u8,
    /// A ClientHello or ServerHello was seen.
    pub is_tls: bool,
    /// A ServerHello was seen (TLS 1.2 or later).
    pub is_tls12_or_above: bool,
    /// The ServerHello chose TLS 1.3 with a cipher suite direct copy works with.
    pub direct: bool,
    remaining_server_hello: i64,
    cipher: u16,
}

impl Default for TlsFilter {
    fn default() -> TlsFilter {
        TlsFilter {
            packets_left: PACKETS_TO_FILTER,
            is_tls: false,
            is_tls12_or_above: false,
            direct: false,
            remaining_server_hello: -1,
            cipher: 0,
        }
    }
}

impl TlsFilter {
    /// True while the filter still looks at packets.
    pub fn is_active(&self) -> bool {
        self.packets_left > 0
    }

    /// Packets it will still look at.
    pub fn packets_left(&self) -> u8 {
        self.packets_left
    }

    /// Looks at one packet (a read's or a write's payload) of either direction.
    pub fn observe(&mut self, packet: &[u8]) {
        if self.packets_left == 0 {
            return;
        }
        self.packets_left -= 1;
        if packet.len() >= 6 {
            if packet[..3] == [HANDSHAKE, 3, 3] && packet[5] == SERVER_HELLO {
                self.remaining_server_hello =
                    i64::from(u16::from_be_bytes([packet[3], packet[4]])) + 5;
                self.is_tls12_or_above = true;
                self.is_tls = true;
                if packet.len() >= 79 && self.remaining_server_hello >= 79 {
                    let session_id = usize::from(packet[43]);
                    if let Some(suite) = packet.get(44 + session_id..46 + session_id) {
                        self.cipher = u16::from_be_bytes([suite[0], suite[1]]);
                    }
                }
            } else if packet[..2] == [HANDSHAKE, 3] && packet[5] == CLIENT_HELLO {
                self.is_tls = true;
            }
        }
        if self.remaining_server_hello > 0 {
            let end = packet
                .len()
                .min(usize::try_from(self.remaining_server_hello).unwrap_or(usize::MAX));
            self.remaining_server_hello -= packet.len() as i64;
            if packet[..end]
                .windows(TLS13_SUPPORTED_VERSIONS.len())
                .any(|w| w == TLS13_SUPPORTED_VERSIONS)
            {
                self.direct = (0x1301..=0x1305).contains(&self.cipher)
                    && self.cipher != TLS_AES_128_CCM_8_SHA256;
                self.packets_left = 0;
            } else if self.remaining_server_hello <= 0 {
                // TLS 1.2: padding, never direct.
                self.packets_left = 0;
            }
        }
    }
}

/// How a writer pads one payload (see [`plan_write`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WritePlan {
    /// Every block `Continue`, padded long when `long`.
    Continue {
        /// Pad short blocks to 900-1399 bytes.
        long: bool,
    },
    /// The payload is the inner handshake's first application data: blocks `Continue` (long
    /// padding) but the last, which carries `last` (`Direct` or `End`); padding is over.
    Finish {
        /// The last block's command.
        last: Command,
    },
    /// The traffic is not TLS 1.2 or later and the filter is about to give up: the first
    /// block carries `End` and the rest of the payload goes unpadded.
    EndNow {
        /// Pad the block long.
        long: bool,
    },
}

/// Decides how to pad `payload`, the next write of a direction still padding, after the
/// filter has seen it (Xray's `VisionWriter`).
pub fn plan_write(filter: &TlsFilter, payload: &[u8]) -> WritePlan {
    if filter.is_tls && starts_application_data(payload) && is_complete_records(payload) {
        let last = if filter.direct {
            Command::Direct
        } else {
            Command::End
        };
        WritePlan::Finish { last }
    } else if !filter.is_tls12_or_above && filter.packets_left <= 1 {
        WritePlan::EndNow {
            long: filter.is_tls,
        }
    } else {
        WritePlan::Continue {
            long: filter.is_tls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: [u8; 16] = *b"0123456789abcdef";

    fn block(first: bool, command: Command, content: &[u8], padding: usize) -> Vec<u8> {
        let mut out = vec![0xee; block_len(first, content.len(), padding)];
        let n = write_block(&mut out, first.then_some(&UUID), command, content, padding);
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn block_bytes() {
        assert_eq!(
            block(true, Command::Continue, b"hi", 3),
            [&UUID[..], &[0, 0, 2, 0, 3], b"hi", &[0, 0, 0]].concat()
        );
        assert_eq!(
            block(false, Command::Direct, b"x", 0),
            [&[2, 0, 1, 0, 0][..], b"x"].concat()
        );
    }

    fn unpad_all(u: &mut Unpadder, stream: &[u8], step: usize) -> (Vec<u8>, Option<Command>) {
        let (mut out, mut ended) = (Vec::new(), None);
        for chunk in stream.chunks(step) {
            let mut b = chunk.to_vec();
            let r = u.unpad(&mut b).unwrap();
            out.extend_from_slice(&b[..r.len]);
            ended = ended.or(r.ended);
        }
        (out, ended)
    }

    #[test]
    fn unpads_across_any_split() {
        let stream = [
            block(true, Command::Continue, b"hello ", 900),
            block(false, Command::Continue, b"", 17),
            block(false, Command::Direct, b"world", 250),
            b" raw".to_vec(),
        ]
        .concat();
        for step in [1, 2, 5, 21, 64, 1000, stream.len()] {
            // The first read must hold the UUID and a header (as Xray requires).
            let mut u = Unpadder::new(UUID);
            let mut first = stream[..21.max(step).min(stream.len())].to_vec();
            let r = u.unpad(&mut first).unwrap();
            let mut out = first[..r.len].to_vec();
            let (rest, ended) = unpad_all(&mut u, &stream[first.len()..], step);
            out.extend_from_slice(&rest);
            assert_eq!(out, b"hello world raw", "step {step}");
            assert_eq!(ended.or(r.ended), Some(Command::Direct), "step {step}");
            assert!(u.is_done());
        }
    }

    #[test]
    fn end_at_the_end_of_a_read() {
        let mut u = Unpadder::new(UUID);
        let mut b = block(true, Command::End, b"abc", 0);
        let r = u.unpad(&mut b).unwrap();
        assert_eq!((r.len, r.ended), (3, Some(Command::End)));
        assert_eq!(&b[..3], b"abc");
        let mut more = b"plain".to_vec();
        assert_eq!(u.unpad(&mut more).unwrap().len, 5);
    }

    #[test]
    fn without_the_uuid_data_passes_as_xray_does() {
        let mut u = Unpadder::new(UUID);
        let mut b = block(true, Command::Continue, b"abc", 0);
        b[0] ^= 1;
        let copy = b.clone();
        let r = u.unpad(&mut b).unwrap();
        assert_eq!((r.len, r.ended), (copy.len(), None));
        assert_eq!(b, copy);
        let mut short = UUID[..10].to_vec();
        assert_eq!(u.unpad(&mut short).unwrap().len, 10);
    }

    #[test]
    fn unknown_command_is_an_error() {
        let mut u = Unpadder::new(UUID);
        let mut b = [&UUID[..], &[7, 0, 0, 0, 0]].concat();
        assert_eq!(u.unpad(&mut b), Err(VisionError::UnknownCommand(7)));
    }

    #[test]
    fn padding_lengths() {
        assert_eq!(padding_len(100, true, 0), 800);
        assert_eq!(padding_len(100, true, 499), 1299);
        assert_eq!(padding_len(100, false, 300), 44);
        assert_eq!(padding_len(2000, true, 255), 255);
        assert_eq!(padding_len(MAX_CONTENT, true, 255), 0);
        assert_eq!(padding_len(MAX_CONTENT - 10, false, 255), 10);
    }

    #[test]
    fn complete_records() {
        let rec = |len: usize| {
            [
                &[0x17, 3, 3][..],
                &(len as u16).to_be_bytes(),
                &vec![9; len],
            ]
            .concat()
        };
        assert!(is_complete_records(&rec(30)));
        assert!(is_complete_records(&[rec(30), rec(1)].concat()));
        assert!(!is_complete_records(&rec(30)[..20]));
        assert!(!is_complete_records(&[rec(30), vec![0x17, 3]].concat()));
        assert!(!is_complete_records(&[0x16, 3, 3, 0, 1, 0]));
        assert!(!is_complete_records(&[]));
    }

    /// A TLS 1.3 ServerHello as rustls sends it: version 0x0303, a 32-byte session id echo,
    /// the suite, and the supported_versions extension.
    fn server_hello(suite: u16, tls13: bool) -> Vec<u8> {
        let mut body = vec![SERVER_HELLO, 0, 0, 0, 3, 3];
        body.extend_from_slice(&[0x42; 32]);
        body.push(32);
        body.extend_from_slice(&[0x24; 32]);
        body.extend_from_slice(&suite.to_be_bytes());
        body.push(0);
        let mut ext = vec![0x00, 0x33, 0x00, 0x02, 0x00, 0x1d];
        if tls13 {
            ext.extend_from_slice(&TLS13_SUPPORTED_VERSIONS);
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let len = body.len() - 4;
        body[1..4].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
        [
            &[HANDSHAKE, 3, 3][..],
            &(body.len() as u16).to_be_bytes(),
            &body,
        ]
        .concat()
    }

    #[test]
    fn filter_finds_tls13() {
        let mut f = TlsFilter::default();
        f.observe(&[HANDSHAKE, 3, 1, 0, 200, CLIENT_HELLO, 0, 0]);
        assert!(f.is_tls && !f.is_tls12_or_above && f.is_active());
        f.observe(&server_hello(0x1301, true));
        assert!(f.is_tls12_or_above && f.direct && !f.is_active());
        let app = [0x17, 3, 3, 0, 2, 1, 2];
        assert_eq!(
            plan_write(&f, &app),
            WritePlan::Finish {
                last: Command::Direct
            }
        );
    }

    #[test]
    fn filter_tls12_and_ccm8_are_not_direct() {
        let mut f = TlsFilter::default();
        f.observe(&server_hello(0xc02f, false));
        assert!(f.is_tls12_or_above && !f.direct && !f.is_active());
        let mut f = TlsFilter::default();
        f.observe(&server_hello(TLS_AES_128_CCM_8_SHA256, true));
        assert!(!f.direct && !f.is_active());
        assert_eq!(
            plan_write(&f, &[0x17, 3, 3, 0, 1, 0]),
            WritePlan::Finish { last: Command::End }
        );
    }

    #[test]
    fn plain_traffic_ends_padding_after_the_filter() {
        let mut f = TlsFilter::default();
        for _ in 0..PACKETS_TO_FILTER - 1 {
            assert_eq!(
                plan_write(&f, b"GET /"),
                WritePlan::Continue { long: false }
            );
            f.observe(b"GET / HTTP/1.1");
        }
        assert_eq!(f.packets_left(), 1);
        assert_eq!(plan_write(&f, b"x"), WritePlan::EndNow { long: false });
    }

    #[test]
    fn odd_packets_do_not_panic() {
        let mut f = TlsFilter::default();
        let mut hello = server_hello(0x1301, true);
        hello[43] = 255;
        f.observe(&hello[..80]);
        for len in 0..90 {
            let mut f = TlsFilter::default();
            f.observe(&server_hello(0x1302, true)[..len]);
        }
    }
}
