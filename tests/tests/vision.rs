//! VLESS with XTLS Vision (`flow: xtls-rprx-vision`) against sing-box and shoes as clients,
//! over TLS with our self-signed certificate:
//!
//! - plain traffic through the padding, which ends after the filter gives up (16 MiB each
//!   way over TCP, every byte checked, counters exact), and with sing-box UDP as XUDP with
//!   the flow;
//! - TLS 1.3 traffic (a TLS echo server of the test's own behind the proxy, 16 MiB each way):
//!   both directions switch to direct copy, with either client. A tap between sing-box and our server shows it: the inner TLS
//!   records travel verbatim, outside the outer TLS, both ways;
//! - a request without the flow on a Vision inbound, and one with the flow on an inbound
//!   without it, are refused (as Xray refuses them).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use e2e::*;
use rand::{RngCore, SeedableRng};
use serde_json::json;

const BULK: usize = 16 << 20;
const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";

fn vision_inbound() -> (engine::Handle, SocketAddr) {
    engine_with_inbound(
        "vless",
        json!({"users": [{"name": "u", "id": UUID}], "flow": "xtls-rprx-vision"}),
        true,
    )
}

fn client(server: SocketAddr, flow: &str) -> (ChildGuard, SocketAddr) {
    sing_box_client(json!({
        "type": "vless", "uuid": UUID, "flow": flow, "packet_encoding": "xudp",
        "server": "127.0.0.1", "server_port": server.port(),
        "tls": {"enabled": true, "server_name": "localhost", "insecure": true},
    }))
}

#[test]
fn sing_box_vision_plain_tcp_and_xudp() {
    let (handle, server) = vision_inbound();
    let (mut child, socks) = client(server, "xtls-rprx-vision");
    let echo = tcp_echo();
    let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    echo_transfer(stream, BULK, 1, Ending::AfterEcho).expect("Vision TCP");
    // Padding is not traffic: the counters hold the payload exactly.
    assert_eq!(
        settled_traffic(&handle, "u", (BULK as u64, BULK as u64)),
        (BULK as u64, BULK as u64)
    );
    let uecho = udp_echo();
    let assoc = socks5_udp(socks).expect("SOCKS5 UDP ASSOCIATE");
    udp_echo_transfer(&assoc, uecho, BULK, 1200, 2).expect("Vision XUDP");
    assert_traffic_at_least(&handle, "u", 2 * BULK as u64, 2 * BULK as u64);
    child.assert_running();
    handle.stop(Duration::from_secs(1));
}

/// A TCP proxy that keeps a copy of what passes each way: (client to server, server to
/// client).
type Taps = (Arc<Mutex<Vec<u8>>>, Arc<Mutex<Vec<u8>>>);

fn tap(server: SocketAddr) -> (SocketAddr, Taps) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let taps: Taps = Default::default();
    let t = taps.clone();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let s = TcpStream::connect(server).unwrap();
            for (mut from, mut to, copy) in [
                (
                    c.try_clone().unwrap(),
                    s.try_clone().unwrap(),
                    Arc::clone(&t.0),
                ),
                (s, c, Arc::clone(&t.1)),
            ] {
                thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from.read(&mut buf) {
                        copy.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        }
    });
    (addr, taps)
}

/// A socket that keeps a copy of what it writes (the raw TLS records of one side).
struct Recorded(TcpStream, Arc<Mutex<Vec<u8>>>);

impl Read for Recorded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Recorded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.3 echo server (rustls, thread per connection) for `localhost`; what it writes on
/// the wire is kept in the returned buffer. Returns its address and certificate.
fn tls_echo() -> (
    SocketAddr,
    rustls::pki_types::CertificateDer<'static>,
    Arc<Mutex<Vec<u8>>>,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let config = Arc::new(config);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let wire = Arc::new(Mutex::new(Vec::new()));
    let w = Arc::clone(&wire);
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { continue };
            let conn = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, Recorded(c, Arc::clone(&w)));
            thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = tls.read(&mut buf) {
                    if tls.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, der, wire)
}

/// True when the last `len` bytes of `needle` occur in `haystack`.
fn contains_tail(haystack: &[u8], needle: &[u8], len: usize) -> bool {
    let tail = &needle[needle.len() - len..];
    haystack.windows(len).any(|w| w == tail)
}

