//! Shadowsocks TCP streams: the server handshake, and in-place chunk opening and sealing.
//!
//! Buffer contract (what makes the relay zero-copy): the caller keeps the unconsumed bytes of
//! the stream at the head of the slice it passes in; the codec decrypts in that slice and
//! reports which range is plaintext and how many bytes it consumed. When the codec answers
//! `NeedMore`, the caller reads more bytes *after* the ones it already holds and calls again
//! with the same head. For sealing, the caller reads plaintext into its buffer leaving
//! [`HEADROOM`] bytes in front and [`TAG_LEN`] bytes behind; the codec writes salt, headers and
//! tags around the payload and returns the range to send.

use std::ops::Range;

use super::crypto::{identity_subkey, BlockCipher, Key, SessionCipher, TAG_LEN};
use super::replay::SaltCheck;
use super::users::{UserEntry, UserId, UserKeys};
use super::{Method, PeerError};
use crate::address::{Parsed, TargetAddr};

/// Bytes a caller must leave in front of a payload passed to [`StreamSealer::seal`]: enough
/// for the largest first response (32-byte salt + 2022 header of 43 bytes + tag).
pub const HEADROOM: usize = 96;

/// Timestamps further than this from the server's clock are replays (SIP022).
pub const MAX_TIME_DIFF: u64 = 30;

/// Largest padding a 2022 request may carry.
pub const MAX_PADDING: usize = 900;

/// Bytes in front of the payload of every chunk after the first: the sealed length.
pub const LEN_CHUNK: usize = 2 + TAG_LEN;
const REQ_FIXED: usize = 1 + 8 + 2;

/// Progress of [`ServerHandshake::advance`].
pub enum Handshake {
    /// More bytes are needed; call again with the same head and more bytes after it.
    NeedMore,
    /// The request is authenticated and parsed.
    Done(Box<Request>),
}

/// An authenticated request.
pub struct Request {
    /// Who sent it.
    pub user: UserId,
    /// Where to connect.
    pub target: TargetAddr,
    /// Bytes of the buffer taken by the header (the initial payload lies inside this span).
    pub consumed: usize,
    /// Initial payload, decrypted in place, to forward to the target first.
    pub payload: Range<usize>,
    /// Opens the rest of the request stream.
    pub opener: StreamOpener,
    method: Method,
    key: Key,
    request_salt: [u8; 32],
}

impl Request {
    /// A sealer for the response stream, with a fresh random `salt` supplied by the caller.
    pub fn response_sealer(&self, salt: &[u8]) -> StreamSealer {
        let s = self.method.salt_len();
        let first = if self.method.is_2022() {
            First::Response2022 {
                salt: to32(&salt[..s]),
                request_salt: self.request_salt,
            }
        } else {
            First::Salt(to32(&salt[..s]))
        };
        StreamSealer {
            method: self.method,
            cipher: SessionCipher::from_salt(self.method, &self.key, &salt[..s]),
            first: Some(first),
        }
    }
}

// The state lives inline in each connection for the few reads a handshake takes; boxing the
// cipher would cost an allocation per connection.
#[allow(clippy::large_enum_variant)]
enum HsState {
    Start,
    /// The user is known and the header chunk's length decrypted; that chunk starts at `at`.
    Found {
        entry: (UserId, Key),
        cipher: SessionCipher,
        at: usize,
        len: usize,
        salt: [u8; 32],
    },
    Finished,
}

/// Server side of the handshake of one TCP connection.
pub struct ServerHandshake {
    state: HsState,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A handshake waiting for its first bytes.
    pub fn new() -> ServerHandshake {
        ServerHandshake {
            state: HsState::Start,
        }
    }

