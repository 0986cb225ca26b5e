//! The VMess AEAD request header: the server's incremental handshake, and the client's
//! encoder.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};

use super::body::{BodyOpener, BodyParams, BodySealer};
use super::kdf::{kdf12, kdf16};
use super::users::{seal_auth_id, VmessUsers};
use super::{option, Command, PeerError, Security, UserId, TAG_LEN};
use crate::address::{Parsed, TargetAddr};
use crate::shadowsocks::replay::SaltCheck;
use crate::vless::address::MAX_PORT_FIRST_LEN;

pub use super::body::RESPONSE_HEADER_LEN;

const LENGTH_KEY: &[u8] = b"VMess Header AEAD Key_Length";
const LENGTH_IV: &[u8] = b"VMess Header AEAD Nonce_Length";
const HEADER_KEY: &[u8] = b"VMess Header AEAD Key";
const HEADER_IV: &[u8] = b"VMess Header AEAD Nonce";

/// Auth ID, sealed length, connection nonce.
const PREAMBLE: usize = 16 + 2 + TAG_LEN + 8;

/// Header fields before the address: version, IV, key, V, options, P|Sec, reserved, command.
const FIXED: usize = 38;

/// Smallest header: a Mux request without padding.
const MIN_HEADER_LEN: usize = FIXED + 4;

/// Largest header plaintext: every field at its longest.
pub const MAX_HEADER_LEN: usize = FIXED + MAX_PORT_FIRST_LEN + 15 + 4;

/// Progress of [`ServerHandshake::advance`].
pub enum Handshake {
    /// More bytes are needed; call again with the same head and more bytes after it.
    NeedMore,
    /// The request is authenticated and parsed.
    Done(Request),
}

/// An authenticated request.
#[derive(Clone, Debug)]
pub struct Request {
    /// Who sent it.
    pub user: UserId,
    /// What to do (the target is inside).
    pub command: Command,
    /// The body security.
    pub security: Security,
    /// The option bits ([`super::option`]).
    pub options: u8,
    /// Bytes of the buffer the header took: the body starts here.
    pub consumed: usize,
    body: BodyParamsDebug,
    response_auth: u8,
}

/// [`BodyParams`] with a `Debug` that hides the keys.
#[derive(Clone, Copy)]
struct BodyParamsDebug(BodyParams);

impl std::fmt::Debug for BodyParamsDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyParams(<keys>)")
    }
}

impl Request {
    /// Opens the request body that follows the header.
    pub fn opener(&self) -> BodyOpener {
        self.body.0.request_opener()
    }

    /// Seals the response: the response header, then the body.
    pub fn sealer(&self) -> BodySealer {
        self.body.0.response_sealer(self.response_auth)
    }

    /// The body key and IV, and the response byte (tests compare them with published values).
    #[cfg(test)]
    pub(crate) fn secrets(&self) -> ([u8; 16], [u8; 16], u8) {
        (self.body.0.key, self.body.0.iv, self.response_auth)
    }
}

enum State {
    Start,
    /// The auth ID names this user.
    Found {
        user: UserId,
        cmd_key: [u8; 16],
        length: Option<usize>,
    },
    Finished,
}

/// Server side of the handshake of one connection.
pub struct ServerHandshake {
    state: State,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

fn aead(key: [u8; 16]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("16-byte key"))
}

fn header_keys(
    cmd_key: &[u8; 16],
    auth_id: &[u8],
    nonce: &[u8],
    key_salt: &[u8],
    iv_salt: &[u8],
) -> (LessSafeKey, Nonce) {
    (
        aead(kdf16(cmd_key, &[key_salt, auth_id, nonce])),
        Nonce::assume_unique_for_key(kdf12(cmd_key, &[iv_salt, auth_id, nonce])),
    )
}

impl ServerHandshake {
    /// A handshake waiting for its first bytes.
    pub fn new() -> ServerHandshake {
        ServerHandshake {
            state: State::Start,
        }
    }

    /// Feeds the bytes received so far (`buf` starts at the first byte of the connection;
    /// the header is decrypted in place). `now` is the Unix time in seconds; `hint` a user to
    /// try first; `replay` rejects auth IDs seen before (see [`super::AUTH_ID_TTL`]).
    ///
    /// # Panics
    /// If called again after it returned `Done` or an error (a caller bug).
    pub fn advance(
        &mut self,
        users: &VmessUsers,
        buf: &mut [u8],
        now: u64,
        hint: Option<UserId>,
        replay: &mut dyn SaltCheck,
    ) -> Result<Handshake, PeerError> {
        let result = self.step(users, buf, now, hint, replay);
        if !matches!(result, Ok(Handshake::NeedMore)) {
            self.state = State::Finished;
        }
        result
    }