#[test]
fn sing_box_vision_copies_inner_tls13_directly() {
    direct_copy(|server| client(server, "xtls-rprx-vision"));
}

#[test]
fn shoes_vision_copies_inner_tls13_directly() {
    direct_copy(shoes_vision);
}

/// shoes (cfal/shoes) as a Vision client: VLESS in TLS with `vision: true`.
fn shoes_vision(server: SocketAddr) -> (ChildGuard, SocketAddr) {
    let tls = over_tls(&format!(
        "          type: vless\n          user_id: {UUID}\n"
    ));
    let tls = tls.replacen(
        "verify: false\n",
        "verify: false\n          vision: true\n",
        1,
    );
    shoes_client(server, &tls)
}

#[test]
fn shoes_vision_plain_tcp() {
    let (handle, server) = vision_inbound();
    let (mut child, socks) = shoes_vision(server);
    let stream = socks5_connect(socks, tcp_echo()).expect("SOCKS5 CONNECT through shoes");
    echo_transfer(stream, BULK, 1, Ending::AfterEcho).expect("Vision TCP through shoes");
    assert_eq!(
        settled_traffic(&handle, "u", (BULK as u64, BULK as u64)),
        (BULK as u64, BULK as u64)
    );
    child.assert_running();
    handle.stop(Duration::from_secs(1));
}

/// TLS 1.3 through the Vision client `start` makes (given our server's address, it returns
/// the client and its SOCKS5 address): 16 MiB each way, then the tap must show the inner
/// records verbatim both ways.
fn direct_copy(start: impl FnOnce(SocketAddr) -> (ChildGuard, SocketAddr)) {
    let (handle, server) = vision_inbound();
    let (tapped, (up_wire, down_wire)) = tap(server);
    let (mut child, socks) = start(tapped);
    let (echo, cert, echo_wire) = tls_echo();

    let stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let client_wire = Arc::new(Mutex::new(Vec::new()));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, Recorded(stream, Arc::clone(&client_wire)));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut out, mut back) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    for _ in 0..BULK / out.len() {
        rng.fill_bytes(&mut out);
        tls.write_all(&out).expect("write through the inner TLS");
        tls.read_exact(&mut back)
            .expect("the echo through the inner TLS");
        assert!(out == back, "the echo differs");
    }
    let (up, down) = settled_traffic(&handle, "u", (BULK as u64, BULK as u64));
    assert!(
        up >= BULK as u64 && down >= BULK as u64,
        "counters {up} {down}"
    );

    // Direct copy: the inner records are on the outer connection verbatim, both ways.
    let len = 4096;
    let sent = client_wire.lock().unwrap().clone();
    assert!(
        contains_tail(&up_wire.lock().unwrap(), &sent, len),
        "the client's inner TLS records did not go direct"
    );
    let echoed = echo_wire.lock().unwrap().clone();
    assert!(
        contains_tail(&down_wire.lock().unwrap(), &echoed, len),
        "our server did not copy the target's TLS records directly"
    );
    child.assert_running();
    handle.stop(Duration::from_secs(1));
}

/// The inner traffic is TLS but the tap sees no inner record verbatim without Vision: the
/// check above can fail.
#[test]
fn without_vision_inner_tls_stays_inside_the_outer_tls() {
    let (handle, server) =
        engine_with_inbound("vless", json!({"users": [{"name": "u", "id": UUID}]}), true);
    let (tapped, (up_wire, _)) = tap(server);
    let (mut child, socks) = client(tapped, "");
    let (echo, _, _) = tls_echo();
    let mut stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
    let hello = b"\x16\x03\x01\x00\x05hello";
    stream.write_all(hello).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.read(&mut [0u8; 64]);
    assert!(!contains_tail(&up_wire.lock().unwrap(), hello, hello.len()));
    child.assert_running();
    handle.stop(Duration::from_secs(1));
}

