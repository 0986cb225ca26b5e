//! Shadowsocks, server side (and a client side for tests and benches): AEAD (2017) and
//! 2022 (SIP022) with multi-user identity headers (SIP023).
//!
//! Specs: [AEAD], [SIP022], [SIP023], share links [SIP002].
//!
//! # AEAD (2017): aes-128-gcm, aes-256-gcm, chacha20-ietf-poly1305
//!
//! Key = `EVP_BytesToKey(MD5, password)`; per-stream subkey = `HKDF-SHA1(key, salt, "ss-subkey")`;
//! nonce = 12-byte little-endian counter, incremented after every seal/open.
//!
//! ```text
//! TCP stream (each direction):
//! +------------+----------------------+------------------------+----------------------+---
//! | salt       | len: u16 BE + tag    | payload + tag          | len + tag            | ...
//! | 16/32 B    | (2 + 16 B)           | (len <= 0x3FFF, + 16)  |                      |
//! +------------+----------------------+------------------------+----------------------+---
//! The first request payload starts with the target address (SOCKS5 form).
//!
//! UDP packet:
//! +------------+-------------------------------------------+
//! | salt       | AEAD(nonce 0): address | payload | tag    |
//! +------------+-------------------------------------------+
//! ```
//!
//! # 2022 (SIP022): 2022-blake3-aes-128-gcm, -aes-256-gcm, -chacha20-poly1305
//!
//! Key = base64 PSK of exactly the key size; subkey =
//! `BLAKE3-derive_key("shadowsocks 2022 session subkey", psk || salt)`.
//!
//! ```text
//! TCP request:
//! +------+---------------+--------------------------------+--------------------------------+---
//! | salt | [EIH 16 B]... | fixed header + tag             | variable header + tag          | chunks
//! |      | (SIP023)      | type=0 | ts u64 | var len u16  | addr | pad u16 | pad | payload |
//! +------+---------------+--------------------------------+--------------------------------+---
//! TCP response:
//! +------+---------------------------------------------------+---------------+---
//! | salt | type=1 | ts u64 | request salt | len u16 | + tag  | payload + tag | len + tag ...
//! +------+---------------------------------------------------+---------------+---
//! Chunks are as in AEAD (2017) but carry up to 0xFFFF bytes.
//!
//! UDP packet, AES methods:
//! +-------------------------------+---------------+---------------------------------------+
//! | AES-ECB(psk): session id 8 B  | [EIH 16 B]    | AEAD(subkey(session id),              |
//! |               packet id u64   | (SIP023)      |      nonce = separate header [4..16]) |
//! +-------------------------------+---------------+---------------------------------------+
//!   body client->server: type=0 | ts | pad len | pad | addr | payload
//!   body server->client: type=1 | ts | client session id | pad len | pad | addr | payload
//!
//! UDP packet, 2022-blake3-chacha20-poly1305:
//! +-------------+--------------------------------------------------------------+
//! | nonce 24 B  | XChaCha20-Poly1305(psk): session id | packet id | body | tag |
//! +-------------+--------------------------------------------------------------+
//! ```
//!
//! Identity header (TCP) = `AES-ECB(BLAKE3-derive_key("shadowsocks 2022 identity subkey",
//! iPSK || salt), BLAKE3(uPSK)[..16])`; (UDP) = `AES-ECB(iPSK, BLAKE3(uPSK)[..16] ^ separate
//! header)`. The server finds the user from the decrypted hash in O(1).
//!
//! [AEAD]: https://shadowsocks.org/doc/aead.html
//! [SIP022]: https://shadowsocks.org/doc/sip022.html
//! [SIP023]: https://shadowsocks.org/doc/sip023.html
//! [SIP002]: https://shadowsocks.org/doc/sip002.html

pub(crate) mod crypto;
pub mod replay;
pub mod tcp;
pub mod udp;
pub mod users;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

pub use crypto::{Key, TAG_LEN};
pub use replay::{SaltFilter, SlidingWindow};
pub use users::{UserId, UserKeys};

use crate::address::AddressError;

/// A Shadowsocks cipher ("method" in configs and links).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `aes-128-gcm`
    Aes128Gcm,
    /// `aes-256-gcm`
    Aes256Gcm,
    /// `chacha20-ietf-poly1305`
    Chacha20IetfPoly1305,
    /// `2022-blake3-aes-128-gcm`
    Blake3Aes128Gcm,
    /// `2022-blake3-aes-256-gcm`
    Blake3Aes256Gcm,
    /// `2022-blake3-chacha20-poly1305`
    Blake3Chacha20Poly1305,
}

impl Method {
    /// Every method, in the order the docs list them.
    pub const ALL: [Method; 6] = [
        Method::Aes128Gcm,
        Method::Aes256Gcm,
        Method::Chacha20IetfPoly1305,
        Method::Blake3Aes128Gcm,
        Method::Blake3Aes256Gcm,
        Method::Blake3Chacha20Poly1305,
    ];

