//! Routing rules in the running engine: a time window with an injected clock, address and
//! port rules, the built-in private-range block, and rules replaced while traffic flows.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use e2e::*;
use proto::shadowsocks::udp::UdpClient;
use proto::shadowsocks::{Key, Method};
use proto::TargetAddr;
use serde_json::json;

const PSK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KID: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const PARENT: &str = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=";
const M: Method = Method::Blake3Aes256Gcm;

/// 2026-11-26 (a Thursday) at `hour`:00 UTC.
fn at(hour: u64) -> u64 {
    1_795_651_200 + hour * 3600
}

fn reaches(h: &engine::Handle, key: &str, echo: std::net::SocketAddr) -> bool {
    let Ok(mut c) = SsClient::connect(h.local_addr("ss").unwrap(), M, key, Some(PSK), echo, b"hi")
    else {
        return false;
    };
    // A denied connection is closed at once; an allowed one may be slow on a loaded machine.
    c.stream()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    c.recv_exact(2).is_ok()
}

#[test]
fn time_window_rule_denies_outside_its_window() {
    let clock = Arc::new(AtomicU64::new(at(12)));
    let c = Arc::clone(&clock);
    let h = start_engine_with(
        json!({
            "workers": 2,
            "outbound": {"allow_loopback": true},
            "routing": {"timezone": "UTC", "rules": [
                {"action": "deny", "users": ["kid"], "schedule": [{"times": ["22:00-06:00"]}]}
            ]},
            "inbounds": [{"tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
                "settings": {"method": M.name(), "psk": PSK,
                    "users": [{"name": "kid", "password": KID}, {"name": "parent", "password": PARENT}]}}],
        }),
        engine::EngineOptions {
            clock: Some(Arc::new(move || c.load(Ordering::Relaxed))),
            ..Default::default()
        },
    );
    let echo = tcp_echo();
    assert!(reaches(&h, KID, echo), "noon: allowed");
    clock.store(at(23), Ordering::Relaxed);
    thread::sleep(Duration::from_millis(50));
    assert!(!reaches(&h, KID, echo), "23:00: inside the deny window");
    assert!(reaches(&h, PARENT, echo), "the rule names only kid");
    clock.store(at(24 + 7), Ordering::Relaxed);
    thread::sleep(Duration::from_millis(600));
    assert!(reaches(&h, KID, echo), "07:00 next day: allowed again");
    h.stop(Duration::from_secs(1));
}

#[test]
fn address_and_port_rules_apply() {
    let echo = tcp_echo();
    let h = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "routing": {"rules": [
            {"action": "deny", "destination_cidrs": ["127.0.0.1/32"], "ports": [echo.port()]}
        ]},
        "inbounds": [{"tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
            "settings": {"method": M.name(), "psk": PSK, "users": [{"name": "kid", "password": KID}]}}],
    }));
    assert!(!reaches(&h, KID, echo), "denied port");
    let other = tcp_echo();
    assert!(reaches(&h, KID, other), "another port is fine");
    assert_eq!(
        user_traffic(&h, "kid").uplink,
        2,
        "only the allowed connection's bytes count"
    );
    h.stop(Duration::from_secs(1));
}

#[test]
fn private_ranges_are_refused_by_default() {
    let echo = tcp_echo();
    let h = start_engine(json!({
        "workers": 1,
        "inbounds": [{"tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
            "settings": {"method": M.name(), "psk": PSK, "users": [{"name": "kid", "password": KID}]}}],
    }));
    assert!(
        !reaches(&h, KID, echo),
        "loopback is blocked unless allowed"
    );
    h.stop(Duration::from_secs(1));
}

