//! The reverse-proxy masquerade's HTTP/1.1 side, sans-IO: the request sent to the operator's
//! own web site for an HTTP/3 request that is not a Hysteria2 client's, and the site's
//! response read back, to be answered over HTTP/3 as if the server were that site.
//!
//! ```text
//! HTTP/3 request  ──► encode_request ──► "GET /path HTTP/1.1\r\nHost: ..\r\n..\r\n\r\n" body
//!                                         (Connection: close; hop-by-hop fields dropped)
//! HTTP/3 answer   ◄── Response        ◄── parse_response: head (httparse), then the body by
//!                                         Content-Length, chunked, or up to the close
//! ```
//!
//! The protocol's own fields (`hysteria-*`, the password among them) are never forwarded.
//! Fields that HTTP/1.1 cannot carry safely (a name that is not a token, a value with a control
//! byte such as CR, LF or NUL) are dropped rather than forwarded, so a client cannot smuggle a second request.

use crate::hysteria2::qpack::Field;
use crate::Progress;

/// Longest response head and body taken from the site; a longer one is an error.
pub const MAX_RESPONSE: usize = 8 << 20;
/// Most response header fields read.
const MAX_FIELDS: usize = 64;

/// Fields that belong to one HTTP/1.1 connection, not to the message, plus those the proxy
/// sets itself.
const NOT_FORWARDED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
    "content-length",
];

/// What went wrong between the proxy and the site.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The request's method or path cannot be written as an HTTP/1.1 request line.
    #[error("the request line cannot be sent over HTTP/1.1")]
    BadRequestLine,
    /// The site's response is not HTTP/1.x.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The site closed before the response was complete.
    #[error("response truncated")]
    Truncated,
    /// The response is longer than [`MAX_RESPONSE`].
    #[error("response over {MAX_RESPONSE} bytes")]
    TooLarge,
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

/// RFC 9110 field-value bytes: visible ASCII, space, tab and obs-text (no CR, LF, NUL or
/// other controls).
fn is_field_value(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80)
}

/// Appends the HTTP/1.1 request for the site: `method` and `path` from the HTTP/3 request,
/// `host` as its `Host`, the forwardable `fields`, and `body`.
pub fn encode_request(
    method: &str,
    path: &str,
    host: &str,
    fields: &[Field],
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), ProxyError> {
    let path_ok =
        (path.starts_with('/') || path == "*") && path.bytes().all(|b| b.is_ascii_graphic());
    if !is_token(method.as_bytes()) || !path_ok || !is_field_value(host.as_bytes()) {
        return Err(ProxyError::BadRequestLine);
    }
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
    for f in fields {
        let name = String::from_utf8_lossy(&f.name).to_ascii_lowercase();
        // `hysteria-auth` may hold a real user's password (refused for a limit, say): the
        // site never sees the protocol's fields.
        if NOT_FORWARDED.contains(&name.as_str())
            || name.starts_with("hysteria-")
            || !is_token(&f.name)
            || !is_field_value(&f.value)
        {
            continue;
        }
        out.extend_from_slice(&f.name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&f.value);
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(body);
    Ok(())
}

/// The site's response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The fields to forward (names lowercase; connection fields and framing removed).
    pub fields: Vec<(String, Vec<u8>)>,
    /// The site's `content-length`, if it sent one: the answer to a `HEAD` request carries
    /// it on (the length a `GET` would have), where any other answer has its body's.
    pub length: Option<usize>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Parses the site's response from `buf`, everything read so far; `closed` once the site has
/// closed the connection. [`Progress::NeedMore`] until the response is complete. For a
/// `HEAD` request (`head_request`) no body is read.
pub fn parse_response(
    buf: &[u8],
    closed: bool,
    head_request: bool,
) -> Result<Progress<Response>, ProxyError> {
    if buf.len() > MAX_RESPONSE {
        return Err(ProxyError::TooLarge);
    }
    let mut at = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut head = httparse::Response::new(&mut headers);
        let n = match head.parse(&buf[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if closed => return Err(ProxyError::Truncated),
            Ok(httparse::Status::Partial) => return Ok(Progress::NeedMore),
            Err(e) => return Err(ProxyError::Malformed(e.to_string())),
        };
        let status = head.code.unwrap_or(0);
        at += n;
        // Interim answers (100 Continue and the like) come before the real one.
        if (100..200).contains(&status) {
            continue;
        }
        let mut chunked = false;
        let mut length = None;
        let mut fields = Vec::new();
        for h in head.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            match name.as_str() {
                "transfer-encoding" => {
                    chunked = h.value.eq_ignore_ascii_case(b"chunked")
                        || h.value.to_ascii_lowercase().ends_with(b"chunked");
                }
                "content-length" => {
                    let text = std::str::from_utf8(h.value).unwrap_or("");
                    let n: usize = text
                        .trim()
                        .parse()
                        .map_err(|_| ProxyError::Malformed("content-length".into()))?;
                    length = Some(n);
                }
                _ if NOT_FORWARDED.contains(&name.as_str()) => {}
                _ => fields.push((name, h.value.to_vec())),
            }
        }
        let rest = &buf[at..];
        let body = if head_request || status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            match dechunk(rest)? {
                Some(body) => body,
                None if closed => return Err(ProxyError::Truncated),
                None => return Ok(Progress::NeedMore),
            }
        } else if let Some(n) = length {
            if rest.len() < n {
                return if closed {
                    Err(ProxyError::Truncated)
                } else {
                    Ok(Progress::NeedMore)
                };
            }
            rest[..n].to_vec()
        } else if closed {
            rest.to_vec()
        } else {
            return Ok(Progress::NeedMore);
        };
        return Ok(Progress::Done(Response {
            status,
            fields,
            length,
            body,
        }));
    }
}

