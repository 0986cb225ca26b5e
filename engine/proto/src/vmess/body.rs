//! VMess bodies: chunk streams opened and sealed in place, and the response header in front
//! of the downstream body.
//!
//! Buffer contract (as for Shadowsocks): the caller keeps the unconsumed bytes of the stream at
//! the head of the slice it passes to [`BodyOpener::open`]; the codec decrypts in that slice and
//! reports which range is plaintext and how many bytes it consumed. On `NeedMore` the caller
//! reads more bytes after the ones it holds and calls again with the same head. For sealing,
//! the caller puts the payload at `buf[SEAL_HEADROOM..]` and leaves [`SEAL_TAILROOM`] bytes
//! behind it; the codec writes the (first: response header and) length in front and the tag and
//! padding behind, and returns the range to send.

use std::ops::Range;

use md5::{Digest, Md5};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, CHACHA20_POLY1305};
use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::{Shake128, Shake128Reader};

use super::kdf::{kdf12, kdf16};
use super::{option, PeerError, Security, TAG_LEN};

/// Most padding one chunk carries.
pub const MAX_PADDING: usize = 63;

/// Length of the response header in front of the downstream body.
pub const RESPONSE_HEADER_LEN: usize = 2 + TAG_LEN + 4 + TAG_LEN;

/// Room a caller leaves in front of a payload passed to [`BodySealer::seal`]: the response
/// header (first chunk only) and a sealed length.
pub const SEAL_HEADROOM: usize = RESPONSE_HEADER_LEN + SEALED_LENGTH;

/// Room a caller leaves behind a payload passed to [`BodySealer::seal`]: tag and padding.
pub const SEAL_TAILROOM: usize = TAG_LEN + MAX_PADDING;

/// Largest payload one [`BodySealer::seal`] takes: a chunk (payload, tag, padding) of at most
/// 16 KiB, which every client reads (sing-box reads chunks into 16 KiB buffers).
pub const MAX_CHUNK_PAYLOAD: usize = 16 * 1024 - SEAL_TAILROOM;

const SEALED_LENGTH: usize = 2 + TAG_LEN;
const AUTH_LEN_SALT: &[u8] = b"auth_len";
const RESPONSE_LEN_KEY: &[u8] = b"AEAD Resp Header Len Key";
const RESPONSE_LEN_IV: &[u8] = b"AEAD Resp Header Len IV";
const RESPONSE_KEY: &[u8] = b"AEAD Resp Header Key";
const RESPONSE_IV: &[u8] = b"AEAD Resp Header IV";

/// The AEAD of one direction: a key and the nonce `count u16 BE || IV[2..12]`.
struct ChunkCipher {
    key: LessSafeKey,
    nonce: [u8; 12],
    count: u16,
}

impl ChunkCipher {
    fn new(security: Security, key: &[u8; 16], iv: &[u8; 16]) -> Option<ChunkCipher> {
        let unbound = match security {
            Security::Aes128Gcm => UnboundKey::new(&AES_128_GCM, key),
            Security::Chacha20Poly1305 => UnboundKey::new(&CHACHA20_POLY1305, &chacha_key(key)),
            Security::None => return None,
        };
        Some(ChunkCipher {
            key: LessSafeKey::new(unbound.expect("key length matches the algorithm")),
            nonce: iv[..12].try_into().expect("12 bytes"),
            count: 0,
        })
    }

    /// Counters wrap after 65 536 chunks, as every implementation's do.
    fn next_nonce(&mut self) -> Nonce {
        self.nonce[..2].copy_from_slice(&self.count.to_be_bytes());
        self.count = self.count.wrapping_add(1);
        Nonce::assume_unique_for_key(self.nonce)
    }

    fn open(&mut self, data_and_tag: &mut [u8]) -> Result<(), PeerError> {
        let nonce = self.next_nonce();
        self.key
            .open_in_place(nonce, Aad::empty(), data_and_tag)
            .map(|_| ())
            .map_err(|_| PeerError::BadChunk)
    }

    /// Seals `buf[..len]` in place and writes the tag at `buf[len..len + 16]`.
    fn seal(&mut self, buf: &mut [u8], len: usize) {
        let nonce = self.next_nonce();
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), &mut buf[..len])
            .expect("chunks are far below ring's length limit");
        buf[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
    }
}

