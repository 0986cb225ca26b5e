//! QPACK field sections ([RFC 9204]) with the static table only: what an HTTP/3 peer needs
//! when it advertises a dynamic table capacity of 0, as this server does.
//!
//! ```text
//! field section:  [Required Insert Count (8+)] [S | Delta Base (7+)] [field line]...
//!   Required Insert Count must be 0: no dynamic table entry is referenced.
//!
//! field lines (N: "never index", H: Huffman-coded string, T=1: static table):
//!   1 T index(6+)                              indexed field line
//!   0 1 N T index(4+)  H len(7+) value         literal with name reference
//!   0 0 1 N H len(3+) name  H len(7+) value    literal with literal name
//!   0 0 0 1 index(4+)                          indexed, post-base  (dynamic: refused)
//!   0 0 0 0 N index(3+) ...                    literal, post-base  (dynamic: refused)
//! ```
//!
//! Integers use HPACK's prefixed form (RFC 7541 section 5.1); Huffman-coded strings use
//! [`super::huffman`]. The encoder writes indexed lines for exact static matches, name
//! references for static names, literal names otherwise, and Huffman-codes a string when that
//! is shorter, as common encoders (quic-go's, ls-qpack) do.
//!
//! [RFC 9204]: https://www.rfc-editor.org/rfc/rfc9204

use crate::hysteria2::huffman::{self, HuffmanError};

/// Why a field section cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QpackError {
    /// The section ends inside a field line or its prefix.
    #[error("field section truncated")]
    Truncated,
    /// An integer that does not fit 62 bits.
    #[error("integer overflow")]
    IntegerOverflow,
    /// A reference to the dynamic table, which has capacity 0 here.
    #[error("reference to the dynamic table")]
    DynamicTable,
    /// A static table index past its 99 entries.
    #[error("static table index {0} out of range")]
    StaticIndex(u64),
    /// A Huffman-coded string that does not decode.
    #[error("bad Huffman string: {0}")]
    Huffman(#[from] HuffmanError),
    /// The decoded section is larger than allowed, its size counted as RFC 9114 section 4.2.2
    /// counts it: each field's name and value plus 32 bytes.
    #[error("field section over {0} bytes decoded")]
    TooLarge(usize),
}

/// One decoded field line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The field name (HTTP/3 names are lowercase; not checked here).
    pub name: Vec<u8>,
    /// The field value.
    pub value: Vec<u8>,
}

