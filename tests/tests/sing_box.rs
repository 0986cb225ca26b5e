//! VLESS, VMess and Trojan interop with sing-box as the client (over TLS, our self-signed
//! certificate): 16 MiB each way over TCP and over UDP through our server to loopback echoes,
//! every byte checked. sing-box is told to send UDP the plain way of each protocol (VLESS
//! length-prefixed packets, not XUDP).

use e2e::*;
use serde_json::json;

const BULK: usize = 16 << 20;
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const PASSWORD: &str = "correct horse battery staple";

fn tls() -> serde_json::Value {
    json!({"enabled": true, "server_name": "localhost", "insecure": true})
}

fn tcp_and_udp(protocol: &str, settings: serde_json::Value, outbound: serde_json::Value) {
    let (handle, server) = engine_with_inbound(protocol, settings, true);
    let mut outbound = outbound;
    outbound["server"] = json!("127.0.0.1");
    outbound["server_port"] = json!(server.port());
    outbound["tls"] = tls();
    let (mut child, socks) = sing_box_client(outbound);
    let echo = tcp_echo();
    let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    echo_transfer(stream, BULK, 1, Ending::AfterEcho)
        .unwrap_or_else(|e| panic!("{protocol} TCP: {e}"));
    assert_eq!(
        settled_traffic(&handle, "u", (BULK as u64, BULK as u64)),
        (BULK as u64, BULK as u64),
        "{protocol} TCP counters"
    );
    let uecho = udp_echo();
    let assoc = socks5_udp(socks).expect("SOCKS5 UDP ASSOCIATE");
    udp_echo_transfer(&assoc, uecho, BULK, 1200, 2)
        .unwrap_or_else(|e| panic!("{protocol} UDP: {e}"));
    assert_traffic_at_least(&handle, "u", 2 * BULK as u64, 2 * BULK as u64);
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}

#[test]
fn sing_box_vless_tls() {
    tcp_and_udp(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        json!({"type": "vless", "uuid": UUID, "packet_encoding": ""}),
    );
}

/// sing-box's default UDP for VLESS: XUDP, as Mux.Cool sessions (command 3).
#[test]
fn sing_box_vless_xudp_tls() {
    tcp_and_udp(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        json!({"type": "vless", "uuid": UUID, "packet_encoding": "xudp"}),
    );
}

#[test]
fn sing_box_vmess_tls() {
    tcp_and_udp(
        "vmess",
        json!({"users": [{"name": "u", "id": UUID}]}),
        json!({"type": "vmess", "uuid": UUID, "security": "aes-128-gcm", "alter_id": 0,
               "packet_encoding": ""}),
    );
}

#[test]
fn sing_box_trojan_tls() {
    tcp_and_udp(
        "trojan",
        json!({"users": [{"name": "u", "password": PASSWORD}]}),
        json!({"type": "trojan", "password": PASSWORD}),
    );
}

/// VMess with the options sing-box can turn on: global padding and authenticated length.
#[test]
fn sing_box_vmess_chacha20_padding_authenticated_length_tls() {
    tcp_and_udp(
        "vmess",
        json!({"users": [{"name": "u", "id": UUID}]}),
        json!({"type": "vmess", "uuid": UUID, "security": "chacha20-poly1305", "alter_id": 0,
               "global_padding": true, "authenticated_length": true, "packet_encoding": ""}),
    );
}