#[test]
fn rules_replaced_while_running_apply_to_new_connections_and_every_packet() {
    let h = start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
            "settings": {"method": M.name(), "psk": PSK, "users": [{"name": "kid", "password": KID}]}}],
    }));
    let (echo, udp) = (tcp_echo(), udp_echo());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut client = UdpClient::new(
        M,
        Key::from_password(M, KID).unwrap(),
        Some(Key::from_password(M, PSK).unwrap()),
        rand::random(),
    );
    let server = h.local_addr("ss").unwrap();
    // An echo is waited for as long as a loaded machine may need; a denial, briefly.
    let udp_through = |client: &mut UdpClient, wait: Duration| {
        sock.set_read_timeout(Some(wait)).unwrap();
        ss_udp_roundtrip(server, &sock, client, udp)
    };
    // No rules: everything on loopback goes through, on both workers.
    assert!((0..8).all(|_| reaches(&h, KID, echo)));
    assert!(udp_through(&mut client, RELAYED));
    let mut live =
        SsClient::connect(h.local_addr("ss").unwrap(), M, KID, Some(PSK), echo, b"hi").unwrap();
    assert_eq!(live.recv_exact(2).unwrap(), b"hi");

    let rules = |value: serde_json::Value| -> engine::rules::RulesConfig {
        serde_json::from_value(value).unwrap()
    };
    // One rule per network: the other echo's port may well be the same number.
    h.set_routing(Some(rules(json!({"rules": [
        {"action": "deny", "network": ["tcp"], "ports": [echo.port()]},
        {"action": "deny", "network": ["udp"], "ports": [udp.port()]},
    ]}))))
    .unwrap();
    // Every new connection is decided by the new rules, whichever worker takes it.
    assert!((0..8).all(|_| !reaches(&h, KID, echo)), "denied port");
    assert!(reaches(&h, KID, tcp_echo()), "another port is fine");
    // The UDP session's next packet is decided by them too.
    assert!(!udp_through(&mut client, SILENT));
    // A connection that was relaying keeps its destination.
    live.send(b"still").unwrap();
    assert_eq!(live.recv_exact(5).unwrap(), b"still");

    // Rules that do not compile name the field and change nothing.
    let bad = rules(json!({"rules": [{"action": "deny", "ports": ["99999"]}]}));
    let err = h.set_routing(Some(bad)).unwrap_err();
    assert!(
        err.to_string().starts_with("routing.rules[0].ports[0]"),
        "{err}"
    );
    assert!(!reaches(&h, KID, echo), "the previous rules stay");

    // No rules again: back to the built-in block only (loopback allowed by the outbound).
    h.set_routing(None).unwrap();
    assert!((0..8).all(|_| reaches(&h, KID, echo)));
    assert!(udp_through(&mut client, RELAYED));
    h.stop(Duration::from_secs(1));
    assert!(matches!(
        h.set_routing(None),
        Err(engine::EngineError::Stopped)
    ));
}

#[test]
fn a_vless_udp_session_follows_replaced_rules_packet_by_packet() {
    use std::io::{ErrorKind, Read, Write};
    const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
    let h = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "vless", "listen": "127.0.0.1:0", "network": ["tcp"],
            "protocol": "vless", "settings": {"users": [{"name": "u", "id": UUID}]}}],
    }));
    let udp = udp_echo();
    let mut wire = vec![0u8; 512];
    let n = proto::vless::ClientRequest {
        uuid: proto::vless::parse_user_id(UUID).unwrap(),
        flow: "",
        command: &proto::vless::Command::Udp(TargetAddr::Ip(udp)),
    }
    .encode(&mut wire);
    wire.truncate(n);
    let mut s = std::net::TcpStream::connect(h.local_addr("vless").unwrap()).unwrap();
    // One length-prefixed packet out; its echo back, or nothing within `wait`.
    let ping = |s: &mut std::net::TcpStream, first: bool, wait: Duration| -> bool {
        s.set_read_timeout(Some(wait)).unwrap();
        let mut out = if first { wire.clone() } else { Vec::new() };
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(b"ping");
        s.write_all(&out).unwrap();
        let want: &[u8] = if first {
            b"\0\0\0\x04ping"
        } else {
            b"\0\x04ping"
        };
        let mut got = vec![0u8; want.len()];
        match s.read_exact(&mut got) {
            Ok(()) => {
                assert_eq!(got, want);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => panic!("the session ended: {e}"),
        }
    };
    assert!(ping(&mut s, true, RELAYED), "allowed at first");
    let deny = json!({"rules": [{"action": "deny", "network": ["udp"], "ports": [udp.port()]}]});
    h.set_routing(Some(serde_json::from_value(deny).unwrap()))
        .unwrap();
    assert!(
        !ping(&mut s, false, SILENT),
        "the session's next packet is denied"
    );
    h.set_routing(None).unwrap();
    assert!(
        ping(&mut s, false, RELAYED),
        "allowed again, on the same session"
    );
    h.stop(Duration::from_secs(1));
}
