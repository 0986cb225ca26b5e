//! Hysteria2, server side: everything above QUIC that the protocol defines, sans-IO.
//!
//! Hysteria2 runs on QUIC (with the unreliable datagram extension). The QUIC connection
//! itself is the engine's business; this module holds what travels inside it:
//!
//! ```text
//! QUIC connection
//! ├── bidirectional stream 0: HTTP/3 request  POST https://hysteria/auth   (http3, qpack)
//! │                           HTTP/3 response 233 HyOK                     (anything else:
//! │                                                                         masquerade)
//! ├── bidirectional stream N: TCP proxy request, one per proxied connection  (tcp)
//! │     client ─► server  +--------+----------+---------+-------------+---------+
//! │                       | 0x401  | addr len | address | padding len | padding | payload...
//! │                       | varint | varint   | "h:p"   | varint      | bytes   |
//! │                       +--------+----------+---------+-------------+---------+
//! │     server ─► client  +--------+---------+---------+-------------+---------+
//! │                       | status | msg len | message | padding len | padding | payload...
//! │                       | u8     | varint  | bytes   | varint      | bytes   |
//! │                       +--------+---------+---------+-------------+---------+
//! │                         status 0x00 = OK, 0x01 = error (then the stream is closed)
//! └── datagrams: one UDP message each, both directions  (udp)
//!                         +---------+---------+---------+----------+----------+---------+---------+
//!                         | session | packet  | frag id | frag cnt | addr len | address | payload |
//!                         | u32 BE  | u16 BE  | u8      | u8       | varint   | "h:p"   | bytes   |
//!                         +---------+---------+---------+----------+----------+---------+---------+
//! ```
//!
//! Every QUIC packet may in addition be wrapped in Salamander obfuscation ([`salamander`]):
//! an 8-byte salt, then the packet XORed with BLAKE2b-256(password || salt).
//!
//! Varints are QUIC's ([`varint`], RFC 9000 section 16); every width is accepted, minimal or
//! not, as the reference implementation's reader does. Addresses are the text `host:port`
//! (IPv6 literals in brackets), parsed by [`parse_host_port`].
//!
//! Limits follow the reference implementation (apernet/hysteria, `core/internal/protocol`):
//! an address of 1 to [`MAX_ADDRESS_LEN`] bytes, padding up to [`MAX_PADDING_LEN`] bytes, a
//! message up to [`MAX_MESSAGE_LEN`] bytes; a UDP message carries at least one payload byte.
//! A limit is enforced as soon as the length is read, before the bytes arrive.
//!
//! Source: [the Hysteria 2 protocol specification] and the reference implementation's
//! `core/internal/protocol` and `core/internal/frag` packages, read for facts.
//!
//! [the Hysteria 2 protocol specification]: https://github.com/apernet/hysteria/blob/master/PROTOCOL.md

pub mod http3;
pub mod huffman;
pub mod masquerade;
pub mod qpack;
pub mod salamander;
pub mod tcp;
pub mod udp;
pub mod varint;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use crate::directory::Directory;
use crate::shadowsocks::UserId;
use crate::TargetAddr;

/// Longest address string a TCP request or UDP message may carry.
pub const MAX_ADDRESS_LEN: usize = 2048;
/// Longest padding a TCP request or response may carry.
pub const MAX_PADDING_LEN: usize = 4096;
/// Longest message a TCP response may carry.
pub const MAX_MESSAGE_LEN: usize = 2048;

/// The largest datagram a client that advertised no `max_datagram_frame_size` is assumed to
/// accept, as the reference server assumes.
pub const ASSUMED_MAX_DATAGRAM: usize = 1200;

/// What a peer sent wrong in a TCP request, a UDP message or an obfuscated packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// A stream opened with a frame type other than the TCP request (0x401).
    #[error("unknown stream frame type {0:#x}")]
    UnknownFrameType(u64),
    /// An address length of zero or over [`MAX_ADDRESS_LEN`].
    #[error("address length {0} is out of range")]
    AddressLength(u64),
    /// A padding length over [`MAX_PADDING_LEN`].
    #[error("padding length {0} is over the limit")]
    PaddingLength(u64),
    /// A message length over [`MAX_MESSAGE_LEN`].
    #[error("message length {0} is over the limit")]
    MessageLength(u64),
    /// The address is not UTF-8 `host:port` with a non-empty host and a decimal port.
    #[error("address is not host:port")]
    BadAddress,
    /// A datagram ends before its header does.
    #[error("datagram truncated inside its header")]
    Truncated,
    /// A UDP message with no payload after its address.
    #[error("UDP message without payload")]
    EmptyPayload,
    /// A fragment whose id is not below its fragment count.
    #[error("fragment {id} of {count}")]
    BadFragment {
        /// The fragment id.
        id: u8,
        /// The fragment count.
        count: u8,
    },
    /// An obfuscated packet no longer than its salt.
    #[error("obfuscated packet too short")]
    ShortPacket,
}

