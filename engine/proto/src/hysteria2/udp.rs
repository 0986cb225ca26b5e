//! UDP messages, one per QUIC datagram in each direction, their fragmentation and reassembly.
//!
//! ```text
//! +---------+---------+---------+----------+----------+---------+---------+
//! | session | packet  | frag id | frag cnt | addr len | address | payload |
//! | u32 BE  | u16 BE  | u8      | u8       | varint   | "h:p"   | 1+ B    |
//! +---------+---------+---------+----------+----------+---------+---------+
//! ```
//!
//! A packet larger than the datagram limit travels as up to 255 fragments: each carries the
//! whole header (same session, packet id and address), its index and the count, and a piece of
//! the payload. A fragment count of 0 or 1 means "not fragmented" and the packet id is then
//! meaningless. [`Reassembly`] keeps one packet in flight per session, as the reference does:
//! a fragment of another packet discards what was gathered so far.

use std::ops::Range;

use crate::hysteria2::varint;
use crate::hysteria2::{parse_host_port, PeerError, MAX_ADDRESS_LEN};
use crate::{Progress, TargetAddr};

/// Bytes of a UDP message before the address length.
pub const FIXED_HEADER_LEN: usize = 8;

/// The largest packet [`Reassembly`] puts together: a UDP payload's maximum.
pub const MAX_PACKET_LEN: usize = 65_535;

/// One UDP message, borrowed from the datagram it arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpMessage<'a> {
    /// The client's session (one outbound socket each on the server).
    pub session_id: u32,
    /// Which packet of the session the fragment belongs to (only meaningful when fragmented).
    pub packet_id: u16,
    /// This fragment's index, from 0.
    pub frag_id: u8,
    /// How many fragments the packet has (0 or 1: not fragmented).
    pub frag_count: u8,
    /// The address text, `host:port` (see [`UdpMessage::target`]).
    pub address: &'a [u8],
    /// The payload (a piece of it when fragmented).
    pub payload: &'a [u8],
}

impl<'a> UdpMessage<'a> {
    /// Parses a whole datagram.
    pub fn parse(datagram: &'a [u8]) -> Result<UdpMessage<'a>, PeerError> {
        let Some((fixed, rest)) = datagram.split_first_chunk::<FIXED_HEADER_LEN>() else {
            return Err(PeerError::Truncated);
        };
        let Progress::Done((len, n)) = varint::decode(rest) else {
            return Err(PeerError::Truncated);
        };
        if len == 0 || len > MAX_ADDRESS_LEN as u64 {
            return Err(PeerError::AddressLength(len));
        }
        let rest = &rest[n..];
        let len = len as usize;
        if rest.len() < len {
            return Err(PeerError::Truncated);
        }
        let (address, payload) = rest.split_at(len);
        if payload.is_empty() {
            return Err(PeerError::EmptyPayload);
        }
        Ok(UdpMessage {
            session_id: u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]),
            packet_id: u16::from_be_bytes([fixed[4], fixed[5]]),
            frag_id: fixed[6],
            frag_count: fixed[7],
            address,
            payload,
        })
    }

    /// The address parsed as a target.
    pub fn target(&self) -> Result<TargetAddr, PeerError> {
        parse_host_port(self.address)
    }

    /// Length of the header in front of the payload.
    pub fn header_len(&self) -> usize {
        header_len(self.address.len())
    }

    /// Length of the whole datagram.
    pub fn encoded_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the header at the start of `out`; returns its length. The payload is the
    /// caller's to place after it (it often is there already).
    ///
    /// # Panics
    /// If `out` is shorter than [`UdpMessage::header_len`] (a caller bug).
    pub fn write_header(&self, out: &mut [u8]) -> usize {
        out[..4].copy_from_slice(&self.session_id.to_be_bytes());
        out[4..6].copy_from_slice(&self.packet_id.to_be_bytes());
        out[6] = self.frag_id;
        out[7] = self.frag_count;
        let n = FIXED_HEADER_LEN + varint::encode(self.address.len() as u64, &mut out[8..]);
        out[n..n + self.address.len()].copy_from_slice(self.address);
        n + self.address.len()
    }

    /// Appends the whole datagram to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.resize(at + self.header_len(), 0);
        self.write_header(&mut out[at..]);
        out.extend_from_slice(self.payload);
    }
}

