//! Hysteria2 interop with sing-box as the client: 16 MiB each way over TCP (QUIC streams) and
//! over UDP (QUIC datagrams) through our server to loopback echoes, every byte checked; with
//! and without Salamander obfuscation (the obfuscated run also declares rates, so both sides
//! send with Brutal). Also what a prober sees: an ordinary HTTP/3 answer.

use std::time::Duration;

use e2e::*;
use serde_json::json;

const BULK: usize = 16 << 20;
const PASSWORD: &str = "correct horse battery staple";
const OBFS: &str = "salamander secret";

/// An engine with one Hysteria2 inbound (self-signed certificate for `localhost`) on a free
/// loopback UDP port, with user `u`; with `obfs`, Salamander and rate caps (so that a client
/// declaring rates runs Brutal both ways).
fn engine(obfs: bool) -> (engine::Handle, std::net::SocketAddr) {
    let mut settings = json!({"users": [{"name": "u", "password": PASSWORD}]});
    if obfs {
        settings["obfs"] = json!({"type": "salamander", "password": OBFS});
        settings["up_mbps"] = json!(800);
        settings["down_mbps"] = json!(800);
    }
    let handle = start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "inbounds": [{
            "tag": "hy2", "listen": "127.0.0.1:0", "network": ["udp"],
            "protocol": "hysteria2", "settings": settings,
            "tls": {"self_signed": ["localhost"]},
        }],
    }));
    let addr = handle.local_addr("hy2").unwrap();
    (handle, addr)
}

fn outbound(server: std::net::SocketAddr, password: &str, obfs: bool) -> serde_json::Value {
    let mut out = json!({
        "type": "hysteria2", "server": "127.0.0.1", "server_port": server.port(),
        "password": password,
        "tls": {"enabled": true, "server_name": "localhost", "insecure": true, "alpn": ["h3"]},
    });
    if obfs {
        out["obfs"] = json!({"type": "salamander", "password": OBFS});
        // Declared rates: Brutal on both sides.
        out["up_mbps"] = json!(400);
        out["down_mbps"] = json!(400);
    }
    out
}

fn tcp_and_udp(obfs: bool) {
    let (handle, server) = engine(obfs);
    let (mut child, socks) = sing_box_client(outbound(server, PASSWORD, obfs));
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
    handle.stop(Duration::from_secs(1));
}

#[test]
fn sing_box_hysteria2_tcp_and_udp() {
    tcp_and_udp(false);
}

#[test]
fn sing_box_hysteria2_salamander_tcp_and_udp() {
    tcp_and_udp(true);
}

/// Writes `ping` through `stream` and reads the echo back.
fn ping(stream: &mut std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{Read, Write};
    stream.write_all(b"ping")?;
    let mut back = [0u8; 4];
    stream.read_exact(&mut back)?;
    assert_eq!(&back, b"ping");
    Ok(())
}

/// A wrong password gets no relay: the client's connection fails and nobody's counters move.
#[test]
fn wrong_password_is_refused() {
    let (handle, server) = engine(false);
    let (mut child, socks) = sing_box_client(outbound(server, "not the password", false));
    let echo = tcp_echo();
    if let Ok(mut stream) = socks5_connect(socks, echo) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert!(ping(&mut stream).is_err(), "relayed with a wrong password");
    }
    assert_eq!(user_traffic(&handle, "u").uplink, 0);
    child.assert_running();
    handle.stop(Duration::from_secs(1));
}

/// Removing the user closes their QUIC connection, so the relay through it ends; a new
/// connection is refused.
#[test]
fn removal_closes_the_connection_within_a_second() {
    use std::io::{ErrorKind, Read};
    let (handle, server) = engine(false);
    let (mut child, socks) = sing_box_client(outbound(server, PASSWORD, false));
    let echo = tcp_echo();
    let mut stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    ping(&mut stream).expect("relayed before the removal");
    let started = std::time::Instant::now();
    assert_eq!(handle.remove_users(&["u".into()]).unwrap(), 1);
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("not closed within a second: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );
    if let Ok(mut again) = socks5_connect(socks, echo) {
        again
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert!(ping(&mut again).is_err(), "relayed after the removal");
    }
    child.assert_running();
    handle.stop(Duration::from_secs(1));
}
