//! TLS record protection after the handshake: the record layer the engine runs itself, in
//! place in its relay buffers, once rustls has done the handshake and handed over the traffic
//! keys (rustls' "kernel connection" API, the one kTLS uses).
//!
//! rustls 0.23 copies every record into a fresh `Vec` on both its buffered and unbuffered
//! paths; this codec seals and opens records where they lie, so a TLS relay reads each byte
//! once into a pooled buffer, decrypts it there and writes it from there.
//!
//! ```text
//! every record:      type u8 | version 0x03 0x03 | length u16 | protected body (length bytes)
//!
//! TLS 1.3 body:      AEAD( data | real content type u8 | zero padding ) | tag 16
//!                    outer type always 23 (application_data)
//!                    nonce = iv XOR seq (seq big-endian, right-aligned in 12 bytes)
//!                    aad   = the 5-byte record header
//!
//! TLS 1.2 AES-GCM:   explicit nonce 8 | AEAD( data ) | tag 16
//!                    nonce = iv[0..4] | explicit nonce   (we send iv XOR seq, as rustls does)
//!                    aad   = seq u64 | type | version | data length u16
//!
//! TLS 1.2 ChaCha20-Poly1305:  AEAD( data ) | tag 16
//!                    nonce = iv XOR seq, aad as for AES-GCM
//! ```
//!
//! Sequence numbers count records in each direction from the values rustls hands over; a
//! TLS 1.3 key update starts them again at 0 with new keys (the caller derives those).

use std::ops::Range;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};

/// Bytes of a record header.
pub const HEADER_LEN: usize = 5;
/// Most plaintext bytes one record carries.
pub const MAX_PLAINTEXT: usize = 16 * 1024;
/// Bytes of an AEAD tag (every suite here).
pub const TAG_LEN: usize = 16;

/// Content type: change_cipher_spec.
pub const CHANGE_CIPHER_SPEC: u8 = 20;
/// Content type: alert.
pub const ALERT: u8 = 21;
/// Content type: handshake.
pub const HANDSHAKE: u8 = 22;
/// Content type: application_data.
pub const APPLICATION_DATA: u8 = 23;

/// The protocol version the keys belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// The AEAD of the negotiated cipher suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// AES-128-GCM.
    Aes128Gcm,
    /// AES-256-GCM.
    Aes256Gcm,
    /// ChaCha20-Poly1305.
    Chacha20Poly1305,
}

/// What a peer sent that is not a valid protected record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// The header does not start a TLS record (unknown content type or major version).
    #[error("not a TLS record header (type {0}, version {1:#06x})")]
    BadHeader(u8, u16),
    /// The length field exceeds what the protocol version allows.
    #[error("record of {0} bytes exceeds the limit of {1}")]
    Oversize(usize, usize),
    /// The body is shorter than the suite's overhead.
    #[error("record of {0} bytes is shorter than its protection")]
    Short(usize),
    /// Authentication failed: wrong key, tampering, or a record out of sequence.
    #[error("record failed authentication")]
    Decrypt,
    /// A TLS 1.3 record whose plaintext is all padding (no content type).
    #[error("TLS 1.3 record without a content type")]
    NoContentType,
    /// A TLS 1.3 record whose outer type is not application_data.
    #[error("unprotected record of type {0} after the handshake")]
    Unprotected(u8),
    /// The decrypted plaintext is longer than a record may carry.
    #[error("record plaintext of {0} bytes exceeds 16 KiB")]
    PlaintextOversize(usize),
}

/// The keys were not what the suite needs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a {suite:?} key must be {expected} bytes, got {got}")]
pub struct KeyError {
    suite: Suite,
    expected: usize,
    got: usize,
}

/// A record opened in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The record's real content type.
    pub content_type: u8,
    /// The plaintext, as a range of the record's bytes.
    pub payload: Range<usize>,
}

/// The length of the whole record (header included) that starts `buf`: `Ok(None)` while the
/// header is incomplete. Checks the header only; the body may not have arrived yet.
pub fn record_len(buf: &[u8], version: Version) -> Result<Option<usize>, RecordError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let content_type = header[0];
    let legacy_version = u16::from_be_bytes([header[1], header[2]]);
    if !(CHANGE_CIPHER_SPEC..=APPLICATION_DATA).contains(&content_type) || legacy_version >> 8 != 3
    {
        return Err(RecordError::BadHeader(content_type, legacy_version));
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let limit = match version {
        Version::Tls13 => MAX_PLAINTEXT + 256,
        Version::Tls12 => MAX_PLAINTEXT + 2048,
    };
    if len > limit {
        return Err(RecordError::Oversize(len, limit));
    }
    Ok(Some(HEADER_LEN + len))
}