/// The chacha20-poly1305 key of a 16-byte body key: `MD5(K) || MD5(MD5(K))`.
fn chacha_key(key: &[u8; 16]) -> [u8; 32] {
    let mut long = [0u8; 32];
    long[..16].copy_from_slice(&Md5::digest(key));
    let second = Md5::digest(&long[..16]);
    long[16..].copy_from_slice(&second);
    long
}

/// A SHAKE128 output stream read two bytes at a time (masks and padding lengths).
struct Shake(Shake128Reader);

impl Shake {
    fn new(parts: &[&[u8]]) -> Shake {
        let mut h = Shake128::default();
        for part in parts {
            h.update(part);
        }
        Shake(h.finalize_xof())
    }

    fn next_u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        self.0.read(&mut b);
        u16::from_be_bytes(b)
    }
}

// The codec lives inline in each connection; boxing the cipher would cost an allocation per
// connection to save a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum LengthCodec {
    Plain,
    Masked,
    Sealed(ChunkCipher),
}

/// How one direction of a body is framed and protected.
struct Framing {
    body: Option<ChunkCipher>,
    length: LengthCodec,
    /// SHAKE128(IV): length masks and padding lengths, drawn from one stream.
    shake: Option<Shake>,
    padding: bool,
    chunked: bool,
}

/// The parameters a request fixes for its body, both directions.
#[derive(Clone, Copy)]
pub(crate) struct BodyParams {
    pub(crate) security: Security,
    pub(crate) options: u8,
    /// TCP or Mux (a stream) rather than UDP (one chunk per packet).
    pub(crate) stream: bool,
    pub(crate) key: [u8; 16],
    pub(crate) iv: [u8; 16],
}

impl BodyParams {
    /// The downstream key and IV: the first 16 bytes of SHA-256 of the upstream ones.
    pub(crate) fn response_key_iv(&self) -> ([u8; 16], [u8; 16]) {
        let sha = |b: &[u8; 16]| {
            let d = ring::digest::digest(&ring::digest::SHA256, b);
            super::kdf::first::<16>(d.as_ref())
        };
        (sha(&self.key), sha(&self.iv))
    }

    fn framing(&self, upstream: bool) -> Framing {
        let (key, iv) = if upstream {
            (self.key, self.iv)
        } else {
            self.response_key_iv()
        };
        let aead = self.security != Security::None;
        let has = |bit| self.options & bit != 0;
        // v2ray frames a "none" stream without padding even when the option is set.
        let padding = has(option::GLOBAL_PADDING) && (aead || !self.stream);
        let length = if aead && has(option::AUTHENTICATED_LENGTH) {
            let len_key = kdf16(&self.key, &[AUTH_LEN_SALT]);
            let cipher = ChunkCipher::new(self.security, &len_key, &self.iv);
            LengthCodec::Sealed(cipher.expect("an AEAD security"))
        } else if has(option::CHUNK_MASKING) {
            LengthCodec::Masked
        } else {
            LengthCodec::Plain
        };
        let masked = matches!(length, LengthCodec::Masked);
        Framing {
            body: ChunkCipher::new(self.security, &key, &iv),
            length,
            shake: (masked || padding).then(|| Shake::new(&[&iv])),
            padding,
            chunked: aead || has(option::CHUNK_STREAM),
        }
    }

    /// Opens the upstream body (server side).
    pub(crate) fn request_opener(&self) -> BodyOpener {
        BodyOpener {
            framing: self.framing(true),
            pending: Pending::Length { at: 0 },
        }
    }

    /// Seals the downstream body (server side), the response header first.
    pub(crate) fn response_sealer(&self, response_auth: u8) -> BodySealer {
        let (key, iv) = self.response_key_iv();
        BodySealer::new(
            self.framing(false),
            Some(seal_response_header(&key, &iv, response_auth)),
            &key,
            &iv,
        )
    }

    /// Seals the upstream body (client side).
    pub(crate) fn request_sealer(&self) -> BodySealer {
        BodySealer::new(self.framing(true), None, &self.key, &self.iv)
    }

    /// Opens the downstream body, the response header first (client side).
    pub(crate) fn response_opener(&self, response_auth: u8) -> BodyOpener {
        let (key, iv) = self.response_key_iv();
        BodyOpener {
            framing: self.framing(false),
            pending: Pending::ResponseHeader {
                key,
                iv,
                response_auth,
            },
        }
    }
}

