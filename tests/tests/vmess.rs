//! VMess AEAD interop: Debian's v2ray 4.34 as the client with each body security it offers
//! (aes-128-gcm, chacha20-poly1305, none), over TCP and TLS, through our server to a loopback
//! echo and back: 16 MiB each way over TCP and over UDP, every byte checked.

use e2e::*;
use serde_json::json;

const BULK: usize = 16 << 20;
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";

fn tcp_and_udp(security: &str, tls: bool) {
    let (handle, server) =
        engine_with_inbound("vmess", json!({"users": [{"name": "u", "id": UUID}]}), tls);
    let (mut child, socks) = v2ray_client(json!({
        "protocol": "vmess",
        "settings": {"vnext": [{"address": "127.0.0.1", "port": server.port(),
                                "users": [{"id": UUID, "alterId": 0, "security": security}]}]},
        "streamSettings": v2ray_stream(tls),
    }));
    let echo = tcp_echo();
    let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    echo_transfer(stream, BULK, 1, Ending::AfterEcho)
        .unwrap_or_else(|e| panic!("{security} TCP: {e}"));
    assert_eq!(
        settled_traffic(&handle, "u", (BULK as u64, BULK as u64)),
        (BULK as u64, BULK as u64),
        "{security} TCP counters"
    );
    let uecho = udp_echo();
    let assoc = socks5_udp(socks).expect("SOCKS5 UDP ASSOCIATE");
    udp_echo_transfer(&assoc, uecho, BULK, 1200, 2)
        .unwrap_or_else(|e| panic!("{security} UDP: {e}"));
    assert_traffic_at_least(&handle, "u", 2 * BULK as u64, 2 * BULK as u64);
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}

#[test]
fn v2ray_vmess_aes_128_gcm_tcp() {
    tcp_and_udp("aes-128-gcm", false);
}

#[test]
fn v2ray_vmess_chacha20_poly1305_tcp() {
    tcp_and_udp("chacha20-poly1305", false);
}

#[test]
fn v2ray_vmess_none_tcp() {
    tcp_and_udp("none", false);
}

#[test]
fn v2ray_vmess_aes_128_gcm_tls() {
    tcp_and_udp("aes-128-gcm", true);
}

#[test]
fn v2ray_vmess_none_tls() {
    tcp_and_udp("none", true);
}

/// v2ray with Mux.Cool on over VMess (aes-128-gcm, TLS): streams as sessions of one
/// connection, parallel transfers and UDP through it.
#[test]
fn v2ray_vmess_mux_tls() {
    let (handle, server) =
        engine_with_inbound("vmess", json!({"users": [{"name": "u", "id": UUID}]}), true);
    let (mut child, socks) = v2ray_client(json!({
        "protocol": "vmess",
        "settings": {"vnext": [{"address": "127.0.0.1", "port": server.port(),
                                "users": [{"id": UUID, "alterId": 0, "security": "aes-128-gcm"}]}]},
        "streamSettings": v2ray_stream(true),
        "mux": {"enabled": true, "concurrency": 8},
    }));
    multiplexed_transfers(&handle, socks, BULK);
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}
