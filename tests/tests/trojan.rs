//! Trojan interop over TLS (our self-signed certificate): Debian's trojan-gfw 1.16 and v2ray
//! 4.34 as clients, through our server to a loopback echo and back, 16 MiB each way, every
//! byte checked: over TCP with both, over UDP (UDP ASSOCIATE) with trojan-gfw.
//!
//! v2ray 4.34's Trojan client cannot carry UDP faithfully: its packet writer merges queued
//! datagrams into one Trojan packet of up to 8 KiB and then copies it into a 2 KiB buffer, so
//! the length it announces and the bytes it sends disagree (fixed in later v2fly releases).
//! UDP is therefore tested with trojan-gfw only.

use std::net::SocketAddr;
use std::process::Command;

use e2e::*;
use serde_json::json;

const BULK: usize = 16 << 20;
const PASSWORD: &str = "correct horse battery staple";

fn server() -> (engine::Handle, SocketAddr) {
    engine_with_inbound(
        "trojan",
        json!({"users": [{"name": "u", "password": PASSWORD}]}),
        true,
    )
}

/// trojan-gfw in client mode: a SOCKS5 proxy (TCP and UDP) on a free loopback port.
fn trojan_client(server: SocketAddr) -> (ChildGuard, SocketAddr) {
    let port = free_port();
    let config = json!({
        "run_type": "client",
        "local_addr": "127.0.0.1", "local_port": port,
        "remote_addr": "127.0.0.1", "remote_port": server.port(),
        "password": [PASSWORD],
        "log_level": 2,
        "ssl": {"verify": false, "verify_hostname": false, "sni": "localhost"},
    });
    let path = temp_file("trojan.json", &config.to_string());
    let mut child = ChildGuard::spawn("trojan", Command::new(peer("trojan")).arg("-c").arg(&path));
    let socks: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for_port(socks, &mut child);
    (child, socks)
}

fn tcp(handle: &engine::Handle, socks: SocketAddr, ending: Ending) {
    let echo = tcp_echo();
    let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    echo_transfer(stream, BULK, 1, ending).unwrap_or_else(|e| panic!("TCP: {e}"));
    assert_eq!(
        settled_traffic(handle, "u", (BULK as u64, BULK as u64)),
        (BULK as u64, BULK as u64),
        "TCP counters"
    );
}

fn udp(handle: &engine::Handle, socks: SocketAddr) {
    let uecho = udp_echo();
    let assoc = socks5_udp(socks).expect("SOCKS5 UDP ASSOCIATE");
    udp_echo_transfer(&assoc, uecho, BULK, 1200, 2).unwrap_or_else(|e| panic!("UDP: {e}"));
    assert_traffic_at_least(handle, "u", 2 * BULK as u64, 2 * BULK as u64);
}

#[test]
fn trojan_gfw_tls() {
    let (handle, server) = server();
    let (mut child, socks) = trojan_client(server);
    tcp(&handle, socks, Ending::AfterEcho);
    udp(&handle, socks);
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}

#[test]
fn v2ray_trojan_tls() {
    let (handle, server) = server();
    let (mut child, socks) = v2ray_client(json!({
        "protocol": "trojan",
        "settings": {"servers": [{"address": "127.0.0.1", "port": server.port(), "password": PASSWORD}]},
        "streamSettings": v2ray_stream(true),
    }));
    tcp(&handle, socks, Ending::AfterEcho);
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}