impl Framing {
    fn overhead(&self) -> usize {
        if self.body.is_some() {
            TAG_LEN
        } else {
            0
        }
    }

    fn length_len(&self) -> usize {
        match self.length {
            LengthCodec::Sealed(_) => SEALED_LENGTH,
            _ => 2,
        }
    }

    fn next_padding(&mut self) -> usize {
        match (&mut self.shake, self.padding) {
            (Some(shake), true) => usize::from(shake.next_u16() % 64),
            _ => 0,
        }
    }

    fn next_mask(&mut self) -> u16 {
        self.shake
            .as_mut()
            .expect("masking draws from SHAKE")
            .next_u16()
    }
}

/// Outcome of [`BodyOpener::open`].
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// More bytes are needed after the ones at the head; keep them and call again.
    NeedMore,
    /// One chunk opened (for UDP: one packet): its plaintext lies at `payload`; drop `consumed`
    /// bytes from the head.
    Chunk {
        /// Plaintext range inside the buffer passed in.
        payload: Range<usize>,
        /// Bytes of the buffer this chunk used.
        consumed: usize,
    },
    /// The peer ended its stream (an empty chunk); drop `consumed` bytes. Later calls answer
    /// `End { consumed: 0 }`.
    End {
        /// Bytes of the buffer the end marker used.
        consumed: usize,
    },
}

enum Pending {
    /// Client side: the response header is next.
    ResponseHeader {
        key: [u8; 16],
        iv: [u8; 16],
        response_auth: u8,
    },
    /// A length is next, at `at`.
    Length {
        at: usize,
    },
    /// The length is known; the chunk starts at `at`.
    Payload {
        at: usize,
        size: usize,
        padding: usize,
    },
    Ended,
}

/// Decrypts one direction of a body in place.
pub struct BodyOpener {
    framing: Framing,
    pending: Pending,
}

impl BodyOpener {
    /// Opens the next chunk at the head of `buf`.
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Opened, PeerError> {
        if let Pending::ResponseHeader {
            key,
            iv,
            response_auth,
        } = self.pending
        {
            let Some(at) = open_response_header(&key, &iv, response_auth, buf)? else {
                return Ok(Opened::NeedMore);
            };
            self.pending = Pending::Length { at };
        }
        if let Pending::Length { at } = self.pending {
            if !self.framing.chunked {
                if buf.len() == at {
                    return Ok(Opened::NeedMore);
                }
                self.pending = Pending::Length { at: 0 };
                return Ok(Opened::Chunk {
                    payload: at..buf.len(),
                    consumed: buf.len(),
                });
            }
            let field_len = self.framing.length_len();
            let Some(field) = buf.get_mut(at..at + field_len) else {
                return Ok(Opened::NeedMore);
            };
            let padding = self.framing.next_padding();
            let size = match &mut self.framing.length {
                LengthCodec::Plain => usize::from(u16::from_be_bytes([field[0], field[1]])),
                LengthCodec::Masked => {
                    let raw = u16::from_be_bytes([field[0], field[1]]);
                    usize::from(raw ^ self.framing.next_mask())
                }
                LengthCodec::Sealed(cipher) => {
                    cipher.open(field)?;
                    let size = usize::from(u16::from_be_bytes([field[0], field[1]])) + TAG_LEN;
                    let max = usize::from(u16::MAX);
                    if size > max {
                        return Err(PeerError::Oversize { len: size, max });
                    }
                    size
                }
            };
            let min = self.framing.overhead() + padding;
            if size < min {
                return Err(PeerError::ShortChunk { len: size, min });
            }
            self.pending = Pending::Payload {
                at: at + field_len,
                size,
                padding,
            };
        }
        match self.pending {
            Pending::Payload { at, size, padding } => {
                let end = at + size;
                if buf.len() < end {
                    return Ok(Opened::NeedMore);
                }
                let sealed = at..end - padding;
                if let Some(cipher) = &mut self.framing.body {
                    cipher.open(&mut buf[sealed.clone()])?;
                }
                if sealed.len() == self.framing.overhead() {
                    // No data: the end marker (its tag is checked, unlike v2ray, which does
                    // not read it).
                    self.pending = Pending::Ended;
                    return Ok(Opened::End { consumed: end });
                }
                self.pending = Pending::Length { at: 0 };
                Ok(Opened::Chunk {
                    payload: at..sealed.end - self.framing.overhead(),
                    consumed: end,
                })
            }
            Pending::Ended => Ok(Opened::End { consumed: 0 }),
            Pending::ResponseHeader { .. } | Pending::Length { .. } => {
                unreachable!("handled above")
            }
        }
    }
}