/// The static table (RFC 9204 appendix A), by index. Read out of ls-qpack's decoder one index
/// at a time, an independent copy of the appendix.
pub const STATIC_TABLE: [(&str, &str); 99] = [
    (":authority", ""),                                    // 0
    (":path", "/"),                                        // 1
    ("age", "0"),                                          // 2
    ("content-disposition", ""),                           // 3
    ("content-length", "0"),                               // 4
    ("cookie", ""),                                        // 5
    ("date", ""),                                          // 6
    ("etag", ""),                                          // 7
    ("if-modified-since", ""),                             // 8
    ("if-none-match", ""),                                 // 9
    ("last-modified", ""),                                 // 10
    ("link", ""),                                          // 11
    ("location", ""),                                      // 12
    ("referer", ""),                                       // 13
    ("set-cookie", ""),                                    // 14
    (":method", "CONNECT"),                                // 15
    (":method", "DELETE"),                                 // 16
    (":method", "GET"),                                    // 17
    (":method", "HEAD"),                                   // 18
    (":method", "OPTIONS"),                                // 19
    (":method", "POST"),                                   // 20
    (":method", "PUT"),                                    // 21
    (":scheme", "http"),                                   // 22
    (":scheme", "https"),                                  // 23
    (":status", "103"),                                    // 24
    (":status", "200"),                                    // 25
    (":status", "304"),                                    // 26
    (":status", "404"),                                    // 27
    (":status", "503"),                                    // 28
    ("accept", "*/*"),                                     // 29
    ("accept", "application/dns-message"),                 // 30
    ("accept-encoding", "gzip, deflate, br"),              // 31
    ("accept-ranges", "bytes"),                            // 32
    ("access-control-allow-headers", "cache-control"),     // 33
    ("access-control-allow-headers", "content-type"),      // 34
    ("access-control-allow-origin", "*"),                  // 35
    ("cache-control", "max-age=0"),                        // 36
    ("cache-control", "max-age=2592000"),                  // 37
    ("cache-control", "max-age=604800"),                   // 38
    ("cache-control", "no-cache"),                         // 39
    ("cache-control", "no-store"),                         // 40
    ("cache-control", "public, max-age=31536000"),         // 41
    ("content-encoding", "br"),                            // 42
    ("content-encoding", "gzip"),                          // 43
    ("content-type", "application/dns-message"),           // 44
    ("content-type", "application/javascript"),            // 45
    ("content-type", "application/json"),                  // 46
    ("content-type", "application/x-www-form-urlencoded"), // 47
    ("content-type", "image/gif"),                         // 48
    ("content-type", "image/jpeg"),                        // 49
    ("content-type", "image/png"),                         // 50
    ("content-type", "text/css"),                          // 51
    ("content-type", "text/html; charset=utf-8"),          // 52
    ("content-type", "text/plain"),                        // 53
    ("content-type", "text/plain;charset=utf-8"),          // 54
    ("range", "bytes=0-"),                                 // 55
    ("strict-transport-security", "max-age=31536000"),     // 56
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains",
    ), // 57
    (
        "strict-transport-security",
        "max-age=31536000; includesubdomains; preload",
    ), // 58
    ("vary", "accept-encoding"),                           // 59
    ("vary", "origin"),                                    // 60
    ("x-content-type-options", "nosniff"),                 // 61
    ("x-xss-protection", "1; mode=block"),                 // 62
    (":status", "100"),                                    // 63
    (":status", "204"),                                    // 64
    (":status", "206"),                                    // 65
    (":status", "302"),                                    // 66
    (":status", "400"),                                    // 67
    (":status", "403"),                                    // 68
    (":status", "421"),                                    // 69
    (":status", "425"),                                    // 70
    (":status", "500"),                                    // 71
    ("accept-language", ""),                               // 72
    ("access-control-allow-credentials", "FALSE"),         // 73
    ("access-control-allow-credentials", "TRUE"),          // 74
    ("access-control-allow-headers", "*"),                 // 75
    ("access-control-allow-methods", "get"),               // 76
    ("access-control-allow-methods", "get, post, options"), // 77
    ("access-control-allow-methods", "options"),           // 78
    ("access-control-expose-headers", "content-length"),   // 79
    ("access-control-request-headers", "content-type"),    // 80
    ("access-control-request-method", "get"),              // 81
    ("access-control-request-method", "post"),             // 82
    ("alt-svc", "clear"),                                  // 83
    ("authorization", ""),                                 // 84
    (
        "content-security-policy",
        "script-src 'none'; object-src 'none'; base-uri 'none'",
    ), // 85
    ("early-data", "1"),                                   // 86
    ("expect-ct", ""),                                     // 87
    ("forwarded", ""),                                     // 88
    ("if-range", ""),                                      // 89
    ("origin", ""),                                        // 90
    ("purpose", "prefetch"),                               // 91
    ("server", ""),                                        // 92
    ("timing-allow-origin", "*"),                          // 93
    ("upgrade-insecure-requests", "1"),                    // 94
    ("user-agent", ""),                                    // 95
    ("x-forwarded-for", ""),                               // 96
    ("x-frame-options", "deny"),                           // 97
    ("x-frame-options", "sameorigin"),                     // 98
];

/// Reads a prefixed integer whose first byte is `buf[*at]`, with `prefix` bits of value in it.
fn read_int(buf: &[u8], at: &mut usize, prefix: u32) -> Result<u64, QpackError> {
    let max = (1u64 << prefix) - 1;
    let first = *buf.get(*at).ok_or(QpackError::Truncated)?;
    *at += 1;
    let mut value = u64::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let byte = *buf.get(*at).ok_or(QpackError::Truncated)?;
        *at += 1;
        let bits = u64::from(byte & 0x7f);
        if shift > 56 || (bits << shift) >> shift != bits {
            return Err(QpackError::IntegerOverflow);
        }
        value = value
            .checked_add(bits << shift)
            .filter(|&v| v < 1 << 62)
            .ok_or(QpackError::IntegerOverflow)?;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
    }
}

/// Reads a string literal whose length prefix has `prefix` bits and whose Huffman flag is the
/// bit just above them.
fn read_string(buf: &[u8], at: &mut usize, prefix: u32) -> Result<Vec<u8>, QpackError> {
    let first = *buf.get(*at).ok_or(QpackError::Truncated)?;
    let huffman = first & (1 << prefix) != 0;
    let len = read_int(buf, at, prefix)?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| at.checked_add(len))
        .filter(|&end| end <= buf.len())
        .ok_or(QpackError::Truncated)?;
    let raw = &buf[*at..end];
    *at = end;
    if !huffman {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::with_capacity(raw.len() * 8 / 5 + 1);
    huffman::decode(raw, &mut out)?;
    Ok(out)
}

fn static_entry(index: u64) -> Result<(&'static str, &'static str), QpackError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| STATIC_TABLE.get(i).copied())
        .ok_or(QpackError::StaticIndex(index))
}

/// Decodes a whole field section (the payload of a HEADERS frame).
pub fn decode_field_section(buf: &[u8]) -> Result<Vec<Field>, QpackError> {
    decode_field_section_within(buf, usize::MAX)
}

