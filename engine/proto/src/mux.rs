//! Mux.Cool frames, with the XUDP extension: many sessions over one VLESS or VMess stream
//! (command 3). Xray clients send UDP this way (XUDP) even with multiplexing off; sing-box
//! does with `packet_encoding: xudp`.
//!
//! ```text
//! Frame:
//! +----------+------------------------------------------+----------+---------+
//! | meta len | metadata                                 | data len | data    |
//! | u16 BE   | (meta len bytes, at most 512)            | u16 BE   |         |
//! +----------+------------------------------------------+----------+---------+
//!                                                        only with option Data (0x01)
//! Metadata:
//! +------------+--------+--------+---------+-----------------------+---------------+
//! | session id | status | option | network | port | type | address | global id     |
//! | u16 BE     | u8     | u8     | u8      | port first, see       | 8 bytes       |
//! |            |        |        |         | vless::address        | (XUDP, New)   |
//! +------------+--------+--------+---------+-----------------------+---------------+
//!   status: 1 New, 2 Keep, 3 End, 4 KeepAlive      option bits: 0x01 Data, 0x02 Error
//!   network: 1 TCP, 2 UDP; present in New frames, and in Keep frames of UDP sessions (XUDP:
//!   the packet's destination client to server, its source server to client)
//! ```
//!
//! Sources: [Mux.Cool] and Xray-core's `common/mux/frame.go` and `common/xudp` (XUDP: the UDP
//! address in Keep frames, the 8-byte GlobalID after the address of a New frame with data).
//!
//! Supported: parsing and writing whole frames of every status, TCP and UDP sessions, XUDP
//! per-packet addresses and the GlobalID. The session logic (opening a relay per New frame,
//! answering unknown sessions with End, re-attaching a UDP session to a new connection by its
//! GlobalID for full-cone NAT) is the engine's. Not supported: the source/local addresses that
//! Xray's reverse proxy puts after the target (the bytes are skipped), mux-level flow control
//! (there is none in the protocol).
//!
//! [Mux.Cool]: https://xtls.github.io/en/development/protocols/muxcool.html

use std::ops::Range;

use crate::address::{AddressError, Parsed, TargetAddr};
use crate::vless::address::MAX_PORT_FIRST_LEN;

/// Whether a Mux.Cool stream's first bytes start a frame of session 0 for network UDP: the
/// first frame of an XUDP connection (Xray's test; it reads only these bytes, so a stream too
/// short to tell is not XUDP).
pub fn opens_xudp_session(first: &[u8]) -> bool {
    // meta len (2), session id (2), status, option, network.
    first.len() >= 7 && first[2..4] == [0, 0] && first[6] == Network::Udp as u8
}

/// Largest metadata accepted (Xray rejects longer).
pub const MAX_METADATA_LEN: usize = 512;

/// Largest frame: meta length, metadata, data length, data.
pub const MAX_FRAME_LEN: usize = 2 + MAX_METADATA_LEN + 2 + u16::MAX as usize;

/// Largest header [`Frame::write`] produces: room a caller leaves in front of frame data.
pub const MAX_HEADER_LEN: usize = 2 + 4 + 1 + MAX_PORT_FIRST_LEN + 8 + 2;

/// Option bit: a data length and data follow the metadata.
pub const OPTION_DATA: u8 = 0x01;
/// Option bit: the session ended with an error (End frames).
pub const OPTION_ERROR: u8 = 0x02;

/// What a frame does to its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Opens the session (carries the target).
    New = 1,
    /// Data for an open session.
    Keep = 2,
    /// Closes the session.
    End = 3,
    /// Keeps the connection alive; any data is discarded.
    KeepAlive = 4,
}

/// The transport of a session, or of one XUDP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// A stream.
    Tcp = 1,
    /// Packets.
    Udp = 2,
}

/// What a peer did wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The metadata is longer than [`MAX_METADATA_LEN`].
    #[error("metadata of {0} bytes exceeds the limit of 512")]
    Oversize(usize),
    /// The metadata ends before the fields its status requires.
    #[error("metadata is truncated")]
    TruncatedMetadata,
    /// A status other than 1 to 4.
    #[error("unknown session status {0}")]
    BadStatus(u8),
    /// A network other than TCP (1) or UDP (2) in a New frame.
    #[error("unknown network {0}")]
    BadNetwork(u8),
    /// The address is malformed.
    #[error("bad address: {0}")]
    BadAddress(#[from] AddressError),
}

