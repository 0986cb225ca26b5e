//! Bad input against a running engine: whatever a prober sends, it gets no byte back and the
//! connection closes at the same moment (the handshake deadline, or its own close), nothing is
//! forwarded, the engine keeps serving, and the connection's resources are freed.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::*;
use proto::shadowsocks::tcp::ClientRequest;
use proto::shadowsocks::udp::{UdpClient, UDP_HEADROOM};
use proto::shadowsocks::{Key, Method};
use proto::TargetAddr;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(2);
const PSK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const USER_2022: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const USER_2017: &str = "correct horse battery staple";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An echo server that counts the connections it accepted.
fn counting_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, count)
}

struct Server {
    handle: engine::Handle,
    ss2022: SocketAddr,
    ss2017: SocketAddr,
}

fn server() -> Server {
    let handle = start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "timeouts": {"handshake_secs": DEADLINE.as_secs()},
        "inbounds": [
            {"tag": "2022", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "shadowsocks",
             "settings": {"method": "2022-blake3-aes-256-gcm", "psk": PSK,
                          "users": [{"name": "u", "password": USER_2022}]}},
            {"tag": "2017", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "shadowsocks",
             "settings": {"method": "aes-256-gcm", "users": [{"name": "v", "password": USER_2017}]}},
        ],
    }));
    let ss2022 = handle.local_addr("2022").unwrap();
    let ss2017 = handle.local_addr("2017").unwrap();
    Server {
        handle,
        ss2022,
        ss2017,
    }
}

impl Server {
    fn open_connections(&self) -> u64 {
        self.handle
            .inbound_stats()
            .iter()
            .map(|i| i.traffic.open)
            .sum()
    }

