//! VLESS version 0, server side (and a client side for tests and benches).
//!
//! VLESS has no encryption of its own: it runs inside TLS (or WebSocket over TLS). A request
//! names the user by UUID, the command and the target; the response is two bytes. After that the
//! stream carries raw payload (TCP), length-prefixed packets (UDP) or Mux.Cool frames (Mux, see
//! [`crate::mux`]).
//!
//! ```text
//! Request:
//! +-----+----------+-----+---------------+-----+--------------------------------+---------
//! | ver | UUID     | M   | addons        | cmd | port | type | address         | payload
//! | 0   | 16 bytes | u8  | protobuf, M B | u8  | u16 BE, then see vless::address | ...
//! +-----+----------+-----+---------------+-----+--------------------------------+---------
//!   cmd 1 = TCP, 2 = UDP, 3 = Mux (no port/address follow: the target is "v1.mux.cool")
//!   addons: protobuf `message Addons { string Flow = 1; bytes Seed = 2; }`, usually empty
//!
//! Response:
//! +-----+-----+--------+---------
//! | ver | M   | addons | payload
//! | 0   | 0   |        | ...
//! +-----+-----+--------+---------
//!
//! UDP (cmd 2), each direction:
//! +--------+---------+--------+---------+---
//! | len    | packet  | len    | packet  | ...
//! | u16 BE | len B   | u16 BE | len B   |
//! +--------+---------+--------+---------+---
//! ```
//!
//! Sources: [the VLESS proposal] and Xray-core's `proxy/vless/encoding` (the addons protobuf,
//! the length-prefixed UDP framing, no address after the Mux command).
//!
//! Supported: version 0, flow empty (`none`) or `xtls-rprx-vision` (padding and direct copy,
//! see [`vision`]), commands TCP, UDP and Mux. The flow is parsed and reported in
//! [`Request::flow`]; any other flow is reported as [`Flow::Other`] for the engine to reject. Not supported: the reverse-proxy command (4), VLESS
//! "encryption" (post-quantum layer of recent Xray).
//!
//! Fallbacks: a failed [`parse_request`] consumes nothing, so the engine can hand every byte it
//! has read to a fallback site. [`PeerError::BadVersion`] and [`PeerError::UnknownUser`] are the
//! cases Xray falls back on.
//!
//! [the VLESS proposal]: https://github.com/XTLS/Xray-core/discussions/716

pub mod address;
pub mod vision;

#[cfg(test)]
mod tests;

use std::ops::Range;

use crate::address::{AddressError, Parsed, TargetAddr};
use crate::directory::Directory;
pub use crate::shadowsocks::UserId;
use crate::Progress;

/// The protocol version every VLESS peer speaks.
pub const VERSION: u8 = 0;

/// What the server answers a request with (version 0, no addons), before any payload.
pub const RESPONSE_HEADER: [u8; 2] = [VERSION, 0];

/// Bytes in front of each UDP packet on the stream.
pub const UDP_PREFIX: usize = 2;

/// Largest packet the UDP framing can carry.
pub const MAX_UDP_PAYLOAD: usize = u16::MAX as usize;

/// The flow name of XTLS Vision.
pub const FLOW_VISION: &str = "xtls-rprx-vision";

/// What a peer did wrong. Nothing is consumed when parsing fails: every byte received can go
/// to a fallback.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The first byte is not version 0 (not VLESS at all, most likely).
    #[error("unknown VLESS version {0}")]
    BadVersion(u8),
    /// The UUID is no configured user's.
    #[error("unknown user id")]
    UnknownUser,
    /// The addons are not a valid protobuf `Addons` message.
    #[error("malformed header addons")]
    BadAddons,
    /// A command other than TCP (1), UDP (2) or Mux (3).
    #[error("unknown command {0}")]
    BadCommand(u8),
    /// The target address is malformed.
    #[error("bad target address: {0}")]
    BadAddress(#[from] AddressError),
    /// The response header is not version 0 (client side).
    #[error("unexpected response version {0}")]
    BadResponseVersion(u8),
}

/// What the caller configured wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Neither a UUID nor a name of 1 to 30 bytes.
    #[error("user id {0:?} is neither a UUID nor a name of 1 to 30 bytes")]
    BadUserId(String),
    /// Two users with the same UUID on one inbound.
    #[error("two users share one id")]
    DuplicateUser,
}

/// Turns a configured user id into the 16 bytes on the wire, as Xray and sing-box do: a UUID in
/// text form (with or without dashes, any case), or any other string of 1 to 30 bytes, which
/// maps to the name-based UUID (version 5, SHA-1) of that string in the nil namespace.
pub fn parse_user_id(id: &str) -> Result<[u8; 16], ConfigError> {
    if let Ok(uuid) = uuid::Uuid::try_parse(id) {
        return Ok(*uuid.as_bytes());
    }
    if id.is_empty() || id.len() > 30 {
        return Err(ConfigError::BadUserId(id.to_owned()));
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&[0u8; 16]);
    ctx.update(id.as_bytes());
    let digest = ctx.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out[6] = (out[6] & 0x0f) | 0x50;
    out[8] = (out[8] & 0x3f) | 0x80;
    Ok(out)
}

