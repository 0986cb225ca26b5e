//! The HTTP/3 exchange a Hysteria2 client authenticates with, sans-IO: frames on a request
//! stream ([RFC 9114 section 7]), the request head, and the server's answers.
//!
//! ```text
//! request stream:  +--------+--------+---------+   HEADERS (0x01): a QPACK field section
//!                  | type   | length | payload |   DATA    (0x00): body bytes
//!                  | varint | varint | length B|   reserved and unknown types: skipped
//!                  +--------+--------+---------+
//!
//! client:  :method POST  :authority hysteria  :path /auth   (:scheme https)
//!          hysteria-auth: <password>   hysteria-cc-rx: <bytes/s, 0 = unknown>
//!          hysteria-padding: <random>
//! server:  :status 233   hysteria-udp: true|false   hysteria-cc-rx: <bytes/s>|auto
//!          hysteria-padding: <random>
//! ```
//!
//! [`parse_request_head`] reads frames from the start of a request stream up to the end of the
//! HEADERS frame. [`RequestHead::hysteria_auth`] says whether the request is the Hysteria2
//! authentication (the reference server's test: method, authority and path); anything else,
//! and a request whose credentials fail, is answered as an ordinary web server would (the
//! "masquerade"), for which the head keeps method, authority, path and every field.
//!
//! Limits: a HEADERS frame (and any frame skipped before it) of at most the `max_size` the
//! caller passes, and a field section of at most that size decoded (RFC 9114 section 4.2.2's
//! size, which a server advertises as SETTINGS_MAX_FIELD_SECTION_SIZE); the whole frame is
//! buffered before it is decoded. [`H3Error::is_too_large`] tells the two apart from other
//! errors: a server answers them 431, not with a reset.
//!
//! [RFC 9114 section 7]: https://www.rfc-editor.org/rfc/rfc9114#section-7

use crate::hysteria2::qpack::{self, Field, QpackError};
use crate::hysteria2::varint;
use crate::Progress;

/// Frame type of DATA frames.
pub const DATA: u64 = 0x00;
/// Frame type of HEADERS frames.
pub const HEADERS: u64 = 0x01;

/// The status code of a successful authentication.
pub const STATUS_AUTH_OK: u16 = 233;
/// The authority of the authentication request.
pub const AUTH_AUTHORITY: &str = "hysteria";
/// The path of the authentication request.
pub const AUTH_PATH: &str = "/auth";

/// The largest request field section a server takes, encoded or decoded: 1 MiB, what the
/// reference server allows and advertises (quic-go's default, Go's
/// `http.DefaultMaxHeaderBytes`).
pub const MAX_FIELD_SECTION_SIZE: usize = 1 << 20;

/// HTTP/3 error code H3_FRAME_UNEXPECTED (RFC 9114 section 8.1).
pub const H3_FRAME_UNEXPECTED: u32 = 0x105;
/// HTTP/3 error code H3_EXCESSIVE_LOAD.
pub const H3_EXCESSIVE_LOAD: u32 = 0x107;
/// HTTP/3 error code H3_REQUEST_INCOMPLETE.
pub const H3_REQUEST_INCOMPLETE: u32 = 0x10d;
/// HTTP/3 error code H3_MESSAGE_ERROR.
pub const H3_MESSAGE_ERROR: u32 = 0x10e;
/// QPACK error code QPACK_DECOMPRESSION_FAILED (RFC 9204 section 6).
pub const QPACK_DECOMPRESSION_FAILED: u32 = 0x200;

