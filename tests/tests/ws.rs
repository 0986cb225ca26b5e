//! The WebSocket transport with real clients: Debian's v2ray 4.34 (VMess with each body
//! security, VLESS, Trojan) and sing-box (VLESS, VMess, Trojan, with early data in
//! `Sec-WebSocket-Protocol`), over WebSocket inside TLS (our self-signed certificate) and over
//! plain TCP: 16 MiB each way over TCP and over UDP (v2ray's Trojan: TCP only, see trojan.rs)
//! through our server to loopback echoes, every byte checked, the user's TCP counters exact.

use std::net::SocketAddr;

use e2e::*;
use serde_json::json;

const BULK: usize = 16 << 20;
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const PASSWORD: &str = "correct horse battery staple";
const PATH: &str = "/ws-tunnel";

/// Moves [`BULK`] bytes each way over TCP through the SOCKS5 proxy at `socks`; the user's
/// counters must be exact.
fn tcp(handle: &engine::Handle, socks: SocketAddr, what: &str) {
    let echo = tcp_echo();
    let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    echo_transfer(stream, BULK, 1, Ending::AfterEcho).unwrap_or_else(|e| panic!("{what} TCP: {e}"));
    assert_eq!(
        settled_traffic(handle, "u", (BULK as u64, BULK as u64)),
        (BULK as u64, BULK as u64),
        "{what} TCP counters"
    );
}

/// [`tcp`], then [`BULK`] bytes each way over UDP.
fn tcp_and_udp(handle: &engine::Handle, socks: SocketAddr, what: &str) {
    tcp(handle, socks, what);
    let uecho = udp_echo();
    let assoc = socks5_udp(socks).expect("SOCKS5 UDP ASSOCIATE");
    udp_echo_transfer(&assoc, uecho, BULK, 1200, 2).unwrap_or_else(|e| panic!("{what} UDP: {e}"));
    assert_traffic_at_least(handle, "u", 2 * BULK as u64, 2 * BULK as u64);
}

/// v2ray 4.34 as the client of our `protocol` inbound (`settings`) over WebSocket inside TLS,
/// `outbound` being v2ray's protocol and settings with the server's port filled in by
/// `port`; the inbound checks the `Host` header. UDP too when `udp`.
fn v2ray_ws(
    protocol: &str,
    settings: serde_json::Value,
    outbound: impl FnOnce(u16) -> serde_json::Value,
    udp: bool,
) {
    let (handle, server) = engine_with_transport(
        protocol,
        settings,
        true,
        Some(json!({"path": PATH, "host": "localhost"})),
    );
    let mut outbound = outbound(server.port());
    outbound["streamSettings"] = json!({"network": "ws", "security": "tls",
        "tlsSettings": {"serverName": "localhost", "allowInsecure": true},
        "wsSettings": {"path": PATH, "headers": {"Host": "localhost"}}});
    let (mut child, socks) = v2ray_client(outbound);
    if udp {
        tcp_and_udp(&handle, socks, protocol);
    } else {
        tcp(&handle, socks, protocol);
    }
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}

fn v2ray_vmess(security: &str) {
    v2ray_ws(
        "vmess",
        json!({"users": [{"name": "u", "id": UUID}]}),
        |port| {
            json!({"protocol": "vmess",
               "settings": {"vnext": [{"address": "127.0.0.1", "port": port,
                   "users": [{"id": UUID, "alterId": 0, "security": security}]}]}})
        },
        true,
    );
}

#[test]
fn v2ray_vmess_aes_128_gcm_ws_tls() {
    v2ray_vmess("aes-128-gcm");
}

#[test]
fn v2ray_vmess_chacha20_poly1305_ws_tls() {
    v2ray_vmess("chacha20-poly1305");
}

#[test]
fn v2ray_vmess_none_ws_tls() {
    v2ray_vmess("none");
}

#[test]
fn v2ray_vless_ws_tls() {
    v2ray_ws(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        |port| {
            json!({"protocol": "vless",
               "settings": {"vnext": [{"address": "127.0.0.1", "port": port,
                   "users": [{"id": UUID, "encryption": "none"}]}]}})
        },
        true,
    );
}

/// TCP only: v2ray 4.34's Trojan client merges queued UDP packets (see trojan.rs).
#[test]
fn v2ray_trojan_ws_tls() {
    v2ray_ws(
        "trojan",
        json!({"users": [{"name": "u", "password": PASSWORD}]}),
        |port| {
            json!({"protocol": "trojan",
               "settings": {"servers": [{"address": "127.0.0.1", "port": port,
                   "password": PASSWORD}]}})
        },
        false,
    );
}