    fn step(
        &mut self,
        users: &VmessUsers,
        buf: &mut [u8],
        now: u64,
        hint: Option<UserId>,
        replay: &mut dyn SaltCheck,
    ) -> Result<Handshake, PeerError> {
        if let State::Start = self.state {
            let Some(auth_id) = buf.first_chunk::<16>() else {
                return Ok(Handshake::NeedMore);
            };
            let (user, cmd_key) = users.find(auth_id, now, hint)?;
            if !replay.check_and_insert(auth_id, now) {
                return Err(PeerError::Replay);
            }
            self.state = State::Found {
                user,
                cmd_key,
                length: None,
            };
        }
        let State::Found {
            user,
            cmd_key,
            ref mut length,
        } = self.state
        else {
            panic!("advance called after the handshake finished")
        };
        if buf.len() < PREAMBLE {
            return Ok(Handshake::NeedMore);
        }
        let (auth_id, rest) = buf.split_at_mut(16);
        let nonce = &rest[2 + TAG_LEN..2 + TAG_LEN + 8];
        let len = match *length {
            Some(len) => len,
            None => {
                let (key, iv) = header_keys(&cmd_key, auth_id, nonce, LENGTH_KEY, LENGTH_IV);
                let mut sealed = [0u8; 2 + TAG_LEN];
                sealed.copy_from_slice(&rest[..2 + TAG_LEN]);
                key.open_in_place(iv, Aad::from(&*auth_id), &mut sealed)
                    .map_err(|_| PeerError::BadHeader)?;
                let len = usize::from(u16::from_be_bytes([sealed[0], sealed[1]]));
                if len > MAX_HEADER_LEN {
                    return Err(PeerError::Oversize {
                        len,
                        max: MAX_HEADER_LEN,
                    });
                }
                if len < MIN_HEADER_LEN {
                    return Err(PeerError::TruncatedHeader);
                }
                *length = Some(len);
                len
            }
        };
        let end = PREAMBLE + len + TAG_LEN;
        if buf.len() < end {
            return Ok(Handshake::NeedMore);
        }
        let (auth_id, rest) = buf.split_at_mut(16);
        let (nonce, sealed) = rest[2 + TAG_LEN..end - 16].split_at_mut(8);
        let (key, iv) = header_keys(&cmd_key, auth_id, nonce, HEADER_KEY, HEADER_IV);
        let header = key
            .open_in_place(iv, Aad::from(&*auth_id), sealed)
            .map_err(|_| PeerError::BadHeader)?;
        let mut request = parse_header(header, user)?;
        request.consumed = end;
        Ok(Handshake::Done(request))
    }
}

fn parse_header(h: &[u8], user: UserId) -> Result<Request, PeerError> {
    if h[0] != 1 {
        return Err(PeerError::BadVersion(h[0]));
    }
    let key: [u8; 16] = h[17..33].try_into().expect("16 bytes");
    let iv: [u8; 16] = h[1..17].try_into().expect("16 bytes");
    let (response_auth, options) = (h[33], h[34]);
    let (padding, security) = (usize::from(h[35] >> 4), h[35] & 0x0f);
    let (command, at) = match h[37] {
        c @ (1 | 2) => match TargetAddr::parse_port_first(&h[FIXED..])? {
            Parsed::Done(target, n) if c == 1 => (Command::Tcp(target), FIXED + n),
            Parsed::Done(target, n) => (Command::Udp(target), FIXED + n),
            Parsed::NeedMore => return Err(PeerError::TruncatedHeader),
        },
        3 => (Command::Mux, FIXED),
        other => return Err(PeerError::BadCommand(other)),
    };
    let checked = at + padding;
    let Some(sum) = h.get(checked..checked + 4) else {
        return Err(PeerError::TruncatedHeader);
    };
    if fnv1a(&h[..checked]).to_be_bytes() != sum {
        return Err(PeerError::BadChecksum);
    }
    let security = match security {
        3 => Security::Aes128Gcm,
        4 => Security::Chacha20Poly1305,
        5 => Security::None,
        other => return Err(PeerError::BadSecurity(other)),
    };
    let stream = !matches!(command, Command::Udp(_));
    let has = |bit| options & bit != 0;
    let needs_masking = has(option::GLOBAL_PADDING) && !has(option::CHUNK_MASKING);
    let unframed_udp = security == Security::None && !stream && !has(option::CHUNK_STREAM);
    if needs_masking || unframed_udp {
        return Err(PeerError::BadOptions(options));
    }
    Ok(Request {
        user,
        command,
        security,
        options,
        consumed: 0,
        body: BodyParamsDebug(BodyParams {
            security,
            options,
            stream,
            key,
            iv,
        }),
        response_auth,
    })
}