/// What a peer sent wrong on a request stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum H3Error {
    /// A frame type not allowed on a request stream before HEADERS (DATA, or a control
    /// stream's or HTTP/2's frame types): H3_FRAME_UNEXPECTED.
    #[error("frame type {0:#x} not allowed here")]
    UnexpectedFrame(u64),
    /// A frame longer than the limit.
    #[error("frame of {0} bytes is over the limit")]
    FrameTooLarge(u64),
    /// The field section does not decode: QPACK_DECOMPRESSION_FAILED.
    #[error("field section: {0}")]
    Qpack(#[from] QpackError),
    /// The head breaks HTTP/3's rules on pseudo-header and field names: H3_MESSAGE_ERROR.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl H3Error {
    /// Whether the head is only too large (its frame, or its fields decoded), which a server
    /// answers with status 431 rather than an error.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            H3Error::FrameTooLarge(_) | H3Error::Qpack(QpackError::TooLarge(_))
        )
    }

    /// The HTTP/3 error code for it (RFC 9114 section 8.1, RFC 9204 section 6): the
    /// connection's for an unexpected frame, the stream's for the others.
    pub fn code(&self) -> u32 {
        match self {
            H3Error::UnexpectedFrame(_) => H3_FRAME_UNEXPECTED,
            H3Error::FrameTooLarge(_) | H3Error::Qpack(QpackError::TooLarge(_)) => {
                H3_EXCESSIVE_LOAD
            }
            H3Error::Qpack(_) => QPACK_DECOMPRESSION_FAILED,
            H3Error::Malformed(_) => H3_MESSAGE_ERROR,
        }
    }
}

/// A request head as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// `:method`.
    pub method: String,
    /// `:scheme`, absent for CONNECT.
    pub scheme: Option<String>,
    /// `:authority`.
    pub authority: Option<String>,
    /// `:path`, absent for CONNECT.
    pub path: Option<String>,
    /// `:protocol`, only in an extended CONNECT (RFC 9220; a server that sends
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL takes it), which has `:scheme` and `:path` too.
    pub protocol: Option<String>,
    /// Every regular field, in order (names lowercase).
    pub fields: Vec<Field>,
    /// Bytes of the stream up to the end of the HEADERS frame; a body's frames follow.
    pub consumed: usize,
}

/// A Hysteria2 authentication request, borrowed from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthRequest<'a> {
    /// The credentials (`hysteria-auth`; empty if absent).
    pub auth: &'a [u8],
    /// The client's receive rate in bytes per second (`hysteria-cc-rx`); 0 when unknown,
    /// absent or not a number, as the reference reads it.
    pub cc_rx: u64,
}

impl RequestHead {
    /// The first value of field `name` (lowercase).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.name == name.as_bytes())
            .map(|f| f.value.as_slice())
    }

    /// The authentication request, if this is one: `POST` to authority `hysteria`, path
    /// `/auth` (a query string aside). Anything else is for the masquerade.
    pub fn hysteria_auth(&self) -> Option<AuthRequest<'_>> {
        let path = self.path.as_deref()?;
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        if self.method != "POST"
            || self.authority.as_deref() != Some(AUTH_AUTHORITY)
            || path != AUTH_PATH
        {
            return None;
        }
        let cc_rx = self
            .field("hysteria-cc-rx")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Some(AuthRequest {
            auth: self.field("hysteria-auth").unwrap_or_default(),
            cc_rx,
        })
    }
}

/// Frame types that may not come before HEADERS on a request stream: DATA, the control
/// stream's (CANCEL_PUSH, SETTINGS, GOAWAY, MAX_PUSH_ID), PUSH_PROMISE (server only), and the
/// HTTP/2 types HTTP/3 reserves (RFC 9114 sections 7.2 and 11.2.1).
fn forbidden_before_headers(frame_type: u64) -> bool {
    matches!(frame_type, 0x00 | 0x02..=0x09 | 0x0d)
}

/// Reads the request head from the start of a request stream: [`Progress::NeedMore`] until
/// the HEADERS frame is complete. Frames and the decoded field section may be at most
/// `max_size` bytes.
pub fn parse_request_head(buf: &[u8], max_size: usize) -> Result<Progress<RequestHead>, H3Error> {
    let mut at = 0;
    loop {
        let Progress::Done((frame_type, n)) = varint::decode(&buf[at..]) else {
            return Ok(Progress::NeedMore);
        };
        let Progress::Done((len, m)) = varint::decode(&buf[at + n..]) else {
            return Ok(Progress::NeedMore);
        };
        if frame_type != HEADERS && forbidden_before_headers(frame_type) {
            return Err(H3Error::UnexpectedFrame(frame_type));
        }
        if len > max_size as u64 {
            return Err(H3Error::FrameTooLarge(len));
        }
        let start = at + n + m;
        let end = start + len as usize;
        if buf.len() < end {
            return Ok(Progress::NeedMore);
        }
        if frame_type == HEADERS {
            let fields = qpack::decode_field_section_within(&buf[start..end], max_size)?;
            return Ok(Progress::Done(request_head(fields, end)?));
        }
        at = end;
    }
}

