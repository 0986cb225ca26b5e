use base64::Engine as _;

use super::frame::*;
use super::handshake::*;
use crate::Progress;

const POLICY: UpgradePolicy<'static> = UpgradePolicy {
    path: "/chat",
    host: None,
    early_data: true,
};

/// RFC 6455 section 1.3's example request (Origin and subprotocols dropped).
const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: server.example.com:443\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn parse(policy: &UpgradePolicy<'_>, buf: &[u8]) -> Result<Upgrade, HandshakeError> {
    match parse_upgrade(policy, buf)? {
        Progress::Done(u) => Ok(u),
        Progress::NeedMore => panic!("incomplete"),
    }
}

#[test]
fn accept_key_is_rfc_6455_example() {
    // RFC 6455 section 1.3.
    assert_eq!(
        &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn rfc_request_upgrades_and_needs_its_blank_line() {
    for cut in 0..RFC_REQUEST.len() {
        assert_eq!(
            parse_upgrade(&POLICY, &RFC_REQUEST[..cut]),
            Ok(Progress::NeedMore),
            "cut at {cut}"
        );
    }
    let mut wire = RFC_REQUEST.to_vec();
    wire.extend_from_slice(&[0x82, 0x80, 1, 2, 3, 4]);
    let up = parse(&POLICY, &wire).unwrap();
    assert_eq!(up.consumed, RFC_REQUEST.len());
    assert_eq!(up.early_data, None);
    let mut out = Vec::new();
    up.write_response(&wire, &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[test]
fn path_is_compared_without_query_and_host_without_port() {
    assert!(parse(&POLICY, &request("/chat?ed=2048", "")).is_ok());
    assert_eq!(
        parse(&POLICY, &request("/chat/", "")),
        Err(HandshakeError::WrongPath)
    );
    assert_eq!(
        parse(&POLICY, &request("/", "")),
        Err(HandshakeError::WrongPath)
    );
    let host = UpgradePolicy {
        host: Some("Server.Example.com"),
        ..POLICY
    };
    assert!(parse(&host, &request("/chat", "")).is_ok());
    let other = UpgradePolicy {
        host: Some("example.org"),
        ..POLICY
    };
    assert_eq!(
        parse(&other, &request("/chat", "")),
        Err(HandshakeError::WrongHost)
    );
    assert_eq!(HandshakeError::WrongHost.response(), NOT_FOUND);
    assert_eq!(HandshakeError::WrongPath.response(), NOT_FOUND);
}

#[test]
fn requests_that_are_not_upgrades_are_refused() {
    let plain = b"GET /chat HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(matches!(
        parse(&POLICY, plain),
        Err(HandshakeError::NotUpgrade(_))
    ));
    let post = String::from_utf8(request("/chat", ""))
        .unwrap()
        .replacen("GET", "POST", 1);
    assert!(matches!(
        parse(&POLICY, post.as_bytes()),
        Err(HandshakeError::NotUpgrade(_))
    ));
    let v8 = String::from_utf8(request("/chat", ""))
        .unwrap()
        .replace("Version: 13", "Version: 8");
    assert!(matches!(
        parse(&POLICY, v8.as_bytes()),
        Err(HandshakeError::NotUpgrade(_))
    ));
    let http10 = String::from_utf8(request("/chat", ""))
        .unwrap()
        .replace("HTTP/1.1", "HTTP/1.0");
    assert!(matches!(
        parse(&POLICY, http10.as_bytes()),
        Err(HandshakeError::Malformed(_))
    ));
    assert_eq!(
        HandshakeError::NotUpgrade("x").response(),
        NOT_FOUND,
        "a non-upgrade request gets an ordinary 404"
    );
}

#[test]
fn garbage_and_oversize_heads_are_refused() {
    let garbage = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    let e = parse_upgrade(&POLICY, garbage).unwrap_err();
    assert!(matches!(e, HandshakeError::Malformed(_)));
    assert_eq!(e.response(), BAD_REQUEST);
    let mut long = b"GET /chat HTTP/1.1\r\nX: ".to_vec();
    long.resize(MAX_REQUEST_HEAD, b'a');
    assert_eq!(parse_upgrade(&POLICY, &long), Err(HandshakeError::TooLarge));
    let many: String = (0..MAX_HEADERS + 1)
        .map(|i| format!("X-{i}: 1\r\n"))
        .collect();
    assert_eq!(
        parse_upgrade(&POLICY, &request("/chat", &many)),
        Err(HandshakeError::TooLarge)
    );
}

#[test]
fn early_data_is_decoded_and_echoed() {
    // "hello world!?" in URL-safe base64 without padding, as Xray and sing-box send it.
    let wire = request("/chat", "Sec-WebSocket-Protocol: aGVsbG8gd29ybGQhPw\r\n");
    let up = parse(&POLICY, &wire).unwrap();
    assert_eq!(up.decode_early_data(&wire), b"hello world!?");
    let mut out = Vec::new();
    up.write_response(&wire, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("\r\nSec-WebSocket-Protocol: aGVsbG8gd29ybGQhPw\r\n\r\n"));
    // The URL-safe alphabet's own characters; and the standard one, padded.
    let bytes = [0xfb, 0xff, 0xfe];
    let wire = request("/chat", "Sec-WebSocket-Protocol: -__-\r\n");
    assert_eq!(
        parse(&POLICY, &wire).unwrap().decode_early_data(&wire),
        bytes
    );
    let wire = request("/chat", "Sec-WebSocket-Protocol: +//+\r\n");
    assert_eq!(
        parse(&POLICY, &wire).unwrap().decode_early_data(&wire),
        bytes
    );
    // Any length that fits the request head (Xray, v2ray and sing-box servers set no limit
    // of their own): 5 KiB, 6.7 KiB of base64.
    let long: Vec<u8> = (0..5120u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&long);
    let wire = request("/chat", &format!("Sec-WebSocket-Protocol: {text}\r\n"));
    assert!(wire.len() <= MAX_REQUEST_HEAD);
    assert_eq!(
        parse(&POLICY, &wire).unwrap().decode_early_data(&wire),
        long
    );
    // Not base64: refused.
    let wire = request("/chat", "Sec-WebSocket-Protocol: chat, superchat\r\n");
    assert!(matches!(
        parse(&POLICY, &wire),
        Err(HandshakeError::BadEarlyData(_))
    ));
    // Early data off: the header is an ordinary subprotocol offer, neither decoded nor echoed.
    let off = UpgradePolicy {
        early_data: false,
        ..POLICY
    };
    let up = parse(&off, &wire).unwrap();
    assert_eq!(up.early_data, None);
}

#[test]
fn early_data_at_the_end_of_the_path() {
    // sing-box without an early-data header name appends the base64 to the path.
    let wire = request("/chataGVsbG8gd29ybGQhPw?x=1", "");
    let up = parse(&POLICY, &wire).unwrap();
    assert!(up.early_data_in_path);
    assert_eq!(up.decode_early_data(&wire), b"hello world!?");
    let mut out = Vec::new();
    up.write_response(&wire, &mut out);
    assert!(
        !String::from_utf8(out)
            .unwrap()
            .contains("Sec-WebSocket-Protocol"),
        "nothing to echo"
    );
    // Not base64, or early data off: not this inbound's path.
    for path in ["/chat/other", "/chat/abcd", "/chatab+c", "/chataGk="] {
        assert_eq!(
            parse(&POLICY, &request(path, "")),
            Err(HandshakeError::WrongPath),
            "{path}"
        );
    }
    let wire = request("/chataGVsbG8gd29ybGQhPw", "");
    let off = UpgradePolicy {
        early_data: false,
        ..POLICY
    };
    assert_eq!(parse(&off, &wire), Err(HandshakeError::WrongPath));
    // The exact path still carries none.
    let up = parse(&POLICY, &request("/chat", "")).unwrap();
    assert!(!up.early_data_in_path && up.early_data.is_none());
}

/// RFC 6455 section 5.7: a single-frame masked text message, "Hello".
const MASKED_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];

fn decode_all(d: &mut FrameDecoder, wire: &[u8], step: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    for piece in wire.chunks(step) {
        let mut buf = piece.to_vec();
        let got = d.decode(&mut buf)?;
        out.extend_from_slice(&buf[..got.data]);
    }
    Ok(out)
}

#[test]
fn rfc_masked_hello_unmasks_in_place() {
    let mut buf = MASKED_HELLO;
    let mut d = FrameDecoder::new(1 << 20);
    let got = d.decode(&mut buf).unwrap();
    assert_eq!(
        got,
        Decoded {
            data: 5,
            ping: false,
            closed: false
        }
    );
    assert_eq!(&buf[..5], b"Hello");
    let mut again = Vec::new();
    client_frame(
        OP_TEXT,
        true,
        [0x37, 0xfa, 0x21, 0x3d],
        b"Hello",
        &mut again,
    );
    assert_eq!(again, MASKED_HELLO);
}

#[test]
fn rfc_unmasked_frames_are_refused() {
    // RFC 6455 section 5.7: "A single-frame unmasked text message" is what a server sends, never
    // a client.
    let mut buf = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        FrameDecoder::new(1 << 20).decode(&mut buf),
        Err(FrameError::Unmasked)
    );
    let mut head = [0u8; MAX_SERVER_HEADER];
    assert_eq!(server_header(OP_TEXT, 5, &mut head), 2);
    assert_eq!(head[..2], [0x81, 0x05]);
}

