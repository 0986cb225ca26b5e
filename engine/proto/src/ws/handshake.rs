//! The server side of the WebSocket opening handshake: parse the client's HTTP/1.1 upgrade
//! request, check path and host, find early data, and write the `101` answer (or the status
//! line a refused request gets).

use std::ops::Range;

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::Progress;

/// Longest request head accepted (request line and headers), as Xray's `MaxHeaderBytes`.
pub const MAX_REQUEST_HEAD: usize = 8192;

/// Most header fields accepted in a request.
pub const MAX_HEADERS: usize = 48;

/// The GUID RFC 6455 appends to the key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The header that carries early data.
pub const EARLY_DATA_HEADER: &str = "Sec-WebSocket-Protocol";

/// What an inbound accepts.
#[derive(Clone, Copy, Debug)]
pub struct UpgradePolicy<'a> {
    /// The request path (starting with `/`); the query is ignored.
    pub path: &'a str,
    /// The `Host` the client must name (compared without port, case-insensitively), if any.
    pub host: Option<&'a str>,
    /// Whether early data is read (from `Sec-WebSocket-Protocol` or the end of the path). Off:
    /// the header is an ordinary subprotocol offer (not decoded, not echoed). On, any length
    /// that fits the request head ([`MAX_REQUEST_HEAD`]) is accepted, as Xray's, v2ray's and
    /// sing-box's servers accept it: how much a client sends is the client's setting (`?ed=`).
    pub early_data: bool,
}

/// A request that may be upgraded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// Length of the request head, blank line included: what follows is frames.
    pub consumed: usize,
    /// The `Sec-WebSocket-Accept` value.
    pub accept: [u8; 28],
    /// Where the early data's base64 text is in the request.
    pub early_data: Option<Range<usize>>,
    /// Whether the early data came at the end of the path (sing-box without an early-data
    /// header name) rather than in `Sec-WebSocket-Protocol` (echoed back in the answer).
    pub early_data_in_path: bool,
}

/// Why a request was refused: what the peer sent. Nothing is consumed or modified.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not an HTTP/1.1 request.
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
    /// The request head did not end within [`MAX_REQUEST_HEAD`] bytes.
    #[error("request head longer than {MAX_REQUEST_HEAD} bytes")]
    TooLarge,
    /// Another path than the inbound's.
    #[error("wrong path")]
    WrongPath,
    /// Another host than the inbound's.
    #[error("wrong host")]
    WrongHost,
    /// Not a WebSocket upgrade (method, `Upgrade`, `Connection`, version or key missing or
    /// wrong).
    #[error("not a WebSocket upgrade: {0}")]
    NotUpgrade(&'static str),
    /// Early data that is not base64.
    #[error("bad early data: {0}")]
    BadEarlyData(&'static str),
}

impl HandshakeError {
    /// The answer a refused request gets before the connection closes: what an ordinary web
    /// server would say (Go's `net/http`, which Xray and sing-box serve WebSocket with).
    pub fn response(&self) -> &'static [u8] {
        match self {
            HandshakeError::Malformed(_) | HandshakeError::BadEarlyData(_) => BAD_REQUEST,
            HandshakeError::TooLarge => HEAD_TOO_LARGE,
            HandshakeError::WrongPath
            | HandshakeError::WrongHost
            | HandshakeError::NotUpgrade(_) => NOT_FOUND,
        }
    }
}

/// The answer to a request for another path, another host, or not an upgrade.
pub const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// The answer to something that is not an HTTP request.
pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request";
/// The answer to a request head longer than [`MAX_REQUEST_HEAD`].
pub const HEAD_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large";

