//! Interop with shoes (cfal/shoes 0.3.2, a Rust multi-protocol proxy) as the client: VLESS and
//! VMess over TLS (TCP and UDP); VLESS, VMess and Trojan over WebSocket inside TLS; Trojan over
//! TLS and Shadowsocks, AEAD 2017 and 2022 (TCP only: shoes's Trojan client has no UDP, and
//! Shadowsocks UDP is proven with sslocal and ss-local). 16 MiB each way through our server to
//! loopback echoes, every byte checked, the user's counters exact for TCP. shoes runs a SOCKS5
//! server whose only route is our server.

use e2e::*;
use serde_json::json;

const BULK: usize = 16 << 20;
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const PASSWORD: &str = "correct horse battery staple";

/// `inner` wrapped in WebSocket on path `/ws`, then TLS.
fn over_ws_tls(inner: &str) -> String {
    let inner: String = inner.lines().map(|l| format!("    {l}\n")).collect();
    over_tls(&format!(
        "          type: websocket\n          matching_path: /ws\n          protocol:\n{inner}"
    ))
}

/// Through shoes configured with `proxy`: 16 MiB each way over TCP, then (with `udp`) over
/// UDP.
fn relay(protocol: &str, settings: serde_json::Value, tls: bool, proxy: &str, udp: bool) {
    relay_over(protocol, settings, tls, None, proxy, udp)
}

/// [`relay`], with the inbound behind WebSocket `ws` (the inbound's `ws` object) when given.
fn relay_over(
    protocol: &str,
    settings: serde_json::Value,
    tls: bool,
    ws: Option<serde_json::Value>,
    proxy: &str,
    udp: bool,
) {
    let (handle, server) = engine_with_transport(protocol, settings, tls, ws);
    let (mut child, socks) = shoes_client(server, proxy);
    let echo = tcp_echo();
    let stream = socks5_connect(socks, echo)
        .unwrap_or_else(|e| panic!("SOCKS5 CONNECT through shoes: {e}; {}", child.output()));
    echo_transfer(stream, BULK, 1, Ending::AfterEcho)
        .unwrap_or_else(|e| panic!("{protocol} through shoes: {e}"));
    assert_eq!(
        settled_traffic(&handle, "u", (BULK as u64, BULK as u64)),
        (BULK as u64, BULK as u64),
        "{protocol} counters"
    );
    if udp {
        let uecho = udp_echo();
        let assoc = socks5_udp(socks).expect("SOCKS5 UDP ASSOCIATE through shoes");
        udp_echo_transfer(&assoc, uecho, BULK, 1200, 2)
            .unwrap_or_else(|e| panic!("{protocol} UDP through shoes: {e}"));
        assert_traffic_at_least(&handle, "u", 2 * BULK as u64, 2 * BULK as u64);
    }
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}

#[test]
fn shoes_vless_tls() {
    relay(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        true,
        &over_tls(&format!(
            "          type: vless\n          user_id: {UUID}\n"
        )),
        true,
    );
}

#[test]
fn shoes_vmess_tls() {
    relay(
        "vmess",
        json!({"users": [{"name": "u", "id": UUID}]}),
        true,
        &over_tls(&format!(
            "          type: vmess\n          cipher: aes-128-gcm\n          user_id: {UUID}\n"
        )),
        true,
    );
}

#[test]
fn shoes_trojan_tls() {
    relay(
        "trojan",
        json!({"users": [{"name": "u", "password": PASSWORD}]}),
        true,
        &over_tls(&format!(
            "          type: trojan\n          password: \"{PASSWORD}\"\n"
        )),
        // shoes's Trojan client carries no UDP (its README lists UDP for VLESS and VMess only).
        false,
    );
}

#[test]
fn shoes_shadowsocks_aead_and_2022() {
    let key = "wbdbTq8PtWLaLqKmYNc7xzVcU1aTP31SoCM2dfGlmUs=";
    for (method, password) in [("aes-256-gcm", PASSWORD), ("2022-blake3-aes-256-gcm", key)] {
        relay(
            "shadowsocks",
            json!({"method": method, "users": [{"name": "u", "password": password}]}),
            false,
            &format!(
                "          type: shadowsocks\n          cipher: {method}\n          password: \"{password}\"\n"
            ),
            false,
        );
    }
}

/// VLESS, VMess and Trojan over WebSocket inside TLS (TCP only: shoes sends their UDP over
/// TCP, proven above without WebSocket).
#[test]
fn shoes_ws_tls() {
    let id = format!("          user_id: {UUID}\n");
    let cases = [
        (
            "vless",
            json!({"users": [{"name": "u", "id": UUID}]}),
            format!("          type: vless\n{id}"),
        ),
        (
            "vmess",
            json!({"users": [{"name": "u", "id": UUID}]}),
            format!("          type: vmess\n          cipher: aes-128-gcm\n{id}"),
        ),
        (
            "trojan",
            json!({"users": [{"name": "u", "password": PASSWORD}]}),
            format!("          type: trojan\n          password: \"{PASSWORD}\"\n"),
        ),
    ];
    for (protocol, settings, inner) in cases {
        relay_over(
            protocol,
            settings,
            true,
            Some(json!({"path": "/ws"})),
            &over_ws_tls(&inner),
            false,
        );
    }
}