#[test]
fn rfc_length_forms() {
    // RFC 6455 section 5.7: 256 bytes and 64 KiB in a single unmasked binary frame.
    let mut head = [0u8; MAX_SERVER_HEADER];
    assert_eq!(server_header(OP_BINARY, 256, &mut head), 4);
    assert_eq!(head[..4], [0x82, 0x7E, 0x01, 0x00]);
    assert_eq!(server_header(OP_BINARY, 65536, &mut head), 10);
    assert_eq!(head, [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(server_header(OP_BINARY, 125, &mut head), 2);
    assert_eq!(server_header(OP_BINARY, 126, &mut head), 4);
    assert_eq!(server_header(OP_BINARY, 65535, &mut head), 4);
    // The client forms decode, fed a byte at a time and whole.
    let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7) as u8).collect();
    for len in [0, 1, 125, 126, 65535, 65536, 70_000] {
        let mut wire = Vec::new();
        client_frame(OP_BINARY, true, [9, 8, 7, 6], &data[..len], &mut wire);
        for step in [1, 3, 4096, wire.len().max(1)] {
            let got = decode_all(&mut FrameDecoder::new(1 << 20), &wire, step).unwrap();
            assert_eq!(got, &data[..len], "len {len} step {step}");
        }
    }
}

#[test]
fn fragments_control_frames_and_close() {
    let mask = [1, 2, 3, 4];
    let mut wire = Vec::new();
    client_frame(OP_BINARY, false, mask, b"Hel", &mut wire);
    client_frame(OP_PING, true, mask, b"are you there", &mut wire);
    client_frame(OP_CONTINUATION, true, mask, b"lo", &mut wire);
    client_frame(OP_PONG, true, mask, b"", &mut wire);
    client_frame(OP_TEXT, true, mask, b", world", &mut wire);
    client_frame(OP_CLOSE, true, mask, &1001u16.to_be_bytes(), &mut wire);
    client_frame(OP_BINARY, true, mask, b"ignored", &mut wire);
    for step in [1, 2, 5, 13, wire.len()] {
        let mut d = FrameDecoder::new(1 << 20);
        let mut out = Vec::new();
        let (mut pinged, mut closed) = (false, false);
        for piece in wire.chunks(step) {
            let mut buf = piece.to_vec();
            let got = d.decode(&mut buf).unwrap();
            out.extend_from_slice(&buf[..got.data]);
            pinged |= got.ping;
            closed |= got.closed;
        }
        assert_eq!(out, b"Hello, world", "step {step}");
        assert!(pinged && closed && d.is_closed());
        let mut frame = [0u8; CONTROL_FRAME_ROOM];
        let n = d.pong(&mut frame);
        assert_eq!(&frame[..n], b"\x8a\x0dare you there");
        let n = d.close_reply(&mut frame);
        assert_eq!(&frame[..n], [0x88, 0x02, 0x03, 0xE9]);
    }
    // An empty ping at the very end of a read is answered at once.
    let mut wire = Vec::new();
    client_frame(OP_PING, true, mask, b"", &mut wire);
    let got = FrameDecoder::new(16).decode(&mut wire).unwrap();
    assert!(got.ping);
    let mut frame = [0u8; CONTROL_FRAME_ROOM];
    assert_eq!(close_frame(CLOSE_NORMAL, &mut frame), 4);
    assert_eq!(frame[..4], [0x88, 0x02, 0x03, 0xE8]);
}