    /// Feeds the bytes received so far (`buf` always starts at the first byte of the
    /// connection). `now` is the Unix time in seconds; `hint` is a user to try first; `salts`
    /// rejects replayed salts.
    pub fn advance(
        &mut self,
        keys: &UserKeys,
        buf: &mut [u8],
        now: u64,
        hint: Option<UserId>,
        salts: &mut dyn SaltCheck,
    ) -> Result<Handshake, PeerError> {
        let method = keys.method();
        let s = method.salt_len();
        if let HsState::Start = self.state {
            let found = if method.is_2022() {
                find_user_2022(keys, buf, now, hint)?
            } else {
                find_user_2017(keys, buf, hint)?
            };
            let Some((entry, cipher, at, len)) = found else {
                return Ok(Handshake::NeedMore);
            };
            if !salts.check_and_insert(&buf[..s], now) {
                return Err(PeerError::Replay);
            }
            self.state = HsState::Found {
                entry,
                cipher,
                at,
                len,
                salt: to32(&buf[..s]),
            };
        }
        let HsState::Found { at, len, .. } = self.state else {
            unreachable!("advance called after the handshake finished")
        };
        let end = at + len + TAG_LEN;
        if buf.len() < end {
            return Ok(Handshake::NeedMore);
        }
        let HsState::Found {
            entry: (user, key),
            mut cipher,
            salt,
            ..
        } = std::mem::replace(&mut self.state, HsState::Finished)
        else {
            unreachable!()
        };
        cipher
            .open(&mut buf[at..end])
            .map_err(|_| PeerError::BadAuth)?;
        let header = &buf[at..at + len];
        let (target, alen) = match TargetAddr::parse(header)? {
            Parsed::Done(t, n) => (t, n),
            Parsed::NeedMore => return Err(PeerError::TruncatedHeader),
        };
        let payload_start = if method.is_2022() {
            if header.len() < alen + 2 {
                return Err(PeerError::TruncatedHeader);
            }
            let pad = u16::from_be_bytes([header[alen], header[alen + 1]]) as usize;
            if pad > MAX_PADDING {
                return Err(PeerError::Oversize {
                    len: pad,
                    max: MAX_PADDING,
                });
            }
            if alen + 2 + pad > len {
                return Err(PeerError::TruncatedHeader);
            }
            if alen + 2 + pad == len && pad == 0 {
                return Err(PeerError::EmptyRequest);
            }
            at + alen + 2 + pad
        } else {
            at + alen
        };
        Ok(Handshake::Done(Box::new(Request {
            user,
            target,
            consumed: end,
            payload: payload_start..at + len,
            opener: StreamOpener::chunks(method, cipher),
            method,
            key,
            request_salt: salt,
        })))
    }
}

type Found = Option<((UserId, Key), SessionCipher, usize, usize)>;

fn find_user_2017(keys: &UserKeys, buf: &[u8], hint: Option<UserId>) -> Result<Found, PeerError> {
    let method = keys.method();
    let s = method.salt_len();
    if buf.len() < s + LEN_CHUNK {
        return Ok(None);
    }
    let (salt, rest) = buf.split_at(s);
    for user in keys.trial_order(hint) {
        let mut cipher = SessionCipher::from_salt(method, &user.key, salt);
        if let Ok(plain) = cipher.try_open_copy::<LEN_CHUNK>(rest) {
            let len = u16::from_be_bytes([plain[0], plain[1]]) as usize;
            check_len(len, method)?;
            if len == 0 {
                return Err(PeerError::TruncatedHeader);
            }
            return Ok(Some((
                (user.id, user.key.clone()),
                cipher,
                s + LEN_CHUNK,
                len,
            )));
        }
    }
    Err(PeerError::BadAuth)
}

