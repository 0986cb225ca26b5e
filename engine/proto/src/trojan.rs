//! Trojan, server side (and a client side for tests and benches).
//!
//! Trojan has no encryption of its own: it runs inside TLS. The client proves it knows a
//! password by sending the hex SHA-224 of it; anything else is answered as the web server the
//! port pretends to be (the fallback).
//!
//! ```text
//! Request:
//! +-----------------------+------+-----+------------------------------+------+---------
//! | hex(SHA224(password)) | CRLF | cmd | address (SOCKS5 form)        | CRLF | payload
//! | 56 bytes, lowercase   |      | u8  | type | address | port u16 BE |      | ...
//! +-----------------------+------+-----+------------------------------+------+---------
//!   cmd 1 = CONNECT, 3 = UDP ASSOCIATE; no response header: the server just relays.
//!
//! UDP ASSOCIATE, each direction, packet after packet on the stream:
//! +------------------------------+--------+------+---------+
//! | address (SOCKS5 form)        | length | CRLF | payload |
//! | destination (client->server) | u16 BE |      |         |
//! | source (server->client)      |        |      |         |
//! +------------------------------+--------+------+---------+
//! ```
//!
//! Spec: [the Trojan protocol]; Xray-core's `proxy/trojan/protocol.go` agrees.
//!
//! Fallbacks: [`parse_request`] tells "not (yet) known to be Trojan" ([`Handshake::NeedMore`])
//! from "not Trojan / wrong password" (a [`PeerError`]) without consuming or modifying
//! anything, so on any error the engine forwards every byte it has read to the fallback site
//! and relays from then on. It can decide early: a byte that is not a lowercase hex digit in
//! the first 56 (an HTTP request line, a TLS record) is [`PeerError::NotTrojan`] at once. While
//! the answer is `NeedMore` the engine keeps reading, under a handshake timeout after which it
//! falls back with what it has (trojan-gfw falls back on a short first read).
//!
//! [the Trojan protocol]: https://trojan-gfw.github.io/trojan/protocol

use std::ops::Range;

use sha2::{Digest, Sha224};

use crate::address::{AddressError, Parsed, TargetAddr, MAX_ADDR_LEN};
use crate::directory::Directory;
pub use crate::shadowsocks::UserId;
use crate::Progress;

/// Length of the password hash on the wire.
pub const HASH_LEN: usize = 56;

/// Longest request header: hash, CRLF, command, address, CRLF.
pub const MAX_HEADER_LEN: usize = HASH_LEN + 2 + 1 + MAX_ADDR_LEN + 2;

/// Largest UDP payload accepted: the most a UDP datagram over IPv4 carries. Anything larger
/// could not be forwarded anyway.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// Room a caller leaves in front of a UDP payload passed to [`frame_udp_packet`].
pub const UDP_HEADROOM: usize = MAX_ADDR_LEN + 4;

const CRLF: &[u8; 2] = b"\r\n";

/// What a peer did wrong. Every handshake error leaves the buffer untouched: fall back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The bytes cannot start a Trojan request: a non-hex byte in the hash, or no CRLF after it.
    #[error("not a Trojan request")]
    NotTrojan,
    /// A well-formed hash that is no configured user's.
    #[error("unknown password")]
    UnknownPassword,
    /// A command other than CONNECT (1) or UDP ASSOCIATE (3).
    #[error("unknown command {0}")]
    BadCommand(u8),
    /// The target address is malformed.
    #[error("bad target address: {0}")]
    BadAddress(#[from] AddressError),
    /// The CRLF after the address, or after a UDP packet's length, is missing.
    #[error("missing CRLF")]
    MissingCrlf,
    /// A UDP packet longer than [`MAX_UDP_PAYLOAD`].
    #[error("UDP packet of {0} bytes exceeds the limit")]
    Oversize(usize),
}

/// What the caller configured wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An empty password.
    #[error("password is empty")]
    EmptyPassword,
    /// Two users with the same password on one inbound.
    #[error("two users share one password")]
    DuplicatePassword,
}

