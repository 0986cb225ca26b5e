//! Shadowsocks UDP packets, server side (decode requests, encode responses) and client side.
//!
//! Every packet is processed in place. Responses are built around a payload that the caller
//! received at `buf[UDP_HEADROOM..]`, leaving room for the headers in front and the tag behind.

use std::ops::Range;

use super::crypto::{session_subkey, BlockCipher, Key, SessionCipher, XChaCha, TAG_LEN};
use super::tcp::check_time;
use super::users::{UserEntry, UserId, UserKeys};
use super::{Method, PeerError};
use crate::address::{Parsed, TargetAddr, MAX_ADDR_LEN};

/// Room a caller leaves in front of a response payload: the largest header of any method
/// (XChaCha nonce + separate fields + address).
pub const UDP_HEADROOM: usize = 24 + 16 + 1 + 8 + 8 + 2 + MAX_ADDR_LEN;

/// A decoded client packet.
#[derive(Debug)]
pub struct ClientPacket {
    /// Who sent it.
    pub user: UserId,
    /// Where to send the payload.
    pub target: TargetAddr,
    /// Plaintext payload inside the buffer.
    pub payload: Range<usize>,
    /// 2022: the client session id and packet id. The caller must pass the packet id through
    /// the session's [`super::SlidingWindow`] before forwarding.
    pub session: Option<(u64, u64)>,
}

/// Decodes one client packet in place. `scratch` (at least as long as `buf`) keeps a copy of
/// the ciphertext when more than one user key must be tried.
pub fn decode_client_packet(
    keys: &UserKeys,
    buf: &mut [u8],
    now: u64,
    hint: Option<UserId>,
    scratch: &mut [u8],
) -> Result<ClientPacket, PeerError> {
    match keys.method() {
        Method::Blake3Aes128Gcm | Method::Blake3Aes256Gcm => {
            decode_2022_aes(keys, buf, now, hint, scratch)
        }
        Method::Blake3Chacha20Poly1305 => trial(keys, buf, hint, scratch, |u, b| {
            decode_2022_chacha(u, b, now)
        }),
        m => trial(keys, buf, hint, scratch, |u, b| decode_2017(m, u, b)),
    }
}

