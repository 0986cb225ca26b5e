//! The TCP proxy request a client opens each bidirectional stream with, and the server's
//! response (wire layout in the [module docs](super)).
//!
//! ```text
//! TCPRequest   [varint 0x401] [varint addr len] [addr "host:port"] [varint pad len] [padding]
//! TCPResponse  [u8 status]    [varint msg len]  [message]          [varint pad len] [padding]
//! ```

use crate::hysteria2::varint;
use crate::hysteria2::{
    parse_host_port, PeerError, MAX_ADDRESS_LEN, MAX_MESSAGE_LEN, MAX_PADDING_LEN,
};
use crate::{Progress, TargetAddr};

/// The frame type that opens a TCP proxy stream.
pub const TCP_REQUEST: u64 = 0x401;

/// A complete TCP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpRequest {
    /// Where the client asks to be connected.
    pub target: TargetAddr,
    /// Length of the request: the client's payload starts at this offset of the stream.
    pub consumed: usize,
}

/// Reads one length-prefixed field at `at`: its range, or `NeedMore`. A length over `max` (or
/// refused by `check`) fails as soon as the length is read.
fn field(
    buf: &[u8],
    at: usize,
    check: impl Fn(u64) -> Result<(), PeerError>,
) -> Result<Progress<(usize, usize)>, PeerError> {
    let Progress::Done((len, n)) = varint::decode(&buf[at..]) else {
        return Ok(Progress::NeedMore);
    };
    check(len)?;
    // The check bounds `len` far below usize::MAX.
    let start = at + n;
    let end = start + len as usize;
    if buf.len() < end {
        return Ok(Progress::NeedMore);
    }
    Ok(Progress::Done((start, end)))
}

fn address_len(len: u64) -> Result<(), PeerError> {
    if len == 0 || len > MAX_ADDRESS_LEN as u64 {
        return Err(PeerError::AddressLength(len));
    }
    Ok(())
}

fn padding_len(len: u64) -> Result<(), PeerError> {
    if len > MAX_PADDING_LEN as u64 {
        return Err(PeerError::PaddingLength(len));
    }
    Ok(())
}

/// Parses the TCP request at the start of a stream. [`Progress::NeedMore`] until the whole
/// request (padding included) is in `buf`; an error as soon as what is there is wrong.
pub fn parse_request(buf: &[u8]) -> Result<Progress<TcpRequest>, PeerError> {
    let Progress::Done((frame_type, mut at)) = varint::decode(buf) else {
        return Ok(Progress::NeedMore);
    };
    if frame_type != TCP_REQUEST {
        return Err(PeerError::UnknownFrameType(frame_type));
    }
    let Progress::Done((start, end)) = field(buf, at, address_len)? else {
        return Ok(Progress::NeedMore);
    };
    let address = start..end;
    at = end;
    let Progress::Done((_, end)) = field(buf, at, padding_len)? else {
        return Ok(Progress::NeedMore);
    };
    let target = parse_host_port(&buf[address])?;
    Ok(Progress::Done(TcpRequest {
        target,
        consumed: end,
    }))
}

/// Appends a TCP request for `address` (`host:port`) with `padding` to `out` (client side, for
/// tests and benches).
///
/// # Panics
/// If `address` or `padding` is longer than the protocol allows (caller bugs).
pub fn encode_request(address: &str, padding: &[u8], out: &mut Vec<u8>) {
    assert!(address.len() <= MAX_ADDRESS_LEN && padding.len() <= MAX_PADDING_LEN);
    varint::push(TCP_REQUEST, out);
    varint::push(address.len() as u64, out);
    out.extend_from_slice(address.as_bytes());
    varint::push(padding.len() as u64, out);
    out.extend_from_slice(padding);
}

/// The status a TCP response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpStatus {
    /// The target is connected; payload follows.
    Ok = 0,
    /// The target could not be reached; the server closes the stream after the response.
    Error = 1,
}

/// Appends the server's TCP response to `out`.
///
/// # Panics
/// If `message` or `padding` is longer than the protocol allows (caller bugs).
pub fn encode_response(status: TcpStatus, message: &[u8], padding: &[u8], out: &mut Vec<u8>) {
    assert!(message.len() <= MAX_MESSAGE_LEN && padding.len() <= MAX_PADDING_LEN);
    out.push(status as u8);
    varint::push(message.len() as u64, out);
    out.extend_from_slice(message);
    varint::push(padding.len() as u64, out);
    out.extend_from_slice(padding);
}

/// A complete TCP response (client side, for tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpResponse {
    /// Whether the status byte is 0 (any other value is an error, as the reference reads it).
    pub ok: bool,
    /// Where the message lies in the buffer parsed.
    pub message: std::ops::Range<usize>,
    /// Length of the response: payload starts at this offset.
    pub consumed: usize,
}