/// [`decode_field_section`] for a section of at most `max_size` bytes decoded (RFC 9114
/// section 4.2.2's size: names and values plus 32 bytes per field). A few bytes of static
/// table references decode to many times their size, so a decoder of what a peer sends must
/// bound what it builds, not only what it reads: [`QpackError::TooLarge`] as soon as the
/// fields decoded so far pass it.
pub fn decode_field_section_within(buf: &[u8], max_size: usize) -> Result<Vec<Field>, QpackError> {
    let mut at = 0;
    let mut size = 0usize;
    if read_int(buf, &mut at, 8)? != 0 {
        return Err(QpackError::DynamicTable);
    }
    // Delta Base: meaningless without dynamic references.
    read_int(buf, &mut at, 7)?;
    let mut fields = Vec::new();
    while at < buf.len() {
        let first = buf[at];
        let field = if first & 0x80 != 0 {
            if first & 0x40 == 0 {
                return Err(QpackError::DynamicTable);
            }
            let (name, value) = static_entry(read_int(buf, &mut at, 6)?)?;
            Field {
                name: name.into(),
                value: value.into(),
            }
        } else if first & 0x40 != 0 {
            if first & 0x10 == 0 {
                return Err(QpackError::DynamicTable);
            }
            let (name, _) = static_entry(read_int(buf, &mut at, 4)?)?;
            Field {
                name: name.into(),
                value: read_string(buf, &mut at, 7)?,
            }
        } else if first & 0x20 != 0 {
            let name = read_string(buf, &mut at, 3)?;
            Field {
                name,
                value: read_string(buf, &mut at, 7)?,
            }
        } else {
            return Err(QpackError::DynamicTable);
        };
        size = size.saturating_add(field.name.len() + field.value.len() + 32);
        if size > max_size {
            return Err(QpackError::TooLarge(max_size));
        }
        fields.push(field);
    }
    Ok(fields)
}