/// The users of one VLESS inbound, found in O(1) by UUID. Cheap to clone and to change one
/// user at a time ([`crate::directory`]).
#[derive(Clone, Debug, Default)]
pub struct VlessUsers {
    users: Directory<[u8; 16]>,
}

impl VlessUsers {
    /// Builds the table from `(id, uuid)` pairs (see [`parse_user_id`]).
    pub fn new(
        users: impl IntoIterator<Item = (UserId, [u8; 16])>,
    ) -> Result<VlessUsers, (UserId, ConfigError)> {
        let mut table = VlessUsers::default();
        for (id, uuid) in users {
            if table.users.get(&uuid).is_some() {
                return Err((id, ConfigError::DuplicateUser));
            }
            table.insert(id, uuid)?;
        }
        Ok(table)
    }

    /// Gives user `id` this UUID (replacing theirs); fails, changing nothing, when another
    /// user has it.
    pub fn insert(&mut self, id: UserId, uuid: [u8; 16]) -> Result<(), (UserId, ConfigError)> {
        self.users
            .insert(id, uuid)
            .map_err(|_| (id, ConfigError::DuplicateUser))
    }

    /// Removes user `id`; returns whether they were here.
    pub fn remove(&mut self, id: UserId) -> bool {
        self.users.remove(id).is_some()
    }

    /// Whether user `id` is here.
    pub fn contains(&self, id: UserId) -> bool {
        self.users.contains(id)
    }

    /// The user with this UUID.
    pub fn get(&self, uuid: &[u8; 16]) -> Option<UserId> {
        self.users.get(uuid)
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Relay a TCP stream to the target.
    Tcp(TargetAddr),
    /// Relay UDP packets (length-prefixed on the stream) to the target.
    Udp(TargetAddr),
    /// The stream carries Mux.Cool frames ([`crate::mux`]); Xray clients use this for UDP
    /// (XUDP) and for multiplexing.
    Mux,
}

/// The flow named in the addons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// No flow (empty addons or an empty flow string).
    None,
    /// `xtls-rprx-vision`.
    Vision,
    /// Any other flow; the name is this (UTF-8) range of the buffer passed in.
    Other(Range<usize>),
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Who sent it.
    pub user: UserId,
    /// What to do.
    pub command: Command,
    /// The flow the client asked for.
    pub flow: Flow,
    /// Length of the header: the payload starts at this offset of the buffer.
    pub consumed: usize,
}

/// Outcome of [`parse_request`]: [`Progress::NeedMore`] until the header is complete.
pub type Handshake = Progress<Request>;

/// Parses a request header from `buf`, which starts at the first byte of the connection.
///
/// Decides as early as the bytes allow: a wrong version after one byte, an unknown user after
/// seventeen. Never modifies or consumes `buf`; on an error all of it can go to a fallback.
pub fn parse_request(users: &VlessUsers, buf: &[u8]) -> Result<Handshake, PeerError> {
    let Some(&version) = buf.first() else {
        return Ok(Handshake::NeedMore);
    };
    if version != VERSION {
        return Err(PeerError::BadVersion(version));
    }
    let Some(uuid) = buf.get(1..17) else {
        return Ok(Handshake::NeedMore);
    };
    let uuid: &[u8; 16] = uuid.try_into().expect("16 bytes");
    let user = users.get(uuid).ok_or(PeerError::UnknownUser)?;
    let Some(&addons_len) = buf.get(17) else {
        return Ok(Handshake::NeedMore);
    };
    let addons_end = 18 + usize::from(addons_len);
    let Some(addons) = buf.get(18..addons_end) else {
        return Ok(Handshake::NeedMore);
    };
    let flow = parse_addons(addons, 18)?;
    let Some(&command) = buf.get(addons_end) else {
        return Ok(Handshake::NeedMore);
    };
    let at = addons_end + 1;
    let (command, consumed) = match command {
        1 | 2 => match TargetAddr::parse_port_first(&buf[at..])? {
            Parsed::NeedMore => return Ok(Handshake::NeedMore),
            Parsed::Done(target, n) if command == 1 => (Command::Tcp(target), at + n),
            Parsed::Done(target, n) => (Command::Udp(target), at + n),
        },
        3 => (Command::Mux, at),
        other => return Err(PeerError::BadCommand(other)),
    };
    Ok(Handshake::Done(Request {
        user,
        command,
        flow,
        consumed,
    }))
}