/// Client side: seals the header plaintext the caller put at `out[42..42 + len]`, writing the
/// auth ID (stamped `now`), sealed length and connection nonce in front and the tag behind;
/// returns the length of the whole request header. Tests and fuzz targets seal arbitrary
/// plaintext with it.
pub(crate) fn seal_request_header(
    cmd_key: &[u8; 16],
    now: u64,
    auth_random: [u8; 4],
    nonce: [u8; 8],
    out: &mut [u8],
    len: usize,
) -> usize {
    let auth_id = seal_auth_id(cmd_key, now, auth_random);
    out[..16].copy_from_slice(&auth_id);
    out[16..18].copy_from_slice(&(len as u16).to_be_bytes());
    out[34..42].copy_from_slice(&nonce);
    let seal = |out: &mut [u8], at: usize, len: usize, key_salt, iv_salt| {
        let (key, iv) = header_keys(cmd_key, &auth_id, &nonce, key_salt, iv_salt);
        let tag = key
            .seal_in_place_separate_tag(iv, Aad::from(&auth_id), &mut out[at..at + len])
            .expect("short header");
        out[at + len..at + len + TAG_LEN].copy_from_slice(tag.as_ref());
    };
    seal(out, 16, 2, LENGTH_KEY, LENGTH_IV);
    seal(out, PREAMBLE, len, HEADER_KEY, HEADER_IV);
    PREAMBLE + len + TAG_LEN
}

pub(crate) fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Client side (tests, benches, fuzz seeds): a request to encode. Every random value is a
/// field.
#[derive(Clone, Debug)]
pub struct ClientRequest<'a> {
    /// The user's command key ([`super::cmd_key`] of the UUID).
    pub cmd_key: [u8; 16],
    /// What to ask for.
    pub command: &'a Command,
    /// Body security.
    pub security: Security,
    /// Option bits.
    pub options: u8,
    /// Random body key.
    pub key: [u8; 16],
    /// Random body IV.
    pub iv: [u8; 16],
    /// Random byte the response must echo.
    pub response_auth: u8,
    /// Header padding length (0 to 15); the padding bytes are `0x5a`.
    pub padding: u8,
    /// Random bytes inside the auth ID.
    pub auth_random: [u8; 4],
    /// Random connection nonce.
    pub nonce: [u8; 8],
}

impl ClientRequest<'_> {
    /// Bytes [`ClientRequest::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        PREAMBLE + self.header_len() + TAG_LEN
    }

    fn header_len(&self) -> usize {
        let target = match self.command {
            Command::Tcp(t) | Command::Udp(t) => t.port_first_len(),
            Command::Mux => 0,
        };
        FIXED + target + usize::from(self.padding) + 4
    }

    /// Writes the request header (stamped `now`) at the start of `out`; returns its length, a
    /// sealer for the request body and an opener for the response.
    ///
    /// # Panics
    /// If `out` is shorter than [`ClientRequest::encoded_len`] or the padding exceeds 15.
    pub fn encode(&self, now: u64, out: &mut [u8]) -> (usize, BodySealer, BodyOpener) {
        assert!(self.padding < 16, "header padding of {}", self.padding);
        let len = self.header_len();
        let h = &mut out[PREAMBLE..PREAMBLE + len];
        h[0] = 1;
        h[1..17].copy_from_slice(&self.iv);
        h[17..33].copy_from_slice(&self.key);
        h[33] = self.response_auth;
        h[34] = self.options;
        h[35] = (self.padding << 4) | self.security as u8;
        h[36] = 0;
        let mut at = FIXED;
        h[37] = match self.command {
            Command::Tcp(t) | Command::Udp(t) => {
                at += t.write_port_first(&mut h[FIXED..]);
                if matches!(self.command, Command::Tcp(_)) {
                    1
                } else {
                    2
                }
            }
            Command::Mux => 3,
        };
        h[at..at + usize::from(self.padding)].fill(0x5a);
        at += usize::from(self.padding);
        let sum = fnv1a(&h[..at]);
        h[at..at + 4].copy_from_slice(&sum.to_be_bytes());
        let end = seal_request_header(&self.cmd_key, now, self.auth_random, self.nonce, out, len);

        let params = BodyParams {
            security: self.security,
            options: self.options,
            stream: !matches!(self.command, Command::Udp(_)),
            key: self.key,
            iv: self.iv,
        };
        (
            end,
            params.request_sealer(),
            params.response_opener(self.response_auth),
        )
    }
}
