//! WebSocket (RFC 6455), server side: the HTTP/1.1 upgrade and the frames after it, as the
//! V2Ray family's `ws` transport uses them (a byte stream carried in binary messages).
//!
//! ```text
//! Opening handshake (client -> server; the server answers 101 or an ordinary 4xx):
//!   GET /path HTTP/1.1
//!   Host: example.com                         checked when an inbound names a host
//!   Upgrade: websocket
//!   Connection: Upgrade
//!   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==
//!   Sec-WebSocket-Version: 13
//!   Sec-WebSocket-Protocol: <base64url>       early data (Xray `?ed=`, sing-box
//!                                             `max_early_data`), echoed in the 101
//!
//!   HTTP/1.1 101 Switching Protocols
//!   Upgrade: websocket
//!   Connection: Upgrade
//!   Sec-WebSocket-Accept: base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
//!
//! Frame (each direction):
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| payload len |    extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |   (16 bits if len7 = 126,     |
//! |N|V|V|V|       |S|             |    64 bits if len7 = 127)     |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     extended payload length, continued (64-bit form)          |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               | masking key (client frames:   |
//! +-------------------------------+ always; server frames: never) |
//! |  ...masking key, continued    |         payload data ...      |
//! +-------------------------------+-------------------------------+
//!   opcode: 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong
//!   payload[i] ^= mask[i % 4] (client frames)
//! ```
//!
//! Spec: [RFC 6455]. Early data follows Xray-core's `transport/internet/websocket/hub.go` and
//! sing-box's `transport/v2raywebsocket`: the client puts the first bytes of the stream,
//! base64 (URL-safe alphabet, no padding), in `Sec-WebSocket-Protocol`, and expects the header
//! echoed back unchanged.
//!
//! [`handshake`] parses the request ([`handshake::parse_upgrade`]) and writes the answer;
//! [`frame`] turns client frames back into the byte stream, unmasking in place in the
//! caller's buffer ([`frame::FrameDecoder`]), and writes server frame headers
//! ([`frame::server_header`]). Text and binary messages both carry stream bytes (Xray reads
//! either); fragmentation is followed but never needed to rebuild messages.
//!
//! [RFC 6455]: https://www.rfc-editor.org/rfc/rfc6455

pub mod frame;
pub mod handshake;

#[cfg(test)]
mod tests;

pub use frame::{FrameDecoder, FrameError};
pub use handshake::{parse_upgrade, HandshakeError, Upgrade, UpgradePolicy};
