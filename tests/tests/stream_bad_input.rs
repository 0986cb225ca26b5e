//! Bad input against VLESS, Trojan and VMess inbounds without a fallback: whatever a prober
//! sends (garbage, a truncated header, a wrong UUID or password, a replayed or stale VMess auth
//! id), it gets no byte back and the connection closes at the handshake deadline; nothing is
//! forwarded, and the connection's state is freed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::*;
use proto::vless::Command;
use proto::TargetAddr;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(2);
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const OTHER_UUID: &str = "0c4d7b3a-7b44-4c43-8d0b-4a1e3a2e9f10";
const PASSWORD: &str = "secret";

struct Server {
    handle: engine::Handle,
    vless: SocketAddr,
    trojan: SocketAddr,
    vmess: SocketAddr,
}

fn server() -> Server {
    let inbound = |tag: &str, protocol: &str, settings| {
        json!({"tag": tag, "listen": "127.0.0.1:0", "network": ["tcp"],
               "protocol": protocol, "settings": settings})
    };
    let handle = start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "timeouts": {"handshake_secs": DEADLINE.as_secs()},
        "inbounds": [
            inbound("vless", "vless", json!({"users": [{"name": "u", "id": UUID}]})),
            inbound("trojan", "trojan", json!({"users": [{"name": "u", "password": PASSWORD}]})),
            inbound("vmess", "vmess", json!({"users": [{"name": "u", "id": UUID}]})),
        ],
    }));
    Server {
        vless: handle.local_addr("vless").unwrap(),
        trojan: handle.local_addr("trojan").unwrap(),
        vmess: handle.local_addr("vmess").unwrap(),
        handle,
    }
}

impl Server {
    fn all(&self) -> [SocketAddr; 3] {
        [self.vless, self.trojan, self.vmess]
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn uuid(text: &str) -> [u8; 16] {
    proto::vless::parse_user_id(text).unwrap()
}

fn vless_request(id: &str, target: SocketAddr) -> Vec<u8> {
    let command = Command::Tcp(TargetAddr::Ip(target));
    let req = proto::vless::ClientRequest {
        uuid: uuid(id),
        flow: "",
        command: &command,
    };
    let mut out = vec![0u8; req.encoded_len()];
    let n = req.encode(&mut out);
    out.truncate(n);
    out.extend_from_slice(b"ping");
    out
}

fn trojan_request(password: &str, target: SocketAddr) -> Vec<u8> {
    let mut out = vec![0u8; proto::trojan::MAX_HEADER_LEN];
    let n = proto::trojan::encode_request(
        &proto::trojan::password_hash(password),
        proto::trojan::Command::Connect,
        &TargetAddr::Ip(target),
        &mut out,
    );
    out.truncate(n);
    out.extend_from_slice(b"ping");
    out
}

fn vmess_request(id: &str, target: SocketAddr, at: u64) -> Vec<u8> {
    let command = Command::Tcp(TargetAddr::Ip(target));
    let req = proto::vmess::ClientRequest {
        cmd_key: proto::vmess::cmd_key(&uuid(id)),
        command: &command,
        security: proto::vmess::Security::Aes128Gcm,
        options: proto::vmess::option::CHUNK_STREAM | proto::vmess::option::CHUNK_MASKING,
        key: rand::random(),
        iv: rand::random(),
        response_auth: rand::random(),
        padding: 3,
        auth_random: rand::random(),
        nonce: rand::random(),
    };
    let mut out = vec![0u8; req.encoded_len() + 256];
    let (n, mut sealer, _) = req.encode(at, &mut out);
    out.truncate(n);
    // One body chunk carrying "ping".
    let head = sealer.prefix_len();
    let mut chunk = vec![0u8; head + 4 + proto::vmess::SEAL_TAILROOM];
    chunk[head..head + 4].copy_from_slice(b"ping");
    let frame = sealer.seal(&mut chunk, head..head + 4);
    out.extend_from_slice(&chunk[frame]);
    out
}

/// A genuine request gets the echo's answer (so the bad ones below fail for their reason).
fn assert_relayed(addr: SocketAddr, wire: &[u8]) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(wire).unwrap();
    let mut buf = [0u8; 256];
    assert!(
        s.read(&mut buf).unwrap() > 0,
        "no answer to a genuine request"
    );
}

#[test]
fn random_bytes() {
    let srv = server();
    // A first byte that is neither VLESS version 0 nor a lowercase hex digit.
    let mut garbage: Vec<u8> = (0..2000).map(|_| rand::random::<u8>()).collect();
    garbage[0] = 0xff;
    for addr in srv.all() {
        assert_silent_until(addr, &garbage, DEADLINE);
    }
    assert_connections_freed(&srv.handle);
}

#[test]
fn truncated_headers() {
    let srv = server();
    let (echo, accepted) = counting_echo();
    assert_silent_until(srv.vless, &vless_request(UUID, echo)[..20], DEADLINE);
    assert_silent_until(srv.trojan, &trojan_request(PASSWORD, echo)[..60], DEADLINE);
    assert_silent_until(srv.vmess, &vmess_request(UUID, echo, now())[..40], DEADLINE);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "nothing may be forwarded"
    );
    assert_connections_freed(&srv.handle);
}

#[test]
fn wrong_credentials() {
    let srv = server();
    let (echo, accepted) = counting_echo();
    assert_silent_until(srv.vless, &vless_request(OTHER_UUID, echo), DEADLINE);
    assert_silent_until(srv.trojan, &trojan_request("wrong", echo), DEADLINE);
    assert_silent_until(srv.vmess, &vmess_request(OTHER_UUID, echo, now()), DEADLINE);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "nothing may be forwarded"
    );
    // The right ones work.
    assert_relayed(srv.vless, &vless_request(UUID, echo));
    assert_relayed(srv.trojan, &trojan_request(PASSWORD, echo));
    assert_relayed(srv.vmess, &vmess_request(UUID, echo, now()));
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[test]
fn replayed_vmess_auth_id() {
    let srv = server();
    let (echo, accepted) = counting_echo();
    let wire = vmess_request(UUID, echo, now());
    assert_relayed(srv.vmess, &wire);
    assert_silent_until(srv.vmess, &wire, DEADLINE);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the replay must not reach the echo"
    );
    assert_connections_freed(&srv.handle);
}

#[test]
fn stale_vmess_timestamp() {
    let srv = server();
    let (echo, accepted) = counting_echo();
    assert_silent_until(srv.vmess, &vmess_request(UUID, echo, now() - 200), DEADLINE);
    assert_silent_until(srv.vmess, &vmess_request(UUID, echo, now() + 200), DEADLINE);
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
    assert_connections_freed(&srv.handle);
}

#[test]
fn engine_serves_after_bad_input() {
    let srv = server();
    let (echo, _) = counting_echo();
    for addr in srv.all() {
        for _ in 0..10 {
            let mut s = TcpStream::connect(addr).unwrap();
            let junk: Vec<u8> = (0..300).map(|_| rand::random::<u8>()).collect();
            s.write_all(&junk).unwrap();
        }
    }
    assert_relayed(srv.vless, &vless_request(UUID, echo));
    assert_relayed(srv.trojan, &trojan_request(PASSWORD, echo));
    assert_relayed(srv.vmess, &vmess_request(UUID, echo, now()));
}
