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

/// v2ray with Mux.Cool on: four TCP transfers at once and UDP, all as sessions of one VLESS
/// connection (over TLS), every byte checked, the user's counters exact for TCP.
#[test]
fn v2ray_vless_mux_tls() {
    let (handle, server) =
        engine_with_inbound("vless", json!({"users": [{"name": "u", "id": UUID}]}), true);
    let (mut child, socks) = v2ray_client(json!({
        "protocol": "vless",
        "settings": {"vnext": [{"address": "127.0.0.1", "port": server.port(),
                                "users": [{"id": UUID, "encryption": "none"}]}]},
        "streamSettings": v2ray_stream(true),
        "mux": {"enabled": true, "concurrency": 8},
    }));
    multiplexed_transfers(&handle, socks, BULK);
    child.assert_running();
    handle.stop(std::time::Duration::from_secs(1));
}

/// Mux.Cool edge cases, with frames written by hand: data for a session that was never opened
/// gets an End; a New session relays; a frame with oversize metadata closes the connection.
#[test]
fn mux_unknown_sessions_and_bad_frames() {
    use proto::mux::{parse_frame, Frame, MuxRead, Network, Status, MAX_HEADER_LEN};
    use proto::TargetAddr;
    use std::io::{Read, Write};

    let (handle, server) = engine_with_inbound(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}]}),
        false,
    );
    let echo = tcp_echo();
    let mut c = std::net::TcpStream::connect(server).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut wire = vec![0u8; 512];
    let n = proto::vless::ClientRequest {
        uuid: proto::vless::parse_user_id(UUID).unwrap(),
        flow: "",
        command: &proto::vless::Command::Mux,
    }
    .encode(&mut wire);
    wire.truncate(n);
    let frame = |session: u16, status: Status, target: Option<TargetAddr>, data: &[u8]| {
        let f = Frame {
            session,
            status,
            options: 0,
            target: target.map(|t| (Network::Tcp, t)),
            global_id: None,
        };
        let mut out = vec![0u8; MAX_HEADER_LEN];
        let n = f.write(&mut out, Some(data.len() as u16));
        out.truncate(n);
        out.extend_from_slice(data);
        out
    };
    wire.extend(frame(9, Status::Keep, None, b"lost"));
    wire.extend(frame(1, Status::New, Some(TargetAddr::Ip(echo)), b"hello"));
    c.write_all(&wire).unwrap();

    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let n = c.read(&mut buf).expect("answers");
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        let mut at = 2; // the VLESS response header
        frames.clear();
        while let Ok(MuxRead::Frame {
            frame,
            data,
            consumed,
        }) = parse_frame(&got[at.min(got.len())..])
        {
            frames.push((frame, got[at + data.start..at + data.end].to_vec()));
            at += consumed;
        }
    }
    assert_eq!(&got[..2], &[0, 0], "VLESS response header");
    assert_eq!((frames[0].0.session, frames[0].0.status), (9, Status::End));
    assert_eq!((frames[1].0.session, frames[1].0.status), (1, Status::Keep));
    assert_eq!(frames[1].1, b"hello");

    // Metadata over 512 bytes: the connection is closed.
    c.write_all(&[0xff, 0xff, 0, 0]).unwrap();
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed: {e}"),
        }
    }
    assert_connections_freed(&handle);
    handle.stop(std::time::Duration::from_secs(1));
}