fn find_user_2022(
    keys: &UserKeys,
    buf: &[u8],
    now: u64,
    hint: Option<UserId>,
) -> Result<Found, PeerError> {
    let method = keys.method();
    let s = method.salt_len();
    let eih = if keys.identity.is_some() { 16 } else { 0 };
    let fixed_at = s + eih;
    if buf.len() < fixed_at + REQ_FIXED + TAG_LEN {
        return Ok(None);
    }
    let salt = &buf[..s];
    let fixed = &buf[fixed_at..fixed_at + REQ_FIXED + TAG_LEN];
    let try_user = |user: &UserEntry| -> Option<(SessionCipher, [u8; REQ_FIXED + TAG_LEN])> {
        let mut cipher = SessionCipher::from_salt(method, &user.key, salt);
        cipher
            .try_open_copy::<{ REQ_FIXED + TAG_LEN }>(fixed)
            .ok()
            .map(|p| (cipher, p))
    };
    let found = if let Some(identity) = &keys.identity {
        let sub = identity_subkey(method, &identity.psk, salt);
        let mut block = [0u8; 16];
        block.copy_from_slice(&buf[s..s + 16]);
        BlockCipher::new(&sub[..method.key_len()]).decrypt(&mut block);
        keys.by_identity_hash(&block)
            .and_then(|u| try_user(u).map(|r| (u, r)))
    } else {
        keys.trial_order(hint)
            .find_map(|u| try_user(u).map(|r| (u, r)))
    };
    let Some((user, (cipher, plain))) = found else {
        return Err(PeerError::BadAuth);
    };
    if plain[0] != 0 {
        return Err(PeerError::BadHeaderType(plain[0]));
    }
    check_time(
        u64::from_be_bytes(plain[1..9].try_into().expect("8 bytes")),
        now,
    )?;
    let len = u16::from_be_bytes([plain[9], plain[10]]) as usize;
    if len == 0 {
        return Err(PeerError::TruncatedHeader);
    }
    Ok(Some((
        (user.id, user.key.clone()),
        cipher,
        fixed_at + REQ_FIXED + TAG_LEN,
        len,
    )))
}

fn check_len(len: usize, method: Method) -> Result<(), PeerError> {
    let max = method.max_chunk_payload();
    if len > max {
        return Err(PeerError::Oversize { len, max });
    }
    Ok(())
}

pub(crate) fn check_time(got: u64, now: u64) -> Result<(), PeerError> {
    if got.abs_diff(now) > MAX_TIME_DIFF {
        return Err(PeerError::StaleTimestamp { got, now });
    }
    Ok(())
}

fn to32(b: &[u8]) -> [u8; 32] {
    let mut o = [0u8; 32];
    o[..b.len()].copy_from_slice(b);
    o
}

/// Outcome of [`StreamOpener::open`].
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// More bytes are needed after the ones at the head; keep them and call again.
    NeedMore,
    /// One chunk opened: its plaintext lies at `payload`; drop `consumed` bytes from the head.
    Chunk {
        /// Plaintext range inside the buffer passed in.
        payload: Range<usize>,
        /// Bytes of the buffer this chunk used.
        consumed: usize,
    },
}

enum Pending {
    /// Client side: the response salt (and 2022 header) is still to come.
    Salt { key: Key, request_salt: [u8; 32] },
    /// A length chunk is next.
    Length,
    /// The length is known; the payload chunk starts at `at`.
    Payload { len: usize, at: usize },
}

/// Decrypts a stream of length/payload chunks in place.
pub struct StreamOpener {
    method: Method,
    cipher: Option<SessionCipher>,
    pending: Pending,
}

impl StreamOpener {
    fn chunks(method: Method, cipher: SessionCipher) -> StreamOpener {
        StreamOpener {
            method,
            cipher: Some(cipher),
            pending: Pending::Length,
        }
    }