/// Encrypts one direction of a body in place.
pub struct BodySealer {
    framing: Framing,
    header: Option<[u8; RESPONSE_HEADER_LEN]>,
    /// Fills padding: a SHAKE128 stream keyed by the body key, so that padding looks random to
    /// anyone without the key (the codec has no randomness of its own).
    filler: Shake,
}

impl BodySealer {
    fn new(
        framing: Framing,
        header: Option<[u8; RESPONSE_HEADER_LEN]>,
        key: &[u8; 16],
        iv: &[u8; 16],
    ) -> BodySealer {
        BodySealer {
            framing,
            header,
            filler: Shake::new(&[b"marzneshin vmess padding", key, iv]),
        }
    }

    /// Bytes the next [`BodySealer::seal`] writes in front of the payload.
    pub fn prefix_len(&self) -> usize {
        let header = self.header.map_or(0, |h| h.len());
        let length = if self.framing.chunked {
            self.framing.length_len()
        } else {
            0
        };
        header + length
    }

    /// Writes the response header alone, if it has not gone out yet, at the start of `out`;
    /// returns its length (0 once sent). For a server that answers before any payload.
    pub fn take_header(&mut self, out: &mut [u8]) -> usize {
        match self.header.take() {
            Some(h) => {
                out[..h.len()].copy_from_slice(&h);
                h.len()
            }
            None => 0,
        }
    }

    /// Seals `buf[payload]` in place as one chunk (for UDP: one packet), writing the length
    /// (and before the first chunk the response header) in front and the tag and padding
    /// behind, and returns the range to send. An empty payload is the end-of-stream marker
    /// (with security none and no chunk stream it sends only a pending header).
    ///
    /// # Panics
    /// If the payload is longer than [`MAX_CHUNK_PAYLOAD`], or the buffer lacks
    /// [`BodySealer::prefix_len`] bytes in front or [`SEAL_TAILROOM`] behind (caller bugs).
    pub fn seal(&mut self, buf: &mut [u8], payload: Range<usize>) -> Range<usize> {
        assert!(
            payload.len() <= MAX_CHUNK_PAYLOAD,
            "chunk of {}",
            payload.len()
        );
        let start = payload.start - self.prefix_len();
        if let Some(header) = self.header.take() {
            buf[start..start + header.len()].copy_from_slice(&header);
        }
        if !self.framing.chunked {
            return start..payload.end;
        }
        let field = payload.start - self.framing.length_len()..payload.start;
        let padding = self.framing.next_padding();
        let overhead = self.framing.overhead();
        let size = payload.len() + overhead + padding;
        match &mut self.framing.length {
            LengthCodec::Plain => {
                buf[field].copy_from_slice(&(size as u16).to_be_bytes());
            }
            LengthCodec::Masked => {
                let masked = size as u16 ^ self.framing.next_mask();
                buf[field].copy_from_slice(&masked.to_be_bytes());
            }
            LengthCodec::Sealed(cipher) => {
                let field = &mut buf[field];
                field[..2].copy_from_slice(&((size - TAG_LEN) as u16).to_be_bytes());
                cipher.seal(field, 2);
            }
        }
        if let Some(cipher) = &mut self.framing.body {
            cipher.seal(&mut buf[payload.start..], payload.len());
        }
        let pad_at = payload.end + overhead;
        self.filler.0.read(&mut buf[pad_at..pad_at + padding]);
        start..pad_at + padding
    }
}

fn response_keys(key: &[u8; 16], iv: &[u8; 16]) -> [(LessSafeKey, Nonce); 2] {
    let aead = |k: [u8; 16], n: [u8; 12]| {
        let k = UnboundKey::new(&AES_128_GCM, &k).expect("16-byte key");
        (LessSafeKey::new(k), Nonce::assume_unique_for_key(n))
    };
    [
        aead(
            kdf16(key, &[RESPONSE_LEN_KEY]),
            kdf12(iv, &[RESPONSE_LEN_IV]),
        ),
        aead(kdf16(key, &[RESPONSE_KEY]), kdf12(iv, &[RESPONSE_IV])),
    ]
}

