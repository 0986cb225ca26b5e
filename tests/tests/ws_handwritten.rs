//! WebSocket inbounds driven by a hand-written client.
//!
//! Bad input: a wrong path or host, a request that is not an upgrade, something that is not
//! HTTP (each gets the answer a web server would give, then a close; or, with a fallback, the
//! fallback site's answer), and after a good upgrade: unmasked frames, oversize frames,
//! garbage (the connection closes at once, nothing is forwarded). The parts real clients
//! rarely exercise: early data, frames split anywhere, a ping answered with a pong, a close
//! answered with a close. And the control plane as over TCP: removing a user closes their
//! WebSocket connection within a second; an idle one closes at the idle timeout.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::*;
use proto::vless::Command;
use proto::ws::frame::{client_frame, OP_BINARY, OP_CLOSE, OP_PING};
use proto::TargetAddr;
use serde_json::json;

const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const PATH: &str = "/ws";
const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

fn vless_ws(settings: serde_json::Value) -> (engine::Handle, SocketAddr) {
    engine_with_transport(
        "vless",
        settings,
        false,
        Some(json!({"path": PATH, "host": "example.com"})),
    )
}

fn users() -> serde_json::Value {
    json!({"users": [{"name": "u", "id": UUID}]})
}

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Sends `bytes`, reads everything until the server closes (within 5 s); returns what came.
fn answer_to(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no close within 5 s ({} bytes came): {e}", got.len()),
    }
    got
}