    /// The name used in configs and links.
    pub fn name(self) -> &'static str {
        match self {
            Method::Aes128Gcm => "aes-128-gcm",
            Method::Aes256Gcm => "aes-256-gcm",
            Method::Chacha20IetfPoly1305 => "chacha20-ietf-poly1305",
            Method::Blake3Aes128Gcm => "2022-blake3-aes-128-gcm",
            Method::Blake3Aes256Gcm => "2022-blake3-aes-256-gcm",
            Method::Blake3Chacha20Poly1305 => "2022-blake3-chacha20-poly1305",
        }
    }

    /// Key length in bytes (also the salt length).
    pub fn key_len(self) -> usize {
        match self {
            Method::Aes128Gcm | Method::Blake3Aes128Gcm => 16,
            _ => 32,
        }
    }

    /// Salt length in bytes.
    pub fn salt_len(self) -> usize {
        self.key_len()
    }

    /// Whether this is a 2022 (SIP022) method.
    pub fn is_2022(self) -> bool {
        matches!(
            self,
            Method::Blake3Aes128Gcm | Method::Blake3Aes256Gcm | Method::Blake3Chacha20Poly1305
        )
    }

    /// Whether identity headers (SIP023, many users on one port) can be used: AES 2022 only.
    pub fn supports_identity_headers(self) -> bool {
        matches!(self, Method::Blake3Aes128Gcm | Method::Blake3Aes256Gcm)
    }

    /// Largest payload in one TCP chunk.
    pub fn max_chunk_payload(self) -> usize {
        if self.is_2022() {
            0xFFFF
        } else {
            0x3FFF
        }
    }

    pub(crate) fn aead(self) -> &'static ring::aead::Algorithm {
        match self {
            Method::Aes128Gcm | Method::Blake3Aes128Gcm => &ring::aead::AES_128_GCM,
            Method::Aes256Gcm | Method::Blake3Aes256Gcm => &ring::aead::AES_256_GCM,
            Method::Chacha20IetfPoly1305 | Method::Blake3Chacha20Poly1305 => {
                &ring::aead::CHACHA20_POLY1305
            }
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| ConfigError::UnknownMethod(s.to_owned()))
    }
}

/// What a peer did wrong. Never a reason to panic; the engine answers with probe-resistant
/// behaviour (drain, then close).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No configured user's key authenticates the data (wrong key, or not Shadowsocks at all).
    #[error("authentication failed: no user key opens the header")]
    BadAuth,
    /// An AEAD chunk after the header failed to authenticate.
    #[error("chunk failed to authenticate")]
    BadChunk,
    /// The salt (or UDP session/packet id) was seen before.
    #[error("replayed salt or packet")]
    Replay,
    /// The 2022 header's timestamp is more than 30 s from the server's clock.
    #[error("timestamp {got} is outside the allowed window around {now}")]
    StaleTimestamp {
        /// Timestamp in the header.
        got: u64,
        /// Server time.
        now: u64,
    },
    /// A header type byte other than the expected one.
    #[error("unexpected header type {0}")]
    BadHeaderType(u8),
    /// A length field larger than the protocol allows.
    #[error("length {len} exceeds the limit {max}")]
    Oversize {
        /// Length announced.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The target address inside the header is malformed or truncated.
    #[error("bad target address: {0}")]
    BadAddress(#[from] AddressError),
    /// The address (or padding) does not fit in the header chunk it must be in.
    #[error("header is truncated")]
    TruncatedHeader,
    /// A 2022 request with neither payload nor padding (forbidden by SIP022).
    #[error("request carries neither payload nor padding")]
    EmptyRequest,
    /// A packet too short to hold even its headers.
    #[error("packet too short")]
    ShortPacket,
}

/// What the caller configured wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Method name not recognised.
    #[error("unknown method {0:?}; expected one of aes-128-gcm, aes-256-gcm, chacha20-ietf-poly1305, 2022-blake3-aes-128-gcm, 2022-blake3-aes-256-gcm, 2022-blake3-chacha20-poly1305")]
    UnknownMethod(String),
    /// A 2022 key that is not base64.
    #[error("key is not valid base64")]
    KeyNotBase64,
    /// A 2022 key of the wrong size.
    #[error("key is {got} bytes after base64 decoding; {method} needs exactly {want}")]
    KeyLength {
        /// Method name.
        method: &'static str,
        /// Bytes needed.
        want: usize,
        /// Bytes given.
        got: usize,
    },
    /// An empty password.
    #[error("password is empty")]
    EmptyPassword,
    /// A server identity key given for a method without identity headers.
    #[error("{0} does not support identity headers (server psk); use an AES 2022 method")]
    NoIdentityHeaders(&'static str),
    /// Two users with the same key on one inbound.
    #[error("two users share one key")]
    DuplicateKey,
}