/// Parses the server's TCP response at the start of a stream (client side, for tests).
pub fn parse_response(buf: &[u8]) -> Result<Progress<TcpResponse>, PeerError> {
    let Some(&status) = buf.first() else {
        return Ok(Progress::NeedMore);
    };
    let message_len = |len: u64| {
        if len > MAX_MESSAGE_LEN as u64 {
            return Err(PeerError::MessageLength(len));
        }
        Ok(())
    };
    let Progress::Done((start, end)) = field(buf, 1, message_len)? else {
        return Ok(Progress::NeedMore);
    };
    let Progress::Done((_, consumed)) = field(buf, end, padding_len)? else {
        return Ok(Progress::NeedMore);
    };
    Ok(Progress::Done(TcpResponse {
        ok: status == 0,
        message: start..end,
        consumed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(address: &str, padding: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(address, padding, &mut out);
        out
    }

    #[test]
    fn round_trip_and_every_truncation() {
        for (address, padding) in [
            ("example.com:443", &b"pad"[..]),
            ("[2001:db8::1]:53", &[][..]),
            ("1.2.3.4:80", &[b'x'; 300][..]),
        ] {
            let mut wire = request(address, padding);
            let len = wire.len();
            wire.extend_from_slice(b"payload");
            let want = TcpRequest {
                target: parse_host_port(address.as_bytes()).unwrap(),
                consumed: len,
            };
            assert_eq!(parse_request(&wire), Ok(Progress::Done(want)));
            for cut in 0..len {
                assert_eq!(parse_request(&wire[..cut]), Ok(Progress::NeedMore), "{cut}");
            }
        }
    }

    /// A request written with 8-byte varints everywhere, as any encoder may.
    #[test]
    fn accepts_non_minimal_varints() {
        let mut wire = vec![0xc0, 0, 0, 0, 0, 0, 0x04, 0x01];
        wire.extend_from_slice(&[0x80, 0, 0, 6]);
        wire.extend_from_slice(b"h:8080");
        wire.extend_from_slice(&[0x40, 2, b'p', b'p']);
        let want = TcpRequest {
            target: TargetAddr::Domain("h".into(), 8080),
            consumed: wire.len(),
        };
        assert_eq!(parse_request(&wire), Ok(Progress::Done(want)));
    }

    /// Bytes as the reference client writes them: 0x401 as the 2-byte varint 0x4401.
    #[test]
    fn reference_client_bytes() {
        let wire = [
            0x44, 0x01, 0x0e, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm',
            b':', b'8', b'0', 0x02, b'a', b'b',
        ];
        assert_eq!(
            parse_request(&wire),
            Ok(Progress::Done(TcpRequest {
                target: TargetAddr::Domain("example.com".into(), 80),
                consumed: wire.len(),
            }))
        );
    }

    #[test]
    fn garbage_and_oversize_fail_early() {
        assert_eq!(
            parse_request(&[0x44, 0x02]),
            Err(PeerError::UnknownFrameType(0x402))
        );
        assert_eq!(
            parse_request(&[0x16, 0x03]),
            Err(PeerError::UnknownFrameType(0x16))
        );
        // Zero and oversize address lengths fail before any address byte arrives.
        assert_eq!(
            parse_request(&[0x44, 0x01, 0x00]),
            Err(PeerError::AddressLength(0))
        );
        assert_eq!(
            parse_request(&[0x44, 0x01, 0x48, 0x01]),
            Err(PeerError::AddressLength(2049))
        );
        assert_eq!(
            parse_request(&[0x44, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            Err(PeerError::AddressLength(varint::MAX))
        );
        let mut wire = vec![0x44, 0x01, 0x03];
        wire.extend_from_slice(b"h:1");
        assert_eq!(
            parse_request(&[&wire[..], &[0x50, 0x01]].concat()),
            Err(PeerError::PaddingLength(4097))
        );
        // The longest address and padding allowed are accepted.
        let longest = format!("{}:1", "a".repeat(MAX_ADDRESS_LEN - 2));
        let wire = request(&longest, &[0; MAX_PADDING_LEN]);
        assert!(matches!(parse_request(&wire), Ok(Progress::Done(_))));
        // An address that is not host:port is refused once complete.
        let wire = request("no-port", b"");
        assert_eq!(parse_request(&wire), Err(PeerError::BadAddress));
    }

    #[test]
    fn response_round_trip_and_truncations() {
        let mut wire = Vec::new();
        encode_response(TcpStatus::Error, b"connect refused", &[b'p'; 70], &mut wire);
        assert_eq!(wire[0], 1);
        let Ok(Progress::Done(response)) = parse_response(&wire) else {
            panic!("a whole response parses")
        };
        assert!(!response.ok);
        assert_eq!(&wire[response.message], b"connect refused");
        assert_eq!(response.consumed, wire.len());
        for cut in 0..wire.len() {
            assert_eq!(parse_response(&wire[..cut]), Ok(Progress::NeedMore));
        }
        let mut ok = Vec::new();
        encode_response(TcpStatus::Ok, b"", b"", &mut ok);
        assert_eq!(ok, [0, 0, 0]);
        assert_eq!(
            parse_response(&[0, 0x48, 0x01]),
            Err(PeerError::MessageLength(2049))
        );
    }
}