/// One direction's record protection: key, IV and sequence number.
pub struct Protection {
    version: Version,
    suite: Suite,
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl std::fmt::Debug for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the IV.
        f.debug_struct("Protection")
            .field("version", &self.version)
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Protection {
    /// Protection with `key` and `iv` whose next record is number `seq`.
    pub fn new(
        version: Version,
        suite: Suite,
        key: &[u8],
        iv: [u8; 12],
        seq: u64,
    ) -> Result<Protection, KeyError> {
        let algorithm = match suite {
            Suite::Aes128Gcm => &aead::AES_128_GCM,
            Suite::Aes256Gcm => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        };
        let unbound = UnboundKey::new(algorithm, key).map_err(|_| KeyError {
            suite,
            expected: algorithm.key_len(),
            got: key.len(),
        })?;
        Ok(Protection {
            version,
            suite,
            key: LessSafeKey::new(unbound),
            iv,
            seq,
        })
    }

    /// The number of the next record.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The protocol version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Bytes in front of a sealed record's data: the header, and TLS 1.2 AES-GCM's explicit
    /// nonce.
    pub fn prefix_len(&self) -> usize {
        match (self.version, self.suite) {
            (Version::Tls12, Suite::Aes128Gcm | Suite::Aes256Gcm) => HEADER_LEN + 8,
            _ => HEADER_LEN,
        }
    }

    /// Bytes behind a sealed record's data: the tag, and TLS 1.3's inner content type.
    pub fn suffix_len(&self) -> usize {
        match self.version {
            Version::Tls13 => 1 + TAG_LEN,
            Version::Tls12 => TAG_LEN,
        }
    }

    fn nonce(&self, seq: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        // A sender must re-key long before 2^64 records (see `Tls::confidentiality_limit` in
        // the engine); wrapping here would reuse nonces, so saturate and fail authentication.
        self.seq = self.seq.saturating_add(1);
        seq
    }

    /// Seals the record whose data (`data_len` bytes) sits at `record[prefix_len()..]`,
    /// writing header, nonce, inner type and tag around it; `record` must have room for
    /// [`suffix_len`](Self::suffix_len) more bytes behind the data. Returns the record's
    /// length.
    ///
    /// # Panics
    /// If `data_len` exceeds [`MAX_PLAINTEXT`] or `record` is too short.
    pub fn seal_in_place(&mut self, record: &mut [u8], data_len: usize, content_type: u8) -> usize {
        assert!(data_len <= MAX_PLAINTEXT, "a record carries at most 16 KiB");
        let prefix = self.prefix_len();
        let total = prefix + data_len + self.suffix_len();
        let record = &mut record[..total];
        let seq = self.next_seq();
        let nonce = self.nonce(seq);
        let body_len = (total - HEADER_LEN) as u16;
        let (header, rest) = record.split_at_mut(HEADER_LEN);
        header[1..3].copy_from_slice(&[3, 3]);
        header[3..5].copy_from_slice(&body_len.to_be_bytes());
        let tag = match self.version {
            Version::Tls13 => {
                header[0] = APPLICATION_DATA;
                rest[data_len] = content_type;
                let (sealed, _) = rest.split_at_mut(data_len + 1);
                self.key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&*header),
                        sealed,
                    )
                    .expect("16 KiB is within the AEAD's limit")
            }
            Version::Tls12 => {
                header[0] = content_type;
                let aad = tls12_aad(seq, content_type, [3, 3], data_len);
                let explicit = prefix - HEADER_LEN;
                rest[..explicit].copy_from_slice(&nonce[4..4 + explicit]);
                let sealed = &mut rest[explicit..explicit + data_len];
                self.key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        sealed,
                    )
                    .expect("16 KiB is within the AEAD's limit")
            }
        };
        record[total - TAG_LEN..].copy_from_slice(tag.as_ref());
        total
    }

    /// Opens the whole record `record` (header and body, as [`record_len`] measured it) in
    /// place.
    pub fn open_in_place(&mut self, record: &mut [u8]) -> Result<Opened, RecordError> {
        let content_type = record[0];
        let prefix = self.prefix_len();
        let overhead = prefix + TAG_LEN;
        if record.len() < overhead {
            return Err(RecordError::Short(record.len()));
        }
        let (header, body) = record.split_at_mut(HEADER_LEN);
        match self.version {
            Version::Tls13 => {
                if content_type != APPLICATION_DATA {
                    return Err(RecordError::Unprotected(content_type));
                }
                let nonce = self.nonce(self.seq);
                let plain = self
                    .key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&*header),
                        body,
                    )
                    .map_err(|_| RecordError::Decrypt)?;
                self.seq = self.seq.saturating_add(1);
                // RFC 8446 section 5.4: the inner plaintext, padding included, is at most
                // 2^14 + 1 bytes.
                if plain.len() > MAX_PLAINTEXT + 1 {
                    return Err(RecordError::PlaintextOversize(plain.len()));
                }
                let Some(end) = plain.iter().rposition(|&b| b != 0) else {
                    return Err(RecordError::NoContentType);
                };
                Ok(Opened {
                    content_type: plain[end],
                    payload: HEADER_LEN..HEADER_LEN + end,
                })
            }
            Version::Tls12 => {
                let explicit = prefix - HEADER_LEN;
                let mut nonce = self.nonce(self.seq);
                nonce[4..4 + explicit].copy_from_slice(&body[..explicit]);
                let data_len = body.len() - explicit - TAG_LEN;
                if data_len > MAX_PLAINTEXT {
                    return Err(RecordError::PlaintextOversize(data_len));
                }
                // The version as the record states it (RFC 5246 section 6.2.3.3).
                let aad = tls12_aad(self.seq, content_type, [header[1], header[2]], data_len);
                self.key
                    .open_in_place(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        &mut body[explicit..],
                    )
                    .map_err(|_| RecordError::Decrypt)?;
                self.seq = self.seq.saturating_add(1);
                Ok(Opened {
                    content_type,
                    payload: prefix..prefix + data_len,
                })
            }
        }
    }
}

fn tls12_aad(seq: u64, content_type: u8, version: [u8; 2], data_len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&version);
    aad[11..].copy_from_slice(&(data_len as u16).to_be_bytes());
    aad
}

#[cfg(test)]
mod tests;