#[test]
fn protocol_violations_are_errors() {
    let mask = [1, 2, 3, 4];
    let frame = |op, fin, payload: &[u8]| {
        let mut w = Vec::new();
        client_frame(op, fin, mask, payload, &mut w);
        w
    };
    let check = |wire: Vec<u8>, want: FrameError| {
        let got = decode_all(&mut FrameDecoder::new(1000), &wire, wire.len());
        assert_eq!(got, Err(want));
    };
    check(
        frame(OP_BINARY, true, &[0; 1001]),
        FrameError::Oversize(1001),
    );
    check(frame(OP_PING, false, b""), FrameError::BadControlFrame);
    check(
        frame(OP_CONTINUATION, true, b"x"),
        FrameError::BadFragmentation,
    );
    check(
        [frame(OP_BINARY, false, b"x"), frame(OP_BINARY, true, b"y")].concat(),
        FrameError::BadFragmentation,
    );
    check(frame(0x3, true, b""), FrameError::UnknownOpcode(3));
    let mut rsv = frame(OP_BINARY, true, b"x");
    rsv[0] |= 0x40;
    check(rsv, FrameError::ReservedBits);
    // A control frame claiming 126 bytes, and a 64-bit length with its top bit set.
    check(
        vec![0x89, 0x80 | 126, 0, 126, 1, 2, 3, 4],
        FrameError::BadControlFrame,
    );
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    huge.extend_from_slice(&mask);
    let got = FrameDecoder::new(u64::MAX).decode(&mut huge);
    assert_eq!(got, Err(FrameError::Oversize(u64::MAX)));
}

#[test]
fn unmask_matches_bytewise_xor_at_every_offset() {
    let mask = [0xde, 0xad, 0xbe, 0xef];
    let data: Vec<u8> = (0..37u8).collect();
    for at in 0..4 {
        for len in 0..data.len() {
            let mut fast = data[..len].to_vec();
            let next = unmask(&mut fast, mask, at);
            let slow: Vec<u8> = data[..len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[(at + i) % 4])
                .collect();
            assert_eq!(fast, slow);
            assert_eq!(next, (at + len) % 4);
        }
    }
}