/// The lowercase hex SHA-224 of `password`: what a client sends.
pub fn password_hash(password: &str) -> [u8; HASH_LEN] {
    let digest = Sha224::digest(password.as_bytes());
    let mut out = [0u8; HASH_LEN];
    for (pair, byte) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn is_hash_byte(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// The users of one Trojan inbound, found in O(1) by password hash. Cheap to clone and to
/// change one user at a time ([`crate::directory`]).
#[derive(Clone, Debug, Default)]
pub struct TrojanUsers {
    users: Directory<[u8; HASH_LEN]>,
}

impl TrojanUsers {
    /// Builds the table from `(id, password)` pairs.
    pub fn new<'a>(
        users: impl IntoIterator<Item = (UserId, &'a str)>,
    ) -> Result<TrojanUsers, (UserId, ConfigError)> {
        let mut table = TrojanUsers::default();
        for (id, password) in users {
            if table.users.get(&password_hash(password)).is_some() {
                return Err((id, ConfigError::DuplicatePassword));
            }
            table.insert(id, password)?;
        }
        Ok(table)
    }

    /// Gives user `id` this password (replacing theirs); fails, changing nothing, when it is
    /// empty or another user has it.
    pub fn insert(&mut self, id: UserId, password: &str) -> Result<(), (UserId, ConfigError)> {
        if password.is_empty() {
            return Err((id, ConfigError::EmptyPassword));
        }
        self.users
            .insert(id, password_hash(password))
            .map_err(|_| (id, ConfigError::DuplicatePassword))
    }

    /// Removes user `id`; returns whether they were here.
    pub fn remove(&mut self, id: UserId) -> bool {
        self.users.remove(id).is_some()
    }

    /// Whether user `id` is here.
    pub fn contains(&self, id: UserId) -> bool {
        self.users.contains(id)
    }

    /// The user whose password hashes to `hash`.
    pub fn get(&self, hash: &[u8; HASH_LEN]) -> Option<UserId> {
        self.users.get(hash)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// What a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// Relay a TCP stream to the target.
    Connect = 1,
    /// Relay UDP packets framed on the stream ([`read_udp_packet`]); the request's target is
    /// not used (clients send packets to any destination).
    UdpAssociate = 3,
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Who sent it.
    pub user: UserId,
    /// What to do.
    pub command: Command,
    /// Where to connect (CONNECT).
    pub target: TargetAddr,
    /// Length of the header: the payload starts at this offset of the buffer.
    pub consumed: usize,
}

/// Outcome of [`parse_request`]: [`Progress::NeedMore`] until the header is complete.
pub type Handshake = Progress<Request>;

/// Parses a request from `buf`, which starts at the first byte of the connection. Never
/// modifies or consumes `buf`; on an error all of it goes to the fallback.
pub fn parse_request(users: &TrojanUsers, buf: &[u8]) -> Result<Handshake, PeerError> {
    let seen = &buf[..buf.len().min(HASH_LEN)];
    if !seen.iter().all(|&b| is_hash_byte(b)) {
        return Err(PeerError::NotTrojan);
    }
    let Some(hash) = buf.first_chunk::<HASH_LEN>() else {
        return Ok(Handshake::NeedMore);
    };
    // The CRLF is checked before the user: a probe learns nothing about which hashes exist
    // from a request that is malformed anyway.
    match buf.get(HASH_LEN..HASH_LEN + 2) {
        None if buf.len() == HASH_LEN + 1 && buf[HASH_LEN] != b'\r' => {
            return Err(PeerError::NotTrojan)
        }
        None => return Ok(Handshake::NeedMore),
        Some(crlf) if crlf != CRLF => return Err(PeerError::NotTrojan),
        Some(_) => {}
    }
    let user = users.get(hash).ok_or(PeerError::UnknownPassword)?;
    let at = HASH_LEN + 2;
    let Some(&command) = buf.get(at) else {
        return Ok(Handshake::NeedMore);
    };
    let command = match command {
        1 => Command::Connect,
        3 => Command::UdpAssociate,
        other => return Err(PeerError::BadCommand(other)),
    };
    let (target, n) = match TargetAddr::parse(&buf[at + 1..])? {
        Parsed::NeedMore => return Ok(Handshake::NeedMore),
        Parsed::Done(target, n) => (target, n),
    };
    let end = at + 1 + n;
    match crlf_at(buf, end)? {
        None => Ok(Handshake::NeedMore),
        Some(consumed) => Ok(Handshake::Done(Request {
            user,
            command,
            target,
            consumed,
        })),
    }
}

/// `Some(at + 2)` if a CRLF is at `at`, `None` if the buffer ends first.
fn crlf_at(buf: &[u8], at: usize) -> Result<Option<usize>, PeerError> {
    let got = &buf[at.min(buf.len())..buf.len().min(at + 2)];
    if got != &CRLF[..got.len()] {
        return Err(PeerError::MissingCrlf);
    }
    Ok((got.len() == 2).then_some(at + 2))
}

/// Outcome of [`read_udp_packet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpFrame {
    /// The next packet has not fully arrived; keep the bytes and read more (at most
    /// [`UDP_HEADROOM`] + [`MAX_UDP_PAYLOAD`]).
    NeedMore,
    /// One packet; drop `consumed` bytes from the head once it is sent.
    Packet {
        /// Its destination.
        target: TargetAddr,
        /// The payload inside the buffer passed in.
        payload: Range<usize>,
        /// Bytes of the buffer this packet used.
        consumed: usize,
    },
}

/// Takes the next UDP packet from the head of `buf` (after an UDP ASSOCIATE request). A packet
/// addressed to a host name allocates the name; one addressed to an IP allocates nothing.
pub fn read_udp_packet(buf: &[u8]) -> Result<UdpFrame, PeerError> {
    let (target, n) = match TargetAddr::parse(buf)? {
        Parsed::NeedMore => return Ok(UdpFrame::NeedMore),
        Parsed::Done(target, n) => (target, n),
    };
    let Some(len) = buf.get(n..n + 2) else {
        return Ok(UdpFrame::NeedMore);
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len > MAX_UDP_PAYLOAD {
        return Err(PeerError::Oversize(len));
    }
    let Some(start) = crlf_at(buf, n + 2)? else {
        return Ok(UdpFrame::NeedMore);
    };
    let end = start + len;
    if buf.len() < end {
        return Ok(UdpFrame::NeedMore);
    }
    Ok(UdpFrame::Packet {
        target,
        payload: start..end,
        consumed: end,
    })
}

/// Frames the packet at `buf[payload]`, received from `source`, by writing the address,
/// length and CRLF in front of it; returns the range to send.
///
/// # Panics
/// If there is less than `source.encoded_len() + 4` bytes in front of the payload ([`UDP_HEADROOM`]
/// always suffices) or the payload is longer than [`MAX_UDP_PAYLOAD`] (caller bugs).
pub fn frame_udp_packet(
    buf: &mut [u8],
    payload: Range<usize>,
    source: &TargetAddr,
) -> Range<usize> {
    assert!(payload.len() <= MAX_UDP_PAYLOAD, "UDP packet too long");
    let start = payload.start - source.encoded_len() - 4;
    let n = source.write(&mut buf[start..]);
    buf[start + n..start + n + 2].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    buf[start + n + 2..payload.start].copy_from_slice(CRLF);
    start..payload.end
}

/// Client side (tests, benches, fuzz seeds): writes a request header at the start of `out`
/// and returns its length.
///
/// # Panics
/// If `out` is shorter than [`MAX_HEADER_LEN`] (a caller bug).
pub fn encode_request(
    hash: &[u8; HASH_LEN],
    command: Command,
    target: &TargetAddr,
    out: &mut [u8],
) -> usize {
    out[..HASH_LEN].copy_from_slice(hash);
    out[HASH_LEN..HASH_LEN + 2].copy_from_slice(CRLF);
    out[HASH_LEN + 2] = command as u8;
    let at = HASH_LEN + 3 + target.write(&mut out[HASH_LEN + 3..]);
    out[at..at + 2].copy_from_slice(CRLF);
    at + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> TrojanUsers {
        TrojanUsers::new([(5, "alice"), (6, "bob")]).unwrap()
    }

    fn target() -> TargetAddr {
        TargetAddr::Domain("example.com".into(), 443)
    }

    fn request(password: &str, command: Command, target: &TargetAddr) -> Vec<u8> {
        let mut out = vec![0u8; MAX_HEADER_LEN];
        let n = encode_request(&password_hash(password), command, target, &mut out);
        out.truncate(n);
        out
    }

    /// FIPS 180-4 / NIST SHA-224 vectors, as lowercase hex, and one password.
    #[test]
    fn password_hash_vectors() {
        let cases = [
            (
                "",
                "d14a028c2a3a2bc9476102bb288234c415a2b01f828ea62ac5b3e42f",
            ),
            (
                "abc",
                "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
            ),
            (
                "password",
                "d63dc919e201d7bc4c825630d2cf25fdc93d4b2f0d46706d29038d01",
            ),
        ];
        for (password, hex) in cases {
            assert_eq!(&password_hash(password), hex.as_bytes());
        }
    }

    #[test]
    fn round_trip_both_commands() {
        let cases = [
            (Command::Connect, target()),
            (
                Command::UdpAssociate,
                TargetAddr::Ip("0.0.0.0:0".parse().unwrap()),
            ),
            (
                Command::Connect,
                TargetAddr::Ip("[2001:db8::1]:80".parse().unwrap()),
            ),
        ];
        for (command, target) in cases {
            let mut wire = request("bob", command, &target);
            let header_len = wire.len();
            wire.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(
                parse_request(&users(), &wire),
                Ok(Handshake::Done(Request {
                    user: 6,
                    command,
                    target,
                    consumed: header_len,
                }))
            );
        }
    }

    #[test]
    fn every_prefix_needs_more() {
        let wire = request("alice", Command::Connect, &target());
        for cut in 0..wire.len() {
            assert_eq!(
                parse_request(&users(), &wire[..cut]),
                Ok(Handshake::NeedMore),
                "cut at {cut}"
            );
        }
    }

    /// Probes are told apart from slow clients as early as the bytes allow.
    #[test]
    fn not_trojan_is_decided_early() {
        let probes: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
            b"POST",
            &[0x16, 0x03, 0x01, 0x02, 0x00],
            b"D14A028C", // uppercase hex is not what clients send
            b"\r\n",
        ];
        for probe in probes {
            assert_eq!(
                parse_request(&users(), probe),
                Err(PeerError::NotTrojan),
                "{probe:?}"
            );
        }
        // 56 hex digits and no CRLF after them.
        let mut wire = password_hash("alice").to_vec();
        wire.push(b'x');
        assert_eq!(parse_request(&users(), &wire), Err(PeerError::NotTrojan));
        wire[HASH_LEN] = b'\r';
        wire.push(b'x');
        assert_eq!(parse_request(&users(), &wire), Err(PeerError::NotTrojan));
    }

    #[test]
    fn peer_errors() {
        let users = users();
        let wire = request("mallory", Command::Connect, &target());
        assert_eq!(
            parse_request(&users, &wire),
            Err(PeerError::UnknownPassword)
        );
        // Decided once the CRLF after the hash is in.
        assert_eq!(
            parse_request(&users, &wire[..HASH_LEN + 2]),
            Err(PeerError::UnknownPassword)
        );
        for command in [0, 2, 4, 0xff] {
            let mut wire = request("alice", Command::Connect, &target());
            wire[HASH_LEN + 2] = command;
            assert_eq!(
                parse_request(&users, &wire),
                Err(PeerError::BadCommand(command))
            );
        }
        let mut wire = request("alice", Command::Connect, &target());
        wire[HASH_LEN + 3] = 0x02;
        assert_eq!(
            parse_request(&users, &wire),
            Err(PeerError::BadAddress(AddressError::UnknownType(2)))
        );
        let mut wire = request("alice", Command::Connect, &target());
        let n = wire.len();
        wire[n - 1] = b'x';
        assert_eq!(parse_request(&users, &wire), Err(PeerError::MissingCrlf));
        wire[n - 2] = b'x';
        assert_eq!(
            parse_request(&users, &wire[..n - 1]),
            Err(PeerError::MissingCrlf)
        );
    }

    #[test]
    fn udp_packets_round_trip() {
        let packets = [
            (TargetAddr::Ip("8.8.8.8:53".parse().unwrap()), vec![1u8; 40]),
            (target(), vec![]),
            (
                TargetAddr::Ip("[2001:db8::53]:53".parse().unwrap()),
                vec![2; MAX_UDP_PAYLOAD],
            ),
        ];
        let mut stream = Vec::new();
        for (addr, payload) in &packets {
            let mut buf = vec![0u8; UDP_HEADROOM + payload.len()];
            buf[UDP_HEADROOM..].copy_from_slice(payload);
            let end = buf.len();
            let sent = frame_udp_packet(&mut buf, UDP_HEADROOM..end, addr);
            stream.extend_from_slice(&buf[sent]);
        }
        for step in [1, 5, 700, usize::MAX] {
            let mut received = Vec::new();
            let mut got = Vec::new();
            for piece in stream.chunks(step.min(stream.len())) {
                received.extend_from_slice(piece);
                while let UdpFrame::Packet {
                    target,
                    payload,
                    consumed,
                } = read_udp_packet(&received).unwrap()
                {
                    got.push((target, received[payload].to_vec()));
                    received.drain(..consumed);
                }
            }
            assert!(received.is_empty());
            assert_eq!(got, packets);
        }
    }

    #[test]
    fn udp_peer_errors() {
        let mut packet = vec![0x01, 8, 8, 8, 8, 0, 53];
        packet.extend_from_slice(&(MAX_UDP_PAYLOAD as u16 + 1).to_be_bytes());
        assert_eq!(
            read_udp_packet(&packet),
            Err(PeerError::Oversize(MAX_UDP_PAYLOAD + 1))
        );
        let packet = [0x01, 8, 8, 8, 8, 0, 53, 0, 1, b'\r', b'x', 0];
        assert_eq!(read_udp_packet(&packet), Err(PeerError::MissingCrlf));
        assert_eq!(
            read_udp_packet(&[0x09, 0]),
            Err(PeerError::BadAddress(AddressError::UnknownType(9)))
        );
    }

    #[test]
    fn user_table() {
        assert_eq!(
            TrojanUsers::new([(1, "")]).unwrap_err(),
            (1, ConfigError::EmptyPassword)
        );
        assert_eq!(
            TrojanUsers::new([(1, "a"), (2, "a")]).unwrap_err(),
            (2, ConfigError::DuplicatePassword)
        );
        assert_eq!(users().get(&password_hash("alice")), Some(5));
        assert_eq!(users().len(), 2);
        assert!(TrojanUsers::default().is_empty());
    }
}
