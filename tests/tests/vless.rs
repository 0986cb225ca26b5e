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
    let mut wire = vless_mux_request(UUID);
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

/// The source port the port-telling echo saw for `session`'s next packet.
fn port_seen(c: &mut MuxConn, session: u16) -> u16 {
    let (status, data) = c.next_of(session);
    assert_eq!(status, proto::mux::Status::Keep);
    u16::from_be_bytes(data[..2].try_into().expect("a port"))
}

/// A loopback UDP server that answers each datagram with the port it came from (2 bytes);
/// a datagram `later` is answered again, with `late`, a second after (time for the session
/// that sent it to end and park its socket, on a loaded machine too).
fn udp_port_echo() -> std::net::SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&from.port().to_be_bytes(), from);
            if &buf[..n] == b"later" {
                let s = socket.try_clone().unwrap();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs(1));
                    let _ = s.send_to(b"late", from);
                });
            }
        }
    });
    addr
}

/// XUDP GlobalIDs (what Xray clients send for UDP from their SOCKS and TUN inbounds): a UDP
/// session keeps its outbound socket, and so its public port, across connections. A New frame
/// with the GlobalID takes the socket from the live session that holds it (which gets an End)
/// and from a parked one, with the replies that arrived meanwhile; another user's session, or
/// one without a GlobalID, gets a socket of its own. The engine runs two workers, so the
/// connections land on either.
#[test]
fn xudp_sessions_keep_their_socket_by_global_id() {
    const OTHER: &str = "0d5c2a1e-5f4a-4a49-9e7b-2d2f0a6b1c11";
    let (handle, server) = engine_with_inbound(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}, {"name": "v", "id": OTHER}]}),
        false,
    );
    let echo = udp_port_echo();
    let g = Some(*b"globalid");

    let mut a = MuxConn::connect(server, UUID, false);
    a.open(1, proto::mux::Network::Udp, echo, g, b"hello");
    let port = port_seen(&mut a, 1);

    // Taken over while the first connection still holds it.
    let mut b = MuxConn::connect(server, UUID, false);
    b.open(5, proto::mux::Network::Udp, echo, g, b"later");
    assert_eq!(port_seen(&mut b, 5), port, "taken from the live session");
    assert_eq!(
        a.next_of(1).0,
        proto::mux::Status::End,
        "the old session ends"
    );
    drop(b);

    // Parked: the "late" reply arrived while no session held the socket.
    std::thread::sleep(std::time::Duration::from_millis(2000));
    let mut c = MuxConn::connect(server, UUID, false);
    c.open(2, proto::mux::Network::Udp, echo, g, b"again");
    assert_eq!(c.next_of(2), (proto::mux::Status::Keep, b"late".to_vec()));
    assert_eq!(
        port_seen(&mut c, 2),
        port,
        "re-attached from the parked socket"
    );

    let mut d = MuxConn::connect(server, OTHER, false);
    d.open(2, proto::mux::Network::Udp, echo, g, b"x");
    assert_ne!(
        port_seen(&mut d, 2),
        port,
        "another user's GlobalID is another"
    );
    c.open(3, proto::mux::Network::Udp, echo, None, b"x");
    assert_ne!(
        port_seen(&mut c, 3),
        port,
        "no GlobalID, a socket of its own"
    );
    drop((a, c, d));
    assert_connections_freed(&handle);
    // The socket is parked (its port taken) until the engine stops.
    let port_free = || std::net::UdpSocket::bind(("::", port)).is_ok();
    assert!(!port_free(), "parked");
    handle.stop(std::time::Duration::from_secs(1));
    assert!(port_free(), "closed when the engine stops");
}

/// A Mux UDP session with no packet either way for `timeouts.udp_session_secs` ends with an
/// End frame, as Xray's do, and gives its socket back; the connection stays, and its next
/// session works.
#[test]
fn quiet_mux_udp_sessions_end() {
    let handle = start_engine(json!({
        "workers": 1,
        "timeouts": {"udp_session_secs": 1},
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "in", "listen": "127.0.0.1:0", "network": ["tcp"],
            "protocol": "vless", "settings": {"users": [{"name": "u", "id": UUID}]}}],
    }));
    let server = handle.local_addr("in").unwrap();
    let echo = udp_port_echo();
    let mut client = MuxConn::connect(server, UUID, false);
    client
        .stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    client.open(1, proto::mux::Network::Udp, echo, None, b"hello");
    port_seen(&mut client, 1);
    // Nothing more either way: End within the client's 5 s read timeout.
    assert_eq!(client.next_of(1).0, proto::mux::Status::End);
    client.open(2, proto::mux::Network::Udp, echo, None, b"again");
    port_seen(&mut client, 2);
    handle.stop(std::time::Duration::from_secs(1));
}