/// Sorts the pseudo-headers out of `fields` and checks them (RFC 9114 section 4.3.1).
fn request_head(fields: Vec<Field>, consumed: usize) -> Result<RequestHead, H3Error> {
    let mut head = RequestHead {
        method: String::new(),
        scheme: None,
        authority: None,
        path: None,
        protocol: None,
        fields: Vec::with_capacity(fields.len()),
        consumed,
    };
    let mut method = None;
    for field in fields {
        if field.name.is_empty() {
            return Err(H3Error::Malformed("empty field name"));
        }
        if field.name.iter().any(u8::is_ascii_uppercase) {
            return Err(H3Error::Malformed("uppercase field name"));
        }
        if field.name[0] != b':' {
            head.fields.push(field);
            continue;
        }
        if !head.fields.is_empty() {
            return Err(H3Error::Malformed("pseudo-header after a regular field"));
        }
        let slot = match &field.name[..] {
            b":method" => &mut method,
            b":scheme" => &mut head.scheme,
            b":authority" => &mut head.authority,
            b":path" => &mut head.path,
            b":protocol" => &mut head.protocol,
            _ => return Err(H3Error::Malformed("unknown pseudo-header")),
        };
        if slot.is_some() {
            return Err(H3Error::Malformed("repeated pseudo-header"));
        }
        let value = String::from_utf8(field.value)
            .map_err(|_| H3Error::Malformed("non-UTF-8 pseudo-header"))?;
        *slot = Some(value);
    }
    head.method = method.ok_or(H3Error::Malformed("no :method"))?;
    if head.protocol.is_some() {
        let complete = head.authority.is_some()
            && head.scheme.is_some()
            && head.path.as_deref().is_some_and(|p| !p.is_empty());
        if head.method != "CONNECT" || !complete {
            return Err(H3Error::Malformed("extended CONNECT pseudo-headers"));
        }
    } else if head.method == "CONNECT" {
        if head.authority.is_none() || head.scheme.is_some() || head.path.is_some() {
            return Err(H3Error::Malformed("CONNECT pseudo-headers"));
        }
    } else if head.scheme.is_none() || head.path.as_deref().is_none_or(str::is_empty) {
        return Err(H3Error::Malformed("no :scheme or :path"));
    }
    Ok(head)
}

/// Appends a frame header (type and length) to `out`.
pub fn push_frame_header(frame_type: u64, len: usize, out: &mut Vec<u8>) {
    varint::push(frame_type, out);
    varint::push(len as u64, out);
}

/// Appends a HEADERS frame carrying `fields` (pseudo-headers first, names lowercase).
pub fn push_headers_frame(fields: &[(&[u8], &[u8])], out: &mut Vec<u8>) {
    let mut section = Vec::new();
    qpack::encode_field_section(fields, &mut section);
    push_frame_header(HEADERS, section.len(), out);
    out.extend_from_slice(&section);
}

/// The receive rate the server declares in its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerRx {
    /// `auto`: the client runs its own congestion control.
    Auto,
    /// The server's receive limit in bytes per second (0: unlimited).
    Rate(u64),
}

/// Appends the HEADERS frame of a successful authentication (status 233).
pub fn push_auth_response(udp: bool, rx: ServerRx, padding: &[u8], out: &mut Vec<u8>) {
    let rate;
    let rx: &[u8] = match rx {
        ServerRx::Auto => b"auto",
        ServerRx::Rate(n) => {
            rate = n.to_string();
            rate.as_bytes()
        }
    };
    let status = STATUS_AUTH_OK.to_string();
    let udp: &[u8] = if udp { b"true" } else { b"false" };
    push_headers_frame(
        &[
            (b":status", status.as_bytes()),
            (b"hysteria-udp", udp),
            (b"hysteria-cc-rx", rx),
            (b"hysteria-padding", padding),
        ],
        out,
    );
}