    /// Waits until the engine holds no connection.
    fn assert_freed(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.open_connections() > 0 {
            assert!(Instant::now() < deadline, "connection state not freed");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends `bytes`, keeps the connection open, and checks the prober learns nothing: no byte
/// back, no close before the handshake deadline, a close soon after it.
fn assert_silent_until_deadline(addr: SocketAddr, bytes: &[u8]) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(bytes).unwrap();
    s.set_read_timeout(Some(DEADLINE - Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("closed early, after {:?}", start.elapsed()),
        Ok(n) => panic!("server answered {n} bytes to a bad handshake"),
        Err(e) => panic!("unexpected error before the deadline: {e}"),
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("server answered {n} bytes to a bad handshake"),
        Err(e) => panic!("no close after the deadline: {e}"),
    }
    let took = start.elapsed();
    assert!(
        took >= DEADLINE && took < DEADLINE + Duration::from_secs(2),
        "closed after {took:?}"
    );
}

fn request_2022(target: SocketAddr, ts: u64, padding: usize, user: &str) -> Vec<u8> {
    let m = Method::Blake3Aes256Gcm;
    let key = Key::from_password(m, user).unwrap();
    let ipsk = Key::from_password(m, PSK).unwrap();
    let salt: [u8; 32] = rand::random();
    let req = ClientRequest {
        method: m,
        key: &key,
        identity: Some(&ipsk),
        salt: &salt,
        target: &TargetAddr::Ip(target),
        padding,
    };
    let mut out = vec![0u8; 4096];
    let (n, _, _) = req.encode(b"ping", ts, &mut out);
    out.truncate(n);
    out
}

#[test]
fn random_bytes() {
    let srv = server();
    let garbage: Vec<u8> = (0..2000).map(|_| rand::random::<u8>()).collect();
    assert_silent_until_deadline(srv.ss2022, &garbage);
    assert_silent_until_deadline(srv.ss2017, &garbage);
    srv.assert_freed();
}

#[test]
fn truncated_salt() {
    let srv = server();
    assert_silent_until_deadline(srv.ss2022, &[7u8; 10]);
    assert_silent_until_deadline(srv.ss2017, &[7u8; 10]);
    srv.assert_freed();
}

#[test]
fn wrong_key() {
    let srv = server();
    let (echo, accepted) = counting_echo();
    let other = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";
    assert_silent_until_deadline(srv.ss2022, &request_2022(echo, now(), 0, other));
    let m = Method::Aes256Gcm;
    let key = Key::from_password(m, "wrong password").unwrap();
    let salt: [u8; 32] = rand::random();
    let req = ClientRequest {
        method: m,
        key: &key,
        identity: None,
        salt: &salt,
        target: &TargetAddr::Ip(echo),
        padding: 0,
    };
    let mut out = vec![0u8; 4096];
    let (n, _, _) = req.encode(b"ping", now(), &mut out);
    assert_silent_until_deadline(srv.ss2017, &out[..n]);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "nothing may be forwarded"
    );
    srv.assert_freed();
}

#[test]
fn replayed_salt() {
    let srv = server();
    let (echo, accepted) = counting_echo();
    let wire = request_2022(echo, now(), 0, USER_2022);
    // The genuine request is relayed.
    let mut s = TcpStream::connect(srv.ss2022).unwrap();
    s.write_all(&wire).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    assert!(
        s.read(&mut buf).unwrap() > 0,
        "genuine request gets a response"
    );
    drop(s);
    // The same bytes again are a replay.
    assert_silent_until_deadline(srv.ss2022, &wire);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the replay must not reach the destination"
    );
    srv.assert_freed();
}

#[test]
fn stale_timestamp() {
    let srv = server();
    let (echo, accepted) = counting_echo();
    assert_silent_until_deadline(srv.ss2022, &request_2022(echo, now() - 120, 0, USER_2022));
    assert_silent_until_deadline(srv.ss2022, &request_2022(echo, now() + 120, 0, USER_2022));
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    srv.assert_freed();
}

#[test]
fn oversize_length_field() {
    let srv = server();
    // AEAD (2017): a correctly sealed length chunk announcing 0x4000 (> 0x3FFF).
    let m = Method::Aes256Gcm;
    let key = Key::from_password(m, USER_2017).unwrap();
    let salt: [u8; 32] = rand::random();
    let wire = proto::fuzzing::forge_tcp_stream(m, &key, &salt, &[&0x4000u16.to_be_bytes()]);
    assert_silent_until_deadline(srv.ss2017, &wire);
    // 2022: padding longer than the 900 bytes SIP022 allows.
    let (echo, accepted) = counting_echo();
    assert_silent_until_deadline(srv.ss2022, &request_2022(echo, now(), 1000, USER_2022));
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    srv.assert_freed();
}

#[test]
fn client_stops_mid_header() {
    let srv = server();
    let (echo, _) = counting_echo();
    let wire = request_2022(echo, now(), 0, USER_2022);
    // Stalls: silence until the deadline, then a close.
    assert_silent_until_deadline(srv.ss2022, &wire[..40]);
    // Gives up: its close is answered by a close, and nothing is left behind.
    let mut s = TcpStream::connect(srv.ss2022).unwrap();
    s.write_all(&wire[..40]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    drop(s);
    srv.assert_freed();
}

#[test]
fn engine_serves_after_bad_input() {
    let srv = server();
    let (echo, _) = counting_echo();
    for _ in 0..20 {
        let mut s = TcpStream::connect(srv.ss2022).unwrap();
        let junk: Vec<u8> = (0..300).map(|_| rand::random::<u8>()).collect();
        s.write_all(&junk).unwrap();
    }
    let mut s = TcpStream::connect(srv.ss2022).unwrap();
    s.write_all(&request_2022(echo, now(), 0, USER_2022))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    assert!(s.read(&mut buf).unwrap() > 0);
}

/// A 2022 UDP packet replayed from other addresses reaches the destination once, whichever
/// worker the kernel hands each copy to (two workers here, 32 source addresses: without a
/// window shared across workers some copy lands on the worker that has not seen the session);
/// the client's next packet from a new address, a NAT rebinding, still goes through. Replays
/// after every session ended (quiet for `udp_session_secs`, 1 s here) but within the
/// timestamp window are caught too.
#[test]
fn udp_2022_replay_from_other_addresses() {
    let handle = start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "timeouts": {"udp_session_secs": 1},
        "inbounds": [
            {"tag": "2022", "listen": "127.0.0.1:0", "network": ["udp"], "protocol": "shadowsocks",
             "settings": {"method": "2022-blake3-aes-256-gcm", "psk": PSK,
                          "users": [{"name": "u", "password": USER_2022}]}},
        ],
    }));
    let server = handle.local_addr("2022").unwrap();
    // The destination counts the datagrams it gets.
    let target = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&received);
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while target.recv_from(&mut buf).is_ok() {
            r.fetch_add(1, Ordering::SeqCst);
        }
    });
    let m = Method::Blake3Aes256Gcm;
    let mut client = UdpClient::new(
        m,
        Key::from_password(m, USER_2022).unwrap(),
        Some(Key::from_password(m, PSK).unwrap()),
        rand::random(),
    );
    let mut packet = |payload: &[u8]| {
        let mut buf = vec![0u8; UDP_HEADROOM + payload.len() + 64];
        let end = UDP_HEADROOM + payload.len();
        buf[UDP_HEADROOM..end].copy_from_slice(payload);
        let range = client.encode(
            &mut buf,
            UDP_HEADROOM..end,
            &TargetAddr::Ip(target_addr),
            now(),
            &rand::random(),
        );
        buf[range].to_vec()
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while received.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the destination got no packet {n}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    };
    // Exactly `n` packets arrived, and no more after a moment for any still queued.
    let settled = |n: usize, what: &str| {
        wait_for(n);
        thread::sleep(Duration::from_millis(300));
        assert_eq!(received.load(Ordering::SeqCst), n, "{what}");
    };
    let first = packet(b"first");
    let genuine = UdpSocket::bind("127.0.0.1:0").unwrap();
    genuine.send_to(&first, server).unwrap();
    wait_for(1);
    let replayers: Vec<UdpSocket> = (0..32)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for r in &replayers {
        r.send_to(&first, server).unwrap();
    }
    // The client's next packet, from a new address (as after a NAT rebinding), goes through;
    // then a moment for copies still queued on either worker.
    let second = packet(b"second");
    let moved = UdpSocket::bind("127.0.0.1:0").unwrap();
    moved.send_to(&second, server).unwrap();
    settled(2, "a replayed packet reached the destination");

    // Every session ends (nothing open on the inbound); the windows are kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.inbound_stats()[0].traffic.open > 0 {
        assert!(Instant::now() < deadline, "the UDP sessions did not end");
        thread::sleep(Duration::from_millis(100));
    }
    for r in &replayers {
        r.send_to(&first, server).unwrap();
        r.send_to(&second, server).unwrap();
    }
    // A replay opens no session.
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        handle.inbound_stats()[0].traffic.open,
        0,
        "a replay opened a session"
    );
    let third = packet(b"third");
    moved.send_to(&third, server).unwrap();
    settled(
        3,
        "a packet replayed after its session ended reached the destination",
    );
    handle.stop(Duration::from_secs(1));
}