/// How a client sends early data.
#[derive(Clone, Copy, PartialEq)]
enum Early {
    Off,
    /// In `Sec-WebSocket-Protocol` (Xray's way).
    Header,
    /// At the end of the path (sing-box without a header name).
    Path,
    /// In `Sec-WebSocket-Protocol`, up to 4096 bytes, to an inbound whose `max_early_data`
    /// (what its links advertise) is 64: accepted anyway, as Xray and sing-box servers do.
    HeaderOverAdvertised,
}

/// sing-box as the client of `protocol` over WebSocket (inside TLS when `tls`), sending early
/// data as `early` says.
fn sing_box_ws(
    protocol: &str,
    settings: serde_json::Value,
    outbound: serde_json::Value,
    tls: bool,
    early: Early,
) {
    let max_early_data = match early {
        Early::Off => 0,
        Early::HeaderOverAdvertised => 64,
        Early::Header | Early::Path => 2048,
    };
    let (handle, server) = engine_with_transport(
        protocol,
        settings,
        tls,
        Some(json!({"path": PATH, "max_early_data": max_early_data})),
    );
    let mut outbound = outbound;
    outbound["server"] = json!("127.0.0.1");
    outbound["server_port"] = json!(server.port());
    if tls {
        outbound["tls"] = json!({"enabled": true, "server_name": "localhost", "insecure": true});
    }
    outbound["transport"] = match early {
        Early::Header => json!({"type": "ws", "path": PATH, "max_early_data": 2048,
               "early_data_header_name": "Sec-WebSocket-Protocol"}),
        Early::HeaderOverAdvertised => json!({"type": "ws", "path": PATH, "max_early_data": 4096,
               "early_data_header_name": "Sec-WebSocket-Protocol"}),
        Early::Path => json!({"type": "ws", "path": PATH, "max_early_data": 2048}),
        Early::Off => json!({"type": "ws", "path": PATH}),
    };
    let (mut child, socks) = sing_box_client(outbound);
    tcp_and_udp(&handle, socks, protocol);
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}

#[test]
fn sing_box_vless_ws_tls_early_data() {
    sing_box_ws(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        json!({"type": "vless", "uuid": UUID, "packet_encoding": ""}),
        true,
        Early::Header,
    );
}

/// A client configured for more early data than the inbound advertises (Xray's server, and
/// sing-box's, take any length): the first packets, VLESS header and payload, are well over
/// the inbound's 64 bytes.
#[test]
fn sing_box_vless_ws_tls_more_early_data_than_advertised() {
    sing_box_ws(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        json!({"type": "vless", "uuid": UUID, "packet_encoding": ""}),
        true,
        Early::HeaderOverAdvertised,
    );
}

#[test]
fn sing_box_vmess_ws_tls_early_data() {
    sing_box_ws(
        "vmess",
        json!({"users": [{"name": "u", "id": UUID}]}),
        json!({"type": "vmess", "uuid": UUID, "security": "aes-128-gcm", "alter_id": 0,
               "packet_encoding": ""}),
        true,
        Early::Header,
    );
}

#[test]
fn sing_box_trojan_ws_tls_early_data() {
    sing_box_ws(
        "trojan",
        json!({"users": [{"name": "u", "password": PASSWORD}]}),
        json!({"type": "trojan", "password": PASSWORD}),
        true,
        Early::Header,
    );
}

#[test]
fn sing_box_trojan_ws_tls() {
    sing_box_ws(
        "trojan",
        json!({"users": [{"name": "u", "password": PASSWORD}]}),
        json!({"type": "trojan", "password": PASSWORD}),
        true,
        Early::Off,
    );
}

/// Early data at the end of the path, and UDP as sing-box sends it by default (XUDP).
#[test]
fn sing_box_vless_ws_tls_early_data_in_path_xudp() {
    sing_box_ws(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        json!({"type": "vless", "uuid": UUID}),
        true,
        Early::Path,
    );
}

/// WebSocket over plain TCP (no TLS).
#[test]
fn sing_box_vless_ws_plain() {
    sing_box_ws(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        json!({"type": "vless", "uuid": UUID, "packet_encoding": ""}),
        false,
        Early::Header,
    );
}