/// Appends the HEADERS frame of a Hysteria2 authentication request (client side, for tests
/// and benches).
pub fn push_auth_request(auth: &[u8], cc_rx: u64, padding: &[u8], out: &mut Vec<u8>) {
    let cc_rx = cc_rx.to_string();
    push_headers_frame(
        &[
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", AUTH_AUTHORITY.as_bytes()),
            (b":path", AUTH_PATH.as_bytes()),
            (b"hysteria-auth", auth),
            (b"hysteria-cc-rx", cc_rx.as_bytes()),
            (b"hysteria-padding", padding),
        ],
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hysteria2::huffman::tests::hex;
    use crate::hysteria2::qpack::tests::LS_QPACK_AUTH;

    /// Name and value pairs, as [`push_headers_frame`] takes them.
    type FieldList = &'static [(&'static [u8], &'static [u8])];

    fn done(result: Result<Progress<RequestHead>, H3Error>) -> RequestHead {
        match result {
            Ok(Progress::Done(head)) => head,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    fn frame(frame_type: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_frame_header(frame_type, payload.len(), &mut out);
        out.extend_from_slice(payload);
        out
    }

    /// An extended CONNECT (RFC 9220), which our SETTINGS allow, is a request like any other;
    /// `:protocol` elsewhere, or without `:scheme` and `:path`, is malformed.
    #[test]
    fn extended_connect_takes_a_protocol() {
        let parse = |fields: FieldList| {
            let mut wire = Vec::new();
            push_headers_frame(fields, &mut wire);
            parse_request_head(&wire, MAX_FIELD_SECTION_SIZE)
        };
        let head = done(parse(&[
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":authority", b"www.example.com"),
            (b":path", b"/chat"),
        ]));
        assert_eq!(head.protocol.as_deref(), Some("websocket"));
        assert_eq!(head.path.as_deref(), Some("/chat"));
        let bad: [FieldList; 2] = [
            &[
                (b":method", b"GET"),
                (b":protocol", b"websocket"),
                (b":scheme", b"https"),
                (b":path", b"/"),
            ],
            &[
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":authority", b"www.example.com"),
            ],
        ];
        for fields in bad {
            assert_eq!(
                parse(fields),
                Err(H3Error::Malformed("extended CONNECT pseudo-headers"))
            );
        }
    }

    #[test]
    fn ls_qpack_auth_request_is_an_auth() {
        let wire = frame(HEADERS, &hex(LS_QPACK_AUTH));
        let head = done(parse_request_head(&wire, MAX_FIELD_SECTION_SIZE));
        assert_eq!(head.consumed, wire.len());
        assert_eq!(
            head.hysteria_auth(),
            Some(AuthRequest {
                auth: b"correct horse",
                cc_rx: 12_500_000
            })
        );
        assert_eq!(
            head.field("hysteria-padding"),
            Some(&b"Zq3xK9pLm2Vb7Rt0"[..])
        );
        for cut in 0..wire.len() {
            assert_eq!(
                parse_request_head(&wire[..cut], MAX_FIELD_SECTION_SIZE),
                Ok(Progress::NeedMore)
            );
        }
    }

    /// An auth request laid out the way quic-go's QPACK encoder (quic-go/qpack, the one under
    /// the official client and sing-box) writes fields: indexed lines for exact static
    /// entries, static name references (N=0, T=1) with raw values, literal names without
    /// Huffman; quic-go's request order (`:authority`, `:method`, `:path`, `:scheme`, the
    /// request's fields, `content-length: 0` for an empty POST, its user agent). Assembled by
    /// hand; ls-qpack (pylsqpack 1.0.0) decodes it to these fields.
    #[test]
    fn quic_go_style_auth_request() {
        let section = hex(
            "000050086879737465726961d451052f61757468d7270668797374657269612d617574680d636f72\
             7265637420686f727365270768797374657269612d63632d72780130270968797374657269612d70\
             616464696e670a30614231634432654633c45f500e717569632d676f20485454502f33",
        );
        let wire = frame(HEADERS, &section);
        let head = done(parse_request_head(&wire, MAX_FIELD_SECTION_SIZE));
        assert_eq!(head.method, "POST");
        assert_eq!(head.scheme.as_deref(), Some("https"));
        assert_eq!(
            head.hysteria_auth(),
            Some(AuthRequest {
                auth: b"correct horse",
                cc_rx: 0
            })
        );
        assert_eq!(head.field("content-length"), Some(&b"0"[..]));
        assert_eq!(head.field("user-agent"), Some(&b"quic-go HTTP/3"[..]));
        assert_eq!(head.fields.len(), 5);
    }

    #[test]
    fn our_client_round_trips_and_skips_unknown_frames() {
        let mut wire = frame(0x21, b"grease");
        wire.extend_from_slice(&frame(0x1f * 7 + 0x21, b""));
        let skipped = wire.len();
        push_auth_request(b"pw", 0, b"pppp", &mut wire);
        let end = wire.len();
        wire.extend_from_slice(&frame(DATA, b"body"));
        let head = done(parse_request_head(&wire, MAX_FIELD_SECTION_SIZE));
        assert_eq!(head.consumed, end);
        assert!(head.consumed > skipped);
        assert_eq!(
            head.hysteria_auth(),
            Some(AuthRequest {
                auth: b"pw",
                cc_rx: 0
            })
        );
    }

    #[test]
    fn other_requests_are_for_the_masquerade() {
        let cases: [FieldList; 4] = [
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"hysteria"),
                (b":path", b"/auth"),
            ],
            &[
                (b":method", b"POST"),
                (b":scheme", b"https"),
                (b":authority", b"example.com"),
                (b":path", b"/auth"),
            ],
            &[
                (b":method", b"POST"),
                (b":scheme", b"https"),
                (b":authority", b"hysteria"),
                (b":path", b"/index.html"),
            ],
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"example.com"),
                (b":path", b"/"),
                (b"user-agent", b"curl/8"),
                (b"accept", b"*/*"),
            ],
        ];
        for fields in cases {
            let mut wire = Vec::new();
            push_headers_frame(fields, &mut wire);
            let head = done(parse_request_head(&wire, MAX_FIELD_SECTION_SIZE));
            assert_eq!(head.hysteria_auth(), None);
            assert_eq!(head.method.as_bytes(), fields[0].1);
            assert_eq!(
                head.authority.as_deref().map(str::as_bytes),
                Some(fields[2].1)
            );
            assert_eq!(head.path.as_deref().map(str::as_bytes), Some(fields[3].1));
            assert_eq!(head.fields.len(), fields.len() - 4);
        }
        // A query string and an unparsable rate still authenticate (rate 0), as the reference
        // reads them.
        let mut wire = Vec::new();
        push_headers_frame(
            &[
                (b":method", b"POST"),
                (b":scheme", b"https"),
                (b":authority", b"hysteria"),
                (b":path", b"/auth?x=1"),
                (b"hysteria-cc-rx", b"fast"),
            ],
            &mut wire,
        );
        let head = done(parse_request_head(&wire, MAX_FIELD_SECTION_SIZE));
        assert_eq!(
            head.hysteria_auth(),
            Some(AuthRequest {
                auth: b"",
                cc_rx: 0
            })
        );
    }

    #[test]
    fn malformed_heads_and_frames() {
        let bad: [(FieldList, &str); 7] = [
            (&[(b":scheme", b"https"), (b":path", b"/")], "no :method"),
            (
                &[(b":method", b"GET"), (b":path", b"/")],
                "no :scheme or :path",
            ),
            (
                &[(b":method", b"GET"), (b"a", b"b"), (b":path", b"/")],
                "pseudo-header after a regular field",
            ),
            (
                &[(b":method", b"GET"), (b":method", b"GET")],
                "repeated pseudo-header",
            ),
            (
                &[(b":method", b"GET"), (b":status", b"200")],
                "unknown pseudo-header",
            ),
            (
                &[(b":method", b"GET"), (b"X-Up", b"1")],
                "uppercase field name",
            ),
            (
                &[(b":method", b"CONNECT"), (b":path", b"/")],
                "CONNECT pseudo-headers",
            ),
        ];
        for (fields, why) in bad {
            let mut wire = Vec::new();
            push_headers_frame(fields, &mut wire);
            assert_eq!(
                parse_request_head(&wire, MAX_FIELD_SECTION_SIZE),
                Err(H3Error::Malformed(why))
            );
        }
        for frame_type in [DATA, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0d] {
            assert_eq!(
                parse_request_head(&frame(frame_type, b""), MAX_FIELD_SECTION_SIZE),
                Err(H3Error::UnexpectedFrame(frame_type))
            );
        }
        // Oversize frames fail on their header, before the payload arrives.
        let mut header = Vec::new();
        push_frame_header(HEADERS, (1 << 20) + 1, &mut header);
        let e = parse_request_head(&header, MAX_FIELD_SECTION_SIZE).unwrap_err();
        assert_eq!(e, H3Error::FrameTooLarge((1 << 20) + 1));
        assert!(e.is_too_large());
        assert_eq!(e.code(), H3_EXCESSIVE_LOAD);
        // So do small frames whose fields decode past the limit: 1 000 one-byte references
        // to `:method GET` count 42 000 bytes (RFC 9114 section 4.2.2).
        let mut refs = vec![0x00, 0x00];
        refs.resize(1_002, 0xd1);
        let e = parse_request_head(&frame(HEADERS, &refs), 41_999).unwrap_err();
        assert_eq!(e, H3Error::Qpack(QpackError::TooLarge(41_999)));
        assert!(e.is_too_large());
        assert!(matches!(
            parse_request_head(&frame(HEADERS, &refs), 42_000),
            Err(H3Error::Malformed(_))
        ));
        assert_eq!(H3Error::UnexpectedFrame(0).code(), H3_FRAME_UNEXPECTED);
        assert_eq!(H3Error::Malformed("x").code(), H3_MESSAGE_ERROR);
        let mut header = Vec::new();
        push_frame_header(0x21, MAX_FIELD_SECTION_SIZE + 1, &mut header);
        assert!(matches!(
            parse_request_head(&header, MAX_FIELD_SECTION_SIZE),
            Err(H3Error::FrameTooLarge(_))
        ));
        let e = parse_request_head(&frame(HEADERS, &[0x03, 0x81, 0x10]), MAX_FIELD_SECTION_SIZE)
            .unwrap_err();
        assert_eq!(e, H3Error::Qpack(QpackError::DynamicTable));
        assert!(!e.is_too_large());
        assert_eq!(e.code(), QPACK_DECOMPRESSION_FAILED);
    }

    /// The 233 answer decodes as ls-qpack (pylsqpack 1.0.0) decodes it: these are the bytes of
    /// `push_auth_response(true, ServerRx::Auto, b"0123456789", ..)`, fed to its decoder.
    #[test]
    fn auth_response_bytes() {
        let mut out = Vec::new();
        push_auth_response(true, ServerRx::Auto, b"0123456789", &mut out);
        assert_eq!(out, hex(AUTH_RESPONSE));
        let mut rate = Vec::new();
        push_auth_response(false, ServerRx::Rate(0), b"", &mut rate);
        let fields = qpack::decode_field_section(&rate[2..]).unwrap();
        let values: Vec<&[u8]> = fields.iter().map(|f| &f.value[..]).collect();
        assert_eq!(values, [&b"233"[..], b"false", b"0", b""]);
    }

    const AUTH_RESPONSE: &str = "\
        013e00005f09033233332f029fd2125b0c35ad92bf834d96972f039fd2125b0c358845acf3831da93f2f05\
        9fd2125b0c35ab1c921aa9bf880044cb4db8ebcfff";
}