/// The metadata of one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The session this frame belongs to.
    pub session: u16,
    /// What it does.
    pub status: Status,
    /// Option bits ([`OPTION_DATA`], [`OPTION_ERROR`]). [`Frame::write`] sets or clears
    /// `OPTION_DATA` itself.
    pub options: u8,
    /// New frames: the session's network and target. Keep frames of UDP sessions (XUDP): the
    /// packet's destination (client to server) or source (server to client); `None` means the
    /// session's target.
    pub target: Option<(Network, TargetAddr)>,
    /// XUDP: the GlobalID of a New UDP frame, naming the client's UDP socket across
    /// connections. `None` when absent or all zero (Xray ignores an empty one).
    pub global_id: Option<[u8; 8]>,
}

/// Outcome of [`parse_frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MuxRead {
    /// The frame has not fully arrived; keep the bytes and read more (a frame is at most
    /// [`MAX_FRAME_LEN`] bytes).
    NeedMore,
    /// A whole frame; drop `consumed` bytes from the head once `data` is used.
    Frame {
        /// Its metadata.
        frame: Frame,
        /// The frame's data inside the buffer (empty without [`OPTION_DATA`]). For a TCP
        /// session a slice of the stream; for a UDP session one packet.
        data: Range<usize>,
        /// Bytes of the buffer the frame used.
        consumed: usize,
    },
}

