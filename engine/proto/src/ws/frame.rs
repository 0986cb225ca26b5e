//! WebSocket frames: client frames back into the byte stream they carry (unmasked in place),
//! server frame headers, and the control frames a server answers with.
//!
//! [`FrameDecoder::decode`] takes the bytes just read into a buffer and leaves there, at the
//! front, only the payload of data frames, unmasked: headers and control frames are taken out
//! and the payload moved down over them (a `copy_within` in the same buffer). A header cut by
//! the end of a read is kept in a 14-byte array until the rest arrives; a control frame's
//! payload (at most 125 bytes) likewise. Nothing is allocated.

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// Largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest server frame header (no mask; 64-bit length).
pub const MAX_SERVER_HEADER: usize = 10;

/// Longest client frame header (mask; 64-bit length).
pub const MAX_CLIENT_HEADER: usize = 14;

/// Room for a whole control frame written by the server.
pub const CONTROL_FRAME_ROOM: usize = 2 + MAX_CONTROL_PAYLOAD;

/// Status code of a normal close.
pub const CLOSE_NORMAL: u16 = 1000;

/// What a client did wrong in its frames. After one, the stream is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A client frame without a mask (RFC 6455 5.1: the server must close).
    #[error("unmasked client frame")]
    Unmasked,
    /// Reserved bits set, though no extension was negotiated.
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    #[error("bad control frame")]
    BadControlFrame,
    /// A continuation with no message to continue, or a new message inside a fragmented one.
    #[error("bad fragmentation")]
    BadFragmentation,
    /// A data frame longer than the decoder accepts (or a 64-bit length with its top bit set).
    #[error("frame of {0} bytes is over the limit")]
    Oversize(u64),
}

/// What one [`FrameDecoder::decode`] call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Decoded {
    /// Stream bytes now at the front of the buffer, unmasked.
    pub data: usize,
    /// A ping arrived: answer with [`FrameDecoder::pong`] (only the latest ping's payload is
    /// kept, as RFC 6455 5.5.3 allows).
    pub ping: bool,
    /// A close frame arrived: the client sends nothing more; answer with
    /// [`FrameDecoder::close_reply`] and close. Bytes after it are ignored.
    pub closed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading a header (`head[..head_len]` so far).
    Header,
    /// Inside a data frame's payload.
    Data,
    /// Inside a control frame's payload (collected in `control`).
    Control(u8),
    /// A close frame arrived.
    Closed,
}

/// Turns client frames back into the stream they carry, in place.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_payload: u64,
    state: State,
    head: [u8; MAX_CLIENT_HEADER],
    head_len: usize,
    /// Payload bytes left in the current frame.
    remaining: u64,
    mask: [u8; 4],
    /// Position in the mask of the next payload byte.
    mask_at: usize,
    /// A data frame without FIN was seen: continuations follow.
    in_message: bool,
    control: [u8; MAX_CONTROL_PAYLOAD],
    control_len: usize,
    ping: [u8; MAX_CONTROL_PAYLOAD],
    ping_len: usize,
    close_code: Option<[u8; 2]>,
}

impl FrameDecoder {
    /// A decoder refusing data frames longer than `max_payload` bytes.
    pub fn new(max_payload: u64) -> FrameDecoder {
        FrameDecoder {
            max_payload,
            state: State::Header,
            head: [0; MAX_CLIENT_HEADER],
            head_len: 0,
            remaining: 0,
            mask: [0; 4],
            mask_at: 0,
            in_message: false,
            control: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
            ping: [0; MAX_CONTROL_PAYLOAD],
            ping_len: 0,
            close_code: None,
        }
    }

