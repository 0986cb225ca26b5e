//! The idle timeout of TCP relays: a connection with no byte relayed in either direction for
//! `timeouts.idle_secs` is closed, and one that keeps moving bytes, in one direction only, is
//! not.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use e2e::{assert_connections_freed, start_engine, tcp_echo, SsClient};
use proto::shadowsocks::Method;
use proto::vless::{parse_user_id, ClientRequest, Command};
use proto::TargetAddr;
use serde_json::json;

const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const SS_KEY: &str = "idle-timeout-test-password";

/// The idle timeout of the tests that wait for it to close a connection.
const IDLE_SECS: u64 = 1;
/// The idle timeout of the tests that keep a connection busy: long enough that a test thread
/// descheduled for a while on a loaded machine does not leave a gap that long.
const BUSY_IDLE_SECS: u64 = 2;

fn engine(
    protocol: &str,
    settings: serde_json::Value,
    idle_secs: u64,
) -> (engine::Handle, SocketAddr) {
    let handle = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "timeouts": {"idle_secs": idle_secs},
        "inbounds": [{"tag": "in", "listen": "127.0.0.1:0", "network": ["tcp"],
                      "protocol": protocol, "settings": settings}],
    }));
    let addr = handle.local_addr("in").unwrap();
    (handle, addr)
}

fn ss_engine(idle_secs: u64) -> (engine::Handle, SocketAddr) {
    engine(
        "shadowsocks",
        json!({"method": "aes-128-gcm", "users": [{"name": "u", "password": SS_KEY}]}),
        idle_secs,
    )
}

fn vless_engine(idle_secs: u64) -> (engine::Handle, SocketAddr) {
    engine(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        idle_secs,
    )
}

/// A byte every 200 ms for more than twice [`BUSY_IDLE_SECS`]: never idle for that long.
const TRICKLE: usize = (BUSY_IDLE_SECS as usize * 5) * 2 + 2;

/// A VLESS connection to `target` with `first` as its first payload. The server sends its
/// response header in front of the first bytes back, so an echo's answer starts with it.
fn vless_connect(server: SocketAddr, target: SocketAddr, first: &[u8]) -> TcpStream {
    let command = Command::Tcp(TargetAddr::Ip(target));
    let req = ClientRequest {
        uuid: parse_user_id(UUID).unwrap(),
        flow: "",
        command: &command,
    };
    let mut out = vec![0u8; req.encoded_len()];
    let n = req.encode(&mut out);
    out.truncate(n);
    out.extend_from_slice(first);
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&out).unwrap();
    s
}

/// Reads until the server closes; fails if data comes or nothing happens within 4 s.
fn expect_closed(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{n} bytes instead of a close"),
        Err(e) => panic!("not closed at the idle timeout: {e}"),
    }
}

#[test]
fn an_idle_shadowsocks_connection_closes() {
    let echo = tcp_echo();
    let (handle, server) = ss_engine(IDLE_SECS);
    let mut c = SsClient::connect(server, Method::Aes128Gcm, SS_KEY, None, echo, b"ping").unwrap();
    assert_eq!(c.recv_exact(4).unwrap(), b"ping");
    let started = Instant::now();
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(4)))
        .unwrap();
    c.expect_closed().unwrap();
    // Closed by the idle timer, not at once.
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

#[test]
fn an_idle_vless_connection_closes() {
    let echo = tcp_echo();
    let (handle, server) = vless_engine(IDLE_SECS);
    let mut s = vless_connect(server, echo, b"ping");
    let mut b = [0u8; 6];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"\0\0ping", "response header, then the echo");
    let started = Instant::now();
    expect_closed(&mut s);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

/// A destination that only receives: it reads and counts, never answers.
fn sink() -> (SocketAddr, std::sync::mpsc::Receiver<usize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut total = 0;
        let mut b = [0u8; 4096];
        while let Ok(n) = s.read(&mut b) {
            if n == 0 {
                break;
            }
            total += n;
        }
        let _ = tx.send(total);
    });
    (addr, rx)
}

#[test]
fn uplink_only_traffic_keeps_a_vless_connection_open() {
    let (target, received) = sink();
    let (handle, server) = vless_engine(BUSY_IDLE_SECS);
    let mut s = vless_connect(server, target, b"");
    let mut sent = 0;
    for _ in 0..TRICKLE {
        s.write_all(b"x").unwrap();
        sent += 1;
        thread::sleep(Duration::from_millis(200));
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let got = received.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got, sent, "every byte reached the destination");
    handle.stop(Duration::from_secs(1));
}

#[test]
fn uplink_only_traffic_keeps_a_shadowsocks_connection_open() {
    let (target, received) = sink();
    let (handle, server) = ss_engine(BUSY_IDLE_SECS);
    let mut c = SsClient::connect(server, Method::Aes128Gcm, SS_KEY, None, target, b"").unwrap();
    let mut sent = 0;
    for _ in 0..TRICKLE {
        c.send(b"x").unwrap();
        sent += 1;
        thread::sleep(Duration::from_millis(200));
    }
    c.stream().shutdown(std::net::Shutdown::Write).unwrap();
    let got = received.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(got, sent, "every byte reached the destination");
    handle.stop(Duration::from_secs(1));
}