/// Xray's rules: a Vision inbound refuses TCP without the flow; an inbound without Vision
/// refuses the flow. The refused connection carries nothing.
#[test]
fn flow_mismatch_is_refused() {
    for (settings, flow) in [
        (
            json!({"users": [{"name": "u", "id": UUID}], "flow": "xtls-rprx-vision"}),
            "",
        ),
        (
            json!({"users": [{"name": "u", "id": UUID}]}),
            "xtls-rprx-vision",
        ),
    ] {
        let (handle, server) = engine_with_inbound("vless", settings, true);
        let (mut child, socks) = client(server, flow);
        let echo = tcp_echo();
        let mut stream = socks5_connect(socks, echo).expect("SOCKS5 CONNECT");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(b"ping");
        let mut buf = [0u8; 4];
        let got = stream.read(&mut buf);
        assert!(
            !matches!(got, Ok(4)),
            "flow {flow:?}: the echo answered through a refused request"
        );
        assert_eq!(
            user_traffic(&handle, "u").uplink,
            0,
            "flow {flow:?}: traffic counted"
        );
        child.assert_running();
        handle.stop(Duration::from_secs(1));
    }
}

/// A rustls client of the test's own, offering only TLS `version`, connected to a Vision
/// inbound with a PEM certificate; sends a VLESS request with the flow to `target`, then
/// `first` (the first block). Returns the engine and the client.
fn handwritten(
    version: &'static rustls::SupportedProtocolVersion,
    first: &[u8],
    target: SocketAddr,
) -> (
    engine::Handle,
    rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) {
    let (cert, key, der) = localhost_certificate("vision");
    let handle = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "timeouts": {"handshake_secs": 2},
        "inbounds": [{"tag": "in", "listen": "127.0.0.1:0", "network": ["tcp"],
            "protocol": "vless",
            "settings": {"users": [{"name": "u", "id": UUID}], "flow": "xtls-rprx-vision"},
            "tls": {"certificate": cert, "key": key}}],
    }));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let socket = TcpStream::connect(handle.local_addr("in").unwrap()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, socket);
    let mut wire = vec![0u8; 512];
    let n = proto::vless::ClientRequest {
        uuid: proto::vless::parse_user_id(UUID).unwrap(),
        flow: proto::vless::FLOW_VISION,
        command: &proto::vless::Command::Tcp(proto::TargetAddr::Ip(target)),
    }
    .encode(&mut wire);
    wire.truncate(n);
    wire.extend_from_slice(first);
    tls.write_all(&wire).unwrap();
    (handle, tls)
}

/// A client's first block (`Continue`, no padding) carrying `content`.
fn first_block(content: &[u8]) -> Vec<u8> {
    let uuid = proto::vless::parse_user_id(UUID).unwrap();
    let mut block = vec![0u8; 21 + content.len()];
    let command = proto::vless::vision::Command::Continue;
    proto::vless::vision::write_block(&mut block, Some(&uuid), command, content, 0);
    block
}

/// Bad input: a first block with an unknown command, and Vision over TLS 1.2 (Xray refuses
/// it too). The connection closes with nothing sent back and nothing forwarded.
#[test]
fn bad_blocks_and_tls12_close_without_forwarding() {
    let uuid = proto::vless::parse_user_id(UUID).unwrap();
    let unknown = [&uuid[..], &[7, 0, 4, 0, 0], b"ping"].concat();
    let good = first_block(b"ping");
    for (version, first, case) in [
        (&rustls::version::TLS13, &unknown, "unknown command"),
        (&rustls::version::TLS12, &good, "TLS 1.2"),
    ] {
        let (target, accepted) = counting_echo();
        let (handle, mut tls) = handwritten(version, first, target);
        let mut buf = [0u8; 16];
        let got = tls.read(&mut buf);
        assert!(
            matches!(got, Ok(0) | Err(_)),
            "{case}: the server answered {got:?}"
        );
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "{case}: forwarded"
        );
        handle.stop(Duration::from_secs(1));
    }
    // The same first block, well-formed, over TLS 1.3 reaches the target.
    let (target, accepted) = counting_echo();
    let (handle, mut tls) = handwritten(&rustls::version::TLS13, &good, target);
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf).expect("the response");
    assert!(n > 0);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    handle.stop(Duration::from_secs(1));
}

/// A target that closes without a byte: the client still gets the VLESS response header (in a
/// record of its own), then the end, as with plain VLESS.
#[test]
fn a_silent_target_still_gets_the_response_header() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap();
    thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
    let first = first_block(b"hello");
    let (handle, mut tls) = handwritten(&rustls::version::TLS13, &first, target);
    let mut got = Vec::new();
    let _ = tls.read_to_end(&mut got);
    assert_eq!(got, proto::vless::RESPONSE_HEADER);
    handle.stop(Duration::from_secs(1));
}