/// Why a set of users cannot share one Hysteria2 inbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsersError {
    /// An empty password (the reference client refuses to send one).
    #[error("password is empty")]
    EmptyPassword,
    /// Two users with the same password on one inbound.
    #[error("two users share one password")]
    DuplicatePassword,
}

/// The users of one Hysteria2 inbound, found in O(1) by the `hysteria-auth` value. Cheap to
/// clone and to change one user at a time ([`crate::directory`]).
#[derive(Clone, Debug, Default)]
pub struct Hysteria2Users {
    users: Directory<Box<[u8]>>,
}

impl Hysteria2Users {
    /// Builds the table from `(id, password)` pairs.
    pub fn new<'a>(
        users: impl IntoIterator<Item = (UserId, &'a str)>,
    ) -> Result<Hysteria2Users, (UserId, UsersError)> {
        let mut table = Hysteria2Users::default();
        for (id, password) in users {
            if table.users.get(password.as_bytes()).is_some() {
                return Err((id, UsersError::DuplicatePassword));
            }
            table.insert(id, password)?;
        }
        Ok(table)
    }

    /// Gives user `id` this password (replacing theirs); fails, changing nothing, when it is
    /// empty or another user has it.
    pub fn insert(&mut self, id: UserId, password: &str) -> Result<(), (UserId, UsersError)> {
        if password.is_empty() {
            return Err((id, UsersError::EmptyPassword));
        }
        self.users
            .insert(id, Box::from(password.as_bytes()))
            .map_err(|_| (id, UsersError::DuplicatePassword))
    }

    /// Removes user `id`; returns whether they were here.
    pub fn remove(&mut self, id: UserId) -> bool {
        self.users.remove(id).is_some()
    }

    /// Whether user `id` is here.
    pub fn contains(&self, id: UserId) -> bool {
        self.users.contains(id)
    }

    /// The user whose password is `auth`.
    pub fn get(&self, auth: &[u8]) -> Option<UserId> {
        self.users.get(auth)
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

/// Parses the `host:port` text both TCP requests and UDP messages carry.
///
/// IPv6 literals come in brackets (`[2001:db8::1]:443`); a host that parses as an IP address
/// becomes [`TargetAddr::Ip`], so policy checks see the address. The port is decimal, 0 to
/// 65535.
pub fn parse_host_port(text: &[u8]) -> Result<TargetAddr, PeerError> {
    let text = std::str::from_utf8(text).map_err(|_| PeerError::BadAddress)?;
    let (host, port) = text.rsplit_once(':').ok_or(PeerError::BadAddress)?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PeerError::BadAddress);
    }
    let port: u16 = port.parse().map_err(|_| PeerError::BadAddress)?;
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(PeerError::BadAddress)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| PeerError::BadAddress)?;
        return Ok(TargetAddr::Ip(SocketAddr::new(ip.into(), port)));
    }
    if host.is_empty() || host.contains([':', '[', ']']) {
        return Err(PeerError::BadAddress);
    }
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => TargetAddr::Ip(SocketAddr::new(ip, port)),
        Err(_) => TargetAddr::Domain(host.to_owned(), port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_by_password() {
        let users = Hysteria2Users::new([(1, "alpha"), (2, "beta")]).unwrap();
        assert_eq!(users.get(b"alpha"), Some(1));
        assert_eq!(users.get(b"beta"), Some(2));
        assert_eq!(users.get(b"alph"), None);
        assert_eq!(users.get(b""), None);
        assert_eq!(users.len(), 2);
        assert_eq!(
            Hysteria2Users::new([(1, "a"), (7, "a")]).unwrap_err(),
            (7, UsersError::DuplicatePassword)
        );
        assert_eq!(
            Hysteria2Users::new([(3, "")]).unwrap_err(),
            (3, UsersError::EmptyPassword)
        );
    }

    #[test]
    fn host_port_forms() {
        let ok = [
            (
                "example.com:443",
                TargetAddr::Domain("example.com".into(), 443),
            ),
            ("1.2.3.4:80", TargetAddr::Ip("1.2.3.4:80".parse().unwrap())),
            (
                "[2001:db8::1]:53",
                TargetAddr::Ip("[2001:db8::1]:53".parse().unwrap()),
            ),
            ("h:0", TargetAddr::Domain("h".into(), 0)),
            ("h:65535", TargetAddr::Domain("h".into(), 65535)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_host_port(text.as_bytes()), Ok(want), "{text}");
        }
        let bad: [&[u8]; 12] = [
            b"",
            b"example.com",
            b":443",
            b"example.com:",
            b"example.com:65536",
            b"example.com:+1",
            b"example.com:-1",
            b"2001:db8::1:53",
            b"[2001:db8::1:53",
            b"[not-ip]:53",
            b"exa]mple:1",
            b"\xff\xfe:80",
        ];
        for text in bad {
            assert_eq!(
                parse_host_port(text),
                Err(PeerError::BadAddress),
                "{text:?}"
            );
        }
    }
}