/// Appends a prefixed integer; `flags` holds the bits above the prefix in the first byte.
fn write_int(value: u64, prefix: u32, flags: u8, out: &mut Vec<u8>) {
    let max = (1u64 << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a string literal, Huffman-coded when shorter; the Huffman flag is the bit above the
/// `prefix` length bits.
fn write_string(text: &[u8], prefix: u32, flags: u8, out: &mut Vec<u8>) {
    let coded = huffman::encoded_len(text);
    if coded < text.len() {
        write_int(coded as u64, prefix, flags | 1 << prefix, out);
        huffman::encode(text, out);
    } else {
        write_int(text.len() as u64, prefix, flags, out);
        out.extend_from_slice(text);
    }
}

/// Appends a field section for `fields` (names lowercase, as HTTP/3 requires) that needs no
/// dynamic table.
pub fn encode_field_section(fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0]);
    for &(name, value) in fields {
        let exact = STATIC_TABLE
            .iter()
            .position(|&(n, v)| n.as_bytes() == name && v.as_bytes() == value);
        if let Some(index) = exact {
            write_int(index as u64, 6, 0xc0, out);
            continue;
        }
        match STATIC_TABLE.iter().position(|&(n, _)| n.as_bytes() == name) {
            Some(index) => write_int(index as u64, 4, 0x50, out),
            None => write_string(name, 3, 0x20, out),
        }
        write_string(value, 7, 0, out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hysteria2::huffman::tests::hex;

    fn fields(pairs: &[(&str, &str)]) -> Vec<Field> {
        pairs
            .iter()
            .map(|&(n, v)| Field {
                name: n.into(),
                value: v.into(),
            })
            .collect()
    }

    /// The Hysteria2 authentication request as ls-qpack (pylsqpack 1.0.0, dynamic table
    /// capacity 0) encodes it: indexed and name-reference lines, Huffman-coded literal names
    /// and values.
    pub(crate) const LS_QPACK_AUTH: &str = "\
        0000d4d750869fd2125b0c3f51846076a67f2f029fd2125b0c35876a678921ecb0a44a939ec4172f039fd2\
        125b0c358845acf386089b0000007f2f059fd2125b0c35ab1c921aa9bf8dfdeccf9ccfd79e91718ddda907";

    pub(crate) fn ls_qpack_auth_fields() -> Vec<Field> {
        fields(&[
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", "hysteria"),
            (":path", "/auth"),
            ("hysteria-auth", "correct horse"),
            ("hysteria-cc-rx", "12500000"),
            ("hysteria-padding", "Zq3xK9pLm2Vb7Rt0"),
        ])
    }

    #[test]
    fn decodes_ls_qpack_blocks() {
        assert_eq!(
            decode_field_section(&hex(LS_QPACK_AUTH)),
            Ok(ls_qpack_auth_fields())
        );
        // A Huffman-coded literal name and a value of every printable byte, from ls-qpack.
        let block = hex(
            "00002cf2b0e8a3dd53f8fe7febff2afc7fafebfbf9ff7f4b2ec002265a6dc75e7ee7dfffc83feffcffd4\
             376f5fc187163c997367d1a756bd9b776fe1c797e73fdffdffff0ffe7ff917ffd1c6490b2cd39ba75a2\
             9a8f5f6b109b7bf8f3ebdfffeff9ffefff7",
        );
        let printable: Vec<u8> = (0x20..0x7f).collect();
        assert_eq!(
            decode_field_section(&block),
            Ok(vec![Field {
                name: b"x-all".to_vec(),
                value: printable
            }])
        );
    }

    /// RFC 9204 appendix B.1 (static name reference) decodes; B.2's request stream, which
    /// references the dynamic table, is refused.
    #[test]
    fn rfc_9204_examples() {
        let b1 = hex("0000 510b 2f69 6e64 6578 2e68 746d 6c");
        assert_eq!(
            decode_field_section(&b1),
            Ok(fields(&[(":path", "/index.html")]))
        );
        let b2 = hex("0381 10 11");
        assert_eq!(decode_field_section(&b2), Err(QpackError::DynamicTable));
        // Base 0 but an indexed dynamic line, and post-base lines.
        for line in [0x80u8, 0x10, 0x00, 0x40] {
            assert_eq!(
                decode_field_section(&[0, 0, line, 0]),
                Err(QpackError::DynamicTable),
                "{line:#x}"
            );
        }
    }

    #[test]
    fn round_trips_every_representation() {
        let long = "v".repeat(300);
        let pairs = [
            (":method", "POST"),
            (":status", "233"),
            ("content-length", "0"),
            ("user-agent", "quic-go HTTP/3"),
            ("hysteria-udp", "true"),
            ("x-raw", "\u{7f}\u{1}\u{2}"),
            ("x-long", long.as_str()),
            ("x-empty", ""),
        ];
        let refs: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        let mut block = Vec::new();
        encode_field_section(&refs, &mut block);
        assert_eq!(decode_field_section(&block), Ok(fields(&pairs)));
        // :method POST and content-length 0 are exact static entries: one byte each.
        assert_eq!(&block[..3], &[0, 0, 0xc0 | 20]);
    }

    #[test]
    fn every_prefix_is_an_error_or_a_prefix_of_the_fields() {
        let block = hex(LS_QPACK_AUTH);
        let all = ls_qpack_auth_fields();
        for cut in 0..block.len() {
            match decode_field_section(&block[..cut]) {
                Ok(got) => assert_eq!(got[..], all[..got.len()], "{cut}"),
                Err(e) => assert!(
                    matches!(e, QpackError::Truncated | QpackError::Huffman(_)),
                    "{cut}: {e}"
                ),
            }
        }
    }

    #[test]
    fn garbage_fails_cleanly() {
        assert_eq!(
            decode_field_section(&[0, 0, 0xff, 0x24]),
            Err(QpackError::StaticIndex(99))
        );
        assert_eq!(
            decode_field_section(&[0, 0, 0xff, 0x23]).unwrap()[0].name,
            b"x-frame-options"
        );
        let overflow = [
            0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(
            decode_field_section(&overflow),
            Err(QpackError::IntegerOverflow)
        );
        assert_eq!(
            decode_field_section(&[0, 0, 0x5f]),
            Err(QpackError::Truncated)
        );
        // A literal value claiming 2^40 bytes.
        let huge = [0, 0, 0x51, 0x7f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
        assert_eq!(decode_field_section(&huge), Err(QpackError::Truncated));
        // A Huffman value with bad padding.
        assert_eq!(
            decode_field_section(&[0, 0, 0x51, 0x81, 0x00]),
            Err(QpackError::Huffman(HuffmanError::BadPadding))
        );
        assert_eq!(decode_field_section(&[]), Err(QpackError::Truncated));
    }

    /// The decoded size is bounded as RFC 9114 section 4.2.2 counts it (name, value, 32
    /// bytes per field): each one-byte reference to `:method GET` counts 42.
    #[test]
    fn decoded_size_is_bounded() {
        let mut block = vec![0x00, 0x00];
        block.resize(2 + 100, 0xd1);
        assert_eq!(
            decode_field_section_within(&block, 4_199),
            Err(QpackError::TooLarge(4_199))
        );
        let fields = decode_field_section_within(&block, 4_200).unwrap();
        assert_eq!(fields.len(), 100);
        assert_eq!(
            (&fields[0].name[..], &fields[0].value[..]),
            (&b":method"[..], &b"GET"[..])
        );
    }
}
