//! QUIC variable-length integers ([RFC 9000 section 16]).
//!
//! ```text
//! +----+--------------------+
//! | 2b | value, big-endian  |   prefix 00: 1 byte,  6-bit value
//! +----+--------------------+   prefix 01: 2 bytes, 14-bit value
//!                               prefix 10: 4 bytes, 30-bit value
//!                               prefix 11: 8 bytes, 62-bit value
//! ```
//!
//! Decoding accepts every width, minimal or not (RFC 9000 does not require the shortest form,
//! and neither do Hysteria2 peers); encoding always writes the shortest.
//!
//! [RFC 9000 section 16]: https://www.rfc-editor.org/rfc/rfc9000#section-16

use crate::Progress;

/// The largest value a varint holds: 2^62 - 1.
pub const MAX: u64 = (1 << 62) - 1;

/// The longest encoding.
pub const MAX_LEN: usize = 8;

/// Decodes the varint at the start of `buf`: the value and how many bytes it took, or
/// [`Progress::NeedMore`] if `buf` ends inside it.
pub fn decode(buf: &[u8]) -> Progress<(u64, usize)> {
    let Some(&first) = buf.first() else {
        return Progress::NeedMore;
    };
    let len = 1usize << (first >> 6);
    let Some(bytes) = buf.get(..len) else {
        return Progress::NeedMore;
    };
    let value = bytes[1..]
        .iter()
        .fold(u64::from(first & 0x3f), |v, &b| (v << 8) | u64::from(b));
    Progress::Done((value, len))
}

/// Number of bytes [`encode`] writes for `value`.
///
/// # Panics
/// If `value` is over [`MAX`] (a caller bug).
pub fn encoded_len(value: u64) -> usize {
    match value {
        0..=0x3f => 1,
        0x40..=0x3fff => 2,
        0x4000..=0x3fff_ffff => 4,
        0x4000_0000..=MAX => 8,
        _ => panic!("{value:#x} does not fit a QUIC varint"),
    }
}

/// Writes `value` at the start of `out` in its shortest form; returns the length written.
///
/// # Panics
/// If `value` is over [`MAX`] or `out` is shorter than [`encoded_len`] (caller bugs).
pub fn encode(value: u64, out: &mut [u8]) -> usize {
    let len = encoded_len(value);
    let tag = u64::from(len.trailing_zeros() as u8) << (len * 8 - 2);
    out[..len].copy_from_slice(&(value | tag).to_be_bytes()[8 - len..]);
    len
}

/// Appends `value` to `out` in its shortest form.
pub fn push(value: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; MAX_LEN];
    let n = encode(value, &mut buf);
    out.extend_from_slice(&buf[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9000 appendix A.1's examples, and non-minimal forms of small values.
    #[test]
    fn rfc_9000_examples_and_every_width() {
        let cases: [(&[u8], u64); 8] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
            (&[0x40, 0x25], 37),
            (&[0x80, 0, 0x04, 0x01], 0x401),
            (&[0xc0, 0, 0, 0, 0, 0, 0x04, 0x01], 0x401),
            (&[0xff; 8], MAX),
        ];
        for (wire, value) in cases {
            assert_eq!(
                decode(wire),
                Progress::Done((value, wire.len())),
                "{wire:x?}"
            );
            for cut in 0..wire.len() {
                assert_eq!(decode(&wire[..cut]), Progress::NeedMore);
            }
        }
    }

    #[test]
    fn encodes_shortest_and_round_trips_at_every_boundary() {
        let boundaries = [
            (0, 1),
            (0x3f, 1),
            (0x40, 2),
            (0x3fff, 2),
            (0x4000, 4),
            (0x3fff_ffff, 4),
            (0x4000_0000, 8),
            (MAX, 8),
        ];
        for (value, len) in boundaries {
            let mut buf = [0u8; 9];
            assert_eq!(encode(value, &mut buf), len);
            assert_eq!(encoded_len(value), len);
            assert_eq!(decode(&buf), Progress::Done((value, len)));
        }
        let mut out = Vec::new();
        push(0x401, &mut out);
        assert_eq!(out, [0x44, 0x01]);
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn refuses_values_over_62_bits() {
        encode(MAX + 1, &mut [0u8; 8]);
    }
}
