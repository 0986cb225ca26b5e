//! Sans-IO protocol codecs of the Marzneshin engine.
//!
//! Everything in this crate is pure code over byte slices: no sockets, no runtime, no clock and
//! no randomness of its own. Time (`now`, seconds since the Unix epoch) and fresh random bytes
//! (salts, session ids, padding) are inputs supplied by the caller. The same code therefore runs
//! in the engine's relays, in unit tests, in fuzz targets and in benchmarks.
//!
//! Conventions shared by every codec:
//!
//! - "Need more bytes" is an ordinary outcome ([`shadowsocks::tcp::Handshake::NeedMore`], ...),
//!   never an error.
//! - Decryption and encryption happen in place, in the caller's buffer. Codecs never allocate per
//!   chunk or per packet.
//! - Errors say who was wrong: [`shadowsocks::PeerError`] for what a peer sent (garbage, replay,
//!   bad authentication), [`shadowsocks::ConfigError`] for what the caller configured.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod shadowsocks;

#[doc(hidden)]
pub mod fuzzing;

pub use address::TargetAddr;
