//! Sans-IO protocol codecs of the Marzneshin engine.
//!
//! Everything in this crate is pure code over byte slices: no sockets, no runtime, no clock and
//! no randomness of its own. Time (`now`, seconds since the Unix epoch) and fresh random bytes
//! (salts, session ids, padding) are inputs supplied by the caller. The same code therefore runs
//! in the engine's relays, in unit tests, in fuzz targets and in benchmarks.
//!
//! Codecs: [`shadowsocks`] (AEAD 2017 and 2022), [`vless`], [`vmess`] (AEAD), [`trojan`],
//! [`mux`] (Mux.Cool and XUDP, carried inside VLESS and VMess), [`ws`] (the WebSocket
//! transport VLESS, VMess and Trojan can run over), and [`hysteria2`] (what travels inside
//! Hysteria2's QUIC connections: the HTTP/3 authentication, TCP requests, UDP datagrams, and
//! Salamander obfuscation). Target addresses are [`TargetAddr`], in
//! SOCKS5 form ([`address`]) or the V2Ray family's port-first form ([`vless::address`]).
//!
//! Conventions shared by every codec:
//!
//! - "Need more bytes" is an ordinary outcome ([`shadowsocks::tcp::Handshake::NeedMore`],
//!   [`Progress::NeedMore`], ...), never an error.
//! - Decryption and encryption happen in place, in the caller's buffer. Codecs never allocate per
//!   chunk or per packet.
//! - Errors say who was wrong: one `PeerError` per protocol for what a peer sent (garbage,
//!   replay, bad authentication), one `ConfigError` for what the caller configured. Handshake
//!   parsers that allow a fallback (VLESS, Trojan) consume nothing when they fail.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod directory;
pub mod hysteria2;
pub mod mux;
pub mod shadowsocks;
pub mod tls;
pub mod trojan;
pub mod vless;
pub mod vmess;
pub mod ws;

#[doc(hidden)]
pub mod fuzzing;

pub use address::TargetAddr;

/// Outcome of a parser that reads a header from the bytes received so far (VLESS and Trojan
/// requests): "need more bytes" is an outcome, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress<T> {
    /// The header is not complete; call again with more bytes after the same head.
    NeedMore,
    /// The header is complete.
    Done(T),
}

impl<T> Progress<T> {
    /// What was parsed, if the header was complete.
    pub fn into_done(self) -> Option<T> {
        match self {
            Progress::NeedMore => None,
            Progress::Done(done) => Some(done),
        }
    }
}