/// The response header: `V`, no options, no command.
fn seal_response_header(
    key: &[u8; 16],
    iv: &[u8; 16],
    response_auth: u8,
) -> [u8; RESPONSE_HEADER_LEN] {
    let [(len_key, len_nonce), (key, nonce)] = response_keys(key, iv);
    let mut out = [0u8; RESPONSE_HEADER_LEN];
    out[..2].copy_from_slice(&4u16.to_be_bytes());
    let (length, header) = out.split_at_mut(SEALED_LENGTH);
    let seal = |k: &LessSafeKey, n: Nonce, b: &mut [u8]| {
        let (data, tag) = b.split_at_mut(b.len() - TAG_LEN);
        let t = k
            .seal_in_place_separate_tag(n, Aad::empty(), data)
            .expect("short header");
        tag.copy_from_slice(t.as_ref());
    };
    seal(&len_key, len_nonce, length);
    header[0] = response_auth;
    seal(&key, nonce, header);
    out
}

/// Client side: opens the response header at the head of `buf`; `Some(n)`: the body starts
/// at `n`. Accepts a header carrying a command (skipped).
fn open_response_header(
    key: &[u8; 16],
    iv: &[u8; 16],
    response_auth: u8,
    buf: &mut [u8],
) -> Result<Option<usize>, PeerError> {
    if buf.len() < SEALED_LENGTH {
        return Ok(None);
    }
    let [(len_key, len_nonce), (key, nonce)] = response_keys(key, iv);
    let mut length = [0u8; SEALED_LENGTH];
    length.copy_from_slice(&buf[..SEALED_LENGTH]);
    len_key
        .open_in_place(len_nonce, Aad::empty(), &mut length)
        .map_err(|_| PeerError::BadResponse)?;
    let len = usize::from(u16::from_be_bytes([length[0], length[1]]));
    let end = SEALED_LENGTH + len + TAG_LEN;
    if buf.len() < end {
        return Ok(None);
    }
    let header = key
        .open_in_place(nonce, Aad::empty(), &mut buf[SEALED_LENGTH..end])
        .map_err(|_| PeerError::BadResponse)?;
    if header.len() < 4 || header[0] != response_auth {
        return Err(PeerError::BadResponse);
    }
    Ok(Some(end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmess::tests::hex;

    /// swift-nio-proxies' `testGenerateChaChaPolySymmetricKey`.
    #[test]
    fn vector_chacha_key() {
        let key: [u8; 16] = hex("96b727f438a60a07ca1f554ec689862e").try_into().unwrap();
        assert_eq!(
            chacha_key(&key).to_vec(),
            hex("80c2c504eca628a44855d24e6a9478841d87e34a09027344ebf659d22fb2b88b")
        );
    }

    #[test]
    fn nonce_is_count_then_iv() {
        let iv: [u8; 16] = core::array::from_fn(|i| i as u8);
        let mut c = ChunkCipher::new(Security::Aes128Gcm, &[1; 16], &iv).unwrap();
        for _ in 0..0x102 {
            c.next_nonce();
        }
        assert_eq!(c.nonce, [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(c.count, 0x102);
    }

    /// A sealed length whose value plus the tag does not fit in 16 bits.
    #[test]
    fn sealed_length_oversize() {
        for security in [Security::Aes128Gcm, Security::Chacha20Poly1305] {
            let params = BodyParams {
                security,
                options: option::CHUNK_STREAM | option::AUTHENTICATED_LENGTH,
                stream: true,
                key: [3; 16],
                iv: [4; 16],
            };
            let mut forger =
                ChunkCipher::new(security, &kdf16(&params.key, &[AUTH_LEN_SALT]), &params.iv)
                    .unwrap();
            let mut field = [0u8; SEALED_LENGTH];
            field[..2].copy_from_slice(&0xfff0u16.to_be_bytes());
            forger.seal(&mut field, 2);
            assert_eq!(
                params.request_opener().open(&mut field),
                Err(PeerError::Oversize {
                    len: 0xfff0 + TAG_LEN,
                    max: 0xffff
                })
            );
        }
    }
}
