//! VMess AEAD (alterId 0), server side (and a client side for tests and benches).
//!
//! ```text
//! Request header:
//! +----------+----------------------+----------+-------------------------------------+
//! | auth ID  | AEAD(header length)  | nonce    | AEAD(header)                        |
//! | 16 bytes | u16 BE + tag (18 B)  | 8 bytes  | L bytes + tag                       |
//! +----------+----------------------+----------+-------------------------------------+
//!   length key = KDF16(cmdKey, "VMess Header AEAD Key_Length", auth ID, nonce)
//!   length IV  = KDF(cmdKey, "VMess Header AEAD Nonce_Length", auth ID, nonce)[..12]
//!   header key = KDF16(cmdKey, "VMess Header AEAD Key", auth ID, nonce)
//!   header IV  = KDF(cmdKey, "VMess Header AEAD Nonce", auth ID, nonce)[..12]
//!   AES-128-GCM, additional data = auth ID (auth ID: see `users`, KDF: see `kdf`)
//!
//! Header plaintext (L bytes):
//! +-----+---------+----------+---+-----+-------+-----+-----+---------------+---------+-------+
//! | ver | body IV | body key | V | opt | P|Sec | 0   | cmd | port, address | padding | FNV1a |
//! | 1   | 16 B    | 16 B     |u8 | u8  | 4b|4b | u8  | u8  | (not for Mux) | P bytes | u32 BE|
//! +-----+---------+----------+---+-----+-------+-----+-----+---------------+---------+-------+
//!   Sec 3 = aes-128-gcm, 4 = chacha20-poly1305, 5 = none; cmd 1 TCP, 2 UDP, 3 Mux
//!   opt 0x01 chunk stream, 0x04 chunk masking, 0x08 global padding, 0x10 authenticated length
//!   address: port first, types 1/2/3 (see vless::address); FNV1a-32 over all before it
//!
//! Response header (38 bytes), under respKey = SHA256(body key)[..16],
//! respIV = SHA256(body IV)[..16]:
//! +-----------------------------------+-------------------------------------+
//! | AES-GCM(KDF16(respKey, "AEAD Resp | AES-GCM(KDF16(respKey, "AEAD Resp    |
//! | Header Len Key"), u16 BE 4) + tag | Header Key"), V | opt | 0 | 0) + tag|
//! +-----------------------------------+-------------------------------------+
//!   IVs: KDF(respIV, "AEAD Resp Header Len IV")[..12], KDF(respIV, "AEAD Resp Header IV")[..12]
//!
//! Body, each direction (key, IV = body key, IV upstream; respKey, respIV downstream):
//! +----------------------+------------------------------+---------------+---
//! | length               | AEAD(chunk) + tag            | padding       | ...
//! | 2 B, or 18 B sealed  | nonce = count u16 BE | IV[2..12] | P B (random) |
//! +----------------------+------------------------------+---------------+---
//!   length = len(sealed chunk) + P; masked: XOR the next u16 of SHAKE128(IV); sealed
//!   (authenticated length): AEAD under KDF16(body key, "auth_len") with nonces from the body
//!   IV, in both directions, holding length - 16
//!   P (global padding) = next u16 of SHAKE128(IV) % 64, drawn before the mask of each chunk
//!   aes-128-gcm key = K; chacha20-poly1305 key = MD5(K) || MD5(MD5(K))
//!   a chunk whose length is exactly tag + P (no data) ends the stream
//!   security none: no AEAD (tag 0); without the chunk-stream option the body is raw bytes
//! ```
//!
//! Sources: Xray-core `proxy/vmess/aead` and `proxy/vmess/encoding`, v2ray-core's
//! `proxy/vmess/encoding` (security none, as v2ray 4.34 sends it), sing-vmess (which options
//! real clients send). Spec pages: [VMess] (Xray's docs).
//!
//! Supported: security aes-128-gcm, chacha20-poly1305 and none; options chunk stream, chunk
//! masking, global padding, authenticated length; commands TCP, UDP (one chunk per packet)
//! and Mux ([`crate::mux`]). Not supported: legacy (alterId > 0) headers and the aes-128-cfb
//! body (security 1), the "zero" security of v2ray (it reaches the wire as none without chunk
//! stream, which is supported), response commands (dynamic port).
//!
//! What the engine must do: share one auth-ID replay filter ([`crate::shadowsocks::SaltFilter`]
//! with a TTL of [`AUTH_ID_TTL`], behind the same lock as the Shadowsocks salt filter) across
//! every core of an inbound; on a failed handshake, drain (keep reading and discarding for a
//! while, then close) rather than close at once, as the reference servers do, so the failure
//! point is not visible.
//!
//! [VMess]: https://xtls.github.io/en/development/protocols/vmess.html