/// Parses the protobuf `Addons` message; `base` is its offset in the caller's buffer. Unknown
/// fields are skipped, as protobuf requires.
fn parse_addons(mut b: &[u8], base: usize) -> Result<Flow, PeerError> {
    let total = b.len();
    let mut flow = Flow::None;
    while !b.is_empty() {
        let key = read_varint(&mut b)?;
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                read_varint(&mut b)?;
            }
            1 | 5 => {
                let n = if wire_type == 1 { 8 } else { 4 };
                b = b.get(n..).ok_or(PeerError::BadAddons)?;
            }
            2 => {
                let len =
                    usize::try_from(read_varint(&mut b)?).map_err(|_| PeerError::BadAddons)?;
                let value = b.get(..len).ok_or(PeerError::BadAddons)?;
                if field == 1 {
                    let start = base + (total - b.len());
                    flow = match std::str::from_utf8(value).map_err(|_| PeerError::BadAddons)? {
                        "" => Flow::None,
                        FLOW_VISION => Flow::Vision,
                        _ => Flow::Other(start..start + len),
                    };
                }
                b = &b[len..];
            }
            _ => return Err(PeerError::BadAddons),
        }
    }
    Ok(flow)
}

fn read_varint(b: &mut &[u8]) -> Result<u64, PeerError> {
    let mut value = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *b = &b[i + 1..];
            return Ok(value);
        }
    }
    Err(PeerError::BadAddons)
}

/// Outcome of [`read_udp_packet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpFrame {
    /// The next packet has not fully arrived; keep the bytes and read more.
    NeedMore,
    /// One packet at `payload`; drop `consumed` bytes from the head.
    Packet {
        /// The packet inside the buffer passed in.
        payload: Range<usize>,
        /// Bytes of the buffer this packet used.
        consumed: usize,
    },
}

/// Takes the next length-prefixed UDP packet from the head of `buf` (UDP command). Any length
/// is valid, zero included (Xray's writer never sends an empty packet; drop one).
pub fn read_udp_packet(buf: &[u8]) -> UdpFrame {
    let Some(len) = buf.first_chunk::<2>() else {
        return UdpFrame::NeedMore;
    };
    let end = UDP_PREFIX + usize::from(u16::from_be_bytes(*len));
    if buf.len() < end {
        return UdpFrame::NeedMore;
    }
    UdpFrame::Packet {
        payload: UDP_PREFIX..end,
        consumed: end,
    }
}

/// Frames the packet at `buf[payload]` by writing its length in the [`UDP_PREFIX`] bytes in
/// front of it; returns the range to send.
///
/// # Panics
/// If there is no room in front or the packet is longer than [`MAX_UDP_PAYLOAD`] (caller bugs).
pub fn frame_udp_packet(buf: &mut [u8], payload: Range<usize>) -> Range<usize> {
    let len = u16::try_from(payload.len()).expect("UDP packet of at most 65535 bytes");
    let start = payload.start - UDP_PREFIX;
    buf[start..payload.start].copy_from_slice(&len.to_be_bytes());
    start..payload.end
}

/// Client side (tests, benches, fuzz seeds): a request to encode.
#[derive(Clone, Debug)]
pub struct ClientRequest<'a> {
    /// The user's UUID.
    pub uuid: [u8; 16],
    /// The flow to ask for; empty for none.
    pub flow: &'a str,
    /// What to ask for.
    pub command: &'a Command,
}

impl ClientRequest<'_> {
    /// Bytes [`ClientRequest::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let addons = self.addons_len();
        let target = match self.command {
            Command::Tcp(t) | Command::Udp(t) => t.port_first_len(),
            Command::Mux => 0,
        };
        1 + 16 + 1 + addons + 1 + target
    }

    fn addons_len(&self) -> usize {
        if self.flow.is_empty() {
            0
        } else {
            // Tag, one-byte length, string (flows are short).
            2 + self.flow.len()
        }
    }

    /// Writes the request header at the start of `out`; returns its length.
    ///
    /// # Panics
    /// If `out` is too short or the flow is 126 bytes or longer (caller bugs).
    pub fn encode(&self, out: &mut [u8]) -> usize {
        assert!(self.flow.len() < 126, "flow name too long");
        out[0] = VERSION;
        out[1..17].copy_from_slice(&self.uuid);
        let addons = self.addons_len();
        out[17] = addons as u8;
        let mut at = 18;
        if addons > 0 {
            out[at] = 0x0a;
            out[at + 1] = self.flow.len() as u8;
            out[at + 2..at + addons].copy_from_slice(self.flow.as_bytes());
            at += addons;
        }
        let (command, target) = match self.command {
            Command::Tcp(t) => (1, Some(t)),
            Command::Udp(t) => (2, Some(t)),
            Command::Mux => (3, None),
        };
        out[at] = command;
        at += 1;
        if let Some(target) = target {
            at += target.write_port_first(&mut out[at..]);
        }
        at
    }
}

/// Client side: parses the response header at the head of `buf`. `Ok(None)`: not complete yet;
/// `Ok(Some(n))`: the payload starts at `n`.
pub fn parse_response(buf: &[u8]) -> Result<Option<usize>, PeerError> {
    let [version, len, ..] = buf else {
        return Ok(None);
    };
    if *version != VERSION {
        return Err(PeerError::BadResponseVersion(*version));
    }
    let end = 2 + usize::from(*len);
    if buf.len() < end {
        return Ok(None);
    }
    parse_addons(&buf[2..end], 2)?;
    Ok(Some(end))
}