/// Header length for an address of `address_len` bytes.
pub fn header_len(address_len: usize) -> usize {
    FIXED_HEADER_LEN + varint::encoded_len(address_len as u64) + address_len
}

/// Why an outgoing packet cannot be sent as datagrams of the size given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The header alone leaves no room for payload.
    #[error("a {max}-byte datagram has no room for payload after a {header}-byte header")]
    NoRoom {
        /// The datagram limit.
        max: usize,
        /// The header length.
        header: usize,
    },
    /// More than 255 fragments would be needed.
    #[error("{0} bytes need more than 255 fragments")]
    TooLarge(usize),
    /// An empty payload, which the protocol cannot carry.
    #[error("empty payload")]
    Empty,
}

/// Cuts `message` into messages that each fit `max_datagram` bytes, in order. A message that
/// fits is returned as it is; otherwise every piece but the last carries the same payload
/// length, under `message`'s packet id.
pub fn fragment<'a>(
    message: &UdpMessage<'a>,
    max_datagram: usize,
) -> Result<impl Iterator<Item = UdpMessage<'a>> + Clone, FragmentError> {
    let header = message.header_len();
    let total = message.payload.len();
    if total == 0 {
        return Err(FragmentError::Empty);
    }
    if header >= max_datagram {
        return Err(FragmentError::NoRoom {
            max: max_datagram,
            header,
        });
    }
    let piece = max_datagram - header;
    let (piece, count) = if message.encoded_len() <= max_datagram {
        (total, None)
    } else {
        let count = total.div_ceil(piece);
        if count > usize::from(u8::MAX) {
            return Err(FragmentError::TooLarge(total));
        }
        (piece, Some(count as u8))
    };
    let message = *message;
    Ok(message
        .payload
        .chunks(piece)
        .enumerate()
        .map(move |(i, payload)| match count {
            None => message,
            Some(count) => UdpMessage {
                frag_id: i as u8,
                frag_count: count,
                payload,
                ..message
            },
        }))
}

/// What [`Reassembly::feed`] made of a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembled<'m> {
    /// The message was not fragmented: its payload, as it arrived.
    Whole(&'m [u8]),
    /// The message completed a packet: the payload put together, in an allocation of its
    /// own (exactly its length) that the caller keeps.
    Joined(Vec<u8>),
    /// The packet is not complete yet (or the fragment was dropped).
    Pending,
}

/// Puts fragmented packets of one session back together, one packet at a time.
///
/// Memory is bounded twice: a packet holds at most [`MAX_PACKET_LEN`] bytes, and each
/// [`Reassembly::feed`] gets the room the caller grants (a budget it shares between many
/// sessions, measured with [`Reassembly::held`]). A fragment that would grow the packet past
/// either drops the packet. Nothing is kept between packets: when a packet completes (its
/// bytes move out in [`Reassembled::Joined`]) or is dropped, every buffer is freed, so an idle
/// session holds no memory. A fragment with another packet id or fragment count than the
/// packet in flight starts a new packet, dropping the old one; a fragment id not below its
/// count and a fragment received twice are ignored.
#[derive(Debug, Default)]
pub struct Reassembly {
    packet_id: u16,
    /// Fragment count of the packet in flight; 0 when none is.
    count: u8,
    received: u8,
    /// Where each fragment's bytes lie in `gathered`, by fragment id (`gathered` never
    /// passes [`MAX_PACKET_LEN`], so the offsets fit 16 bits).
    pieces: Vec<Option<Range<u16>>>,
    /// Fragments' payloads in arrival order.
    gathered: Vec<u8>,
}

impl Reassembly {
    /// An empty buffer.
    pub fn new() -> Reassembly {
        Reassembly::default()
    }