/// Parses the request head at the start of `buf` (the bytes received so far) against `policy`.
/// `NeedMore` until the blank line arrives.
pub fn parse_upgrade(
    policy: &UpgradePolicy<'_>,
    buf: &[u8],
) -> Result<Progress<Upgrade>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let consumed = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_REQUEST_HEAD => n,
        Ok(_) if buf.len() >= MAX_REQUEST_HEAD => return Err(HandshakeError::TooLarge),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(Progress::NeedMore),
        Ok(httparse::Status::Complete(_)) => return Err(HandshakeError::TooLarge),
        Err(e) => return Err(HandshakeError::Malformed(error_text(e))),
    };
    if request.version != Some(1) {
        return Err(HandshakeError::Malformed("not HTTP/1.1"));
    }
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if let Some(want) = policy.host {
        let got = header("Host").ok_or(HandshakeError::WrongHost)?;
        if !without_port(got).eq_ignore_ascii_case(without_port(want.as_bytes())) {
            return Err(HandshakeError::WrongHost);
        }
    }
    let target = request.path.unwrap_or_default();
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    // With early data on, sing-box may append it to the path, base64 (URL-safe, unpadded).
    let mut early_data = None;
    let mut early_data_in_path = false;
    if path != policy.path {
        let rest = path
            .strip_prefix(policy.path)
            .filter(|r| policy.early_data && !r.is_empty())
            .filter(|r| {
                r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .ok_or(HandshakeError::WrongPath)?;
        check_decodes(rest.as_bytes()).map_err(|_| HandshakeError::WrongPath)?;
        early_data = Some(offset_in(buf, rest.as_bytes()));
        early_data_in_path = true;
    }
    if request.method != Some("GET") {
        return Err(HandshakeError::NotUpgrade("method is not GET"));
    }
    if !header("Upgrade").is_some_and(|v| has_token(v, b"websocket")) {
        return Err(HandshakeError::NotUpgrade("no Upgrade: websocket"));
    }
    if !header("Connection").is_some_and(|v| has_token(v, b"upgrade")) {
        return Err(HandshakeError::NotUpgrade("no Connection: upgrade"));
    }
    if header("Sec-WebSocket-Version").map(trim) != Some(b"13") {
        return Err(HandshakeError::NotUpgrade(
            "Sec-WebSocket-Version is not 13",
        ));
    }
    let key = header("Sec-WebSocket-Key")
        .map(trim)
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .ok_or(HandshakeError::NotUpgrade("no Sec-WebSocket-Key"))?;
    if policy.early_data && early_data.is_none() {
        if let Some(value) = header(EARLY_DATA_HEADER)
            .map(trim)
            .filter(|v| !v.is_empty())
        {
            check_decodes(value)?;
            early_data = Some(offset_in(buf, value));
        }
    }
    Ok(Progress::Done(Upgrade {
        consumed,
        accept: accept_key(key),
        early_data,
        early_data_in_path,
    }))
}

impl Upgrade {
    /// Decodes the early data (from the request `buf` this was parsed from).
    pub fn decode_early_data(&self, buf: &[u8]) -> Vec<u8> {
        match &self.early_data {
            Some(r) => decode(&buf[r.clone()]).unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Writes the `101 Switching Protocols` answer into `out`, echoing the early-data header
    /// (from the request `buf`) as Xray and sing-box clients expect.
    pub fn write_response(&self, buf: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
        );
        out.extend_from_slice(&self.accept);
        out.extend_from_slice(b"\r\n");
        if let Some(r) = self
            .early_data
            .as_ref()
            .filter(|_| !self.early_data_in_path)
        {
            out.extend_from_slice(EARLY_DATA_HEADER.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(&buf[r.clone()]);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let digest = Sha1::new()
        .chain_update(key)
        .chain_update(ACCEPT_GUID)
        .finalize();
    let mut out = [0u8; 28];
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut out)
        .expect("20 bytes encode to 28");
    debug_assert_eq!(n, 28);
    out
}

/// Base64 as clients send early data: the URL-safe alphabet without padding (Xray also maps
/// the standard alphabet and strips padding, so both are accepted).
fn decode(text: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurposeConfig};
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const URL_SAFE: general_purpose::GeneralPurpose =
        general_purpose::GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    const STANDARD: general_purpose::GeneralPurpose =
        general_purpose::GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    if text.iter().any(|&b| b == b'+' || b == b'/') {
        STANDARD.decode(text)
    } else {
        URL_SAFE.decode(text)
    }
}

/// Checks that early data decodes (its length is bounded by the request head's).
fn check_decodes(text: &[u8]) -> Result<(), HandshakeError> {
    decode(text)
        .map(drop)
        .map_err(|_| HandshakeError::BadEarlyData("not base64"))
}

fn offset_in(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// A `Host` value without its port (`[v6]:port`, `name:port`).
fn without_port(host: &[u8]) -> &[u8] {
    let host = trim(host);
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host.iter().filter(|&&b| b == b':').count() == 1 => &host[..colon],
        _ => host,
    }
}

fn error_text(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid new line",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}