    /// Opens the next chunk at the head of `buf`. `now` is used only for the 2022 response
    /// header on the client side.
    pub fn open(&mut self, buf: &mut [u8], now: u64) -> Result<Opened, PeerError> {
        let method = self.method;
        if let Pending::Salt { key, request_salt } = &self.pending {
            let s = method.salt_len();
            let header = if method.is_2022() { 1 + 8 + s + 2 } else { 2 };
            if buf.len() < s + header + TAG_LEN {
                return Ok(Opened::NeedMore);
            }
            let mut cipher = SessionCipher::from_salt(method, key, &buf[..s]);
            let h = &mut buf[s..s + header + TAG_LEN];
            cipher.open(h).map_err(|_| PeerError::BadAuth)?;
            let len = if method.is_2022() {
                if h[0] != 1 {
                    return Err(PeerError::BadHeaderType(h[0]));
                }
                check_time(
                    u64::from_be_bytes(h[1..9].try_into().expect("8 bytes")),
                    now,
                )?;
                if h[9..9 + s] != request_salt[..s] {
                    return Err(PeerError::BadAuth);
                }
                u16::from_be_bytes([h[9 + s], h[10 + s]]) as usize
            } else {
                u16::from_be_bytes([h[0], h[1]]) as usize
            };
            check_len(len, method)?;
            self.cipher = Some(cipher);
            self.pending = Pending::Payload {
                len,
                at: s + header + TAG_LEN,
            };
        }
        let cipher = self
            .cipher
            .as_mut()
            .expect("cipher is set once the salt is read");
        if let Pending::Length = self.pending {
            if buf.len() < LEN_CHUNK {
                return Ok(Opened::NeedMore);
            }
            cipher.open(&mut buf[..LEN_CHUNK])?;
            let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
            check_len(len, method)?;
            self.pending = Pending::Payload { len, at: LEN_CHUNK };
        }
        let Pending::Payload { len, at } = self.pending else {
            unreachable!()
        };
        let end = at + len + TAG_LEN;
        if buf.len() < end {
            return Ok(Opened::NeedMore);
        }
        cipher.open(&mut buf[at..end])?;
        self.pending = Pending::Length;
        Ok(Opened::Chunk {
            payload: at..at + len,
            consumed: end,
        })
    }

    /// Bytes the next [`StreamOpener::open`] needs at least (a hint for read sizing).
    pub fn wanted(&self) -> usize {
        match self.pending {
            Pending::Salt { .. } => self.method.salt_len() + 64,
            Pending::Length => LEN_CHUNK,
            Pending::Payload { len, at } => at + len + TAG_LEN,
        }
    }
}

enum First {
    Salt([u8; 32]),
    Response2022 {
        salt: [u8; 32],
        request_salt: [u8; 32],
    },
}

/// Encrypts a stream of chunks in place.
pub struct StreamSealer {
    method: Method,
    cipher: SessionCipher,
    first: Option<First>,
}

impl StreamSealer {
    /// Bytes the next [`StreamSealer::seal`] writes in front of the payload.
    pub fn prefix_len(&self) -> usize {
        let s = self.method.salt_len();
        match self.first {
            None => LEN_CHUNK,
            Some(First::Salt(_)) => s + LEN_CHUNK,
            Some(First::Response2022 { .. }) => s + 1 + 8 + s + 2 + TAG_LEN,
        }
    }

    /// Largest payload one call may seal.
    pub fn max_payload(&self) -> usize {
        self.method.max_chunk_payload()
    }