/// The body of a chunked message from `buf`; `None` until the last chunk (and the trailer
/// section) is there.
fn dechunk(buf: &[u8]) -> Result<Option<Vec<u8>>, ProxyError> {
    // Walked once to see whether the body is complete (an answer is parsed again after every
    // read while it is not: no copy then), and once more to copy it out when it is.
    let Some(len) = walk_chunks(buf, &mut |_| {})? else {
        return Ok(None);
    };
    let mut body = Vec::with_capacity(len);
    walk_chunks(buf, &mut |chunk| body.extend_from_slice(chunk))?;
    Ok(Some(body))
}

/// Hands each chunk's data in `buf` to `each`; the body's length once the last chunk and the
/// trailer section are there, `None` before.
fn walk_chunks(mut buf: &[u8], each: &mut impl FnMut(&[u8])) -> Result<Option<usize>, ProxyError> {
    let mut len = 0usize;
    loop {
        let (size, n) = match httparse::parse_chunk_size(buf) {
            Ok(httparse::Status::Complete((n, size))) => (size, n),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ProxyError::Malformed("chunk size".into())),
        };
        buf = &buf[n..];
        if size == 0 {
            // Trailer fields (ignored) end with an empty line.
            return Ok(find_blank_line(buf).map(|_| len));
        }
        let size = usize::try_from(size).map_err(|_| ProxyError::TooLarge)?;
        if size > MAX_RESPONSE {
            return Err(ProxyError::TooLarge);
        }
        if buf.len() < size + 2 {
            return Ok(None);
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err(ProxyError::Malformed("chunk without CRLF".into()));
        }
        each(&buf[..size]);
        len += size;
        buf = &buf[size + 2..];
    }
}

/// Where the trailer section ends: at a leading CRLF (no trailers) or the first blank line.
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    if buf.starts_with(b"\r\n") {
        return Some(2);
    }
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, value: &str) -> Field {
        Field {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn request_drops_what_http1_cannot_carry() {
        let mut out = Vec::new();
        encode_request(
            "GET",
            "/a?b=c",
            "site.example",
            &[
                field("accept", "*/*"),
                field("connection", "keep-alive"),
                field("x-evil", "1\r\nGET /smuggled HTTP/1.1"),
                field("bad name", "v"),
                field("x-control", "a\u{1}b"),
                field("host", "other.example"),
                field("hysteria-auth", "a user's password"),
            ],
            b"",
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out,
            b"GET /a?b=c HTTP/1.1\r\nHost: site.example\r\naccept: */*\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        encode_request("POST", "/auth", "hysteria", &[], b"xy", &mut out).unwrap();
        assert!(out.ends_with(b"Content-Length: 2\r\nConnection: close\r\n\r\nxy"));
        for (method, path) in [
            ("GET", "/a b"),
            ("G T", "/"),
            ("GET", "a"),
            ("GET", "/\r\n"),
        ] {
            assert_eq!(
                encode_request(method, path, "h", &[], b"", &mut Vec::new()),
                Err(ProxyError::BadRequestLine),
                "{method:?} {path:?}"
            );
        }
    }

    #[test]
    fn responses_by_length_chunks_and_close() {
        let by_length = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: nginx\r\nConnection: close\r\n\r\nhello";
        for cut in 0..by_length.len() {
            assert_eq!(
                parse_response(&by_length[..cut], false, false),
                Ok(Progress::NeedMore)
            );
            assert_eq!(
                parse_response(&by_length[..cut], true, false),
                Err(ProxyError::Truncated)
            );
        }
        let Progress::Done(r) = parse_response(by_length, false, false).unwrap() else {
            panic!("complete")
        };
        assert_eq!(r.status, 200);
        assert_eq!(r.fields, [("server".to_owned(), b"nginx".to_vec())]);
        assert_eq!(r.body, b"hello");

        let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for cut in 0..chunked.len() {
            assert_eq!(
                parse_response(&chunked[..cut], false, false),
                Ok(Progress::NeedMore),
                "{cut}"
            );
        }
        let Progress::Done(r) = parse_response(chunked, false, false).unwrap() else {
            panic!("complete")
        };
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));

        let to_close = b"HTTP/1.0 200 OK\r\n\r\nuntil the end";
        assert_eq!(
            parse_response(to_close, false, false),
            Ok(Progress::NeedMore)
        );
        let Progress::Done(r) = parse_response(to_close, true, false).unwrap() else {
            panic!("complete")
        };
        assert_eq!(r.body, b"until the end");

        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        let Progress::Done(r) = parse_response(head, false, true).unwrap() else {
            panic!("a HEAD answer has no body")
        };
        assert!(r.body.is_empty());
        assert_eq!(r.length, Some(100), "what a GET would have");
        assert!(matches!(
            parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", false, false),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                false,
                false
            ),
            Err(ProxyError::Malformed(_))
        ));
    }
}