/// Parses the frame at the head of `buf`; a frame whose address is a host name allocates the
/// name, others allocate nothing. Follows Xray's server: a Keep frame carries an
/// address only when its network byte says UDP; anything after the fields a status uses is
/// skipped.
pub fn parse_frame(buf: &[u8]) -> Result<MuxRead, PeerError> {
    let Some(meta_len) = buf.first_chunk::<2>() else {
        return Ok(MuxRead::NeedMore);
    };
    let meta_len = usize::from(u16::from_be_bytes(*meta_len));
    if meta_len > MAX_METADATA_LEN {
        return Err(PeerError::Oversize(meta_len));
    }
    let Some(meta) = buf.get(2..2 + meta_len) else {
        return Ok(MuxRead::NeedMore);
    };
    let frame = parse_metadata(meta)?;
    let mut end = 2 + meta_len;
    let mut data = end..end;
    if frame.options & OPTION_DATA != 0 {
        let Some(len) = buf.get(end..end + 2) else {
            return Ok(MuxRead::NeedMore);
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        data = end + 2..end + 2 + len;
        end = data.end;
        if buf.len() < end {
            return Ok(MuxRead::NeedMore);
        }
    }
    Ok(MuxRead::Frame {
        frame,
        data,
        consumed: end,
    })
}

fn parse_metadata(meta: &[u8]) -> Result<Frame, PeerError> {
    let [s0, s1, status, options, rest @ ..] = meta else {
        return Err(PeerError::TruncatedMetadata);
    };
    let status = match status {
        1 => Status::New,
        2 => Status::Keep,
        3 => Status::End,
        4 => Status::KeepAlive,
        &other => return Err(PeerError::BadStatus(other)),
    };
    let mut frame = Frame {
        session: u16::from_be_bytes([*s0, *s1]),
        status,
        options: *options,
        target: None,
        global_id: None,
    };
    let has_target = match (status, rest.first()) {
        (Status::New, _) => true,
        (Status::Keep, Some(&network)) => network == Network::Udp as u8,
        _ => false,
    };
    if !has_target {
        return Ok(frame);
    }
    let Some((&network, address)) = rest.split_first() else {
        return Err(PeerError::TruncatedMetadata);
    };
    let network = match network {
        1 => Network::Tcp,
        2 => Network::Udp,
        other => return Err(PeerError::BadNetwork(other)),
    };
    let (target, n) = match TargetAddr::parse_port_first(address)? {
        Parsed::Done(target, n) => (target, n),
        Parsed::NeedMore => return Err(PeerError::TruncatedMetadata),
    };
    frame.target = Some((network, target));
    if status == Status::New && network == Network::Udp && frame.options & OPTION_DATA != 0 {
        if let Some(id) = address[n..].first_chunk::<8>() {
            frame.global_id = Some(*id).filter(|id| *id != [0; 8]);
        }
    }
    Ok(frame)
}

impl Frame {
    /// A Keep frame carrying data for `session` (server to client). For an XUDP session pass
    /// the packet's source as `from`.
    pub fn keep(session: u16, from: Option<TargetAddr>) -> Frame {
        Frame {
            session,
            status: Status::Keep,
            options: OPTION_DATA,
            target: from.map(|a| (Network::Udp, a)),
            global_id: None,
        }
    }

    /// An End frame for `session`, with the error bit if it failed.
    pub fn end(session: u16, error: bool) -> Frame {
        Frame {
            session,
            status: Status::End,
            options: if error { OPTION_ERROR } else { 0 },
            target: None,
            global_id: None,
        }
    }

    fn metadata_len(&self) -> usize {
        let target = match (&self.target, self.status) {
            (Some((_, t)), Status::New | Status::Keep) => 1 + t.port_first_len(),
            _ => 0,
        };
        let global_id = match (self.status, &self.target, self.global_id) {
            (Status::New, Some((Network::Udp, _)), Some(_)) => 8,
            _ => 0,
        };
        4 + target + global_id
    }

    /// Bytes [`Frame::write`] writes (the data itself not included).
    pub fn header_len(&self, data: Option<u16>) -> usize {
        2 + self.metadata_len() + if data.is_some() { 2 } else { 0 }
    }

    /// Writes the frame header at the start of `out`: meta length, metadata, and with
    /// `data = Some(len)` the Data option bit and the data length (the caller puts the data
    /// right after). Returns the length written.
    ///
    /// # Panics
    /// If `out` is shorter than [`Frame::header_len`] (a caller bug).
    pub fn write(&self, out: &mut [u8], data: Option<u16>) -> usize {
        let meta_len = self.metadata_len();
        out[..2].copy_from_slice(&(meta_len as u16).to_be_bytes());
        out[2..4].copy_from_slice(&self.session.to_be_bytes());
        out[4] = self.status as u8;
        out[5] = match data {
            Some(_) => self.options | OPTION_DATA,
            None => self.options & !OPTION_DATA,
        };
        let mut at = 6;
        if let (Some((network, target)), Status::New | Status::Keep) = (&self.target, self.status) {
            out[at] = *network as u8;
            at += 1 + target.write_port_first(&mut out[at + 1..]);
        }
        if at < 2 + meta_len {
            let id = self.global_id.expect("counted in metadata_len");
            out[at..at + 8].copy_from_slice(&id);
            at += 8;
        }
        if let Some(len) = data {
            out[at..at + 2].copy_from_slice(&len.to_be_bytes());
            at += 2;
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(buf: &[u8]) -> (Frame, Range<usize>, usize) {
        match parse_frame(buf) {
            Ok(MuxRead::Frame {
                frame,
                data,
                consumed,
            }) => (frame, data, consumed),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    fn encode(frame: &Frame, data: Option<&[u8]>) -> Vec<u8> {
        let len = data.map(|d| d.len() as u16);
        let mut out = vec![0u8; frame.header_len(len)];
        assert_eq!(frame.write(&mut out, len), out.len());
        out.extend_from_slice(data.unwrap_or_default());
        out
    }

    fn udp_target() -> TargetAddr {
        TargetAddr::Ip("8.8.8.8:53".parse().unwrap())
    }

    /// Xray's XUDP test on a stream's first bytes: a New frame of session 0 for UDP.
    #[test]
    fn xudp_first_frame() {
        let new = |session, network| Frame {
            session,
            status: Status::New,
            options: 0,
            target: Some((network, udp_target())),
            global_id: None,
        };
        assert!(opens_xudp_session(&encode(&new(0, Network::Udp), None)));
        assert!(!opens_xudp_session(&encode(&new(1, Network::Udp), None)));
        assert!(!opens_xudp_session(&encode(&new(0, Network::Tcp), None)));
        assert!(!opens_xudp_session(
            &encode(&new(0, Network::Udp), None)[..6]
        ));
    }

    /// Frames of every status round-trip, and every prefix needs more.
    #[test]
    fn round_trip_and_every_prefix() {
        let cases = [
            (
                Frame {
                    session: 1,
                    status: Status::New,
                    options: 0,
                    target: Some((
                        Network::Tcp,
                        TargetAddr::Domain("www.example.com".into(), 80),
                    )),
                    global_id: None,
                },
                Some(&b"GET /"[..]),
            ),
            (
                Frame {
                    session: 0,
                    status: Status::New,
                    options: OPTION_DATA,
                    target: Some((Network::Udp, udp_target())),
                    global_id: Some([1, 2, 3, 4, 5, 6, 7, 8]),
                },
                Some(&b"dns query"[..]),
            ),
            (Frame::keep(7, None), Some(&[0u8; 1000][..])),
            (
                Frame::keep(
                    0,
                    Some(TargetAddr::Ip("[2001:db8::1]:443".parse().unwrap())),
                ),
                Some(&b"quic"[..]),
            ),
            (Frame::end(3, true), None),
            (
                Frame {
                    session: 0,
                    status: Status::KeepAlive,
                    options: 0,
                    target: None,
                    global_id: None,
                },
                None,
            ),
        ];
        for (frame, data) in cases {
            let wire = encode(&frame, data);
            let (got, range, consumed) = read(&wire);
            let mut want = frame.clone();
            if data.is_some() {
                want.options |= OPTION_DATA;
            }
            assert_eq!(got, want);
            assert_eq!(&wire[range], data.unwrap_or_default());
            assert_eq!(consumed, wire.len());
            for cut in 0..wire.len() {
                assert_eq!(parse_frame(&wire[..cut]), Ok(MuxRead::NeedMore), "{cut}");
            }
        }
    }

    /// What Xray's XUDP client writes for a first packet to 8.8.8.8:53 (GlobalID included) and
    /// for a later one; what sing-box writes (no GlobalID).
    #[test]
    fn xudp_frames_as_clients_write_them() {
        let xray_new = [
            0, 20, 0, 0, 1, 1, 2, 0, 53, 1, 8, 8, 8, 8, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11,
            0x22, 0, 3, b'a', b'b', b'c',
        ];
        let (frame, data, consumed) = read(&xray_new);
        assert_eq!(frame.status, Status::New);
        assert_eq!(frame.target, Some((Network::Udp, udp_target())));
        assert_eq!(
            frame.global_id,
            Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11, 0x22])
        );
        assert_eq!(&xray_new[data], b"abc");
        assert_eq!(consumed, xray_new.len());

        let xray_keep = [0, 12, 0, 0, 2, 1, 2, 0, 53, 1, 8, 8, 4, 4, 0, 1, b'x'];
        let (frame, data, _) = read(&xray_keep);
        assert_eq!(frame.status, Status::Keep);
        assert_eq!(
            frame.target,
            Some((Network::Udp, TargetAddr::Ip("8.8.4.4:53".parse().unwrap())))
        );
        assert_eq!(&xray_keep[data], b"x");

        let sing_box_new = [0, 12, 0, 0, 1, 1, 2, 0, 53, 1, 8, 8, 8, 8, 0, 1, b'q'];
        let (frame, _, _) = read(&sing_box_new);
        assert_eq!(frame.global_id, None);
        // An all-zero GlobalID is no GlobalID.
        let mut zero_id = xray_new;
        zero_id[14..22].fill(0);
        assert_eq!(read(&zero_id).0.global_id, None);
    }

    /// A Keep frame of a TCP session carries no address even when bytes follow; extra
    /// metadata (Xray's reverse-proxy source addresses) is skipped.
    #[test]
    fn extra_metadata_is_skipped() {
        let keep_tcp = [0, 6, 0, 9, 2, 1, 1, 0xff, 0, 1, b'y'];
        let (frame, data, _) = read(&keep_tcp);
        assert_eq!((frame.session, frame.target), (9, None));
        assert_eq!(&keep_tcp[data], b"y");
        let end_with_junk = [0, 6, 0, 9, 3, 0, 7, 7];
        assert_eq!(read(&end_with_junk).0, Frame::end(9, false));
    }

    #[test]
    fn peer_errors() {
        let cases: [(&[u8], PeerError); 8] = [
            (&[2, 1], PeerError::Oversize(513)),
            (&[0, 3, 0, 1, 1], PeerError::TruncatedMetadata),
            (&[0, 4, 0, 1, 9, 0], PeerError::BadStatus(9)),
            (&[0, 4, 0, 1, 1, 0], PeerError::TruncatedMetadata),
            (&[0, 8, 0, 1, 1, 0, 3, 0, 80, 1], PeerError::BadNetwork(3)),
            (
                &[0, 8, 0, 1, 1, 0, 1, 0, 80, 1],
                PeerError::TruncatedMetadata,
            ),
            (
                &[0, 8, 0, 1, 1, 0, 1, 0, 80, 4],
                PeerError::BadAddress(AddressError::UnknownType(4)),
            ),
            (
                &[0, 8, 0, 1, 2, 0, 2, 0, 80, 2],
                PeerError::TruncatedMetadata,
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(parse_frame(wire), Err(want), "{wire:?}");
        }
    }

    #[test]
    fn header_fits_the_headroom() {
        let frame = Frame {
            session: u16::MAX,
            status: Status::New,
            options: 0,
            target: Some((Network::Udp, TargetAddr::Domain("a".repeat(255), 1))),
            global_id: Some([9; 8]),
        };
        assert_eq!(frame.header_len(Some(0)), MAX_HEADER_LEN);
    }
}