    /// Seals `buf[payload]` in place as one chunk, writing the prefix in front of it and the tag
    /// behind it, and returns the range to send.
    ///
    /// # Panics
    /// If the payload is empty or longer than [`StreamSealer::max_payload`], or the buffer lacks
    /// room around it (all caller bugs).
    pub fn seal(&mut self, buf: &mut [u8], payload: Range<usize>, now: u64) -> Range<usize> {
        let n = payload.len();
        assert!(n > 0 && n <= self.max_payload(), "payload of {n} bytes");
        let start = payload.start - self.prefix_len();
        let s = self.method.salt_len();
        let mut at = start;
        match self.first.take() {
            None => {}
            Some(First::Salt(salt)) => {
                buf[at..at + s].copy_from_slice(&salt[..s]);
                at += s;
            }
            Some(First::Response2022 { salt, request_salt }) => {
                buf[at..at + s].copy_from_slice(&salt[..s]);
                at += s;
                let h = &mut buf[at..at + 1 + 8 + s + 2 + TAG_LEN];
                h[0] = 1;
                h[1..9].copy_from_slice(&now.to_be_bytes());
                h[9..9 + s].copy_from_slice(&request_salt[..s]);
                h[9 + s..11 + s].copy_from_slice(&(n as u16).to_be_bytes());
                self.cipher.seal_with_tag(h, 11 + s);
                self.seal_payload(buf, payload.clone());
                return start..payload.end + TAG_LEN;
            }
        }
        buf[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
        self.cipher.seal_with_tag(&mut buf[at..at + LEN_CHUNK], 2);
        self.seal_payload(buf, payload.clone());
        start..payload.end + TAG_LEN
    }

    fn seal_payload(&mut self, buf: &mut [u8], payload: Range<usize>) {
        let tag = self.cipher.seal(&mut buf[payload.clone()]);
        buf[payload.end..payload.end + TAG_LEN].copy_from_slice(tag.as_ref());
    }
}

/// Client side (tests, benches, fuzz seeds): what a client needs to speak to a server.
pub struct ClientRequest<'a> {
    /// Cipher.
    pub method: Method,
    /// The user's key.
    pub key: &'a Key,
    /// The server's identity PSK, when the server uses identity headers.
    pub identity: Option<&'a Key>,
    /// Fresh random salt (`method.salt_len()` bytes).
    pub salt: &'a [u8],
    /// Where to connect.
    pub target: &'a TargetAddr,
    /// 2022 only: padding length (must be > 0 when `payload` is empty).
    pub padding: usize,
}

impl ClientRequest<'_> {
    /// Writes the request header and the sealed initial `payload` into `out`; returns the
    /// length written, a sealer for further request chunks and an opener for the response.
    pub fn encode(
        &self,
        payload: &[u8],
        now: u64,
        out: &mut [u8],
    ) -> (usize, StreamSealer, StreamOpener) {
        let m = self.method;
        let s = m.salt_len();
        out[..s].copy_from_slice(self.salt);
        let mut at = s;
        if let Some(ipsk) = self.identity {
            let sub = identity_subkey(m, ipsk, self.salt);
            out[at..at + 16].copy_from_slice(&self.key.identity_hash());
            BlockCipher::new(&sub[..m.key_len()]).encrypt(&mut out[at..at + 16]);
            at += 16;
        }
        let mut cipher = SessionCipher::from_salt(m, self.key, self.salt);
        let alen = self.target.encoded_len();
        let body_len = if m.is_2022() {
            alen + 2 + self.padding + payload.len()
        } else {
            alen + payload.len()
        };
        if m.is_2022() {
            out[at] = 0;
            out[at + 1..at + 9].copy_from_slice(&now.to_be_bytes());
            out[at + 9..at + 11].copy_from_slice(&(body_len as u16).to_be_bytes());
            cipher.seal_with_tag(&mut out[at..], REQ_FIXED);
            at += REQ_FIXED + TAG_LEN;
        } else {
            out[at..at + 2].copy_from_slice(&(body_len as u16).to_be_bytes());
            cipher.seal_with_tag(&mut out[at..], 2);
            at += LEN_CHUNK;
        }
        let body = at;
        at += self.target.write(&mut out[at..]);
        if m.is_2022() {
            out[at..at + 2].copy_from_slice(&(self.padding as u16).to_be_bytes());
            out[at + 2..at + 2 + self.padding].fill(0);
            at += 2 + self.padding;
        }
        out[at..at + payload.len()].copy_from_slice(payload);
        cipher.seal_with_tag(&mut out[body..], body_len);
        let total = body + body_len + TAG_LEN;
        let sealer = StreamSealer {
            method: m,
            cipher,
            first: None,
        };
        let opener = StreamOpener {
            method: m,
            cipher: None,
            pending: Pending::Salt {
                key: self.key.clone(),
                request_salt: to32(self.salt),
            },
        };
        (total, sealer, opener)
    }
}
