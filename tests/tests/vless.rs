//! VLESS interop: Debian's v2ray 4.34 as the client, over TCP and over TLS (our self-signed
//! certificate), through our server to a loopback echo and back: 16 MiB each way over TCP and
//! over UDP (length-prefixed packets), every byte checked, the user's counters exact.

use e2e::*;
use serde_json::json;

const BULK: usize = 16 << 20;
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";

fn tcp_and_udp(tls: bool) {
    let (handle, server) =
        engine_with_inbound("vless", json!({"users": [{"name": "u", "id": UUID}]}), tls);
    let (mut child, socks) = v2ray_client(json!({
        "protocol": "vless",
        "settings": {"vnext": [{"address": "127.0.0.1", "port": server.port(),
                                "users": [{"id": UUID, "encryption": "none"}]}]},
        "streamSettings": v2ray_stream(tls),
    }));
    let echo = tcp_echo();
    let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    echo_transfer(stream, BULK, 1, Ending::AfterEcho).unwrap_or_else(|e| panic!("TCP: {e}"));
    assert_eq!(
        settled_traffic(&handle, "u", (BULK as u64, BULK as u64)),
        (BULK as u64, BULK as u64),
        "TCP counters"
    );

    let uecho = udp_echo();
    let assoc = socks5_udp(socks).expect("SOCKS5 UDP ASSOCIATE");
    udp_echo_transfer(&assoc, uecho, BULK, 1200, 2).unwrap_or_else(|e| panic!("UDP: {e}"));
    assert_traffic_at_least(&handle, "u", 2 * BULK as u64, 2 * BULK as u64);
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}

#[test]
fn v2ray_vless_tcp() {
    tcp_and_udp(false);
}

#[test]
fn v2ray_vless_tls() {
    tcp_and_udp(true);
}