    /// Whether a close frame arrived.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Decodes `buf`, the bytes just received after everything fed before: on return
    /// `buf[..data]` holds the stream bytes they carried, unmasked; the rest of `buf` is
    /// scratch. Frames may be cut anywhere between calls.
    pub fn decode(&mut self, buf: &mut [u8]) -> Result<Decoded, FrameError> {
        let mut out = Decoded::default();
        let mut at = 0;
        while at < buf.len() {
            match self.state {
                State::Closed => break,
                State::Header => {
                    at += self.read_header(&buf[at..])?;
                    if let State::Control(op) = self.state {
                        if self.remaining == 0 {
                            self.end_control(op, &mut out);
                        }
                    }
                }
                State::Data => {
                    let n = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len() - at);
                    let mask_at = unmask(&mut buf[at..at + n], self.mask, self.mask_at);
                    self.mask_at = mask_at;
                    buf.copy_within(at..at + n, out.data);
                    out.data += n;
                    at += n;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::Header;
                    }
                }
                State::Control(op) => {
                    let n = (self.remaining as usize).min(buf.len() - at);
                    let dst = &mut self.control[self.control_len..self.control_len + n];
                    dst.copy_from_slice(&buf[at..at + n]);
                    self.mask_at = unmask(dst, self.mask, self.mask_at);
                    self.control_len += n;
                    at += n;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.end_control(op, &mut out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Reads header bytes from `input`; returns how many it took.
    fn read_header(&mut self, input: &[u8]) -> Result<usize, FrameError> {
        let mut took = 0;
        while self.head_len < 2 && took < input.len() {
            self.head[self.head_len] = input[took];
            self.head_len += 1;
            took += 1;
        }
        if self.head_len < 2 {
            return Ok(took);
        }
        let (b0, b1) = (self.head[0], self.head[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Unmasked);
        }
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0F;
        let len7 = b1 & 0x7F;
        match op {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || usize::from(len7) > MAX_CONTROL_PAYLOAD {
                    return Err(FrameError::BadControlFrame);
                }
            }
            OP_CONTINUATION if !self.in_message => return Err(FrameError::BadFragmentation),
            OP_TEXT | OP_BINARY if self.in_message => return Err(FrameError::BadFragmentation),
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {}
            other => return Err(FrameError::UnknownOpcode(other)),
        }
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let need = 2 + ext + 4;
        let more = (need - self.head_len).min(input.len() - took);
        self.head[self.head_len..self.head_len + more].copy_from_slice(&input[took..took + more]);
        self.head_len += more;
        took += more;
        if self.head_len < need {
            return Ok(took);
        }
        let len = match ext {
            2 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
            8 => u64::from_be_bytes(self.head[2..10].try_into().expect("8 bytes")),
            _ => u64::from(len7),
        };
        if len > self.max_payload || len >> 63 != 0 {
            return Err(FrameError::Oversize(len));
        }
        self.mask.copy_from_slice(&self.head[2 + ext..2 + ext + 4]);
        self.mask_at = 0;
        self.head_len = 0;
        self.remaining = len;
        if op & 0x08 != 0 {
            self.control_len = 0;
            self.state = State::Control(op);
        } else {
            self.in_message = !fin;
            self.state = if len == 0 { State::Header } else { State::Data };
        }
        Ok(took)
    }

    fn end_control(&mut self, op: u8, out: &mut Decoded) {
        self.state = State::Header;
        match op {
            OP_PING => {
                self.ping[..self.control_len].copy_from_slice(&self.control[..self.control_len]);
                self.ping_len = self.control_len;
                out.ping = true;
            }
            OP_CLOSE => {
                self.close_code =
                    (self.control_len >= 2).then(|| [self.control[0], self.control[1]]);
                self.state = State::Closed;
                out.closed = true;
            }
            _ => {} // A pong: unsolicited, ignored.
        }
    }

    /// Writes a pong answering the latest ping into `out`; returns its length.
    pub fn pong(&self, out: &mut [u8; CONTROL_FRAME_ROOM]) -> usize {
        let payload = &self.ping[..self.ping_len];
        let head = server_header(OP_PONG, payload.len(), out);
        out[head..head + payload.len()].copy_from_slice(payload);
        head + payload.len()
    }

    /// Writes the close frame answering the client's (echoing its status code, if it sent
    /// one) into `out`; returns its length.
    pub fn close_reply(&self, out: &mut [u8; CONTROL_FRAME_ROOM]) -> usize {
        match self.close_code {
            Some(code) => close_frame_with(code, out),
            None => server_header(OP_CLOSE, 0, out),
        }
    }
}

/// Writes a server close frame with status `code` into `out`; returns its length.
pub fn close_frame(code: u16, out: &mut [u8; CONTROL_FRAME_ROOM]) -> usize {
    close_frame_with(code.to_be_bytes(), out)
}

fn close_frame_with(code: [u8; 2], out: &mut [u8; CONTROL_FRAME_ROOM]) -> usize {
    let head = server_header(OP_CLOSE, 2, out);
    out[head..head + 2].copy_from_slice(&code);
    head + 2
}

/// Writes the header of an unfragmented, unmasked server frame of `len` payload bytes into the
/// front of `out` (at least [`MAX_SERVER_HEADER`] bytes); returns the header's length.
pub fn server_header(opcode: u8, len: usize, out: &mut [u8]) -> usize {
    out[0] = 0x80 | opcode;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(len) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Writes a masked client frame (for tests, benches and fuzzing): header, then `payload`
/// masked with `mask`.
pub fn client_frame(opcode: u8, fin: bool, mask: [u8; 4], payload: &[u8], out: &mut Vec<u8>) {
    let mut head = [0u8; MAX_SERVER_HEADER];
    let n = server_header(opcode, payload.len(), &mut head);
    if !fin {
        head[0] &= 0x7F;
    }
    head[1] |= 0x80;
    out.extend_from_slice(&head[..n]);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask, 0);
}

/// XORs `data` with `mask`, starting at position `at` of the mask; returns the position after.
pub fn unmask(data: &mut [u8], mask: [u8; 4], at: usize) -> usize {
    let mut rotated = [0u8; 8];
    for (i, b) in rotated.iter_mut().enumerate() {
        *b = mask[(at + i) % 4];
    }
    let word = u64::from_ne_bytes(rotated);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= rotated[i];
    }
    (at + data.len()) % 4
}
