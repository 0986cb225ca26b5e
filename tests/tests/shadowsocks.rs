//! Shadowsocks interop: real third-party clients (shadowsocks-libev `ss-local`,
//! shadowsocks-rust `sslocal`) through our server to a loopback echo and back.
//!
//! Each case moves 64 MiB each way over TCP and over UDP and checks every byte. The multi-user
//! case runs three clients of three users on one port at once and checks that each user's
//! counters equal exactly the bytes that user moved.

use std::net::SocketAddr;
use std::process::Command;
use std::thread;

use e2e::*;
use serde_json::json;

const BULK: usize = 64 << 20;

#[derive(Clone, Copy)]
enum Client {
    Libev,
    Rust,
}

impl Client {
    /// shadowsocks-libev closes the whole connection on the first FIN; shadowsocks-rust
    /// carries half-closes.
    fn ending(self) -> Ending {
        match self {
            Client::Libev => Ending::AfterEcho,
            Client::Rust => Ending::HalfClose,
        }
    }

    /// Datagram size to test with: ss-local relays datagrams up to about one MTU by default.
    fn datagram(self) -> usize {
        match self {
            Client::Libev => 1200,
            Client::Rust => 16 * 1024,
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    // Tiny local encoder to keep the harness free of test-only dependencies.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A password for `method` for user number `i`: text for AEAD (2017), a PSK for 2022.
fn password(method: &str, i: u8) -> String {
    match method {
        "2022-blake3-aes-128-gcm" => b64(&[i + 1; 16]),
        m if m.starts_with("2022-") => b64(&[i + 1; 32]),
        _ => format!("password-{i}-of-{method}"),
    }
}

fn server_psk(method: &str) -> Option<String> {
    match method {
        "2022-blake3-aes-128-gcm" => Some(b64(&[0xA5; 16])),
        "2022-blake3-aes-256-gcm" => Some(b64(&[0xA5; 32])),
        _ => None,
    }
}

fn engine_for(method: &str, users: u8) -> (engine::Handle, SocketAddr) {
    let mut settings = json!({
        "method": method,
        "users": (0..users).map(|i| json!({"name": format!("user{i}"), "password": password(method, i)})).collect::<Vec<_>>(),
    });
    if let Some(psk) = server_psk(method) {
        settings["psk"] = json!(psk);
    }
    let handle = start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks", "settings": settings}],
    }));
    let addr = handle.local_addr("ss").unwrap();
    (handle, addr)
}

/// Starts a client for user `i`; returns it and its SOCKS5 address.
fn client(kind: Client, server: SocketAddr, method: &str, i: u8) -> (ChildGuard, SocketAddr) {
    let port = free_port();
    let local: SocketAddr = ([127, 0, 0, 1], port).into();
    let pw = match server_psk(method) {
        Some(psk) => format!("{psk}:{}", password(method, i)),
        None => password(method, i),
    };
    let mut child = match kind {
        Client::Libev => ChildGuard::spawn(
            "ss-local",
            Command::new(peer("ss-local"))
                .args(["-s", "127.0.0.1", "-p", &server.port().to_string()])
                .args(["-b", "127.0.0.1", "-l", &port.to_string()])
                .args(["-m", method, "-k", &pw, "-u", "-t", "60"]),
        ),
        Client::Rust => ChildGuard::spawn(
            "sslocal",
            Command::new(peer("sslocal"))
                .args(["-s", &server.to_string(), "-b", &local.to_string()])
                .args(["-m", method, "-k", &pw, "-U"]),
        ),
    };
    wait_for_port(local, &mut child);
    (child, local)
}

fn tcp_and_udp(kind: Client, method: &str) {
    let (handle, server) = engine_for(method, 1);
    let (mut child, socks) = client(kind, server, method, 0);
    let echo = tcp_echo();
    let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    echo_transfer(stream, BULK, 1, kind.ending()).unwrap_or_else(|e| panic!("{method} TCP: {e}"));
    // The last echo can reach the client a moment before the engine counts it: settle first.
    let bulk = BULK as u64;
    assert_eq!(
        settled_traffic(&handle, "user0", (bulk, bulk)),
        (bulk, bulk),
        "{method} TCP counters"
    );
    let t = user_traffic(&handle, "user0");

    let uecho = udp_echo();
    let assoc = socks5_udp(socks).expect("SOCKS5 UDP ASSOCIATE");
    let sent = udp_echo_transfer(&assoc, uecho, BULK, kind.datagram(), 2)
        .unwrap_or_else(|e| panic!("{method} UDP: {e}"));
    assert_traffic_at_least(&handle, "user0", t.uplink + bulk, t.downlink + bulk);
    let t2 = user_traffic(&handle, "user0");
    assert!(
        t2.uplink - t.uplink <= sent,
        "{method} UDP uplink counter: more than was sent"
    );
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}

macro_rules! cases {
    ($($name:ident: $kind:expr, $method:literal;)*) => {$(
        #[test]
        fn $name() {
            tcp_and_udp($kind, $method);
        }
    )*};
}

cases! {
    libev_aes_128_gcm: Client::Libev, "aes-128-gcm";
    libev_aes_256_gcm: Client::Libev, "aes-256-gcm";
    libev_chacha20_ietf_poly1305: Client::Libev, "chacha20-ietf-poly1305";
    rust_aes_128_gcm: Client::Rust, "aes-128-gcm";
    rust_aes_256_gcm: Client::Rust, "aes-256-gcm";
    rust_chacha20_ietf_poly1305: Client::Rust, "chacha20-ietf-poly1305";
    rust_2022_aes_128_gcm: Client::Rust, "2022-blake3-aes-128-gcm";
    rust_2022_aes_256_gcm: Client::Rust, "2022-blake3-aes-256-gcm";
    rust_2022_chacha20_poly1305: Client::Rust, "2022-blake3-chacha20-poly1305";
}

/// Three users on one port at once; each user's counters equal that user's bytes exactly.
fn three_users(kind: Client, method: &str) {
    let (handle, server) = engine_for(method, 3);
    let echo = tcp_echo();
    let sizes = [BULK, BULK / 2, BULK / 4 + 12345];
    let clients: Vec<_> = (0..3u8).map(|i| client(kind, server, method, i)).collect();
    let workers: Vec<_> = clients
        .iter()
        .zip(sizes)
        .enumerate()
        .map(|(i, ((_, socks), size))| {
            let socks = *socks;
            thread::spawn(move || {
                let s = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
                echo_transfer(s, size, 10 + i as u64, kind.ending())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{method}: {e}"));
    }
    for (i, size) in sizes.iter().enumerate() {
        let want = (*size as u64, *size as u64);
        assert_eq!(
            settled_traffic(&handle, &format!("user{i}"), want),
            want,
            "{method} user{i}"
        );
    }
    handle.stop(std::time::Duration::from_secs(1));
}

#[test]
fn three_users_one_port_2022_identity_headers() {
    three_users(Client::Rust, "2022-blake3-aes-256-gcm");
}

#[test]
fn three_users_one_port_aead_trial_decryption() {
    three_users(Client::Libev, "chacha20-ietf-poly1305");
}

#[test]
fn three_users_one_port_2022_chacha_trial_decryption() {
    three_users(Client::Rust, "2022-blake3-chacha20-poly1305");
}