/// Tries each candidate user; the ciphertext is restored from `scratch` between attempts.
fn trial(
    keys: &UserKeys,
    buf: &mut [u8],
    hint: Option<UserId>,
    scratch: &mut [u8],
    mut attempt: impl FnMut(&UserEntry, &mut [u8]) -> Result<ClientPacket, PeerError>,
) -> Result<ClientPacket, PeerError> {
    let n = buf.len();
    let several = keys.len() > 1;
    if several {
        scratch[..n].copy_from_slice(buf);
    }
    let mut last = PeerError::BadAuth;
    for (i, user) in keys.trial_order(hint).enumerate() {
        if i > 0 {
            buf.copy_from_slice(&scratch[..n]);
        }
        match attempt(user, buf) {
            Ok(p) => return Ok(p),
            Err(PeerError::BadAuth) => continue,
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn parse_addr(buf: &[u8]) -> Result<(TargetAddr, usize), PeerError> {
    match TargetAddr::parse(buf)? {
        Parsed::Done(t, n) => Ok((t, n)),
        Parsed::NeedMore => Err(PeerError::TruncatedHeader),
    }
}

fn decode_2017(m: Method, user: &UserEntry, buf: &mut [u8]) -> Result<ClientPacket, PeerError> {
    let s = m.salt_len();
    if buf.len() < s + TAG_LEN + 1 {
        return Err(PeerError::ShortPacket);
    }
    let (salt, body) = buf.split_at_mut(s);
    let mut cipher = SessionCipher::from_salt(m, &user.key, salt);
    cipher.open(body).map_err(|_| PeerError::BadAuth)?;
    let plain = &body[..body.len() - TAG_LEN];
    let (target, alen) = parse_addr(plain)?;
    Ok(ClientPacket {
        user: user.id,
        target,
        payload: s + alen..s + plain.len(),
        session: None,
    })
}

/// Parses `type | ts | [client session id] | pad len | pad | addr` at `at`; returns the target
/// and where the payload starts.
fn parse_body_2022(
    plain: &[u8],
    at: usize,
    want_type: u8,
    now: u64,
) -> Result<(TargetAddr, usize, Option<u64>), PeerError> {
    let fixed = if want_type == 0 {
        1 + 8 + 2
    } else {
        1 + 8 + 8 + 2
    };
    if plain.len() < at + fixed {
        return Err(PeerError::ShortPacket);
    }
    let h = &plain[at..];
    if h[0] != want_type {
        return Err(PeerError::BadHeaderType(h[0]));
    }
    check_time(
        u64::from_be_bytes(h[1..9].try_into().expect("8 bytes")),
        now,
    )?;
    let (client_session, p) = if want_type == 0 {
        (None, 9)
    } else {
        (
            Some(u64::from_be_bytes(h[9..17].try_into().expect("8 bytes"))),
            17,
        )
    };
    let pad = u16::from_be_bytes([h[p], h[p + 1]]) as usize;
    let addr_at = p + 2 + pad;
    if h.len() < addr_at {
        return Err(PeerError::TruncatedHeader);
    }
    let (target, alen) = parse_addr(&h[addr_at..])?;
    Ok((target, at + addr_at + alen, client_session))
}

fn decode_2022_aes(
    keys: &UserKeys,
    buf: &mut [u8],
    now: u64,
    hint: Option<UserId>,
    scratch: &mut [u8],
) -> Result<ClientPacket, PeerError> {
    let m = keys.method();
    let eih = if keys.identity.is_some() { 16 } else { 0 };
    if buf.len() < 16 + eih + 1 + 8 + 2 + TAG_LEN {
        return Err(PeerError::ShortPacket);
    }
    if let Some(identity) = &keys.identity {
        let mut header = [0u8; 16];
        header.copy_from_slice(&buf[..16]);
        identity.block.decrypt(&mut header);
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&buf[16..32]);
        identity.block.decrypt(&mut hash);
        for (h, x) in hash.iter_mut().zip(header) {
            *h ^= x;
        }
        let user = keys.by_identity_hash(&hash).ok_or(PeerError::BadAuth)?;
        return open_2022_aes(m, user, header, buf, 32, now);
    }
    trial(keys, buf, hint, scratch, |user, buf| {
        let mut header = [0u8; 16];
        header.copy_from_slice(&buf[..16]);
        user.block
            .as_ref()
            .expect("AES 2022 users have a block cipher")
            .decrypt(&mut header);
        open_2022_aes(m, user, header, buf, 16, now)
    })
}

fn open_2022_aes(
    m: Method,
    user: &UserEntry,
    header: [u8; 16],
    buf: &mut [u8],
    body_at: usize,
    now: u64,
) -> Result<ClientPacket, PeerError> {
    let session_id = u64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
    let packet_id = u64::from_be_bytes(header[8..].try_into().expect("8 bytes"));
    let cipher = SessionCipher::new(m, &session_subkey(m, &user.key, &header[..8]));
    let nonce: [u8; 12] = header[4..16].try_into().expect("12 bytes");
    cipher.open_with_nonce(nonce, &mut buf[body_at..])?;
    let plain_end = buf.len() - TAG_LEN;
    let (target, payload_at, _) = parse_body_2022(&buf[..plain_end], body_at, 0, now)?;
    Ok(ClientPacket {
        user: user.id,
        target,
        payload: payload_at..plain_end,
        session: Some((session_id, packet_id)),
    })
}

fn decode_2022_chacha(
    user: &UserEntry,
    buf: &mut [u8],
    now: u64,
) -> Result<ClientPacket, PeerError> {
    if buf.len() < 24 + 16 + 1 + 8 + 2 + TAG_LEN {
        return Err(PeerError::ShortPacket);
    }
    let nonce: [u8; 24] = buf[..24].try_into().expect("24 bytes");
    let xc = user
        .xchacha
        .as_ref()
        .expect("chacha 2022 users have an XChaCha cipher");
    xc.open(&nonce, &mut buf[24..])?;
    let plain_end = buf.len() - TAG_LEN;
    let session_id = u64::from_be_bytes(buf[24..32].try_into().expect("8 bytes"));
    let packet_id = u64::from_be_bytes(buf[32..40].try_into().expect("8 bytes"));
    let (target, payload_at, _) = parse_body_2022(&buf[..plain_end], 40, 0, now)?;
    Ok(ClientPacket {
        user: user.id,
        target,
        payload: payload_at..plain_end,
        session: Some((session_id, packet_id)),
    })
}

/// Encodes server-to-client packets for one client session.
pub struct UdpResponder {
    method: Method,
    key: Key,
    block: Option<BlockCipher>,
    session: Option<SessionCipher>,
    server_session_id: u64,
    next_packet_id: u64,
    client_session_id: u64,
}

impl UdpResponder {
    /// A responder for `user`'s session. `client_session_id` comes from the decoded packet
    /// (2022); `server_session_id` is a fresh random id from the caller.
    pub fn new(
        keys: &UserKeys,
        user: UserId,
        client_session_id: Option<u64>,
        server_session_id: u64,
    ) -> Option<UdpResponder> {
        let m = keys.method();
        let entry = keys.get(user)?;
        let aes2022 = m.is_2022() && m != Method::Blake3Chacha20Poly1305;
        Some(UdpResponder {
            method: m,
            key: entry.key.clone(),
            block: aes2022.then(|| BlockCipher::new(entry.key.as_bytes())),
            session: aes2022.then(|| {
                SessionCipher::new(
                    m,
                    &session_subkey(m, &entry.key, &server_session_id.to_be_bytes()),
                )
            }),
            server_session_id,
            next_packet_id: 0,
            client_session_id: client_session_id.unwrap_or(0),
        })
    }

    /// Seals `buf[payload]` (which must start at or after [`UDP_HEADROOM`] and have
    /// [`TAG_LEN`] bytes free after it) as a packet from `source`. `random` supplies the salt
    /// (AEAD 2017) or nonce (2022 ChaCha). Returns the range to send.
    pub fn encode(
        &mut self,
        buf: &mut [u8],
        payload: Range<usize>,
        source: &TargetAddr,
        now: u64,
        random: &[u8; 32],
    ) -> Range<usize> {
        let m = self.method;
        let alen = source.encoded_len();
        let packet_id = self.next_packet_id;
        self.next_packet_id += 1;
        match m {
            Method::Blake3Aes128Gcm | Method::Blake3Aes256Gcm => {
                let body = payload.start - alen - 2 - 8 - 8 - 1;
                let start = body - 16;
                let mut header = [0u8; 16];
                header[..8].copy_from_slice(&self.server_session_id.to_be_bytes());
                header[8..].copy_from_slice(&packet_id.to_be_bytes());
                write_body_2022(buf, body, 1, now, Some(self.client_session_id), source);
                let nonce: [u8; 12] = header[4..].try_into().expect("12 bytes");
                let cipher = self.session.as_ref().expect("set for AES 2022");
                let tag = cipher.seal_with_nonce(nonce, &mut buf[body..payload.end]);
                buf[payload.end..payload.end + TAG_LEN].copy_from_slice(tag.as_ref());
                self.block
                    .as_ref()
                    .expect("set for AES 2022")
                    .encrypt(&mut header);
                buf[start..body].copy_from_slice(&header);
                start..payload.end + TAG_LEN
            }
            Method::Blake3Chacha20Poly1305 => {
                let body = payload.start - alen - 2 - 8 - 8 - 1 - 16;
                let start = body - 24;
                buf[body..body + 8].copy_from_slice(&self.server_session_id.to_be_bytes());
                buf[body + 8..body + 16].copy_from_slice(&packet_id.to_be_bytes());
                write_body_2022(buf, body + 16, 1, now, Some(self.client_session_id), source);
                let nonce: [u8; 24] = random[..24].try_into().expect("24 bytes");
                buf[start..body].copy_from_slice(&nonce);
                let tag = XChaCha::new(&self.key).seal(&nonce, &mut buf[body..payload.end]);
                buf[payload.end..payload.end + TAG_LEN].copy_from_slice(&tag);
                start..payload.end + TAG_LEN
            }
            _ => {
                let s = m.salt_len();
                let body = payload.start - alen;
                let start = body - s;
                source.write(&mut buf[body..]);
                buf[start..body].copy_from_slice(&random[..s]);
                let mut cipher = SessionCipher::from_salt(m, &self.key, &random[..s]);
                let tag = cipher.seal(&mut buf[body..payload.end]);
                buf[payload.end..payload.end + TAG_LEN].copy_from_slice(tag.as_ref());
                start..payload.end + TAG_LEN
            }
        }
    }
}

/// Writes `type | ts | [client session id] | pad len = 0 | addr` at `at`.
fn write_body_2022(
    buf: &mut [u8],
    at: usize,
    kind: u8,
    now: u64,
    client_session: Option<u64>,
    addr: &TargetAddr,
) {
    buf[at] = kind;
    buf[at + 1..at + 9].copy_from_slice(&now.to_be_bytes());
    let mut p = at + 9;
    if let Some(id) = client_session {
        buf[p..p + 8].copy_from_slice(&id.to_be_bytes());
        p += 8;
    }
    buf[p..p + 2].copy_from_slice(&0u16.to_be_bytes());
    addr.write(&mut buf[p + 2..]);
}

/// Client side of a UDP association (tests, benches, fuzz seeds).
pub struct UdpClient {
    method: Method,
    key: Key,
    identity: Option<Key>,
    session_id: u64,
    next_packet_id: u64,
}

impl UdpClient {
    /// A client session with the user's `key`, optional server identity PSK and a random id.
    pub fn new(method: Method, key: Key, identity: Option<Key>, session_id: u64) -> UdpClient {
        UdpClient {
            method,
            key,
            identity,
            session_id,
            next_packet_id: 0,
        }
    }

    /// Seals `buf[payload]` (starting at or after [`UDP_HEADROOM`], with room for the tag) as
    /// a packet to `target`. Returns the range to send.
    pub fn encode(
        &mut self,
        buf: &mut [u8],
        payload: Range<usize>,
        target: &TargetAddr,
        now: u64,
        random: &[u8; 32],
    ) -> Range<usize> {
        let m = self.method;
        let alen = target.encoded_len();
        let packet_id = self.next_packet_id;
        self.next_packet_id += 1;
        match m {
            Method::Blake3Aes128Gcm | Method::Blake3Aes256Gcm => {
                let body = payload.start - alen - 2 - 8 - 1;
                let eih = if self.identity.is_some() { 16 } else { 0 };
                let start = body - eih - 16;
                let mut header = [0u8; 16];
                header[..8].copy_from_slice(&self.session_id.to_be_bytes());
                header[8..].copy_from_slice(&packet_id.to_be_bytes());
                write_body_2022(buf, body, 0, now, None, target);
                let cipher = SessionCipher::new(m, &session_subkey(m, &self.key, &header[..8]));
                let tag = cipher.seal_with_nonce(
                    header[4..].try_into().expect("12"),
                    &mut buf[body..payload.end],
                );
                buf[payload.end..payload.end + TAG_LEN].copy_from_slice(tag.as_ref());
                let outer = self.identity.as_ref().unwrap_or(&self.key);
                let block = BlockCipher::new(outer.as_bytes());
                if self.identity.is_some() {
                    let mut eih_block = self.key.identity_hash();
                    for (e, h) in eih_block.iter_mut().zip(header) {
                        *e ^= h;
                    }
                    block.encrypt(&mut eih_block);
                    buf[start + 16..body].copy_from_slice(&eih_block);
                }
                block.encrypt(&mut header);
                buf[start..start + 16].copy_from_slice(&header);
                start..payload.end + TAG_LEN
            }
            Method::Blake3Chacha20Poly1305 => {
                let body = payload.start - alen - 2 - 8 - 1 - 16;
                let start = body - 24;
                buf[body..body + 8].copy_from_slice(&self.session_id.to_be_bytes());
                buf[body + 8..body + 16].copy_from_slice(&packet_id.to_be_bytes());
                write_body_2022(buf, body + 16, 0, now, None, target);
                let nonce: [u8; 24] = random[..24].try_into().expect("24 bytes");
                buf[start..body].copy_from_slice(&nonce);
                let tag = XChaCha::new(&self.key).seal(&nonce, &mut buf[body..payload.end]);
                buf[payload.end..payload.end + TAG_LEN].copy_from_slice(&tag);
                start..payload.end + TAG_LEN
            }
            _ => {
                let s = m.salt_len();
                let body = payload.start - alen;
                let start = body - s;
                target.write(&mut buf[body..]);
                buf[start..body].copy_from_slice(&random[..s]);
                let mut cipher = SessionCipher::from_salt(m, &self.key, &random[..s]);
                let tag = cipher.seal(&mut buf[body..payload.end]);
                buf[payload.end..payload.end + TAG_LEN].copy_from_slice(tag.as_ref());
                start..payload.end + TAG_LEN
            }
        }
    }

    /// Opens a server packet in place: the source address and the payload range.
    pub fn decode(
        &self,
        buf: &mut [u8],
        now: u64,
    ) -> Result<(TargetAddr, Range<usize>), PeerError> {
        let m = self.method;
        match m {
            Method::Blake3Aes128Gcm | Method::Blake3Aes256Gcm => {
                if buf.len() < 16 + TAG_LEN + 1 + 8 + 8 + 2 {
                    return Err(PeerError::ShortPacket);
                }
                let mut header = [0u8; 16];
                header.copy_from_slice(&buf[..16]);
                BlockCipher::new(self.key.as_bytes()).decrypt(&mut header);
                let cipher = SessionCipher::new(m, &session_subkey(m, &self.key, &header[..8]));
                cipher.open_with_nonce(header[4..].try_into().expect("12"), &mut buf[16..])?;
                let end = buf.len() - TAG_LEN;
                let (src, at, client) = parse_body_2022(&buf[..end], 16, 1, now)?;
                if client != Some(self.session_id) {
                    return Err(PeerError::BadAuth);
                }
                Ok((src, at..end))
            }
            Method::Blake3Chacha20Poly1305 => {
                if buf.len() < 24 + 16 + TAG_LEN + 1 + 8 + 8 + 2 {
                    return Err(PeerError::ShortPacket);
                }
                let nonce: [u8; 24] = buf[..24].try_into().expect("24");
                XChaCha::new(&self.key).open(&nonce, &mut buf[24..])?;
                let end = buf.len() - TAG_LEN;
                let (src, at, client) = parse_body_2022(&buf[..end], 40, 1, now)?;
                if client != Some(self.session_id) {
                    return Err(PeerError::BadAuth);
                }
                Ok((src, at..end))
            }
            _ => {
                let s = m.salt_len();
                if buf.len() < s + TAG_LEN + 1 {
                    return Err(PeerError::ShortPacket);
                }
                let (salt, body) = buf.split_at_mut(s);
                SessionCipher::from_salt(m, &self.key, salt)
                    .open(body)
                    .map_err(|_| PeerError::BadAuth)?;
                let end = buf.len() - TAG_LEN;
                let (src, alen) = parse_addr(&buf[s..end])?;
                Ok((src, s + alen..end))
            }
        }
    }
}