#[test]
fn refused_requests_get_an_ordinary_http_answer() {
    let (handle, server) = vless_ws(users());
    let not_found = |req: &str| {
        let got = answer_to(server, req.as_bytes());
        assert!(
            got.starts_with(b"HTTP/1.1 404 Not Found\r\n"),
            "{req:?}: {}",
            String::from_utf8_lossy(&got)
        );
    };
    not_found(&upgrade_request("/other", ""));
    not_found(&upgrade_request("/", ""));
    not_found(&upgrade_request(PATH, "").replace("Host: example.com", "Host: example.org"));
    not_found("GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n");
    not_found(&upgrade_request(PATH, "").replace("Upgrade: websocket\r\n", ""));
    not_found(
        &upgrade_request(PATH, "").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
    );
    let got = answer_to(
        server,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http\r\n\r\n",
    );
    assert!(got.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{got:?}");
    let got = answer_to(
        server,
        upgrade_request(PATH, "Sec-WebSocket-Protocol: not base64!\r\n").as_bytes(),
    );
    assert!(got.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{got:?}");
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

#[test]
fn refused_requests_go_to_the_fallback_when_there_is_one() {
    let (site, seen) = http_site("the real site");
    let mut settings = users();
    settings["fallback"] = json!(site.to_string());
    let (handle, server) = vless_ws(settings);
    let request = "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let got = answer_to(server, request.as_bytes());
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 OK") && text.ends_with("the real site"),
        "{text}"
    );
    assert_eq!(seen.lock().unwrap().last().unwrap(), request.as_bytes());
    handle.stop(Duration::from_secs(1));
}

/// Upgrades a connection (checking the `101` and its accept key); returns the stream.
fn upgraded(server: SocketAddr, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(upgrade_request(PATH, extra).as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    s
}

/// Checks that the server closes `s` within a second, having sent nothing more.
fn assert_closed_at_once(mut s: TcpStream, what: &str) {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: {n} bytes came back"),
        Err(e) => panic!("{what}: not closed: {e}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{what}: closed late"
    );
}

#[test]
fn bad_frames_after_the_upgrade_close_the_connection() {
    let (echo, accepted) = counting_echo();
    let (handle, server) = vless_ws(users());
    let request = vless_request(echo);
    // Unmasked: a server's frame, not a client's.
    let mut unmasked = vec![0x82, request.len() as u8];
    unmasked.extend_from_slice(&request);
    // A frame header claiming 2 MiB, over the 1 MiB limit.
    let mut oversize = vec![0x82, 0xFF];
    oversize.extend_from_slice(&(2u64 << 20).to_be_bytes());
    oversize.extend_from_slice(&MASK);
    oversize.extend_from_slice(&[0; 1024]);
    // Reserved bits and an unknown opcode.
    let garbage = b"\xf3\xfa random garbage that is no frame at all".to_vec();
    // A control frame over 125 bytes.
    let mut long_ping = Vec::new();
    client_frame(OP_PING, true, MASK, &[7; 126], &mut long_ping);
    for (what, bytes) in [
        ("unmasked", unmasked),
        ("oversize", oversize),
        ("garbage", garbage),
        ("long ping", long_ping),
    ] {
        let mut s = upgraded(server, "");
        s.write_all(&bytes).unwrap();
        assert_closed_at_once(s, what);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "nothing is forwarded");
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

fn vless_request(target: SocketAddr) -> Vec<u8> {
    let command = Command::Tcp(TargetAddr::Ip(target));
    let req = proto::vless::ClientRequest {
        uuid: proto::vless::parse_user_id(UUID).unwrap(),
        flow: "",
        command: &command,
    };
    let mut out = vec![0u8; req.encoded_len()];
    let n = req.encode(&mut out);
    out.truncate(n);
    out
}

/// Reads one unmasked server frame: (opcode, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    assert_eq!(head[0] & 0x80, 0x80, "FIN");
    (head[0] & 0x0F, payload)
}

/// Reads data frames until `n` payload bytes came.
fn read_data(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let (op, payload) = read_frame(s);
        assert_eq!(op, OP_BINARY);
        got.extend_from_slice(&payload);
    }
    got
}

#[test]
fn early_data_split_frames_ping_and_close() {
    let echo = tcp_echo();
    let (handle, server) = vless_ws(users());
    // The VLESS request and a first payload go as early data (base64url, no padding).
    let mut early = vless_request(echo);
    early.extend_from_slice(b"early ");
    let header = format!("Sec-WebSocket-Protocol: {}\r\n", base64_url(&early));
    let mut s = upgraded(server, &header);
    // The VLESS response header (version, no addons) comes first, then the echo.
    let got = read_data(&mut s, 2 + 6);
    assert_eq!(&got, b"\x00\x00early ");
    // A message in two fragments, written a byte at a time, with a ping between them.
    let mut wire = Vec::new();
    client_frame(OP_BINARY, false, MASK, b"frag", &mut wire);
    client_frame(OP_PING, true, MASK, b"still there?", &mut wire);
    client_frame(0x0, true, MASK, b"mented", &mut wire);
    for b in &wire {
        s.write_all(std::slice::from_ref(b)).unwrap();
    }
    let mut data = Vec::new();
    let mut pong = None;
    while data.len() < 10 || pong.is_none() {
        match read_frame(&mut s) {
            (OP_BINARY, p) => data.extend_from_slice(&p),
            (0xA, p) => pong = Some(p),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(data, b"fragmented");
    assert_eq!(pong.unwrap(), b"still there?");
    // A close with status 1000 is answered with the same, then the connection ends.
    let mut close = Vec::new();
    client_frame(OP_CLOSE, true, MASK, &1000u16.to_be_bytes(), &mut close);
    s.write_all(&close).unwrap();
    let (op, payload) = read_frame(&mut s);
    assert_eq!(
        (op, payload.as_slice()),
        (OP_CLOSE, &1000u16.to_be_bytes()[..])
    );
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{} bytes after the close", rest.len());
    assert_connections_freed(&handle);
    let t = user_traffic(&handle, "u");
    assert_eq!((t.uplink, t.downlink), (16, 16));
    handle.stop(Duration::from_secs(1));
}

fn base64_url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn removing_a_user_closes_their_websocket_connection_within_a_second() {
    let echo = tcp_echo();
    let (handle, server) = vless_ws(users());
    let mut early = vless_request(echo);
    early.extend_from_slice(b"ping");
    let mut s = upgraded(
        server,
        &format!("Sec-WebSocket-Protocol: {}\r\n", base64_url(&early)),
    );
    assert_eq!(read_data(&mut s, 6), b"\0\0ping");
    let started = Instant::now();
    assert_eq!(handle.remove_users(&["u".into()]).unwrap(), 1);
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{n} bytes instead of a close"),
        Err(e) => panic!("not closed within a second: {e}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

#[test]
fn an_idle_websocket_connection_closes_at_the_idle_timeout() {
    let echo = tcp_echo();
    let handle = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "timeouts": {"idle_secs": 1},
        "inbounds": [{"tag": "in", "listen": "127.0.0.1:0", "network": ["tcp"],
                      "protocol": "vless", "settings": users(),
                      "ws": {"path": PATH}}],
    }));
    let server = handle.local_addr("in").unwrap();
    let mut s = upgraded(server, "");
    let mut wire = Vec::new();
    let mut request = vless_request(echo);
    request.extend_from_slice(b"ping");
    client_frame(OP_BINARY, true, MASK, &request, &mut wire);
    s.write_all(&wire).unwrap();
    assert_eq!(read_data(&mut s, 6), b"\0\0ping");
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    // The echo half-closes after the relay closes our side; a close frame may come first.
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed at the idle timeout: {e}"),
    }
    assert!(
        rest.is_empty() || rest == [0x88, 0x02, 0x03, 0xE8],
        "{rest:?} after the idle timeout"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}