mod body;
mod handshake;
pub(crate) mod kdf;
pub mod users;

#[cfg(test)]
mod tests;

pub use body::{
    BodyOpener, BodySealer, Opened, MAX_CHUNK_PAYLOAD, MAX_PADDING, SEAL_HEADROOM, SEAL_TAILROOM,
};
pub(crate) use handshake::seal_request_header;
pub use handshake::{
    ClientRequest, Handshake, Request, ServerHandshake, MAX_HEADER_LEN, RESPONSE_HEADER_LEN,
};
pub use users::{cmd_key, seal_auth_id, VmessUsers};

use crate::address::AddressError;
pub use crate::shadowsocks::UserId;
pub use crate::vless::Command;

/// Auth IDs whose timestamp is further than this from the server's clock are rejected.
pub const MAX_TIME_DIFF: u64 = 120;

/// How long the replay filter must remember an auth ID: an ID is acceptable during a window
/// of `2 * MAX_TIME_DIFF` seconds of server time.
pub const AUTH_ID_TTL: u64 = 2 * MAX_TIME_DIFF;

/// Length of every AEAD tag here.
pub const TAG_LEN: usize = 16;

/// The body security a client chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Security {
    /// `aes-128-gcm` (3).
    Aes128Gcm = 3,
    /// `chacha20-poly1305` (4).
    Chacha20Poly1305 = 4,
    /// `none` (5): no encryption of the body (for use inside TLS).
    None = 5,
}

/// Request option bits.
pub mod option {
    /// The body is a stream of length-prefixed chunks.
    pub const CHUNK_STREAM: u8 = 0x01;
    /// Chunk lengths are XORed with a SHAKE128 stream.
    pub const CHUNK_MASKING: u8 = 0x04;
    /// Each chunk carries 0 to 63 bytes of padding (needs masking).
    pub const GLOBAL_PADDING: u8 = 0x08;
    /// Chunk lengths are sealed with their own AEAD.
    pub const AUTHENTICATED_LENGTH: u8 = 0x10;
}

/// What a peer did wrong. Never a reason to panic; on a handshake error the engine drains.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// No configured user's key opens the auth ID (wrong UUID, or not VMess).
    #[error("authentication failed: no user key opens the auth ID")]
    BadAuth,
    /// The auth ID opens, but its timestamp is more than 120 s from the server's clock.
    #[error("timestamp {got} is outside the allowed window around {now}")]
    StaleTimestamp {
        /// Timestamp in the auth ID.
        got: i64,
        /// Server time.
        now: u64,
    },
    /// The auth ID was seen before.
    #[error("replayed auth ID")]
    Replay,
    /// The sealed header length or header failed to authenticate.
    #[error("request header failed to authenticate")]
    BadHeader,
    /// A header or chunk length larger than the protocol allows.
    #[error("length {len} exceeds the limit {max}")]
    Oversize {
        /// Length announced.
        len: usize,
        /// Largest allowed.
        max: usize,
    },
    /// The header ends before its fields do.
    #[error("header is truncated")]
    TruncatedHeader,
    /// The FNV1a checksum at the end of the header does not match.
    #[error("header checksum mismatch")]
    BadChecksum,
    /// A header version other than 1.
    #[error("unknown header version {0}")]
    BadVersion(u8),
    /// A command other than TCP (1), UDP (2) or Mux (3).
    #[error("unknown command {0}")]
    BadCommand(u8),
    /// A security that is not supported: legacy aes-128-cfb (1), auto (2, never valid on the
    /// wire) or an unknown value.
    #[error("unsupported body security {0}")]
    BadSecurity(u8),
    /// Options that cannot be honoured together (padding without masking; UDP without chunks).
    #[error("unsupported option combination {0:#04x}")]
    BadOptions(u8),
    /// The target address is malformed.
    #[error("bad target address: {0}")]
    BadAddress(#[from] AddressError),
    /// A body chunk (or its sealed length) failed to authenticate.
    #[error("chunk failed to authenticate")]
    BadChunk,
    /// A chunk length shorter than its tag and padding.
    #[error("chunk length {len} is shorter than its tag and padding ({min})")]
    ShortChunk {
        /// Length announced.
        len: usize,
        /// Tag plus padding.
        min: usize,
    },
    /// The response header does not echo the request's response byte (client side).
    #[error("response header does not match the request")]
    BadResponse,
}

/// What the caller configured wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Two users with the same UUID on one inbound.
    #[error("two users share one id")]
    DuplicateUser,
}