    /// Whether part of a packet is held.
    pub fn in_flight(&self) -> bool {
        self.count != 0
    }

    /// Bytes of memory the packet in flight holds (0 when none is).
    pub fn held(&self) -> usize {
        self.gathered.capacity()
            + self.pieces.capacity() * std::mem::size_of::<Option<Range<u16>>>()
    }

    /// Drops the packet in flight and frees its buffers.
    fn reset(&mut self) {
        self.count = 0;
        self.received = 0;
        self.pieces = Vec::new();
        self.gathered = Vec::new();
    }

    /// Takes one message of this session, growing what it holds ([`Reassembly::held`]) by at
    /// most `room` bytes: a fragment that needs more drops the packet in flight.
    pub fn feed<'m>(&mut self, message: &UdpMessage<'m>, room: usize) -> Reassembled<'m> {
        let (id, count) = (message.frag_id, message.frag_count);
        if count <= 1 {
            return Reassembled::Whole(message.payload);
        }
        if id >= count {
            return Reassembled::Pending;
        }
        let mut room = room;
        if self.count != count || self.packet_id != message.packet_id {
            let freed = self.held();
            self.reset();
            room = room.saturating_add(freed);
            let pieces = usize::from(count) * std::mem::size_of::<Option<Range<u16>>>();
            if pieces > room {
                return Reassembled::Pending;
            }
            room -= pieces;
            self.packet_id = message.packet_id;
            self.count = count;
            self.pieces = vec![None; usize::from(count)];
        }
        let slot = usize::from(id);
        if self.pieces[slot].is_some() {
            return Reassembled::Pending;
        }
        let at = self.gathered.len();
        let end = at + message.payload.len();
        if end > MAX_PACKET_LEN {
            self.reset();
            return Reassembled::Pending;
        }
        let capacity = self.gathered.capacity();
        if end > capacity {
            // Doubling, as a `Vec` grows, but never past one packet's largest size, and
            // only as far as the room allows.
            let grown = end.max((2 * capacity).min(MAX_PACKET_LEN));
            if grown - capacity > room {
                self.reset();
                return Reassembled::Pending;
            }
            self.gathered.reserve_exact(grown - at);
        }
        self.gathered.extend_from_slice(message.payload);
        // Both fit 16 bits: `end` is at most MAX_PACKET_LEN (checked above).
        self.pieces[slot] = Some(at as u16..end as u16);
        self.received += 1;
        if self.received < count {
            return Reassembled::Pending;
        }
        let mut joined = Vec::with_capacity(self.gathered.len());
        for piece in self.pieces.iter().flatten() {
            joined.extend_from_slice(
                &self.gathered[usize::from(piece.start)..usize::from(piece.end)],
            );
        }
        self.reset();
        Reassembled::Joined(joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8]) -> UdpMessage<'_> {
        UdpMessage {
            session_id: 0xdead_beef,
            packet_id: 7,
            frag_id: 0,
            frag_count: 1,
            address: b"example.com:53",
            payload,
        }
    }

    fn datagram(m: &UdpMessage<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    #[test]
    fn wire_layout_and_round_trip() {
        let m = message(b"hello");
        let wire = datagram(&m);
        let mut want = vec![0xde, 0xad, 0xbe, 0xef, 0, 7, 0, 1, 14];
        want.extend_from_slice(b"example.com:53hello");
        assert_eq!(wire, want);
        assert_eq!(UdpMessage::parse(&wire), Ok(m));
        assert_eq!(m.target(), Ok(TargetAddr::Domain("example.com".into(), 53)));
        // Every truncation fails: up to the address it is truncated, then payload is missing.
        for cut in 0..=9 + 14 {
            let want = if cut == 9 + 14 {
                PeerError::EmptyPayload
            } else {
                PeerError::Truncated
            };
            assert_eq!(UdpMessage::parse(&wire[..cut]), Err(want), "{cut}");
        }
    }

    #[test]
    fn non_minimal_address_length_and_bad_lengths() {
        let mut wire = vec![0, 0, 0, 1, 0, 0, 0, 1, 0x80, 0, 0, 3];
        wire.extend_from_slice(b"h:1x");
        let m = UdpMessage::parse(&wire).unwrap();
        assert_eq!((m.address, m.payload), (&b"h:1"[..], &b"x"[..]));
        let zero = [0, 0, 0, 1, 0, 0, 0, 1, 0, b'x'];
        assert_eq!(UdpMessage::parse(&zero), Err(PeerError::AddressLength(0)));
        let over = [0, 0, 0, 1, 0, 0, 0, 1, 0x48, 0x01, b'x'];
        assert_eq!(
            UdpMessage::parse(&over),
            Err(PeerError::AddressLength(2049))
        );
    }

    #[test]
    fn fragments_fit_and_reassemble_in_any_order() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let m = message(&payload);
        let pieces: Vec<UdpMessage<'_>> = fragment(&m, 1200).unwrap().collect();
        assert_eq!(pieces.len(), 3);
        for (i, p) in pieces.iter().enumerate() {
            assert!(p.encoded_len() <= 1200);
            assert_eq!((p.frag_id as usize, p.frag_count), (i, 3));
        }
        let wires: Vec<Vec<u8>> = pieces.iter().map(datagram).collect();
        for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
            let mut r = Reassembly::new();
            for (n, &i) in order.iter().enumerate() {
                let got = UdpMessage::parse(&wires[i]).unwrap();
                match r.feed(&got, usize::MAX) {
                    Reassembled::Joined(joined) => {
                        assert_eq!(n, 2);
                        assert_eq!(joined, payload);
                    }
                    Reassembled::Pending => assert!(n < 2),
                    Reassembled::Whole(_) => panic!("fragments are never whole"),
                }
            }
            assert!(!r.in_flight());
        }
        // A packet that fits is one message, unchanged.
        let small = message(b"x");
        assert_eq!(fragment(&small, 1200).unwrap().collect::<Vec<_>>(), [small]);
    }

    #[test]
    fn fragment_limits() {
        let m = message(b"abc");
        assert_eq!(
            fragment(&m, m.header_len()).err(),
            Some(FragmentError::NoRoom {
                max: m.header_len(),
                header: m.header_len()
            })
        );
        let big = vec![0u8; 256];
        assert_eq!(
            fragment(&message(&big), m.header_len() + 1).err(),
            Some(FragmentError::TooLarge(256))
        );
        assert_eq!(
            fragment(&message(&big[..255]), m.header_len() + 1)
                .unwrap()
                .count(),
            255
        );
        assert_eq!(
            fragment(&message(b""), 1200).err(),
            Some(FragmentError::Empty)
        );
    }

    #[test]
    fn newer_packet_drops_the_incomplete_one_and_duplicates_are_ignored() {
        let frag = |packet_id, frag_id, payload| UdpMessage {
            packet_id,
            frag_id,
            frag_count: 2,
            ..message(payload)
        };
        let mut r = Reassembly::new();
        assert_eq!(
            r.feed(&frag(1, 0, b"old"), usize::MAX),
            Reassembled::Pending
        );
        assert_eq!(
            r.feed(&frag(1, 0, b"dup"), usize::MAX),
            Reassembled::Pending
        );
        assert_eq!(r.feed(&frag(2, 1, b"-b"), usize::MAX), Reassembled::Pending);
        // Packet 1's second fragment now starts packet 1 again; packet 2 is gone.
        assert_eq!(r.feed(&frag(1, 1, b"X"), usize::MAX), Reassembled::Pending);
        assert_eq!(r.feed(&frag(2, 0, b"a"), usize::MAX), Reassembled::Pending);
        assert_eq!(
            r.feed(&frag(2, 1, b"-b"), usize::MAX),
            Reassembled::Joined(b"a-b".to_vec())
        );
        // Bad ids and unfragmented messages do not disturb a packet in flight.
        assert_eq!(r.feed(&frag(3, 0, b"x"), usize::MAX), Reassembled::Pending);
        let bad = UdpMessage {
            frag_id: 2,
            ..frag(3, 0, b"?")
        };
        assert_eq!(r.feed(&bad, usize::MAX), Reassembled::Pending);
        assert_eq!(
            r.feed(&message(b"solo"), usize::MAX),
            Reassembled::Whole(b"solo")
        );
        let zero_count = UdpMessage {
            frag_count: 0,
            ..message(b"z")
        };
        assert_eq!(r.feed(&zero_count, usize::MAX), Reassembled::Whole(b"z"));
        assert_eq!(
            r.feed(&frag(3, 1, b"y"), usize::MAX),
            Reassembled::Joined(b"xy".to_vec())
        );
    }

    #[test]
    fn memory_is_bounded() {
        let chunk = vec![1u8; 60_000];
        let frag = |frag_id| UdpMessage {
            frag_id,
            frag_count: 3,
            ..message(&chunk)
        };
        let mut r = Reassembly::new();
        assert_eq!(r.feed(&frag(0), usize::MAX), Reassembled::Pending);
        assert!(r.held() <= MAX_PACKET_LEN + 3 * 8);
        // Past MAX_PACKET_LEN the packet is dropped, not grown, and its memory freed.
        assert_eq!(r.feed(&frag(1), usize::MAX), Reassembled::Pending);
        assert!(!r.in_flight());
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn buffers_are_freed_when_a_packet_completes_or_is_dropped() {
        let payload: Vec<u8> = (0..30_000u32).map(|i| i as u8).collect();
        let pieces: Vec<Vec<u8>> = fragment(&message(&payload), 1200)
            .unwrap()
            .map(|p| datagram(&p))
            .collect();
        let mut r = Reassembly::new();
        let mut joined = None;
        for wire in &pieces {
            if let Reassembled::Joined(p) = r.feed(&UdpMessage::parse(wire).unwrap(), usize::MAX) {
                joined = Some(p);
            }
            assert!(r.held() <= 2 * payload.len() + 256 * 8);
        }
        let joined = joined.expect("the packet completes");
        assert_eq!(joined, payload);
        assert_eq!(
            joined.capacity(),
            payload.len(),
            "the packet's own allocation"
        );
        assert_eq!(
            (r.held(), r.in_flight()),
            (0, false),
            "nothing kept after a packet"
        );
        // A packet given up for a newer one frees what it held.
        let frag = |packet_id, frag_id| UdpMessage {
            packet_id,
            frag_id,
            frag_count: 2,
            ..message(&payload)
        };
        assert_eq!(r.feed(&frag(1, 0), usize::MAX), Reassembled::Pending);
        assert!(r.held() >= payload.len());
        assert_eq!(r.feed(&frag(2, 1), usize::MAX), Reassembled::Pending);
        assert!(r.held() < 2 * payload.len(), "only the new packet is held");
    }

    #[test]
    fn a_fragment_beyond_the_room_drops_the_packet() {
        let chunk = [7u8; 1000];
        let frag = |frag_id| UdpMessage {
            frag_id,
            frag_count: 3,
            ..message(&chunk)
        };
        let mut r = Reassembly::new();
        // Not even the first fragment fits: nothing is held.
        assert_eq!(r.feed(&frag(0), 999), Reassembled::Pending);
        assert_eq!((r.held(), r.in_flight()), (0, false));
        // The first fits, the second does not: the packet goes, and its memory with it.
        assert_eq!(r.feed(&frag(0), 1100), Reassembled::Pending);
        let held = r.held();
        assert!((1000..=1100).contains(&held), "{held}");
        assert_eq!(r.feed(&frag(1), 500), Reassembled::Pending);
        assert_eq!((r.held(), r.in_flight()), (0, false));
        // With room, the same packet completes.
        for id in 0..2 {
            assert_eq!(r.feed(&frag(id), 4000), Reassembled::Pending);
        }
        assert_eq!(
            r.feed(&frag(2), 4000),
            Reassembled::Joined([7u8; 3000].to_vec())
        );
    }
}
